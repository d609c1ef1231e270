import Foundation
import ShadowCompare
import Testing
@testable import Migration

@Suite("Shadow stage: playbook section and workload files")
struct ShadowPlaybookTests {
    func playbook(_ shadow: String) throws(MigrationError) -> Playbook {
        try PlaybookParser.parse(samplePlaybookYAML() + "\n" + shadow, file: "playbooks/x.yml")
    }

    func issues(_ text: String, workload: Bool = false) -> [String] {
        do {
            if workload { _ = try ShadowWorkload.parse(text, file: "w.yml") } else { _ = try playbook(text) }
            Issue.record("accepted")
            return []
        } catch {
            return error.issues.map(\.description)
        }
    }

    @Test func defaultsWithoutASection() throws {
        let p = try playbook("")
        #expect(!p.shadow.configured)
        #expect(p.shadow.queries == 2_000 && p.shadow.concurrency == 2 && p.shadow.maxP99Ratio == 2)
    }

    @Test func theSectionParses() throws {
        let p = try playbook("""
            shadow:
              workload: w.yml
              capture: {window: 10s, max_statements: 50, max_bytes: 1MB}
              duration: 30s
              queries: 100
              concurrency: 4
              statement_timeout: 2s
              max_p99_ratio: 1.5
              p99_slack: 3ms
              lag_budget: 500ms
              lag_recheck: 1s
              report_mismatches: 7
            """)
        let s = p.shadow
        #expect(s.configured && s.workload == "w.yml")
        #expect(s.capture == .init(windowSeconds: 10, maxStatements: 50, maxBytes: 1 << 20))
        #expect(s.durationSeconds == 30 && s.queries == 100 && s.concurrency == 4 && s.statementTimeoutSeconds == 2)
        #expect(s.maxP99Ratio == 1.5 && abs(s.p99SlackSeconds - 0.003) < 1e-9 && s.lagBudgetSeconds == 0.5 && s.lagRecheckSeconds == 1)
        #expect(s.reportMismatches == 7)
    }

    @Test func problemsNameTheKeyAndTheFix() {
        #expect(issues("shadow:\n  queries: 10\n").first?.contains("shadow: needs a traffic source: add workload:") == true)
        let ratio = issues("shadow:\n  workload: w.yml\n  max_p99_ratio: 0.5\n")
        #expect(ratio.first?.contains("shadow.max_p99_ratio: expected a number of at least 1") == true, "\(ratio)")
        let typo = issues("shadow:\n  workload: w.yml\n  concurency: 2\n")
        #expect(typo.first?.contains("did you mean 'concurrency'") == true, "\(typo)")
    }

    @Test func aWorkloadFileParses() throws {
        let w = try ShadowWorkload.parse("""
            statements:
              - name: balance
                sql: SELECT abalance FROM pgbench_accounts WHERE aid = $1
                weight: 3
                params: [[1], [2], [null]]
              - sql: |
                  SELECT count(*)
                  FROM pgbench_branches
            """, file: "w.yml")
        #expect(w.statements.count == 2)
        #expect(w.statements[0] == .init(name: "balance", sql: "SELECT abalance FROM pgbench_accounts WHERE aid = $1", weight: 3, params: [["1"], ["2"], [nil]]))
        #expect(w.statements[1].sql == "SELECT count(*)\nFROM pgbench_branches" && w.statements[1].weight == 1)
    }

    @Test func aWorkloadFileRefusesWritesAndWrongParameters() {
        let found = issues("""
            statements:
              - sql: DELETE FROM t
              - sql: SELECT * FROM t WHERE a = $1 AND b = $2
                params: [[1]]
              - sql: SELECT * FROM t WHERE a = $1
              - sql: SELECT nextval('s')
            """, workload: true)
        #expect(found.count == 4, "\(found)")
        #expect(found[0].hasPrefix("w.yml:2:10: statements[0].sql: is not a read-only statement (DELETE statement"), "\(found)")
        #expect(found[1].contains("statements[1].params[0]: has 1 value but the statement uses $1…$2: give exactly 2"), "\(found)")
        #expect(found[2].contains("statements[2]: the statement uses $1…$1: add params:"), "\(found)")
        #expect(found[3].contains("calls nextval()"), "\(found)")
    }

