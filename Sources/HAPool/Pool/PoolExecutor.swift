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
    let wakeup = Wakeup()
    private let work: AsyncStream<Work>
    let workQueue: AsyncStream<Work>.Continuation
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
}
