public import Foundation
public import ShadowCompare
import PlainText

/// What one shadowed execution gave, as the replay hands it to the tally.
public struct ShadowExecution: Sendable {
    public var statement: Int
    public var member: String
    public var params: [String?]
    /// nil when the execution could not be compared (`aborted` says why).
    public var classification: ShadowClassification?
    /// Both sides failed with the same error (a broken statement, not a cluster difference).
    public var bothFailed: Bool
    /// Why the single node's side could not run (its connection broke…): not compared, counted.
    public var aborted: String?
    /// The primary run on the single node, and the member's run.
    public var sourceLatency: Duration?
    public var memberLatency: Duration?
    /// The member's replay position was behind the single node's when it ran.
    public var memberBehind: Bool
    /// A lagging execution was run once more after the member caught up.
    public var rechecked: Bool

    public init(
        statement: Int, member: String, params: [String?], classification: ShadowClassification?, bothFailed: Bool = false,
        aborted: String? = nil, sourceLatency: Duration? = nil, memberLatency: Duration? = nil, memberBehind: Bool = false, rechecked: Bool = false
    ) {
        self.statement = statement
        self.member = member
        self.params = params
        self.classification = classification
        self.bothFailed = bothFailed
        self.aborted = aborted
        self.sourceLatency = sourceLatency
        self.memberLatency = memberLatency
        self.memberBehind = memberBehind
        self.rechecked = rechecked
    }
}

/// Counts, histograms and examples as the replay goes: a pure accumulator (the replay's workers
/// feed it under a lock), turned into the `ShadowReport` at the end.
public struct ShadowTally: Sendable {
    public static let sourceSide = "single node"
    public static let clusterSide = "cluster"

    let statements: [ShadowStatement]
    let keepExamples: Int
    let mask: @Sendable (String) -> String
    var perStatement: [ShadowReport.StatementReport]
    var sourceHistograms: [LatencyHistogram]
    var clusterHistograms: [LatencyHistogram]
    var memberHistograms: [String: LatencyHistogram] = [:]
    var examples: [ShadowReport.Example] = []
    var noiseExamples: [ShadowReport.Example] = []
    var lagExamples: [ShadowReport.Example] = []
    var totals = ShadowReport.Totals()

    /// `mask` hides secrets in statement text, parameters and rows (the playbook's redactor).
    public init(statements: [ShadowStatement], keepExamples: Int, mask: @escaping @Sendable (String) -> String) {
        self.statements = statements
        self.keepExamples = keepExamples
        self.mask = mask
        perStatement = statements.map {
            ShadowReport.StatementReport(fingerprint: $0.fingerprint, label: mask($0.label), normalized: mask($0.normalized), origin: $0.origin, ordered: $0.ordered, unorderedLimit: $0.unorderedLimit)
        }
        sourceHistograms = Array(repeating: LatencyHistogram(), count: statements.count)
        clusterHistograms = sourceHistograms
    }

    public mutating func add(_ e: ShadowExecution) {
        totals.executions += 1
        var s = perStatement[e.statement]
        s.executions += 1
        defer { perStatement[e.statement] = s }
        if let aborted = e.aborted {
            totals.aborted += 1
            s.aborted += 1
            if totals.abortReasons.count < 5, !totals.abortReasons.contains(aborted) { totals.abortReasons.append(mask(aborted)) }
            return
        }
        if let l = e.sourceLatency { sourceHistograms[e.statement].record(l) }
        if let l = e.memberLatency {
            clusterHistograms[e.statement].record(l)
            memberHistograms[e.member, default: LatencyHistogram()].record(l)
        }
        if e.rechecked { totals.rechecked += 1 }
        if e.bothFailed {
            totals.bothFailed += 1
            s.bothFailed += 1
        }
        switch e.classification {
        case .match?, nil:
            totals.matches += 1
            s.matches += 1
        case .mismatch(let d)?:
            totals.mismatches += 1
            s.mismatches += 1
            // Up to 3 per statement and member, and none that repeats one kept already.
            let fingerprint = statements[e.statement].fingerprint
            let kept = examples.filter { $0.fingerprint == fingerprint && $0.member == e.member }
            if examples.count < keepExamples, kept.count < 3, !kept.contains(where: { $0.difference.summary == mask(d.summary) && $0.params == e.params.map { $0.map(mask) } }) {
                examples.append(example(e, d, "mismatch"))
            }
        case .noise(let d)?:
            totals.noise += 1
            s.noise += 1
            if noiseExamples.count < 5, !noiseExamples.contains(where: { $0.fingerprint == statements[e.statement].fingerprint }) {
                noiseExamples.append(example(e, d, "noise"))
            }
        case .lag(let d)?:
            totals.lag += 1
            s.lag += 1
            if lagExamples.count < 5, !lagExamples.contains(where: { $0.member == e.member && $0.fingerprint == statements[e.statement].fingerprint && $0.difference.summary == mask(d.summary) }) {
                lagExamples.append(example(e, d, "lag"))
            }
        }
    }

