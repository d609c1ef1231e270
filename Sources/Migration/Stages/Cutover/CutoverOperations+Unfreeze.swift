import Foundation
import HAPool
import PGClient
import Patroni
import PlainText

/// Undoing the freeze before the point of no return (and for a rollback), last step first.
extension CutoverOperations {
    // MARK: - Unfreeze (before the point of no return, and rollback)

    /// Undoes the freeze steps that happened, last first: LOGIN back, the setting as before, then
    /// PgBouncer RESUME (so the waiting queries reach an unfrozen single node).
    /// `countsAsAttempt`: false for a rollback (the attempt did not fail, it is undone).
    /// `discardingWayBack`: false for a rollback, which removes the way back itself once the
    /// application is back (its subscriptions first: their slots are in use until then).
    func unfreeze(reason: String, countsAsAttempt: Bool = true, discardingWayBack: Bool = true) async throws {
        let freeze = journal.steps(of: stage).filter { CutoverProgress.freezeSteps.contains($0.name) && ($0.phase == .done || $0.phase == .intent) }
        guard !freeze.isEmpty else { return }
        let source = try await db.source(playbook.source.databases.project)
        for step in freeze.sorted(by: { order($0.name) < order($1.name) }) {
            switch step.undo {
            case .roleLogins(let saved):
                try await db.setLogin(source, roles: saved.roles, login: true)
            case .serverSettings(let saved):
                for setting in saved.settings {
                    try await db.alterSystem(source, setting.name, to: setting.previousAutoConf)
                }
            case .pgbouncerPause(let saved):
                if let settings = cutover.pgbouncer {
                    let admin = PgBouncerAdmin(settings: settings, connections: db.connections)
                    let console = try await admin.connect()
                    defer { console.close() }
                    try await admin.resume(saved.databases, console: console)
                }
            default:
                break
            }
            try journal.markStepUndone(step.id)
        }
        for name in ["final-lsn"] { if let s = journal.step(stage, named: name), s.phase != .undone { try journal.markStepUndone(s.id) } }
        if countsAsAttempt { try record { $0.abandonedAttempts += 1 } }
        context.progress("unfrozen (\(reason)): the application writes on the single node again")
        if isLogical, discardingWayBack { try await discardWayBackSlots() }
    }

    private func order(_ name: String) -> Int {
        switch name {
        case "freeze-logins": return 0
        case "freeze-setting": return 1
        default: return 2
        }
    }

    /// `unfreeze`, run even when the stage's task was cancelled (Ctrl-C during the freeze must not
    /// leave the single node frozen).
    func unfreezeAfterFailure(reason: String) async {
        var uncancelled = context
        uncancelled.cancellation = CancellationFlag()
        let fresh = CutoverOperations(context: uncancelled, journal: journal, db: CutoverDatabases(connections: db.connections), pollInterval: pollInterval)
        let outcome: String? = await Task.detached {
            defer { fresh.db.close() }
            do {
                try await fresh.unfreeze(reason: String(reason.prefix(200)))
                return nil
            } catch {
                return (error as? MigrationError)?.message ?? "\(error)"
            }
        }.value
        if let outcome {
            context.progress("could not unfreeze the single node: \(outcome). Next: `pgha rollback` unfreezes it")
        }
    }

    /// Undoes `prepare` (and, before the switch, the way back's objects on the cluster).
    func undoPreparation() async throws {
        let steps = journal.steps(of: stage).filter { $0.phase == .done || $0.phase == .intent }
        for step in steps.reversed() {
            switch step.undo {
            case .replicaIdentity(let saved):
                let source = try await db.source(saved.database)
                try await db.writable(source)
                let identity = ["n": "NOTHING", "f": "FULL"][saved.previous] ?? "DEFAULT"
                try await db.run(source, "ALTER TABLE \(saved.table) REPLICA IDENTITY \(identity)", what: "restoring the replica identity of \(saved.table)")
            case .createdObject(let object) where object.server == "source" && object.objectKind == "table":
                let source = try await db.source(object.database)
                try await db.writable(source)
                try await db.run(source, "DROP TABLE IF EXISTS \(object.name)", what: "dropping \(object.name)")
            case .createdObject(let object) where object.server == "cluster" && object.objectKind == "table":
                if let leader = await db.writableLeader() {
                    let c = try await db.member(host: leader.host, port: leader.port, database: object.database)
                    try await db.writable(c)
                    try await db.run(c, "DROP TABLE IF EXISTS \(object.name)", what: "dropping \(object.name) on the cluster")
                }
            case .createdObject(let object) where object.server == "cluster" && object.objectKind == "publication":
                if let leader = await db.writableLeader(), let c = try? await db.member(host: leader.host, port: leader.port, database: object.database) {
                    _ = try? await c.query("DROP PUBLICATION IF EXISTS \(SQLQuoting.identifier(object.name))", timeout: CutoverDatabases.statementTimeout)
                }
            case .patroniSlot(let slot):
                try? await patchConfig(.object(["slots": .object([slot.name: .null])]), what: "removing slot \(slot.name)")
            default:
                continue
            }
            try journal.markStepUndone(step.id)
        }
    }
}
