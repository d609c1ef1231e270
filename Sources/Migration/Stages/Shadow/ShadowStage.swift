import Foundation
import PGClient
import PlainText
import ShadowCompare
import Synchronization

/// `shadow`: the application's read traffic on the single node and on every cluster member side
/// by side, answers compared, before anything switches (docs/MIGRATION_TO_HA.md, "The shadow stage").
///
/// Run, every side effect journaled first:
/// 1. `capture-window` (with `shadow.capture`): the single node logs every statement with its
///    parameters into a csvlog for the window (`ALTER SYSTEM` + reload; the previous values are
///    journaled before and put back after the window, on resume after a crash, and by rollback);
///    the log is read with `pg_read_file` and parsed into statements;
/// 2. the replay: the workload's and the captured read-only statements, by weight, each run twice
///    on the single node (Diffy's primary and secondary: differing answers are noise) and once on a
///    member in turn, in `REPEATABLE READ, READ ONLY` transactions with `statement_timeout`;
///    compared order-insensitively unless the statement orders its result, values by type; a
///    difference on a member that had not replayed the single node's position is lag (re-run once
///    after it caught up), not a mismatch; latencies in HdrHistograms per side and statement;
/// 3. `canary`: a row written on the single node (table `public.pgha_shadow_canary`, created and
///    dropped again) must become visible on every member within `shadow.lag_budget`;
/// 4. the report (`<state-dir>/shadow/report.json` and `report.txt`), shown by `pgha status`.
///
/// Gate (`ShadowGate`): 0 mismatches; the cluster's p99 within the budget; the canary on every
/// member in time; noise and lag reported as WARN, never dropped.
public struct ShadowStage: MigrationStageExecutor {
    public let stage = MigrationStage.shadow
    /// The canary's table and the journal only: the replay itself never writes.
    public let makesChanges = true
    static let canaryTable = "public.pgha_shadow_canary"
    static let captureStep = "capture-window"
    static let canaryStep = "canary"

    public init() {}

    public func notApplicableReason(for playbook: Playbook) -> String? {
        switch playbook.sync.method {
        case .physical: return nil
        case .logical:
            // Its lag checks follow physical replay (a member's replay LSN against the single
            // node's), and its canary table would be DDL on the single node during a logical sync.
            return "skipped: the shadow replay of this version of pgha compares members by their physical replay of the single node's WAL, which the logical method's cluster does not have; the logical method's data is checked by the sync's gate and `pgha compare`"
        }
    }

    public func plan(_ context: StageContext) async throws -> StagePlan {
        let s = context.playbook.shadow
        var warnings: [String] = []
        if !s.configured {
            warnings.append("the playbook has no shadow: section (shadow.workload and/or shadow.capture): the stage has no traffic to compare and fails (docs/PLAYBOOKS.md)")
        }
        if s.capture != nil, context.playbook.source.adminUser == nil {
            warnings.append("shadow.capture needs source.admin_user (a superuser: ALTER SYSTEM, pg_read_file)")
        }
        var changes = ["write one canary row on the single node (table \(Self.canaryTable), created for the check and dropped after it)"]
        if let c = s.capture {
            changes.insert("for \(Int(c.windowSeconds)) s, log every statement of the single node with its parameters (ALTER SYSTEM SET log_min_duration_statement = 0, csvlog added to log_destination; put back right after the window)", at: 0)
        }
        return StagePlan(
            stage: stage, makesChanges: true,
            summary: "Replays \(s.trafficDescription) on the single node and on every member side by side (up to \(s.queries) executions or \(Int(s.durationSeconds)) s, \(s.concurrency) at a time, read-only transactions, statement_timeout \(s.statementTimeoutSeconds) s) and compares the answers.",
            checks: [
                "0 mismatches: every member answers as the single node (order-insensitive unless ORDER BY, values by type, errors on one side only count)",
                "noise (the single node answering differently to itself: now(), random(), an unordered LIMIT) and lag (a member that had not replayed the single node's position) are reported, never mismatches",
                "the cluster's p99 ≤ max(\(s.maxP99Ratio)× the single node's, + \(Int(s.p99SlackSeconds * 1000)) ms)",
                "a write on the single node visible on every member within \(Int(s.lagBudgetSeconds * 1000)) ms",
            ],
            changes: changes,
            undo: ["capture settings put back as postgresql.auto.conf had them; the canary table dropped (if a crash left it)"],
            warnings: warnings)
    }

