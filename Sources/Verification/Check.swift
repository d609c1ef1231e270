public import Foundation

/// PASS, WARN, FAIL — or SKIP when a check does not apply (e.g. replica reads in single-node mode).
///
/// Ordered by severity: SKIP < PASS < WARN < FAIL, so the worst verdict of a list is its `max()`.
/// A migration gate advances on PASS, WARN and SKIP; any FAIL blocks it.
public enum Verdict: String, Sendable, Codable, Hashable, Comparable, CaseIterable {
    case pass = "PASS"
    case warn = "WARN"
    case fail = "FAIL"
    case skip = "SKIP"

    private var severity: Int {
        switch self {
        case .skip: return 0
        case .pass: return 1
        case .warn: return 2
        case .fail: return 3
        }
    }

    public static func < (lhs: Verdict, rhs: Verdict) -> Bool { lhs.severity < rhs.severity }
}

/// The result of one check: what was observed, what was expected, and what to do if it failed.
///
/// The one check type of pgha: the verification suite produces it, and every migration gate is a
/// list of it (stored in the migration state file and shown in reports). Everything in it may end
/// up on disk or in a terminal, so `observed` must never hold a secret or a connection string.
public struct CheckResult: Sendable, Codable, Hashable {
    /// The verdict type, also reachable as `CheckResult.Verdict`.
    public typealias Verdict = Verification.Verdict

    /// A stable, short name, e.g. `cluster.members` or `file.env_file`.
    public var name: String
    public var verdict: Verdict
    /// What the check saw, e.g. "leader 127.0.0.11:15432, 2 replicas streaming".
    public var observed: String
    /// What the check wanted (e.g. `>= 3`), when it says.
    public var expected: String?
    /// What to do when it failed or warned.
    public var advice: String?
    /// How long the check (or the observation it evaluates) took; 0 when not measured.
    public var durationMs: Double

    public init(name: String, verdict: Verdict, observed: String, expected: String? = nil, advice: String? = nil, durationMs: Double = 0) {
        self.name = name
        self.verdict = verdict
        self.observed = observed
        self.expected = expected
        self.advice = advice
        self.durationMs = durationMs
    }

    /// A passing check.
    public static func pass(_ name: String, observed: String, expected: String? = nil) -> CheckResult {
        CheckResult(name: name, verdict: .pass, observed: observed, expected: expected)
    }

    /// A warning: worth reading, does not block a gate.
    public static func warn(_ name: String, observed: String, expected: String? = nil, advice: String) -> CheckResult {
        CheckResult(name: name, verdict: .warn, observed: observed, expected: expected, advice: advice)
    }

    /// A failing check with its advice.
    public static func fail(_ name: String, observed: String, expected: String? = nil, advice: String) -> CheckResult {
        CheckResult(name: name, verdict: .fail, observed: observed, expected: expected, advice: advice)
    }

    enum CodingKeys: String, CodingKey {
        case name, verdict, observed, expected, advice, durationMs
    }

    /// Reads `durationMs` as 0 when absent (migration state files written before it existed).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        verdict = try c.decode(Verdict.self, forKey: .verdict)
        observed = try c.decode(String.self, forKey: .observed)
        expected = try c.decodeIfPresent(String.self, forKey: .expected)
        advice = try c.decodeIfPresent(String.self, forKey: .advice)
        durationMs = try c.decodeIfPresent(Double.self, forKey: .durationMs) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(verdict, forKey: .verdict)
        try c.encode(observed, forKey: .observed)
        try c.encodeIfPresent(expected, forKey: .expected)
        try c.encodeIfPresent(advice, forKey: .advice)
        try c.encode(durationMs, forKey: .durationMs)
    }
}

extension Array where Element == CheckResult {
    /// The worst verdict (PASS for an empty list; SKIP only when every check was skipped).
    public var worstVerdict: Verdict { map(\.verdict).max() ?? .pass }
}

/// A check as a value: a name and how to run it.
public struct Check: Sendable {
    public let name: String
    public let run: @Sendable () async -> CheckResult

    public init(name: String, run: @escaping @Sendable () async -> CheckResult) {
        self.name = name
        self.run = run
    }
}

/// Results of a suite, with the seed's summary.
public struct VerificationReport: Sendable, Codable {
    public var checks: [CheckResult]
    public var startedAt: Date
    public var mode: String

    public init(checks: [CheckResult], startedAt: Date, mode: String) {
        self.checks = checks
        self.startedAt = startedAt
        self.mode = mode
    }

    public var passed: Int { checks.filter { $0.verdict == .pass }.count }
    public var failed: Int { checks.filter { $0.verdict == .fail }.count }
    public var warned: Int { checks.filter { $0.verdict == .warn }.count }
    /// Checks that ran (SKIP excluded).
    public var total: Int { checks.filter { $0.verdict != .skip }.count }
    public var allPassed: Bool { failed == 0 }

    /// The seed's text summary: a line per check, then the total.
    public func text() -> String {
        var lines = [String(repeating: "=", count: 60), "TEST SUMMARY", String(repeating: "=", count: 60)]
        for check in checks {
            let mark: String
            switch check.verdict {
            case .pass: mark = "✓ PASS"
            case .warn: mark = "! WARN"
            case .fail: mark = "✗ FAIL"
            case .skip: mark = "- SKIP"
            }
            lines.append("\(mark): \(check.name) — \(check.observed)")
            if check.verdict == .fail || check.verdict == .warn, let advice = check.advice {
                lines.append("        → \(advice)")
            }
        }
        lines.append("")
        lines.append("Total: \(passed)/\(total) tests passed" + (warned > 0 ? " (\(warned) with warnings)" : ""))
        return lines.joined(separator: "\n")
    }

    /// JSON for automation, stable key order.
    public func json() -> String {
        struct Envelope: Encodable {
            let mode: String
            let startedAt: Date
            let passed: Int
            let failed: Int
            let total: Int
            let allPassed: Bool
            let checks: [CheckResult]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        let envelope = Envelope(mode: mode, startedAt: startedAt, passed: passed, failed: failed, total: total, allPassed: allPassed, checks: checks)
        return (try? encoder.encode(envelope)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }
}

/// Runs checks in order, timing each.
public enum CheckRunner {
    public static func run(_ checks: [Check]) async -> [CheckResult] {
        var results: [CheckResult] = []
        for check in checks {
            let started = ContinuousClock.now
            var result = await check.run()
            let elapsed = ContinuousClock.now - started
            result.durationMs = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            results.append(result)
        }
        return results
    }
}
