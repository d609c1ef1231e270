import Foundation
import HAPool
import PGClient
import Patroni
import PlainText

/// The cutover's middle: freeze the single node, catch the cluster up to its final position, promote (physical method).
extension CutoverOperations {
    // MARK: - 3. Freeze and catch up

    func freezeAndCatchUp() async throws {
        let source = try await db.source(playbook.source.databases.project)
        let witness = await db.readOnlyWitness()
        defer { witness?.close() }
        if cutover.method == .pgbouncer, let settings = cutover.pgbouncer {
            let names = CutoverStage.pgbouncerDatabases(playbook)
            try await step("pgbouncer-pause", "PgBouncer PAUSE " + names.joined(separator: ", "), undo: .pgbouncerPause(.init(databases: names))) {
                let admin = PgBouncerAdmin(settings: settings, connections: db.connections)
                let console = try await admin.connect()
                defer { console.close() }
                let started = ContinuousClock.now
                try await admin.pause(names, timeout: .seconds(cutover.pauseTimeoutSeconds), console: console)
                try record { $0.pausedAt = now }
                context.progress(String(format: "PgBouncer paused %@ in %.2f s (the application's queries wait, they do not fail)", names.joined(separator: ", "), (ContinuousClock.now - started).asSeconds))
                return nil
            }
        }
        let previous: String?
        if let pending = journal.step(stage, named: "freeze-setting"), pending.phase == .intent, case .serverSettings(let saved) = pending.undo {
            previous = saved.settings.first?.previousAutoConf
        } else {
            previous = try await db.autoConfSetting(source, "default_transaction_read_only")
        }
        try await step("freeze-setting", "ALTER SYSTEM SET default_transaction_read_only = on on the single node",
                       undo: .serverSettings(.init(server: "source", settings: [.init(name: "default_transaction_read_only", previousAutoConf: previous)]))) {
            try await db.alterSystem(source, "default_transaction_read_only", to: "on")
            if cutover.method == .hook { try record { $0.pausedAt = now } }
            return nil
        }
        let roles: [String]
        if let pending = journal.step(stage, named: "freeze-logins"), case .roleLogins(let saved) = pending.undo, pending.phase != .undone {
            roles = saved.roles
        } else {
            roles = try await db.freezableRoles(source)
        }
        try await step("freeze-logins", "NOLOGIN for " + roles.joined(separator: ", ") + " on the single node, their sessions terminated",
                       undo: .roleLogins(.init(server: "source", roles: roles))) {
            try await db.setLogin(source, roles: roles, login: false)
            let terminated = try await db.terminateSessions(source, roles: roles)
            context.progress("the single node is frozen: read-only by default, \(roles.count) role(s) without LOGIN, \(terminated) session(s) terminated")
            return nil
        }
        // The read-only default is in force before the final LSN is read.
        guard try await wait("the read-only default", seconds: 5, { try await db.sourceReadOnlyDefault(witness: witness) }) else {
            throw MigrationError(.stageFailed, "default_transaction_read_only did not become on within 5 s of pg_reload_conf() on the single node")
        }
        // Proof that the application cannot write: its login is tried while the members catch
        // up, and must have failed before the promotion.
        async let proof = probeApplicationLogin()
        if isLogical {
            try await logicalCatchUp(source)
        } else {
            try await catchUp(source)
        }
        context.progress(try await proof.get())
    }

    /// Logs in as the application and tries a write on the single node: the freeze holds when
    /// either fails. The proof's progress line, or the failure.
    func probeApplicationLogin() async -> Result<String, MigrationError> {
        let connections = db.connections
        let login = connections.sourceApplicationLogins[0]
        let (connection, observation) = await connections.connect(login, applicationName: "pgha-cutover-probe")
        if let connection {
            defer { connection.close() }
            if case .success = await connections.query(connection, "CREATE TEMP TABLE pgha_probe (x int)") {
                return .failure(MigrationError(.stageFailed, "the freeze did not hold: \(login.user) could still log in and write on the single node"))
            }
        }
        return .success("proof: \(login.user) cannot write on the single node (" + (observation.error.map { String($0.prefix(80)) } ?? "read-only") + ")")
    }

    /// The final LSN, then every member's replay up to it (bounded by cutover.timeout).
    func catchUp(_ source: PGConnection) async throws {
        var finalLSN = LSN.invalid
        try await step("final-lsn", "the final LSN of the single node") {
            finalLSN = try await db.currentLSN(source)
            try record { $0.finalLSN = finalLSN.description }
            return nil
        }
        if finalLSN == .invalid, let saved = journal.snapshot.cutover?.finalLSN.flatMap(LSN.init) { finalLSN = saved }
        try await catchUp(
            awaited: "every member to replay the final LSN \(finalLSN)",
            notCaughtUp: "had not replayed the final LSN \(finalLSN). The single node was unfrozen and the application resumed there; nothing moved. Next: look at the members' replay (`pgha status`, pg_stat_replication), or raise cutover.timeout, then `pgha resume`"
        ) {
            await db.membersBehind(finalLSN)
        }
        context.progress("every member replayed the final LSN \(finalLSN)")
    }

    // MARK: - 4. Promote

    /// `standbyLeader`: the member expected to lead (looked up before the pause), polled first.
    func promote(standbyLeader: String?) async throws -> (name: String, host: String, port: Int) {
        // Sent again only when an interrupted run may not have sent it (an intent on disk) and no
        // member leads yet; a merge patch is idempotent anyway.
        let resumed = journal.step(stage, named: "promote")?.phase == .intent
        try await step("promote", "promote the cluster \(playbook.target.scope): PATCH /config standby_cluster: null", undo: .promotion(.init(member: standbyLeader ?? "?"))) {
            let leading = resumed ? await db.writableLeader() != nil : false
            if !leading {
                try await patchConfig(.object(["standby_cluster": .null]), what: "the promotion")
            }
            return nil
        }
        let expected = db.members.first { $0.name == standbyLeader }
        var leader: (name: String, host: String, port: Int)?
        guard try await wait("a writable leader", seconds: 30, {
            if let expected, await db.isWritablePrimary(host: expected.host, port: expected.port) {
                leader = expected
            } else {
                leader = await db.writableLeader()
            }
            return leader != nil
        }), let leader else {
            throw MigrationError(.stageFailed, "no member became a writable leader within 30 s of the promotion")
        }
        try record {
            if $0.promotedAt == nil { $0.promotedAt = now }
            $0.promotedMember = leader.name
        }
        context.progress("promoted: \(leader.name) is the leader, out of recovery")
        return leader
    }

    /// The roles the freeze took LOGIN from.
    var frozenRoles: [String] {
        guard let step = journal.step(stage, named: "freeze-logins"), case .roleLogins(let saved) = step.undo else { return [] }
        return saved.roles
    }

    func leader() async throws(MigrationError) -> (name: String, host: String, port: Int) {
        guard let leader = await db.writableLeader() else {
            throw MigrationError(.stageFailed, "no member of the cluster answers as a writable primary")
        }
        return leader
    }
}
