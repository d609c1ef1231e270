import Foundation
import HAPool
import PGClient
import Patroni
import PlainText

/// The way back: its publication and slots on the cluster inside the pause, then the single node's subscription and its proof (a canary row).
extension CutoverOperations {
    // MARK: - 5. The way back, on the cluster

    /// Inside the pause, after the promotion: LOGIN back for the application's roles (the freeze
    /// reached the cluster by replication) and, per database, the publication then the slot —
    /// all at once, each on its own connection. The slot is created here rather than left to
    /// Patroni (~0.3 s later): it must exist before the application's first write on the
    /// cluster, or that write would never flow back.
    func prepareWayBack(leader: (name: String, host: String, port: Int)) async throws {
        let roles = frozenRoles
        if isLogical { try await declarePermanentSlots() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The logical method's cluster never had the freeze: its roles kept LOGIN.
            if !isLogical { group.addTask {
                try await step("cluster-logins", "LOGIN back for " + roles.joined(separator: ", ") + " on the cluster (the freeze reached it by replication)") {
                    let c = try await db.member(host: leader.host, port: leader.port, database: "postgres")
                    try await db.setLogin(c, roles: roles, login: true)
                    return nil
                }
            } }
            for database in db.databases {
                group.addTask { try await wayBackOnCluster(database, leader: leader) }
            }
            try await group.waitForAll()
        }
    }

