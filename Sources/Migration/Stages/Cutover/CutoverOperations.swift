import Foundation
import HAPool
import PGClient
import Patroni
import PlainText

/// The cutover's steps, each journaled before its side effect (names are stable: a resumed run
/// finds them). `CutoverStage` orders them; `CutoverRollback` reverses them after the switch.
struct CutoverOperations: Sendable {
    let context: StageContext
    let journal: StateJournal
    let db: CutoverDatabases
    let pollInterval: Duration
    let stage = MigrationStage.cutover

    var playbook: Playbook { context.playbook }
    var cutover: Playbook.Cutover { context.playbook.cutover }

    // MARK: - Journal helpers

    func happened(_ name: String) -> Bool {
        journal.step(stage, named: name).map { $0.phase == .done || $0.phase == .intent } == true
    }

    func isDone(_ name: String) -> Bool {
        journal.step(stage, named: name)?.phase == .done
    }

    /// Runs `body` as step `name` unless it is done; an intent left by an interruption is run again
    /// (every body is idempotent). `body` may return a better undo than the one captured before.
    func step(_ name: String, _ detail: String, undo: StepUndo = .nothing, _ body: () async throws -> StepUndo?) async throws {
        try await journal.runStep(stage, name, detail: detail, undo: undo, body)
    }

    func record(_ body: (inout MigrationState.CutoverRecord) -> Void) throws(MigrationError) {
        try journal.update { state in
            var r = state.cutover ?? .init(method: cutover.method.rawValue)
            body(&r)
            state.cutover = r
        }
    }

    var now: Date { context.clock.now() }

    /// Polls `condition` every `pollInterval` until it holds or `seconds` pass (injected clock).
    func wait(_ what: String, seconds: Double, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = now.addingTimeInterval(seconds)
        while true {
            if try await condition() { return true }
            if now >= deadline { return false }
            try await context.sleep(for: pollInterval)
        }
    }

    func patchConfig(_ patch: JSONValue, what: String) async throws {
        try await db.patchConfig(patch, what: what, context: context)
    }

    // MARK: - 1. Guardrails

    func guardrails() async throws {
        let source = try await db.source(playbook.source.databases.project)
        var problems: [String] = []
        let sourceLSN = try await db.currentLSN(source)
        var lags: [String] = []
        if isLogical {
            (problems, lags) = try await logicalMemberProblems()
        } else {
          for m in db.members {
            guard let replay = await db.replayLSN(host: m.host, port: m.port) else {
                problems.append("member \(m.name) (\(m.host):\(m.port)) does not answer as a replica in recovery")
                continue
            }
            let lag = replay >= sourceLSN ? 0 : Int64(sourceLSN.value - replay.value)
            lags.append("\(m.name) \(formatBytes(lag))")
            if lag > playbook.thresholds.maxLagBytes {
                problems.append("member \(m.name) is \(formatBytes(lag)) behind (thresholds.max_lag_bytes: \(formatBytes(playbook.thresholds.maxLagBytes)))")
            }
          }
        }
        let blockers = try await db.blockers(source, olderThan: cutover.pauseTimeoutSeconds)
        if !blockers.isEmpty {
            problems.append("on the single node, " + blockers.prefix(5).joined(separator: "; ") + " — a long transaction holds PgBouncer's PAUSE and DDL breaks the way back")
        }
        if let m = db.members.first, let c = try? await db.member(host: m.host, port: m.port, database: "postgres") {
            let level = try await db.run(c, "SELECT current_setting('wal_level')", what: "reading wal_level").string(0, 0)
            if level != "logical" {
                problems.append("wal_level is \(level ?? "?") on \(m.name): the way back needs logical (the config stage's patroni.yml sets it; restart the members)")
            }
        }
        if cutover.method == .pgbouncer {
            guard let settings = cutover.pgbouncer else {
                throw MigrationError(.stageFailed, "cutover.method is pgbouncer but cutover.pgbouncer is missing: give its admin console and ini_file")
            }
            let admin = PgBouncerAdmin(settings: settings, connections: db.connections)
            let console = try await admin.connect()
            defer { console.close() }
            let shown = try await admin.databases(console: console)
            let names = CutoverStage.pgbouncerDatabases(playbook)
            let missing = names.filter { shown[$0] == nil }
            if !missing.isEmpty {
                problems.append("PgBouncer has no database " + missing.joined(separator: ", ") + " (SHOW DATABASES)")
            }
            do {
                let ini = try String(contentsOfFile: settings.iniFile, encoding: .utf8)
                _ = try PgBouncerAdmin.repointed(ini, databases: names, to: settings.target, renamed: renamedDatabases)
            } catch let error as MigrationError {
                problems.append(error.message)
            } catch {
                problems.append("cannot read cutover.pgbouncer.ini_file \(settings.iniFile): \(error.localizedDescription)")
            }
        }
        if let reference = cutover.wayBackPassword {
            do { _ = try reference.resolve(in: context.environment, key: "cutover.way_back.password") } catch { problems.append(error.message) }
        }
        guard problems.isEmpty else {
            throw MigrationError(.stageFailed, "the cutover's guardrails did not pass; nothing was frozen or changed: " + problems.joined(separator: "; ") + ". Next: fix it, then `pgha resume`")
        }
        context.progress("guardrails passed: every member streaming (" + lags.joined(separator: ", ") + "), no long transaction or DDL on the single node, wal_level logical on the cluster")
        context.progress(String(format: "expected write pause: PgBouncer PAUSE and the freeze (~0.1 s), the catch-up (lag above), Patroni's promotion (~0.3 s), the way back's slot and the switch (~0.1 s); bounded by cutover.timeout (%.0f s)", cutover.timeoutSeconds))
    }

