public import Foundation
public import ShadowCompare
import PlainText

/// The shadow stage's report: per statement fingerprint the counts and latencies per side, every
/// kept mismatch with its statement, parameters (secrets masked) and rows, the canary, and the
/// limits the gate applies. Kept in the state directory (`shadow/report.json`, `shadow/report.txt`)
/// for `pgha status`.
public struct ShadowReport: Sendable, Hashable, Codable {
    public var startedAt: Date
    public var finishedAt: Date
    public var seconds: Double
    public var members: [String]
    public var traffic: Traffic
    public var totals: Totals
    /// Executions per second (each: twice on the single node, once on a member).
    public var replayRate: Double
    /// By side: `single node`, `cluster`, and each member.
    public var latency: [String: LatencySummary]
    public var statements: [StatementReport]
    public var mismatches: [Example]
    /// The first noisy execution of up to 5 statements.
    public var noise: [Example]
    public var lag: [Example]
    public var canary: [CanaryResult]
    public var limits: Limits

    public struct Traffic: Sendable, Hashable, Codable {
        public var workloadFile: String?
        public var workloadStatements: Int
        public var capture: CaptureSummary?

        public init(workloadFile: String?, workloadStatements: Int, capture: CaptureSummary?) {
            self.workloadFile = workloadFile
            self.workloadStatements = workloadStatements
            self.capture = capture
        }
    }

    public struct CaptureSummary: Sendable, Hashable, Codable {
        public var windowSeconds: Double
        public var logBytes: Int64
        /// Statements of the project database the window logged.
        public var seen: Int
        /// Read-only statements kept (distinct texts: `distinct`).
        public var kept: Int
        public var distinct: Int
        public var refused: [String: Int]
        public var overLimit: Int

        public init(windowSeconds: Double, logBytes: Int64, seen: Int, kept: Int, distinct: Int, refused: [String: Int], overLimit: Int) {
            self.windowSeconds = windowSeconds
            self.logBytes = logBytes
            self.seen = seen
            self.kept = kept
            self.distinct = distinct
            self.refused = refused
            self.overLimit = overLimit
        }
    }

    public struct Totals: Sendable, Hashable, Codable {
        public var executions = 0
        public var matches = 0
        public var mismatches = 0
        public var noise = 0
        public var lag = 0
        public var bothFailed = 0
        public var aborted = 0
        public var rechecked = 0
        public var abortReasons: [String] = []
        public init() {}
    }

    public struct StatementReport: Sendable, Hashable, Codable {
        public var fingerprint: String
        public var label: String
        public var normalized: String
        public var origin: ShadowStatement.Origin
        public var ordered: Bool
        public var unorderedLimit: Bool
        public var executions = 0
        public var matches = 0
        public var mismatches = 0
        public var noise = 0
        public var lag = 0
        public var bothFailed = 0
        public var aborted = 0
        public var singleNode = LatencySummary(count: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0)
        public var cluster = LatencySummary(count: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0)

        public init(fingerprint: String, label: String, normalized: String, origin: ShadowStatement.Origin, ordered: Bool, unorderedLimit: Bool) {
            self.fingerprint = fingerprint
            self.label = label
            self.normalized = normalized
            self.origin = origin
            self.ordered = ordered
            self.unorderedLimit = unorderedLimit
        }
    }

    /// One differing execution.
    public struct Example: Sendable, Hashable, Codable {
        /// `mismatch`, `noise` or `lag`.
        public var kind: String
        public var fingerprint: String
        public var label: String
        public var member: String
        public var sql: String
        public var params: [String?]
        public var difference: ResultDifference
    }

    /// The write canary on one member.
    public struct CanaryResult: Sendable, Hashable, Codable {
        public var member: String
        /// Milliseconds from the canary's commit on the single node until the member showed it.
        public var visibleAfterMs: Double?
        public var error: String?

        public init(member: String, visibleAfterMs: Double?, error: String? = nil) {
            self.member = member
            self.visibleAfterMs = visibleAfterMs
            self.error = error
        }
    }

    public struct Limits: Sendable, Hashable, Codable {
        public var maxP99Ratio: Double
        public var p99SlackMs: Double
        public var lagBudgetMs: Double

        public init(maxP99Ratio: Double, p99SlackMs: Double, lagBudgetMs: Double) {
            self.maxP99Ratio = maxP99Ratio
            self.p99SlackMs = p99SlackMs
            self.lagBudgetMs = lagBudgetMs
        }

        /// The cluster's p99 allowed for the single node's `p99`.
        public func p99Limit(single p99: Double) -> Double { max(p99 * maxP99Ratio, p99 + p99SlackMs) }
    }

    // MARK: - Files

