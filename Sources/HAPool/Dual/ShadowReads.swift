import Logging
import PGClient
public import ShadowCompare
import Synchronization

/// How `DualDatabasePools` shadows reads (Scientist-style): which share of the application's
/// read-only statements is also sent to the other mode, how many may wait, how long each may run.
public struct ShadowReadConfiguration: Sendable, Hashable {
    /// Share of read-only statements shadowed, 0…100 (every `100 / percent`-th one, evenly spread).
    public var samplePercent: Double
    /// Shadow executions that may wait; an offer beyond is dropped and counted, never waited for.
    public var queueCapacity: Int
    /// Shadow executions running at once.
    public var workers: Int
    /// `statement_timeout` of each shadow execution.
    public var statementTimeout: Duration
    /// Mismatches kept (with statement and difference) for `ShadowReadStatistics.recentMismatches`.
    public var keepMismatches: Int

    public init(samplePercent: Double = 10, queueCapacity: Int = 256, workers: Int = 1, statementTimeout: Duration = .seconds(5), keepMismatches: Int = 10) {
        self.samplePercent = min(100, max(0, samplePercent))
        self.queueCapacity = max(1, queueCapacity)
        self.workers = max(1, workers)
        self.statementTimeout = statementTimeout
        self.keepMismatches = max(0, keepMismatches)
    }
}

/// What the shadow mode saw: counters, latencies per side, the latest mismatches.
public struct ShadowReadStatistics: Sendable, Hashable, Codable {
    /// Read-only statements the application ran (candidates).
    public var offered = 0
    /// Left out by sampling.
    public var sampledOut = 0
    /// Dropped because the queue was full (the application never waits for the shadow).
    public var dropped = 0
    /// Not shadowed because the statement could write (`SQLText.safety`).
    public var skippedNotReadOnly = 0
    public var compared = 0
    public var matched = 0
    /// Differing answers (an error on one side only included).
    public var mismatched = 0
    /// Both sides failed with the same SQLSTATE.
    public var failedBoth = 0
    /// The other mode could not be reached at all.
    public var shadowUnavailable = 0
    /// Latencies of the compared statements: the application's own (`primary`) and the shadow's.
    public var primaryLatency = LatencySummary(count: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0)
    public var shadowLatency = LatencySummary(count: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0)
    public var recentMismatches: [Mismatch] = []

    public struct Mismatch: Sendable, Hashable, Codable {
        public var role: String
        public var fingerprint: String
        /// The normalised statement (literals and parameters as `?`: no values).
        public var statement: String
        public var difference: ResultDifference
    }

    public init() {}

    /// Adds another database's statistics (project + shared).
    public mutating func add(_ o: ShadowReadStatistics) {
        offered += o.offered; sampledOut += o.sampledOut; dropped += o.dropped; skippedNotReadOnly += o.skippedNotReadOnly
        compared += o.compared; matched += o.matched; mismatched += o.mismatched; failedBoth += o.failedBoth
        shadowUnavailable += o.shadowUnavailable
        recentMismatches += o.recentMismatches
    }

    /// Prometheus text for the shadow counters (appended to `HealthReport.prometheusText()`).
    public func prometheusText() -> String {
        var out = "# HELP pgha_shadow_reads_total Read-only statements by what the shadow mode did with them.\n# TYPE pgha_shadow_reads_total counter\n"
        for (result, value) in [("matched", matched), ("mismatched", mismatched), ("failed_both", failedBoth), ("dropped", dropped),
                                ("sampled_out", sampledOut), ("not_read_only", skippedNotReadOnly), ("shadow_unavailable", shadowUnavailable)] {
            out += "pgha_shadow_reads_total{result=\"\(result)\"} \(value)\n"
        }
        out += "# HELP pgha_shadow_latency_ms Latency of compared statements by side.\n# TYPE pgha_shadow_latency_ms gauge\n"
        for (side, l) in [("primary", primaryLatency), ("shadow", shadowLatency)] where l.count > 0 {
            out += "pgha_shadow_latency_ms{side=\"\(side)\",quantile=\"0.5\"} \(l.p50Ms)\n"
            out += "pgha_shadow_latency_ms{side=\"\(side)\",quantile=\"0.99\"} \(l.p99Ms)\n"
        }
        return out
    }
}

/// The shadow of one database: reads the application made are offered (the primary's result
/// and latency, never waited on), queued (bounded), sent to the other mode's database by a few
/// background tasks in read-only transactions, and compared with the shared comparison
/// (`ShadowCompare`: order-insensitive unless ORDER BY, values by type, one-sided errors are
/// mismatches). The application's result, error and latency are untouched: `offer` is a sampling
/// decision and a non-blocking enqueue.
public final class ShadowReads: Sendable {
    struct Job: Sendable {
        var sql: String
        var params: [PGValue]
        /// The application's own answer: the result object itself (compared in the background,
        /// so building the snapshot costs the application nothing), or its error.
        var primary: Result<PGResult, HAError>
        var primaryLatency: Duration
    }

    public let role: String
    let configuration: ShadowReadConfiguration
    let target: DatabaseHandle
    let logger: Logger
    private let continuation: AsyncStream<Job>.Continuation
    private let stream: AsyncStream<Job>
    private let counter = Atomic<UInt64>(0)
    private let state = Mutex<State>(State())
    private let workers = Mutex<[Task<Void, Never>]>([])

    struct State {
        var statistics = ShadowReadStatistics()
        /// Mismatches per fingerprint, for logging the 1st, 10th, 100th… only.
        var mismatchesByFingerprint: [String: Int] = [:]
        var primary = LatencyHistogram()
        var shadow = LatencyHistogram()
    }

