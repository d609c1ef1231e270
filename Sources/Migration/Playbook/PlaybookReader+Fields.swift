import Foundation
import HAPool
import PlainText
import Yams

/// The playbook reader's typed fields: each reads one key, checks it, records an issue (with file, line and column) and returns nil when it is invalid, so one pass reports every problem.
extension PlaybookReader {
    // MARK: - Typed fields

    /// A mapping node with its key path.
    struct Fields {
        let node: Node
        let path: String
        let mapping: Node.Mapping

        subscript(key: String) -> Node? { mapping[key] }

        func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    }

    func mapping(_ node: Node?, path: String, allowed: [String], required: [String]) -> Fields? {
        guard let node else {
            // A required section that is absent was reported, with its place, by its parent.
            let name = path.split(separator: ".").last.map(String.init) ?? path
            if !issues.contains(where: { $0.message.hasPrefix("missing required key '\(name)'") }) {
                issue(nil, path, "is missing: add it (docs/PLAYBOOKS.md)")
            }
            return nil
        }
        guard let mapping = node.mapping else {
            issue(node, path, "expected a mapping, got \(kind(of: node))")
            return nil
        }
        let fields = Fields(node: node, path: path, mapping: mapping)
        for key in mapping.keys {
            guard let name = key.string, key.scalar != nil else {
                issue(key, path, "keys must be plain names, got \(kind(of: key)): write the key as a word")
                continue
            }
            if !allowed.contains(name) {
                let hint = Self.closest(to: name, in: allowed).map { " (did you mean '\($0)'?)" }
                    ?? " (known keys: \(allowed.joined(separator: ", ")))"
                issue(key, fields.keyPath(name), "unknown key" + hint)
            }
        }
        for key in required where mapping[key] == nil {
            issue(node, path, "missing required key '\(key)': add \(key): under \(path.isEmpty ? "the top level" : path) (docs/PLAYBOOKS.md)")
        }
        return fields
    }

    func sequence(_ node: Node, path: String, what: String) -> [Node]? {
        guard let sequence = node.sequence else {
            issue(node, path, "expected \(what), got \(kind(of: node))")
            return nil
        }
        return Array(sequence)
    }

    /// A non-empty string from a scalar (numbers are accepted as their text, e.g. a version `2.0`).
    func scalarString(_ node: Node, path: String, what: String) -> String? {
        guard let scalar = node.scalar, node.null == nil else {
            issue(node, path, "expected \(what), got \(kind(of: node))")
            return nil
        }
        let text = scalar.string.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else {
            issue(node, path, "expected \(what), got an empty string")
            return nil
        }
        if let hidden = UTF8Text.firstHiddenCharacter(in: text) {
            issue(node, path, "the value contains the control or invisible character \(hidden): remove it (an editor may not show it)")
            return nil
        }
        return text
    }

    func string(_ m: Fields, _ key: String) -> String? {
        guard let node = m[key] else { return nil }
        guard node.scalar != nil, node.string != nil, node.null == nil, node.bool == nil || node.scalar?.style != .plain else {
            issue(node, m.keyPath(key), "expected a string, got \(kind(of: node))")
            return nil
        }
        return scalarString(node, path: m.keyPath(key), what: "a string")
    }

    func optionalString(_ m: Fields, _ key: String) -> String? {
        m[key] == nil ? nil : string(m, key)
    }

