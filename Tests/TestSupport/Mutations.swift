import Foundation
public import PropertyBased

/// A change to a document's structure, made before rendering.
public enum DocumentMutation: Sendable, Hashable, CustomStringConvertible {
    /// Removes an entry or a list element.
    case remove(Document.Path, keyPath: String)
    /// Puts a value of another type (or a hostile scalar) where the original value was.
    case wrongType(Document.Path, keyPath: String, Document)
    /// Renames a mapping key: a typo, an unknown name, an empty or odd key.
    case renameKey(Document.Path, keyPath: String, to: String)
    /// Writes an entry twice.
    case duplicateKey(Document.Path, keyPath: String)
    /// Replaces a value by a very long one.
    case hugeValue(Document.Path, keyPath: String, length: Int)
    /// Replaces a value by lists or mappings nested `depth` levels deep.
    case deepNesting(Document.Path, keyPath: String, depth: Int)
    /// Appends a control or invisible character to a scalar (and quotes it).
    case controlCharacter(Document.Path, keyPath: String, Unicode.Scalar)

    public var description: String {
        func scalarName(_ s: Unicode.Scalar) -> String { String(format: "U+%04X", s.value) }
        switch self {
        case .remove(_, let key): return "remove \(key)"
        case .wrongType(_, let key, let value): return "\(key) = \(value.render(.json).trimmingCharacters(in: .whitespacesAndNewlines).prefix(60))"
        case .renameKey(_, let key, let name): return "rename \(key) to \"\(name)\""
        case .duplicateKey(_, let key): return "duplicate \(key)"
        case .hugeValue(_, let key, let length): return "\(key) = <\(length) characters>"
        case .deepNesting(_, let key, let depth): return "\(key) nested \(depth) deep"
        case .controlCharacter(_, let key, let scalar): return "\(key) + \(scalarName(scalar))"
        }
    }

    /// The path the mutation touched.
    public var path: Document.Path {
        switch self {
        case .remove(let p, _), .wrongType(let p, _, _), .renameKey(let p, _, _), .duplicateKey(let p, _),
             .hugeValue(let p, _, _), .deepNesting(let p, _, _), .controlCharacter(let p, _, _):
            return p
        }
    }

    /// Applies the mutation to `document`.
    public func apply(to document: inout Document, format: Document.Format) {
        switch self {
        case .remove(let path, _):
            document.remove(path)
        case .wrongType(let path, _, let value):
            document.replace(path, with: value)
        case .renameKey(let path, _, let name):
            document.modifyEntries(around: path) { entries, i in entries[i].key = name }
        case .duplicateKey(let path, _):
            document.modifyEntries(around: path) { entries, i in entries.insert(entries[i], at: i + 1) }
        case .hugeValue(let path, _, let length):
            document.replace(path, with: .quoted(String(repeating: "x", count: length)))
        case .deepNesting(let path, _, let depth):
            let text: String
            switch format {
            case .yaml: text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            case .json: text = String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
            }
            document.replace(path, with: .raw(text))
        case .controlCharacter(let path, _, let scalar):
            document.modify(path) { node in
                // Quoted, so that the character reaches the parsed value as an escape (raw
                // control bytes in the text are `ByteMutation.controlByte`'s job).
                if case .scalar(var text, _) = node {
                    text.unicodeScalars.append(scalar)
                    node = .scalar(text, .quoted)
                }
            }
        }
    }
}

/// A change to the rendered bytes.
public enum ByteMutation: Sendable, Hashable, CustomStringConvertible {
    /// Cuts the file at this byte offset.
    case truncate(at: Int)
    /// Puts a UTF-8 byte order mark first.
    case byteOrderMark
    /// Ends every line with CR LF.
    case crlf
    /// Inserts bytes that are not UTF-8 at this offset.
    case invalidUTF8([UInt8], at: Int)
    /// Inserts a raw control byte.
    case controlByte(UInt8, at: Int)
    /// Replaces the first two spaces of an indented line by a tab.
    case tabIndent(line: Int)
    /// Overwrites one byte with a character that means something to the parser.
    case overwrite(at: Int, with: UInt8)

