import CLibPQ

/// Streaming: rows one at a time (libpq's single-row mode), COPY TO STDOUT to a closure and
/// COPY FROM STDIN from a writer, none of them holding a whole result in memory.
///
/// Every call holds the connection for its whole duration and runs its body on the calling
/// thread (the async variants: on a BlockingIOPool thread, like `query`). The body must not use
/// the same connection. `timeout` covers the whole statement, the body's time included; a timeout
/// or a cancelled task cancels the statement on the server exactly as for `query` (the connection
/// stays usable when the server confirms), and a stream interrupted that way never reports
/// success: some rows were not delivered.
///
/// **Stopping early.** A body that returns `.stop`, or throws, ends the stream: the rest of the
/// statement is cancelled on the server (PQcancel) and read to its end, so the connection is idle
/// and usable when the call returns. Inside a transaction block the rest is read and discarded
/// instead (a cancel would abort the transaction), so bound such statements with LIMIT, a cursor
/// or `timeout`. If the server does not confirm the cancel within `config.cancelGracePeriod` the
/// connection is closed (`isHealthy` false); the rows delivered stand. With several statements in
/// `sql`, stopping early also cancels the ones after it.
///
/// Errors: a `PGError` for the statement (the same codes as `query`), or, when the body threw, the
/// body's own error, rethrown unchanged once the connection is usable again.
extension PGConnection {
    // MARK: - Rows

    /// Runs `sql` in libpq's single-row mode and calls `body` with each row as it arrives (a
    /// `PGRow` read in place, valid only inside `body`). Returns the number of rows delivered.
    ///
    /// Without parameters `sql` may hold several statements; the rows of each go to `body`. A
    /// server error part-way (e.g. division by zero at row 1,000) is thrown after the rows before it
    /// were delivered. COPY is refused with `.unexpectedResult` (use `copyOut`/`copyIn`).
    @discardableResult
    public func forEachRow(
        _ sql: String, _ params: [PGValue] = [], timeout: Duration? = nil,
        _ body: (borrowing PGRow) throws -> PGStreamStep
    ) throws -> Int {
        try streamRows(sql, params, timeout: timeout, token: 0, body)
    }

    /// `forEachRow` on `BlockingIOPool.shared` (the body runs there). Cancelling the calling task
    /// cancels the statement on the server and throws `.cancelled`.
    @discardableResult
    public func forEachRow(
        _ sql: String, _ params: [PGValue] = [], timeout: Duration? = nil,
        _ body: @escaping @Sendable (borrowing PGRow) throws -> PGStreamStep
    ) async throws -> Int {
        try await offloaded(notSent: { $0 as any Error }) { token in
            Result { try self.streamRows(sql, params, timeout: timeout, token: token, body) }
        }.get()
    }

    // MARK: - COPY TO STDOUT

    /// Runs `sql`, a `COPY ... TO STDOUT`, and calls `body` with each data row as PQgetCopyData
    /// returns it (in the COPY's format, with its line end; the buffer is valid only inside `body`).
    /// Returns the number of rows delivered. Any other statement is refused with `.unexpectedResult`.
    @discardableResult
    public func copyOut(
        _ sql: String, timeout: Duration? = nil, _ body: (UnsafeRawBufferPointer) throws -> PGStreamStep
    ) throws -> Int {
        try streamCopyOut(sql, timeout: timeout, token: 0, body)
    }

    /// `copyOut` on `BlockingIOPool.shared` (the body runs there).
    @discardableResult
    public func copyOut(
        _ sql: String, timeout: Duration? = nil, _ body: @escaping @Sendable (UnsafeRawBufferPointer) throws -> PGStreamStep
    ) async throws -> Int {
        try await offloaded(notSent: { $0 as any Error }) { token in
            Result { try self.streamCopyOut(sql, timeout: timeout, token: token, body) }
        }.get()
    }

    // MARK: - COPY FROM STDIN

