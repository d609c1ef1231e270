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

    /// The catch-up after the freeze, in both methods: shown as a wait on `awaited`, bounded by
    /// cutover.timeout; `behind` names what has not caught up yet (empty: done). On timeout the
    /// stage fails with "catch-up timed out: after cutover.timeout … <behind> <notCaughtUp>".
    func catchUp(awaited: String, notCaughtUp: String, _ behind: () async throws -> [String]) async throws {
        try context.activity.waiting(awaited, deadline: now.addingTimeInterval(cutover.timeoutSeconds))
        var last: [String] = []
        let caughtUp = try await wait("catch-up", seconds: cutover.timeoutSeconds) {
            last = try await behind()
            return last.isEmpty
        }
        try context.activity.doneWaiting()
        guard caughtUp else {
            throw MigrationError(.stageFailed, "catch-up timed out: after cutover.timeout (\(Int(cutover.timeoutSeconds)) s) " + last.joined(separator: ", ") + " " + notCaughtUp)
        }
        try record { $0.caughtUpAt = now }
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
    ///
    /// A member may be restarting (Patroni restarts the replicas after a promotion to copy the
    /// permanent slots: a session opened before is terminated with 57P01): each member is tried
    /// again with a new session for up to `seconds`; one that never answers is named, not waited
    /// for (a member that is down did not inherit anything since).
    func resetInheritedFreeze(_ name: String, seconds: Double = 30) async throws {
        try await step(name, "ALTER SYSTEM RESET default_transaction_read_only on members that inherited it") {
            for m in db.members {
                var failure = ""
                let answered = try await wait("\(m.name) to answer", seconds: seconds) {
                    do {
                        let c = try await db.member(host: m.host, port: m.port, database: "postgres")
                        if try await db.autoConfSetting(c, "default_transaction_read_only") != nil {
                            try await db.alterSystem(c, "default_transaction_read_only", to: nil)
                            context.progress("\(m.name): the inherited read-only default was reset")
                        }
                        return true
                    } catch let error as MigrationError where error.code != .interrupted {
                        failure = error.message
                        return false
                    }
                }
                if !answered {
                    context.progress("\(m.name) did not answer within \(Int(seconds)) s (\(failure)): if it was cloned while the single node was frozen, run `ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();` there once it is up")
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
}
