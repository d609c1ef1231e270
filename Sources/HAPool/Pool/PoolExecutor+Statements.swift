import PGClient

/// The retried paths: one statement (async and sync), a transaction, a connection lent to a body.
/// Each runs one `RetryLoop` from the check-out to the result, so a request's budget is
/// `failoverTimeout` however many times it is re-picked.
extension PoolExecutor {
    /// Runs `body` on a leased connection, re-running it on the (new) leader while
    /// `FailureClassifier` says nothing can have been applied.
    func execute<T>(
        readOnly: Bool, idempotent: Bool, database: String?,
        _ body: (Connection) async throws(PGError) -> T
    ) async throws(HAError) -> T {
        var loop = newLoop()
        while true {
            let lease = try await acquire(readOnly: readOnly, database: database, loop: &loop)
            do {
                let value = try await body(lease.connection)
                lease.pool.checkin(lease.connection)
                counters.countStatement(readOnly: readOnly)
                return value
            } catch {
                lease.pool.checkin(lease.connection)
                try statementFailed(error, lease: lease, rerunIsSafe: idempotent || lease.isReplica, loop: &loop)
            }
        }
    }

    /// `execute` on the caller's thread.
    func executeSync<T>(
        readOnly: Bool, idempotent: Bool, database: String?,
        _ body: (Connection) throws(PGError) -> T
    ) throws(HAError) -> T {
        var loop = newLoop()
        while true {
            let lease = try acquireSync(readOnly: readOnly, database: database, loop: &loop)
            do {
                let value = try body(lease.connection)
                lease.pool.checkin(lease.connection)
                counters.countStatement(readOnly: readOnly)
                return value
            } catch {
                lease.pool.checkin(lease.connection)
                try statementFailed(error, lease: lease, rerunIsSafe: idempotent || lease.isReplica, loop: &loop)
            }
        }
    }

    /// Shared failure handling: returns to re-run at once, throws otherwise.
    private func statementFailed(_ error: PGError, lease: PoolLease<Factory>, rerunIsSafe: Bool, loop: inout RetryLoop) throws(HAError) {
        let (step, nodeFailed) = loop.statementFailed(error, node: lease.node, rerunIsSafe: rerunIsSafe)
        if nodeFailed { feed { $0.connectionFailed(lease.node, now: clock.now) } }
        switch step {
        case .retry, .waitForLeader:
            counters.retries.increment()
            logger.debug("retrying", metadata: ["node": "\(lease.node)", "attempt": "\(loop.attempts)", "code": "\(error.code)"])
        case .fail(let failure):
            counters.errors.increment()
            if failure.code == .outcomeUnknown { counters.outcomeUnknown.increment() }
            throw failure
        }
    }

    /// Runs `body` inside BEGIN … COMMIT on the leader. If the connection fails before COMMIT is
    /// sent, the server has rolled back: `body` runs again on the new leader. During COMMIT the
    /// outcome is unknown (`.outcomeUnknown` unless `idempotent`). An error thrown by `body` that
    /// is not a `PGError` rolls back and is rethrown unchanged.
    func transaction<T: Sendable>(
        idempotent: Bool, database: String?,
        begin: (Connection) async throws(PGError) -> Void,
        commit: (Connection) async throws(PGError) -> Void,
        rollback: (Connection) async -> Void,
        _ body: (Connection) async throws -> T
    ) async throws -> T {
        var loop = newLoop()
        while true {
            let lease = try await acquire(readOnly: false, database: database, loop: &loop)
            let conn = lease.connection
            var committing = false
            do {
                try await begin(conn)
                let value: T
                do {
                    value = try await body(conn)
                } catch let error as PGError {
                    throw error
                } catch {
                    await rollback(conn)
                    lease.pool.checkin(conn)
                    throw error
                }
                committing = true
                try await commit(conn)
                lease.pool.checkin(conn)
                counters.writes.increment()
                return value
            } catch let error as PGError {
                if !error.isConnectionLevel, error.sqlState != "25006" { await rollback(conn) }
                lease.pool.checkin(conn)
                // Before COMMIT, a broken connection means the server rolled back: safe to re-run.
                try statementFailed(error, lease: lease, rerunIsSafe: idempotent || !committing, loop: &loop)
            }
        }
    }

    /// Lends a connection to `body`; only the check-out is retried.
    func withConnection<T: Sendable>(
        readOnly: Bool, database: String?, _ body: (Connection) async throws -> T
    ) async throws -> T {
        var loop = newLoop()
        let lease = try await acquire(readOnly: readOnly, database: database, loop: &loop)
        defer { lease.pool.checkin(lease.connection) }
        do {
            let value = try await body(lease.connection)
            counters.countStatement(readOnly: readOnly)
            return value
        } catch let error as PGError {
            if FailureClassifier.classify(error, rerunIsSafe: true).nodeFailed {
                feed { $0.connectionFailed(lease.node, now: clock.now) }
            }
            counters.errors.increment()
            throw error
        }
    }
}
