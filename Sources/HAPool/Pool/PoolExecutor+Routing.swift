import PGClient
import Synchronization

/// A checked-out connection and where it came from.
public struct PoolLease<Factory: PoolConnectionFactory>: Sendable {
    public let connection: Factory.Connection
    public let node: NodeAddress
    /// Served by a replica (cannot have written anything).
    public let isReplica: Bool
    let pool: NodePool<Factory>
}

/// The hot path's view: precomputed pools per database.
struct Route<Factory: PoolConnectionFactory>: ~Copyable {
    var table = RoutingTable(writer: nil, readers: [], generation: 0)
    /// The writer's and readers' pools for `config.database`, resolved at publish time so the
    /// hot path needs no dictionary lookup (`readerPools` is parallel to `table.readers`).
    var writerPool: NodePool<Factory>?
    var readerPools: [NodePool<Factory>] = []
    var roundRobin = 0
    var closed = false
    var leaderWaiters: [Int: CheckedContinuation<Bool, Never>] = [:]
    var nextWaiter = 0
}

extension PoolExecutor {
    enum Pick {
        case lease(Pool, isReplica: Bool)
        case noLeader
        case noReplica
        case closed
    }

    /// Replaces the hot path's routing table and wakes writers waiting for a leader.
    func publish(_ table: RoutingTable) {
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
    }

    /// Waits until a writer is published (true), the pool closes, the task is cancelled or
    /// `deadline` passes on the clock (false). The timer is a child task.
    func waitForLeader(until deadline: ContinuousClock.Instant) async -> Bool {
        let (ready, id): (Bool?, Int) = route.withLock { r in
            if r.closed { return (false, 0) }
            if r.table.writer != nil { return (true, 0) }
            r.nextWaiter += 1
            return (nil, r.nextWaiter)
        }
        if let ready { return ready }
        return await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // At the deadline, or at once when cancelled: the wait ends either way (a waiter
                // left registered would be resumed by nobody, and start() would never return).
                try? await self.clock.sleep(until: deadline)
                self.abandonLeaderWait(id)
            }
            let result = await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                    // Cancellation checked under the lock: a cancel that came before registration
                    // (its handler found nothing to abandon) ends the wait here; one after it
                    // finds the waiter.
                    let immediate: Bool? = route.withLock { r in
                        if r.closed || Task.isCancelled { return false }
                        if r.table.writer != nil { return true }
                        r.leaderWaiters[id] = continuation
                        return nil
                    }
                    if let immediate { continuation.resume(returning: immediate) }
                }
            } onCancel: {
                self.abandonLeaderWait(id)
            }
            group.cancelAll()
            return result
        }
    }

    private func abandonLeaderWait(_ id: Int) {
        let waiter = route.withLock { $0.leaderWaiters.removeValue(forKey: id) }
        waiter?.resume(returning: false)
    }

    func pick(readOnly: Bool, database: String, minimumReplayLSN: UInt64? = nil) -> Pick {
        let primaryDatabase = database == config.database
        let (target, cached, isReplica, fallback, closed): (NodeAddress?, Pool?, Bool, Bool, Bool) = route.withLock { r in
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
            counters.replicaFallbacks.increment()
        }
        guard let target else { return .noLeader }
        if let cached { return .lease(cached, isReplica: isReplica) }
        guard let pool = pool(for: target, database: database, create: true) else { return .noLeader }
        return .lease(pool, isReplica: isReplica)
    }

    private var closedError: HAError { HAError(.closed, "the pool is closed") }

    private var noReplicaError: HAError {
        HAError(.noReplicaAvailable, "no replica qualifies for reads (lag ≤ \(config.maxReplicaLagBytes) bytes, running, not noloadbalance)")
    }

    /// Reports a failed check-out to the topology tracker and counts the retry.
    private func checkoutFailed(_ error: HAError, pool: Pool, loop: inout RetryLoop) -> RetryLoop.Step {
        let (step, nodeFailed) = loop.checkoutFailed(error, poolClosed: route.withLock { $0.closed }, random: random())
        if nodeFailed { feed { $0.connectionFailed(pool.node, now: clock.now) } }
        if case .retry = step { counters.retries.increment() }
        return step
    }

    /// Checks out a connection (the leader's, or a replica's for `readOnly`) within `loop`'s
    /// budget, waiting for a leader during a failover.
    func acquire(
        readOnly: Bool, database: String?, minimumReplayLSN: UInt64? = nil, loop: inout RetryLoop
    ) async throws(HAError) -> PoolLease<Factory> {
        let db = database ?? config.database
        while true {
            loop.beginAttempt()
            let step: RetryLoop.Step
            switch pick(readOnly: readOnly, database: db, minimumReplayLSN: minimumReplayLSN) {
            case .closed: throw closedError
            case .noReplica: throw noReplicaError
            case .noLeader:
                step = loop.noLeader { startFailure() }
            case .lease(let pool, let isReplica):
                do {
                    let conn = try await pool.checkout(timeout: loop.remaining())
                    return PoolLease(connection: conn, node: pool.node, isReplica: isReplica, pool: pool)
                } catch {
                    step = checkoutFailed(error, pool: pool, loop: &loop)
                }
            }
            switch step {
            case .fail(let error): throw error
            case .waitForLeader(let deadline): _ = await waitForLeader(until: deadline)
            case .retry(let delay):
                if delay > .zero {
                    do { try await clock.sleep(for: delay) } catch { throw HAError(.cancelled, "cancelled while waiting to retry") }
                }
            }
            if Task.isCancelled { throw HAError(.cancelled, "cancelled while waiting for a leader") }
        }
    }

    /// Synchronous check-out on the caller's thread (the fast path): the same loop; during a
    /// failover it waits by blocking this thread, polling every millisecond.
    func acquireSync(readOnly: Bool, database: String?, loop: inout RetryLoop) throws(HAError) -> PoolLease<Factory> {
        let db = database ?? config.database
        while true {
            loop.beginAttempt()
            let step: RetryLoop.Step
            switch pick(readOnly: readOnly, database: db) {
            case .closed: throw closedError
            case .noReplica: throw noReplicaError
            case .noLeader:
                step = loop.noLeader { startFailure() }
            case .lease(let pool, let isReplica):
                do {
                    let conn = try pool.checkoutSync(timeout: loop.remaining())
                    return PoolLease(connection: conn, node: pool.node, isReplica: isReplica, pool: pool)
                } catch {
                    step = checkoutFailed(error, pool: pool, loop: &loop)
                }
            }
            switch step {
            case .fail(let error): throw error
            case .waitForLeader: sleepBlocking(.milliseconds(1))
            case .retry(let delay): if delay > .zero { sleepBlocking(delay) }
            }
        }
    }

    func newLoop() -> RetryLoop {
        RetryLoop(budget: config.failoverTimeout, policy: config.retry, clock: clock)
    }
}
