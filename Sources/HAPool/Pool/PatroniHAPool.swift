public import Logging
public import Patroni
public import PGClient
import Synchronization

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
/// The topology logic is `TopologyStateMachine` (pure); this class is its executor.
public final class PatroniHAPool: Sendable {
    public let config: PatroniClusterConfig
    /// Every database this pool serves; the first is `config.database`.
    public let databases: [String]
    let source: any TopologySource
    let logger: Logger

    private let machine: Mutex<TopologyStateMachine>
    private let pools = Mutex<[PoolKey: NodePool]>([:])
    private let route = Mutex(Route())
    private let counters = StatisticsCounters()
    private let wakeup = Wakeup()
    private let loop = Mutex<Task<Void, Never>?>(nil)
    private let failoverLog = Mutex<[FailoverEvent]>([])
    private let namedLeaders = Mutex<[(NodeAddress, ContinuousClock.Instant)]>([])
    /// The last failed leader check (node, libpq's error), cleared by a successful one.
    private let lastProbeError = Mutex<(NodeAddress, PGError)?>(nil)
    /// Consecutive refreshes where no REST host answered (log once per streak).
    private let refreshFailureStreak = Atomic<Int>(0)

    struct PoolKey: Hashable, Sendable {
        let node: NodeAddress
        let database: String
    }

    /// A completed leader change, as the pool saw it.
    public struct FailoverEvent: Sendable, Hashable, Codable {
        public var from: NodeAddress?
        public var to: NodeAddress
        /// Time without a confirmed leader.
        public var unavailableSeconds: Double
    }

    /// The hot path's view: precomputed pools per database.
    private struct Route: ~Copyable {
        var table = RoutingTable(writer: nil, readers: [], generation: 0)
        /// The writer's and readers' pools for `config.database`, resolved at publish time so the
        /// hot path needs no dictionary lookup (`readerPools` is parallel to `table.readers`).
        var writerPool: NodePool?
        var readerPools: [NodePool] = []
        var roundRobin = 0
        var closed = false
        var leaderWaiters: [Int: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiter = 0
    }

    /// - Parameters:
    ///   - config: the cluster configuration.
    ///   - additionalDatabases: more databases served through the same topology (e.g. the shared one).
    ///   - source: where topology comes from; defaults to the Patroni REST API of `config`.
    public init(
        config: PatroniClusterConfig, additionalDatabases: [String] = [],
        source: (any TopologySource)? = nil, logger: Logger = Logger(label: "pgha.pool")
    ) throws(ConfigurationError) {
        self.config = config
        var dbs = [config.database]
        for db in additionalDatabases where !dbs.contains(db) { dbs.append(db) }
        self.databases = dbs
        if let source {
            self.source = source
        } else {
            self.source = try PatroniTopologySource(config: config)
        }
        self.logger = logger
        let settings = TopologyStateMachine.Settings(
            refreshInterval: config.healthCheckInterval,
            maxReplicaLagBytes: config.maxReplicaLagBytes
        )
        self.machine = Mutex(TopologyStateMachine(settings: settings, now: .now))
    }

    // MARK: - Life cycle

    /// Discovers the topology and waits until a leader is confirmed (up to `failoverTimeout`).
    /// This is the seed's "pool initialization".
    public func start() async throws(HAError) {
        let task = Task { [self] in await self.runLoop() }
        loop.withLock { $0 = task }
        feed { $0.start(now: .now) }
        let deadline = ContinuousClock.now + config.failoverTimeout
        while ContinuousClock.now < deadline {
            if await waitForLeader(until: min(deadline, .now + .milliseconds(50))) { return }
            // Wrong credentials do not heal by waiting: say so now.
            if let (node, error) = lastProbeError.withLock({ $0 }), Self.isPermanent(error) {
                throw HAError(.connectionFailed, "cannot log in to the leader", node: node, underlying: error)
            }
        }
        throw startFailure()
    }

