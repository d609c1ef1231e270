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