    // MARK: - 2. Prepare

    func prepare() async throws {
        for database in db.databases {
            let source = try await db.source(database.source)
            try await db.writable(source)
            for table in try await db.tablesWithoutIdentity(source) {
                try await step("replica-identity:\(database.source):\(table.table)", "REPLICA IDENTITY FULL for \(table.table) in \(database.source) (no primary key: the way back could not apply its updates and deletes)",
                               undo: .replicaIdentity(.init(database: database.source, table: table.table, previous: table.identity))) {
                    try await db.run(source, "ALTER TABLE \(table.table) REPLICA IDENTITY FULL", what: "ALTER TABLE \(table.table) REPLICA IDENTITY FULL")
                    context.progress("\(database.source): \(table.table) has REPLICA IDENTITY FULL now")
                    return nil
                }
            }
            var tables = [(CutoverStage.canaryTable, "CREATE TABLE IF NOT EXISTS \(CutoverStage.canaryTable) (token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now())")]
            if database.source == playbook.source.databases.project {
                // The verification suite writes here on the cluster: the table must exist on the
                // single node too, or the way back stops at its first row.
                tables.append((CutoverStage.verifyTable, "CREATE TABLE IF NOT EXISTS \(CutoverStage.verifyTable) (id bigserial PRIMARY KEY, token text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())"))
            }
            for (table, sql) in tables {
                if isLogical { try await createClusterTable(database, table: table, sql: sql) }
                let exists = try await db.run(source, "SELECT to_regclass($1) IS NOT NULL", [.text(table)], what: "looking for \(table)")
                if (try? exists.bool(0, 0)) == true, !happened("table:\(database.source):\(table)") { continue }
                try await step("table:\(database.source):\(table)", "create \(table) in \(database.source) on the single node",
                               undo: .createdObject(.init(server: "source", database: database.source, kind: "table", name: table))) {
                    try await db.run(source, sql, what: "creating \(table)")
                    let owner = playbook.source.user
                    try await db.run(source, "ALTER TABLE \(table) OWNER TO \(SQLQuoting.identifier(owner))", what: "giving \(table) to \(owner)")
                    return nil
                }
            }
            if isLogical { try await refreshForwardSubscription(database, tables: tables.map(\.0)) }
        }
        // Logical method: the way back's slots are declared inside the pause, after the catch-up
        // (a running cluster's Patroni creates them at once; made earlier, they would hold the
        // forward copy's changes). Nothing is inherited from the single node either.
        if isLogical { return }
        // Before the pause, so that it does not wait for them: the permanent slots are declared
        // (a standby cluster ignores logical ones; promotion makes them count), and a freeze that
        // members inherited from an earlier attempt is reset.
        try await declarePermanentSlots()
        try await resetInheritedFreeze("reset-inherited-freeze")
    }