    /// Why no leader was confirmed, as precisely as the pool knows.
    private func startFailure() -> HAError {
        if machine.withLock({ $0.topology == nil }) {
            return HAError(.topologyUnavailable, "no Patroni REST API host answered within \(config.failoverTimeout) (\(config.apiHosts.joined(separator: ", ")), port \(config.apiPort))")
        }
        if let (node, error) = lastProbeError.withLock({ $0 }) {
            return HAError(.noLeader, "the leader named by the REST API could not be checked within \(config.failoverTimeout)", node: node, underlying: error)
        }
        return HAError(.noLeader, "no leader was confirmed writable within \(config.failoverTimeout)")
    }

    /// Closes every connection; pending waiters fail with `.closed`.
    public func close() async {
        let actions = machine.withLock { $0.close() }
        let waiters = route.withLock { r -> [CheckedContinuation<Bool, Never>] in
            r.closed = true
            defer { r.leaderWaiters = [:] }
            return Array(r.leaderWaiters.values)
        }
        for w in waiters { w.resume(returning: false) }
        perform(actions)
        let task = loop.withLock { $0 }
        task?.cancel()
        await task?.value
        let all = pools.withLock { p in
            defer { p = [:] }
            return Array(p.values)
        }
        for pool in all { pool.close() }
    }

    private func runLoop() async {
        while !Task.isCancelled {
            let actions = machine.withLock { $0.tick(now: .now) }
            perform(actions)
            let delay = machine.withLock { $0.nextTick(now: .now) }
            await wakeup.wait(timeout: max(delay, .milliseconds(1)))
        }
    }

    // MARK: - Executor

    private func feed(_ event: (inout TopologyStateMachine) -> [TopologyAction]) {
        let actions = machine.withLock { event(&$0) }
        perform(actions)
        wakeup.signal()
    }