    @Test func theShippedWorkloadIsValidAndReadOnly() throws {
        let w = try ShadowWorkload.load(path: repositoryRoot + "/playbooks/sandbox-workload.yml")
        #expect(w.statements.count >= 5)
        #expect(w.statements.allSatisfy { SQLText($0.sql).safety == .readOnly })
        let p = try PlaybookParser.load(path: repositoryRoot + "/playbooks/sandbox.yml").playbook
        #expect(p.shadow.workload == "playbooks/sandbox-workload.yml")
    }
}

@Suite("Shadow stage: capture, scheduling, report and gate")
struct ShadowStagePureTests {
    // MARK: - Capture

    @Test func captureIsRefusedWithoutTheLoggingCollector() {
        let observed = [ShadowCapture.ObservedSetting(name: "log_min_duration_statement", value: "-1", autoConf: nil),
                        ShadowCapture.ObservedSetting(name: "log_destination", value: "stderr", autoConf: nil)]
        guard case .failure(let refusal) = ShadowCapture.plan(loggingCollector: "off", observed: observed) else {
            Issue.record("planned without the collector")
            return
        }
        #expect(refusal.reason.contains("logging_collector = off") && refusal.advice.contains("shadow.workload"))
    }

    @Test func captureSettingsAndTheirRestore() throws {
        let observed = [ShadowCapture.ObservedSetting(name: "log_min_duration_statement", value: "250", autoConf: "250ms"),
                        ShadowCapture.ObservedSetting(name: "log_destination", value: "stderr", autoConf: nil)]
        let plan = try ShadowCapture.plan(loggingCollector: "on", observed: observed).get()
        #expect(plan.statements == ["ALTER SYSTEM SET log_min_duration_statement = 0", "ALTER SYSTEM SET log_destination = 'stderr,csvlog'"])
        #expect(ShadowCapture.restore(plan.undo) == ["ALTER SYSTEM SET log_min_duration_statement = '250ms'", "ALTER SYSTEM RESET log_destination"])
        // csvlog already there: kept as it is.
        let again = try ShadowCapture.plan(loggingCollector: "on", observed: [observed[0], .init(name: "log_destination", value: "csvlog", autoConf: "csvlog")]).get()
        #expect(again.statements[1] == "ALTER SYSTEM SET log_destination = 'csvlog'")
    }

    @Test func theUndoRecordSurvivesTheStateFile() throws {
        let undo = StepUndo.serverSettings(.init(server: "source", settings: [.init(name: "log_destination", previousAutoConf: nil), .init(name: "log_min_duration_statement", previousAutoConf: "1s")]))
        let table = StepUndo.table(.init(server: "source", database: "db", name: "public.pgha_shadow_canary"))
        for value in [undo, table] {
            let data = try JSONEncoder().encode(value)
            #expect(try JSONDecoder().decode(StepUndo.self, from: data) == value)
        }
        #expect(undo.kind == "server-settings" && table.kind == "table")
    }

