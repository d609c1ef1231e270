import Dispatch
internal import PGClient
import Synchronization

/// Usage of one per-node pool, for statistics.
public struct NodePoolUsage: Sendable, Hashable, Codable {
    public var node: NodeAddress
    public var open: Int
    public var idle: Int
    public var inUse: Int
    public var waiting: Int
    public var draining: Bool
}

/// The connections to one server (one database on one node).
///
/// Check-out is a lock, a pop and an unlock on the fast path: the caller then uses the connection
/// on its own thread. A draining pool (the node lost the leader role) hands out nothing and closes
/// each connection as it comes back; a closed pool refuses everything. An async check-out that has
/// to wait honours task cancellation and its timeout runs on the injected clock in a child task.
public final class NodePool<Factory: PoolConnectionFactory>: Sendable {
    public typealias Connection = Factory.Connection
    public let node: NodeAddress
    let template: PGConnectionConfig
    let minConnections: Int
    let maxConnections: Int
    /// Connections idle longer than this are checked locally before being handed out.
    let idleCheckAfter: Duration
    let factory: Factory
    let clock: any PoolClock

    private struct Waiter: Sendable {
        let id: Int
        let wake: @Sendable (Handoff) -> Void
    }

    /// What a waiter is handed.
    enum Handoff: Sendable {
        case connection(Connection)
        /// A slot freed up: the waiter may open a connection itself.
        case slot
        case refused(HAError)
    }

    private struct Idle {
        let connection: Connection
        let since: ContinuousClock.Instant
    }

    private struct State: ~Copyable {
        var idle: [Idle] = []
        var open = 0
        var draining = false
        var closed = false
        var waiters: [Waiter] = []
        var nextWaiterID = 0
    }

    private let state = Mutex(State())

    init(
        node: NodeAddress, template: PGConnectionConfig, minConnections: Int, maxConnections: Int,
        idleCheckAfter: Duration = .seconds(1), factory: Factory, clock: any PoolClock
    ) {
        self.idleCheckAfter = idleCheckAfter
        self.node = node
        var config = template
        config.host = node.host
        config.port = node.port
        self.template = config
        self.minConnections = minConnections
        self.maxConnections = max(1, maxConnections)
        self.factory = factory
        self.clock = clock
    }

    private enum Take {
        case connection(Connection)
        case openNew
        case wait
        case refused(HAError)
    }

    private func take(registering waiter: ((Int) -> Waiter)?) -> (Take, Int?) {
        state.withLock { s -> (Take, Int?) in
            if s.closed { return (.refused(HAError(.closed, "the pool is closed", node: node)), nil) }
            if s.draining {
                return (.refused(HAError(.connectionFailed, "the node is being drained (it lost its role)", node: node)), nil)
            }
            while let entry = s.idle.popLast() {
                let conn = entry.connection
                // A connection idle for a while may have been closed by the server (failover,
                // restart, idle timeout): a local check (poll + PQconsumeInput, no round trip)
                // finds that out before anything is sent on it.
                if conn.isHealthy, clock.now - entry.since < idleCheckAfter || conn.probe() {
                    return (.connection(conn), nil)
                }
                conn.close()
                s.open -= 1
            }
            if s.open < maxConnections {
                s.open += 1
                return (.openNew, nil)
            }
            guard let waiter else { return (.wait, nil) }
            s.nextWaiterID += 1
            let w = waiter(s.nextWaiterID)
            s.waiters.append(w)
            return (.wait, w.id)
        }
    }

    private func openConnection() throws(HAError) -> Connection {
        do {
            return try factory.connect(template)
        } catch {
            releaseSlot()
            throw HAError(.connectionFailed, "could not connect", node: node, underlying: error)
        }
    }

    private func openConnection() async throws(HAError) -> Connection {
        do {
            return try await factory.connect(template)
        } catch {
            releaseSlot()
            throw HAError(.connectionFailed, "could not connect", node: node, underlying: error)
        }
    }

