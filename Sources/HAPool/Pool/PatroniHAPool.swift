public import CoreMetrics
public import Logging
public import Patroni
public import PGClient
#if ServiceLifecycle
public import ServiceLifecycle
#endif

/// An HA-aware connection pool for a Patroni cluster (the seed's `PatroniHAPool`).
///
/// - Writes and plain reads go to the leader; `readOnly: true` goes round-robin to replicas whose
///   lag is within `maxReplicaLagBytes` and that are not tagged `noloadbalance`.
/// - The leader is the node the REST API names *and* that has confirmed `pg_is_in_recovery() =
///   false` on a connection: nothing is ever written to a demoted primary.
/// - Failures while connecting or before a statement is sent are retried on the new leader until
///   `failoverTimeout`; a statement whose outcome is unknown surfaces as
///   `HAError.Code.outcomeUnknown` and is never re-run automatically.
/// - One topology tracker serves every database of the pool (`databases`), so the project and
///   shared databases share one REST poll loop.
///
/// Life cycle: an application either runs `run()` with its other services (it returns once the
/// pool is closed, or closes the pool when its task is cancelled) and waits for `waitUntilReady()`,
/// or calls `start()`, which runs `run()` in a task the pool owns, and `close()` at the end.
///
/// The topology logic is `TopologyStateMachine` (pure); its executor is `PoolExecutor` (generic
/// over connections and the clock, unit-tested with fakes). This class is the public face over
/// libpq connections.
public final class PatroniHAPool: Sendable {
    public typealias Lease = PoolLease<LibPQConnectionFactory>

    /// A completed leader change, as the pool saw it.
    public struct FailoverEvent: Sendable, Hashable, Codable {
        public var from: NodeAddress?
        public var to: NodeAddress
        /// Time without a confirmed leader.
        public var unavailableSeconds: Double
    }

    let executor: PoolExecutor<LibPQConnectionFactory>

    public var config: PatroniClusterConfig { executor.config }
    /// Every database this pool serves; the first is `config.database`.
    public var databases: [String] { executor.databases }
    var source: any TopologySource { executor.source }
    var logger: Logger { executor.logger }

    /// - Parameters:
    ///   - config: the cluster configuration.
    ///   - additionalDatabases: more databases served through the same topology (e.g. the shared one).
    ///   - source: where topology comes from; defaults to the Patroni REST API of `config`.
    ///   - clock: the pool's time (tests inject a fake one).
    ///   - metrics: where the counters go (swift-metrics); default: the bootstrapped `MetricsSystem`.
    public init(
        config: PatroniClusterConfig, additionalDatabases: [String] = [],
        source: (any TopologySource)? = nil, clock: any PoolClock = SystemPoolClock(),
        logger: Logger = Logger(label: "pgha.pool"), metrics: (any MetricsFactory)? = nil
    ) throws(ConfigurationError) {
        var dbs = [config.database]
        for db in additionalDatabases where !dbs.contains(db) { dbs.append(db) }
        let topologySource: any TopologySource
        if let source {
            topologySource = source
        } else {
            topologySource = try PatroniTopologySource(config: config)
        }
        self.executor = PoolExecutor(
            config: config, databases: dbs, source: topologySource, factory: LibPQConnectionFactory(),
            clock: clock, random: { Double.random(in: 0..<1) }, logger: logger,
            metrics: metrics ?? MetricsSystem.factory
        )
    }

    // MARK: - Life cycle

    /// Runs the pool's background work (REST polling, leader checks, warm-ups) in a task group
    /// until the pool is closed; cancelling the calling task closes the pool. With the package
    /// trait `ServiceLifecycle` the pool is a swift-service-lifecycle `Service` (like PostgresNIO's
    /// `PostgresClient`) and a graceful shutdown of its `ServiceGroup` closes it too. Returns when
    /// nothing of the pool runs any more and every connection is closed.
    public func run() async {
        #if ServiceLifecycle
        await withGracefulShutdownHandler {
            await executor.run()
        } onGracefulShutdown: {
            self.executor.beginClose()
        }
        #else
        await executor.run()
        #endif
    }

    /// Waits until a leader is confirmed writable, up to `timeout` (default `failoverTimeout`).
    /// For applications that run `run()` themselves.
    public func waitUntilReady(timeout: Duration? = nil) async throws(HAError) {
        try await executor.waitUntilReady(timeout: timeout ?? config.failoverTimeout)
    }

    /// Discovers the topology and waits until a leader is confirmed (up to `timeout`, default
    /// `failoverTimeout`), running `run()` in a task the pool owns. The seed's "pool initialization".
    public func start(timeout: Duration? = nil) async throws(HAError) {
        try await executor.start(timeout: timeout)
    }

    /// Closes every connection; pending waiters fail with `.closed`; waits for `run()` to end
    /// when `start()` started it.
    public func close() async {
        await executor.close()
    }

    // MARK: - Connections

