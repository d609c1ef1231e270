/// Finds where a JSON document stops being valid, to turn Foundation's bare "not valid JSON" into
/// "byte 1234 (line 40, column 7): unexpected end of data".
///
/// A small recursive-descent scanner (RFC 8259 grammar, no value construction). It is only run on
/// a state file that failed to decode, so clarity beats speed.
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

    private func fail(_ problem: String) -> Stop {
        var line = 1
        var column = 1
        for byte in bytes[0..<min(index, bytes.count)] {
            if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else if byte & 0xC0 != 0x80 { column += 1 }
        }
        let what = index >= bytes.count ? "unexpected end of data (" + problem + ")" : problem
        return Stop(failure: Failure(offset: index, line: line, column: column, problem: what))
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
        default: throw fail("unexpected character '\(Character(UnicodeScalar(byte)))'")
        }
    }

    private mutating func object(depth: Int) throws(Stop) {
        index += 1
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { index += 1; return }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw fail("expected a key in double quotes") }
            try string()
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
                    index += 1
                    for _ in 0..<4 {
                        guard let hex = peek(), hex.isHexDigit else { throw fail("expected four hex digits after \\u") }
                        index += 1
                    }
                } else {
                    guard "\"\\/bfnrt".utf8.contains(escaped) else { throw fail("invalid escape in a string") }
                    index += 1
                }
            case 0..<0x20:
                throw fail("control character inside a string")
            default:
                index += 1
            }
        }
        throw fail("unterminated string")
    }

    private mutating func literal(_ word: String) throws(Stop) {
        for expected in word.utf8 {
            guard peek() == expected else { throw fail("expected '\(word)'") }
            index += 1
        }
    }

    private mutating func number() throws(Stop) {
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
    }
}

private extension UInt8 {
    var isDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    var isHexDigit: Bool {
        isDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f")) || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
}
