import BlockingIO
import Foundation
import CLibPQ
import Dispatch

/// `query`: one statement (or several, without parameters), its results collected; and what every
/// statement shares: the connection lock, sending, running on BlockingIOPool, cancellation.
extension PGConnection {
    /// Runs `sql` on the caller's thread and returns its result: PQsendQuery (no parameters) or
    /// PQsendQueryParams (text parameters with type OIDs), then PQflush/poll/PQconsumeInput/
    /// PQisBusy/PQgetResult until libpq has no more results.
    ///
    /// Without parameters `sql` may hold several statements; the last result is returned, the first
    /// error thrown (`statementMayHaveRun` then describes the failing statement: earlier ones in
    /// the same string may have committed). `sql` must not contain a NUL character.
    ///
    /// With `timeout`, the query is cancelled on the server when it passes and `.timeout` is thrown
    /// (see the type's documentation). `COPY` is refused with `.unexpectedResult` (use `copyOut` /
    /// `copyIn`); the connection stays usable.
    ///
    /// Before it blocks in `poll()` for the answer, the thread looks at the socket without blocking
    /// for up to `fastPathSpin` (50 µs, `PGHA_PGCLIENT_SPIN_US`; 0 turns it off), as the async fast
    /// path does: a short statement's answer is read without a sleep and a wake-up; a longer one
    /// costs at most that much CPU once.
    public func query(_ sql: String, _ params: [PGValue] = [], timeout: Duration? = nil) throws(PGError) -> PGResult {
        try execute(sql, params, timeout: timeout, token: 0)
    }

    /// Runs `sql` without blocking the calling thread. Cancelling the calling task cancels the
    /// statement on the server (PQcancel) and throws `.cancelled`, unless it had already finished.
    ///
    /// **Fast path.** When the connection is free, the statement is sent from the calling thread,
    /// which then looks at the socket without blocking for up to `fastPathSpin` (50 µs,
    /// `PGHA_PGCLIENT_SPIN_US`; 0 turns it off): a short statement's answer, which on loopback
    /// takes a few tens of microseconds, is read there and the task never leaves its thread. A
    /// statement still running then is handed, with the connection's lease, to a
    /// `BlockingIOPool` thread, which waits for it as the synchronous variant does. Nothing blocks
    /// the cooperative pool: the look is a zero-timeout `poll()`, bounded in time like any CPU work.
    public func query(
        _ sql: String, _ params: [PGValue] = [], timeout: Duration? = nil
    ) async throws(PGError) -> PGResult {
        let token = lastToken.add(1, ordering: .relaxed).newValue
        if Task.isCancelled { throw notSentBecauseCancelled() }
        if Self.fastPathSpin > 0, lease.wait(timeout: .now()) == .success {
            return try await fastQuery(sql, params, timeout: timeout, token: token)
        }
        let outcome: Result<PGResult, PGError> = await withTaskCancellationHandler {
            await BlockingIOPool.shared.run {
                Result { () throws(PGError) -> PGResult in
                    try self.execute(sql, params, timeout: timeout, token: token)
                }
            }
        } onCancel: {
            self.requestCancel(token)
        }
        return try outcome.get()
    }

    // MARK: - The collecting statement

    /// Runs one statement in `.collect` mode. `token` is non-zero for async calls.
    private func execute(_ sql: String, _ params: [PGValue], timeout: Duration?, token: UInt64) throws(PGError)
        -> PGResult
    {
        let outcome: StatementOutcome<PGResult> = locked(token: token) { conn in
            var run = StatementRun(
                conn: conn, owner: self, sql: sql, token: token, mode: .collect,
                deadline: timeout.map { Deadline.after($0) } ?? .none)
            run.spinBeforeWaiting = Self.fastPathSpin
            let first: QueryStateMachine.Event
            switch send(conn, sql, params, singleRowMode: false) {
            case .success(let event): first = event
            case .failure(let error): return (.failure(error), false)
            }
            return collected(run.advance(first), &run)
        }
        return try result(outcome)
    }

