import BlockingIO
import CLibPQ
import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The executor of one statement: performs `QueryStateMachine`'s actions against libpq and feeds
/// their outcomes back. It lives on the calling thread's stack while the connection's lock is held,
/// and owns every libpq result and COPY buffer of the statement (freed in `deinit` at the latest).
///
/// `advance(_:)` performs by itself every action that needs nothing from the caller (flush, wait,
/// consume input, read and keep results, read COPY data, end a COPY, send and await the cancel
/// request) and returns the first one that does: a row or chunk for the body, the COPY IN body,
/// the end of a write, the end of the statement.
struct StatementRun: ~Copyable {
    let conn: OpaquePointer
    let owner: PGConnection
    /// The SQL text, for redacting error messages.
    let sql: String
    /// Non-zero for async calls: `owner.cancelTarget == token` means the task was cancelled.
    let token: UInt64
    private let socket: Int32
    var machine: QueryStateMachine
    /// Set when the machine answered `.invalidEvent` inside a COPY IN write.
    var invalid: QueryStateMachine.InvalidEvent?

    private var cancelDone: DispatchSemaphore?
    /// The result PQgetResult just returned, until the machine says what becomes of it.
    private(set) var pending: OpaquePointer?
    /// The last successful result.
    private(set) var last: OpaquePointer?
    /// The first error result.
    private(set) var failure: OpaquePointer?
    /// The COPY row PQgetCopyData just returned (freed before the next read).
    private(set) var chunk: UnsafeMutablePointer<CChar>?
    private(set) var chunkLength = 0

    init(
        conn: OpaquePointer, owner: PGConnection, sql: String, token: UInt64, mode: QueryStateMachine.Mode,
        stopPolicy: QueryStateMachine.StopPolicy = .cancel, deadline: Deadline
    ) {
        self.conn = conn
        self.owner = owner
        self.sql = sql
        self.token = token
        self.socket = PQsocket(conn)
        self.machine = QueryStateMachine(
            mode: mode, stopPolicy: stopPolicy, deadline: deadline,
            gracePeriod: owner.config.cancelGracePeriod.clampedNanoseconds, watchesWake: token != 0)
    }

    deinit {
        if let pending { PQclear(pending) }
        if let last { PQclear(last) }
        if let failure { PQclear(failure) }
        if let chunk { PQfreemem(chunk) }
    }

    /// True when this is an async call whose task was cancelled.
    var cancelRequested: Bool {
        token != 0 && owner.cancelTarget.load(ordering: .acquiring) == token
    }

    /// With a value (monotonic nanoseconds), `.wait` does not block: it looks at the socket
    /// without waiting until then and, if nothing came, returns the `.wait` action to the caller
    /// (the async fast path, on a cooperative thread, then hands the statement to a pool thread).
    var spinUntil: UInt64?

    /// With a value above 0 (nanoseconds), a blocking `.wait` for the answer first looks at the
    /// socket without blocking for that long: on loopback a short statement's answer comes within
    /// tens of microseconds, and reading it without a sleep and a wake-up saves both (the
    /// synchronous path's spin; see `PGConnection.fastPathSpin`).
    var spinBeforeWaiting: UInt64 = 0

    /// Feeds `event`, then performs actions until one needs the caller.
    mutating func advance(_ event: QueryStateMachine.Event) -> QueryStateMachine.Action {
        drive(machine.event(event))
    }

    /// Performs `action` and the ones after it until one needs the caller.
    mutating func drive(_ first: QueryStateMachine.Action) -> QueryStateMachine.Action {
        var action = first
        while true {
            let next: QueryStateMachine.Event
            switch action {
            case .flush:
                next = .flushed(flush())
            case .wait(let interest, let deadline, let wake):
                if let spinUntil {
                    guard let event = spin(interest, until: deadline, spinUntil: spinUntil, wake: wake) else { return action }
                    next = event
                } else if spinBeforeWaiting > 0, interest == .read,
                    let event = spin(interest, until: deadline, spinUntil: monotonicNow() + spinBeforeWaiting, wake: wake)
                {
                    next = event
                } else {
                    next = wait(interest, until: deadline, wake: wake)
                }
            case .consumeInput:
                next = .inputConsumed(consumeInput())
            case .readResult:
                next = .resultRead(readResult())
            case .keepResult(let slot):
                keep(slot)
                next = .done
            case .discardResult:
                clearPending()
                next = .done
            case .readCopyData:
                next = .copyData(readCopyData())
            case .putCopyEnd(let reason):
                next = .put(putCopyEnd(reason))
            case .sendCancel:
                startCancelRequest()
                next = .done
            case .awaitCancel(let deadline):
                let over = cancelDone?.wait(timeout: deadline.dispatchTime) ?? .success
                next = over == .success ? .cancelFinished : .deadlinePassed(now: monotonicNow())
            case .deliverRow, .deliverCopyData, .runCopyInBody, .putCopyData, .writeFinished, .finish,
                .invalidEvent:
                return action
            }
            action = machine.event(next)
        }
    }

