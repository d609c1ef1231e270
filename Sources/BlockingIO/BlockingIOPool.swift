import Dispatch
import Foundation
import Synchronization

/// A small pool of dedicated OS threads for C calls that may block (libpq, libcurl).
///
/// Swift's cooperative thread pool has one thread per core; a blocking `poll()` there would stall
/// every task on that core. `run(_:)` moves the blocking work to one of these threads and resumes
/// the caller when it is done. Threads are created on demand up to `maximumThreads`; an idle
/// thread parks on its own semaphore, so a wake-up is never lost and an idle pool costs nothing
/// but memory. Jobs queue (first in, first out) only when all `maximumThreads` are busy.
public final class BlockingIOPool: Sendable {
    /// The process-wide pool used by PGClient and HTTPClient unless told otherwise.
    public static let shared = BlockingIOPool(maximumThreads: 128)

    public let maximumThreads: Int
    private let state = Mutex(State())

    private struct State: ~Copyable {
        var queue: [@Sendable () -> Void] = []
        var head = 0
        var threads = 0
        var idle: [DispatchSemaphore] = []

        mutating func pop() -> (@Sendable () -> Void)? {
            guard head < queue.count else {
                if head > 0 { queue.removeAll(keepingCapacity: true); head = 0 }
                return nil
            }
            defer { head += 1 }
            return queue[head]
        }
    }

    public init(maximumThreads: Int) {
        precondition(maximumThreads > 0, "a pool needs at least one thread")
        self.maximumThreads = maximumThreads
    }

    /// Runs `body` on a pool thread; the calling task waits without blocking its thread.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Runs `body` on a pool thread; for work that cannot fail.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            submit { continuation.resume(returning: body()) }
        }
    }

    /// Queues `job`; it runs on a pool thread as soon as one is free.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        enum Next { case wake(DispatchSemaphore), spawn, wait }
        let next: Next = state.withLock { s in
            s.queue.append(job)
            if let worker = s.idle.popLast() { return .wake(worker) }
            if s.threads < maximumThreads { s.threads += 1; return .spawn }
            return .wait
        }
        switch next {
        case .wake(let worker): worker.signal()
        case .spawn:
            let thread = Thread { [self] in self.workerLoop() }
            thread.name = "pgha-blocking-io"
            thread.start()
        case .wait: break
        }
    }

    /// Number of threads started so far (for statistics and tests).
    public var threadCount: Int { state.withLock { $0.threads } }

    private func workerLoop() {
        let parked = DispatchSemaphore(value: 0)
        while true {
            let job: (@Sendable () -> Void)? = state.withLock { s in
                if let job = s.pop() { return job }
                s.idle.append(parked)
                return nil
            }
            if let job { job() } else { parked.wait() }
        }
    }
}
