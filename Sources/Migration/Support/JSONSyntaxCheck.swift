import PlainText

/// Finds where a JSON document stops being valid, to turn Foundation's bare "not valid JSON" into
/// "byte 1234 (line 40, column 7): unexpected end of data".
///
/// A small recursive-descent scanner (RFC 8259 grammar, no value construction). Stricter than
/// Foundation where Foundation would guess: a key that appears twice in one object (Foundation
/// keeps one value silently), bytes that are not UTF-8, an unpaired surrogate escape, a number
/// too large for a Double or a whole number beyond 64 bits (Foundation then reports only "not
/// valid JSON"). A leading byte order mark is allowed, as Foundation allows it. It runs
/// before every state file is decoded (a state file is kilobytes), so clarity beats speed.
struct JSONSyntaxCheck {
    /// Where and why a document is invalid.
    struct Failure: Hashable, CustomStringConvertible {
        /// 0-based byte offset of the first byte that could not be accepted (== count at end of data).
        var offset: Int
        var line: Int
        var column: Int
        var problem: String
        var description: String { "byte \(offset) (line \(line), column \(column)): \(problem)" }
    }

    /// nil when `bytes` is one valid JSON value (surrounded by optional whitespace).
    static func firstError(in bytes: [UInt8]) -> Failure? {
        var scanner = JSONSyntaxCheck(bytes: bytes)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { scanner.index = 3 }
        do throws(Stop) {
            scanner.skipWhitespace()
            try scanner.value(depth: 0)
            scanner.skipWhitespace()
            if scanner.index < bytes.count { throw scanner.fail("unexpected data after the end of the document") }
            return nil
        } catch {
            return error.failure
        }
    }

    private struct Stop: Error { var failure: Failure }

