public import HAPool
public import PGClient
import Synchronization

/// Counts the real I/O a pool has in flight (REST requests, connection attempts), so that a test
/// running the real REST client or libpq against a loopback server can move a `FakeClock` only
/// when that I/O has ended: time then advances from one sleeper's deadline to the next, and what
/// the pool decides depends on the answers, never on how fast the machine is.
public final class InFlightIO: Sendable {
    private struct State {
        var count = 0
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    public init() {}

    public var count: Int { state.withLock { $0.count } }

    func begin() { state.withLock { $0.count += 1 } }

    func end() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.count -= 1
            guard s.count == 0 else { return [] }
            defer { s.idleWaiters = [] }
            return s.idleWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once nothing is in flight.
    public func idle() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.count == 0 { return true }
                s.idleWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func track<T>(_ body: () async throws -> T) async rethrows -> T {
        begin()
        defer { end() }
        return try await body()
    }
}

/// A topology source whose fetches `InFlightIO` counts (the real Patroni source inside).
public struct TrackedTopologySource<Inner: TopologySource>: TopologySource {
    let inner: Inner
    let io: InFlightIO

    public init(_ inner: Inner, io: InFlightIO) {
        self.inner = inner
        self.io = io
    }

    public func fetch() async throws -> ClusterTopology {
        try await io.track { try await inner.fetch() }
    }
}

/// A connection factory whose connection attempts `InFlightIO` counts (libpq inside).
public struct TrackedConnectionFactory<Inner: PoolConnectionFactory>: PoolConnectionFactory {
    let inner: Inner
    let io: InFlightIO

    public init(_ inner: Inner, io: InFlightIO) {
        self.inner = inner
        self.io = io
    }

    public func connect(_ config: PGConnectionConfig) throws(PGError) -> Inner.Connection {
        io.begin()
        defer { io.end() }
        return try inner.connect(config)
    }

    public func connect(_ config: PGConnectionConfig) async throws(PGError) -> Inner.Connection {
        io.begin()
        defer { io.end() }
        return try await inner.connect(config)
    }
}

extension FakeClock {
    /// Moves time from one sleeper's deadline to the next until `done` holds, or until `limit` of
    /// fake time has passed; returns the fake time that passed. Each step waits until `io` has
    /// nothing in flight and at least `sleepers` tasks sleep on the clock (the pool's tasks that
    /// were woken, or that act on an answer, are asleep again), so time never runs ahead of a task
    /// that still has work to do at the current instant.
    @discardableResult
    public func drive(
        io: InFlightIO, sleepers: Int, limit: Duration, until done: () -> Bool
    ) async -> Duration {
        let start = now
        while !done(), now - start < limit {
            await io.idle()
            // The answer's consequences (a feed, the next request queued) run on other tasks.
            for _ in 0..<20 { await Task.yield() }
            guard io.count == 0, sleeperCount >= sleepers else { continue }
            guard let next = nextDeadline else { continue }
            advance(to: min(next, start + limit))
        }
        return now - start
    }
}
