/// The one error type of the Sandbox module.
///
/// `description` names what failed and, where useful, the log file to read; it never contains a
/// password (the sandbox keeps passwords in files and only ever names those files).
public struct SandboxError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as a stable code that callers can switch on.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A program or package the sandbox needs is not installed (see `advice`).
        public static let missingPrerequisite = Code("missingPrerequisite")
        /// The options or the stored `sandbox.json` are inconsistent (bad address, port clash…).
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// `sandbox.json` does not exist: the sandbox was never started in this base directory.
        public static let notSetUp = Code("notSetUp")
        /// Reading or writing a file or directory failed.
        public static let fileSystem = Code("fileSystem")
        /// A helper program (initdb, psql, pg_ctl, openssl…) exited with a failure.
        public static let commandFailed = Code("commandFailed")
        /// A server could not be started, or died right after starting.
        public static let startFailed = Code("startFailed")
        /// A server did not become ready (or a cluster not healthy) before the deadline.
        public static let timeout = Code("timeout")
        /// Processes were still running after `down` had sent SIGKILL.
        public static let stopFailed = Code("stopFailed")
        /// A migration's cutover froze the single node: the sandbox cannot serve another rehearsal
        /// as it is (`up --rebuild-if-spent`, or `down --purge` first).
        public static let spent = Code("spent")
    }

    public let code: Code
    /// A human-readable message without secrets.
    public let message: String
    /// What to do about it (an install command, a log file to read), if known.
    public let advice: String?
    /// The underlying error, if any.
    public let underlying: (any Error)?

    public init(_ code: Code, _ message: String, advice: String? = nil, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.advice = advice
        self.underlying = underlying
    }

    public var description: String {
        var text = message
        if let advice { text += "\n  " + advice }
        return text
    }
}
