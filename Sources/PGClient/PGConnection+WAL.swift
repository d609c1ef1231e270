/// Helpers for replication state: recovery, WAL positions (SQL functions).
extension PGConnection {
    /// `SELECT pg_is_in_recovery()`: true on a standby.
    public func isInRecovery() throws(PGError) -> Bool {
        try Self.singleBool(query("SELECT pg_is_in_recovery()"), "pg_is_in_recovery()")
    }

    /// `SELECT pg_is_in_recovery()` on `BlockingIOPool.shared`.
    public func isInRecovery() async throws(PGError) -> Bool {
        try Self.singleBool(await query("SELECT pg_is_in_recovery()"), "pg_is_in_recovery()")
    }

    /// `SELECT pg_current_wal_lsn()`: the primary's current write position. On a standby this
    /// throws `.notAvailableOnStandby` (use `replayLSN()` / `receiveLSN()` there).
    public func currentWALLSN() throws(PGError) -> LSN {
        do {
            return try Self.requiredLSN(query("SELECT pg_current_wal_lsn()"), "pg_current_wal_lsn()")
        } catch {
            throw Self.explainStandby(error)
        }
    }

    /// `SELECT pg_current_wal_lsn()` on `BlockingIOPool.shared`.
    public func currentWALLSN() async throws(PGError) -> LSN {
        do {
            return try Self.requiredLSN(await query("SELECT pg_current_wal_lsn()"), "pg_current_wal_lsn()")
        } catch {
            throw Self.explainStandby(error)
        }
    }

    /// `SELECT pg_last_wal_replay_lsn()`: the last WAL position replayed by a standby; nil on a
    /// server that has not been in recovery since it started (a primary).
    public func replayLSN() throws(PGError) -> LSN? {
        try query("SELECT pg_last_wal_replay_lsn()").lsn(0, 0)
    }

    /// `SELECT pg_last_wal_replay_lsn()` on `BlockingIOPool.shared`.
    public func replayLSN() async throws(PGError) -> LSN? {
        try await query("SELECT pg_last_wal_replay_lsn()").lsn(0, 0)
    }

    /// `SELECT pg_last_wal_receive_lsn()`: the last WAL position a standby received and flushed;
    /// nil on a primary.
    public func receiveLSN() throws(PGError) -> LSN? {
        try query("SELECT pg_last_wal_receive_lsn()").lsn(0, 0)
    }

    private static func singleBool(_ result: PGResult, _ what: String) throws(PGError) -> Bool {
        guard result.rowCount == 1, result.columnCount == 1, let value = try result.bool(0, 0) else {
            throw PGError(code: .unexpectedResult, message: "\(what) returned no value", isConnectionLevel: false)
        }
        return value
    }

    private static func requiredLSN(_ result: PGResult, _ what: String) throws(PGError) -> LSN {
        guard result.rowCount == 1, result.columnCount == 1, let value = try result.lsn(0, 0) else {
            throw PGError(code: .unexpectedResult, message: "\(what) returned no value", isConnectionLevel: false)
        }
        return value
    }

    private static func explainStandby(_ error: PGError) -> PGError {
        guard error.code == .notAvailableOnStandby else { return error }
        var explained = error
        explained.message =
            "pg_current_wal_lsn() is not available on a standby (the server is in recovery): "
            + "ask the primary, or use replayLSN()/receiveLSN() here (server said: \(error.message))"
        return explained
    }
}
