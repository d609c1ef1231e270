/// Reading hand-edited text files (playbooks, `.env`, YAML configuration) and quoting their values
/// in error messages: where a file stops being UTF-8, which control character a value hides, and
/// a value shortened and escaped so that a message stays one readable line.
public enum UTF8Text {
    /// The first byte that is not part of valid UTF-8.
    public struct InvalidByte: Error, Hashable, Sendable, CustomStringConvertible {
        /// 0-based byte offset.
        public var offset: Int
        /// 1-based line and column (characters, counted as Unicode scalars).
        public var line: Int
        public var column: Int
        /// The offending byte.
        public var byte: UInt8

        public var description: String {
            "byte \(offset) (line \(line), column \(column)) is not UTF-8 (0x\(String(byte, radix: 16, uppercase: true)))"
        }
    }

    /// The text of `bytes`, without a leading byte order mark (editors on Windows add one).
    public static func decode(_ bytes: [UInt8]) -> Result<String, InvalidByte> {
        let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(bytes.dropFirst(3)) : bytes
        if let text = String(validating: body, as: UTF8.self) { return .success(text) }
        let offset = firstInvalidOffset(body) ?? 0
        let skipped = body.count == bytes.count ? 0 : 3
        let (line, column) = position(ofOffset: offset, in: body)
        return .failure(InvalidByte(offset: offset + skipped, line: line, column: column, byte: body[min(offset, body.count - 1)]))
    }

    /// The 0-based offset of the first byte that does not decode, nil when all of them do.
    public static func firstInvalidOffset(_ bytes: [UInt8]) -> Int? {
        var offset = 0
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded): offset += encoded.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// 1-based line and column of a byte offset (columns count characters: bytes that do not
    /// continue a UTF-8 sequence).
    public static func position(ofOffset offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for byte in bytes[0..<min(max(0, offset), bytes.count)] {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }

    /// 1-based line and column of a character offset in `text` (as Yams reports reader errors).
    public static func position(ofCharacter offset: Int, in text: String) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for (index, character) in text.enumerated() {
            if index >= offset { break }
            if character == "\n" || character == "\r\n" {
                line += 1
                column = 1
            } else {
                column += character.unicodeScalars.count
            }
        }
        return (line, column)
    }

    /// Whether a scalar is a control character or an invisible character that changes how text
    /// reads (line separators, bidirectional overrides, zero-width characters, a byte order mark).
    public static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x200B...0x200F, 0x2028...0x202E, 0x2060...0x2069, 0xFEFF: return true
        default: return false
        }
    }

    /// The first control or invisible character of `text`, as `U+XXXX`, nil when there is none.
    public static func firstHiddenCharacter(in text: String) -> String? {
        text.unicodeScalars.first(where: isHidden).map(codePoint)
    }

    /// `U+0007`.
    public static func codePoint(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    /// `value` in double quotes for an error message: control and invisible characters written as
    /// `<U+0007>`, and at most `limit` characters (a file can hold a megabyte on one line).
    public static func quoted(_ value: String, limit: Int = 60) -> String {
        "\"" + escaped(value, limit: limit) + "\""
    }

    /// `value` with control and invisible characters written as `<U+0007>`, cut after `limit`
    /// characters (with `…`): for keys and values that come from a file into a message.
    public static func escaped(_ value: String, limit: Int = 200) -> String {
        var out = ""
        var count = 0
        for scalar in value.unicodeScalars {
            if count == limit {
                out += "…"
                break
            }
            if isHidden(scalar) {
                out += "<" + codePoint(scalar) + ">"
            } else {
                out.unicodeScalars.append(scalar)
            }
            count += 1
        }
        return out
    }
}