    private func exhausted(_ timeout: Duration) -> HAError {
        HAError(.poolExhausted, "all \(maxConnections) connections busy for \(timeout)", node: node)
    }

    /// Synchronous check-out on the caller's thread; waits (blocking this thread, in real time) up
    /// to `timeout` when all `maxConnections` are busy.
    func checkoutSync(timeout: @autoclosure () -> Duration) throws(HAError) -> Connection {
        switch take(registering: nil).0 {
        case .connection(let conn): return conn
        case .openNew: return try openConnection()
        case .refused(let error): throw error
        case .wait: break
        }
        let semaphore = DispatchSemaphore(value: 0)
        let box = Mutex<Handoff?>(nil)
        let (second, registered) = take(registering: { id in
            Waiter(id: id) { handoff in
                box.withLock { $0 = handoff }
                semaphore.signal()
            }
        })
        switch second {
        case .connection(let conn): return conn
        case .openNew: return try openConnection()
        case .refused(let error): throw error
        case .wait: break
        }
        let timeout = timeout()
        guard let id = registered else { return try checkoutSync(timeout: timeout) }
        let nanos = Int(timeout.components.seconds) * 1_000_000_000 + Int(timeout.components.attoseconds / 1_000_000_000)
        if semaphore.wait(timeout: .now() + .nanoseconds(nanos)) == .timedOut {
            if removeWaiter(id) { throw exhausted(timeout) }
            semaphore.wait()  // a hand-off raced the timeout: take it
        }
        return try finish(box.withLock { $0 }!)
    }

    private func finish(_ handoff: Handoff) throws(HAError) -> Connection {
        switch handoff {
        case .connection(let conn): return conn
        case .slot: return try openConnection()
        case .refused(let error): throw error
        }
    }

    /// Asynchronous check-out: the connection is opened by the factory's async `connect` (off the
    /// cooperative pool). Waiting for a busy pool ends with a hand-off, the timeout (on `clock`) or
    /// the task's cancellation (`.cancelled`).
    func checkout(timeout: Duration) async throws(HAError) -> Connection {
        switch take(registering: nil).0 {
        case .connection(let conn): return conn
        case .openNew: return try await openConnection()
        case .refused(let error): throw error
        case .wait: break
        }
        let handoff = await waitForHandoff(timeout: timeout)
        switch handoff {
        case .connection(let conn): return conn
        case .slot: return try await openConnection()
        case .refused(let error): throw error
        }
    }

    /// One waiting check-out: its waiter id once registered, and how to wake it.
    private struct WaitSlot {
        var id: Int?
        var wake: (@Sendable (Handoff) -> Void)?
        /// Timed out or cancelled before the waiter was registered.
        var abandoned: Handoff?
    }

    private final class WaitBox: Sendable {
        let state = Mutex(WaitSlot())
    }

