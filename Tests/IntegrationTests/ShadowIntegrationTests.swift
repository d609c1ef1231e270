import Foundation
import HTTPClient
import Logging
import Migration
import PGClient
import Sandbox
import ShadowCompare
import Synchronization
import Testing

/// The shadow stage against the real sandbox, physical method: `pgha run --until sync` with the
/// rehearsal playbook made for this sandbox's addresses (the target cluster ha1–ha3 as a standby
/// cluster of the single node), then the shadow stage in-process on that state. Each test puts
/// back what it changed on the members (a setting, a paused replay, maintenance mode), also when
/// it fails.
@Suite(.enabled(if: SandboxFixture.enabled), .serialized)
struct ShadowIntegrationTests {
    @Test func theRehearsalWorkloadMatchesAndItsClockStatementIsNoise() async throws {
        let h = try ShadowHarness(shadow: "queries: 300", workload: ShadowHarness.rehearsalWorkload + """
              - name: coin
                sql: SELECT random() < 0.5 AS heads
            """)
        let (report, checks) = try await h.runShadow()
        h.show(report, checks)
        #expect(report.totals.executions == 300)
        #expect(report.totals.mismatches == 0, "\(report.mismatches.map { "\($0.label) on \($0.member): \($0.difference.summary)" })")
        #expect(report.totals.aborted == 0, "\(report.totals.abortReasons)")
        let clock = try #require(report.statements.first { $0.label == "server clock" })
        #expect(clock.executions > 0 && clock.noise == clock.executions && clock.mismatches == 0, "now() differs between the single node's two runs every time")
        let coin = try #require(report.statements.first { $0.label == "coin" })
        // A coin that agreed with itself on the single node but not on a member whose replay was a
        // few bytes behind (the position always moves) is lag: either way never a mismatch.
        #expect(coin.mismatches == 0 && coin.noise + coin.matches + coin.lag == coin.executions, "\(coin)")
        let balance = try #require(report.statements.first { $0.label == "account balance" })
        #expect(balance.matches == balance.executions && balance.noise == 0)
        #expect(Set(report.members) == Set(h.fixture.sandbox.target.members.map(\.name)))
        for member in report.members { #expect((report.latency[member]?.count ?? 0) > 0, "\(member) served no statement") }
        let verdicts = Dictionary(uniqueKeysWithValues: checks.map { ($0.name, $0.verdict) })
        #expect(verdicts["shadow.mismatches"] == .pass && verdicts["shadow.noise"] == .warn && verdicts["shadow.canary"] == .pass)
        #expect(verdicts["shadow.traffic"] == .pass)
        // Kept in the state directory, for `pgha status`.
        #expect(ShadowReport.load(from: h.store) == report)
        #expect(FileManager.default.fileExists(atPath: ShadowReport.textPath(h.store)))
        h.expectNoSecrets(in: report)
    }

    @Test func aPlantedDifferenceOnOneMemberIsAMismatchWithItsRow() async throws {
        let h = try ShadowHarness(shadow: "queries: 60", workload: """
            statements:
              - name: project timestamps
                sql: SELECT name, created_at FROM projects ORDER BY name
              - name: project count
                sql: SELECT count(*) FROM projects
            """)
        // One member renders timestamps in another time zone: the application would see other text.
        let planted = try #require(h.fixture.sandbox.target.members.last)
        try h.member(planted.name).execute("ALTER SYSTEM SET timezone = 'America/New_York'", "SELECT pg_reload_conf()")
        defer { try? h.member(planted.name).execute("ALTER SYSTEM RESET timezone", "SELECT pg_reload_conf()") }
        try await Task.sleep(for: .milliseconds(300))

        let (report, checks) = try await h.runShadow()
        h.show(report, checks)
        let timestamps = try #require(report.statements.first { $0.label == "project timestamps" })
        let count = try #require(report.statements.first { $0.label == "project count" })
        // Members take turns: a third of the executions go to the planted member.
        // The report keeps the first few mismatches (examples), every one of them from the planted member.
        let kept = report.mismatches.filter { $0.member == planted.name }.count
        #expect(timestamps.mismatches > 0 && kept > 0 && kept <= timestamps.mismatches, "\(timestamps.mismatches) mismatches, \(kept) kept")
        #expect(count.mismatches == 0, "the count is the same everywhere")
        #expect(report.mismatches.allSatisfy { $0.member == planted.name }, "only \(planted.name) differs")
        let mismatch = try #require(report.mismatches.first)
        let single = try await h.source().query("SELECT name, created_at::text FROM projects ORDER BY name LIMIT 1")
        let firstName = try #require(single.string(0, 0)), firstTime = try #require(single.string(0, 1))
        #expect(mismatch.difference.kind == .rows)
        #expect(mismatch.difference.onlyLeft.first == [firstName, firstTime], "the single node's row: \(mismatch.difference.onlyLeft)")
        #expect(mismatch.difference.onlyRight.first?.first == firstName && mismatch.difference.onlyRight.first?.last??.hasSuffix("-05") == true,
                "the planted member's row, in New York time: \(mismatch.difference.onlyRight)")
        let gate = try #require(checks.first { $0.name == "shadow.mismatches" })
        #expect(gate.verdict == .fail)
        #expect(gate.observed.contains(planted.name) && gate.observed.contains(firstName), "\(gate.observed)")
        #expect(try String(contentsOfFile: ShadowReport.textPath(h.store), encoding: .utf8).contains("only on \(planted.name)"))
    }

