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

/// Lock-free counters updated on the hot path.
final class StatisticsCounters: Sendable {
    let failovers = Atomic<Int>(0)
    let topologyRefreshes = Atomic<Int>(0)
    let topologyRefreshFailures = Atomic<Int>(0)
    let reads = Atomic<Int>(0)
    let writes = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let retries = Atomic<Int>(0)
    let outcomeUnknown = Atomic<Int>(0)
    let replicaFallbacks = Atomic<Int>(0)
    private let lastFailover = Mutex<Double?>(nil)
    /// The last 1,024 refresh latencies (seconds), a ring.
    private let latencies = Mutex<LatencyRing>(LatencyRing(capacity: 1024))

    func recordFailover(unavailable: Duration) {
        failovers.add(1, ordering: .relaxed)
        lastFailover.withLock { $0 = unavailable.asSeconds }
    }

    func countStatement(readOnly: Bool) {
        if readOnly { reads.add(1, ordering: .relaxed) } else { writes.add(1, ordering: .relaxed) }
    }

    func recordRefresh(latency: Duration) {
        topologyRefreshes.add(1, ordering: .relaxed)
        latencies.withLock { $0.append(latency.asSeconds) }
    }

    /// Refresh latencies recorded so far (seconds, oldest first within the ring).
    var refreshLatencies: [Double] { latencies.withLock { $0.values } }

    var snapshot: PoolStatistics {
        var s = PoolStatistics()
        s.failovers = failovers.load(ordering: .relaxed)
        s.topologyRefreshes = topologyRefreshes.load(ordering: .relaxed)
        s.topologyRefreshFailures = topologyRefreshFailures.load(ordering: .relaxed)
        s.reads = reads.load(ordering: .relaxed)
        s.writes = writes.load(ordering: .relaxed)
        s.errors = errors.load(ordering: .relaxed)
        s.retries = retries.load(ordering: .relaxed)
        s.outcomeUnknown = outcomeUnknown.load(ordering: .relaxed)
        s.replicaFallbacks = replicaFallbacks.load(ordering: .relaxed)
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
