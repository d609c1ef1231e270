#if canImport(Glibc)
import Glibc
#endif

/// The pool's only source of time (postgres-nio's pool takes a `Clock` the same way). Instants are
/// `ContinuousClock.Instant`, the type `TopologyStateMachine` works in, so a fake clock (in
/// Tests/HAPoolTesting) starts at a real instant and moves only when a test advances it.
public protocol PoolClock: Sendable {
    var now: ContinuousClock.Instant { get }
    /// Suspends until `deadline`; throws `CancellationError` when the task is cancelled.
    func sleep(until deadline: ContinuousClock.Instant) async throws
}

extension PoolClock {
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now + duration)
    }
}

/// The system's monotonic clock.
public struct SystemPoolClock: PoolClock {
    public init() {}
    public var now: ContinuousClock.Instant { ContinuousClock.now }
    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await Task.sleep(until: deadline, clock: .continuous)
    }
}

/// Blocks the calling thread (sync API only; never called from async code). The sync path waits
/// in real time: a fake clock cannot wake a blocked thread.
func sleepBlocking(_ duration: Duration) {
    let (seconds, atto) = duration.components
    var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int(atto / 1_000_000_000))
    nanosleep(&ts, nil)
}

/// A deadline that reads the clock only when first needed: the fast path never fails, so it never
/// pays for the clock.
struct LazyDeadline {
    let span: Duration
    let clock: any PoolClock
    private var at: ContinuousClock.Instant?

    init(span: Duration, clock: any PoolClock) {
        self.span = span
        self.clock = clock
    }

    mutating func instant() -> ContinuousClock.Instant {
        if let at { return at }
        let value = clock.now + span
        at = value
        return value
    }

    /// Time left, at least 1 ms.
    mutating func remaining() -> Duration { max(.milliseconds(1), instant() - clock.now) }

    mutating func passed() -> Bool { clock.now >= instant() }
}