    /// Runs `sql`, a `COPY ... FROM STDIN`, and lets `body` write the data with a `PGCopyWriter`.
    /// When `body` returns, the COPY is ended (PQputCopyEnd) and the number of rows the server
    /// copied is returned. When `body` throws, or a write failed, or the statement was interrupted,
    /// the COPY is ended with an error instead and the server keeps nothing. A bad row is reported by
    /// the server at the end as a `PGError` (e.g. `.queryFailed`, SQLSTATE 22P02); the connection
    /// stays usable. Any other statement is refused with `.unexpectedResult`.
    @discardableResult
    public func copyIn(_ sql: String, timeout: Duration? = nil, _ body: (inout PGCopyWriter) throws -> Void) throws
        -> Int
    {
        try streamCopyIn(sql, timeout: timeout, token: 0, body)
    }

    /// `copyIn` on `BlockingIOPool.shared` (the body runs there).
    @discardableResult
    public func copyIn(
        _ sql: String, timeout: Duration? = nil, _ body: @escaping @Sendable (inout PGCopyWriter) throws -> Void
    ) async throws -> Int {
        try await offloaded(notSent: { $0 as any Error }) { token in
            Result { try self.streamCopyIn(sql, timeout: timeout, token: token, body) }
        }.get()
    }

    /// `copyIn` writing each element of `chunks` in turn (e.g. lines "1\tAlice\n").
    @discardableResult
    public func copyIn<Chunks: Sequence>(_ sql: String, from chunks: Chunks, timeout: Duration? = nil)
        throws(PGError) -> Int where Chunks.Element == String
    {
        try Self.onlyPGErrors {
            try copyIn(sql, timeout: timeout) { writer in
                for chunk in chunks { try writer.write(chunk) }
            }
        }
    }

    /// `copyIn` writing each element of `chunks` in turn.
    @discardableResult
    public func copyIn<Chunks: Sequence>(_ sql: String, from chunks: Chunks, timeout: Duration? = nil)
        throws(PGError) -> Int where Chunks.Element == [UInt8]
    {
        try Self.onlyPGErrors {
            try copyIn(sql, timeout: timeout) { writer in
                for chunk in chunks { try writer.write(chunk) }
            }
        }
    }

    /// `copyIn(_:from:)` on `BlockingIOPool.shared`.
    @discardableResult
    public func copyIn<Chunks: Sequence & Sendable>(_ sql: String, from chunks: Chunks, timeout: Duration? = nil)
        async throws(PGError) -> Int where Chunks.Element == String
    {
        let outcome: Result<Int, PGError> = await offloaded(notSent: { $0 }) { token in
            Result { () throws(PGError) -> Int in
                try Self.onlyPGErrors {
                    try self.streamCopyIn(sql, timeout: timeout, token: token) { writer in
                        for chunk in chunks { try writer.write(chunk) }
                    }
                }
            }
        }
        return try outcome.get()
    }

    // MARK: - The executors

    private func streamRows(
        _ sql: String, _ params: [PGValue], timeout: Duration?, token: UInt64,
        _ body: (borrowing PGRow) throws -> PGStreamStep
    ) throws -> Int {
        var bodyError: (any Error)?
        let outcome = streamReading(sql, params, mode: .rows, timeout: timeout, token: token) { run, action in
            guard case .deliverRow = action, let result = run.pending else { return nil }
            defer { run.clearPending() }
            do {
                return try body(PGRow(result: result, index: run.machine.delivered)) == .next ? .next : .stop
            } catch {
                bodyError = error
                return .threw
            }
        }
        return try value(outcome, bodyError)
    }

    private func streamCopyOut(
        _ sql: String, timeout: Duration?, token: UInt64, _ body: (UnsafeRawBufferPointer) throws -> PGStreamStep
    ) throws -> Int {
        var bodyError: (any Error)?
        let outcome = streamReading(sql, [], mode: .copyOut, timeout: timeout, token: token) { run, action in
            guard case .deliverCopyData = action else { return nil }
            do {
                return try body(UnsafeRawBufferPointer(start: run.chunk, count: run.chunkLength)) == .next ? .next : .stop
            } catch {
                bodyError = error
                return .threw
            }
        }
        return try value(outcome, bodyError)
    }