    public var description: String {
        switch self {
        case .truncate(let at): return "cut at byte \(at)"
        case .byteOrderMark: return "BOM"
        case .crlf: return "CRLF"
        case .invalidUTF8(let bytes, let at): return "bytes \(bytes.map { String(format: "%02X", $0) }.joined(separator: " ")) at \(at)"
        case .controlByte(let byte, let at): return String(format: "byte %02X at %d", byte, at)
        case .tabIndent(let line): return "tab on line \(line)"
        case .overwrite(let at, let byte): return "byte \(at) = '\(Character(Unicode.Scalar(byte)))'"
        }
    }

    /// Mutations that do not change what a tolerant reader sees.
    public var isBenign: Bool { self == .byteOrderMark || self == .crlf }

    public func apply(to bytes: inout [UInt8]) {
        switch self {
        case .truncate(let at):
            bytes = Array(bytes.prefix(at))
        case .byteOrderMark:
            bytes.insert(contentsOf: [0xEF, 0xBB, 0xBF], at: 0)
        case .crlf:
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count + bytes.count / 16)
            for byte in bytes {
                if byte == 0x0A { out.append(0x0D) }
                out.append(byte)
            }
            bytes = out
        case .invalidUTF8(let inserted, let at):
            bytes.insert(contentsOf: inserted, at: min(at, bytes.count))
        case .controlByte(let byte, let at):
            bytes.insert(byte, at: min(at, bytes.count))
        case .tabIndent(let line):
            var starts = [0]
            for (i, byte) in bytes.enumerated() where byte == 0x0A { starts.append(i + 1) }
            guard starts.indices.contains(line) else { return }
            let start = starts[line]
            if bytes.count >= start + 2, bytes[start] == 0x20, bytes[start + 1] == 0x20 {
                bytes.replaceSubrange(start..<(start + 2), with: [0x09])
            }
        case .overwrite(let at, let byte):
            if bytes.indices.contains(at) { bytes[at] = byte }
        }
    }
}

/// A valid document after some structural and byte-level mutations.
public struct MutatedDocument: Sendable, CustomStringConvertible {
    public var original: Document
    public var document: Document
    public var structural: [DocumentMutation]
    public var byteLevel: [ByteMutation]
    public var bytes: [UInt8]

    /// What was done, short enough for a failure message (the bytes can be megabytes).
    public var description: String {
        let all = structural.map(\.description) + byteLevel.map(\.description)
        return all.isEmpty ? "(unchanged)" : all.joined(separator: "; ")
    }

    /// True when every mutation keeps the meaning (one BOM, CRLF once): the parser must accept
    /// the bytes and read the same values as from the original. (A second BOM is a U+FEFF in the
    /// text, and CR CR LF is an extra line break.)
    public var isBenign: Bool {
        structural.isEmpty && byteLevel.allSatisfy(\.isBenign) && Set(byteLevel).count == byteLevel.count
    }

    /// The text, when the bytes are UTF-8.
    public var text: String? { String(validating: bytes, as: UTF8.self) }

    /// The 0-based offset of the first byte that is not part of valid UTF-8, by the standard
    /// library's decoder (a reference independent of the code under test).
    public var firstInvalidUTF8Offset: Int? { Self.firstInvalidUTF8Offset(bytes) }

    public static func firstInvalidUTF8Offset(_ bytes: [UInt8]) -> Int? {
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded): offset += encoded.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// 1-based line of a byte offset.
    public static func line(ofOffset offset: Int, in bytes: [UInt8]) -> Int {
        1 + bytes.prefix(offset).filter { $0 == 0x0A }.count
    }
}

/// Seeded generators of structured mutations of one valid document.
public struct DocumentMutator: Sendable {
    public let document: Document
    public let format: Document.Format
    /// Mapping keys that may be renamed, duplicated or removed (nil: every key).
    public var keyFilter: (@Sendable (String) -> Bool)?

    public init(_ document: Document, format: Document.Format) {
        self.document = document
        self.format = format
    }

