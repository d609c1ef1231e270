import CoreMetrics
import Logging
import Patroni
import PGClient
import Synchronization

/// The executor of `TopologyStateMachine`, generic over how connections are made so that it is
/// unit-tested with fakes (postgres-nio's `ConnectionPool` is generic the same way).
///
/// It steps the machine inside a `Mutex`, performs the returned actions outside it and feeds the
/// results back as events. Everything that runs in the background (the tick loop, `/cluster`
/// fetches, leader probes, warm-ups) is a child of `run()`'s discarding task group: when `run()`
/// returns, nothing of the pool runs any more. Time comes only from the injected `clock`, jitter
/// only from the injected `random` source.
///
/// Files: this one has the life cycle and the actions; `+Routing` the hot path (pick, leader
/// waits, check-out); `+Statements` the retried statement, transaction and connection paths.
final class PoolExecutor<Factory: PoolConnectionFactory>: Sendable {
    typealias Connection = Factory.Connection
    typealias Pool = NodePool<Factory>

    let config: PatroniClusterConfig
    /// Every database this pool serves; the first is `config.database`.
    let databases: [String]
    let source: any TopologySource
    let logger: Logger
    let factory: Factory
    let clock: any PoolClock
    /// Values in `0..<1` for jitter.
    let random: @Sendable () -> Double

    let machine: Mutex<TopologyStateMachine>
    let pools = Mutex<[PoolKey: Pool]>([:])
    let route = Mutex(Route<Factory>())
    let counters: StatisticsCounters
    let diagnostics = PoolDiagnostics()
    private let wakeup = Wakeup()
    private let work: AsyncStream<Work>
    private let workQueue: AsyncStream<Work>.Continuation
    private let lifecycle = Mutex(Lifecycle())

    struct PoolKey: Hashable, Sendable {
        let node: NodeAddress
        let database: String
    }

    /// Background work, run as a child task of `run()`.
    enum Work: Sendable {
        case fetch
        case probe(NodeAddress, after: Duration)
        case warmUp(NodePool<Factory>)
    }

    private struct Lifecycle {
        var running = false
        var closed = false
        /// The task `start()` runs `run()` in, when it was `start()` that ran it.
        var ownedRun: Task<Void, Never>?
    }

    init(
        config: PatroniClusterConfig, databases: [String], source: any TopologySource, factory: Factory,
        clock: any PoolClock, random: @escaping @Sendable () -> Double, logger: Logger,
        metrics: any MetricsFactory = MetricsSystem.factory
    ) {
        self.counters = StatisticsCounters(factory: metrics)
        self.config = config
        self.databases = databases
        self.source = source
        self.factory = factory
        self.clock = clock
        self.random = random
        self.logger = logger
        let settings = TopologyStateMachine.Settings(
            refreshInterval: config.healthCheckInterval,
            maxReplicaLagBytes: config.maxReplicaLagBytes
        )
        self.machine = Mutex(TopologyStateMachine(settings: settings, now: clock.now))
        (self.work, self.workQueue) = AsyncStream.makeStream(of: Work.self)
    }

    // MARK: - Life cycle

