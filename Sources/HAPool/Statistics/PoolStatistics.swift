import CoreMetrics
import Synchronization

/// Counters of a pool (the seed's `get_statistics()`), plus pgha's own.
public struct PoolStatistics: Sendable, Hashable, Codable {
    public var failovers = 0
    public var topologyRefreshes = 0
    public var topologyRefreshFailures = 0
    public var reads = 0
    public var writes = 0
    public var errors = 0
    public var retries = 0
    public var outcomeUnknown = 0
    public var replicaFallbacks = 0
    /// Time without a confirmed leader in the last failover, in seconds.
    public var lastFailoverUnavailableSeconds: Double?
    /// Topology refresh latency (REST round trip), milliseconds.
    public var refreshLatencyP50Ms: Double?
    public var refreshLatencyP99Ms: Double?

    public init() {}
}

/// One counter: a local atomic (for `statistics()` and health reports) and the same increments
/// through swift-metrics, so an application's metrics backend sees them under `label`.
final class MetricCounter: Sendable {
    private let local = Atomic<Int>(0)
    private let exported: CoreMetrics.Counter

    init(_ label: String, factory: any MetricsFactory) {
        exported = CoreMetrics.Counter(label: label, dimensions: [], factory: factory)
    }

    func increment(by amount: Int = 1) {
        local.add(amount, ordering: .relaxed)
        exported.increment(by: amount)
    }

    var value: Int { local.load(ordering: .relaxed) }
}

/// The pool's counters, updated on the hot path. Their swift-metrics labels are the Prometheus
/// names `pgha health --prometheus` prints (docs/POOL.md lists them); refresh latency is also a
/// swift-metrics `Timer` (`pgha_topology_refresh_seconds`).
final class StatisticsCounters: Sendable {
    let failovers: MetricCounter
    let topologyRefreshes: MetricCounter
    let topologyRefreshFailures: MetricCounter
    let reads: MetricCounter
    let writes: MetricCounter
    let errors: MetricCounter
    let retries: MetricCounter
    let outcomeUnknown: MetricCounter
    let replicaFallbacks: MetricCounter
    private let refreshTimer: CoreMetrics.Timer
    private let lastFailover = Mutex<Double?>(nil)
    /// The last 1,024 refresh latencies (seconds), a ring.
    private let latencies = Mutex<LatencyRing>(LatencyRing(capacity: 1024))

    /// - Parameter factory: where the counters go besides `snapshot` (default: the process's
    ///   bootstrapped `MetricsSystem`, a no-op until the application bootstraps one).
    init(factory: any MetricsFactory = MetricsSystem.factory) {
        failovers = MetricCounter("pgha_failovers_total", factory: factory)
        topologyRefreshes = MetricCounter("pgha_topology_refreshes_total", factory: factory)
        topologyRefreshFailures = MetricCounter("pgha_topology_refresh_failures_total", factory: factory)
        reads = MetricCounter("pgha_reads_total", factory: factory)
        writes = MetricCounter("pgha_writes_total", factory: factory)
        errors = MetricCounter("pgha_errors_total", factory: factory)
        retries = MetricCounter("pgha_retries_total", factory: factory)
        outcomeUnknown = MetricCounter("pgha_outcome_unknown_total", factory: factory)
        replicaFallbacks = MetricCounter("pgha_replica_fallbacks_total", factory: factory)
        refreshTimer = CoreMetrics.Timer(label: "pgha_topology_refresh_seconds", dimensions: [], factory: factory)
    }

    func recordFailover(unavailable: Duration) {
        failovers.increment()
        lastFailover.withLock { $0 = unavailable.asSeconds }
    }

    func countStatement(readOnly: Bool) {
        if readOnly { reads.increment() } else { writes.increment() }
    }

    func recordRefresh(latency: Duration) {
        topologyRefreshes.increment()
        refreshTimer.recordNanoseconds(Int64(latency.asSeconds * 1e9))
        latencies.withLock { $0.append(latency.asSeconds) }
    }

    /// Refresh latencies recorded so far (seconds, oldest first within the ring).
    var refreshLatencies: [Double] { latencies.withLock { $0.values } }

    var snapshot: PoolStatistics {
        var s = PoolStatistics()
        s.failovers = failovers.value
        s.topologyRefreshes = topologyRefreshes.value
        s.topologyRefreshFailures = topologyRefreshFailures.value
        s.reads = reads.value
        s.writes = writes.value
        s.errors = errors.value
        s.retries = retries.value
        s.outcomeUnknown = outcomeUnknown.value
        s.replicaFallbacks = replicaFallbacks.value
        s.lastFailoverUnavailableSeconds = lastFailover.withLock { $0 }
        let sorted = refreshLatencies.sorted()
        s.refreshLatencyP50Ms = Percentile.of(sorted, 0.50).map { $0 * 1000 }
        s.refreshLatencyP99Ms = Percentile.of(sorted, 0.99).map { $0 * 1000 }
        return s
    }
}

struct LatencyRing: Sendable {
    private(set) var values: [Double] = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    mutating func append(_ value: Double) {
        if values.count < capacity {
            values.append(value)
        } else {
            values[next] = value
            next = (next + 1) % capacity
        }
    }
}

/// Nearest-rank percentile of sorted values.
public enum Percentile {
    public static func of(_ sorted: [Double], _ p: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}
