import Foundation
import PGClient
import Patroni
import PlainText

/// The cutover's differences in the logical method (docs/MIGRATION_TO_HA.md, "Cutover, logical
/// method"). The cluster is independent and writable, fed by the single node's publication:
/// - the guardrails read the forward subscriptions (every table ready, lag, no error, no DDL, the
///   leader of the copy) and the cluster's replicas, instead of a standby cluster's replay;
/// - pgha's own tables are created on both sides (the cluster first: a row for a table the
///   subscriber lacks stops its apply worker) and added to the subscriptions;
/// - the catch-up is proven by a marker row written on the frozen single node and read on the
///   leader (one apply worker per subscription, commit order: everything before it was applied),
///   then every replica replays the leader's position;
/// - every sequence (all of `pg_sequences`) is set on the cluster to the single node's value plus
///   `cutover.sequence_margin`, never lowered;
/// - no promotion; the way back's slot is declared and created only after the catch-up, so that it
///   holds none of the forward copy's changes (they would flow back as duplicates);
/// - after the switch the forward subscriptions are dropped before the single node subscribes
///   back (else every write would echo between the two).
extension CutoverOperations {
    var isLogical: Bool { playbook.sync.method == .logical }

    func logicalSync() -> LogicalSync {
        LogicalSync(context: context, journal: journal, db: db)
    }

    // MARK: - Guardrails

    /// What stops the logical cutover before any freeze, and the lag figures shown.
    func logicalMemberProblems() async throws -> (problems: [String], lags: [String]) {
        var problems: [String] = []
        let sync = logicalSync()
        if let (reason, _) = await sync.leaderChange() {
            // A leader change since the sync (or one it did not verify): verified the way the
            // sync stage does, before anything is frozen.
            context.progress(reason + ": verified now, as the sync stage does")
            try await sync.wait()
        }
        let look = try await sync.look()
        if look.tables == 0 || look.ready < look.tables {
            problems.append("the forward subscriptions have \(look.ready) of \(look.tables) tables ready (a cutover after a rollback after cutover needs the sync again: `pgha rollback`, then `pgha run`)")
        } else if let (reason, _) = await sync.problem(look) {
            problems.append(reason)
        } else if let (reason, _) = await sync.leaderChange() {
            problems.append(reason)
        }
        if look.lagBytes > playbook.thresholds.maxLagBytes {
            problems.append("the forward subscriptions are \(formatBytes(look.lagBytes)) behind the single node (thresholds.max_lag_bytes: \(formatBytes(playbook.thresholds.maxLagBytes)))")
        }
        var lags = ["subscriptions \(formatBytes(look.lagBytes))"]
        let client = try db.connections.patroniClient()
        if let answer = try? await client.cluster() {
            for m in answer.value.members where !m.role.isLeader {
                let lag = m.lag ?? -1
                lags.append("\(m.name) \(lag < 0 ? "?" : formatBytes(lag))")
                if m.state?.rawValue != "streaming" {
                    problems.append("member \(m.name) is \(m.state?.rawValue ?? "?"), not streaming from the leader")
                } else if lag > playbook.thresholds.maxLagBytes {
                    problems.append("member \(m.name) is \(formatBytes(lag)) behind the leader (thresholds.max_lag_bytes)")
                }
            }
            if answer.value.members.count < playbook.thresholds.minMembers {
                problems.append("the cluster has \(answer.value.members.count) member(s), fewer than thresholds.min_members (\(playbook.thresholds.minMembers))")
            }
        } else {
            problems.append("no REST API of the cluster answers GET /cluster")
        }
        // The roles the application logs in as, and the way back's, can log in on the cluster:
        // the sync creates missing roles, with a password only under sync.role_passwords: copy.
        let leader = try await leader()
        let source = try await db.source(playbook.source.databases.project)
        let roles = try await db.freezableRoles(source)
        let c = try await db.member(host: leader.host, port: leader.port, database: "postgres")
        let r = try await db.run(c, "SELECT rolname, rolpassword IS NOT NULL FROM pg_authid WHERE rolcanlogin AND rolname = ANY(string_to_array($1, ','))", [.text(roles.joined(separator: ","))], what: "reading the cluster's roles")
        let present = Set((0..<r.rowCount).compactMap { r.string($0, 0) })
        let withoutPassword = (0..<r.rowCount).filter { (try? r.bool($0, 1)) == false }.compactMap { r.string($0, 0) }
        let missing = roles.filter { !present.contains($0) }
        if !missing.isEmpty {
            problems.append("the application's role(s) " + missing.joined(separator: ", ") + " cannot log in on the cluster (missing, or NOLOGIN there): create them with their passwords")
        }
        if !withoutPassword.isEmpty {
            problems.append("the application's role(s) " + withoutPassword.joined(separator: ", ") + " have no password on the cluster (the sync created them without: sync.role_passwords is none): `ALTER ROLE … PASSWORD` there, then `pgha resume`")
        }
        let wayBack = try await db.run(c, "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = $1 AND rolcanlogin", [.text(cutover.wayBackUser)], what: "reading the way back's role")
        if wayBack.rowCount == 0 || (try? wayBack.bool(0, 0)) != true {
            problems.append("the way back's role \(cutover.wayBackUser) (cutover.way_back.user) cannot log in with REPLICATION on the cluster: create it there")
        }
        return (problems, lags)
    }

