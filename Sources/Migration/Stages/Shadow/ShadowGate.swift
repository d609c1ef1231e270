import Foundation
import ShadowCompare
import PlainText

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