    public func run(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let p = context.playbook
        let s = p.shadow
        let connections = StageConnections(context)
        // A crash may have left the capture's settings or the canary table behind.
        try await settle(context, journal: journal, connections: connections)
        guard s.configured else {
            throw MigrationError(.stageFailed, "the playbook has no shadow: section: give shadow.workload (a file of the application's read statements) and/or shadow.capture (docs/PLAYBOOKS.md), then `pgha resume`")
        }

        var workload: ShadowWorkload?
        if let file = s.workload {
            workload = try ShadowWorkload.load(path: ConfigRenderer.absolutePath(file, in: context.workingDirectory))
        }
        var captured: [CapturedStatement] = []
        var captureSummary: ShadowReport.CaptureSummary?
        if let capture = s.capture {
            (captured, captureSummary) = try await self.capture(capture, context: context, journal: journal, connections: connections)
        }
        let traffic = ShadowTraffic(workload: workload, captured: captured)
        guard !traffic.isEmpty else {
            throw MigrationError(.stageFailed, "no statement to replay: the workload is empty and the capture found no read-only statement of \(p.source.databases.project)")
        }

        let replay = ShadowReplay(connections: connections, settings: s)
        let members = try await replay.members()
        context.progress("replaying \(traffic.statements.count) statements against the single node and \(members.map(\.name).joined(separator: ", ")) (\(s.concurrency) at a time, up to \(s.queries) executions or \(Int(s.durationSeconds)) s)")
        let startedAt = context.clock.now()
        let tally = try await replayAll(traffic, members: members, replay: replay, context: context)
        let finishedAt = context.clock.now()

        let canary = try await self.canary(members: members, context: context, journal: journal, connections: connections)
        let report = tally.report(
            startedAt: startedAt, finishedAt: finishedAt, members: members.map(\.name),
            traffic: .init(workloadFile: s.workload, workloadStatements: workload?.statements.count ?? 0, capture: captureSummary),
            canary: canary,
            limits: .init(maxP99Ratio: s.maxP99Ratio, p99SlackMs: s.p99SlackSeconds * 1000, lagBudgetMs: s.lagBudgetSeconds * 1000))
        try report.save(in: context.store, redactor: context.redactor)
        context.progress(report.headline)
        context.progress("report: \(ShadowReport.textPath(context.store)) (and report.json); `pgha status` shows it")
    }

    public func gate(_ context: StageContext) async throws -> [CheckResult] {
        ShadowGate.evaluate(ShadowReport.load(from: context.store)).map { $0.redacted(by: context.redactor) }
    }

    public func undo(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        try await settle(context, journal: journal, connections: StageConnections(context))
        for step in journal.steps(of: stage) where step.phase == .done || step.phase == .intent {
            try journal.markStepUndone(step.id)
        }
    }

    // MARK: - Replay

