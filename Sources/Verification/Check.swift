public import Foundation

/// PASS, WARN, FAIL — or SKIP when a check does not apply (e.g. replica reads in single-node mode).
public enum Verdict: String, Sendable, Codable, Hashable {
    case pass = "PASS"
    case warn = "WARN"
    case fail = "FAIL"
    case skip = "SKIP"
}

/// The result of one check: what was observed, what was expected, and what to do if it failed.
public struct CheckResult: Sendable, Codable, Hashable {
    public var name: String
    public var verdict: Verdict
    /// What the check saw, e.g. "leader 127.0.0.11:15432, 2 replicas streaming".
    public var observed: String
    public var expected: String?
    /// What to do when it failed or warned.
    public var advice: String?
    public var durationMs: Double

    public init(name: String, verdict: Verdict, observed: String, expected: String? = nil, advice: String? = nil, durationMs: Double = 0) {
        self.name = name
        self.verdict = verdict
        self.observed = observed
        self.expected = expected
        self.advice = advice
        self.durationMs = durationMs
    }
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