    /// Patroni permanent logical slots for the way back, declared in one `PATCH /config` (each
    /// database's step records its slot's undo). On a standby cluster Patroni keeps only permanent
    /// physical slots: these take effect at promotion, and survive a switchover from then on.
    func declarePermanentSlots() async throws {
        var slots: [String: JSONValue] = [:]
        for database in db.databases {
            slots[CutoverStage.wayBackSlot(playbook, database: database.source)] = .object(["type": .string("logical"), "database": .string(database.cluster), "plugin": .string("pgoutput")])
        }
        var patched = false
        for database in db.databases {
            let slot = CutoverStage.wayBackSlot(playbook, database: database.source)
            try await step("slot:\(database.source)", "declare the Patroni permanent logical slot \(slot) in \(database.cluster)", undo: .patroniSlot(.init(name: slot, database: database.cluster))) {
                if !patched {
                    try await patchConfig(.object(["slots": .object(slots)]), what: "the permanent slots")
                    patched = true
                }
                return nil
            }
        }
    }

    /// `ALTER SYSTEM RESET default_transaction_read_only` on every member whose
    /// postgresql.auto.conf carries it (a member cloned while an earlier attempt had the single
    /// node frozen inherited it). ALTER SYSTEM works on a standby too.
    func resetInheritedFreeze(_ name: String) async throws {
        try await step(name, "ALTER SYSTEM RESET default_transaction_read_only on members that inherited it") {
            for m in db.members {
                guard let c = try? await db.member(host: m.host, port: m.port, database: "postgres") else { continue }
                if try await db.autoConfSetting(c, "default_transaction_read_only") != nil {
                    try await db.alterSystem(c, "default_transaction_read_only", to: nil)
                    context.progress("\(m.name): the inherited read-only default was reset")
                }
            }
            return nil
        }
    }

    /// The standby leader now (the member the promotion will make the leader), from `GET /cluster`;
    /// the sessions the pause will need on it are opened now (a hot standby accepts them, and
    /// they stay open through the promotion).
    func standbyLeader() async -> String? {
        guard let client = try? db.connections.patroniClient(), let answer = try? await client.cluster(),
              let name = answer.value.members.first(where: { $0.role.isLeader })?.name
        else { return nil }
        if let m = db.members.first(where: { $0.name == name }) {
            for database in ["postgres"] + db.databases.map(\.cluster) {
                _ = try? await db.member(host: m.host, port: m.port, database: database)
            }
        }
        return name
    }

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
        try context.activity.waiting("every member to replay the final LSN \(finalLSN)", deadline: now.addingTimeInterval(cutover.timeoutSeconds))
        var behind: [String] = []
        let caughtUp = try await wait("catch-up", seconds: cutover.timeoutSeconds) {
            behind = []
            for m in db.members {
                let replay = await db.replayLSN(host: m.host, port: m.port)
                if replay.map({ $0 < finalLSN }) ?? true { behind.append("\(m.name) at \(replay?.description ?? "?")") }
            }
            return behind.isEmpty
        }
        try context.activity.doneWaiting()
        guard caughtUp else {
            throw MigrationError(.stageFailed, "catch-up timed out: after cutover.timeout (\(Int(cutover.timeoutSeconds)) s) " + behind.joined(separator: ", ") + " had not replayed the final LSN \(finalLSN). The single node was unfrozen and the application resumed there; nothing moved. Next: look at the members' replay (`pgha status`, pg_stat_replication), or raise cutover.timeout, then `pgha resume`")
        }
        try record { $0.caughtUpAt = now }
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