    /// Hostile replacements for a value, by format.
    public var replacements: [Document] {
        switch format {
        case .yaml:
            return [
                .plain("~"), .plain("null"), .plain("true"), .plain("no"), .plain("-1"), .plain("0"), .plain("3.5"),
                .plain("1e400"), .plain(".inf"), .plain("0x1F"), .plain("99999999999999999999999999"), .quoted(""),
                .quoted(" "), .quoted("${"), .quoted("$UNBRACED"), .mapping([.init("x", .plain("1"))]), .mapping([]),
                .sequence([]), .sequence([.plain("a"), .plain("b")]), .plain("'unterminated"), .plain("\"unterminated"),
                .plain("&anchor value"), .plain("*undefined_alias"), .plain("!!binary aGVsbG8="), .plain("!custom tag"),
                .plain("[1, 2"), .plain("{a: 1"), .plain("a: b: c"), .plain("- x"), .plain("@reserved"), .plain("`tick"),
                .plain("|"), .plain(">-"), .plain("%TAG"), .plain("# only a comment"),
            ]
        case .json:
            return [
                .plain("null"), .plain("true"), .plain("false"), .plain("-1"), .plain("0"), .plain("1.5"),
                .plain("1e400"), .plain("-0"), .plain("18446744073709551616"), .quoted(""), .quoted(" "),
                .quoted("x"), .quoted("1"), .mapping([]), .mapping([.init("x", .plain("1"))]), .sequence([]),
                .sequence([.plain("1"), .quoted("a")]), .raw("NaN"), .raw("'single'"), .raw("01"), .raw("1."),
                .raw("\"\\uD800\""), .raw("\"\\x41\""), .raw("[1,]"), .raw("{\"a\" 1}"),
            ]
        }
    }

    static let controlScalars: [Unicode.Scalar] = [
        "\u{0}", "\u{1}", "\u{7}", "\u{8}", "\u{B}", "\u{C}", "\u{1B}", "\u{7F}", "\u{85}", "\u{2028}", "\u{FEFF}",
        "\u{202E}", "\t", "\r", "\n",
    ]
    static let invalidSequences: [[UInt8]] = [
        [0xFF], [0xFE], [0x80], [0xC3, 0x28], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82],
    ]
    static let controlBytes: [UInt8] = [0x00, 0x01, 0x07, 0x08, 0x0B, 0x0C, 0x1B, 0x7F, 0x0D]
    static let syntaxBytes: [UInt8] = Array(":-[]{},#&*!|>'\"%@` \n\t=\\".utf8)

    /// New key names for a renamed key.
    static func renamed(_ key: String, using rng: inout some RandomNumberGenerator) -> String {
        var chars = Array(key)
        switch Int.random(in: 0..<10, using: &rng) {
        case 0 where chars.count > 2:
            chars.remove(at: Int.random(in: 0..<chars.count, using: &rng))
            return String(chars)
        case 1 where !chars.isEmpty:
            let i = Int.random(in: 0..<chars.count, using: &rng)
            chars.insert(chars[i], at: i)
            return String(chars)
        case 2: return key.uppercased() == key ? key.lowercased() : key.uppercased()
        case 3: return key.replacingOccurrences(of: "e", with: "\u{435}")  // Cyrillic е
        case 4: return ""
        case 5: return key.replacingOccurrences(of: "_", with: " ") + " "
        case 6: return "<<"
        case 7: return "zz_unknown_\(Int.random(in: 0..<1000, using: &rng))"
        case 8: return key + "\u{0}"
        default: return "1"
        }
    }

    /// One structural mutation of the document.
    public func structuralMutation(using rng: inout some RandomNumberGenerator) -> DocumentMutation? {
        let paths = document.paths
        guard !paths.isEmpty else { return nil }
        let path = paths.randomElement(using: &rng)!
        let keyPath = document.keyPath(path)
        let key = document.key(at: path)
        let keyAllowed = key.map { keyFilter?($0) ?? true } ?? false
        switch Int.random(in: 0..<10, using: &rng) {
        case 0: return .remove(path, keyPath: keyPath)
        case 1, 2: return .wrongType(path, keyPath: keyPath, replacements.randomElement(using: &rng)!)
        case 3 where keyAllowed, 4 where keyAllowed:
            return .renameKey(path, keyPath: keyPath, to: Self.renamed(key!, using: &rng))
        case 5 where keyAllowed: return .duplicateKey(path, keyPath: keyPath)
        case 6: return .hugeValue(path, keyPath: keyPath, length: [300, 70_000].randomElement(using: &rng)!)
        case 7: return .deepNesting(path, keyPath: keyPath, depth: [40, 600, 1_500, 20_000].randomElement(using: &rng)!)
        case 8, 9:
            guard case .scalar? = document[path] else { fallthrough }
            return .controlCharacter(path, keyPath: keyPath, Self.controlScalars.randomElement(using: &rng)!)
        default:
            return .wrongType(path, keyPath: keyPath, replacements.randomElement(using: &rng)!)
        }
    }

    /// One byte-level mutation of `bytes`.
    public func byteMutation(of bytes: [UInt8], using rng: inout some RandomNumberGenerator) -> ByteMutation {
        ByteMutation.random(of: bytes, using: &rng)
    }
}

