/// One check's outcome: what was looked at, what was seen, what was wanted, and what to do.
///
/// Gates are lists of these; the verification suite produces the same shape. Everything in it
/// ends up in the state file and in reports, so `observed` must never hold a secret (the runner
/// redacts known secrets, but a check should not put connection strings here in the first place).
public struct CheckResult: Hashable, Sendable, Codable {
    /// PASS: fine. WARN: worth reading, does not block the gate. FAIL: blocks the gate.
    public enum Verdict: String, Hashable, Sendable, Codable, Comparable, CaseIterable {
        case pass = "PASS"
        case warn = "WARN"
        case fail = "FAIL"

        private var rank: Int {
            switch self {
            case .pass: return 0
            case .warn: return 1
            case .fail: return 2
            }
        }

        public static func < (lhs: Verdict, rhs: Verdict) -> Bool { lhs.rank < rhs.rank }
    }

    /// A stable, short name, e.g. `members.count` or `file.app_env`.
    public var name: String
    public var verdict: Verdict
    /// What was observed, as text (e.g. `2 members running`).
    public var observed: String
    /// What the check wanted (e.g. `>= 3`).
    public var expected: String
    /// What to do when the verdict is not PASS.
    public var advice: String?

    public init(name: String, verdict: Verdict, observed: String, expected: String, advice: String? = nil) {
        self.name = name
        self.verdict = verdict
        self.observed = observed
        self.expected = expected
        self.advice = advice
    }

    /// A passing check.
    public static func pass(_ name: String, observed: String, expected: String) -> CheckResult {
        CheckResult(name: name, verdict: .pass, observed: observed, expected: expected)
    }

    /// A failing check with its advice.
    public static func fail(_ name: String, observed: String, expected: String, advice: String) -> CheckResult {
        CheckResult(name: name, verdict: .fail, observed: observed, expected: expected, advice: advice)
    }

    /// This check with every known secret masked.
    public func redacted(by redactor: SecretRedactor) -> CheckResult {
        CheckResult(
            name: redactor.redact(name), verdict: verdict, observed: redactor.redact(observed),
            expected: redactor.redact(expected), advice: advice.map(redactor.redact)
        )
    }
}

extension Array where Element == CheckResult {
    /// The worst verdict (PASS for an empty list).
    public var worstVerdict: CheckResult.Verdict { map(\.verdict).max() ?? .pass }
}

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
