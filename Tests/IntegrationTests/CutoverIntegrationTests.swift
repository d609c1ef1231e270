import Foundation
import Migration
import PGClient
import Sandbox
import Testing

/// The cutover and complete stages against the real sandbox, physical method, with an application
/// writing through PgBouncer the whole time (`pgha workload`, judged at the end): the full
/// migration, the rollback after cutover, kill -9 at every point of the cutover, a catch-up that
/// cannot finish. Every test leaves the sandbox as it found it (the single node unfrozen, PgBouncer
/// pointing at it and resumed, the target cluster stopped and emptied, no slot or subscription).
@Suite(.enabled(if: SandboxFixture.enabled), .serialized)
struct CutoverIntegrationTests {
    let cli: CLIHarness
    let sandbox: SandboxConfiguration

    init() throws {
        cli = try CLIHarness.make()
        sandbox = try SandboxFixture.load().sandbox
    }

    // MARK: - Tests

    @Test("a full migration under load: 0 lost, 0 duplicated, 0 application errors; the pause reported; the way back dropped; no secret in the state directory")
    func fullMigrationUnderLoad() throws {
        let work = try workspace()
        defer { restore(work) }
        let workload = try startWorkload(work)
        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work, timeout: 600)
        let judged = stopWorkload(workload, work)
        #expect(run.exitCode == 0, "\(run)")
        #expect(run.stdout.contains("Migration complete"), "\(run)")
        let report = try judged()
        #expect(report.acknowledged > 200, "\(report.summary)")
        #expect(report.missing == 0 && report.duplicated == 0 && report.errors == 0, "\(report.summary)")
        let state = try StateStore(directory: work.stateDir).load()
        let cutover = try #require(state.cutover)
        print("[cutover] PgBouncer method: pause \(cutover.pauseSeconds ?? -1) s; workload \(report.summary)")
        #expect((cutover.pauseSeconds ?? 99) < 5, "pause \(String(describing: cutover.pauseSeconds))")
        #expect(cutover.wayBackProvenAt != nil && cutover.finalLSN != nil && cutover.promotedMember != nil)
        #expect(state.stages.allSatisfy { $0.status == .passed }, "\(state.stages.map { "\($0.stage): \($0.status)" })")
        // The application writes on the cluster's leader, through PgBouncer and HAProxy.
        #expect(sandbox.target.members.map { "\($0.host):\($0.pgPort)" }.contains(report.checkedOn), "checked on \(report.checkedOn)")
        // complete dropped the way back and the single node's physical slot; the single node stays frozen.
        let source = try superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source.query("SELECT count(*) FROM pg_subscription").int(0, 0) == 0)
        #expect(try source.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgha_ct'").int(0, 0) == 0)
        #expect(try source.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", [.text(sandbox.users.application)]).bool(0, 0) == false)
        let json = try String(contentsOfFile: work.stateDir + "/report.json", encoding: .utf8)
        #expect(json.contains("\"pauseSeconds\""))
        expectNoSecrets(under: work.stateDir)
        // complete cannot be undone.
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(rollback.exitCode != 0 && rollback.stdout.contains("the migration is complete"), "\(rollback)")

        // The migrated cluster behind the generated haproxy.cfg: a switchover under the drill's
        // writes through HAProxy's primary listener (the playbook's cutover.pgbouncer.target)
        // loses and duplicates nothing, and every write lands on the leader.
        let hosts = sandbox.target.members.map(\.host).joined(separator: ",")
        let drill = cli.run(["verify", "--failover-drill", "--via", "127.0.0.1:15000", "--hosts", hosts, "--json"], in: work, timeout: 180)
        #expect(drill.exitCode == 0, "\(drill)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(drill.stdout.utf8)) as? [String: Any], "\(drill)")
        let drilled = try #require(object["report"] as? [String: Any])
        #expect(drilled["writes_lost"] as? Int == 0 && drilled["writes_duplicated"] as? Int == 0 && drilled["writes_on_non_leader"] as? Int == 0, "\(drilled)")
        #expect((drilled["writes_acknowledged"] as? Int ?? 0) > 0 && drilled["new_leader"] as? String != drilled["old_leader"] as? String, "\(drilled)")
        // Timing is reported, not asserted (docs/BENCHMARKS.md, "The HAProxy drill").
        print("[cutover] HAProxy drill: first write \(drilled["first_write_after_leader_named_seconds"] ?? "-") s after Patroni named the new leader")
    }

    @Test("rollback after cutover under load: the application is back on the single node with every write made on the cluster, sequences copied back")
    func rollbackAfterCutoverUnderLoad() throws {
        let work = try workspace()
        defer { restore(work) }
        let workload = try startWorkload(work)
        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "cutover"], in: work, timeout: 600)
        #expect(run.exitCode == 0, "\(run)")
        Thread.sleep(forTimeInterval: 2)
        // A sequence moved on the cluster must not move back on the single node.
        let leader = try clusterLeader()
        let onCluster = try leader.query("SELECT nextval('ticket_number_seq')").int(0, 0) ?? 0
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 300)
        let judged = stopWorkload(workload, work)
        #expect(rollback.exitCode == 0, "\(rollback)")
        #expect(rollback.stdout.contains("the application is back on the single node"), "\(rollback)")
        let report = try judged()
        #expect(report.acknowledged > 200, "\(report.summary)")
        #expect(report.missing == 0 && report.duplicated == 0 && report.errors == 0, "\(report.summary)")
        #expect(report.checkedOn == "\(sandbox.single.host):\(sandbox.single.port)", "checked on \(report.checkedOn)")
        let source = try superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source.query("SELECT last_value FROM ticket_number_seq").int(0, 0) ?? 0 >= onCluster)
        #expect(try source.query("SELECT count(*) FROM pg_subscription").int(0, 0) == 0)
        #expect(try source.query("SELECT current_setting('default_transaction_read_only')").string(0, 0) == "off")
        #expect(try source.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", [.text(sandbox.users.application)]).bool(0, 0) == true)
        #expect(try String(contentsOfFile: sandbox.pgbouncer.configFile, encoding: .utf8).contains("host=\(sandbox.single.host) port=\(sandbox.single.port)"))
    }

    @Test("kill -9 of pgha at every point of the cutover (the k-th state write of each process, k = 1, 2, …), then pgha resume: it ends migrated, nothing lost; while frozen the application's role cannot log in")
    func killAtEveryCutoverStep() throws {
        let work = try workspace()
        defer { restore(work) }
        let workload = try startWorkload(work)
        let upToShadow = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "shadow"], in: work, timeout: 600)
        #expect(upToShadow.exitCode == 0, "\(upToShadow)")
        var finished = false
        var kills = 0
        var sawFrozen = false
        // A session of the application opened before the freeze: it must not be able to write
        // during it, even after turning the read-only default off for itself.
        let early = try PGConnection.connect(PGConnectionConfig(
            host: sandbox.single.host, port: sandbox.single.port, database: sandbox.single.projectDatabase,
            user: sandbox.users.application, password: try sandbox.password(\.application), connectTimeout: .seconds(3)))
        defer { early.close() }
        _ = try early.query("SELECT 1")
        for k in 1...80 where !finished {
            let r = cli.run(["resume", "--state-dir", work.stateDir, "--unattended"], in: work, environment: ["PGHA_TEST_CRASH_AT_WRITE": String(k)], timeout: 300)
            if r.signaled {
                kills += 1
                let state = try StateStore(directory: work.stateDir).load()
                let progress = CutoverProgress.of(state.steps.filter { $0.stage == .cutover })
                if progress == .unfreezeThenStartOver || progress == .continueAfterPromotion,
                   state.steps.contains(where: { $0.name == "freeze-logins" && $0.phase == .done }) {
                    // pgha is dead with the single node frozen: the application cannot write there.
                    let login = Result { try PGConnection.connect(PGConnectionConfig(
                        host: sandbox.single.host, port: sandbox.single.port, database: sandbox.single.projectDatabase,
                        user: sandbox.users.application, password: try sandbox.password(\.application), connectTimeout: .seconds(3))) }
                    if case .success(let c) = login {
                        #expect(throws: (any Error).self) { _ = try c.query("INSERT INTO pgha_workload (writer, seq) VALUES (-1, -1)") }
                    }
                    if !sawFrozen {
                        #expect(throws: (any Error).self, "a session from before the freeze wrote on the frozen single node") {
                            _ = try early.query("SET default_transaction_read_only = off")
                            _ = try early.query("INSERT INTO pgha_workload (writer, seq) VALUES (-2, -2)")
                        }
                    }
                    sawFrozen = true
                }
                continue
            }
            #expect(r.exitCode == 0, "k=\(k): \(r)")
            finished = true
        }
        let judged = stopWorkload(workload, work)
        #expect(finished, "resume never finished")
        #expect(kills >= 10, "only \(kills) kills")
        #expect(sawFrozen, "no kill landed while the single node was frozen")
        let state = try StateStore(directory: work.stateDir).load()
        #expect(state.stage(.complete).status == .passed)
        let report = try judged()
        #expect(report.missing == 0 && report.duplicated == 0, "\(report.summary)")
        #expect(report.errors == 0, "\(report.summary)")
    }

    @Test("a catch-up that cannot finish in time (a member's replay paused under maintenance mode) unfreezes the single node and fails clearly; resume then completes the cutover")
    func catchUpTimeoutUnfreezes() throws {
        let work = try workspace(cutoverTimeout: "3s")
        defer { restore(work) }
        let upToShadow = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "shadow"], in: work, timeout: 600)
        #expect(upToShadow.exitCode == 0, "\(upToShadow)")
        let held = try #require(sandbox.target.members.last)
        try patchTarget(#"{"pause": true}"#)
        Thread.sleep(forTimeInterval: 2)
        let member = try superuser(held.host, held.pgPort)
        _ = try member.query("SELECT pg_wal_replay_pause()")
        // The freeze itself writes WAL (ALTER ROLE): the paused member cannot replay the final LSN.
        let failed = cli.run(["resume", "--state-dir", work.stateDir, "--unattended"], in: work, timeout: 120)
        _ = try? member.query("SELECT pg_wal_replay_resume()")
        try patchTarget(#"{"pause": null}"#)
        #expect(failed.exitCode == 3, "\(failed)")
        #expect(failed.stdout.contains("catch-up timed out") && failed.stdout.contains(held.name), "\(failed)")
        let source = try superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source.query("SELECT current_setting('default_transaction_read_only')").string(0, 0) == "off")
        #expect(try source.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", [.text(sandbox.users.application)]).bool(0, 0) == true)
        let app = try PGConnection.connect(PGConnectionConfig(
            host: sandbox.pgbouncer.host, port: sandbox.pgbouncer.port, database: sandbox.single.projectDatabase,
            user: sandbox.users.application, password: try sandbox.password(\.application), connectTimeout: .seconds(3)))
        #expect(try app.query("SELECT inet_server_port()").int(0, 0) == Int64(sandbox.single.port), "PgBouncer still sends the application to the single node")
        let state = try StateStore(directory: work.stateDir).load()
        #expect(state.cutover?.abandonedAttempts == 1)
        Thread.sleep(forTimeInterval: 3)
        let resumed = cli.run(["resume", "--state-dir", work.stateDir, "--unattended", "--until", "cutover"], in: work, timeout: 300)
        #expect(resumed.exitCode == 0, "\(resumed)")
    }

    @Test("a switchover of the cluster between cutover and complete keeps the way back: a row written on the new leader reaches the single node; complete then drops the way back")
    func switchoverKeepsTheWayBack() throws {
        let work = try workspace()
        defer { restore(work) }
        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "cutover"], in: work, timeout: 600)
        #expect(run.exitCode == 0, "\(run)")
        let leader = try #require(sandbox.target.members.first { m in
            (try? superuser(m.host, m.pgPort).query("SELECT NOT pg_is_in_recovery()").bool(0, 0)) == true })
        let candidate = try #require(sandbox.target.members.first { $0.name != leader.name })
        let body = #"{"leader": "\#(leader.name)", "candidate": "\#(candidate.name)"}"#
        let switched = cli.run(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "\(sandbox.users.restAPI):\(try sandbox.password(\.restAPI))",
                                "-X", "POST", "-H", "Content-Type: application/json", "-d", body, "http://\(leader.host):\(leader.restPort)/switchover"],
                               in: work, executable: "/usr/bin/curl", timeout: 60)
        #expect(switched.stdout == "200", "\(switched)")
        var newLeader: PGConnection?
        for _ in 0..<150 where newLeader == nil {
            if let c = try? superuser(candidate.host, candidate.pgPort), (try? c.query("SELECT NOT pg_is_in_recovery()").bool(0, 0)) == true { newLeader = c }
            else { Thread.sleep(forTimeInterval: 0.2) }
        }
        let writer = try #require(newLeader, "\(candidate.name) did not become the leader")
        let token = "after-switchover-\(UUID().uuidString)"
        _ = try writer.query("INSERT INTO public.pgha_canary (token) VALUES ($1)", [.text(token)])
        let source = try superuser(sandbox.single.host, sandbox.single.port)
        var arrived = false
        for _ in 0..<300 where !arrived {
            arrived = (try? source.query("SELECT 1 FROM public.pgha_canary WHERE token = $1", [.text(token)]).rowCount) == 1
            if !arrived { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(arrived, "the row written on the new leader \(candidate.name) did not reach the single node within 60 s")
        let complete = cli.run(["resume", "--state-dir", work.stateDir, "--unattended"], in: work, timeout: 300)
        #expect(complete.exitCode == 0, "\(complete)")
    }

    @Test("the hook method: the application (pgha workload on the seed's .env, single-node mode) is switched by a hook that installs nothing itself — pgha installs the Patroni-mode .env and the hook sends SIGHUP; its writes reach the cluster; rollback restores the .env and switches it back; nothing lost or duplicated")
    func hookMethod() throws {
        let work = try workspace(hook: true)
        defer { restore(work) }
        let upToShadow = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "shadow"], in: work, timeout: 600)
        #expect(upToShadow.exitCode == 0, "\(upToShadow)")
        // The application runs with the single-node .env the config stage rendered.
        try FileManager.default.copyItem(atPath: work.path + "/.pgha/sandbox/out/app.single-node.env", toPath: work.path + "/app.env")
        let reportPath = work.path + "/workload.json"
        let app = try ChildProcess(
            executable: cli.binary,
            arguments: ["workload", "--env-file", work.path + "/app.env", "--writers", "4", "--readers", "2", "--rate", "100", "--report", reportPath, "--pid-file", work.path + "/workload.pid"],
            directory: work.path, environment: ["PATH": "/usr/bin:/bin"], input: .none, scratch: cli.scratch)
        Thread.sleep(forTimeInterval: 2)
        let cutover = cli.run(["resume", "--state-dir", work.stateDir, "--unattended", "--until", "cutover"], in: work, timeout: 300)
        #expect(cutover.exitCode == 0, "\(cutover)")
        #expect(cutover.stdout.contains("the application writes on the cluster"), "\(cutover)")
        #expect(try String(contentsOfFile: work.path + "/app.env", encoding: .utf8).contains("ENABLE_PATRONI=true"))
        Thread.sleep(forTimeInterval: 2)
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 300)
        #expect(rollback.exitCode == 0, "\(rollback)")
        #expect(try String(contentsOfFile: work.path + "/app.env", encoding: .utf8).contains("ENABLE_PATRONI=false"))
        Thread.sleep(forTimeInterval: 2)
        app.signal(SIGTERM)
        let ended = app.wait(timeout: 120)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reportPath))) as? [String: Any], "\(ended)")
        let report = WorkloadJudgement(object)
        let record = try StateStore(directory: work.stateDir).load().cutover
        print("[cutover] hook method: pause \(record?.pauseSeconds ?? -1) s, rollback pause \(record?.rollbackPauseSeconds ?? -1) s; workload \(report.summary)")
        // The hook method is not pause-free: sessions are terminated at the freeze and logins
        // refused until the application reloads, so it sees errors; it never loses or doubles a write.
        #expect(report.acknowledged > 100, "\(report.summary)")
        #expect(report.missing == 0 && report.duplicated == 0, "\(report.summary)")
        #expect(report.checkedOn == "\(sandbox.single.host):\(sandbox.single.port)", "checked on \(report.checkedOn)")
        let state = try StateStore(directory: work.stateDir).load()
        #expect(state.cutover?.pauseSeconds != nil && state.cutover?.rolledBackAt != nil)
    }

    // MARK: - Harness

    static let sequencesToMaxSQL = """
        DO $$ DECLARE r record; m bigint; BEGIN
          FOR r IN SELECT s.oid::regclass AS seq, t.oid::regclass AS tbl, a.attname AS col
                   FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')
                   JOIN pg_class t ON t.oid = d.refobjid JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
                   WHERE s.relkind = 'S' LOOP
            EXECUTE format('SELECT max(%I) FROM %s', r.col, r.tbl) INTO m;
            IF m IS NOT NULL THEN PERFORM setval(r.seq, m); END IF;
          END LOOP;
        END $$
        """

    /// A workspace whose `sandbox.yml` is playbooks/sandbox.yml with this sandbox's addresses, a
    /// short shadow stage and a slot of its own.
    func workspace(cutoverTimeout: String = "30s", hook: Bool = false) throws -> Workspace {
        let work = try Workspace(cli)
        _ = cli.run(["sandbox", "stop-cluster", "--purge"], in: work, timeout: 120)
        var text = try String(contentsOfFile: CLIHarness.repository + "/playbooks/sandbox.yml", encoding: .utf8)
        text = text.replacingOccurrences(of: "slot: pgha_ha", with: "slot: pgha_ct")
        text = text.replacingOccurrences(of: "queries: 1500", with: "queries: 150")
        // With 150 executions the p99 is the slowest one or two: on a loaded machine one 57 ms
        // outlier failed the latency budget (CI). These tests are about the cutover; the shadow
        // stage's latency gate is tested in ShadowIntegrationTests.
        text = text.replacingOccurrences(of: "p99_slack: 20ms", with: "p99_slack: 2s")
        text = text.replacingOccurrences(of: "workload: playbooks/sandbox-workload.yml", with: "workload: \(CLIHarness.repository)/playbooks/sandbox-workload.yml")
        text = text.replacingOccurrences(of: "  timeout: 30s\n", with: "  timeout: \(cutoverTimeout)\n")
        text = text.replacingOccurrences(of: "ini_file: /tmp/pgha-sandbox/pgbouncer/pgbouncer.ini", with: "ini_file: \(sandbox.pgbouncer.configFile)")
        text = text.replacingOccurrences(of: "on_failure: rollback", with: "on_failure: stop")
        if hook, let start = text.range(of: "  method: pgbouncer\n"), let end = text.range(of: "  # Longest catch-up") {
            text.replaceSubrange(start.lowerBound..<end.lowerBound, with: """
                  method: hook
                  application_env: \(work.path)/app.env
                  switch_application: 'kill -HUP "$(cat \(work.path)/workload.pid)"'
                  switch_back: 'kill -HUP "$(cat \(work.path)/workload.pid)"'
                  application_wait: 30s

                """)
        }
        try text.write(toFile: work.path + "/sandbox.yml", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: sandbox.pgbouncer.configFile, toPath: work.path + "/pgbouncer.ini.original")
        return work
    }

    @Test("pgha killed right after the application switched, before the single node subscribes back: rollback subscribes first and keeps every write made on the cluster")
    func rollbackAfterAKillBetweenTheSwitchAndTheWayBack() throws {
        let work = try workspace()
        defer { restore(work) }
        let workload = try startWorkload(work)
        let upToShadow = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "shadow"], in: work, timeout: 600)
        #expect(upToShadow.exitCode == 0, "\(upToShadow)")
        let killed = cli.run(["resume", "--state-dir", work.stateDir, "--unattended", "--until", "cutover"], in: work,
                             environment: ["PGHA_TEST_CRASH_AFTER_STEP": "switch-application"], timeout: 300)
        #expect(killed.signaled, "pgha was to kill itself once the switch was recorded: \(killed)")
        let steps = try StateStore(directory: work.stateDir).load().steps.filter { $0.stage == .cutover }
        #expect(steps.contains { $0.name == "switch-application" && $0.phase == .done })
        #expect(!steps.contains { $0.name.hasPrefix("subscription:") }, "the kill came before the way back's subscription")
        // The application writes on the cluster; nothing reads the way back's slots yet.
        Thread.sleep(forTimeInterval: 3)
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 300)
        let judged = stopWorkload(workload, work)
        #expect(rollback.exitCode == 0, "\(rollback)")
        #expect(rollback.stdout.contains("the single node subscribes to the cluster"), "\(rollback.stdout)")
        let report = try judged()
        print("[cutover kill after the switch, then rollback] workload \(report.summary)")
        #expect(report.acknowledged > 200, "\(report.summary)")
        #expect(report.missing == 0 && report.duplicated == 0, "\(report.summary)")
        // The rollback waits for every way-back worker before it pauses the application.
        #expect(report.longestWriteSeconds >= 0 && report.longestWriteSeconds < 2, "\(report.summary)")
        #expect(report.checkedOn == "\(sandbox.single.host):\(sandbox.single.port)", "checked on \(report.checkedOn)")
        let source = try superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source.query("SELECT count(*) FROM pg_subscription").int(0, 0) == 0)
        #expect(try source.query("SELECT current_setting('default_transaction_read_only')").string(0, 0) == "off")
    }

    struct Workload {
        let process: ChildProcess
        let reportPath: String
    }

    func startWorkload(_ work: Workspace) throws -> Workload {
        let path = work.path + "/workload.json"
        let process = try cli.start(
            ["workload", "--host", sandbox.pgbouncer.host, "--port", String(sandbox.pgbouncer.port), "--writers", "4", "--readers", "2", "--rate", "150", "--report", path],
            in: work, environment: ["PGPASSWORD": try sandbox.password(\.application)])
        Thread.sleep(forTimeInterval: 1.5)
        return Workload(process: process, reportPath: path)
    }

    /// SIGTERM, then the judgement it wrote.
    func stopWorkload(_ workload: Workload, _ work: Workspace) -> () throws -> WorkloadJudgement {
        workload.process.signal(SIGTERM)
        let result = workload.process.wait(timeout: 120)
        return {
            let data = try Data(contentsOf: URL(fileURLWithPath: workload.reportPath))
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(result)")
            return WorkloadJudgement(object)
        }
    }

    struct WorkloadJudgement {
        var acknowledged: Int, missing: Int, duplicated: Int, errors: Int
        var longestWriteSeconds: Double
        var checkedOn: String
        var summary: String
        init(_ o: [String: Any]) {
            acknowledged = o["acknowledged"] as? Int ?? -1
            missing = o["missing"] as? Int ?? -1
            duplicated = o["duplicated"] as? Int ?? -1
            errors = o["errors"] as? Int ?? -1
            longestWriteSeconds = o["longestWriteSeconds"] as? Double ?? -1
            checkedOn = o["checkedOn"] as? String ?? "?"
            summary = "\(o)"
        }
    }

    func superuser(_ host: String, _ port: Int, database: String? = nil) throws -> PGConnection {
        let c = try PGConnection.connect(PGConnectionConfig(
            host: host, port: port, database: database ?? sandbox.single.projectDatabase, user: sandbox.users.superuser,
            password: try sandbox.password(\.superuser), connectTimeout: .seconds(3)))
        _ = try c.query("SET default_transaction_read_only = off")
        return c
    }

    func clusterLeader() throws -> PGConnection {
        for m in sandbox.target.members {
            if let c = try? superuser(m.host, m.pgPort), (try? c.query("SELECT NOT pg_is_in_recovery()").bool(0, 0)) == true { return c }
        }
        throw HarnessError("no writable leader in the target cluster")
    }

    func patchTarget(_ body: String) throws {
        for m in sandbox.target.members {
            let r = cli.run(["/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "\(sandbox.users.restAPI):\(try sandbox.password(\.restAPI))",
                             "-X", "PATCH", "-H", "Content-Type: application/json", "-d", body, "http://\(m.host):\(m.restPort)/config"],
                            in: try Workspace(cli), executable: "/usr/bin/curl", timeout: 10)
            if r.stdout == "200" { return }
        }
        throw HarnessError("PATCH /config \(body) failed on every target member")
    }

    func expectNoSecrets(under directory: String) {
        let files = FileManager.default.enumerator(atPath: directory)?.compactMap { $0 as? String } ?? []
        for file in files {
            guard let text = try? String(contentsOfFile: directory + "/" + file, encoding: .utf8) else { continue }
            for secret in cli.secrets { #expect(!text.contains(secret), "a password leaked into \(file)") }
        }
    }

    /// Puts the sandbox back: the migration rolled back when it can be, else by hand — the target
    /// cluster stopped and emptied, the single node unfrozen, its subscriptions and the slot
    /// dropped, PgBouncer's ini as before, reloaded and resumed.
    func restore(_ work: Workspace) {
        if FileManager.default.fileExists(atPath: work.stateDir + "/state.json") {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 300)
        }
        _ = cli.run(["sandbox", "stop-cluster", "--purge"], in: work, timeout: 120)
        if let source = try? superuser(sandbox.single.host, sandbox.single.port) {
            _ = try? source.query("ALTER SYSTEM RESET default_transaction_read_only")
            _ = try? source.query("SELECT pg_reload_conf()")
            _ = try? source.query("ALTER ROLE \(sandbox.users.application) LOGIN")
            if let subs = try? source.query("SELECT subname FROM pg_subscription") {
                for i in 0..<subs.rowCount {
                    guard let name = subs.string(i, 0) else { continue }
                    _ = try? source.query("ALTER SUBSCRIPTION \(name) DISABLE")
                    _ = try? source.query("ALTER SUBSCRIPTION \(name) SET (slot_name = NONE)")
                    _ = try? source.query("DROP SUBSCRIPTION \(name)")
                }
            }
            _ = try? source.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'pgha_ct' AND NOT active")
        }
        // Rows that came back through the way back carry the cluster's ids, not the single node's
        // sequences (sequences do not flow back; after `complete` nobody copies them): the next
        // test's cluster, cloned from this single node, must not hand out those ids again.
        for database in [sandbox.single.projectDatabase, sandbox.single.sharedDatabase] {
            _ = try? superuser(sandbox.single.host, sandbox.single.port, database: database).query(Self.sequencesToMaxSQL)
        }
        if let original = try? Data(contentsOf: URL(fileURLWithPath: work.path + "/pgbouncer.ini.original")) {
            try? original.write(to: URL(fileURLWithPath: sandbox.pgbouncer.configFile))
        }
        if let console = try? PGConnection.connect(PGConnectionConfig(
            host: sandbox.pgbouncer.host, port: sandbox.pgbouncer.port, database: "pgbouncer", user: sandbox.users.superuser,
            password: try sandbox.password(\.superuser), connectTimeout: .seconds(3))) {
            _ = try? console.query("RELOAD")
            _ = try? console.query("RESUME")
        }
        work.remove()
    }
}