    func identifier(_ m: Fields, _ key: String) -> String? {
        guard let value = string(m, key) else { return nil }
        guard !value.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "\"" || $0 == "'" }) else {
            issue(m[key], m.keyPath(key), "expected a database name without spaces, slashes or quotes, got \(UTF8Text.quoted(value))")
            return nil
        }
        guard value.utf8.count <= 63 else {
            issue(m[key], m.keyPath(key), "expected a database name of at most 63 bytes (PostgreSQL's limit), got \(value.utf8.count) bytes")
            return nil
        }
        return value
    }

    func path(_ m: Fields, _ key: String) -> String? {
        guard m[key] != nil, let value = string(m, key) else { return nil }
        if value.hasSuffix("/") {
            issue(m[key], m.keyPath(key), "expected a file path, got a directory (\(UTF8Text.quoted(value)))")
            return nil
        }
        return value
    }

    func hostName(_ m: Fields, _ key: String) -> String? {
        guard let value = string(m, key) else { return nil }
        guard Self.isHostName(value) else {
            issue(m[key], m.keyPath(key), "expected a host name or an IP address (no spaces, /, @, ?, # or quotes), got \(UTF8Text.quoted(value))")
            return nil
        }
        return value
    }

    func int(_ m: Fields, _ key: String, range: ClosedRange<Int>) -> Int? {
        guard let node = m[key] else { return nil }
        guard let scalar = node.scalar, let value = Int(scalar.string.trimmingCharacters(in: .whitespaces)) else {
            issue(node, m.keyPath(key), "expected a whole number, got \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            let bounds = range.upperBound == Int.max ? "at least \(range.lowerBound)" : "between \(range.lowerBound) and \(range.upperBound)"
            issue(node, m.keyPath(key), "expected a whole number \(bounds), got \(value)")
            return nil
        }
        return value
    }

    func choice(_ m: Fields, _ key: String, _ values: [String]) -> String? {
        guard let node = m[key] else { return nil }
        guard let text = node.scalar?.string, node.null == nil, values.contains(text) else {
            let got = node.scalar.map { UTF8Text.quoted($0.string) } ?? kind(of: node)
            issue(node, m.keyPath(key), "expected one of \(values.joined(separator: ", ")), got \(got)")
            return nil
        }
        return text
    }

    /// Seconds from `300`, `300s`, `250ms`, `5m`, `1h`.
    func duration(_ m: Fields, _ key: String) -> Double? {
        guard let node = m[key] else { return nil }
        guard let text = node.scalar?.string, let seconds = Self.parseDuration(text), seconds > 0 else {
            issue(node, m.keyPath(key), "expected a duration such as 300s, 250ms, 5m or 1h, got \(describe(node))")
            return nil
        }
        return seconds
    }

    func wholeSeconds(_ m: Fields, _ key: String) -> Int? {
        guard let seconds = duration(m, key) else { return nil }
        guard seconds >= 1, seconds == seconds.rounded() else {
            issue(m[key], m.keyPath(key), "expected whole seconds (the application reads seconds), got \(seconds)s")
            return nil
        }
        return Int(seconds)
    }

    /// Bytes from `1048576`, `512kB`, `16MB`, `1GB` (base 1024, as PostgreSQL).
    func bytes(_ m: Fields, _ key: String) -> Int64? {
        guard let node = m[key] else { return nil }
        guard let text = node.scalar?.string, let value = parseBytes(text) else {
            issue(node, m.keyPath(key), "expected a size in bytes such as 1048576, 512kB or 16MB, got \(describe(node))")
            return nil
        }
        return value
    }

    func credential(_ m: Fields, _ key: String) -> EnvironmentReference? {
        guard let node = m[key] else { return nil }
        let path = m.keyPath(key)
        guard let scalar = node.scalar, node.null == nil else {
            issue(node, path, "expected an environment variable reference such as ${PATRONI_PASSWORD}, got \(kind(of: node))")
            return nil
        }
        if let reference = EnvironmentReference(parsing: scalar.string.trimmingCharacters(in: .whitespaces)) {
            return reference
        }
        if scalar.string.contains("${") || scalar.string.contains("$") {
            issue(node, path, "expected exactly one ${ENV_VAR} reference (letters, digits and _), e.g. ${PATRONI_PASSWORD}")
        } else {
            issue(node, path, "a literal password is not allowed in a playbook; write ${ENV_VAR} and export the variable (the value is not repeated here)")
        }
        return nil
    }

    func optionalCredential(_ m: Fields, _ key: String) -> EnvironmentReference? {
        m[key] == nil ? nil : credential(m, key)
    }

    func hostPortList(_ m: Fields, _ key: String, defaultPort: Int, requireNonEmpty: Bool) -> [Playbook.HostPort]? {
        guard let node = m[key] else { return nil }
        let path = m.keyPath(key)
        guard let items = node.sequence else {
            issue(node, path, "expected a list of host[:port], got \(kind(of: node))")
            return nil
        }
        if requireNonEmpty && items.isEmpty {
            issue(node, path, "expected at least one host[:port]")
            return nil
        }
        var result: [Playbook.HostPort] = []
        var valid = true
        for (i, item) in items.enumerated() {
            guard let text = item.scalar?.string, item.null == nil, let hp = Self.parseHostPort(text, defaultPort: defaultPort) else {
                issue(item, "\(path)[\(i)]", "expected host or host:port, got \(describe(item))")
                valid = false
                continue
            }
            if result.contains(hp) {
                issue(item, "\(path)[\(i)]", "\(hp) is listed twice: remove this one")
                valid = false
            }
            result.append(hp)
        }
        return valid ? result : nil
    }

    func kind(of node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if scalar.style == .plain || scalar.style == .any {
                if node.null != nil { return "nothing (null)" }
                if node.bool != nil { return "a boolean" }
                if node.int != nil || node.float != nil { return "a number" }
            }
            return scalar.string.isEmpty ? "an empty string" : "a string"
        }
    }

    /// The node's kind, and for a short scalar its text.
    func describe(_ node: Node) -> String {
        if let scalar = node.scalar, node.null == nil {
            return "\(kind(of: node)) (\(UTF8Text.quoted(scalar.string, limit: 40)))"
        }
        return kind(of: node)
    }

    func isExtensionName(_ name: String) -> Bool {
        !name.isEmpty && name.unicodeScalars.allSatisfy { $0 == "_" || $0 == "-" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }

    static func isHostName(_ text: String) -> Bool {
        guard text.utf8.count <= 253, !text.unicodeScalars.contains(where: UTF8Text.isHidden) else { return false }
        return !text.isEmpty && text != "*" ? !text.contains(where: { $0.isWhitespace || "/@?#\"'".contains($0) }) : text == "*"
    }

    static func parseHostPort(_ raw: String, defaultPort: Int) -> Playbook.HostPort? {
        let text = raw.trimmingCharacters(in: .whitespaces)
        var host = text
        var port = defaultPort
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { return nil }
                port = p
            }
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            host = String(text[..<colon])
            guard let p = Int(text[text.index(after: colon)...]) else { return nil }
            port = p
        }
        guard !host.isEmpty, host != "*", isHostName(host), (1...65535).contains(port) else { return nil }
        return Playbook.HostPort(host: host, port: port)
    }

    static func parseDuration(_ raw: String) -> Double? {
        let text = raw.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value.isFinite, value >= 0 else { return nil }
            return value * factor
        }
        guard let value = Double(text), value.isFinite, value >= 0 else { return nil }
        return value
    }

    /// The known key closest to `word` by edit distance, if close enough to be a typo.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let limit = max(1, min(3, word.count / 3))
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0)) }.filter { $0.1 <= limit }
        return scored.min { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }?.0
    }

    /// Levenshtein distance.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