    @Test func heldBackReplayIsLagNotAMismatch() async throws {
        let h = try ShadowHarness(shadow: "queries: 90\n  lag_recheck: 300ms\n  lag_budget: 300ms", workload: """
            statements:
              - name: probe rows
                sql: SELECT count(*), max(id) FROM shadow_lag_probe
            """)
        try h.source().execute("DROP TABLE IF EXISTS shadow_lag_probe", "CREATE TABLE shadow_lag_probe (id int PRIMARY KEY)", "INSERT INTO shadow_lag_probe VALUES (1)")
        defer { try? h.source().execute("DROP TABLE IF EXISTS shadow_lag_probe") }
        // Wait until every member has the table, then hold back one replica's replay. Patroni
        // resumes a paused replay unless the cluster is in maintenance mode.
        let held = try #require(h.fixture.sandbox.target.members.last)
        for m in h.fixture.sandbox.target.members {
            try await waitUntilTrue(.seconds(20)) { (try? await h.member(m.name, database: h.playbook.target.databases.project).query("SELECT to_regclass('shadow_lag_probe') IS NOT NULL").bool(0, 0)) == true }
        }
        try await h.setTargetMaintenance(true)
        do {
            try h.member(held.name).execute("SELECT pg_wal_replay_pause()")
            try h.source().execute("INSERT INTO shadow_lag_probe SELECT generate_series(2, 50)")
            let (report, checks) = try await h.runShadow()
            h.show(report, checks)
            try h.member(held.name).execute("SELECT pg_wal_replay_resume()")
            try await h.setTargetMaintenance(false)

            let probe = try #require(report.statements.first)
            #expect(report.totals.mismatches == 0, "a member behind is lag, not a mismatch: \(report.mismatches.map(\.difference.summary))")
            #expect(probe.lag > 0, "the paused member's executions")
            #expect(report.lag.allSatisfy { $0.member == held.name }, "only the paused member lags")
            #expect(probe.matches + probe.lag == probe.executions)
            #expect(report.lag.first?.difference.summary.contains("('50', '50')") == true, "the single node's answer: \(report.lag.first?.difference.summary ?? "-")")
            let verdicts = Dictionary(uniqueKeysWithValues: checks.map { ($0.name, $0) })
            #expect(verdicts["shadow.mismatches"]?.verdict == .pass)
            #expect(verdicts["shadow.lag"]?.verdict == .warn)
            #expect(verdicts["shadow.canary"]?.verdict == .fail, "the paused member cannot show the canary in time")
            #expect(verdicts["shadow.canary"]?.observed.contains("\(held.name) not visible") == true, "\(verdicts["shadow.canary"]?.observed ?? "")")
        } catch {
            try? h.member(held.name).execute("SELECT pg_wal_replay_resume()")
            try? await h.setTargetMaintenance(false)
            throw error
        }
    }