    /// The loop both streaming reads share: the statement sent (in single-row mode for rows), the
    /// machine advanced, and each delivery handed to `deliver`, which runs the caller's body and
    /// says how it went; an action `deliver` does not take (nil) is a bug reported as such.
    private func streamReading(
        _ sql: String, _ params: [PGValue], mode: QueryStateMachine.Mode, timeout: Duration?, token: UInt64,
        deliver: (inout StatementRun, QueryStateMachine.Action) -> QueryStateMachine.BodyOutcome?
    ) -> StatementOutcome<Int> {
        locked(token: token) { conn in
            var run = StatementRun(
                conn: conn, owner: self, sql: sql, token: token, mode: mode, stopPolicy: Self.stopPolicy(conn),
                deadline: timeout.map { Deadline.after($0) } ?? .none)
            let first: QueryStateMachine.Event
            switch send(conn, sql, params, singleRowMode: mode == .rows) {
            case .success(let event): first = event
            case .failure(let error): return (.failure(error), false)
            }
            var action = run.advance(first)
            while true {
                if case .finish(let completion) = action {
                    return streamEnd(completion, run, value: run.machine.delivered)
                }
                guard let outcome = deliver(&run, action) else { return unexpected(action) }
                action = run.advance(.bodyReturned(outcome, now: monotonicNow(), cancelRequested: run.cancelRequested))
            }
        }
    }

    private func streamCopyIn(
        _ sql: String, timeout: Duration?, token: UInt64, _ body: (inout PGCopyWriter) throws -> Void
    ) throws -> Int {
        var bodyError: (any Error)?
        let outcome: StatementOutcome<Int> = locked(token: token) { conn in
            var run = StatementRun(
                conn: conn, owner: self, sql: sql, token: token, mode: .copyIn,
                deadline: timeout.map { Deadline.after($0) } ?? .none)
            let first: QueryStateMachine.Event
            switch send(conn, sql, [], singleRowMode: false) {
            case .success(let event): first = event
            case .failure(let error): return (.failure(error), false)
            }
            var action = run.advance(first)
            while true {
                switch action {
                case .runCopyInBody:
                    var writer = PGCopyWriter(run: run)
                    var outcome = QueryStateMachine.CopyInBodyOutcome.finished
                    do {
                        try body(&writer)
                    } catch {
                        bodyError = error
                        outcome = .threw
                    }
                    run = writer.run
                    if let invalid = run.invalid { return (.failure(internalError(invalid.description)), true) }
                    action = run.advance(.copyInBodyReturned(outcome))
                case .finish(let completion):
                    let copied = run.last.flatMap { PGResult.affectedRows($0) } ?? 0
                    return streamEnd(completion, run, value: copied)
                case .flush, .wait, .consumeInput, .readResult, .keepResult, .discardResult, .deliverRow,
                    .readCopyData, .deliverCopyData, .putCopyData, .writeFinished, .putCopyEnd, .sendCancel,
                    .awaitCancel, .invalidEvent:
                    return unexpected(action)
                }
            }
        }
        return try value(outcome, bodyError)
    }

    /// The outcome of a finished stream whose success value is `value`.
    private func streamEnd(_ completion: QueryStateMachine.Completion, _ run: borrowing StatementRun, value: Int)
        -> (StatementOutcome<Int>, close: Bool)
    {
        switch completion.outcome {
        case .succeeded, .stopped:
            return (.success(value), completion.close)
        case .bodyFailed:
            return (.bodyFailed, completion.close)
        case .serverError, .interrupted, .connectionBroken, .sendRejected, .unexpectedStatus, .refused, .noResult:
            return (.failure(error(for: completion.outcome, run)), completion.close)
        }
    }

    private func value(_ outcome: StatementOutcome<Int>, _ bodyError: (any Error)?) throws -> Int {
        switch outcome {
        case .success(let count): return count
        case .failure(let error): throw error
        case .bodyFailed: throw bodyError ?? internalError("a body failure without its error")
        }
    }

    /// Outside a transaction block a stopped stream is cancelled; inside one it is drained, because
    /// a cancel would abort the transaction.
    private static func stopPolicy(_ conn: OpaquePointer) -> QueryStateMachine.StopPolicy {
        PQtransactionStatus(conn) == PQTRANS_IDLE ? .cancel : .drain
    }

    /// Runs `body`, whose only errors are PGErrors, with typed throws.
    private static func onlyPGErrors<T>(_ body: () throws -> T) throws(PGError) -> T {
        do {
            return try body()
        } catch let error as PGError {
            throw error
        } catch {
            preconditionFailure("only PGErrors can be thrown here, got \(type(of: error))")
        }
    }
}
