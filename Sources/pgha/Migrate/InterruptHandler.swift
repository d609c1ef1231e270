import Dispatch
import Foundation
import Migration
import Synchronization

/// SIGINT and SIGTERM for the commands that run stages.
///
/// Both signals are ignored (`signal(2)` with `SIG_IGN`) and delivered instead through dispatch
/// signal sources, so no code runs in a raw signal handler. The first signal sets the runner's
/// `CancellationFlag` and abandons any prompt waiting for an answer: the runner stops at the next
/// safe point, saves the state and the command exits 130 saying that `pgha resume` continues. A
/// second signal leaves at once (exit 130): that is safe at any instant, because every step is
/// recorded in the state file before it is made and state writes are atomic (the kill -9 tests
/// prove it); the lock file is removed on the way out.
final class InterruptHandler: Sendable {
    let cancellation = CancellationFlag()
    private let output: MigrationOutput
    private let lockFile: String
    private let count = Atomic<Int>(0)
    private let done = Atomic<Bool>(false)
    private let sources = Mutex<[SignalSource]>([])
    private let onInterrupt = Mutex<[@Sendable () -> Void]>([])

    /// - Parameter lockFile: the state directory's lock, removed on a forced exit when this
    ///   process holds it.
    init(output: MigrationOutput, lockFile: String) {
        self.output = output
        self.lockFile = lockFile
    }

    /// Starts handling SIGINT and SIGTERM; ignores SIGPIPE (a closed output must not kill a
    /// migration half-way).
    func install() {
        signal(SIGPIPE, SIG_IGN)
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let box = SignalSource(DispatchSource.makeSignalSource(signal: signalNumber, queue: .global()))
            box.source.setEventHandler { [self, box] in
                // Signals that arrive before the handler runs are coalesced: `data` counts them.
                self.received(signalNumber, times: max(1, Int(box.source.data)))
            }
            box.source.resume()
            sources.withLock { $0.append(box) }
        }
    }

    /// Runs `action` on the first signal (e.g. abandon the prompt that waits for an answer).
    func whenInterrupted(_ action: @escaping @Sendable () -> Void) {
        onInterrupt.withLock { $0.append(action) }
    }

    /// The run is over: later signals no longer force an exit (the command is printing its result).
    func finished() {
        done.store(true, ordering: .sequentiallyConsistent)
    }

    private func received(_ signalNumber: Int32, times: Int) {
        let name = signalNumber == SIGINT ? "SIGINT (Ctrl-C)" : "SIGTERM"
        let n = count.add(times, ordering: .sequentiallyConsistent).newValue
        if done.load(ordering: .sequentiallyConsistent) { return }
        if n == 1 {
            cancellation.cancel()
            output.errorLine("")
            output.errorLine("\(name) received: stopping at the next safe point and saving the state (press Ctrl-C again to leave at once).")
            for action in onInterrupt.withLock({ $0 }) { action() }
            return
        }
        output.errorLine("\(name) received again: leaving now. Every step is saved before it is made, so `pgha resume` continues from the last completed step.")
        if let holder = StateLock.currentHolder(path: lockFile), holder.pid == getpid() {
            unlink(lockFile)
        }
        // No fflush: this module writes unbuffered, and a stdio lock held elsewhere must not
        // keep the process from leaving.
        _exit(MigrationExitCode.interrupted.rawValue)
    }
}

/// Keeps a dispatch signal source alive for the life of the handler.
///
/// `@unchecked Sendable`: a box around one libdispatch object, which libdispatch documents as safe
/// to use from any thread; the box only stores it (never mutated after init) so it is not released.
final class SignalSource: @unchecked Sendable {
    let source: any DispatchSourceSignal
    init(_ source: any DispatchSourceSignal) { self.source = source }
}

/// Lines from standard input, read on a thread of their own so that a prompt can be abandoned when
/// a signal arrives (a blocking `read(2)` is not interrupted by a signal that is ignored).
///
/// Answers can be scripted: every line is one answer. At the end of the input (a closed pipe,
/// `/dev/null`, Ctrl-D) `next()` returns `.endOfInput` at once, so a prompt never hangs.
final class LineInput: Sendable {
    enum Answer: Sendable, Equatable {
        case line(String)
        case endOfInput
        case interrupted
    }

    private struct State: Sendable {
        var started = false
        var lines: [String] = []
        var ended = false
        var interrupted = false
        var waiter: CheckedContinuation<Answer, Never>?
    }

    private let state = Mutex(State())

    /// The next answer.
    func next() async -> Answer {
        startReading()
        return await withCheckedContinuation { (continuation: CheckedContinuation<Answer, Never>) in
            let ready: Answer? = state.withLock { s in
                if s.interrupted { return .interrupted }
                if !s.lines.isEmpty { return .line(s.lines.removeFirst()) }
                if s.ended { return .endOfInput }
                s.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Abandons the current prompt and every later one (`.interrupted`).
    func interrupt() {
        let waiter = state.withLock { s -> CheckedContinuation<Answer, Never>? in
            s.interrupted = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: .interrupted)
    }

    private func startReading() {
        let first = state.withLock { s -> Bool in
            defer { s.started = true }
            return !s.started
        }
        guard first else { return }
        let thread = Thread { [self] in
            var pending: [UInt8] = []
            while let chunk = Self.readChunk() {
                pending += chunk
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    var line = Array(pending[..<newline])
                    pending.removeFirst(newline + 1)
                    if line.last == UInt8(ascii: "\r") { line.removeLast() }
                    self.deliver(String(decoding: line, as: UTF8.self))
                }
            }
            if !pending.isEmpty { self.deliver(String(decoding: pending, as: UTF8.self)) }
            self.deliver(nil)
        }
        thread.name = "pgha-stdin"
        thread.start()
    }

    /// One `read(2)` from file descriptor 0 (not stdio's `stdin`, whose stream lock would be held
    /// while blocked and make any `fflush(NULL)` elsewhere wait for the operator); nil at the end
    /// of the input or on an error other than EINTR.
    private static func readChunk() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
            if n > 0 { return Array(buffer[0..<n]) }
            if n < 0 && errno == EINTR { continue }
            return nil
        }
    }

    private func deliver(_ line: String?) {
        let wake = state.withLock { s -> (CheckedContinuation<Answer, Never>, Answer)? in
            if let line {
                guard let waiter = s.waiter else {
                    s.lines.append(line)
                    return nil
                }
                s.waiter = nil
                return (waiter, .line(line))
            }
            s.ended = true
            guard let waiter = s.waiter else { return nil }
            s.waiter = nil
            return (waiter, .endOfInput)
        }
        if let (waiter, answer) = wake { waiter.resume(returning: answer) }
    }
}
