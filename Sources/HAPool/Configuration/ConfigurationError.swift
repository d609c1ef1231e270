/// A configuration problem: a variable missing or malformed, a placeholder password, an unreadable
/// `.env` or YAML file. The message names the variable or key and the value's *shape*, never a
/// password.
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
    /// The variable or key concerned, e.g. `PATRONI_PORT` or `memory.postgresql.patroni.apiPort`.
    public var key: String
    public var message: String

    public init(_ code: Code, key: String, _ message: String) {
        self.code = code
        self.key = key
        self.message = message
    }

    public var description: String { "\(key): \(message)" }
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