    @Test func theCaptureReadsTheSingleNodesOwnTrafficOrIsRefusedUntouched() async throws {
        let h = try ShadowHarness(shadow: "capture: {window: 2s, max_statements: 200}\n  queries: 60", workload: nil)
        let before = try await h.source(admin: true).query("SELECT name, setting FROM pg_settings WHERE name IN ('log_min_duration_statement', 'log_destination') ORDER BY name")
        let settingsBefore = (0..<before.rowCount).map { "\(before.string($0, 0) ?? "")=\(before.string($0, 1) ?? "")" }
        let collector = try await h.source(admin: true).query("SHOW logging_collector").string(0, 0)
        // The application's traffic during the window: a few reads and a write.
        let traffic = Task.detached {
            let app = try h.source()
            for i in 0..<40 {
                _ = try await app.query("SELECT aid, abalance FROM pgbench_accounts WHERE aid = $1", [.int(Int64(i + 1))])
                _ = try await app.query("SELECT count(*) FROM tasks WHERE done = $1", [.bool(i % 2 == 0)])
                try await Task.sleep(for: .milliseconds(40))
            }
            _ = try await app.query("UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1")
        }
        defer { traffic.cancel() }
        if collector == "on" {
            let (report, checks) = try await h.runShadow()
            h.show(report, checks)
            let capture = try #require(report.traffic.capture)
            #expect(capture.kept > 0 && capture.distinct >= 2, "\(capture)")
            #expect(capture.refused.keys.contains { $0.hasPrefix("UPDATE") })
            #expect(report.totals.mismatches == 0)
        } else {
            do {
                _ = try await h.runShadow()
                Issue.record("the capture ran without logging_collector")
            } catch let error as MigrationError {
                #expect(error.message.contains("logging_collector = off"), "\(error.message)")
            }
            print("[shadow] logging_collector is off on this sandbox's single node: the capture was refused as it must be")
        }
        _ = try? await traffic.value
        let after = try await h.source(admin: true).query("SELECT name, setting FROM pg_settings WHERE name IN ('log_min_duration_statement', 'log_destination') ORDER BY name")
        #expect((0..<after.rowCount).map { "\(after.string($0, 0) ?? "")=\(after.string($0, 1) ?? "")" } == settingsBefore, "the settings are as before")
        let journal = try h.store.load().steps.filter { $0.stage == .shadow }
        #expect(journal.allSatisfy { $0.phase == .undone }, "nothing of the stage is left open: \(journal.map { "\($0.name) \($0.phase)" })")
    }

    @Test func aCaptureWindowLeftOpenByACrashIsPutBackByTheNextRun() async throws {
        let h = try ShadowHarness(shadow: "queries: 30", workload: "statements:\n  - sql: SELECT 1\n")
        let admin = try h.source(admin: true)
        let read = { () throws -> String in
            let r = try admin.query("SELECT setting, (SELECT setting FROM pg_file_settings WHERE name = 'log_min_duration_statement' AND sourcefile LIKE '%auto.conf' ORDER BY seqno DESC LIMIT 1) FROM pg_settings WHERE name = 'log_min_duration_statement'")
            return "\(r.string(0, 0) ?? "?") auto.conf=\(r.string(0, 1) ?? "none")"
        }
        let before = try read()
        // What a run killed inside the window leaves: the journaled intent with the old values,
        // and the setting changed.
        let store = h.store
        let journal = StateJournal(state: try store.load(), store: store, redactor: .none, clock: SystemClock())
        let saved = try await admin.query("SELECT (SELECT setting FROM pg_file_settings WHERE name = 'log_min_duration_statement' AND sourcefile LIKE '%auto.conf' ORDER BY seqno DESC LIMIT 1)").string(0, 0)
        _ = try journal.beginStep(.shadow, name: "capture-window", detail: "killed inside the window",
                                  undo: .serverSettings(.init(server: "source", settings: [.init(name: "log_min_duration_statement", previousAutoConf: saved)])))
        try admin.execute("ALTER SYSTEM SET log_min_duration_statement = 0", "SELECT pg_reload_conf()")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try read().hasPrefix("0 "), "the window is open")
        defer { try? admin.execute(saved.map { "ALTER SYSTEM SET log_min_duration_statement = '\($0)'" } ?? "ALTER SYSTEM RESET log_min_duration_statement", "SELECT pg_reload_conf()") }

