import Foundation

/// A `.env` file: `KEY=value` lines, `#` comments, optional `export ` prefix, single quotes (literal),
/// double quotes (with `\n`, `\"`, `\\` escapes), unquoted values with trailing ` # comment`.
public enum DotEnv {
    /// Parses `.env` text. Errors name the line number, never the value.
    public static func parse(_ text: String, file: String = ".env") throws(ConfigurationError) -> [String: String] {
        var result: [String: String] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            line = line.drop(while: { $0 == " " || $0 == "\t" })
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst("export ".count).drop(while: { $0 == " " }) }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigurationError(.unreadableFile, key: "\(file):\(index + 1)", "expected KEY=value")
            }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, key.allSatisfy({ $0 == "_" || $0.isLetter || $0.isNumber }), !(key.first?.isNumber ?? true) else {
                throw ConfigurationError(.unreadableFile, key: "\(file):\(index + 1)", "invalid variable name")
            }
            let rest = line[line.index(after: eq)...].drop(while: { $0 == " " || $0 == "\t" })
            result[key] = try value(rest, location: "\(file):\(index + 1)")
        }
        return result
    }

    /// Reads and parses a `.env` file.
    public static func load(path: String) throws(ConfigurationError) -> [String: String] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(.unreadableFile, key: path, "cannot read the file (\(error.localizedDescription))")
        }
        return try parse(text, file: path)
    }

    private static func value(_ text: Substring, location: String) throws(ConfigurationError) -> String {
        guard let first = text.first else { return "" }
        if first == "'" {
            let body = text.dropFirst()
            guard let end = body.firstIndex(of: "'") else {
                throw ConfigurationError(.unreadableFile, key: location, "unterminated single quote")
            }
            return String(body[..<end])
        }
        if first == "\"" {
            var out = ""
            var escaped = false
            for ch in text.dropFirst() {
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
                    return out
                } else {
                    out.append(ch)
                }
            }
            throw ConfigurationError(.unreadableFile, key: location, "unterminated double quote")
        }
        var value = Substring(text)
        if let hash = value.range(of: " #") { value = value[..<hash.lowerBound] }
        return value.trimmingCharacters(in: .whitespaces)
    }
}