    // MARK: - The actions

    /// PQflush.
    private func flush() -> QueryStateMachine.FlushOutcome {
        let rc = PQflush(conn)
        if rc == 0 { return .done }
        if rc > 0 { return .pending }
        return .failed(connectionBad: PQstatus(conn) == CONNECTION_BAD)
    }

    /// poll() until ready, woken for this statement, or the deadline. A wake-up left over from an
    /// earlier statement (another token) is drained and ignored.
    private func wait(_ interest: QueryStateMachine.Interest, until deadline: Deadline, wake: Bool)
        -> QueryStateMachine.Event
    {
        let events = Int16(interest == .read ? POLLIN : POLLIN | POLLOUT)
        let wakeFD = wake ? owner.wakeRead : -1
        while true {
            switch waitForSocket(socket, events, wakeFD: wakeFD, until: deadline) {
            case .ready:
                return .readable
            case .deadlinePassed(let now):
                return .deadlinePassed(now: now)
            case .woken:
                pgha_wake_drain(owner.wakeRead)
                if cancelRequested { return .woken(now: monotonicNow()) }
            }
        }
    }

    /// Looks at the socket without blocking until `spinUntil`: `.readable`, or nil to hand the
    /// statement off — when nothing came by then, and at once when the deadline passed or the
    /// wake-up channel has something (the pool thread's `wait` then sees it and cancels: a cancel
    /// request is never sent, nor awaited, on the cooperative thread).
    private func spin(_ interest: QueryStateMachine.Interest, until deadline: Deadline, spinUntil: UInt64, wake: Bool)
        -> QueryStateMachine.Event?
    {
        let events = Int16(interest == .read ? POLLIN : POLLIN | POLLOUT)
        let wakeFD = wake ? owner.wakeRead : -1
        while true {
            let rc = pgha_wait(socket, events, wakeFD, 0)
            if rc > 0 {
                if rc & Int32(PGHA_WAIT_SOCKET) != 0 { return .readable }
                return nil
            }
            if rc < 0 && errno != EINTR { return .readable }  // as `waitForSocket`: libpq's next call reports it
            let now = monotonicNow()
            if now >= spinUntil || deadline.hasPassed(at: now) { return nil }
        }
    }

    /// What a statement interrupted by its fast path's `.wait` carries to the thread that goes on
    /// with it: the machine, the action it asked for, and the results kept so far (as addresses:
    /// their ownership moves with the hand-off; `StatementRun(adopting:)` owns them again).
    struct HandOff: Sendable {
        var machine: QueryStateMachine
        var action: QueryStateMachine.Action
        var pending: UInt?
        var last: UInt?
        var failure: UInt?
    }

    /// Gives up the statement's state for `HandOff` (this run no longer owns its results).
    mutating func surrender(_ action: QueryStateMachine.Action) -> HandOff {
        precondition(chunk == nil && cancelDone == nil, "a hand-off happens only while collecting, before any cancel")
        defer { pending = nil; last = nil; failure = nil }
        return HandOff(machine: machine, action: action, pending: pending.map { UInt(bitPattern: $0) },
                       last: last.map { UInt(bitPattern: $0) }, failure: failure.map { UInt(bitPattern: $0) })
    }

    /// Goes on with a statement handed off by its fast path (same connection, lock held again).
    init(adopting handOff: HandOff, conn: OpaquePointer, owner: PGConnection, sql: String, token: UInt64) {
        self.conn = conn
        self.owner = owner
        self.sql = sql
        self.token = token
        self.socket = PQsocket(conn)
        self.machine = handOff.machine
        self.pending = handOff.pending.flatMap { OpaquePointer(bitPattern: $0) }
        self.last = handOff.last.flatMap { OpaquePointer(bitPattern: $0) }
        self.failure = handOff.failure.flatMap { OpaquePointer(bitPattern: $0) }
    }