    private func perform(_ actions: [TopologyAction]) {
        for action in actions {
            switch action {
            case .fetchTopology:
                Task { [self] in
                    let started = ContinuousClock.now
                    do {
                        let topology = try await source.fetch()
                        counters.recordRefresh(latency: .now - started)
                        recordNamedLeader(topology.leader?.address)
                        let failed = refreshFailureStreak.exchange(0, ordering: .relaxed)
                        if failed > 0 { logger.notice("topology refresh works again", metadata: ["failed_refreshes": "\(failed)"]) }
                        feed { $0.fetchSucceeded(topology, now: .now) }
                    } catch {
                        counters.topologyRefreshFailures.add(1, ordering: .relaxed)
                        // Once per streak at warning (during an outage this runs every 20 ms).
                        if refreshFailureStreak.add(1, ordering: .relaxed).newValue == 1 {
                            logger.warning("topology refresh failed", metadata: ["error": "\(error)"])
                        } else {
                            logger.debug("topology refresh failed", metadata: ["error": "\(error)"])
                        }
                        feed { $0.fetchFailed(now: .now) }
                    }
                }
            case .probeLeader(let node, let delay):
                Task { [self] in
                    if delay > .zero { try? await Task.sleep(for: delay) }
                    switch await probe(node) {
                    case .writable:
                        lastProbeError.withLock { $0 = nil }
                        feed { $0.probeSucceeded(node, now: .now) }
                    case .inRecovery:
                        feed { $0.probeFailed(node, now: .now) }
                    case .failed(let error):
                        let permanent = Self.isPermanent(error)
                        let first = lastProbeError.withLock { last -> Bool in
                            defer { last = error.map { (node, $0) } }
                            return last == nil
                        }
                        if first, let error {
                            logger.warning("cannot check the leader", metadata: ["node": "\(node)", "error": "\(error)"])
                        }
                        // Wrong credentials: one attempt a second, not a login storm on the leader.
                        feed { $0.probeFailed(node, now: .now, retryAfter: permanent ? .seconds(1) : nil) }
                    }
                }
            case .openPool(let node):
                for database in databases { _ = pool(for: node, database: database, create: true) }
            case .drainPool(let node):
                for database in databases { pool(for: node, database: database, create: false)?.drain() }
                logger.info("draining connections to the former leader", metadata: ["node": "\(node)"])
            case .retirePool(let node):
                let retired = pools.withLock { p in
                    databases.compactMap { p.removeValue(forKey: PoolKey(node: node, database: $0)) }
                }
                for pool in retired { pool.close() }
            case .publish(let table):
                for member in table.readers {
                    if let address = member.address {
                        for database in databases { pool(for: address, database: database, create: true)?.reopen() }
                    }
                }
                let writerPool = table.writer.flatMap { pool(for: $0, database: config.database, create: true) }
                let readerPools = table.readers.compactMap { member in
                    member.address.flatMap { pool(for: $0, database: config.database, create: true) }
                }
                let waiters = route.withLock { r -> [CheckedContinuation<Bool, Never>] in
                    r.table = table
                    r.writerPool = writerPool
                    r.readerPools = readerPools.count == table.readers.count ? readerPools : []
                    guard table.writer != nil else { return [] }
                    defer { r.leaderWaiters = [:] }
                    return Array(r.leaderWaiters.values)
                }
                for w in waiters { w.resume(returning: true) }
            case .leaderAvailable(let node):
                logger.info("leader confirmed writable", metadata: ["node": "\(node)"])
                for database in databases {
                    if let p = pool(for: node, database: database, create: true) {
                        Task { await p.warmUp() }
                    }
                }
            case .failoverCompleted(let from, let to, let unavailable):
                counters.recordFailover(unavailable: unavailable)
                failoverLog.withLock { $0.append(FailoverEvent(from: from, to: to, unavailableSeconds: unavailable.asSeconds)) }
                logger.notice("failover complete", metadata: [
                    "from": "\(from.map(\.description) ?? "-")", "to": "\(to)", "unavailable_s": "\(unavailable.asSeconds)",
                ])
            }
        }
    }

    private func pool(for node: NodeAddress, database: String, create: Bool) -> NodePool? {
        pools.withLock { p in
            let key = PoolKey(node: node, database: database)
            if let existing = p[key] { return existing }
            guard create else { return nil }
            let created = NodePool(node: node, template: connectionTemplate(database: database), minConnections: config.minConnections, maxConnections: config.maxConnections, idleCheckAfter: config.idleCheckAfter)
            p[key] = created
            return created
        }
    }

    enum ProbeResult {
        case writable
        case inRecovery
        case failed(PGError?)
    }

    /// Connects to `node` and checks it is out of recovery. The connection then serves writes.
    private func probe(_ node: NodeAddress) async -> ProbeResult {
        guard let pool = pool(for: node, database: config.database, create: true) else { return .failed(nil) }
        pool.reopen()
        do {
            let conn = try await pool.checkout(timeout: config.connectTimeout)
            defer { pool.checkin(conn) }
            let inRecovery = try await conn.query("SELECT pg_is_in_recovery()").bool(0, 0) ?? true
            return inRecovery ? .inRecovery : .writable
        } catch let error as HAError {
            return .failed(error.underlying)
        } catch let error as PGError {
            return .failed(error)
        } catch {
            return .failed(nil)
        }
    }

    /// Wrong credentials or a broken configuration: probing again soon cannot help.
    static func isPermanent(_ error: PGError?) -> Bool {
        guard let error else { return false }
        return error.code == .authenticationFailed || error.code == .invalidConfiguration
    }

    func connectionTemplate(database: String) -> PGConnectionConfig {
        var c = PGConnectionConfig(host: "", port: 5432, database: database, user: config.user, password: config.password)
        if let mode = config.tls.sslMode { c.sslMode = PGSSLMode(rawValue: mode) }
        c.sslRootCert = config.tls.sslRootCert
        c.sslCert = config.tls.sslCert
        c.sslKey = config.tls.sslKey
        c.connectTimeout = config.connectTimeout
        c.applicationName = config.applicationName
        return c
    }