    /// The slow path: register a waiter. A child task ends the wait at `timeout` (on `clock`), the
    /// caller's cancellation ends it at once; whoever removes the waiter first decides.
    private func waitForHandoff(timeout: Duration) async -> Handoff {
        let slot = WaitBox()
        let deadline = clock.now + timeout
        let cancelled = HAError(.cancelled, "cancelled while waiting for a connection", node: node)
        return await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do { try await self.clock.sleep(until: deadline) } catch { return }
                self.abandon(slot, with: .refused(self.exhausted(timeout)))
            }
            let handoff = await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Handoff, Never>) in
                    let once = Mutex(false)
                    let wake: @Sendable (Handoff) -> Void = { handoff in
                        let first = once.withLock { fired -> Bool in
                            defer { fired = true }
                            return !fired
                        }
                        if first { continuation.resume(returning: handoff) }
                    }
                    let (take, id) = self.take(registering: { id in Waiter(id: id, wake: wake) })
                    switch take {
                    case .connection(let conn): wake(.connection(conn))
                    case .openNew: wake(.slot)
                    case .refused(let error): wake(.refused(error))
                    case .wait:
                        guard let id else { wake(.slot); return }
                        let abandoned = slot.state.withLock { s -> Handoff? in
                            s.id = id
                            s.wake = wake
                            return s.abandoned
                        }
                        if let abandoned, self.removeWaiter(id) { wake(abandoned) }
                    }
                }
            } onCancel: {
                self.abandon(slot, with: .refused(cancelled))
            }
            group.cancelAll()
            return handoff
        }
    }

    /// Ends a wait that has not been handed anything yet.
    private func abandon(_ slot: WaitBox, with outcome: Handoff) {
        let (id, wake) = slot.state.withLock { s -> (Int?, (@Sendable (Handoff) -> Void)?) in
            if s.abandoned == nil { s.abandoned = outcome }
            return (s.id, s.wake)
        }
        if let id, let wake, removeWaiter(id) { wake(outcome) }
    }

    private func removeWaiter(_ id: Int) -> Bool {
        state.withLock { s in
            guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return false }
            s.waiters.remove(at: index)
            return true
        }
    }

    /// Returns a connection. A broken connection, or any connection of a draining or closed pool,
    /// is closed; a waiting caller then gets the freed slot.
    func checkin(_ conn: Connection) {
        let usable = conn.isHealthy && conn.isIdle
        let (toClose, wake): (Connection?, (Waiter, Handoff)?) = state.withLock { s in
            if !usable || s.draining || s.closed {
                s.open -= 1
                if !s.draining && !s.closed, !s.waiters.isEmpty, s.open < maxConnections {
                    s.open += 1
                    return (conn, (s.waiters.removeFirst(), .slot))
                }
                return (conn, nil)
            }
            if !s.waiters.isEmpty { return (nil, (s.waiters.removeFirst(), .connection(conn))) }
            s.idle.append(Idle(connection: conn, since: clock.now))
            return (nil, nil)
        }
        toClose?.close()
        if let (waiter, handoff) = wake { waiter.wake(handoff) }
    }

    private func releaseSlot() {
        let wake: Waiter? = state.withLock { s in
            s.open -= 1
            if !s.draining && !s.closed, !s.waiters.isEmpty {
                s.open += 1
                return s.waiters.removeFirst()
            }
            return nil
        }
        wake?.wake(.slot)
    }

    /// Stop handing out connections; close idle ones now and busy ones when they come back.
    func drain() {
        shutDown(closing: false)
    }

    /// Close the pool for good.
    func close() {
        shutDown(closing: true)
    }

    private func shutDown(closing: Bool) {
        let (idle, waiters): ([Connection], [Waiter]) = state.withLock { s in
            s.draining = true
            if closing { s.closed = true }
            let idle = s.idle.map(\.connection)
            s.idle = []
            s.open -= idle.count
            let waiters = s.waiters
            s.waiters = []
            return (idle, waiters)
        }
        for conn in idle { conn.close() }
        let error = HAError(closing ? .closed : .connectionFailed, closing ? "the pool is closed" : "the node is being drained", node: node)
        for waiter in waiters { waiter.wake(.refused(error)) }
    }

    /// Undo a drain: the node is confirmed usable again (for example the old leader back as a replica).
    func reopen() {
        state.withLock { s in
            if !s.closed { s.draining = false }
        }
    }

    var isDraining: Bool { state.withLock { $0.draining } }

    public var usage: NodePoolUsage {
        state.withLock { s in
            NodePoolUsage(node: node, open: s.open, idle: s.idle.count, inUse: s.open - s.idle.count, waiting: s.waiters.count, draining: s.draining)
        }
    }

    /// Opens connections until `minConnections` are idle (used at start-up and after a failover).
    func warmUp() async {
        while !Task.isCancelled {
            let shouldOpen = state.withLock { s -> Bool in
                guard !s.draining, !s.closed, s.open < minConnections, s.open < maxConnections else { return false }
                s.open += 1
                return true
            }
            guard shouldOpen else { return }
            do {
                let conn = try await factory.connect(template)
                checkin(conn)
            } catch {
                releaseSlot()
                return
            }
        }
    }
}