    /// The end of a collecting statement: its result, or its error.
    private func collected(_ action: QueryStateMachine.Action, _ run: inout StatementRun) -> (StatementOutcome<PGResult>, close: Bool) {
        guard case .finish(let completion) = action else { return unexpected(action) }
        switch completion.outcome {
        case .succeeded:
            guard let result = run.takeLast() else {
                return (.failure(internalError("a success without a result")), true)
            }
            return (.success(PGResult(owning: result)), completion.close)
        case .stopped, .bodyFailed:
            return (.failure(internalError("\(completion.outcome) without a body")), true)
        case .serverError, .interrupted, .connectionBroken, .sendRejected, .unexpectedStatus, .refused, .noResult:
            return (.failure(error(for: completion.outcome, run)), completion.close)
        }
    }

    private func result(_ outcome: StatementOutcome<PGResult>) throws(PGError) -> PGResult {
        switch outcome {
        case .success(let result): return result
        case .failure(let error): throw error
        case .bodyFailed: throw internalError("a body failed in query()")
        }
    }

    // MARK: - The async fast path

    /// How long the async fast path looks at the socket before it hands the statement to a pool
    /// thread, in nanoseconds (0: no fast path).
    static let fastPathSpin: UInt64 = {
        let micros = ProcessInfo.processInfo.environment["PGHA_PGCLIENT_SPIN_US"].flatMap { UInt64($0) } ?? 50
        return min(micros, 10_000) * 1_000
    }()

    /// What the fast path's first part ends with.
    private enum FastStart: Sendable {
        case finished(PGResult)
        case handedOff(StatementRun.HandOff)
    }

    /// The fast path, with the connection's lease taken (it is given back here, or by the pool
    /// thread the statement is handed to).
    private func fastQuery(_ sql: String, _ params: [PGValue], timeout: Duration?, token: UInt64) async throws(PGError) -> PGResult {
        let started: StatementOutcome<FastStart> = holdingLease(token: token) { conn in
            var run = StatementRun(
                conn: conn, owner: self, sql: sql, token: token, mode: .collect,
                deadline: timeout.map { Deadline.after($0) } ?? .none)
            run.spinUntil = monotonicNow() &+ Self.fastPathSpin
            let first: QueryStateMachine.Event
            switch send(conn, sql, params, singleRowMode: false) {
            case .success(let event): first = event
            case .failure(let error): return (.failure(error), false)
            }
            let action = run.advance(first)
            if case .wait = action { return (.success(.handedOff(run.surrender(action))), false) }
            switch collected(action, &run) {
            case (.success(let result), let close): return (.success(.finished(result)), close)
            case (.failure(let error), let close): return (.failure(error), close)
            case (.bodyFailed, let close): return (.bodyFailed, close)
            }
        }
        let handOff: StatementRun.HandOff
        switch started {
        case .success(.finished(let result)):
            lease.signal()
            return result
        case .success(.handedOff(let h)):
            handOff = h
        case .failure(let error):
            lease.signal()
            throw error
        case .bodyFailed:
            lease.signal()
            throw internalError("a body failed in query()")
        }
        // Sent and not answered yet: a pool thread waits for it (and gives the lease back).
        let outcome: Result<PGResult, PGError> = await withTaskCancellationHandler {
            await BlockingIOPool.shared.run {
                defer { self.lease.signal() }
                let outcome: StatementOutcome<PGResult> = self.holdingLease(token: token, sent: true) { conn in
                    var run = StatementRun(adopting: handOff, conn: conn, owner: self, sql: sql, token: token)
                    return self.collected(run.drive(handOff.action), &run)
                }
                return Result { () throws(PGError) -> PGResult in try self.result(outcome) }
            }
        } onCancel: {
            self.requestCancel(token)
        }
        return try outcome.get()
    }

    // MARK: - Shared by every statement

    /// Runs `statement` with the connection's lock held. Fails fast when the connection is closed
    /// or the task was cancelled before anything was sent. Afterwards closes the connection when
    /// the statement says so, after a connection-level error, or when PQstatus is no longer OK (e.g.
    /// a FATAL that arrived with the last result), so that `isHealthy` tells the truth at once.
    func locked<Value: Sendable>(
        token: UInt64, _ statement: (OpaquePointer) -> (StatementOutcome<Value>, close: Bool)
    ) -> StatementOutcome<Value> {
        lease.wait()
        defer { lease.signal() }
        return holdingLease(token: token, statement)
    }