    // MARK: - Routing

    /// A checked-out connection and where it came from.
    public struct Lease: Sendable {
        public let connection: PGConnection
        public let node: NodeAddress
        /// Served by a replica (cannot have written anything).
        public let isReplica: Bool
        let pool: NodePool
    }

    private func waitForLeader(until deadline: ContinuousClock.Instant) async -> Bool {
        let (ready, id): (Bool?, Int) = route.withLock { r in
            if r.closed { return (false, 0) }
            if r.table.writer != nil { return (true, 0) }
            r.nextWaiter += 1
            return (nil, r.nextWaiter)
        }
        if let ready { return ready }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let immediate: Bool? = route.withLock { r in
                if r.closed { return false }
                if r.table.writer != nil { return true }
                r.leaderWaiters[id] = continuation
                return nil
            }
            if let immediate {
                continuation.resume(returning: immediate)
                return
            }
            Task { [self] in
                try? await Task.sleep(until: deadline, clock: .continuous)
                let waiter = route.withLock { $0.leaderWaiters.removeValue(forKey: id) }
                waiter?.resume(returning: false)
            }
        }
    }

    private enum Pick {
        case lease(NodePool, isReplica: Bool)
        case noLeader
        case noReplica
        case closed
    }

    private func pick(readOnly: Bool, database: String, minimumReplayLSN: UInt64? = nil) -> Pick {
        let primaryDatabase = database == config.database
        let (target, cached, isReplica, fallback, closed): (NodeAddress?, NodePool?, Bool, Bool, Bool) = route.withLock { r in
            if r.closed { return (nil, nil, false, false, true) }
            if readOnly, !r.table.readers.isEmpty {
                r.roundRobin &+= 1
                let index: Int
                if let minimum = minimumReplayLSN {
                    // read-your-writes: only replicas known to have replayed the write
                    let candidates = r.table.readers.indices.filter { (r.table.readers[$0].replayLSN ?? 0) >= minimum }
                    guard !candidates.isEmpty else { return (r.table.writer, primaryDatabase ? r.writerPool : nil, false, false, false) }
                    index = candidates[Int(UInt(bitPattern: r.roundRobin) % UInt(candidates.count))]
                } else {
                    index = Int(UInt(bitPattern: r.roundRobin) % UInt(r.table.readers.count))
                }
                let pool = primaryDatabase && index < r.readerPools.count ? r.readerPools[index] : nil
                return (r.table.readers[index].address, pool, true, false, false)
            }
            return (r.table.writer, primaryDatabase ? r.writerPool : nil, false, readOnly, false)
        }
        if closed { return .closed }
        if fallback {
            if config.replicaFallback == .fail { return .noReplica }
            counters.replicaFallbacks.add(1, ordering: .relaxed)
        }
        guard let target else { return .noLeader }
        if let cached { return .lease(cached, isReplica: isReplica) }
        guard let pool = pool(for: target, database: database, create: true) else { return .noLeader }
        return .lease(pool, isReplica: isReplica)
    }

    /// Checks out a connection: the leader's, or a replica's for `readOnly`. Waits for a leader up
    /// to `failoverTimeout` during a failover.
    public func acquire(readOnly: Bool = false, database: String? = nil) async throws(HAError) -> Lease {
        try await acquire(readOnly: readOnly, database: database, minimumReplayLSN: nil)
    }

