import Foundation
import PlainText
import PGClient
import Patroni

/// Rollback after cutover: the application goes back to the single node with every write it made
/// on the cluster. Idempotent (a rollback interrupted at any point is run again from the top):
/// 0. the single node subscribed to the cluster, if the cutover stopped before it did, and every
///    way-back apply worker streaming (before the application pauses);
/// 1. PgBouncer `PAUSE` (or nothing, for the hook method);
/// 2. freeze the cluster: `default_transaction_read_only` through Patroni's dynamic configuration
///    (a switchover cannot lift it), the application's roles `NOLOGIN` on the leader and their
///    sessions terminated;
/// 3. per database, a canary row written on the cluster after the freeze arrives on the single
///    node: everything committed before it was applied (one apply worker, commit order);
/// 4. every sequence's value copied back (never lowered); large objects the cluster has and the
///    single node has not are reported (logical replication does not carry them);
/// 5. the application switched back (PgBouncer's ini from its backup + `RELOAD`, or the hook and
///    the .env backup), the single node unfrozen, then PgBouncer `RESUME`;
/// 6. the way back removed: the subscriptions on the single node, the permanent slots and the
///    publication on the cluster; then what `prepare` changed on the single node.
/// The cluster stays frozen (the sync stage's undo stops it when the playbook says how); in the
/// logical method, whose cluster is independent, the freeze is lifted at the end.
struct CutoverRollback: Sendable {
    let ops: CutoverOperations

    var db: CutoverDatabases { ops.db }
    var context: StageContext { ops.context }
    var playbook: Playbook { ops.playbook }
    var cutover: Playbook.Cutover { ops.cutover }

    func run() async throws {
        context.progress("rollback after cutover: the application goes back to the single node with every write made on the cluster")
        // 0. The way back subscribed: a cutover that stopped between the switch and the
        //    subscription left the cluster's writes in its slots with nobody reading them.
        try await ops.subscribeWayBack()
        //    Every apply worker streaming before the application pauses (the second database's
        //    starts seconds after the first: measured 5 s of pause without this wait).
        try await ops.awaitWayBackStreaming()
        let pausedAt = ops.now
        // 1. Pause the application.
        if cutover.method == .pgbouncer, let settings = cutover.pgbouncer {
            let admin = PgBouncerAdmin(settings: settings, connections: db.connections)
            let console = try await admin.connect()
            defer { console.close() }
            try await admin.pause(CutoverStage.pgbouncerDatabases(playbook), timeout: .seconds(cutover.pauseTimeoutSeconds), console: console)
            context.progress("PgBouncer paused")
        }
        // 2. Freeze the cluster.
        let leader = try await ops.leader()
        let freezeID = try ops.journal.beginStep(ops.stage, name: "rollback:freeze-cluster", detail: "freeze the cluster for the rollback: default_transaction_read_only through Patroni, NOLOGIN for the application's roles")
        try await ops.patchConfig(.object(["postgresql": .object(["parameters": .object(["default_transaction_read_only": .string("on")])])]), what: "the cluster's freeze")
        let leaderConnection = try await db.member(host: leader.host, port: leader.port, database: "postgres")
        let roles = ops.frozenRoles
        try await db.setLogin(leaderConnection, roles: roles, login: false)
        let terminated = try await db.terminateSessions(leaderConnection, roles: roles)
        try ops.journal.completeStep(freezeID)
        context.progress("the cluster is frozen (\(terminated) application session(s) terminated on \(leader.name))")

        // 3. Everything written on the cluster reaches the single node.
        for database in db.databases {
            let token = "rollback-\(UUID().uuidString)"
            let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            try await db.writable(cluster)
            let present = try await db.run(cluster, "SELECT to_regclass($1) IS NOT NULL", [.text(CutoverStage.canaryTable)], what: "looking for the canary table")
            guard (try? present.bool(0, 0)) == true else { continue }
            try await db.run(cluster, "INSERT INTO \(CutoverStage.canaryTable) (token) VALUES ($1)", [.text(token)], what: "writing the rollback canary on the cluster")
            try await ops.awaitCanary(token, database: database.source, seconds: max(60, cutover.timeoutSeconds))
            context.progress("\(database.source): the single node applied everything written on the cluster")
        }

        // 4. Sequences and large objects.
        for database in db.databases {
            let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            let source = try await db.source(database.source)
            try await db.writable(source)
            let copy = try await db.copySequences(from: cluster, to: source, margin: 0, direction: "back to the single node")
            let copied = copy.copied
            if !copy.missing.isEmpty {
                context.progress("\(database.source): sequence(s) " + copy.missing.prefix(10).joined(separator: ", ") + " exist on the cluster only (created there after cutover): not copied back")
            }
            let loSQL = "SELECT oid::text FROM pg_largeobject_metadata"
            let clusterObjects = try await db.run(cluster, loSQL, what: "listing the cluster's large objects")
            let sourceObjects = try await db.run(source, loSQL, what: "listing the single node's large objects")
            let have = Set((0..<sourceObjects.rowCount).compactMap { sourceObjects.string($0, 0) })
            let missing = (0..<clusterObjects.rowCount).compactMap { clusterObjects.string($0, 0) }.filter { !have.contains($0) }
            context.progress("\(database.source): \(copied) sequence(s) copied back" + (missing.isEmpty ? "; no large object written on the cluster" : "; \(missing.count) large object(s) written on the cluster are NOT on the single node (oids " + missing.prefix(10).joined(separator: ", ") + "): copy them with lo_export/lo_import"))
        }

        // 5. Switch back, unfreeze, resume.
        try await switchBack()
        try await ops.unfreeze(reason: "rollback after cutover", countsAsAttempt: false, discardingWayBack: false)
        if let s = ops.journal.step(ops.stage, named: "switch-application"), s.phase != .undone { try ops.journal.markStepUndone(s.id) }
        try ops.record { r in
            r.rolledBackAt = ops.now
            r.rollbackPauseSeconds = ops.now.timeIntervalSince(pausedAt)
        }
        context.progress(String(format: "the application is back on the single node (write pause %.2f s)", ops.now.timeIntervalSince(pausedAt)))

        // 6. Remove the way back.
        try await removeWayBack()
        try await ops.undoPreparation()
        for step in ops.journal.steps(of: ops.stage) where step.phase == .done || step.phase == .intent {
            try ops.journal.markStepUndone(step.id)
        }
        if ops.isLogical {
            // An independent cluster (it may hold other databases): its freeze is lifted once the
            // application is back and the way back is gone; the sync's undo drops the copies.
            try await ops.patchConfig(.object(["postgresql": .object(["parameters": .object(["default_transaction_read_only": .null])])]), what: "lifting the cluster's freeze")
            if let leader = await db.writableLeader() {
                let c = try await db.member(host: leader.host, port: leader.port, database: "postgres")
                try await db.setLogin(c, roles: roles, login: true)
            }
            context.progress("the cluster is unfrozen (logical method: an independent cluster), the application's roles log in there again")
        } else {
            context.progress("the cluster stays frozen (read-only) until the sync stage's undo stops it")
        }
    }