    init(role: String, target: DatabaseHandle, configuration: ShadowReadConfiguration, logger: Logger) {
        self.role = role
        self.target = target
        self.configuration = configuration
        self.logger = logger
        (stream, continuation) = AsyncStream.makeStream(of: Job.self, bufferingPolicy: .bufferingOldest(configuration.queueCapacity))
    }

    /// Starts the background tasks (idempotent).
    func start() {
        workers.withLock { tasks in
            guard tasks.isEmpty else { return }
            for _ in 0..<configuration.workers {
                tasks.append(Task { [self] in
                    for await job in stream { await self.shadow(job) }
                })
            }
        }
    }

    /// Stops accepting work; the queued jobs are still compared, then the tasks end.
    func finish() async {
        continuation.finish()
        for task in workers.withLock({ $0 }) { await task.value }
    }

    /// Called on the application's path after a read-only statement: counts, samples, enqueues.
    func offer(_ sql: String, _ params: [PGValue], _ primary: Result<PGResult, HAError>, latency: Duration) {
        let n = counter.add(1, ordering: .relaxed).oldValue
        let p = configuration.samplePercent
        // Evenly spread sampling: the n-th offer is taken when ⌊(n+1)·p/100⌋ > ⌊n·p/100⌋.
        let take = p >= 100 || (p > 0 && UInt64(Double(n + 1) * p / 100) > UInt64(Double(n) * p / 100))
        guard take else {
            state.withLock { $0.statistics.offered += 1; $0.statistics.sampledOut += 1 }
            return
        }
        let result = continuation.yield(Job(sql: sql, params: params, primary: primary, primaryLatency: latency))
        state.withLock { s in
            s.statistics.offered += 1
            if case .dropped = result { s.statistics.dropped += 1 }
            if case .terminated = result { s.statistics.dropped += 1 }
        }
    }

    public var statistics: ShadowReadStatistics {
        state.withLock { s in
            var out = s.statistics
            out.primaryLatency = s.primary.summary
            out.shadowLatency = s.shadow.summary
            return out
        }
    }

    static func isPowerOfTen(_ n: Int) -> Bool {
        var v = n
        while v >= 10, v % 10 == 0 { v /= 10 }
        return v == 1
    }

    private func shadow(_ job: Job) async {
        let text = SQLText(job.sql)
        guard text.safety == .readOnly else {
            state.withLock { $0.statistics.skippedNotReadOnly += 1 }
            return
        }
        let primary: ExecutionOutcome
        switch job.primary {
        case .success(let result): primary = .rows(ResultSnapshot(result))
        case .failure(let error): primary = .error(sqlState: error.sqlState, message: error.message)
        }
        let timeoutMs = Int64(Double(configuration.statementTimeout.components.seconds) * 1000 + Double(configuration.statementTimeout.components.attoseconds) / 1e15)
        let started = ContinuousClock.now
        let candidate: ExecutionOutcome
        var reached = true
        do {
            candidate = try await target.withConnection(readOnly: true) { conn in
                _ = try await conn.query("BEGIN READ ONLY; SET LOCAL statement_timeout = \(timeoutMs)")
                do {
                    let r = try await conn.query(job.sql, job.params, timeout: configuration.statementTimeout + .seconds(1))
                    _ = try? await conn.query("COMMIT")
                    return ExecutionOutcome.rows(ResultSnapshot(r))
                } catch let error as PGError {
                    _ = try? await conn.query("ROLLBACK")
                    return ExecutionOutcome.error(sqlState: error.sqlState, message: error.message)
                }
            }
        } catch {
            reached = false
            candidate = .error(sqlState: nil, message: String(describing: error))
        }
        let shadowLatency = ContinuousClock.now - started
        let difference = ResultComparator.difference(primary, candidate, ordered: text.ordersResult, left: "primary", right: "shadow")
        let mismatch: ShadowReadStatistics.Mismatch? = difference.map { .init(role: role, fingerprint: text.fingerprint, statement: text.normalized, difference: $0) }
        let logThis: Int? = state.withLock { s -> Int? in
            if !reached {
                s.statistics.shadowUnavailable += 1
                return nil
            }
            s.statistics.compared += 1
            s.primary.record(job.primaryLatency)
            s.shadow.record(shadowLatency)
            if let mismatch {
                s.statistics.mismatched += 1
                if s.statistics.recentMismatches.count >= configuration.keepMismatches, !s.statistics.recentMismatches.isEmpty {
                    s.statistics.recentMismatches.removeFirst()
                }
                if configuration.keepMismatches > 0 { s.statistics.recentMismatches.append(mismatch) }
                let n = s.mismatchesByFingerprint[mismatch.fingerprint, default: 0] + 1
                s.mismatchesByFingerprint[mismatch.fingerprint] = n
                return Self.isPowerOfTen(n) ? n : nil
            } else if primary.snapshot == nil {
                s.statistics.failedBoth += 1
            } else {
                s.statistics.matched += 1
            }
            return nil
        }
        if let mismatch, let n = logThis {
            // The normalised statement and the kind of difference only: no values, no rows. Logged
            // for the 1st, 10th, 100th… mismatch of a statement (the counters have every one).
            logger.warning("shadow read mismatch", metadata: [
                "role": "\(role)", "fingerprint": "\(mismatch.fingerprint)", "statement": "\(mismatch.statement)",
                "difference": "\(mismatch.difference.kind.rawValue)", "mismatches_of_statement": "\(n)",
            ])
        }
    }
}