    func replayAll(_ traffic: ShadowTraffic, members: [ShadowMember], replay: ShadowReplay, context: StageContext) async throws -> ShadowTally {
        let s = context.playbook.shadow
        let shared = ReplayState(
            scheduler: ShadowScheduler(traffic: traffic, memberCount: members.count),
            tally: ShadowTally(statements: traffic.statements, keepExamples: s.reportMismatches, mask: { [redactor = context.redactor] in redactor.redact($0) }),
            workers: s.concurrency)
        let deadline = context.clock.now().addingTimeInterval(s.durationSeconds)
        let started = context.clock.now()
        let queries = s.queries

        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<s.concurrency {
                group.addTask {
                    let session = ShadowReplay.Session(replay: replay)
                    defer {
                        session.close()
                        shared.running.subtract(1, ordering: .sequentiallyConsistent)
                    }
                    while true {
                        try context.checkCancellation()
                        if context.clock.now() >= deadline { return }
                        guard shared.issued.add(1, ordering: .relaxed).newValue <= queries, let job = shared.scheduler.withLock({ $0.next() }) else { return }
                        let execution = try await replay.execute(
                            traffic.statements[job.statement], params: job.params, on: members[job.member], session: session,
                            context: context, index: job.statement)
                        shared.tally.withLock { $0.add(execution) }
                    }
                }
            }
            group.addTask {
                var meter = ProgressMeter()
                while shared.running.load(ordering: .sequentiallyConsistent) > 0 {
                    let t = shared.tally.withLock { $0.totals }
                    let now = context.clock.now()
                    context.activity.progress(meter.transfer(
                        task: "shadow", title: "shadow replay", unit: .items, done: Int64(t.executions), total: Int64(queries), at: now,
                        detail: "\(Int(now.timeIntervalSince(started))) of \(Int(s.durationSeconds)) s; \(t.mismatches) mismatches, \(t.noise) noise, \(t.lag) lag"))
                    try? await context.clock.sleep(for: .milliseconds(500))
                    if context.cancellation.isCancelled || Task.isCancelled { return }
                }
                let t = shared.tally.withLock { $0.totals }
                context.activity.progress(meter.transfer(
                    task: "shadow", title: "shadow replay", unit: .items, done: Int64(t.executions), total: Int64(t.executions), at: context.clock.now(),
                    detail: "\(t.mismatches) mismatches, \(t.noise) noise, \(t.lag) lag"))
            }
            try await group.waitForAll()
        }
        return shared.tally.withLock { $0 }
    }

    /// What the replay's workers share.
    final class ReplayState: Sendable {
        let scheduler: Mutex<ShadowScheduler>
        let tally: Mutex<ShadowTally>
        /// Executions handed out so far.
        let issued = Atomic<Int>(0)
        /// Workers still running.
        let running: Atomic<Int>

        init(scheduler: ShadowScheduler, tally: ShadowTally, workers: Int) {
            self.scheduler = Mutex(scheduler)
            self.tally = Mutex(tally)
            self.running = Atomic(workers)
        }
    }

    // MARK: - Capture

    func capture(
        _ capture: Playbook.Shadow.Capture, context: StageContext, journal: StateJournal, connections: StageConnections
    ) async throws -> ([CapturedStatement], ShadowReport.CaptureSummary) {
        let p = context.playbook
        guard let login = connections.sourceAdminLogin(database: p.source.databases.project) else {
            throw MigrationError(.stageFailed, "shadow.capture needs source.admin_user (a superuser on the single node: ALTER SYSTEM, pg_read_file)")
        }
        let (admin, observation) = await connections.connect(login, applicationName: ShadowReplay.applicationName)
        guard let admin else {
            throw MigrationError(.stageFailed, "cannot log in to the single node as \(login.user): \(observation.error ?? "?")")
        }
        defer { admin.close() }
        let collector = try await admin.query("SELECT current_setting('logging_collector')", timeout: .seconds(10)).string(0, 0) ?? "?"
        let settings = try await admin.query("""
            SELECT s.name, s.setting,
                   (SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name AND f.sourcefile LIKE '%postgresql.auto.conf' ORDER BY f.seqno DESC LIMIT 1)
            FROM pg_settings s WHERE s.name = ANY($1::text[])
            """, [.text("{" + ShadowCapture.settingNames.joined(separator: ",") + "}")], timeout: .seconds(10))
        let observed = (0..<settings.rowCount).map { ShadowCapture.ObservedSetting(name: settings.string($0, 0) ?? "", value: settings.string($0, 1) ?? "", autoConf: settings.string($0, 2)) }
        let plan: (statements: [String], undo: [StepUndo.ServerSettings.Setting])
        switch ShadowCapture.plan(loggingCollector: collector, observed: observed) {
        case .success(let planned): plan = planned
        case .failure(let refusal): throw MigrationError(.stageFailed, "shadow.capture: \(refusal.reason). Next: \(refusal.advice)")
        }

        let id = try journal.beginStep(stage, name: Self.captureStep, detail: "log every statement of the single node for \(Int(capture.windowSeconds)) s",
                                       undo: .serverSettings(.init(server: "source", settings: plan.undo)))
        var logBytes: Int64 = 0
        var text = ""
        do {
            for statement in plan.statements { _ = try await admin.query(statement, timeout: .seconds(10)) }
            _ = try await admin.query("SELECT pg_reload_conf()", timeout: .seconds(10))
            try journal.completeStep(id)
            context.progress("capture: the single node logs every statement (log_min_duration_statement = 0, csvlog) for \(Int(capture.windowSeconds)) s")
            // The collector opens the csv file once the reload reached it.
            var start: (file: String, size: Int64)?
            for _ in 0..<50 {
                if let position = try await logPosition(admin) { start = position; break }
                try await context.sleep(for: .milliseconds(100))
            }
            guard let start else { throw MigrationError(.stageFailed, "the single node opened no csvlog after the reload (pg_current_logfile('csvlog') stays empty)") }
            let began = context.clock.now()
            var meter = ProgressMeter()
            while true {
                let elapsed = context.clock.now().timeIntervalSince(began)
                context.activity.progress(meter.transfer(task: "capture", title: "capturing the single node's traffic", unit: .items,
                                                         done: Int64(elapsed), total: Int64(capture.windowSeconds), at: context.clock.now(), detail: "seconds of the window"))
                if elapsed >= capture.windowSeconds { break }
                try await context.sleep(for: .milliseconds(Int64(min(1, capture.windowSeconds - elapsed) * 1000)))
            }
            let end = try await logPosition(admin) ?? start
            var chunks: [(String, Int64, Int64)] = []
            if end.file == start.file {
                chunks.append((start.file, start.size, end.size - start.size))
            } else {
                let oldSize = try await fileSize(admin, start.file) ?? start.size
                chunks.append((start.file, start.size, oldSize - start.size))
                chunks.append((end.file, 0, end.size))
            }
            for (file, offset, length) in chunks where length > 0 {
                let take = min(length, capture.maxBytes - logBytes)
                guard take > 0 else { break }
                let r = try await admin.query("SELECT pg_read_file($1, $2, $3)", [.text(file), .int(offset), .int(take)], timeout: .seconds(60))
                text += r.string(0, 0) ?? ""
                logBytes += take
            }
        } catch {
            try? await restoreSettings(plan.undo, connection: admin)
            try journal.markStepUndone(id)
            throw error
        }
        try await restoreSettings(plan.undo, connection: admin)
        try journal.markStepUndone(id)
        context.progress("capture: settings put back; read \(formatBytes(logBytes)) of csvlog")

        // A window cut off mid-record leaves a partial last line: drop what follows the last newline.
        if let lastNewline = text.lastIndex(of: "\n") { text = String(text[...lastNewline]) }
        let parsed = ShadowCapture.parse(csv: text, database: p.source.databases.project, limit: capture.maxStatements)
        let distinct = Set(parsed.statements.map(\.sql)).count
        return (parsed.statements, .init(windowSeconds: capture.windowSeconds, logBytes: logBytes, seen: parsed.seen, kept: parsed.statements.count,
                                         distinct: distinct, refused: parsed.refused, overLimit: parsed.overLimit))
    }

    private func logPosition(_ admin: PGConnection) async throws -> (file: String, size: Int64)? {
        let r = try await admin.query("SELECT f, (pg_stat_file(f)).size FROM pg_current_logfile('csvlog') AS f WHERE f IS NOT NULL", timeout: .seconds(10))
        guard r.rowCount > 0, let file = r.string(0, 0), let size = try r.int(0, 1) else { return nil }
        return (file, size)
    }

    private func fileSize(_ admin: PGConnection, _ file: String) async throws -> Int64? {
        let r = try await admin.query("SELECT (pg_stat_file($1, true)).size", [.text(file)], timeout: .seconds(10))
        return try r.int(0, 0)
    }

    func restoreSettings(_ saved: [StepUndo.ServerSettings.Setting], connection: PGConnection) async throws {
        for statement in ShadowCapture.restore(saved) { _ = try await connection.query(statement, timeout: .seconds(10)) }
        _ = try await connection.query("SELECT pg_reload_conf()", timeout: .seconds(10))
    }
}