    func acquire(readOnly: Bool, database: String?, minimumReplayLSN: UInt64?) async throws(HAError) -> Lease {
        let db = database ?? config.database
        let deadline = ContinuousClock.now + config.failoverTimeout
        var attempts = 0
        var lastError: HAError?
        while true {
            attempts += 1
            switch pick(readOnly: readOnly, database: db, minimumReplayLSN: minimumReplayLSN) {
            case .closed:
                throw HAError(.closed, "the pool is closed")
            case .noReplica:
                throw HAError(.noReplicaAvailable, "no replica qualifies for reads (lag ≤ \(config.maxReplicaLagBytes) bytes, running, not noloadbalance)")
            case .noLeader:
                if ContinuousClock.now >= deadline {
                    if let lastError { throw lastError }
                    var failure = startFailure()
                    failure.attempts = attempts
                    throw failure
                }
                _ = await waitForLeader(until: deadline)
            case .lease(let pool, let isReplica):
                do {
                    let conn = try await pool.checkout(timeout: max(.milliseconds(1), deadline - .now))
                    return Lease(connection: conn, node: pool.node, isReplica: isReplica, pool: pool)
                } catch {
                    // A node pool closed because its member left the cluster is a routing race,
                    // not the end: only the HA pool's own closing is.
                    if error.code == .poolExhausted || (error.code == .closed && route.withLock({ $0.closed })) { throw error }
                    if let underlying = error.underlying, underlying.code == .authenticationFailed {
                        throw error
                    }
                    lastError = error
                    counters.retries.add(1, ordering: .relaxed)
                    feed { $0.connectionFailed(pool.node, now: .now) }
                    if ContinuousClock.now >= deadline { throw error }
                    try await backoff(attempt: attempts, deadline: deadline)
                }
            }
        }
    }

    /// Synchronous check-out on the caller's thread (the fast path). During a failover it waits,
    /// polling every millisecond, up to `failoverTimeout`.
    public func acquireSync(readOnly: Bool = false, database: String? = nil) throws(HAError) -> Lease {
        let db = database ?? config.database
        var deadline = LazyDeadline(span: config.failoverTimeout)
        var attempts = 0
        while true {
            attempts += 1
            switch pick(readOnly: readOnly, database: db) {
            case .closed: throw HAError(.closed, "the pool is closed")
            case .noReplica: throw HAError(.noReplicaAvailable, "no replica qualifies for reads")
            case .noLeader:
                if deadline.passed() { throw HAError(.noLeader, "no leader confirmed within \(config.failoverTimeout)", attempts: attempts) }
                sleepBlocking(.milliseconds(1))
            case .lease(let pool, let isReplica):
                do {
                    let conn = try pool.checkoutSync(timeout: deadline.remaining())
                    return Lease(connection: conn, node: pool.node, isReplica: isReplica, pool: pool)
                } catch {
                    if error.code == .poolExhausted || (error.code == .closed && route.withLock({ $0.closed })) { throw error }
                    if let underlying = error.underlying, underlying.code == .authenticationFailed { throw error }
                    counters.retries.add(1, ordering: .relaxed)
                    feed { $0.connectionFailed(pool.node, now: .now) }
                    if deadline.passed() { throw error }
                }
            }
        }
    }

    /// Runs `body` with a leased connection (the leader's, or a replica's for `readOnly`) and
    /// returns it afterwards. Only the check-out is retried: once `body` runs, its statements are
    /// the caller's to judge.
    public func withConnection<T: Sendable>(
        readOnly: Bool = false, database: String? = nil, _ body: (PGConnection) async throws -> T
    ) async throws -> T {
        let lease = try await acquire(readOnly: readOnly, database: database)
        defer { release(lease) }
        do {
            let value = try await body(lease.connection)
            counters.countStatement(readOnly: readOnly)
            return value
        } catch let error as PGError {
            if FailureClassifier.classify(error, rerunIsSafe: true).nodeFailed {
                feed { $0.connectionFailed(lease.node, now: .now) }
            }
            counters.errors.add(1, ordering: .relaxed)
            throw error
        }
    }