    // MARK: - Prepare

    /// pgha's table `table` (created by `sql`) on the cluster's leader, before the single node.
    func createClusterTable(_ database: (source: String, cluster: String), table: String, sql: String) async throws {
        let leader = try await leader()
        let c = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
        let exists = try await db.run(c, "SELECT to_regclass($1) IS NOT NULL", [.text(table)], what: "looking for \(table) on the cluster")
        if (try? exists.bool(0, 0)) == true, !happened("table:cluster:\(database.source):\(table)") { return }
        try await step("table:cluster:\(database.source):\(table)", "create \(table) in \(database.cluster) on the cluster (before the single node: the subscription must find it)",
                       undo: .createdObject(.init(server: "cluster", database: database.cluster, kind: "table", name: table))) {
            try await db.run(c, sql, what: "creating \(table) on the cluster")
            let owner = playbook.target.user
            try await db.run(c, "ALTER TABLE \(table) OWNER TO \(SQLQuoting.identifier(owner))", what: "giving \(table) to \(owner) on the cluster")
            return nil
        }
    }

    /// The forward subscription learns the tables created since the copy (empty on both sides).
    func refreshForwardSubscription(_ database: (source: String, cluster: String), tables: [String]) async throws {
        let name = LogicalSync.subscriptionName(playbook, database: database.source)
        let publication = playbook.sync.publication
        try await step("refresh:\(database.source)", "pgha's tables added to publication \(publication), then ALTER SUBSCRIPTION \(name) REFRESH PUBLICATION (copy_data = false): they flow too") {
            // The sync's publication lists its tables (dropping a table takes it out again).
            let source = try await db.source(database.source)
            for table in tables {
                let r = try await db.run(source, """
                    SELECT p.puballtables OR EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid = to_regclass($2))
                    FROM pg_publication p WHERE p.pubname = $1
                    """, [.text(publication), .text(table)], what: "looking for \(table) in publication \(publication)")
                if r.rowCount == 1, try r.bool(0, 0) == false {
                    try await db.writable(source)
                    try await db.run(source, "ALTER PUBLICATION \(SQLQuoting.identifier(publication)) ADD TABLE \(table)", what: "adding \(table) to publication \(publication)")
                }
            }
            let leader = try await leader()
            let c = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            try await db.run(c, "ALTER SUBSCRIPTION \(SQLQuoting.identifier(name)) REFRESH PUBLICATION WITH (copy_data = false)", what: "refreshing subscription \(name)")
            return nil
        }
    }

    // MARK: - Catch-up

    /// Inside the freeze: a marker row per database written on the single node by pgha's own
    /// session, awaited on the leader; then every replica replays the leader's position. Bounded
    /// by `cutover.timeout`.
    func logicalCatchUp(_ source: PGConnection) async throws {
        var markers: [(database: (source: String, cluster: String), token: String)] = []
        var finalLSN = LSN.invalid
        try await step("final-lsn", "a marker row per database on the frozen single node, then its final LSN") {
            markers = try await writeFinalMarkers()
            finalLSN = try await db.currentLSN(source)
            try record { $0.finalLSN = finalLSN.description }
            return nil
        }
        if markers.isEmpty {
            // Resumed after the markers were written: any row they wrote is older than the
            // freeze's end; a fresh marker proves the same.
            markers = try await writeFinalMarkers()
            finalLSN = try await db.currentLSN(source)
        }
        let leader = try await leader()
        var leaderLSN: LSN?
        try await catchUp(
            awaited: "the forward subscriptions to apply the single node's final LSN \(finalLSN)",
            notCaughtUp: "had not applied the single node's final LSN \(finalLSN). The single node was unfrozen and the application resumed there; nothing moved. Next: the forward subscriptions' lag (`pgha status`, pg_stat_subscription on the leader), or raise cutover.timeout, then `pgha resume`"
        ) {
            if leaderLSN == nil {
                var missing: [String] = []
                for marker in markers {
                    let c = try await db.member(host: leader.host, port: leader.port, database: marker.database.cluster)
                    let r = try await db.run(c, "SELECT 1 FROM \(CutoverStage.canaryTable) WHERE token = $1", [.text(marker.token)], what: "looking for the final marker on the cluster")
                    if r.rowCount == 0 { missing.append("the subscription of \(marker.database.source)") }
                }
                guard missing.isEmpty else { return missing }
                let c = try await db.member(host: leader.host, port: leader.port, database: "postgres")
                leaderLSN = try await db.currentLSN(c)
            }
            guard let target = leaderLSN else { return ["the leader's LSN"] }
            return await db.membersBehind(target, except: leader.name).map { "\($0) (leader at \(target))" }
        }
        context.progress("the cluster applied the single node's final LSN \(finalLSN) (marker rows arrived on \(leader.name)); every replica replayed it")
    }