    /// Checks out a connection: the leader's, or a replica's for `readOnly`. Waits for a leader up
    /// to `failoverTimeout` during a failover.
    public func acquire(readOnly: Bool = false, database: String? = nil) async throws(HAError) -> Lease {
        try await acquire(readOnly: readOnly, database: database, minimumReplayLSN: nil)
    }

    func acquire(readOnly: Bool, database: String?, minimumReplayLSN: UInt64?) async throws(HAError) -> Lease {
        var loop = executor.newLoop()
        return try await executor.acquire(readOnly: readOnly, database: database, minimumReplayLSN: minimumReplayLSN, loop: &loop)
    }

    /// Synchronous check-out on the caller's thread (the fast path). During a failover it waits,
    /// polling every millisecond, up to `failoverTimeout`.
    public func acquireSync(readOnly: Bool = false, database: String? = nil) throws(HAError) -> Lease {
        var loop = executor.newLoop()
        return try executor.acquireSync(readOnly: readOnly, database: database, loop: &loop)
    }

    /// Returns a leased connection to its pool.
    public func release(_ lease: Lease) {
        lease.pool.checkin(lease.connection)
    }

    /// Runs `body` with a leased connection (the leader's, or a replica's for `readOnly`) and
    /// returns it afterwards. Only the check-out is retried: once `body` runs, its statements are
    /// the caller's to judge.
    public func withConnection<T: Sendable>(
        readOnly: Bool = false, database: String? = nil, _ body: (PGConnection) async throws -> T
    ) async throws -> T {
        try await executor.withConnection(readOnly: readOnly, database: database, body)
    }

    // MARK: - Statements

    /// Runs one statement with automatic routing and safe retries.
    ///
    /// Retried on the (new) leader when nothing can have been applied. When the statement may have
    /// run (sent, answer lost), throws `.outcomeUnknown` unless `idempotent` is true or it ran on a
    /// replica.
    public func query(
        _ sql: String, _ params: [PGValue] = [], readOnly: Bool = false, idempotent: Bool = false,
        database: String? = nil
    ) async throws(HAError) -> PGResult {
        try await executor.execute(readOnly: readOnly, idempotent: idempotent, database: database) { conn async throws(PGError) in
            try await conn.query(sql, params)
        }
    }

    /// Synchronous `query` on the caller's thread (no thread hop): the fastest path.
    public func querySync(
        _ sql: String, _ params: [PGValue] = [], readOnly: Bool = false, idempotent: Bool = false,
        database: String? = nil
    ) throws(HAError) -> PGResult {
        try executor.executeSync(readOnly: readOnly, idempotent: idempotent, database: database) { conn throws(PGError) in
            try conn.query(sql, params)
        }
    }

    /// Runs `body` inside BEGIN … COMMIT on the leader.
    ///
    /// If the connection fails before COMMIT is sent, the server has rolled the transaction back:
    /// `body` is run again on the new leader. If it fails during COMMIT, the outcome is unknown:
    /// `.outcomeUnknown` is thrown unless `idempotent` is true. An error thrown by `body` itself
    /// rolls back and is rethrown unchanged.
    public func transaction<T: Sendable>(
        idempotent: Bool = false, database: String? = nil,
        _ body: @Sendable (PGConnection) async throws -> T
    ) async throws -> T {
        try await executor.transaction(
            idempotent: idempotent, database: database,
            begin: { conn async throws(PGError) in _ = try await conn.query("BEGIN") },
            commit: { conn async throws(PGError) in _ = try await conn.query("COMMIT") },
            rollback: { conn async in _ = try? await conn.query("ROLLBACK") },
            body
        )
    }

    // MARK: - Observation

    /// The current routing decision.
    public var routingTable: RoutingTable { executor.route.withLock { $0.table } }

    /// The last topology observed, if any.
    public var topology: ClusterTopology? { executor.machine.withLock { $0.topology } }

    /// Counters and refresh latency percentiles.
    public func statistics() -> PoolStatistics { executor.counters.snapshot }

    /// Refresh latencies (seconds) of the recent refreshes, for benchmarks.
    public var refreshLatencies: [Double] { executor.counters.refreshLatencies }

    /// When this pool's topology refreshes first saw each leader the REST API named, in order
    /// (for drills: how long after the API named a leader did the first write land on it).
    public var leaderFirstNamed: [(node: NodeAddress, at: ContinuousClock.Instant)] { executor.diagnostics.namedLeaders }

    /// Leader changes the pool went through.
    public var failovers: [FailoverEvent] { executor.diagnostics.failovers }

    /// Usage of every per-node pool.
    public func poolUsage() -> [String: [NodePoolUsage]] { executor.poolUsage() }

    /// The REST client, when the topology comes from Patroni's REST API.
    public var patroniClient: PatroniClient? { (source as? PatroniTopologySource)?.client }

    /// Ask for a topology refresh now.
    public func refreshTopology() {
        executor.feed { [clock = executor.clock] in $0.refreshRequested(now: clock.now) }
    }
}

#if ServiceLifecycle
extension PatroniHAPool: Service {}
#endif
