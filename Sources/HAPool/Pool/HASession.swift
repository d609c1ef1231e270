public import PGClient
import Synchronization

/// Read-your-writes on top of `PatroniHAPool` (none of the Swift PostgreSQL clients has it).
///
/// After a write through the session, its commit LSN is remembered (`pg_current_wal_lsn()` on the
/// same connection). A later `readOnly` read goes to a replica only once that replica has replayed
/// up to it: a replica whose replay LSN (as last seen by the topology refresh) is far enough; with
/// `.wait(bound)`, any replica is asked directly (`pg_last_wal_replay_lsn()`) until it catches up
/// or the bound passes. Otherwise the read goes to the leader. Reads never see data older than the
/// session's own writes.
public final class HASession: Sendable {
    public let pool: PatroniHAPool
    public let policy: ReadYourWrites
    private let lastWrite = Mutex<UInt64?>(nil)

    public init(pool: PatroniHAPool, policy: ReadYourWrites = .leaderFallback) {
        self.pool = pool
        self.policy = policy
    }

    /// The LSN of the session's last write, if any.
    public var lastWriteLSN: LSN? { lastWrite.withLock { $0 }.map(LSN.init) }

    /// A write (leader) or a read (`readOnly`) with read-your-writes.
    public func query(_ sql: String, _ params: [PGValue] = [], readOnly: Bool = false, idempotent: Bool = false, database: String? = nil) async throws(HAError) -> PGResult {
        if readOnly { return try await read(sql, params, database: database) }
        let result = try await pool.query(sql, params, idempotent: idempotent, database: database)
        try await recordWrite(database: database)
        return result
    }

    /// `PatroniHAPool.transaction`, remembering the commit LSN.
    public func transaction<T: Sendable>(idempotent: Bool = false, database: String? = nil, _ body: @Sendable (PGConnection) async throws -> T) async throws -> T {
        let value = try await pool.transaction(idempotent: idempotent, database: database, body)
        try await recordWrite(database: database)
        return value
    }

    private func recordWrite(database: String?) async throws(HAError) {
        guard policy != .off else { return }
        // After COMMIT returned, the leader's current WAL position is at or past the commit record.
        let result = try await pool.query("SELECT pg_current_wal_lsn()", idempotent: true, database: database)
        if let value = (try? result.lsn(0, 0))??.value {
            lastWrite.withLock { current in current = max(current ?? 0, value) }
        }
    }

    private func read(_ sql: String, _ params: [PGValue], database: String?) async throws(HAError) -> PGResult {
        guard policy != .off, let minimum = lastWrite.withLock({ $0 }) else {
            return try await pool.query(sql, params, readOnly: true, database: database)
        }
        if case .wait(let bound) = policy {
            let deadline = ContinuousClock.now + bound
            let lease = try await pool.acquire(readOnly: true, database: database)
            if lease.isReplica {
                do {
                    while ContinuousClock.now < deadline {
                        if let replayed = try await lease.connection.replayLSN(), replayed.value >= minimum {
                            let result = try await lease.connection.query(sql, params)
                            pool.release(lease)
                            return result
                        }
                        try? await Task.sleep(for: .milliseconds(2))
                    }
                } catch {
                    pool.release(lease)
                    return try await pool.query(sql, params, readOnly: false, idempotent: true, database: database)
                }
            }
            pool.release(lease)
        }
        // A replica known (from the last refresh) to be far enough, else the leader.
        let lease = try await pool.acquire(readOnly: true, database: database, minimumReplayLSN: minimum)
        do {
            let result = try await lease.connection.query(sql, params)
            pool.release(lease)
            return result
        } catch {
            pool.release(lease)
            return try await pool.query(sql, params, readOnly: false, idempotent: true, database: database)
        }
    }
}