    public static func directory(_ store: StateStore) -> String { store.directory + "/shadow" }
    public static func jsonPath(_ store: StateStore) -> String { directory(store) + "/report.json" }
    public static func textPath(_ store: StateStore) -> String { directory(store) + "/report.txt" }

    /// Writes `report.json` and `report.txt` (0600, atomically) after masking them once more.
    public func save(in store: StateStore, redactor: SecretRedactor) throws(MigrationError) {
        try FileIO.makeDirectories(Self.directory(store), mode: 0o700)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data: Data
        do {
            data = try encoder.encode(self)
        } catch {
            throw MigrationError(.io, "cannot encode the shadow report: \(error)")
        }
        let json = redactor.redact(String(decoding: data, as: UTF8.self))
        try FileIO.writeAtomically(Data(json.utf8), to: Self.jsonPath(store), mode: 0o600)
        try FileIO.writeAtomically(Data(redactor.redact(table()).utf8), to: Self.textPath(store), mode: 0o600)
    }

    /// The report in the state directory, if the stage has run.
    public static func load(from store: StateStore) -> ShadowReport? {
        guard let snapshot = try? FileIO.read(jsonPath(store)) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(ShadowReport.self, from: Data(snapshot.contents))
    }

    // MARK: - For people

    public var headline: String {
        let t = totals
        return "\(t.executions) executions in \(String(format: "%.1f", seconds)) s (\(Int(replayRate.rounded()))/s) against \(members.joined(separator: ", ")): "
            + "\(t.mismatches) mismatch\(t.mismatches == 1 ? "" : "es"), \(t.noise) noise, \(t.lag) lag"
            + (t.bothFailed > 0 ? ", \(t.bothFailed) failed on both sides" : "") + (t.aborted > 0 ? ", \(t.aborted) not compared" : "")
    }

    public func table() -> String {
        var lines = ["shadow: " + headline]
        var source: [String] = []
        if let file = traffic.workloadFile { source.append("\(traffic.workloadStatements) statements from \(file)") }
        if let c = traffic.capture {
            source.append("\(c.distinct) captured (\(c.kept) of \(c.seen) statements logged in \(Int(c.windowSeconds)) s were read-only"
                + (c.refused.isEmpty ? "" : "; left out: " + c.refused.sorted { $0.value > $1.value }.map { "\($0.value)× \($0.key)" }.joined(separator: ", ")) + ")")
        }
        lines.append("traffic: " + source.joined(separator: "; "))
        lines.append("")
        let rows = statements.map { s -> [String] in
            [s.label, s.fingerprint, "\(s.executions)", "\(s.mismatches)", "\(s.noise)", "\(s.lag)",
             "\(LatencySummary.format(s.singleNode.p50Ms))/\(LatencySummary.format(s.singleNode.p99Ms))",
             "\(LatencySummary.format(s.cluster.p50Ms))/\(LatencySummary.format(s.cluster.p99Ms))"]
        }
        lines.append(TextTable(header: ["STATEMENT", "FINGERPRINT", "RUNS", "MISMATCH", "NOISE", "LAG", "SINGLE p50/p99 ms", "CLUSTER p50/p99 ms"], rows: rows).render())
        lines.append("")
        let sides = [ShadowTally.sourceSide, ShadowTally.clusterSide] + members
        let latencyRows = sides.compactMap { side -> [String]? in
            guard let l = latency[side] else { return nil }
            return [side, "\(l.count)", LatencySummary.format(l.p50Ms), LatencySummary.format(l.p95Ms), LatencySummary.format(l.p99Ms), LatencySummary.format(l.maxMs)]
        }
        lines.append(TextTable(header: ["SIDE", "COUNT", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows: latencyRows).render())
        if !canary.isEmpty {
            lines.append("")
            lines.append("write canary: " + canary.map { c in
                c.visibleAfterMs.map { "\(c.member) after \(LatencySummary.format($0)) ms" } ?? "\(c.member) NOT visible (\(c.error ?? "timeout"))"
            }.joined(separator: ", ") + " (budget \(Int(limits.lagBudgetMs)) ms)")
        }
        for (title, examples) in [("mismatches", mismatches), ("noise (non-deterministic on the single node; never a mismatch)", noise), ("lag (the member had not replayed the single node's position)", lag)] where !examples.isEmpty {
            lines.append("")
            lines.append("\(title):")
            for e in examples {
                lines.append("  [\(e.fingerprint)] \(e.label) on \(e.member): \(e.difference.summary)")
                lines.append("    sql: \(e.sql)")
                if !e.params.isEmpty { lines.append("    params: " + e.params.enumerated().map { "$\($0.offset + 1) = \($0.element.map { "'\($0)'" } ?? "NULL")" }.joined(separator: ", ")) }
            }
        }
        return lines.joined(separator: "\n")
    }
}