    private let bytes: [UInt8]
    private var index = 0

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ problem: String, at offset: Int? = nil) -> Stop {
        let offset = offset ?? index
        let (line, column) = UTF8Text.position(ofOffset: offset, in: bytes)
        var what = offset >= bytes.count ? "unexpected end of data (" + problem + ")" : problem
        if offset < bytes.count, bytes[offset] >= 0x80, !problem.contains("not UTF-8") {
            var iterator = bytes[offset...].makeIterator()
            var parser = Unicode.UTF8.ForwardParser()
            if case .error = parser.parseScalar(from: &iterator) {
                what = "byte 0x\(String(bytes[offset], radix: 16, uppercase: true)) is not UTF-8 (\(problem))"
            }
        }
        return Stop(failure: Failure(offset: offset, line: line, column: column, problem: what))
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(Stop) {
        guard peek() == byte else { throw fail("expected \(what)") }
        index += 1
    }

    private mutating func value(depth: Int) throws(Stop) {
        guard depth < 512 else { throw fail("nesting too deep") }
        guard let byte = peek() else { throw fail("expected a value") }
        switch byte {
        case UInt8(ascii: "{"): try object(depth: depth)
        case UInt8(ascii: "["): try array(depth: depth)
        case UInt8(ascii: "\""): try string()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
        case 0: throw fail("NUL byte (the file was probably zero-filled by a crash)")
        default: throw fail(Self.unexpected(byte, at: index, in: bytes))
        }
    }

    /// What an unexpected byte is, for a message (never the raw byte: it may be a control character).
    static func unexpected(_ byte: UInt8, at offset: Int, in bytes: [UInt8]) -> String {
        if bytes[offset...].starts(with: [0xEF, 0xBB, 0xBF]) { return "unexpected byte order mark (U+FEFF)" }
        if byte < 0x20 || byte == 0x7F { return "unexpected control character \(UTF8Text.codePoint(Unicode.Scalar(byte)))" }
        if byte >= 0x80 {
            var iterator = bytes[offset...].makeIterator()
            var parser = Unicode.UTF8.ForwardParser()
            if case .valid(let encoded) = parser.parseScalar(from: &iterator) {
                return "unexpected character \(UTF8Text.quoted(String(decoding: encoded, as: UTF8.self)))"
            }
            return "unexpected byte 0x\(String(byte, radix: 16, uppercase: true))"
        }
        return "unexpected character '\(Character(Unicode.Scalar(byte)))'"
    }

    private mutating func object(depth: Int) throws(Stop) {
        index += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { index += 1; return }
        var keys: Set<ArraySlice<UInt8>> = []
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw fail("expected a key in double quotes") }
            let keyStart = index
            try string()
            let key = bytes[(keyStart + 1)..<(index - 1)]
            guard keys.insert(key).inserted else {
                let name = UTF8Text.escaped(String(decoding: key, as: UTF8.self), limit: 60)
                throw fail("the key \"\(name)\" appears twice in this object (which value counts would be a guess)", at: keyStart)
            }
            skipWhitespace()
            try expect(UInt8(ascii: ":"), "':' after a key")
            skipWhitespace()
            try value(depth: depth + 1)
            skipWhitespace()
            if peek() == UInt8(ascii: ",") { index += 1; continue }
            try expect(UInt8(ascii: "}"), "',' or '}' in an object")
            return
        }
    }

    private mutating func array(depth: Int) throws(Stop) {
        index += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { index += 1; return }
        while true {
            skipWhitespace()
            try value(depth: depth + 1)
            skipWhitespace()
            if peek() == UInt8(ascii: ",") { index += 1; continue }
            try expect(UInt8(ascii: "]"), "',' or ']' in an array")
            return
        }
    }

    private mutating func string() throws(Stop) {
        index += 1
        while let byte = peek() {
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return
            case UInt8(ascii: "\\"):
                index += 1
                guard let escaped = peek() else { throw fail("unterminated escape in a string") }
                if escaped == UInt8(ascii: "u") {
                    let escapeStart = index - 1
                    index += 1
                    let unit = try hexUnit()
                    if (0xDC00...0xDFFF).contains(unit) {
                        throw fail("unpaired surrogate \\u\(String(unit, radix: 16, uppercase: true)) in a string", at: escapeStart)
                    }
                    if (0xD800...0xDBFF).contains(unit) {
                        let low: UInt16?
                        if peek() == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") {
                            index += 2
                            low = try hexUnit()
                        } else {
                            low = nil
                        }
                        guard let low, (0xDC00...0xDFFF).contains(low) else {
                            throw fail("unpaired surrogate \\u\(String(unit, radix: 16, uppercase: true)) in a string", at: escapeStart)
                        }
                    }
                } else {
                    guard "\"\\/bfnrt".utf8.contains(escaped) else { throw fail("invalid escape in a string") }
                    index += 1
                }
            case 0..<0x20:
                throw fail("control character \(UTF8Text.codePoint(Unicode.Scalar(byte))) inside a string (write it as an escape such as \\n)")
            case 0x80...:
                var iterator = bytes[index...].makeIterator()
                var parser = Unicode.UTF8.ForwardParser()
                guard case .valid(let encoded) = parser.parseScalar(from: &iterator) else {
                    throw fail("byte 0x\(String(byte, radix: 16, uppercase: true)) is not UTF-8")
                }
                index += encoded.count
            default:
                index += 1
            }
        }
        throw fail("unterminated string")
    }

    private mutating func hexUnit() throws(Stop) -> UInt16 {
        var unit: UInt16 = 0
        for _ in 0..<4 {
            guard let hex = peek(), hex.isHexDigit else { throw fail("expected four hex digits after \\u") }
            unit = unit << 4 | UInt16(hex.hexValue)
            index += 1
        }
        return unit
    }

    private mutating func literal(_ word: String) throws(Stop) {
        for expected in word.utf8 {
            guard peek() == expected else { throw fail("expected '\(word)'") }
            index += 1
        }
    }

    private mutating func number() throws(Stop) {
        let start = index
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), first.isDigit else { throw fail("expected a digit") }
        index += 1
        if first != UInt8(ascii: "0") { while peek()?.isDigit == true { index += 1 } }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard peek()?.isDigit == true else { throw fail("expected a digit after '.'") }
            while peek()?.isDigit == true { index += 1 }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            guard peek()?.isDigit == true else { throw fail("expected a digit in the exponent") }
            while peek()?.isDigit == true { index += 1 }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw fail("the number \(text.prefix(40)) is out of range", at: start)
        }
        // Foundation cannot read a whole number beyond 64 bits into any integer field, and says
        // only "not valid JSON"; every whole number pgha writes fits.
        if !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), Int64(text) == nil {
            throw fail("the whole number \(text.prefix(40)) does not fit in 64 bits", at: start)
        }
    }
}

private extension UInt8 {
    var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    var isHexDigit: Bool {
        isDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
    var hexValue: UInt8 {
        isDigit ? self - UInt8(ascii: "0") : (self | 0x20) - UInt8(ascii: "a") + 10
    }
}
