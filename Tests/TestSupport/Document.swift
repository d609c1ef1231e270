import Foundation
import Yams

/// A YAML or JSON document as a tree that keeps what a parser cares about: key order, duplicate
/// keys, and each scalar's text and quoting. Tests build one from a valid document, mutate it
/// (`DocumentMutation`), render it back and feed the bytes to the parser under test.
public indirect enum Document: Sendable, Hashable {
    /// Entries in order; a key may appear twice (that is one of the mutations).
    case mapping([Entry])
    case sequence([Document])
    /// A scalar's text as written and how it was quoted.
    case scalar(String, ScalarStyle)
    /// Text inserted verbatim (deep nesting in flow style, which block rendering cannot express
    /// without megabytes of indentation).
    case raw(String)

    public struct Entry: Sendable, Hashable {
        public var key: String
        public var value: Document
        public init(_ key: String, _ value: Document) {
            self.key = key
            self.value = value
        }
    }

    public enum ScalarStyle: Sendable, Hashable {
        /// Unquoted: YAML resolves it (number, boolean, null, string); JSON numbers, booleans, null.
        case plain
        /// `"…"` with escapes (every JSON string).
        case quoted
    }

    public enum Format: Sendable, Hashable {
        case yaml
        case json
    }

    /// A plain scalar.
    public static func plain(_ text: String) -> Document { .scalar(text, .plain) }
    /// A quoted scalar.
    public static func quoted(_ text: String) -> Document { .scalar(text, .quoted) }

    // MARK: - Building

    /// The tree of YAML (or JSON) text, as Yams composes it. Aliases are not expected in the
    /// documents tests start from.
    public init(yaml text: String) throws {
        guard let node = try Yams.compose(yaml: text) else {
            self = .mapping([])
            return
        }
        self.init(node)
    }

    private init(_ node: Yams.Node) {
        switch node {
        case .scalar(let scalar):
            self = .scalar(scalar.string, scalar.style == .plain || scalar.style == .any ? .plain : .quoted)
        case .mapping(let mapping):
            self = .mapping(mapping.map { Entry($0.key.string ?? "", Document($0.value)) })
        case .sequence(let sequence):
            self = .sequence(sequence.map { Document($0) })
        case .alias:
            self = .plain("~")
        }
    }

    // MARK: - Paths

    /// One step into the tree: the n-th entry of a mapping or the n-th element of a list.
    public typealias Path = [Int]

    /// Every path in the tree, parents before children (the root, `[]`, excluded).
    public var paths: [Path] {
        var out: [Path] = []
        func walk(_ node: Document, _ path: Path) {
            switch node {
            case .mapping(let entries):
                for (i, entry) in entries.enumerated() {
                    out.append(path + [i])
                    walk(entry.value, path + [i])
                }
            case .sequence(let items):
                for (i, item) in items.enumerated() {
                    out.append(path + [i])
                    walk(item, path + [i])
                }
            case .scalar, .raw:
                break
            }
        }
        walk(self, [])
        return out
    }

    /// The node at `path`.
    public subscript(path: Path) -> Document? {
        var node = self
        for step in path {
            switch node {
            case .mapping(let entries) where entries.indices.contains(step): node = entries[step].value
            case .sequence(let items) where items.indices.contains(step): node = items[step]
            default: return nil
            }
        }
        return node
    }

    /// The dotted key path a parser would report for `path`: `target.api_hosts[1]`.
    public func keyPath(_ path: Path) -> String {
        var out = ""
        var node = self
        for step in path {
            switch node {
            case .mapping(let entries):
                out += out.isEmpty ? entries[step].key : "." + entries[step].key
                node = entries[step].value
            case .sequence(let items):
                out += "[\(step)]"
                node = items[step]
            case .scalar, .raw:
                return out
            }
        }
        return out
    }

    /// The key of the entry at `path`, nil when `path` is a list element (or the root).
    public func key(at path: Path) -> String? {
        guard let last = path.last, case .mapping(let entries)? = self[Array(path.dropLast())] else { return nil }
        return entries[last].key
    }

    /// Applies `change` to the node at `path` (the root for `[]`); a path that leads nowhere
    /// changes nothing.
    public mutating func modify(_ path: Path, _ change: (inout Document) -> Void) {
        guard let step = path.first else {
            change(&self)
            return
        }
        let rest = Array(path.dropFirst())
        switch self {
        case .mapping(var entries) where entries.indices.contains(step):
            entries[step].value.modify(rest, change)
            self = .mapping(entries)
        case .sequence(var items) where items.indices.contains(step):
            items[step].modify(rest, change)
            self = .sequence(items)
        default:
            break
        }
    }

    /// Replaces the node at `path`.
    public mutating func replace(_ path: Path, with value: Document) {
        modify(path) { $0 = value }
    }

    /// Applies `change` to the entries of the mapping that holds `path`, with the entry's index.
    public mutating func modifyEntries(around path: Path, _ change: (inout [Entry], Int) -> Void) {
        guard let last = path.last else { return }
        modify(Array(path.dropLast())) { parent in
            if case .mapping(var entries) = parent, entries.indices.contains(last) {
                change(&entries, last)
                parent = .mapping(entries)
            }
        }
    }

    /// Removes the entry or element at `path`.
    public mutating func remove(_ path: Path) {
        guard let last = path.last else { return }
        modify(Array(path.dropLast())) { parent in
            switch parent {
            case .mapping(var entries) where entries.indices.contains(last):
                entries.remove(at: last)
                parent = .mapping(entries)
            case .sequence(var items) where items.indices.contains(last):
                items.remove(at: last)
                parent = .sequence(items)
            default:
                break
            }
        }
    }

    // MARK: - Rendering

    /// The document as text: block-style YAML, or JSON (pretty, two-space indentation).
    public func render(_ format: Format) -> String {
        var out = ""
        switch format {
        case .yaml: renderYAML(into: &out, indent: 0, inList: false)
        case .json: renderJSON(into: &out, indent: 0)
        }
        if !out.hasSuffix("\n") { out += "\n" }
        return out
    }

    private func renderYAML(into out: inout String, indent: Int, inList: Bool) {
        let pad = String(repeating: " ", count: indent)
        switch self {
        case .mapping(let entries):
            if entries.isEmpty { out += "{}\n"; return }
            for (n, entry) in entries.enumerated() {
                // The first entry of a mapping inside a list goes on the dash's line.
                out += (inList && n == 0 ? "" : pad) + Self.yamlKey(entry.key) + ":"
                switch entry.value {
                case .mapping(let inner) where !inner.isEmpty:
                    out += "\n"
                    entry.value.renderYAML(into: &out, indent: indent + 2, inList: false)
                case .sequence(let inner) where !inner.isEmpty:
                    out += "\n"
                    entry.value.renderYAML(into: &out, indent: indent + 2, inList: false)
                default:
                    out += " "
                    entry.value.renderYAML(into: &out, indent: indent + 2, inList: false)
                }
            }
        case .sequence(let items):
            if items.isEmpty { out += "[]\n"; return }
            for (n, item) in items.enumerated() {
                out += (inList && n == 0 ? "" : pad) + "- "
                item.renderYAML(into: &out, indent: indent + 2, inList: true)
            }
        case .scalar(let text, .plain):
            out += text + "\n"
        case .scalar(let text, .quoted):
            out += Self.doubleQuoted(text, format: .yaml) + "\n"
        case .raw(let text):
            out += text + "\n"
        }
    }

    private func renderJSON(into out: inout String, indent: Int) {
        let pad = String(repeating: "  ", count: indent + 1)
        let close = String(repeating: "  ", count: indent)
        switch self {
        case .mapping(let entries):
            if entries.isEmpty { out += "{}"; return }
            out += "{\n"
            for (n, entry) in entries.enumerated() {
                out += pad + Self.doubleQuoted(entry.key, format: .json) + " : "
                entry.value.renderJSON(into: &out, indent: indent + 1)
                out += n == entries.count - 1 ? "\n" : ",\n"
            }
            out += close + "}"
        case .sequence(let items):
            if items.isEmpty { out += "[]"; return }
            out += "[\n"
            for (n, item) in items.enumerated() {
                out += pad
                item.renderJSON(into: &out, indent: indent + 1)
                out += n == items.count - 1 ? "\n" : ",\n"
            }
            out += close + "]"
        case .scalar(let text, .plain), .raw(let text):
            out += text
        case .scalar(let text, .quoted):
            out += Self.doubleQuoted(text, format: .json)
        }
    }

    private static func yamlKey(_ key: String) -> String {
        let plain = !key.isEmpty && key.unicodeScalars.allSatisfy { $0 == "_" || $0 == "-" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
        return plain ? key : doubleQuoted(key, format: .yaml)
    }

    /// A double-quoted string with the escapes both YAML and JSON read (`\uXXXX` for every
    /// control character, so a quoted scalar can carry one into the parsed value).
    static func doubleQuoted(_ text: String, format: Format) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (format == .yaml && (0x80...0x9F).contains(scalar.value)) {
                    out += String(format: "\\u%04X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