    /// Runs the pool until it is closed (`close()`) or the task is cancelled, which closes it.
    /// Returns when every background task has ended and every connection is closed. A second call,
    /// or a call after `close()`, returns at once.
    func run() async {
        let first = lifecycle.withLock { l -> Bool in
            guard !l.running, !l.closed else { return false }
            l.running = true
            return true
        }
        guard first else { return }
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.tickLoop() }
                self.feed { $0.start(now: self.clock.now) }
                for await item in self.work {
                    group.addTask { await self.execute(item) }
                }
                // Closed: stop what is in flight (a hung REST request, a probe's pause).
                group.cancelAll()
            }
        } onCancel: {
            self.beginClose()
        }
        closeAllPools()
    }

    /// Runs `run()` in a task the pool owns and waits until a leader is confirmed, up to
    /// `timeout` (default `failoverTimeout`). This is the seed's "pool initialization".
    func start(timeout: Duration? = nil) async throws(HAError) {
        let task = Task { await self.run() }
        lifecycle.withLock { l in
            if l.ownedRun == nil { l.ownedRun = task }
        }
        try await waitUntilReady(timeout: min(timeout ?? config.failoverTimeout, config.failoverTimeout))
    }

    /// Waits until a leader is confirmed writable, up to `timeout`. Fails early when waiting
    /// cannot help (the leader refuses the login).
    func waitUntilReady(timeout: Duration) async throws(HAError) {
        let deadline = clock.now + timeout
        while true {
            if route.withLock({ $0.closed }) { throw HAError(.closed, "the pool is closed") }
            if await waitForLeader(until: min(deadline, clock.now + .milliseconds(50))) { return }
            if Task.isCancelled { throw HAError(.cancelled, "cancelled while waiting for a leader") }
            // Wrong credentials do not heal by waiting: say so now.
            if let (node, error) = diagnostics.lastProbeError, Self.isPermanent(error) {
                var failure = HAError(.connectionFailed, "cannot log in to the leader", node: node, underlying: error)
                failure.certificate = postgresCertificate(node, error)
                throw failure
            }
            // Nor do certificates: every REST host failing TLS verification ends the wait.
            if let certificate = restCertificate(everyHost: true) {
                var failure = startFailure(waited: clock.now - (deadline - timeout))
                failure.message = "no Patroni REST API host could be verified: \(certificate.problem)"
                failure.certificate = certificate
                throw failure
            }
            if clock.now >= deadline { throw startFailure(waited: timeout) }
        }
    }

    /// Why no leader was confirmed, as precisely as the pool knows.
    func startFailure(waited: Duration? = nil) -> HAError {
        let waited = waited ?? config.failoverTimeout
        if machine.withLock({ $0.topology == nil }) {
            var error = HAError(.topologyUnavailable, "no Patroni REST API host gave a usable answer within \(waited) (\(config.apiHosts.joined(separator: ", ")), port \(config.apiPort))")
            error.restFailures = diagnostics.lastRESTFailures
            error.certificate = restCertificate(everyHost: false)
            return error
        }
        if let (node, error) = diagnostics.lastProbeError {
            var failure = HAError(.noLeader, "the leader named by the REST API could not be checked within \(waited)", node: node, underlying: error)
            failure.certificate = postgresCertificate(node, error)
            return failure
        }
        return HAError(.noLeader, "no leader was confirmed writable within \(waited)")
    }

    /// Why no leader is confirmed right now, with the last cause per REST host or of the leader
    /// check (for health reports).
    var noLeaderExplanation: String {
        var text = "no confirmed writable leader"
        let rest = diagnostics.lastRESTFailures
        if !rest.isEmpty {
            text += "; REST API: " + rest.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")
        } else if let (node, error) = diagnostics.lastProbeError {
            text += "; leader check of \(node): \(error)"
        }
        return text
    }

    /// Closes the pool: pending waiters fail with `.closed`, `run()` ends its background work and
    /// returns, every connection is closed. Waits for `run()` when `start()` started it.
    func close() async {
        beginClose()
        let task = lifecycle.withLock { $0.ownedRun }
        await task?.value
        closeAllPools()
    }

    /// The synchronous part of closing (also what cancelling `run()` does).
    func beginClose() {
        let already = lifecycle.withLock { l -> Bool in
            defer { l.closed = true }
            return l.closed
        }
        guard !already else { return }
        let actions = machine.withLock { $0.close() }
        let waiters = route.withLock { r -> [CheckedContinuation<Bool, Never>] in
            r.closed = true
            defer { r.leaderWaiters = [:] }
            return Array(r.leaderWaiters.values)
        }
        for w in waiters { w.resume(returning: false) }
        perform(actions)
        workQueue.finish()
        wakeup.signal()
    }

    private func closeAllPools() {
        let all = pools.withLock { p in
            defer { p = [:] }
            return Array(p.values)
        }
        for pool in all { pool.close() }
    }

    private func tickLoop() async {
        while !Task.isCancelled {
            let (actions, delay, closed) = machine.withLock { m -> ([TopologyAction], Duration, Bool) in
                if case .closed = m.leaderState { return ([], .zero, true) }
                let now = clock.now
                let actions = m.tick(now: now)
                return (actions, m.nextTick(now: now), false)
            }
            if closed { return }
            perform(actions)
            await wakeup.wait(until: clock.now + max(delay, .milliseconds(1)), clock: clock)
        }
    }

    // MARK: - Executor

    func feed(_ event: (inout TopologyStateMachine) -> [TopologyAction]) {
        let actions = machine.withLock { event(&$0) }
        perform(actions)
        wakeup.signal()
    }

    private func execute(_ item: Work) async {
        switch item {
        case .fetch:
            await fetchTopology()
        case .probe(let node, let delay):
            if delay > .zero {
                do { try await clock.sleep(for: delay) } catch { return }
            }
            await probeLeader(node)
        case .warmUp(let pool):
            await pool.warmUp()
        }
    }

    private func fetchTopology() async {
        let started = clock.now
        do {
            let topology = try await source.fetch()
            let now = clock.now
            counters.recordRefresh(latency: now - started)
            diagnostics.recordNamedLeader(topology.leader?.address, at: now)
            let failed = diagnostics.fetchSucceeded()
            if failed > 0 { logger.notice("topology refresh works again", metadata: ["failed_refreshes": "\(failed)"]) }
            feed { $0.fetchSucceeded(topology, now: now) }
        } catch {
            // Closing the pool cancels a refresh in flight: that is no failure of the REST API.
            if Task.isCancelled { return }
            counters.topologyRefreshFailures.increment()
            // Once per streak at warning (during an outage this runs with every backoff step).
            if diagnostics.fetchFailed(error) == 1 {
                logger.warning("topology refresh failed", metadata: ["error": "\(error)"])
            } else {
                logger.debug("topology refresh failed", metadata: ["error": "\(error)"])
            }
            let jitter = random()
            feed { $0.fetchFailed(now: clock.now, jitter: jitter) }
        }
    }

    private func probeLeader(_ node: NodeAddress) async {
        switch await probe(node) {
        case .writable:
            diagnostics.probeSucceeded()
            feed { $0.probeSucceeded(node, now: clock.now) }
        case .inRecovery:
            feed { $0.probeFailed(node, now: clock.now) }
        case .failed(let error):
            let permanent = Self.isPermanent(error)
            if diagnostics.probeFailed(node, error), let error {
                logger.warning("cannot check the leader", metadata: ["node": "\(node)", "error": "\(error)"])
            }
            // Wrong credentials: one attempt a second, not a login storm on the leader.
            feed { $0.probeFailed(node, now: clock.now, retryAfter: permanent ? .seconds(1) : nil) }
        }
    }

    func perform(_ actions: [TopologyAction]) {
        for action in actions {
            switch action {
            case .fetchTopology:
                workQueue.yield(.fetch)
            case .probeLeader(let node, let delay):
                workQueue.yield(.probe(node, after: delay))
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
                publish(table)
            case .leaderAvailable(let node):
                logger.info("leader confirmed writable", metadata: ["node": "\(node)"])
                for database in databases {
                    if let p = pool(for: node, database: database, create: true) { workQueue.yield(.warmUp(p)) }
                }
            case .failoverCompleted(let from, let to, let unavailable):
                counters.recordFailover(unavailable: unavailable)
                diagnostics.recordFailover(PatroniHAPool.FailoverEvent(from: from, to: to, unavailableSeconds: unavailable.asSeconds))
                logger.notice("failover complete", metadata: [
                    "from": "\(from.map(\.description) ?? "-")", "to": "\(to)", "unavailable_s": "\(unavailable.asSeconds)",
                ])
            }
        }
    }

    func pool(for node: NodeAddress, database: String, create: Bool) -> Pool? {
        pools.withLock { p in
            let key = PoolKey(node: node, database: database)
            if let existing = p[key] { return existing }
            guard create else { return nil }
            let created = Pool(
                node: node, template: connectionTemplate(database: database), minConnections: config.minConnections,
                maxConnections: config.maxConnections, idleCheckAfter: config.idleCheckAfter, factory: factory, clock: clock
            )
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
        let conn: Connection
        do {
            conn = try await pool.checkout(timeout: config.connectTimeout)
        } catch {
            return .failed(error.underlying)
        }
        defer { pool.checkin(conn) }
        do {
            return try await conn.isInRecovery() ? .inRecovery : .writable
        } catch {
            return .failed(error)
        }
    }

    /// Wrong credentials or a broken configuration: probing again soon cannot help.
    static func isPermanent(_ error: PGError?) -> Bool {
        guard let error else { return false }
        return error.code == .authenticationFailed || error.code == .invalidConfiguration
            || CertificateProblem(message: error.message) != nil
    }

    /// The certificate problem of the REST hosts' last failures: of the first one with one, or
    /// (`everyHost`) only when every configured host failed that way.
    func restCertificate(everyHost: Bool) -> (server: String, problem: CertificateProblem, advice: String)? {
        let failures = diagnostics.lastRESTFailures.sorted { $0.key < $1.key }
        let problems = failures.compactMap { host, cause in CertificateProblem(message: cause).map { (host, $0) } }
        if everyHost, problems.isEmpty || problems.count < config.apiHosts.count || problems.count < failures.count { return nil }
        guard let (endpoint, problem) = problems.first else { return nil }
        // "https://host:port" → "host:port", as openssl s_client takes it.
        let host = endpoint.split(separator: "://", maxSplits: 1).last.map(String.init) ?? endpoint
        let advice = problem.advice(server: host, caSetting: "PATRONI_API_CAFILE", caFile: config.api.caFile,
                                    certSetting: "PATRONI_API_CERTFILE", postgres: false)
        return (host, problem, advice)
    }

    /// The certificate problem of a failed login to a member's PostgreSQL, if it is one.
    func postgresCertificate(_ node: NodeAddress, _ error: PGError?) -> (server: String, problem: CertificateProblem, advice: String)? {
        guard let error, let problem = CertificateProblem(message: error.message) else { return nil }
        let advice = problem.advice(server: node.description, caSetting: "PATRONI_SSLROOTCERT", caFile: config.tls.sslRootCert,
                                    certSetting: "PATRONI_SSLCERT", postgres: true)
        return (node.description, problem, advice)
    }

    func connectionTemplate(database: String) -> PGConnectionConfig {
        var c = PGConnectionConfig(host: "", port: 5432, database: database, user: config.user, password: config.password)
        config.tls.apply(to: &c)
        c.connectTimeout = config.connectTimeout
        c.applicationName = config.applicationName
        return c
    }

    /// Usage of every per-node pool.
    func poolUsage() -> [String: [NodePoolUsage]] {
        let all = pools.withLock { $0 }
        var result: [String: [NodePoolUsage]] = [:]
        for (key, pool) in all { result[key.database, default: []].append(pool.usage) }
        for key in result.keys { result[key]?.sort { $0.node < $1.node } }
        return result
    }
}
