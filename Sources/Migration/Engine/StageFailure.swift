/// Why a stage did not pass: its run threw, or its gate had a FAIL.
public struct StageFailure: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable, Codable {
        /// The stage's run could not do its work.
        case run
        /// The run finished but the gate found a FAIL.
        case gate
    }

    public var kind: Kind
    /// A safe, human-readable explanation.
    public var message: String
    /// For a gate failure, the checks (all of them, so the operator sees the full picture).
    public var checks: [CheckResult]

    public init(kind: Kind, message: String, checks: [CheckResult] = []) {
        self.kind = kind
        self.message = message
        self.checks = checks
    }

    /// A gate failure summarising the failing checks.
    public static func gate(_ checks: [CheckResult]) -> StageFailure {
        let failing = checks.filter { $0.verdict == .fail }.map(\.name)
        return StageFailure(kind: .gate, message: "gate failed: " + failing.joined(separator: ", "), checks: checks)
    }

    public var description: String { message }
}
