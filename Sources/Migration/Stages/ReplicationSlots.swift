import Foundation
import PGClient

/// Dropping a replication slot once nothing streams from it: the one loop behind the sync's
/// undo (physical slot, logical subscriptions' slots), the cutover's rollback (the way back's
/// slots) and `complete` (the single node's slot). A slot in use cannot be dropped (its walsender
/// holds it), so the slot is looked at until it is inactive or `timeout` passes, on the stage's
/// clock; the caller decides what "still in use" means for it (an error or a note).
enum ReplicationSlots {
    enum DropOutcome: Equatable, Sendable {
        /// It was there, unused, and is dropped now.
        case dropped
        /// It was not there (dropped before, or never made).
        case absent
        /// Still in use when the time was up: the walsender's PID, when known.
        case inUse(pid: Int64?)
    }

    /// Drops slot `name` on `connection`'s server once it is inactive, looking every 250 ms for up
    /// to `timeout` (zero: one look). Statement errors are thrown as `.stageFailed` naming `what`.
    static func dropWhenInactive(_ name: String, on connection: PGConnection, timeout: Duration, context: StageContext,
                                 describe: (String) -> String = { $0 }) async throws(MigrationError) -> DropOutcome {
        let deadline = context.clock.now().addingTimeInterval(timeout.asSeconds)
        func query(_ sql: String, what: String) async throws(MigrationError) -> PGResult {
            do {
                return try await connection.query(sql, [.text(name)], timeout: CutoverDatabases.statementTimeout)
            } catch {
                if error.code == .cancelled { throw MigrationError(.interrupted, "interrupted while \(what)") }
                throw MigrationError(.stageFailed, "\(what) failed: \(describe(error.description))")
            }
        }
        while true {
            let r = try await query("SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1", what: "looking for slot \(name)")
            if r.rowCount == 0 { return .absent }
            if (try? r.bool(0, 0)) != true {
                _ = try await query("SELECT pg_drop_replication_slot($1)", what: "dropping slot \(name)")
                return .dropped
            }
            if context.clock.now() >= deadline { return .inUse(pid: try? r.int(0, 1)) }
            try await context.sleep(for: .milliseconds(250))
        }
    }
}
