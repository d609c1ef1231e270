import Foundation
import Migration
import PGClient
import PlainText
import Sandbox
import Testing

/// The logical method's sync on the sandbox: the single node copied into new databases on the
/// independent cluster node1-node3 (playbooks/sandbox-logical.yml, its own names), rows written
/// afterwards arriving, `pgha compare` identical, DDL on the single node during sync stopping the
/// stage with the column named, and the rollback leaving nothing behind on either side.
@Suite(.enabled(if: SandboxFixture.enabled), .serialized)
struct LogicalSyncIntegrationTests {
    let cli: CLIHarness
    let sandbox: SandboxConfiguration
    let cutover: CutoverIntegrationTests

    init() throws {
        cli = try CLIHarness.make()
        sandbox = try SandboxFixture.load().sandbox
        cutover = try CutoverIntegrationTests()
    }

    /// playbooks/sandbox-logical.yml with names of its own (slot, publication, target databases);
    /// `deferIndexes` turns sync.defer_indexes on (off by default); `initialCopy` sets
    /// sync.initial_copy (the default: snapshot, pgha's own COPY).
    func workspace(deferIndexes: Bool = false, initialCopy: String? = nil) throws -> Workspace {
        let work = try Workspace(cli)
        var text = try String(contentsOfFile: CLIHarness.repository + "/playbooks/sandbox-logical.yml", encoding: .utf8)
        for (old, new) in [
            ("slot: pgha_sync", "slot: pgha_lt\n  publication: pgha_lt"),
            ("project: ha_distributed_postgres_cluster", "project: lt_project"),
            ("shared: ha_shared_knowledge", "shared: lt_shared"),
            ("on_failure: rollback", "on_failure: stop"),
            ("  caught_up_lag: 1MB", "  caught_up_lag: 1MB" + (deferIndexes ? "\n  defer_indexes: true" : "")
                + (initialCopy.map { "\n  initial_copy: \($0)" } ?? "")),
        ] {
            guard text.contains(old) else { throw HarnessError("sandbox-logical.yml lacks \(old)") }
            text = text.replacingOccurrences(of: old, with: new)
        }
        text = text.replacingOccurrences(of: "ini_file: /tmp/pgha-sandbox/pgbouncer/pgbouncer.ini", with: "ini_file: \(sandbox.pgbouncer.configFile)")
        try text.write(toFile: work.path + "/logical.yml", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: sandbox.pgbouncer.configFile, toPath: work.path + "/pgbouncer.ini.original")
        return work
    }

