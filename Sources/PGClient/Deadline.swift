import CLibPQ
import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A point on the monotonic clock (CLOCK_MONOTONIC) in nanoseconds; `.none` never passes.
///
/// The value itself is pure (the query state machine computes with it); reading the clock is in
/// the extension below, used only by the executors.
struct Deadline: Hashable, Sendable {
    /// Nanoseconds on the monotonic clock; 0: no deadline.
    var nanoseconds: UInt64

    static let none = Deadline(nanoseconds: 0)

    /// `now + span`, saturating; never `.none`.
    static func at(_ now: UInt64, plus span: UInt64) -> Deadline {
        let (sum, overflow) = now.addingReportingOverflow(span)
        return Deadline(nanoseconds: overflow ? .max : max(1, sum))
    }

    /// True when this is a deadline and `now` has reached it.
    func hasPassed(at now: UInt64) -> Bool {
        nanoseconds != 0 && now >= nanoseconds
    }
}

/// clock_gettime(CLOCK_MONOTONIC) in nanoseconds (the cheapest clock read, via the shim).
@inline(__always)
func monotonicNow() -> UInt64 { pgha_monotonic_ns() }

extension Duration {
    /// Whole nanoseconds, clamped to 0...UInt64.max.
    var clampedNanoseconds: UInt64 { UInt64(clamping: max(nanoseconds, 0)) }
}

extension Deadline {
    /// `duration` from now on the monotonic clock.
    static func after(_ duration: Duration) -> Deadline {
        .at(monotonicNow(), plus: duration.clampedNanoseconds)
    }

    /// Milliseconds to wait in poll() from `now` (rounded up; -1 = forever), or nil when passed.
    @inline(__always)
    func remainingMilliseconds(now: UInt64) -> Int32? {
        if nanoseconds == 0 { return -1 }
        guard now < nanoseconds else { return nil }
        return Int32(clamping: (nanoseconds - now + 999_999) / 1_000_000)
    }

    /// The same point as a DispatchTime, for semaphore waits.
    var dispatchTime: DispatchTime {
        if nanoseconds == 0 { return .distantFuture }
        let now = monotonicNow()
        return now >= nanoseconds ? .now() : .now() + .nanoseconds(Int(clamping: nanoseconds - now))
    }
}

/// What `waitForSocket` saw.
enum WaitOutcome {
    case ready
    case woken
    case deadlinePassed(now: UInt64)
}

/// poll() on `socket` for `events` (and on `wakeFD` for POLLIN when >= 0) until `deadline`.
/// Reads the clock only when there is a deadline. An unexpected poll() failure counts as ready:
/// libpq then finds out what is wrong.
@inline(__always)
func waitForSocket(_ socket: Int32, _ events: Int16, wakeFD: Int32, until deadline: Deadline) -> WaitOutcome {
    while true {
        let now = deadline.nanoseconds == 0 ? 0 : monotonicNow()
        guard let milliseconds = deadline.remainingMilliseconds(now: now) else { return .deadlinePassed(now: now) }
        let rc = pgha_wait(socket, events, wakeFD, milliseconds)
        if rc > 0 { return rc & Int32(PGHA_WAIT_SOCKET) != 0 ? .ready : .woken }
        if rc == 0 { continue }  // poll's own timeout: recheck the deadline (ms rounding)
        if errno == EINTR { continue }
        return .ready
    }
}