    func example(_ e: ShadowExecution, _ d: ResultDifference, _ kind: String) -> ShadowReport.Example {
        let statement = statements[e.statement]
        let secret = ShadowTally.looksSecret(statement.sql)
        var masked = d
        masked.summary = mask(d.summary)
        masked.onlyLeft = d.onlyLeft.map { $0.map { $0.map(mask) } }
        masked.onlyRight = d.onlyRight.map { $0.map { $0.map(mask) } }
        return ShadowReport.Example(
            kind: kind, fingerprint: statement.fingerprint, label: mask(statement.label), member: e.member,
            sql: mask(secret ? statement.normalized : statement.sql),
            params: e.params.map { $0.map { secret ? "***" : mask($0) } }, difference: masked)
    }

    /// A statement about passwords, secrets, tokens or keys: its parameters are masked whatever
    /// they are, and its literals (the normalised text is shown).
    static func looksSecret(_ sql: String) -> Bool {
        let lower = sql.lowercased()
        return ["password", "passwd", "secret", "token", "api_key", "apikey", "credential", "private_key"].contains { lower.contains($0) }
    }

    public func report(
        startedAt: Date, finishedAt: Date, members: [String], traffic: ShadowReport.Traffic, canary: [ShadowReport.CanaryResult],
        limits: ShadowReport.Limits
    ) -> ShadowReport {
        var statements = perStatement
        // A statement the single node once answered differently to itself is non-deterministic:
        // its differences are noise, never mismatches (also those seen before its first noise:
        // `random() < 0.5` can agree with itself and still differ on the member).
        var totals = self.totals
        var mismatches: [ShadowReport.Example] = []
        var noise = noiseExamples
        for example in examples {
            if let s = statements.first(where: { $0.fingerprint == example.fingerprint }), s.noise > 0 {
                if noise.count < 5 { var e = example; e.kind = "noise"; noise.append(e) }
            } else {
                mismatches.append(example)
            }
        }
        for i in statements.indices where statements[i].noise > 0 && statements[i].mismatches > 0 {
            totals.mismatches -= statements[i].mismatches
            totals.noise += statements[i].mismatches
            statements[i].noise += statements[i].mismatches
            statements[i].mismatches = 0
        }
        var source = LatencyHistogram(), cluster = LatencyHistogram()
        for i in statements.indices {
            statements[i].singleNode = sourceHistograms[i].summary
            statements[i].cluster = clusterHistograms[i].summary
            source.add(sourceHistograms[i])
            cluster.add(clusterHistograms[i])
        }
        var latency = [ShadowTally.sourceSide: source.summary, ShadowTally.clusterSide: cluster.summary]
        for (member, h) in memberHistograms { latency[member] = h.summary }
        let seconds = max(0.001, finishedAt.timeIntervalSince(startedAt))
        return ShadowReport(
            startedAt: startedAt, finishedAt: finishedAt, seconds: seconds, members: members, traffic: traffic, totals: totals,
            replayRate: Double(totals.executions) / seconds, latency: latency, statements: statements.filter { $0.executions > 0 },
            mismatches: mismatches, noise: noise, lag: lagExamples, canary: canary, limits: limits)
    }
}

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