    static func csvLine(_ fields: [String]) -> String {
        fields.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: ",") + "\n"
    }

    static func logEntry(db: String = "app", message: String, detail: String = "", app: String = "web") -> String {
        var f = Array(repeating: "", count: 26)
        f[0] = "2026-12-02 10:00:00.000 UTC"; f[1] = "dpg"; f[2] = db; f[11] = "LOG"; f[12] = "00000"
        f[13] = message; f[14] = detail; f[22] = app
        return csvLine(f)
    }

    @Test func theCsvlogBecomesStatementsWithParameters() {
        let log = Self.logEntry(message: "duration: 0.050 ms  parse <unnamed>: SELECT * FROM t WHERE a = $1")
            + Self.logEntry(message: "duration: 0.020 ms  bind <unnamed>: SELECT * FROM t WHERE a = $1", detail: "parameters: $1 = '5'")
            + Self.logEntry(message: "duration: 0.100 ms  execute <unnamed>: SELECT * FROM t WHERE a = $1 AND b = $2", detail: "parameters: $1 = 'it''s', $2 = NULL")
            + Self.logEntry(message: "duration: 0.200 ms  statement: SELECT \"quoted\", 'x,y'\nFROM t")
            + Self.logEntry(message: "duration: 0.300 ms  statement: UPDATE t SET a = 1")
            + Self.logEntry(db: "other", message: "duration: 0.100 ms  statement: SELECT 1")
            + Self.logEntry(message: "duration: 0.100 ms  statement: SELECT 2", app: "pgha-shadow")
            + Self.logEntry(message: "connection authorized: user=dpg database=app")
            + Self.logEntry(message: "duration: 0.100 ms  statement: SELECT 3")
        let parsed = ShadowCapture.parse(csv: log, database: "app", limit: 2)
        #expect(parsed.statements == [
            CapturedStatement(sql: "SELECT * FROM t WHERE a = $1 AND b = $2", params: ["it's", nil]),
            CapturedStatement(sql: "SELECT \"quoted\", 'x,y'\nFROM t"),
        ])
        #expect(parsed.seen == 4, "execute, statement, UPDATE, SELECT 3 (not parse/bind, other databases, pgha, non-statements)")
        #expect(parsed.refused == ["UPDATE statement (only SELECT, WITH, VALUES, TABLE and SHOW are shadowed)": 1])
        #expect(parsed.overLimit == 1)
    }

    @Test func capturedStatementsMergeByText() {
        let traffic = ShadowTraffic(workload: nil, captured: [
            .init(sql: "SELECT * FROM t WHERE a = $1", params: ["1"]), .init(sql: "SELECT * FROM t WHERE a = $1", params: ["2"]), .init(sql: "SELECT 1"),
        ])
        #expect(traffic.statements.count == 2)
        #expect(traffic.statements[0].weight == 2 && traffic.statements[0].params == [["1"], ["2"]] && traffic.statements[0].origin == .capture)
    }

    // MARK: - Scheduling

    @Test func theSchedulerFollowsWeightsCyclesParametersAndMembers() {
        let traffic = ShadowTraffic(workload: ShadowWorkload(statements: [
            .init(sql: "SELECT $1::int", weight: 3, params: [["1"], ["2"]]), .init(sql: "SELECT 2", weight: 1),
        ]), captured: [])
        var scheduler = ShadowScheduler(traffic: traffic, memberCount: 3, seed: 7)
        var jobs: [ShadowScheduler.Job] = []
        for _ in 0..<400 { jobs.append(scheduler.next()!) }
        #expect(jobs.filter { $0.statement == 0 }.count == 300)
        #expect(jobs.map(\.member) == (0..<400).map { $0 % 3 })
        let params = jobs.filter { $0.statement == 0 }.map(\.params)
        #expect(params.filter { $0 == ["1"] }.count == 150 && params.filter { $0 == ["2"] }.count == 150)
        var same = ShadowScheduler(traffic: traffic, memberCount: 3, seed: 7)
        #expect((0..<400).map { _ in same.next()! } == jobs, "the same seed replays the same sequence")
        var none = ShadowScheduler(traffic: ShadowTraffic(workload: nil, captured: []), memberCount: 3)
        #expect(none.next() == nil)
    }

    // MARK: - Tally, report, gate

    static let columns = [ResultSnapshot.Column(name: "aid", typeOID: 23), ResultSnapshot.Column(name: "note", typeOID: 25)]
    static func rows(_ r: [[String?]]) -> ExecutionOutcome { .rows(ResultSnapshot(columns: columns, rows: r)) }

    func report(_ executions: [ShadowExecution], statements: [ShadowStatement], canary: [ShadowReport.CanaryResult]? = nil, mask: @escaping @Sendable (String) -> String = { $0 }) -> ShadowReport {
        var tally = ShadowTally(statements: statements, keepExamples: 5, mask: mask)
        for e in executions { tally.add(e) }
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        return tally.report(
            startedAt: start, finishedAt: start.addingTimeInterval(2), members: ["ha1", "ha2"],
            traffic: .init(workloadFile: "w.yml", workloadStatements: statements.count, capture: nil),
            canary: canary ?? [.init(member: "ha1", visibleAfterMs: 3), .init(member: "ha2", visibleAfterMs: 4)],
            limits: .init(maxP99Ratio: 2, p99SlackMs: 5, lagBudgetMs: 1000))
    }

    @Test func aPlantedDifferenceFailsTheGateNamingItsRow() throws {
        let statements = [ShadowStatement(name: "notes", sql: "SELECT aid, note FROM notes WHERE aid = $1", origin: .workload)]
        let classification = ShadowClassification.classify(
            primary: Self.rows([["1", "original"]]), secondary: Self.rows([["1", "original"]]), candidate: Self.rows([["1", "planted"]]),
            ordered: false, candidateBehind: false, candidateName: "ha2")
        var executions = (0..<9).map { _ in ShadowExecution(statement: 0, member: "ha1", params: ["1"], classification: .match, sourceLatency: .microseconds(300), memberLatency: .microseconds(350)) }
        executions.append(ShadowExecution(statement: 0, member: "ha2", params: ["1"], classification: classification, sourceLatency: .microseconds(300), memberLatency: .microseconds(400)))
        let r = report(executions, statements: statements)
        #expect(r.totals.mismatches == 1 && r.totals.matches == 9)
        let mismatch = try #require(r.mismatches.first)
        #expect(mismatch.member == "ha2" && mismatch.params == ["1"] && mismatch.sql.contains("FROM notes"))
        #expect(mismatch.difference.onlyLeft == [["1", "original"]] && mismatch.difference.onlyRight == [["1", "planted"]])
        let gate = ShadowGate.evaluate(r)
        let check = try #require(gate.first { $0.name == "shadow.mismatches" })
        #expect(check.verdict == .fail)
        #expect(check.observed.contains("1 only on ha2: ('1', 'planted')"), "\(check.observed)")
        #expect(r.table().contains("params: $1 = '1'"))
    }

    @Test func noiseAndLagAreWarningsNeverMismatches() {
        let statements = [ShadowStatement(sql: "SELECT now()", origin: .workload), ShadowStatement(sql: "SELECT aid, note FROM notes", origin: .workload)]
        let noise = ShadowClassification.classify(primary: Self.rows([["1", "a"]]), secondary: Self.rows([["1", "b"]]), candidate: Self.rows([["1", "c"]]), ordered: false, candidateBehind: false)
        let lag = ShadowClassification.classify(primary: Self.rows([["1", "a"]]), secondary: Self.rows([["1", "a"]]), candidate: Self.rows([]), ordered: false, candidateBehind: true)
        let r = report([
            ShadowExecution(statement: 0, member: "ha1", params: [], classification: noise, sourceLatency: .microseconds(100), memberLatency: .microseconds(100)),
            ShadowExecution(statement: 1, member: "ha2", params: [], classification: lag, sourceLatency: .microseconds(100), memberLatency: .microseconds(100), memberBehind: true),
        ], statements: statements)
        #expect(r.totals.mismatches == 0 && r.totals.noise == 1 && r.totals.lag == 1)
        let gate = Dictionary(uniqueKeysWithValues: ShadowGate.evaluate(r).map { ($0.name, $0.verdict) })
        #expect(gate["shadow.mismatches"] == .pass && gate["shadow.noise"] == .warn && gate["shadow.lag"] == .warn)
        #expect(r.noise.count == 1 && r.lag.first?.member == "ha2")

        // `random() < 0.5`: the single node agreed with itself once and the member differed; once
        // the statement shows noise, that difference is noise too.
        let coin = [ShadowStatement(sql: "SELECT random() < 0.5", origin: .workload)]
        let t = ExecutionOutcome.rows(ResultSnapshot(columns: [.init(name: "x", typeOID: 16)], rows: [["t"]]))
        let f = ExecutionOutcome.rows(ResultSnapshot(columns: [.init(name: "x", typeOID: 16)], rows: [["f"]]))
        let flips = report([
            ShadowExecution(statement: 0, member: "ha1", params: [], classification: ShadowClassification.classify(primary: t, secondary: t, candidate: f, ordered: false, candidateBehind: false)),
            ShadowExecution(statement: 0, member: "ha2", params: [], classification: ShadowClassification.classify(primary: t, secondary: f, candidate: f, ordered: false, candidateBehind: false)),
        ], statements: coin)
        #expect(flips.totals.mismatches == 0 && flips.totals.noise == 2 && flips.mismatches.isEmpty && flips.statements[0].noise == 2)
        #expect(ShadowGate.evaluate(flips).first { $0.name == "shadow.mismatches" }?.verdict == .pass)
    }

    @Test func latencyBudgetAndCanary() {
        let statements = [ShadowStatement(sql: "SELECT 1", origin: .workload)]
        let slow = (0..<100).map { _ in ShadowExecution(statement: 0, member: "ha1", params: [], classification: .match, sourceLatency: .milliseconds(1), memberLatency: .milliseconds(20)) }
        let r = report(slow, statements: statements, canary: [.init(member: "ha1", visibleAfterMs: 3), .init(member: "ha2", visibleAfterMs: 2500)])
        let gate = Dictionary(uniqueKeysWithValues: ShadowGate.evaluate(r).map { ($0.name, $0) })
        #expect(gate["shadow.latency"]?.verdict == .fail, "20 ms > max(2 × 1 ms, 1 ms + 5 ms)")
        #expect(gate["shadow.canary"]?.verdict == .fail)
        #expect(gate["shadow.canary"]?.advice?.contains("ha2") == true)
        // Within the slack: 5.5 ms ≤ max(2 × 1 ms, 1 ms + 5 ms).
        let fine = (0..<100).map { _ in ShadowExecution(statement: 0, member: "ha1", params: [], classification: .match, sourceLatency: .milliseconds(1), memberLatency: .microseconds(5_500)) }
        #expect(ShadowGate.evaluate(report(fine, statements: statements)).first { $0.name == "shadow.latency" }?.verdict == .pass)
        #expect(ShadowGate.evaluate(nil).first?.verdict == .fail)
        let empty = report([], statements: statements)
        #expect(ShadowGate.evaluate(empty).first { $0.name == "shadow.traffic" }?.verdict == .fail)
    }

    @Test func secretsAreMaskedInTheReport() throws {
        let statements = [ShadowStatement(sql: "SELECT id FROM users WHERE password_hash = $1", origin: .capture),
                          ShadowStatement(sql: "SELECT note FROM notes WHERE owner = $1", origin: .capture)]
        let d = ShadowClassification.classify(primary: Self.rows([["1", "hunter2-secret-value"]]), secondary: Self.rows([["1", "hunter2-secret-value"]]), candidate: Self.rows([]), ordered: false, candidateBehind: false)
        let redactor = SecretRedactor(secrets: ["hunter2-secret-value"])
        let r = report([
            ShadowExecution(statement: 0, member: "ha1", params: ["$2b$10$abcdef"], classification: d),
            ShadowExecution(statement: 1, member: "ha1", params: ["hunter2-secret-value"], classification: d),
        ], statements: statements, mask: { redactor.redact($0) })
        let json = String(decoding: try JSONEncoder().encode(r), as: UTF8.self)
        #expect(!json.contains("hunter2-secret-value") && !r.table().contains("hunter2-secret-value"))
        #expect(!json.contains("abcdef"), "a parameter of a statement about passwords is masked whatever it is")
        #expect(r.mismatches[0].params == ["***"])
    }
}