    func wayBackOnCluster(_ database: (source: String, cluster: String), leader: (name: String, host: String, port: Int)) async throws {
        let publication = cutover.wayBackName
        let c = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
        try await step("publication:\(database.source)", "CREATE PUBLICATION \(publication) FOR ALL TABLES in \(database.cluster) on the cluster",
                       undo: .createdObject(.init(server: "cluster", database: database.cluster, kind: "publication", name: publication))) {
            let exists = try await db.run(c, "SELECT 1 FROM pg_publication WHERE pubname = $1", [.text(publication)], what: "looking for the publication")
            if exists.rowCount == 0 {
                try await db.run(c, "CREATE PUBLICATION \(SQLQuoting.identifier(publication)) FOR ALL TABLES", what: "CREATE PUBLICATION \(publication)")
            }
            return nil
        }
        let slot = CutoverStage.wayBackSlot(playbook, database: database.source)
        try await step("slot-create:\(database.source)", "create the logical slot \(slot) on the leader (declared permanent before the pause)") {
            let r = try await db.run(c, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [.text(slot)], what: "looking for slot \(slot)")
            if r.rowCount == 0 {
                do {
                    _ = try await c.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [.text(slot)], timeout: CutoverDatabases.statementTimeout)
                } catch {
                    // Patroni may have created it first (it is a permanent slot).
                    if (error as? PGError)?.sqlState != "42710" { throw MigrationError(.stageFailed, "creating slot \(slot) failed: \(db.connections.describe("\(error)"))") }
                }
            }
            context.progress("\(database.cluster): slot \(slot) exists on the leader: from now on every write on the cluster can flow back")
            return nil
        }
    }

    // MARK: - 7. The single node subscribes

    /// The way back's connection string: every member, the one out of recovery chosen.
    /// `target_session_attrs=primary` (PostgreSQL 14 and later: the single node's server makes the
    /// connection) rather than `read-write`: a rollback freezes the cluster
    /// (`default_transaction_read_only`), and a `read-write` walreceiver connecting after that —
    /// a second database's apply worker started a few seconds later, a reconnect — finds every
    /// member "read-only" and never streams. A PostgreSQL 13 single node knows only `read-write`.
    func subscriptionConninfo(database: String, singleNodeVersion: Int) throws(MigrationError) -> String {
        let hosts = db.members.map(\.host).joined(separator: ",")
        let ports = db.members.map { String($0.port) }.joined(separator: ",")
        var password: String?
        if let reference = cutover.wayBackPassword { password = try reference.resolve(in: context.environment, key: "cutover.way_back.password") }
        // The single node's server makes this connection: sslrootcert is a path on its machine.
        return CutoverDatabases.conninfo(host: hosts, port: ports, database: database, user: cutover.wayBackUser,
                                         tls: PostgresTLS(sslMode: playbook.target.sslmode, sslRootCert: playbook.target.sslrootcert),
                                         extra: ["target_session_attrs=" + (singleNodeVersion >= 140000 ? "primary" : "read-write"), "connect_timeout=5", "application_name=pgha_way_back"],
                                         password: password)
    }

    /// After the switch: the single node subscribes to the cluster. In the logical method the
    /// forward subscriptions are dropped before (else the single node would publish the cluster's
    /// writes back to it). Each step is journaled and skipped once done, so the cutover (resumed)
    /// and a rollback after the switch both call it.
    func subscribeWayBack() async throws {
        if isLogical { try await dropForwardSubscriptions() }
        try await subscribeSingleNode()
    }

    func subscribeSingleNode() async throws {
        for database in db.databases {
            let name = CutoverStage.wayBackSlot(playbook, database: database.source)
            try await step("subscription:\(database.source)", "CREATE SUBSCRIPTION \(name) on the single node (copy_data = false): the way back",
                           undo: .createdObject(.init(server: "source", database: database.source, kind: "subscription", name: name))) {
                let source = try await db.source(database.source)
                try await db.writable(source)
                let exists = try await db.run(source, "SELECT 1 FROM pg_subscription WHERE subname = $1", [.text(name)], what: "looking for the subscription")
                if exists.rowCount == 0 {
                    let conninfo = try subscriptionConninfo(database: database.cluster, singleNodeVersion: source.serverVersion)
                    try await db.run(source, "CREATE SUBSCRIPTION \(SQLQuoting.identifier(name)) CONNECTION \(SQLQuoting.literal(conninfo)) PUBLICATION \(SQLQuoting.identifier(cutover.wayBackName)) WITH (copy_data = false, create_slot = false, slot_name = \(SQLQuoting.literal(name)), enabled = true)",
                                     what: "CREATE SUBSCRIPTION \(name)")
                }
                context.progress("\(database.source): the single node subscribes to the cluster (\(name))")
                return nil
            }
        }
    }

    /// A canary row written on the cluster must arrive on the single node.
    func proveWayBack() async throws {
        let leader = try await leader()
        for database in db.databases {
            let token = "cutover-\(journal.snapshot.cutover?.abandonedAttempts ?? 0)-\(UUID().uuidString)"
            let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            try await step("canary:\(database.source)", "a canary row in \(CutoverStage.canaryTable) on the cluster, awaited on the single node") {
                try await db.run(cluster, "INSERT INTO \(CutoverStage.canaryTable) (token) VALUES ($1)", [.text(token)], what: "writing the canary on the cluster")
                try await awaitCanary(token, database: database.source, seconds: 60)
                return nil
            }
        }
        try record { $0.wayBackProvenAt = now }
        context.progress("the way back is proven: a row written on the cluster arrived on the single node")
    }

    /// Copying the permanent slots restarts the replicas (~2 s): the stage ends once every member
    /// streams from the new leader again (bounded), so the gate sees the cluster as it will be.
    func awaitReplicasStreaming(seconds: Double = 60) async throws {
        let client = try db.connections.patroniClient()
        var states: [String] = []
        try context.activity.waiting("every replica streaming from the new leader", deadline: now.addingTimeInterval(seconds))
        let streaming = try await wait("replicas", seconds: seconds) {
            guard let answer = try? await client.cluster() else { return false }
            let members = answer.value.members
            states = members.map { "\($0.name) \($0.role.rawValue) \($0.state?.rawValue ?? "?")" }
            let replicas = members.filter { $0.role.rawValue != "leader" }
            return members.count >= db.members.count && replicas.allSatisfy { $0.state?.rawValue == "streaming" }
        }
        try context.activity.doneWaiting()
        context.progress(streaming ? "every replica streams from the new leader: " + states.joined(separator: ", ")
                                   : "not every replica streams yet after \(Int(seconds)) s: " + states.joined(separator: ", "))
    }

    /// Until every way-back subscription's apply worker runs and has received from the cluster
    /// (`pg_stat_subscription`), bounded; a worker that does not start in time is named and the
    /// canary that follows decides. The rollback waits here before it pauses the application:
    /// PostgreSQL starts the second database's worker seconds after the first.
    func awaitWayBackStreaming(seconds: Double = 30) async throws {
        var missing: [String] = []
        try context.activity.waiting("the way back's apply workers on the single node", deadline: now.addingTimeInterval(seconds))
        let streaming = try await wait("apply workers", seconds: seconds) {
            missing = []
            for database in db.databases {
                let name = CutoverStage.wayBackSlot(playbook, database: database.source)
                let source = try await db.source(database.source)
                let r = try await db.run(source, "SELECT 1 FROM pg_stat_subscription WHERE subname = $1 AND relid IS NULL AND pid IS NOT NULL AND received_lsn IS NOT NULL",
                                         [.text(name)], what: "reading the way back's apply worker")
                if r.rowCount == 0 { missing.append(name) }
            }
            return missing.isEmpty
        }
        try context.activity.doneWaiting()
        if !streaming {
            context.progress("the way back's apply worker(s) \(missing.joined(separator: ", ")) did not start within \(Int(seconds)) s; the canary decides")
        }
    }

    func awaitCanary(_ token: String, database: String, seconds: Double) async throws {
        let source = try await db.source(database)
        try context.activity.waiting("the canary row on the single node (\(database))", deadline: now.addingTimeInterval(seconds))
        let arrived = try await wait("canary", seconds: seconds) {
            try await db.run(source, "SELECT 1 FROM \(CutoverStage.canaryTable) WHERE token = $1", [.text(token)], what: "looking for the canary").rowCount > 0
        }
        try context.activity.doneWaiting()
        guard arrived else {
            throw MigrationError(.stageFailed, "the canary row written on the cluster did not reach the single node within \(Int(seconds)) s: the way back does not stream. Next: read the single node's log (logical replication apply worker) and pg_stat_subscription; then `pgha resume`")
        }
    }
}