/// The shadow gate, as a pure function of the report.
public enum ShadowGate {
    public static func evaluate(_ report: ShadowReport?) -> [CheckResult] {
        guard let report else {
            return [.fail("shadow.report", observed: "no shadow report in the state directory", expected: "the stage's report (shadow/report.json)", advice: "run the stage: `pgha resume`")]
        }
        var checks: [CheckResult] = []
        let t = report.totals
        let compared = t.executions - t.aborted
        let trafficObserved = "\(t.executions) executions of \(report.statements.count) statements against \(report.members.joined(separator: ", ")) in \(String(format: "%.1f", report.seconds)) s (\(Int(report.replayRate.rounded()))/s)"
            + (t.aborted > 0 ? "; \(t.aborted) not compared (\(t.abortReasons.joined(separator: "; ")))" : "")
        if compared <= 0 {
            checks.append(.fail("shadow.traffic", observed: trafficObserved, expected: "at least one compared execution", advice: "give shadow.workload statements the application runs (or a capture window with traffic), then `pgha resume`"))
        } else if t.aborted * 10 > t.executions {
            checks.append(.fail("shadow.traffic", observed: trafficObserved, expected: "at most 10% of executions not compared", advice: "the single node's side failed too often (see the reasons); fix it, then `pgha resume`"))
        } else {
            checks.append(.pass("shadow.traffic", observed: trafficObserved, expected: "read traffic compared on every member"))
        }

        let byFingerprint = report.statements.filter { $0.mismatches > 0 }.map { "\($0.label) [\($0.fingerprint)] \($0.mismatches)×" }
        if t.mismatches > 0 {
            let first = report.mismatches.first.map { "; first: \($0.label) on \($0.member): \($0.difference.summary)" } ?? ""
            checks.append(.fail("shadow.mismatches", observed: "\(t.mismatches) of \(compared) executions differ: " + byFingerprint.joined(separator: ", ") + first,
                                expected: "0 mismatches", advice: "read the differences in `pgha status` (shadow report): a member answering otherwise than the single node must be understood before cutover; then `pgha resume`"))
        } else {
            checks.append(.pass("shadow.mismatches", observed: "0 of \(compared) executions differ", expected: "0 mismatches"))
        }

        let noisy = report.statements.filter { $0.noise > 0 }.map { "\($0.label) [\($0.fingerprint)] \($0.noise)×" + ($0.unorderedLimit ? " (unordered LIMIT)" : "") }
        if t.noise > 0 {
            checks.append(.warn("shadow.noise", observed: "\(t.noise) executions non-deterministic on the single node itself: " + noisy.joined(separator: ", "),
                                expected: "deterministic statements", advice: "these statements answer differently each time (now(), random(), an unordered LIMIT, data changing): they were not compared; add ORDER BY or leave them out for a stronger comparison"))
        } else {
            checks.append(.pass("shadow.noise", observed: "no statement answered differently on the single node's two runs", expected: "deterministic statements"))
        }
        if t.lag > 0 {
            let members = Set(report.lag.map(\.member)).sorted().joined(separator: ", ")
            checks.append(.warn("shadow.lag", observed: "\(t.lag) executions differed on a member that had not replayed the single node's position (\(members))",
                                expected: "members caught up", advice: "these were replication lag, not wrong answers; the canary check says whether the lag is within shadow.lag_budget"))
        } else {
            checks.append(.pass("shadow.lag", observed: "no difference caused by replication lag", expected: "members caught up"))
        }
        if t.bothFailed > 0 {
            let failing = report.statements.filter { $0.bothFailed > 0 }.map { "\($0.label) [\($0.fingerprint)]" }
            checks.append(.warn("shadow.errors", observed: "\(t.bothFailed) executions failed on both sides alike: " + failing.joined(separator: ", "),
                                expected: "statements that run", advice: "fix or remove these statements in the workload: they compare nothing"))
        }

        let single = report.latency[ShadowTally.sourceSide], cluster = report.latency[ShadowTally.clusterSide]
        if let single, let cluster, single.count > 0, cluster.count > 0 {
            let limit = report.limits.p99Limit(single: single.p99Ms)
            let ratio = single.p99Ms > 0 ? cluster.p99Ms / single.p99Ms : 0
            let observed = "single node \(single.text); cluster \(cluster.text); p99 ratio \(String(format: "%.2f", ratio))"
            let expected = "cluster p99 ≤ \(LatencySummary.format(limit)) ms (max(\(report.limits.maxP99Ratio)× the single node's, +\(LatencySummary.format(report.limits.p99SlackMs)) ms): shadow.max_p99_ratio, shadow.p99_slack)"
            if cluster.p99Ms > limit {
                let slowest = report.members.compactMap { m in report.latency[m].map { (m, $0.p99Ms) } }.max { $0.1 < $1.1 }
                checks.append(.fail("shadow.latency", observed: observed + (slowest.map { "; slowest member \($0.0) p99 \(LatencySummary.format($0.1)) ms" } ?? ""), expected: expected,
                                    advice: "the cluster answers slower than the budget allows: compare its settings and load with the single node's (shared_buffers, work_mem, hardware), or raise shadow.max_p99_ratio; then `pgha resume`"))
            } else {
                checks.append(.pass("shadow.latency", observed: observed, expected: expected))
            }
        } else {
            checks.append(.fail("shadow.latency", observed: "no latency samples", expected: "latencies of both sides", advice: "the replay compared nothing: see shadow.traffic"))
        }

        let budget = report.limits.lagBudgetMs
        let canaryExpected = "a write on the single node visible on every member within \(Int(budget)) ms (shadow.lag_budget)"
        let canaryObserved = report.canary.map { c in c.visibleAfterMs.map { "\(c.member) \(LatencySummary.format($0)) ms" } ?? "\(c.member) not visible (\(c.error ?? "timeout"))" }.joined(separator: ", ")
        let late = report.canary.filter { ($0.visibleAfterMs ?? .infinity) > budget }
        if report.canary.isEmpty {
            checks.append(.fail("shadow.canary", observed: "no canary result", expected: canaryExpected, advice: "`pgha resume` runs the stage again"))
        } else if !late.isEmpty || Set(report.canary.map(\.member)) != Set(report.members) {
            checks.append(.fail("shadow.canary", observed: canaryObserved, expected: canaryExpected,
                                advice: "\(late.map(\.member).joined(separator: ", ")) replay(s) too slowly: see their replay lag in `pgha status`, then `pgha resume` (or raise shadow.lag_budget)"))
        } else {
            checks.append(.pass("shadow.canary", observed: canaryObserved, expected: canaryExpected))
        }
        return checks
    }
}
