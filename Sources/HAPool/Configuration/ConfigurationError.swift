/// A configuration problem: a variable missing or malformed, a placeholder password, an unreadable
/// `.env` or YAML file. The message names the variable or key and the value's *shape*, never a
/// password, and says what to do; a value from a file carries the file, line and column.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible, Hashable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }
        /// A required variable or key is absent.
        public static let missing = Code(raw: "missing")
        /// A value has the wrong form (not a number, unknown sslmode, port out of range, …).
        public static let invalidValue = Code(raw: "invalid_value")
        /// A password is a placeholder such as the seed's `CHANGE_ME_TO_STRONG_PASSWORD_32_CHARS_MIN`.
        public static let placeholderPassword = Code(raw: "placeholder_password")
        /// A `.env` or YAML file cannot be read or parsed.
        public static let unreadableFile = Code(raw: "unreadable_file")
    }

    public var code: Code
    /// The variable or key concerned, e.g. `PATRONI_PORT` or `memory.postgresql.patroni.apiPort`
    /// (empty for a syntax error that belongs to no key).
    public var key: String
    /// What is wrong and what to do, e.g. `expected a whole number in 1…65535, got "eighty"`.
    public var message: String
    /// The `.env` or YAML file the value came from; nil for the process environment.
    public var file: String?
    /// 1-based line and column in `file`, when known.
    public var line: Int?
    public var column: Int?

    public init(_ code: Code, key: String, _ message: String, file: String? = nil, line: Int? = nil, column: Int? = nil) {
        self.code = code
        self.key = key
        self.message = message
        self.file = file
        self.line = line
        self.column = column
    }

    /// `app.env:12:15: PATRONI_PORT: expected a whole number in 1…65535, got "eighty"`; without a
    /// file, `PATRONI_PORT: …`.
    public var description: String {
        var place = file ?? ""
        if file != nil, let line {
            place += ":\(line)"
            if let column { place += ":\(column)" }
        }
        let subject = [place, key].filter { !$0.isEmpty }.joined(separator: ": ")
        return subject.isEmpty ? message : "\(subject): \(message)"
    }

    /// The same error, placed in `file` (keeps a place already set).
    func located(file: String?, line: Int?, column: Int?) -> ConfigurationError {
        guard self.file == nil else { return self }
        var copy = self
        copy.file = file
        copy.line = line
        copy.column = column
        return copy
    }
}

/// Recognises placeholder passwords that must never reach a server.
public enum PlaceholderPassword {
    static let exact: Set<String> = [
        "changeme", "change_me", "change-me", "password", "your_password", "yourpassword",
        "<password>", "secret", "xxx", "todo",
    ]

    /// True for the seed's `CHANGE_ME…` family and a few common stand-ins.
    public static func isPlaceholder(_ password: String) -> Bool {
        let lowered = password.lowercased()
        return lowered.hasPrefix("change_me") || lowered.hasPrefix("changeme") || exact.contains(lowered)
            || (lowered.hasPrefix("<") && lowered.hasSuffix(">"))
    }
}