    /// One marker row per database in `pgha_canary`, written by pgha's own session on the
    /// frozen single node.
    func writeFinalMarkers() async throws -> [(database: (source: String, cluster: String), token: String)] {
        var markers: [(database: (source: String, cluster: String), token: String)] = []
        for database in db.databases {
            let token = "final-\(UUID().uuidString)"
            let s = try await db.source(database.source)
            try await db.writable(s)
            try await db.run(s, "INSERT INTO \(CutoverStage.canaryTable) (token) VALUES ($1)", [.text(token)], what: "writing the final marker on the single node")
            markers.append((database, token))
        }
        return markers
    }

    // MARK: - Sequences

    /// Every sequence of every database set on the cluster to the single node's value plus the
    /// margin (logical replication carries no sequence). A sequence missing on the cluster fails.
    func copySequencesToCluster() async throws {
        let leader = try await leader()
        let margin = cutover.sequenceMargin
        for database in db.databases {
            try await step("sequences:\(database.source)", "every sequence of \(database.source) set on the cluster to the single node's value + \(margin) (cutover.sequence_margin; never lowered)") {
                let source = try await db.source(database.source)
                let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
                let copy = try await db.copySequences(from: source, to: cluster, margin: margin, direction: "to the cluster")
                guard copy.missing.isEmpty else {
                    throw MigrationError(.stageFailed, "sequence(s) " + copy.missing.prefix(5).joined(separator: ", ") + " of \(database.source) do not exist on the cluster (DDL since the schema was copied?): create them there, then `pgha resume`")
                }
                context.progress("\(database.source): \(copy.copied) sequence(s) set on the cluster (the single node's value + \(margin))")
                return nil
            }
        }
    }

    // MARK: - After the switch

    /// The forward subscriptions and their slots on the single node, dropped before the way back
    /// starts (the single node would publish the cluster's writes back to it).
    func dropForwardSubscriptions() async throws {
        let sync = logicalSync()
        for database in db.databases {
            let name = LogicalSync.subscriptionName(playbook, database: database.source)
            try await step("forward-drop:\(database.source)", "drop the forward subscription \(name) on the cluster and its slot on the single node") {
                try await sync.dropSubscription(name, database: database.cluster)
                return nil
            }
        }
        context.progress("the forward subscriptions are dropped: the cluster no longer follows the single node")
        // The sync's synchronous mode was for the forward copy: put back as it was (its sync
        // step is then undone, so that a rollback does not do it twice).
        if let switched = journal.step(.sync, named: LogicalSync.synchronousModeStep), switched.phase == .done,
           case .patroniSetting(let setting) = switched.undo {
            try await step("synchronous-mode-restore", "Patroni's \(setting.key) put back to \(setting.previous ?? "unset") (the sync had switched it on)") {
                try await sync.restore(setting)
                return nil
            }
            try journal.markStepUndone(switched.id)
        }
    }

    /// Before an attempt starts over (or after it failed before the switch): the way back's slot
    /// and publication on the cluster, made during the pause, are dropped — the forward
    /// subscription goes on applying the single node's writes, which that slot would keep and
    /// later send back as duplicates.
    func discardWayBackSlots() async throws {
        let names = Set(db.databases.flatMap { ["slot:\($0.source)", "slot-create:\($0.source)", "publication:\($0.source)"] })
        let made = journal.steps(of: stage).filter { names.contains($0.name) && ($0.phase == .done || $0.phase == .intent) }
        guard !made.isEmpty else { return }
        try await CutoverRollback.dropClusterSide(self)
        for step in made { try journal.markStepUndone(step.id) }
        context.progress("the way back's slot(s) made during the pause were dropped (the next attempt makes them after its own catch-up)")
    }
}