    // MARK: - 6. Switch the application (the point of no return)

    var iniBackupPath: String { context.store.directory + "/pgbouncer.ini.before-cutover" }
    var envBackupPath: String { context.store.directory + "/application.env.before-cutover" }

    /// PgBouncer reaches the leader through its target (HAProxy's primary port): waits until a
    /// session through it lands on a writable primary (bounded, 30 s). Nothing to wait for with the
    /// hook method. Run alongside `prepareWayBack`: it changes nothing.
    func awaitSwitchTarget() async throws {
        guard cutover.method == .pgbouncer, let target = cutover.pgbouncer?.target else { return }
        guard try await wait("the leader through \(target)", seconds: 30, { await db.isWritablePrimary(host: target.host, port: target.port) }) else {
            throw MigrationError(.stageFailed, "\(target) (cutover.pgbouncer.target) does not lead to a writable primary within 30 s: is HAProxy running with the generated haproxy.cfg?")
        }
    }

    /// PgBouncer's databases whose name on the cluster differs (the logical method may copy into
    /// new names: target.databases).
    var renamedDatabases: [String: String] {
        var renamed: [String: String] = [:]
        for database in db.databases where database.source != database.cluster { renamed[database.source] = database.cluster }
        return renamed
    }

    func switchApplication() async throws {
        switch cutover.method {
        case .pgbouncer:
            guard let settings = cutover.pgbouncer else { throw MigrationError(.stageFailed, "cutover.pgbouncer is missing") }
            let target = settings.target
            let names = CutoverStage.pgbouncerDatabases(playbook)
            try await step("switch-application", "repoint PgBouncer at \(target), RELOAD, RESUME (the point of no return)",
                           undo: .createdObject(.init(server: "local", database: settings.iniFile, kind: "file-backup", name: iniBackupPath))) {
                guard let original = try FileIO.read(settings.iniFile) else {
                    throw MigrationError(.stageFailed, "cutover.pgbouncer.ini_file \(settings.iniFile) does not exist")
                }
                if !FileIO.exists(iniBackupPath) {
                    try FileIO.writeAtomically(original.contents, to: iniBackupPath, mode: 0o600)
                }
                let before = String(decoding: try FileIO.read(iniBackupPath)?.contents ?? original.contents, as: UTF8.self)
                let repointed = try PgBouncerAdmin.repointed(before, databases: names, to: target, renamed: renamedDatabases)
                try FileIO.writeAtomically(Data(repointed.utf8), to: settings.iniFile, mode: original.mode)
                let admin = PgBouncerAdmin(settings: settings, connections: db.connections)
                let console = try await admin.connect()
                defer { console.close() }
                try await admin.reload(console: console)
                let shown = try await admin.databases(console: console)
                let wrong = names.filter { shown[$0] != target.description }
                guard wrong.isEmpty else {
                    throw MigrationError(.stageFailed, "PgBouncer still sends " + wrong.joined(separator: ", ") + " elsewhere after RELOAD (SHOW DATABASES)")
                }
                try await admin.resume(names, console: console)
                try record { r in
                    r.resumedAt = now
                    if let paused = r.pausedAt { r.pauseSeconds = now.timeIntervalSince(paused) }
                }
                context.progress(String(format: "the application is on the cluster: PgBouncer resumed (write pause %.2f s)", journal.snapshot.cutover?.pauseSeconds ?? 0))
                return nil
            }
        case .hook:
            guard let command = cutover.switchApplication else { throw MigrationError(.stageFailed, "cutover.method is hook but cutover.switch_application is missing") }
            let envPath = cutover.applicationEnv
            try await step("switch-application", "run cutover.switch_application (the point of no return)",
                           undo: envPath.map { .createdObject(.init(server: "local", database: $0, kind: "file-backup", name: envBackupPath)) } ?? .hook(.init(key: "cutover.switch_application", undoKey: "cutover.switch_back"))) {
                if let envPath {
                    if !FileIO.exists(envBackupPath), let current = try FileIO.read(envPath) {
                        try FileIO.writeAtomically(current.contents, to: envBackupPath, mode: 0o600)
                    }
                    let generated = ConfigRenderer.absolutePath(playbook.outputs.envFile, in: context.workingDirectory)
                    guard let env = try FileIO.read(generated) else {
                        throw MigrationError(.stageFailed, "\(generated) (outputs.env_file) does not exist: the config stage writes it")
                    }
                    try FileIO.writeAtomically(env.contents, to: envPath, mode: 0o600)
                    context.progress("\(envPath) now holds the Patroni-mode settings (ENABLE_PATRONI=true); the old one is kept in the state directory")
                }
                try await runHook("cutover.switch_application", command)
                try record { r in
                    r.resumedAt = now
                    if let paused = r.pausedAt { r.pauseSeconds = now.timeIntervalSince(paused) }
                }
                return nil
            }
            try await awaitApplicationWrites()
        }
    }