    /// After a logical migration (complete or not): what the physical tests' restore puts back
    /// (rollback, unfrozen single node, PgBouncer's ini; it removes the workspace), then the copy's
    /// databases on the cluster, the sync's publication and slots; HAProxy is stopped first.
    func restore(_ work: Workspace) {
        _ = cli.run(["sandbox", "stop-haproxy"], in: work, timeout: 60)
        cutover.restore(work)
        if let postgres = try? leader(database: "postgres") {
            for name in ["lt_project", "lt_shared"] { _ = try? postgres.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
        }
        for database in [sandbox.single.projectDatabase, sandbox.single.sharedDatabase] {
            if let source = try? cutover.superuser(sandbox.single.host, sandbox.single.port, database: database) {
                _ = try? source.query("DROP PUBLICATION IF EXISTS pgha_lt")
                _ = try? source.query("DROP TABLE IF EXISTS public.pgha_canary, public.pgha_verify, public.lt_big")
            }
        }
        if let source = try? cutover.superuser(sandbox.single.host, sandbox.single.port) {
            _ = try? source.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgha_lt%' AND NOT active")
        }
    }

    func leader(database: String) throws -> PGConnection {
        for m in sandbox.cluster.members {
            if let c = try? PGConnection.connect(PGConnectionConfig(host: m.host, port: m.pgPort, database: database, user: sandbox.users.superuser,
                                                                   password: try sandbox.password(\.superuser), connectTimeout: .seconds(3))),
               (try? c.query("SELECT NOT pg_is_in_recovery()").bool(0, 0)) == true { return c }
        }
        throw HarnessError("no writable leader with database \(database)")
    }

    /// Opens a transaction on the leader that holds a SHARE lock on `table` in `database`, taken the
    /// moment the table exists there (polled every 10 ms): a table sync's COPY into it (ROW
    /// EXCLUSIVE) waits, CREATE SUBSCRIPTION (ACCESS SHARE) does not.
    func holdTable(_ table: String, database: String, timeout: Double) throws -> PGConnection {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let c = try? leader(database: database) {
                while Date() < deadline {
                    if try c.query("SELECT to_regclass($1) IS NOT NULL", [.text("public." + table)]).bool(0, 0) == true {
                        _ = try c.query("BEGIN")
                        _ = try c.query("LOCK TABLE public.\(table) IN SHARE MODE")
                        return c
                    }
                    Thread.sleep(forTimeInterval: 0.01)
                }
                c.close()
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        throw HarnessError("\(database).\(table) never appeared on the leader")
    }

    /// Runs the sync and SIGKILLs pgha once both subscriptions exist, with lt_shared's table sync
    /// held back meanwhile (`holdTable`), so that the stage was still waiting when it died.
    func killSyncOnceTheSubscriptionsExist(_ work: Workspace) throws {
        let run = try cli.start(["run", "logical.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work)
        let hold = try holdTable("knowledge_items", database: "lt_shared", timeout: 120)
        defer { hold.close() }
        #expect(run.waitForOutput("subscription pgha_lt_shared_knowledge on the cluster", timeout: 120), "\(run.stdout)")
        run.signal(SIGKILL)
        _ = run.wait(timeout: 30)
    }

    /// The leader's `wal_retrieve_retry_interval` as a new session sees it.
    func retryInterval() throws -> String? {
        try leader(database: "postgres").query("SHOW wal_retrieve_retry_interval").string(0, 0)
    }

    /// Nothing of the sync left: no database on the cluster, no publication or slot on the single
    /// node, the leader's settings as they were.
    func expectClean() throws {
        let postgres = try leader(database: "postgres")
        #expect(try postgres.query("SHOW wal_retrieve_retry_interval").string(0, 0) == "5s")
        #expect(try postgres.query("SELECT count(*) FROM pg_file_settings WHERE name = 'wal_retrieve_retry_interval'").int(0, 0) == 0)
        #expect(try postgres.query("SELECT count(*) FROM pg_database WHERE datname IN ('lt_project', 'lt_shared')").int(0, 0) == 0)
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source.query("SELECT count(*) FROM pg_publication WHERE pubname = 'pgha_lt'").int(0, 0) == 0)
        #expect(try source.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgha_lt%'").int(0, 0) == 0)
    }

    /// After a sync passed: a row written on the single node arrives on the cluster's leader,
    /// `pgha compare` finds every table identical, no secret in the state directory, and the
    /// rollback leaves nothing behind.
    func expectFollowsComparesAndRollsBack(_ work: Workspace, cluster: PGConnection) throws {
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        let title = "logical-\(UUID().uuidString)"
        _ = try source.query("INSERT INTO tasks (project_id, title) SELECT min(id), $1 FROM projects", [.text(title)])
        defer { _ = try? source.query("DELETE FROM tasks WHERE title = $1", [.text(title)]) }
        var arrived = false
        for _ in 0..<100 where !arrived {
            arrived = try cluster.query("SELECT count(*) FROM tasks WHERE title = $1", [.text(title)]).int(0, 0) == 1
            if !arrived { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(arrived, "a row written on the single node reached the cluster within 5 s")

        let compare = cli.run(["compare", "logical.yml"], in: work, timeout: 120)
        #expect(compare.exitCode == 0 && compare.stdout.contains("identical: every table agrees"), "\(compare)")
        cutover.expectNoSecrets(under: work.stateDir)

        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(rollback.exitCode == 0, "\(rollback)")
        try expectClean()
    }

    @Test("sync.initial_copy subscription: PostgreSQL's table sync copies both databases (indexes deferred), then follows the single node; compare finds them identical; rollback removes everything")
    func syncFollowCompareRollback() throws {
        let work = try workspace(deferIndexes: true, initialCopy: "subscription")
        defer {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
            work.remove()
        }
        let run = cli.run(["run", "logical.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 300)
        #expect(run.exitCode == 0 && run.stdout.contains("gate sync: PASS"), "\(run)")
        let state = try StateStore(directory: work.stateDir).load()
        #expect(state.stage(.sync).status == .passed)

        // Copied, then followed: a row written on the single node arrives on the cluster.
        let cluster = try leader(database: "lt_project")
        #expect(try cluster.query("SELECT count(*) FROM pgbench_accounts").int(0, 0) == 100_000)
        // The secondary indexes were dropped for the copy and built after it, as the single node
        // defines them (sync.defer_indexes: true).
        let deferred = state.steps.filter { $0.stage == .sync && ($0.name.hasPrefix("defer-indexes:") || $0.name.hasPrefix("indexes:")) }
        #expect(deferred.count == 4 && deferred.allSatisfy { $0.phase == .done }, "\(deferred.map(\.name))")
        #expect(try cluster.query("SELECT pg_get_indexdef('tasks_project_id_idx'::regclass)").string(0, 0)?.contains("(project_id)") == true)
        let shared = try leader(database: "lt_shared")
        #expect(try shared.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'knowledge_items_topic_idx'").int(0, 0) == 1)
        try expectFollowsComparesAndRollsBack(work, cluster: cluster)
    }

    @Test("DDL on the single node during sync stops the stage, naming the column; resume after the same DDL on the cluster continues")
    func ddlDuringSyncStops() throws {
        // The subscription's own copy, so that a table sync can be held back (below).
        let work = try workspace(initialCopy: "subscription")
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        defer {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
            _ = try? source.query("ALTER TABLE projects DROP COLUMN IF EXISTS pgha_lt_note")
            work.remove()
        }
        // Interrupted once the subscriptions exist (SIGKILL; lt_shared's table sync held back so
        // that the stage is still waiting then), the DDL made, then resumed.
        try killSyncOnceTheSubscriptionsExist(work)
        // The launcher's pace was quickened before the subscriptions, and stays so until every
        // apply worker runs.
        #expect(try retryInterval() == "100ms")
        _ = try source.query("ALTER TABLE projects ADD COLUMN pgha_lt_note text")
        let resumed = cli.run(["resume", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 120)
        #expect(resumed.exitCode == 3, "\(resumed)")
        #expect(resumed.stdout.contains("the single node's schema changed during sync"), "\(resumed)")
        #expect(resumed.stdout.contains("public.projects.pgha_lt_note text only on the single node"), "\(resumed)")
        #expect(try retryInterval() == "100ms", "the stage stopped before every apply worker was seen")
        // The same DDL on the cluster: the copy goes on.
        _ = try leader(database: "lt_project").query("ALTER TABLE projects ADD COLUMN pgha_lt_note text")
        let again = cli.run(["resume", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 300)
        #expect(again.exitCode == 0 && again.stdout.contains("gate sync: PASS"), "\(again)")
        #expect(again.stdout.contains("wal_retrieve_retry_interval put back on"), "\(again.stdout)")
        #expect(try retryInterval() == "5s")
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(rollback.exitCode == 0, "\(rollback)")
        try expectClean()
    }

    @Test("a rollback while the subscriptions start puts the leader's wal_retrieve_retry_interval back")
    func rollbackWhileSubscriptionsStartPutsTheLauncherBack() throws {
        let work = try workspace(initialCopy: "subscription")
        defer {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
            work.remove()
        }
        try killSyncOnceTheSubscriptionsExist(work)
        #expect(try retryInterval() == "100ms")
        let launcher = try StateStore(directory: work.stateDir).load().steps.first { $0.stage == .sync && $0.name == "launcher-interval" }
        #expect(launcher?.phase == .done, "journaled, not put back yet")
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(rollback.exitCode == 0, "\(rollback)")
        #expect(rollback.stdout.contains("wal_retrieve_retry_interval put back on"), "\(rollback.stdout)")
        try expectClean()
    }

    @Test("a full logical migration under load: 0 lost, 0 duplicated, 0 errors; every sequence ahead of every used value; the forward subscriptions and the way back dropped")
    func fullLogicalMigrationUnderLoad() throws {
        let work = try workspace()
        defer { restore(work) }
        let workload = try cutover.startWorkload(work)
        let run = cli.run(["run", "logical.yml", "--state-dir", work.stateDir], in: work, timeout: 600)
        let judged = cutover.stopWorkload(workload, work)
        #expect(run.exitCode == 0 && run.stdout.contains("Migration complete"), "\(run)")
        let report = try judged()
        print("[logical] cutover pause \(try StateStore(directory: work.stateDir).load().cutover?.pauseSeconds ?? -1) s; workload \(report.summary)")
        #expect(report.acknowledged > 200, "\(report.summary)")
        #expect(report.missing == 0 && report.duplicated == 0 && report.errors == 0, "\(report.summary)")
        // The workload judged its rows on the cluster's leader (through PgBouncer and HAProxy).
        #expect(sandbox.cluster.members.map { "\($0.host):\($0.pgPort)" }.contains(report.checkedOn), "checked on \(report.checkedOn)")
        let state = try StateStore(directory: work.stateDir).load()
        #expect(state.stage(.shadow).status.name == "skipped")
        #expect(state.stage(.cutover).status == .passed && state.stage(.complete).status == .passed)
        // Every sequence of the cluster is ahead of every value its column holds.
        let cluster = try leader(database: "lt_project")
        let behind = try cluster.query("""
            SELECT count(*) FROM pg_sequences s
            JOIN pg_depend d ON d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass AND d.deptype IN ('a', 'i')
            JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE s.last_value IS NULL
            """).int(0, 0) ?? -1
        #expect(behind == 0, "\(behind) column-owned sequence(s) never set on the cluster")
        let tasks = try cluster.query("SELECT (SELECT last_value FROM tasks_id_seq) > (SELECT coalesce(max(id), 0) FROM tasks)").bool(0, 0)
        #expect(tasks == true, "tasks_id_seq is ahead of max(tasks.id)")
        // No forward subscription on the cluster, no way back on the single node, no sync slot.
        #expect(try cluster.query("SELECT count(*) FROM pg_subscription").int(0, 0) == 0)
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source.query("SELECT count(*) FROM pg_subscription").int(0, 0) == 0)
        #expect(try source.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgha_lt%'").int(0, 0) == 0)
        #expect(try source.query("SELECT count(*) FROM pg_publication WHERE pubname = 'pgha_lt'").int(0, 0) == 0)
        cutover.expectNoSecrets(under: work.stateDir)
    }

    @Test("rollback after a logical cutover under load: the application is back on the single node with every write made on the cluster")
    func logicalRollbackAfterCutoverUnderLoad() throws {
        let work = try workspace()
        defer { restore(work) }
        let workload = try cutover.startWorkload(work)
        let run = cli.run(["run", "logical.yml", "--state-dir", work.stateDir, "--until", "cutover"], in: work, timeout: 600)
        #expect(run.exitCode == 0, "\(run)")
        Thread.sleep(forTimeInterval: 2)
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 300)
        let judged = cutover.stopWorkload(workload, work)
        #expect(rollback.exitCode == 0 && rollback.stdout.contains("the application is back on the single node"), "\(rollback)")
        let report = try judged()
        #expect(report.acknowledged > 200, "\(report.summary)")
        #expect(report.missing == 0 && report.duplicated == 0 && report.errors == 0, "\(report.summary)")
        #expect(report.checkedOn == "\(sandbox.single.host):\(sandbox.single.port)", "checked on \(report.checkedOn)")
        // The pause the rollback reports is the application's: PAUSE to RESUME, not the clean-up
        // after it (it counted 20 s of waiting for the way back's slots, still in use then).
        let pause = try #require(try StateStore(directory: work.stateDir).load().cutover?.rollbackPauseSeconds)
        #expect(pause < 3 && pause <= report.longestWriteSeconds + 1, "rollback pause \(pause) s, longest write \(report.longestWriteSeconds) s")
        print("[logical rollback] pause \(pause) s; workload \(report.summary)")
        try expectClean()
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source.query("SELECT count(*) FROM pg_subscription").int(0, 0) == 0)
        #expect(try source.query("SELECT current_setting('default_transaction_read_only')").string(0, 0) == "off")
    }

    // MARK: - Roles

    @Test("roles the schema needs and the cluster lacks are created with their attributes, memberships and (asked for) password hashes; rollback drops them")
    func rolesCreatedOnTheCluster() throws {
        let work = try workspace()
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        let sourcePostgres = try cutover.superuser(sandbox.single.host, sandbox.single.port, database: "postgres")
        func cleanSource() {
            _ = try? source.query("DROP TABLE IF EXISTS lt_owned")
            for role in ["lt_owner", "lt_reader"] { _ = try? sourcePostgres.query("DROP ROLE IF EXISTS \(role)") }
        }
        func cleanCluster() {
            if let c = try? leader(database: "postgres") { for role in ["lt_owner", "lt_reader"] { _ = try? c.query("DROP ROLE IF EXISTS \(role)") } }
        }
        cleanSource()
        cleanCluster()
        defer {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
            work.remove()
            cleanSource()
            cleanCluster()
        }
        let password = UUID().uuidString
        _ = try sourcePostgres.query("CREATE ROLE lt_reader NOLOGIN")
        _ = try sourcePostgres.query("CREATE ROLE lt_owner LOGIN CREATEDB CONNECTION LIMIT 7 PASSWORD \(SQLQuoting.literal(password))")
        _ = try sourcePostgres.query("GRANT lt_reader TO lt_owner")
        _ = try source.query("CREATE TABLE lt_owned (id int PRIMARY KEY)")
        _ = try source.query("ALTER TABLE lt_owned OWNER TO lt_owner")
        _ = try source.query("GRANT SELECT ON lt_owned TO lt_reader")
        let playbook = work.path + "/logical.yml"
        var text = try String(contentsOfFile: playbook, encoding: .utf8)
        text = text.replacingOccurrences(of: "  method: logical\n", with: "  method: logical\n  role_passwords: copy\n")
        try text.write(toFile: playbook, atomically: true, encoding: .utf8)

        let run = cli.run(["run", "logical.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 300)
        #expect(run.exitCode == 0 && run.stdout.contains("gate sync: PASS"), "\(run)")
        #expect(run.stdout.contains("role lt_owner created on the cluster (LOGIN, password copied)"), "\(run.stdout)")
        #expect(!run.stdout.contains(password))
        let cluster = try leader(database: "postgres")
        let owner = try cluster.query("SELECT rolcanlogin, rolcreatedb, rolconnlimit, rolsuper FROM pg_roles WHERE rolname = 'lt_owner'")
        #expect(owner.rowCount == 1)
        let (login, createDB, limit, superuser) = (try owner.bool(0, 0), try owner.bool(0, 1), try owner.int(0, 2), try owner.bool(0, 3))
        #expect(login == true && createDB == true && limit == 7 && superuser == false, "lt_owner's attributes copied (no SUPERUSER)")
        #expect(try cluster.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'lt_reader'").bool(0, 0) == false)
        #expect(try cluster.query("SELECT pg_has_role('lt_owner', 'lt_reader', 'MEMBER')").bool(0, 0) == true)
        let hashHere = try sourcePostgres.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'lt_owner'").string(0, 0)
        let hashThere = try cluster.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'lt_owner'").string(0, 0)
        #expect(hashHere != nil && hashHere == hashThere, "the password hash copied")
        let copy = try leader(database: "lt_project")
        #expect(try copy.query("SELECT tableowner FROM pg_tables WHERE tablename = 'lt_owned'").string(0, 0) == "lt_owner")
        #expect(try copy.query("SELECT has_table_privilege('lt_reader', 'lt_owned', 'SELECT')").bool(0, 0) == true)
        copy.close()
        cutover.expectNoSecrets(under: work.stateDir)
        let state = try String(contentsOfFile: work.stateDir + "/state.json", encoding: .utf8)
        #expect(!state.contains("SCRAM-SHA-256$"), "no password hash in the state file")

        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(rollback.exitCode == 0, "\(rollback)")
        #expect(try cluster.query("SELECT count(*) FROM pg_roles WHERE rolname IN ('lt_owner', 'lt_reader')").int(0, 0) == 0, "rollback dropped the roles")
        try expectClean()
    }

    // MARK: - A crash of the cluster's leader during sync

    @Test("the whole leader node crashes during the logical sync (SIGKILL of Patroni and the postmaster) under load: the change is verified by a compare, what differs copied again, and the migration ends with no row missing", .timeLimit(.minutes(10)))
    func wholeLeaderNodeCrashDuringSync() throws {
        try leaderCrashDuringSync(postmasterOnly: false)
    }

    @Test("the leader's postmaster alone is killed during the logical sync under load: the restart is noticed and verified, and the migration ends with no row missing", .timeLimit(.minutes(10)))
    func leaderPostmasterCrashDuringSync() throws {
        try leaderCrashDuringSync(postmasterOnly: true)
    }

    /// The sync runs under the workload; once the last subscription copies, the cluster's leader
    /// is crashed. The sync must notice the new leader (or the restarted postmaster), compare
    /// every table once everything is copied and streaming, copy again what differs, and pass its
    /// gate; the crashed member is restarted and the migration completes; the workload's judge
    /// then finds every acknowledged write on the cluster, once.
    func leaderCrashDuringSync(postmasterOnly: Bool) throws {
        // The subscription's own copy: its catch-up leaves the streaming phase open long enough
        // to crash the leader in it (pgha's snapshot copy gets there in a second or two; its own
        // crash is `leaderCrashInTheMiddleOfTheSnapshotCopy`).
        let work = try workspace(initialCopy: "subscription")
        defer {
            // The crashed member back first: the clean-up needs a leader.
            _ = cli.run(["sandbox", "up"], in: try! Workspace(cli), timeout: 180)
            restore(work)
        }
        let workload = try cutover.startWorkload(work)
        let sync = try cli.start(["run", "logical.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work)
        // The sync held open until the crash: lt_shared's knowledge_items locked on the leader as
        // soon as its schema is there (before any subscription), so its table sync's COPY waits and the
        // stage cannot pass (the project database streams meanwhile; the lock dies with the crash).
        let hold = try holdTable("knowledge_items", database: "lt_shared", timeout: 120)
        defer { hold.close() }
        #expect(sync.waitForOutput("subscription pgha_lt_shared_knowledge on the cluster", timeout: 120), "\(sync.stdout)")
        // Patroni's synchronous mode is on while the subscriptions copy.
        let before = try leader(database: "postgres")
        let standbys = try before.query("SHOW synchronous_standby_names").string(0, 0) ?? ""
        #expect(!standbys.isEmpty, "synchronous_standby_names is set on the leader (Patroni's synchronous_mode)")
        let leaderName = try before.query("SELECT host(inet_server_addr())").string(0, 0) ?? "?"
        before.close()
        // A row lost on the cluster, as the silent loss loses them: deleted on the leader once
        // pgbench_accounts is copied (not replicated back: nothing subscribes to the cluster).
        let copy = try leader(database: "lt_project")
        var ready = false
        for _ in 0..<600 where !ready {
            // Every table of the project database copied: the crash hits the streaming phase (the
            // loss window). A crash in the middle of a table's initial copy is
            // `leaderCrashInTheMiddleOfTheInitialCopy`.
            ready = try copy.query("SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'").bool(0, 0) == true
                && (try copy.query("SELECT count(*) FROM pg_subscription_rel").int(0, 0) ?? 0) > 0
            if !ready { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(ready, "every table of lt_project copied within 60 s")
        #expect(try copy.query("DELETE FROM pgbench_accounts WHERE aid = 4242").affectedRows == 1)
        copy.close()
        Thread.sleep(forTimeInterval: 0.5)
        guard let member = sandbox.cluster.members.first(where: { $0.host == leaderName }) else {
            Issue.record("no sandbox member at \(leaderName)")
            return
        }
        let killed = try SandboxController(configuration: sandbox).crash(member: member.name, postmasterOnly: postmasterOnly)
        #expect(killed.count == (postmasterOnly ? 1 : 2), "signalled \(killed)")
        let finished = sync.wait(timeout: 400)
        #expect(finished.exitCode == 0 && finished.stdout.contains("gate sync: PASS"), "\(finished)")
        #expect(finished.stdout.contains("the cluster's leader changed during the logical sync"), "\(finished.stdout)")
        #expect(finished.stdout.contains("after the leader change"), "\(finished.stdout)")
        #expect(finished.stdout.contains("copied again: distributed_postgres_cluster.public.pgbench_accounts"), "\(finished.stdout)")
        let repaired = try leader(database: "lt_project")
        #expect(try repaired.query("SELECT count(*) FROM pgbench_accounts WHERE aid = 4242").int(0, 0) == 1, "the lost row copied again")
        #expect(try repaired.query("SELECT count(*) FROM pgbench_accounts").int(0, 0) == 100_000)
        repaired.close()
        print("[logical crash postmasterOnly=\(postmasterOnly)] " + finished.stdout.split(separator: "\n").filter { $0.contains("leader change") || $0.contains("copied again") || $0.contains("compare:") }.joined(separator: "\n"))
        try completeAfterTheCrash(work, workload, label: "logical crash postmasterOnly=\(postmasterOnly)")
        // synchronous_mode was put back after the cutover.
        let after = try leader(database: "postgres")
        #expect(try after.query("SHOW synchronous_standby_names").string(0, 0) == "", "synchronous_mode put back (off)")
    }

    @Test("the whole leader node crashes in the middle of a large table's initial copy, under load: PostgreSQL's table sync starts the copy again on the new leader, the change is verified, and the migration ends with every row there once", .timeLimit(.minutes(10)))
    func leaderCrashInTheMiddleOfTheInitialCopy() throws {
        // A table large enough that its copy takes seconds (≈ 90 MB), in the project database.
        let rows: Int64 = 700_000
        try makeBigTable(rows: rows)
        let work = try workspace(deferIndexes: true, initialCopy: "subscription")
        defer {
            // The crashed member back first: the clean-up needs a leader.
            _ = cli.run(["sandbox", "up"], in: try! Workspace(cli), timeout: 180)
            restore(work)
        }
        let workload = try cutover.startWorkload(work)
        // pgha itself is killed once the verification's compare has journaled its first identical
        // table: the resumed sync must not compare it again.
        let sync = try cli.start(["run", "logical.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work,
                                 environment: ["PGHA_TEST_CRASH_AFTER_STEP": "compared:*"])
        // The leader is crashed while lt_big's table sync is copying (state 'd'), a second into it.
        var copying: (leader: String, seconds: Double)?
        let started = ContinuousClock.now
        while copying == nil && ContinuousClock.now - started < .seconds(180) {
            if let c = try? leader(database: "lt_project"), let state = Self.copyState(c) {
                if state == "d" {
                    copying = (try c.query("SELECT host(inet_server_addr())").string(0, 0) ?? "?", Self.seconds(ContinuousClock.now - started))
                }
                #expect(state != "r" && state != "s", "lt_big's copy ended before the crash (state \(state)): make the table larger")
                if state == "r" || state == "s" { break }
            }
            if copying == nil { Thread.sleep(forTimeInterval: 0.05) }
        }
        guard let copying, let member = sandbox.cluster.members.first(where: { $0.host == copying.leader }) else {
            sync.signal(SIGTERM)
            Issue.record("lt_big's copy never seen in state 'd': \(sync.wait(timeout: 120).stdout)")
            return
        }
        Thread.sleep(forTimeInterval: 1)
        let copied = (try? leader(database: "lt_project")).flatMap(Self.copyState)
        #expect(copied == "d", "still copying when crashed (state \(copied ?? "?"))")
        let killed = try SandboxController(configuration: sandbox).crash(member: member.name)
        #expect(killed.count == 2, "signalled \(killed)")
        let killedInCompare = sync.wait(timeout: 400)
        #expect(killedInCompare.signaled, "pgha was to kill itself once the compare journaled a table: \(killedInCompare)")
        #expect(killedInCompare.stdout.contains("the cluster's leader changed during the logical sync"), "\(killedInCompare.stdout)")
        // The table's own progress bar (pg_stat_progress_copy against the single node's estimate).
        #expect(killedInCompare.stdout.contains("copying distributed_postgres_cluster.lt_big (its table sync's COPY)"), "\(killedInCompare.stdout)")
        let finished = cli.run(["resume", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 400)
        #expect(finished.exitCode == 0 && finished.stdout.contains("gate sync: PASS"), "\(finished)")
        #expect(finished.stdout.contains("found identical before the interruption are not compared again"), "\(finished.stdout)")
        let repaired = try leader(database: "lt_project")
        #expect(try repaired.query("SELECT count(*) FROM lt_big").int(0, 0) == rows, "every row of lt_big copied once")
        #expect(try repaired.query("SELECT count(DISTINCT id) FROM lt_big").int(0, 0) == rows)
        // Deferred across the crash: the new leader has the secondary indexes, built after the copy.
        #expect(try repaired.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'tasks_project_id_idx'").int(0, 0) == 1)
        repaired.close()
        print("[logical crash mid-copy at \(String(format: "%.1f", copying.seconds)) s] " + (killedInCompare.stdout + finished.stdout).split(separator: "\n").filter { $0.contains("leader change") || $0.contains("copied again") || $0.contains("compare:") || $0.contains("error") || $0.contains("copying ") }.joined(separator: "\n"))
        try completeAfterTheCrash(work, workload, label: "logical crash mid-copy")
    }

    @Test("sync.initial_copy snapshot (the default): pgha copies both databases at the slot's snapshot, builds keys and indexes after, the subscription streams from that point; compare finds them identical; rollback drops the slot and everything else")
    func snapshotCopyFollowCompareRollback() throws {
        let work = try workspace()
        defer {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
            work.remove()
        }
        let run = cli.run(["run", "logical.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 300)
        #expect(run.exitCode == 0 && run.stdout.contains("gate sync: PASS"), "\(run)")
        #expect(run.stdout.contains("tables copied"), "\(run.stdout)")
        let state = try StateStore(directory: work.stateDir).load()
        let steps = state.steps.filter { $0.stage == .sync && ($0.name.hasPrefix("copy:") || $0.name.hasPrefix("post-data:")) }
        #expect(steps.count == 4 && steps.allSatisfy { $0.phase == .done }, "\(steps.map(\.name))")
        #expect(!state.steps.contains { $0.name.hasPrefix("defer-indexes:") }, "nothing to defer: the indexes come after the data")
        // The launcher's pace, quickened while the subscriptions started, is back once each runs.
        #expect(state.steps.first { $0.stage == .sync && $0.name == "launcher-interval" }?.phase == .undone)
        #expect(try retryInterval() == "5s")

        let cluster = try leader(database: "lt_project")
        #expect(try cluster.query("SELECT count(*) FROM pgbench_accounts").int(0, 0) == 100_000)
        #expect(try cluster.query("SELECT pg_get_indexdef('tasks_project_id_idx'::regclass)").string(0, 0)?.contains("(project_id)") == true)
        #expect(try cluster.query("SELECT count(*) FROM pg_constraint WHERE conname = 'pgbench_accounts_pkey'").int(0, 0) == 1)
        // The subscription copied nothing itself: it streams from the slot pgha made.
        #expect(try cluster.query("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'").int(0, 0) == 0)
        try expectFollowsComparesAndRollsBack(work, cluster: cluster)
    }

    @Test("the whole leader node crashes in the middle of pgha's snapshot copy, under load: the stage stops, and `pgha resume` starts the copy again from a new snapshot on the new leader; every row there once, nothing lost by the workload", .timeLimit(.minutes(10)))
    func leaderCrashInTheMiddleOfTheSnapshotCopy() throws {
        // A table large enough that its copy takes a few seconds (≈ 280 MB).
        let rows: Int64 = 2_000_000
        try makeBigTable(rows: rows)
        let work = try workspace()
        defer {
            // The crashed member back first: the clean-up needs a leader.
            _ = cli.run(["sandbox", "up"], in: try! Workspace(cli), timeout: 180)
            restore(work)
        }
        let workload = try cutover.startWorkload(work)
        let sync = try cli.start(["run", "logical.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work)
        // The leader is crashed while its COPY FROM STDIN into lt_big runs (pg_stat_progress_copy),
        // once Patroni has named its synchronous standby (before that, synchronous mode lets no
        // member take over: the cluster waits for the crashed node, which is not this test).
        var copying: String?
        let started = ContinuousClock.now
        while copying == nil && ContinuousClock.now - started < .seconds(180) {
            if let c = try? leader(database: "lt_project"),
               let r = try? c.query("SELECT host(inet_server_addr()) FROM pg_stat_progress_copy p JOIN pg_class t ON t.oid = p.relid WHERE t.relname = 'lt_big' AND p.tuples_processed > 0"),
               r.rowCount > 0 {
                // Patroni's /sync names the standby (its role in `sandbox status`) a moment after
                // synchronous_standby_names is set.
                let status = cli.run(["sandbox", "status", "--json"], in: work, timeout: 30)
                if status.stdout.contains("\"sync_standby\"") { copying = r.string(0, 0) }
            }
            if copying == nil { Thread.sleep(forTimeInterval: 0.02) }
        }
        guard let copying, let member = sandbox.cluster.members.first(where: { $0.host == copying }) else {
            sync.signal(SIGTERM)
            Issue.record("lt_big's copy never seen on the leader: \(sync.wait(timeout: 120).stdout)")
            return
        }
        let killed = try SandboxController(configuration: sandbox).crash(member: member.name)
        #expect(killed.count == 2, "signalled \(killed)")
        let failed = sync.wait(timeout: 300)
        // The copy stops: its COPY fails, or the watchdog sees the leader change or stop answering.
        #expect(failed.exitCode != 0 && (failed.stdout.contains("to the cluster failed") || failed.stdout.contains("the copy stopped")
                                        || failed.stdout.contains("stopped: the cluster's leader has not answered")), "the copy stops with the leader: \(failed)")
        // A new leader (Patroni's failover), then the resume.
        var promoted = false
        for _ in 0..<600 where !promoted {
            promoted = (try? leader(database: "lt_project")) != nil
            if !promoted { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(promoted, "a new leader within 60 s")
        let finished = cli.run(["resume", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 400)
        #expect(finished.exitCode == 0 && finished.stdout.contains("gate sync: PASS"), "\(finished)")
        #expect(finished.stdout.contains("the copy was interrupted: starting it again from a new snapshot"), "\(finished.stdout)")
        #expect((failed.stdout + finished.stdout).contains("the cluster's leader changed during the logical sync"), "\(finished.stdout)")
        let repaired = try leader(database: "lt_project")
        #expect(try repaired.query("SELECT count(*) FROM lt_big").int(0, 0) == rows, "every row of lt_big copied once")
        #expect(try repaired.query("SELECT count(DISTINCT id) FROM lt_big").int(0, 0) == rows)
        #expect(try repaired.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'lt_big_pkey'").int(0, 0) == 1)
        repaired.close()
        let source2 = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source2.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgha_lt%'").int(0, 0) == 2, "one slot per database: the first attempt's dropped")
        source2.close()
        print("[logical crash mid-snapshot-copy] " + (failed.stdout + finished.stdout).split(separator: "\n").filter { $0.contains("leader change") || $0.contains("copied") || $0.contains("compare:") || $0.contains("failed") || $0.contains("interrupted") }.joined(separator: "\n"))
        try completeAfterTheCrash(work, workload, label: "logical crash mid-snapshot-copy")
    }

    /// public.lt_big on the single node (project database): `rows` rows of ~140 bytes, analysed
    /// (so that the copy's bar has a total); `restore` drops it.
    func makeBigTable(rows: Int64) throws {
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        defer { source.close() }
        _ = try source.query("DROP TABLE IF EXISTS public.lt_big")
        _ = try source.query("CREATE TABLE public.lt_big (id bigint PRIMARY KEY, payload text NOT NULL)", timeout: .seconds(60))
        _ = try source.query("INSERT INTO public.lt_big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, \(rows)) g", timeout: .seconds(300))
        _ = try source.query("ANALYZE public.lt_big", timeout: .seconds(60))
    }

    /// After a crash test's sync: the crashed member back (it rejoins as a replica), the rest of
    /// the migration resumed through complete, and the workload judged: nothing lost or duplicated;
    /// the leader change verified in the journal.
    func completeAfterTheCrash(_ work: Workspace, _ workload: CutoverIntegrationTests.Workload, label: String) throws {
        let up = cli.run(["sandbox", "up"], in: work, timeout: 180)
        #expect(up.exitCode == 0, "\(up)")
        let rest = cli.run(["resume", "--state-dir", work.stateDir], in: work, timeout: 600)
        let judged = cutover.stopWorkload(workload, work)
        #expect(rest.exitCode == 0 && rest.stdout.contains("Migration complete"), "\(rest)")
        let report = try judged()
        print("[\(label)] workload \(report.summary)")
        #expect(report.acknowledged > 200, "\(report.summary)")
        #expect(report.missing == 0 && report.duplicated == 0, "\(report.summary)")
        let state = try StateStore(directory: work.stateDir).load()
        #expect(state.steps.contains { $0.stage == .sync && $0.name.hasPrefix("verified:") && $0.phase == .done })
    }

    /// lt_big's state in pg_subscription_rel (nil before the subscription lists it).
    static func copyState(_ c: PGConnection) -> String? {
        guard let r = try? c.query("SELECT r.srsubstate::text FROM pg_subscription_rel r JOIN pg_class t ON t.oid = r.srrelid WHERE t.relname = 'lt_big'"),
              r.rowCount > 0 else { return nil }
        return r.string(0, 0)
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
}