    func switchBack() async throws {
        guard let step = ops.journal.step(ops.stage, named: "switch-application") else { return }
        switch cutover.method {
        case .pgbouncer:
            guard let settings = cutover.pgbouncer else { return }
            if case .createdObject(let backup) = step.undo, let saved = try FileIO.read(backup.name) {
                let mode = try FileIO.read(settings.iniFile)?.mode ?? 0o640
                try FileIO.writeAtomically(saved.contents, to: settings.iniFile, mode: mode)
            }
            let admin = PgBouncerAdmin(settings: settings, connections: db.connections)
            let console = try await admin.connect()
            defer { console.close() }
            try await admin.reload(console: console)
            context.progress("PgBouncer points at the single node again (\(settings.iniFile) restored)")
        case .hook:
            if case .createdObject(let backup) = step.undo, let saved = try FileIO.read(backup.name) {
                try FileIO.writeAtomically(saved.contents, to: backup.database, mode: 0o600)
                context.progress("\(backup.database) restored (single-node mode)")
            }
            if let command = cutover.switchBack {
                try await ops.runHook("cutover.switch_back", command)
            } else {
                context.progress("no cutover.switch_back: restart the application yourself so that it reads the restored settings")
            }
        }
    }

    /// Drops the subscriptions (their slots on the cluster are dropped separately: the cluster may
    /// not answer), the permanent slots and the publication.
    func removeWayBack() async throws {
        for database in db.databases {
            let name = CutoverStage.wayBackSlot(playbook, database: database.source)
            let source = try await db.source(database.source)
            try await db.writable(source)
            if try await db.dropSubscription(name, on: source) {
                context.progress("\(database.source): subscription \(name) dropped on the single node")
            }
        }
        try await CutoverRollback.dropClusterSide(ops)
    }

    /// The permanent slots (Patroni's configuration and the leader) and the publication.
    static func dropClusterSide(_ ops: CutoverOperations) async throws {
        let db = ops.db
        var slots: [String: JSONValue] = [:]
        for database in db.databases { slots[CutoverStage.wayBackSlot(ops.playbook, database: database.source)] = .null }
        try await ops.patchConfig(.object(["slots": .object(slots)]), what: "removing the permanent slots")
        guard let leader = await db.writableLeader() else { return }
        for database in db.databases {
            let slot = CutoverStage.wayBackSlot(ops.playbook, database: database.source)
            let c = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            try await db.writable(c)
            // Patroni drops a slot it no longer knows within a loop; dropping it here is immediate.
            if case .inUse = try await ReplicationSlots.dropWhenInactive(slot, on: c, timeout: .seconds(10), context: ops.context, describe: db.connections.describe) {
                ops.context.progress("slot \(slot) on \(leader.name) is still in use: Patroni drops it once unused")
            }
            try await db.run(c, "DROP PUBLICATION IF EXISTS \(SQLQuoting.identifier(ops.cutover.wayBackName))", what: "dropping the publication")
        }
        ops.context.progress("the way back is removed from the cluster (slots, publication)")
    }
}
