/// The one error type of the Migration module.
///
/// `description` is safe to print and to store: it never contains a password or a full DSN (stage
/// executors must pass messages through `SecretRedactor` before building an error from text that
/// could hold one). Playbook validation errors carry every problem found in `issues`, each naming
/// the file, line, column and key.
public struct MigrationError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, as a stable code. New codes may be added; switch with a fallback.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The playbook is not valid YAML or does not match the schema (`issues` lists why).
        public static let playbookInvalid = Code("playbookInvalid")
        /// A file could not be read or written (the message names it and the system error).
        public static let io = Code("io")
        /// No state file exists in the state directory (nothing to resume, roll back or show).
        public static let stateNotFound = Code("stateNotFound")
        /// The state file exists but is not valid JSON or does not match the schema.
        public static let stateCorrupt = Code("stateCorrupt")
        /// The state file was written by a newer pgha with a schema this one cannot read.
        public static let stateTooNew = Code("stateTooNew")
        /// The state file belongs to another playbook, or the playbook changed since the state was written.
        public static let playbookChanged = Code("playbookChanged")
        /// Another runner holds the lock of the state directory.
        public static let locked = Code("locked")
        /// An environment variable referenced by the playbook (`${VAR}`) is not set.
        public static let environmentVariableMissing = Code("environmentVariableMissing")
        /// A template is missing or does not parse.
        public static let templateInvalid = Code("templateInvalid")
        /// A file pgha manages changed outside pgha in a way that makes the next step unsafe.
        public static let fileChangedExternally = Code("fileChangedExternally")
        /// The run was interrupted (SIGINT/SIGTERM or task cancellation); state is saved.
        public static let interrupted = Code("interrupted")
        /// The stage engine rejected an event (a bug, or a state file edited by hand).
        public static let invalidTransition = Code("invalidTransition")
        /// No executor is registered for a stage the engine asked to run.
        public static let stageUnavailable = Code("stageUnavailable")
        /// A libcrypto call failed.
        public static let crypto = Code("crypto")
        /// A stage could not do its work (the message says what and why).
        public static let stageFailed = Code("stageFailed")
    }

    /// One problem found while validating a playbook.
    public struct Issue: Hashable, Sendable, CustomStringConvertible {
        /// The playbook's path as given by the caller.
        public var file: String
        /// Line and column (1-based) of the offending node, when known.
        public var line: Int?
        public var column: Int?
        /// Dotted key path, e.g. `target.api_hosts[1]`.
        public var key: String
        public var message: String

        public init(file: String, line: Int?, column: Int?, key: String, message: String) {
            self.file = file
            self.line = line
            self.column = column
            self.key = key
            self.message = message
        }

        /// `playbooks/x.yml:12:5: target.api_hosts: expected a list of host[:port], got a number`
        public var description: String {
            var location = file
            if let line { location += ":\(line)" }
            if let column, line != nil { location += ":\(column)" }
            return key.isEmpty ? "\(location): \(message)" : "\(location): \(key): \(message)"
        }
    }

    public var code: Code
    /// A safe, human-readable message (no secrets).
    public var message: String
    /// The file concerned, if any.
    public var path: String?
    /// Playbook validation problems (only for `.playbookInvalid`).
    public var issues: [Issue]
    /// The underlying error, if any. Never printed by `description`.
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, path: String? = nil, issues: [Issue] = [], underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.issues = issues
        self.underlying = underlying
    }

    public var description: String {
        if issues.isEmpty { return message }
        return ([message] + issues.map { "  " + $0.description }).joined(separator: "\n")
    }

    /// The process exit code a command should use when it fails with this error.
    public var exitCode: MigrationExitCode {
        switch code {
        case .playbookInvalid, .playbookChanged, .environmentVariableMissing, .templateInvalid: return .usage
        case .locked: return .locked
        case .stateCorrupt, .stateTooNew, .stateNotFound: return .stateUnreadable
        case .interrupted: return .interrupted
        default: return .failure
        }
    }
}