extension ByteMutation {
    /// One byte-level mutation of `bytes`, of any kind.
    public static func random(of bytes: [UInt8], using rng: inout some RandomNumberGenerator) -> ByteMutation {
        typealias Self_ = DocumentMutator
        let at = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
        switch Int.random(in: 0..<8, using: &rng) {
        case 0: return .truncate(at: at)
        case 1: return .byteOrderMark
        case 2: return .crlf
        case 3: return .invalidUTF8(Self_.invalidSequences.randomElement(using: &rng)!, at: at)
        case 4: return .controlByte(Self_.controlBytes.randomElement(using: &rng)!, at: at)
        case 5:
            let lines = bytes.filter { $0 == 0x0A }.count
            return .tabIndent(line: Int.random(in: 0...max(0, lines), using: &rng))
        default: return .overwrite(at: at, with: Self_.syntaxBytes.randomElement(using: &rng)!)
        }
    }
}

extension DocumentMutator {

    /// One mutated document: 0–2 structural mutations, then 0–2 byte-level ones (at least one
    /// mutation in all); about one case in ten is only a BOM and/or CRLF, which must change nothing.
    public func mutate(using rng: inout some RandomNumberGenerator) -> MutatedDocument {
        var doc = document
        var structural: [DocumentMutation] = []
        var byteLevel: [ByteMutation] = []
        if Int.random(in: 0..<10, using: &rng) == 0 {
            byteLevel = [[ByteMutation.byteOrderMark], [.crlf], [.byteOrderMark, .crlf]].randomElement(using: &rng)!
        } else {
            let structuralCount = Int.random(in: 0...2, using: &rng)
            let byteCount = Int.random(in: (structuralCount == 0 ? 1 : 0)...2, using: &rng)
            for _ in 0..<structuralCount {
                // Paths are taken from the original, so apply each to the original's shape:
                // later mutations of a changed tree may miss, which is harmless.
                if let m = structuralMutation(using: &rng) { structural.append(m) }
            }
            for m in structural { m.apply(to: &doc, format: format) }
            var bytes = Array(doc.render(format).utf8)
            for _ in 0..<byteCount {
                let m = byteMutation(of: bytes, using: &rng)
                m.apply(to: &bytes)
                byteLevel.append(m)
            }
            return MutatedDocument(original: document, document: doc, structural: structural, byteLevel: byteLevel, bytes: bytes)
        }
        var bytes = Array(doc.render(format).utf8)
        for m in byteLevel { m.apply(to: &bytes) }
        return MutatedDocument(original: document, document: doc, structural: structural, byteLevel: byteLevel, bytes: bytes)
    }

    /// The property-based generator of mutated documents (no shrinking: a failing case is
    /// reproduced from its seed and case number, and its description lists the mutations).
    public var generator: Generator<MutatedDocument, Shrink.None<MutatedDocument>> {
        let mutator = self
        return Generator { rng in mutator.mutate(using: &rng) }
    }
}

/// Whether an error message tells the reader what to do: what was expected, a suggestion, or an
/// instruction. Every message of a parser of hand-edited files must pass this.
public func tellsTheFix(_ message: String) -> Bool {
    let phrases = [
        "expected", "did you mean", "known keys", "known:", "write", "add", "remove", "use", "save", "quote", "close",
        "indent", "choose", "lower", "raise", "rename", "restore", "move", "set", "export", "keep", "check", "start",
        "list", "fix", "delete",
    ]
    let words = message.lowercased()
    return phrases.contains { phrase in
        var searchRange = words.startIndex..<words.endIndex
        while let found = words.range(of: phrase, range: searchRange) {
            let before = found.lowerBound == words.startIndex ? " " : words[words.index(before: found.lowerBound)]
            if !before.isLetter { return true }
            searchRange = found.upperBound..<words.endIndex
        }
        return false
    }
}

/// Whether a message holds a control or invisible character (it would garble a terminal).
public func containsHiddenCharacter(_ text: String) -> Bool {
    text.unicodeScalars.contains { scalar in
        switch scalar.value {
        case 0x00...0x09, 0x0B...0x1F, 0x7F...0x9F, 0x200B...0x200F, 0x2028...0x202E, 0x2060...0x2069, 0xFEFF: return true
        default: return false
        }
    }
}
