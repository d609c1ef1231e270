import Foundation
import PlainText

/// A `.env` file: `KEY=value` lines, `#` comments, optional `export ` prefix, single quotes (literal),
/// double quotes (with `\n`, `\t`, `\"`, `\\` escapes), unquoted values with trailing ` # comment`.
/// A value ends on its line. CRLF line ends and a leading byte order mark are accepted.
///
/// Refused, each with file, line, column and the fix (never the value, which may be a password):
/// a line without `=`, an invalid variable name, an unterminated quote, text after a closing quote,
/// a variable set twice (python-dotenv would silently keep the last), a control or invisible
/// character in an unquoted value (quoted values may hold any character), bytes that are not UTF-8.
public enum DotEnv {
    /// One `KEY=value` line.
    public struct Entry: Sendable, Hashable {
        public var key: String
        public var value: String
        /// 1-based line, and the column where the value starts.
        public var line: Int
        public var column: Int
    }

    /// Parses `.env` text.
    public static func parse(_ text: String, file: String = ".env") throws(ConfigurationError) -> [String: String] {
        var result: [String: String] = [:]
        for entry in try entries(text, file: file) { result[entry.key] = entry.value }
        return result
    }

    /// Parses `.env` text into its entries, in order.
    public static func entries(_ text: String, file: String = ".env") throws(ConfigurationError) -> [Entry] {
        var result: [Entry] = []
        var lineOf: [String: Int] = [:]
        let body = text.hasPrefix("\u{FEFF}") ? Substring(text.dropFirst()) : Substring(text)
        // "\r\n" is one Character: splitting on "\n" alone would leave a CRLF file in one line.
        for (index, rawLine) in body.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let number = index + 1
            func error(_ message: String, key: String = "", at position: Substring.Index? = nil) -> ConfigurationError {
                let column = position.map { rawLine.unicodeScalars.distance(from: rawLine.startIndex, to: $0) + 1 } ?? 1
                return ConfigurationError(.unreadableFile, key: key, message, file: file, line: number, column: column)
            }
            var line = Substring(rawLine)
            line = line.drop(while: { $0 == " " || $0 == "\t" })
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") || line.hasPrefix("export\t") {
                line = line.dropFirst("export ".count).drop(while: { $0 == " " || $0 == "\t" })
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw error("expected KEY=value: write the variable as NAME=value, or start a comment with #", at: line.startIndex)
            }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, key.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }), !(key.first?.isNumber ?? true) else {
                throw error(
                    "invalid variable name \(UTF8Text.quoted(key, limit: 40)): use letters, digits and _, not starting with a digit",
                    at: line.startIndex
                )
            }
            if let first = lineOf[key] {
                throw error("\(key) is set twice (lines \(first) and \(number)): keep one of them", key: key, at: line.startIndex)
            }
            let rest = line[line.index(after: eq)...].drop(while: { $0 == " " || $0 == "\t" })
            let value = try self.value(rest) { message, position in error(message, key: key, at: position) }
            lineOf[key] = number
            let column = rawLine.unicodeScalars.distance(from: rawLine.startIndex, to: rest.startIndex) + 1
            result.append(Entry(key: key, value: value, line: number, column: column))
        }
        return result
    }

    /// Reads and parses a `.env` file.
    public static func load(path: String) throws(ConfigurationError) -> [String: String] {
        var result: [String: String] = [:]
        for entry in try loadEntries(path: path) { result[entry.key] = entry.value }
        return result
    }

    /// Reads a `.env` file into its entries.
    public static func loadEntries(path: String) throws(ConfigurationError) -> [Entry] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ConfigurationError(
                .unreadableFile, key: "", "cannot read the file (\(error.localizedDescription)): check that it exists and is readable",
                file: path
            )
        }
        return try entries(bytes: Array(data), file: path)
    }

    /// Parses the bytes of a `.env` file (UTF-8, a leading byte order mark allowed).
    public static func entries(bytes: [UInt8], file: String) throws(ConfigurationError) -> [Entry] {
        switch UTF8Text.decode(bytes) {
        case .success(let text):
            return try entries(text, file: file)
        case .failure(let invalid):
            throw ConfigurationError(
                .unreadableFile, key: "", "\(invalid): save the file as UTF-8", file: file, line: invalid.line, column: invalid.column
            )
        }
    }

    private static func value(
        _ text: Substring, _ error: (String, Substring.Index) -> ConfigurationError
    ) throws(ConfigurationError) -> String {
        guard let first = text.first else { return "" }
        /// After a closing quote only a comment may follow.
        func checkTail(_ tail: Substring) throws(ConfigurationError) {
            let rest = tail.drop(while: { $0 == " " || $0 == "\t" })
            guard rest.isEmpty || rest.hasPrefix("#") else {
                throw error("unexpected text after the closing quote: put the whole value inside the quotes", rest.startIndex)
            }
        }
        if first == "'" {
            let body = text.dropFirst()
            guard let end = body.firstIndex(of: "'") else {
                throw error("unterminated single quote: close it with ' on the same line (a value cannot span lines)", text.startIndex)
            }
            try checkTail(body[body.index(after: end)...])
            return String(body[..<end])
        }
        if first == "\"" {
            var out = ""
            var escaped = false
            var index = text.index(after: text.startIndex)
            while index < text.endIndex {
                let ch = text[index]
                if escaped {
                    switch ch {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    default: out.append(ch)
                    }
                    escaped = false
                } else if ch == "\\" {
                    escaped = true
                } else if ch == "\"" {
                    try checkTail(text[text.index(after: index)...])
                    return out
                } else {
                    out.append(ch)
                }
                index = text.index(after: index)
            }
            throw error("unterminated double quote: close it with \" on the same line (write \\n for a line break)", text.startIndex)
        }
        var value = Substring(text)
        if let hash = value.range(of: " #") { value = value[..<hash.lowerBound] }
        // Unquoted, a control character is a mistake (a quoted value may hold any character:
        // pgha writes passwords that way).
        if let hidden = value.unicodeScalars.firstIndex(where: { $0 != "\t" && UTF8Text.isHidden($0) }) {
            throw error(
                "the value contains the control or invisible character \(UTF8Text.codePoint(value.unicodeScalars[hidden])): remove it, or quote the value",
                hidden
            )
        }
        return value.trimmingCharacters(in: .whitespaces)
    }
}