        let (report, _) = try await h.runShadow()
        try await Task.sleep(for: .milliseconds(300))
        #expect(try read() == before, "the next run put the setting back first")
        #expect(report.totals.executions == 30)
        #expect(try h.store.load().steps.filter { $0.stage == .shadow }.allSatisfy { $0.phase == .undone })
    }
}

func waitUntilTrue(_ timeout: Duration, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("condition not met within \(timeout)")
}

/// The rehearsal playbook for this sandbox, migrated up to sync, and the shadow stage around it.
struct ShadowHarness: Sendable {
    let cli: CLIHarness
    let fixture: SandboxFixture
    let directory: String
    let playbook: Playbook
    let environment: StaticEnvironment
    var store: StateStore { StateStore(directory: directory + "/state") }

    static var rehearsalWorkload: String {
        (try? String(contentsOfFile: CLIHarness.repository + "/playbooks/sandbox-workload.yml", encoding: .utf8)) ?? ""
    }

    /// `playbooks/sandbox.yml` with this sandbox's addresses and `shadow:` keys (indented two
    /// spaces) plus `workload: workload.yml` when `workload` is given.
    static func playbookText(_ sandbox: SandboxConfiguration, shadow: String, workload: Bool) throws -> String {
        var text = try String(contentsOfFile: CLIHarness.repository + "/playbooks/sandbox.yml", encoding: .utf8)
        text = text.replacingOccurrences(of: "127.0.0.1:12379", with: "\(sandbox.etcd.host):\(sandbox.etcd.clientPort)")
        text = text.replacingOccurrences(of: "host: 127.0.0.10\n  port: 15432", with: "host: \(sandbox.single.host)\n  port: \(sandbox.single.port)")
        for (i, old) in ["127.0.0.14", "127.0.0.15", "127.0.0.16"].enumerated() where i < sandbox.target.members.count {
            text = text.replacingOccurrences(of: "host: \(old)}", with: "host: \(sandbox.target.members[i].host)}")
        }
        guard let start = text.range(of: "\nshadow:\n"), let end = text.range(of: "\n# A rehearsal should") else {
            throw HarnessError("playbooks/sandbox.yml has no shadow: section")
        }
        let section = "\nshadow:\n" + (workload ? "  workload: workload.yml\n" : "") + "  " + shadow + "\n"
        text.replaceSubrange(start.lowerBound..<end.lowerBound, with: section)
        return text.replacingOccurrences(of: "on_failure: rollback", with: "on_failure: stop")
    }