    /// Returns a leased connection to its pool.
    public func release(_ lease: Lease) {
        lease.pool.checkin(lease.connection)
    }

    private func backoff(attempt: Int, deadline: ContinuousClock.Instant) async throws(HAError) {
        let delay = config.retry.delay(beforeRetry: min(attempt, 30), random: Double.random(in: 0..<1))
        let remaining = deadline - .now
        do {
            try await Task.sleep(for: min(delay, max(.zero, remaining)))
        } catch {
            throw HAError(.cancelled, "cancelled while waiting to retry")
        }
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
        let deadline = ContinuousClock.now + config.failoverTimeout
        var attempts = 0
        while true {
            attempts += 1
            let lease = try await acquire(readOnly: readOnly, database: database)
            do {
                let result = try await lease.connection.query(sql, params)
                release(lease)
                counters.countStatement(readOnly: readOnly)
                return result
            } catch {
                release(lease)
                try await handle(error, lease: lease, rerunIsSafe: idempotent || lease.isReplica, attempts: attempts, deadline: deadline)
            }
        }
    }

    /// Synchronous `query` on the caller's thread (no thread hop): the fastest path.
    public func querySync(
        _ sql: String, _ params: [PGValue] = [], readOnly: Bool = false, idempotent: Bool = false,
        database: String? = nil
    ) throws(HAError) -> PGResult {
        var deadline = LazyDeadline(span: config.failoverTimeout)
        var attempts = 0
        while true {
            attempts += 1
            let lease = try acquireSync(readOnly: readOnly, database: database)
            do {
                let result = try lease.connection.query(sql, params)
                release(lease)
                counters.countStatement(readOnly: readOnly)
                return result
            } catch {
                release(lease)
                let (decision, nodeFailed) = FailureClassifier.classify(error, rerunIsSafe: idempotent || lease.isReplica)
                if nodeFailed { feed { $0.connectionFailed(lease.node, now: .now) } }
                switch decision {
                case .retry where !deadline.passed():
                    counters.retries.add(1, ordering: .relaxed)
                    continue
                case .retry, .fail:
                    counters.errors.add(1, ordering: .relaxed)
                    throw HAError(error.isConnectionLevel ? .connectionFailed : .queryFailed, "statement failed", node: lease.node, underlying: error, attempts: attempts)
                case .outcomeUnknown:
                    counters.errors.add(1, ordering: .relaxed)
                    counters.outcomeUnknown.add(1, ordering: .relaxed)
                    throw HAError(.outcomeUnknown, "the connection failed after the statement was sent; it may or may not have been applied", node: lease.node, underlying: error, attempts: attempts)
                }
            }
        }
    }