    func runHook(_ key: String, _ command: String) async throws {
        try await HookRunner.runForStage(context, key: key, command: command, timeoutSeconds: cutover.hookTimeoutSeconds)
    }

    /// Hook method: the application's first writes on the cluster.
    func awaitApplicationWrites() async throws {
        let leader = try await leader()
        let c = try await db.member(host: leader.host, port: leader.port, database: playbook.target.databases.project)
        let sql = "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8 FROM pg_stat_user_tables WHERE relname NOT IN ('pgha_canary', 'pgha_verify', 'pgha_shadow_canary')"
        let start = try await db.run(c, sql, what: "reading the cluster's write counters").string(0, 0).flatMap(Int64.init) ?? 0
        try context.activity.waiting("the application's first writes on the cluster", deadline: now.addingTimeInterval(cutover.applicationWaitSeconds))
        let seen = try await wait("application writes", seconds: cutover.applicationWaitSeconds) {
            _ = try? await c.query("SELECT pg_stat_clear_snapshot()", timeout: .seconds(5))
            return (try await db.run(c, sql, what: "reading the cluster's write counters").string(0, 0).flatMap(Int64.init) ?? 0) > start
        }
        try context.activity.doneWaiting()
        guard seen else {
            throw MigrationError(.stageFailed, "no write of the application reached the cluster within cutover.application_wait (\(Int(cutover.applicationWaitSeconds)) s) after cutover.switch_application. Next: check the application; `pgha resume` waits again, `pgha rollback` moves it back")
        }
        context.progress("the application writes on the cluster")
    }

    // MARK: - 7. The single node subscribes

    func subscriptionConninfo(database: String) throws(MigrationError) -> String {
        let hosts = db.members.map(\.host).joined(separator: ",")
        let ports = db.members.map { String($0.port) }.joined(separator: ",")
        var password: String?
        if let reference = cutover.wayBackPassword { password = try reference.resolve(in: context.environment, key: "cutover.way_back.password") }
        // The single node's server makes this connection: sslrootcert is a path on its machine.
        return CutoverDatabases.conninfo(host: hosts, port: ports, database: database, user: cutover.wayBackUser,
                                         tls: PostgresTLS(sslMode: playbook.target.sslmode, sslRootCert: playbook.target.sslrootcert),
                                         extra: ["target_session_attrs=read-write", "connect_timeout=5", "application_name=pgha_way_back"], password: password)
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
                    let conninfo = try subscriptionConninfo(database: database.cluster)
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

    // MARK: - Unfreeze (before the point of no return, and rollback)

    /// Undoes the freeze steps that happened, last first: LOGIN back, the setting as before, then
    /// PgBouncer RESUME (so the waiting queries reach an unfrozen single node).
    /// `countsAsAttempt`: false for a rollback (the attempt did not fail, it is undone).
    func unfreeze(reason: String, countsAsAttempt: Bool = true) async throws {
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
        if isLogical { try await discardWayBackSlots() }
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