    /// PQconsumeInput.
    private func consumeInput() -> QueryStateMachine.InputOutcome {
        if PQconsumeInput(conn) != 0 { return .consumed }
        return .failed(connectionBad: PQstatus(conn) == CONNECTION_BAD)
    }

    /// PQisBusy, then PQgetResult (which cannot block then). When PQconsumeInput failed because the
    /// server closed the connection, libpq has marked it CONNECTION_BAD and dropped the socket:
    /// PQisBusy is then false and PQgetResult returns the error without waiting.
    private mutating func readResult() -> QueryStateMachine.ReadOutcome {
        if PQisBusy(conn) != 0 { return .busy }
        guard let result = PQgetResult(conn) else {
            return .end(connectionAlive: PQstatus(conn) == CONNECTION_OK)
        }
        pending = result
        let status = PQresultStatus(result)
        switch status {
        case PGRES_TUPLES_OK: return .result(.tuples)
        case PGRES_SINGLE_TUPLE: return .result(.singleRow)
        case PGRES_COMMAND_OK: return .result(.command)
        case PGRES_EMPTY_QUERY: return .result(.emptyQuery)
        case PGRES_FATAL_ERROR: return .result(.error(sqlState: PGConnection.field(result, "C")))
        case PGRES_COPY_IN: return .result(.copyIn)
        case PGRES_COPY_OUT: return .result(.copyOut)
        default: return .result(.other(status: status.rawValue))
        }
    }

    private mutating func keep(_ slot: QueryStateMachine.ResultSlot) {
        switch slot {
        case .last:
            if let last { PQclear(last) }
            last = pending
        case .error:
            if let failure { PQclear(failure) }
            failure = pending
        }
        pending = nil
    }

    mutating func clearPending() {
        if let pending { PQclear(pending) }
        pending = nil
    }

    /// Hands the last successful result to the caller (who then owns it).
    mutating func takeLast() -> OpaquePointer? {
        defer { last = nil }
        return last
    }

    /// PQgetCopyData in async mode, after freeing the previous row.
    private mutating func readCopyData() -> QueryStateMachine.CopyDataOutcome {
        if let chunk { PQfreemem(chunk) }
        chunk = nil
        chunkLength = 0
        var buffer: UnsafeMutablePointer<CChar>?
        let rc = PQgetCopyData(conn, &buffer, 1)
        if rc > 0 {
            chunk = buffer
            chunkLength = Int(rc)
            return .chunk
        }
        if let buffer { PQfreemem(buffer) }
        return rc == 0 ? .wouldBlock : .ended  // -1: done, -2: error (the next PQgetResult reports it)
    }

    /// PQputCopyData with `bytes` (at most Int32.max).
    mutating func putCopyData(_ bytes: UnsafeRawBufferPointer) -> QueryStateMachine.PutOutcome {
        let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self)
        return Self.putOutcome(PQputCopyData(conn, base, Int32(bytes.count)))
    }

    /// PQputCopyEnd; with an error message the server fails the COPY (57014) and keeps nothing.
    private func putCopyEnd(_ reason: QueryStateMachine.CopyEndReason) -> QueryStateMachine.PutOutcome {
        let message: String?
        switch reason {
        case .done: message = nil
        case .refused: message = "this PGClient call does not stream COPY FROM STDIN (use PGConnection.copyIn)"
        case .aborted: message = "the client's COPY body failed"
        case .interrupted: message = "the client's timeout passed or its task was cancelled"
        case .writeFailed: message = "the client could not send the COPY data"
        }
        return Self.putOutcome(PQputCopyEnd(conn, message))
    }

    private static func putOutcome(_ rc: Int32) -> QueryStateMachine.PutOutcome {
        rc > 0 ? .queued : rc == 0 ? .wouldBlock : .failed
    }

    /// Sends PQcancel from a pool thread so that an unreachable server cannot block this thread
    /// beyond the grace period; `awaitCancel` waits for it.
    private mutating func startCancelRequest() {
        let done = DispatchSemaphore(value: 0)
        let canceller = owner.canceller
        BlockingIOPool.shared.submit {
            _ = canceller.send()
            done.signal()
        }
        cancelDone = done
    }
}