    /// Shared failure handling for the async paths: returns to retry, throws otherwise.
    private func handle(_ error: PGError, lease: Lease, rerunIsSafe: Bool, attempts: Int, deadline: ContinuousClock.Instant) async throws(HAError) {
        let (decision, nodeFailed) = FailureClassifier.classify(error, rerunIsSafe: rerunIsSafe)
        if nodeFailed { feed { $0.connectionFailed(lease.node, now: .now) } }
        switch decision {
        case .retry where ContinuousClock.now < deadline:
            counters.retries.add(1, ordering: .relaxed)
            logger.debug("retrying", metadata: ["node": "\(lease.node)", "attempt": "\(attempts)", "code": "\(error.code)"])
        case .retry, .fail:
            counters.errors.add(1, ordering: .relaxed)
            throw HAError(error.isConnectionLevel ? .connectionFailed : .queryFailed, "statement failed", node: lease.node, underlying: error, attempts: attempts)
        case .outcomeUnknown:
            counters.errors.add(1, ordering: .relaxed)
            counters.outcomeUnknown.add(1, ordering: .relaxed)
            throw HAError(.outcomeUnknown, "the connection failed after the statement was sent; it may or may not have been applied", node: lease.node, underlying: error, attempts: attempts)
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
        let deadline = ContinuousClock.now + config.failoverTimeout
        var attempts = 0
        while true {
            attempts += 1
            let lease = try await acquire(readOnly: false, database: database)
            let conn = lease.connection
            var committing = false
            do {
                _ = try await conn.query("BEGIN")
                let value: T
                do {
                    value = try await body(conn)
                } catch let error as PGError {
                    throw error
                } catch {
                    _ = try? await conn.query("ROLLBACK")
                    release(lease)
                    throw error
                }
                committing = true
                _ = try await conn.query("COMMIT")
                release(lease)
                counters.writes.add(1, ordering: .relaxed)
                return value
            } catch let error as PGError {
                if !error.isConnectionLevel, error.sqlState != "25006" {
                    _ = try? await conn.query("ROLLBACK")
                }
                release(lease)
                // Before COMMIT, a broken connection means the server rolled back: safe to re-run.
                try await handle(error, lease: lease, rerunIsSafe: idempotent || !committing, attempts: attempts, deadline: deadline)
            }
        }
    }

    // MARK: - Observation

    /// The current routing decision.
    public var routingTable: RoutingTable { route.withLock { $0.table } }

    /// The last topology observed, if any.
    public var topology: ClusterTopology? { machine.withLock { $0.topology } }

    /// Counters and refresh latency percentiles.
    public func statistics() -> PoolStatistics { counters.snapshot }

    /// Refresh latencies (seconds) of the recent refreshes, for benchmarks.
    public var refreshLatencies: [Double] { counters.refreshLatencies }

    /// When this pool's topology refreshes first saw each leader the REST API named, in order
    /// (for drills: how long after the API named a leader did the first write land on it).
    public var leaderFirstNamed: [(node: NodeAddress, at: ContinuousClock.Instant)] {
        namedLeaders.withLock { $0.map { (node: $0.0, at: $0.1) } }
    }

    private func recordNamedLeader(_ leader: NodeAddress?) {
        guard let leader else { return }
        let now = ContinuousClock.now
        namedLeaders.withLock { list in
            if list.last?.0 != leader {
                list.append((leader, now))
                if list.count > 64 { list.removeFirst(list.count - 64) }
            }
        }
    }

    /// Leader changes the pool went through.
    public var failovers: [FailoverEvent] { failoverLog.withLock { $0 } }

    /// Usage of every per-node pool.
    public func poolUsage() -> [String: [NodePoolUsage]] {
        let all = pools.withLock { $0 }
        var result: [String: [NodePoolUsage]] = [:]
        for (key, pool) in all { result[key.database, default: []].append(pool.usage) }
        for key in result.keys { result[key]?.sort { $0.node < $1.node } }
        return result
    }

    /// The REST client, when the topology comes from Patroni's REST API.
    public var patroniClient: PatroniClient? { (source as? PatroniTopologySource)?.client }

    /// Ask for a topology refresh now.
    public func refreshTopology() {
        feed { $0.refreshRequested(now: .now) }
    }
}

/// Blocks the calling thread (sync API only; never called from async code).
func sleepBlocking(_ duration: Duration) {
    let (seconds, atto) = duration.components
    var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int(atto / 1_000_000_000))
    nanosleep(&ts, nil)
}

#if canImport(Glibc)
import Glibc
#endif

/// A deadline that reads the clock only when first needed: the fast path never fails, so it never
/// pays for the clock.
struct LazyDeadline {
    let span: Duration
    private var at: ContinuousClock.Instant?

    init(span: Duration) { self.span = span }

    private mutating func instant() -> ContinuousClock.Instant {
        if let at { return at }
        let value = ContinuousClock.now + span
        at = value
        return value
    }

    /// Time left, at least 1 ms.
    mutating func remaining() -> Duration { max(.milliseconds(1), instant() - .now) }

    mutating func passed() -> Bool { ContinuousClock.now >= instant() }
}