    init(shadow: String, workload: String?) throws {
        cli = try CLIHarness.make()
        fixture = try SandboxFixture.load()
        directory = NSTemporaryDirectory() + "pgha-shadow-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let workload { try workload.write(toFile: directory + "/workload.yml", atomically: true, encoding: .utf8) }
        try Self.playbookText(fixture.sandbox, shadow: shadow, workload: workload != nil).write(toFile: directory + "/playbook.yml", atomically: true, encoding: .utf8)
        playbook = try PlaybookParser.load(path: directory + "/playbook.yml").playbook
        environment = StaticEnvironment(cli.environment)
        // A member the previous test disturbed (a reload, a restart) may still be settling: when
        // the target cluster runs, wait (up to 30 s) until every member's REST API answers, so the
        // prerequisites see the cluster as it is, not mid-restart.
        let members = fixture.sandbox.target.members
        for _ in 0..<60 {
            let answers = members.map { m in
                (try? ChildProcess(executable: "/usr/bin/curl", arguments: ["-s", "-o", "/dev/null", "-m", "1", "-w", "%{http_code}", "http://\(m.host):\(m.restPort)/health"],
                                   directory: directory, environment: [:], input: .none, scratch: cli.scratch).wait(timeout: 5).stdout) ?? ""
            }
            let running = answers.filter { $0 != "000" && !$0.isEmpty }.count
            if running == 0 || running == members.count { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        // The target cluster as a standby of the single node (started by sync when not running yet).
        let result = try ChildProcess(
            executable: cli.binary, arguments: ["run", "playbook.yml", "--state-dir", "state", "--until", "sync"], directory: directory,
            environment: cli.environment, input: .none, scratch: cli.scratch).wait(timeout: 600)
        guard result.exitCode == 0 else { throw HarnessError("pgha run --until sync failed: \(result)") }
    }

    /// The shadow stage's run and gate, as the runner would call them.
    func runShadow() async throws -> (ShadowReport, [CheckResult]) {
        let clock = SystemClock()
        let redactor = playbook.secretRedactor(environment: environment)
        let journal = StateJournal(state: try store.load(), store: store, redactor: redactor, clock: clock)
        let context = StageContext(
            playbook: playbook, playbookPath: directory + "/playbook.yml", workingDirectory: directory, store: store,
            environment: environment, redactor: redactor, journal: journal, clock: clock, cancellation: CancellationFlag(),
            logger: Logger(label: "pgha.tests.shadow"), stage: .shadow, progress: { print("[shadow] \($0)") })
        let stage = ShadowStage()
        let started = ContinuousClock.now
        try await stage.run(context)
        let checks = try await stage.gate(context)
        print("[shadow] run and gate in \(ContinuousClock.now - started)")
        return (try #require(ShadowReport.load(from: store)), checks)
    }

    func show(_ report: ShadowReport, _ checks: [CheckResult]) {
        Swift.print(report.table().split(separator: "\n").map { "[shadow] \($0)" }.joined(separator: "\n"))
        for c in checks { Swift.print("[shadow]   \(c.verdict.rawValue) \(c.name): \(c.observed)") }
    }

    func expectNoSecrets(in report: ShadowReport) {
        let json = String(decoding: (try? JSONEncoder().encode(report)) ?? Data(), as: UTF8.self) + report.table()
        for secret in cli.secrets { #expect(!json.contains(secret), "a password leaked into the shadow report") }
    }

    /// The single node as the application role (or the superuser).
    func source(admin: Bool = false) throws -> PGConnection {
        let s = fixture.sandbox
        return try PGConnection.connect(PGConnectionConfig(
            host: s.single.host, port: s.single.port, database: s.single.projectDatabase,
            user: admin ? s.users.superuser : s.users.application, password: try admin ? s.password(\.superuser) : s.password(\.application)))
    }

    /// A target member as the superuser.
    func member(_ name: String, database: String = "postgres") throws -> PGConnection {
        let m = try #require(fixture.sandbox.target.members.first { $0.name == name })
        return try PGConnection.connect(PGConnectionConfig(host: m.host, port: m.pgPort, database: database, user: fixture.sandbox.users.superuser, password: try fixture.sandbox.password(\.superuser)))
    }

    /// Patroni's maintenance mode on the target cluster (PATCH /config {"pause": on}), applied.
    func setTargetMaintenance(_ on: Bool) async throws {
        var http = HTTPClientConfiguration()
        http.basicAuth = .init(user: fixture.sandbox.users.restAPI, password: try fixture.sandbox.password(\.restAPI))
        let client = HTTPClient(configuration: http)
        var done = false
        for m in fixture.sandbox.target.members where !done {
            let response = try? await client.send(HTTPRequest(method: .patch, url: "http://\(m.host):\(m.restPort)/config",
                                                                headers: ["Content-Type": "application/json"], body: Array("{\"pause\": \(on)}".utf8)))
            done = response?.status == 200
        }
        try #require(done, "PATCH /config pause=\(on) failed on every target member")
        try await waitUntilTrue(.seconds(30)) {
            for m in fixture.sandbox.target.members {
                guard let r = try? await client.send(HTTPRequest(method: .get, url: "http://\(m.host):\(m.restPort)/cluster")),
                      r.status == 200 else { return false }
                let body = String(decoding: r.body, as: UTF8.self).replacingOccurrences(of: " ", with: "")
                let paused = body.contains("\"pause\":true")
                if paused != on { return false }
            }
            return true
        }
    }
}

extension PGConnection {
    /// Runs each statement in turn.
    func execute(_ statements: String...) throws {
        for s in statements { _ = try query(s) }
    }
}