    /// `locked` for a caller that holds the connection's lease already. `sent`: the statement was
    /// sent by the fast path (so a cancelled task is the statement's to handle, not a refusal).
    func holdingLease<Value: Sendable>(
        token: UInt64, sent: Bool = false, _ statement: (OpaquePointer) -> (StatementOutcome<Value>, close: Bool)
    ) -> StatementOutcome<Value> {
        let (outcome, closed): (StatementOutcome<Value>, Bool) = handle.withLock { connection in
            guard let conn = connection.conn else { return (.failure(closedError(connection.reason)), false) }
            if !sent && token != 0 && cancelTarget.load(ordering: .acquiring) == token {
                return (.failure(notSentBecauseCancelled()), false)
            }
            let (outcome, close) = statement(conn)
            var reason: String?
            if case .failure(let error) = outcome, close || error.isConnectionLevel {
                reason = error.message
            } else if PQstatus(conn) != CONNECTION_OK {
                reason = Redaction.scrub(PGConnection.lastErrorMessage(conn), secrets: config.secrets)
            } else if close {
                reason = "the server did not confirm the cancellation of a stopped stream in time"
            }
            guard let reason else { return (outcome, false) }
            connection.close(.broken(reason))
            return (outcome, true)
        }
        if closed { healthy.store(false, ordering: .relaxed) }
        return outcome
    }

    /// PQsendQuery (no parameters) or PQsendQueryParams, then PQsetSingleRowMode when asked.
    /// Returns the machine's first event, or the error when the parameters cannot be sent (nothing
    /// was sent).
    func send(_ conn: OpaquePointer, _ sql: String, _ params: [PGValue], singleRowMode: Bool)
        -> Result<QueryStateMachine.Event, PGError>
    {
        let sent: Int32
        if params.isEmpty {
            sent = PQsendQuery(conn, sql)
        } else {
            switch PGConnection.sendWithParameters(conn, sql, params) {
            case .success(let value): sent = value
            case .failure(let error): return .failure(annotate(error))
            }
        }
        guard sent != 0 else { return .success(.sendFailed(connectionBad: PQstatus(conn) != CONNECTION_OK)) }
        if singleRowMode {
            // Fails only when not called right after sending, which cannot happen here.
            let single = PQsetSingleRowMode(conn)
            precondition(single == 1, "PQsetSingleRowMode must follow PQsendQuery at once")
        }
        return .success(.sent)
    }

    /// The answer to an action the statement's mode never asks its executor for, or to an invalid
    /// event: the connection is closed (libpq's state is unknown).
    func unexpected<Value>(_ action: QueryStateMachine.Action) -> (StatementOutcome<Value>, close: Bool) {
        if case .invalidEvent(let invalid) = action { return (.failure(internalError(invalid.description)), true) }
        return (.failure(internalError("\(action) in \(QueryStateMachine.self)")), true)
    }

    /// Runs `work` (a synchronous statement, given its cancellation token) on BlockingIOPool.shared;
    /// cancelling the calling task cancels the statement on the server.
    func offloaded<Value: Sendable, Failure: Error>(
        notSent: (PGError) -> Failure, _ work: @escaping @Sendable (UInt64) -> Result<Value, Failure>
    ) async -> Result<Value, Failure> {
        let token = lastToken.add(1, ordering: .relaxed).newValue
        if Task.isCancelled { return .failure(notSent(notSentBecauseCancelled())) }
        return await withTaskCancellationHandler {
            await BlockingIOPool.shared.run { work(token) }
        } onCancel: {
            self.requestCancel(token)
        }
    }

    /// Called from a cancelled task's cancellation handler (any thread): marks the statement and
    /// wakes its poll(); the statement's own thread then sends PQcancel and reads its end.
    func requestCancel(_ token: UInt64) {
        cancelTarget.store(token, ordering: .releasing)
        pgha_wake_signal(wakeWrite)
    }
}

/// What a statement came to, before the lock is released.
enum StatementOutcome<Value: Sendable>: Sendable {
    case success(Value)
    case failure(PGError)
    /// The body threw; the caller rethrows the error it kept.
    case bodyFailed
}
