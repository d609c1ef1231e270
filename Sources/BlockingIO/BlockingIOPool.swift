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
///
/// **Hand-off without a wake-up.** A thread that has just finished a job first spins for up to
/// `spinDuration` (one thread at a time) before it parks: a caller that submits its next job
/// within that time (a task running statements one after another: the statement's result
/// resumes it, it sends the next) hands it over without the futex wake-up and context switch a
/// parked thread costs — on a two-core machine shared with the servers that wake-up cost about
/// as much as the round trip itself (docs/BENCHMARKS.md, `pgha bench select1`). A spin that is
/// not claimed ends and the thread parks; an idle pool spins no more.
public final class BlockingIOPool: Sendable {
    /// The process-wide pool used by PGClient and HTTPClient unless told otherwise. Its spin is
    /// 50 µs, or `PGHA_BLOCKING_IO_SPIN_US` microseconds (0: park at once; for measuring).
    public static let shared = BlockingIOPool(
        maximumThreads: 128,
        spinDuration: .microseconds(ProcessInfo.processInfo.environment["PGHA_BLOCKING_IO_SPIN_US"].flatMap { Int($0) }.map { max(0, min($0, 10_000)) } ?? 50))

    public let maximumThreads: Int
    /// How long a thread that finished a job waits, spinning, for the next one before it parks.
    public let spinDuration: Duration
    private let state = Mutex(State())
    /// Set (under `state`'s lock, by `submit`) when a job was queued for the spinning thread.
    private let spinnerClaimed = Atomic<Bool>(false)

    private struct State: ~Copyable {
        var queue: [Job] = []
        var head = 0
        var threads = 0
        var idle: [DispatchSemaphore] = []
        /// A thread is spinning; `claimed`: a job was queued for it.
        var spinning = false
        var claimed = false

        mutating func pop() -> Job? {
            guard head < queue.count else {
                if head > 0 { queue.removeAll(keepingCapacity: true); head = 0 }
                return nil
            }
            defer { head += 1 }
            return queue[head]
        }
    }

    public init(maximumThreads: Int, spinDuration: Duration = .microseconds(50)) {
        precondition(maximumThreads > 0, "a pool needs at least one thread")
        self.maximumThreads = maximumThreads
        self.spinDuration = spinDuration
    }

    /// Runs `body` on a pool thread; the calling task waits without blocking its thread.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            enqueue {
                let result = Result { try body() }
                return { continuation.resume(with: result) }
            }
        }
    }

    /// Runs `body` on a pool thread; for work that cannot fail.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            enqueue {
                let value = body()
                return { continuation.resume(returning: value) }
            }
        }
    }

    /// Queues `job`; it runs on a pool thread as soon as one is free.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        enqueue {
            job()
            return nil
        }
    }

    /// A job: the blocking work, returning what resumes its caller (run by the worker once it
    /// has become the spinning thread, so that the caller's next job finds it).
    typealias Job = @Sendable () -> (@Sendable () -> Void)?

    private func enqueue(_ job: @escaping Job) {
        enum Next { case wake(DispatchSemaphore), spawn, wait }
        let next: Next = state.withLock { s in
            s.queue.append(job)
            if s.spinning && !s.claimed {
                // The spinning thread takes it: it re-reads the queue once its spin ends.
                s.claimed = true
                spinnerClaimed.store(true, ordering: .releasing)
                return .wait
            }
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
        enum Next { case run(Job), park }
        let parked = DispatchSemaphore(value: 0)
        var wasSpinning = false
        while true {
            // One lock section ends the spin and looks for work: a job submitted in between
            // claims the spinning thread and is found here, so none waits for a wake-up that
            // never comes and none makes the pool start a thread it does not need.
            let next: Next = state.withLock { s in
                if wasSpinning {
                    s.spinning = false
                    s.claimed = false
                    spinnerClaimed.store(false, ordering: .relaxed)
                }
                if let job = s.pop() { return .run(job) }
                s.idle.append(parked)
                return .park
            }
            wasSpinning = false
            switch next {
            case .run(let job):
                guard let resume = job() else { continue }
                // Become the spinning thread (if none is) before resuming the caller: its next
                // job, submitted as soon as it runs again, then finds this thread.
                wasSpinning = state.withLock { s in
                    if s.spinning { return false }
                    s.spinning = true
                    return true
                }
                resume()
                if wasSpinning { spin() }
            case .park:
                parked.wait()
            }
        }
    }

    /// Spins until `submit` queues a job for this thread or `spinDuration` passes.
    private func spin() {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: spinDuration)
        var looks = 0
        while !spinnerClaimed.load(ordering: .acquiring) {
            looks += 1
            // Read the clock every 64 looks: it costs more than a look.
            if looks & 63 == 0 && clock.now >= deadline { return }
        }
    }
}
