import Foundation
import HAPool
import PGClient
import Patroni
import PlainText
import Verification

/// Stage `cutover`: the application moves from the single node to the cluster (promoted, in the
/// physical method; `LogicalCutover` says what differs in the logical one), seeing a pause, not errors; a way back (logical replication from the cluster
/// into the single node) exists before the application's first write on the cluster.
///
/// Run, every side effect journaled before it happens (docs/MIGRATION_TO_HA.md, "Cutover step by
/// step", says which failure does what):
/// 1. guardrails (nothing changes): every member streaming within the lag threshold, no long
///    transaction or DDL on the single node, `wal_level = logical` on the cluster;
/// 2. prepare: `REPLICA IDENTITY FULL` for tables without a primary key, the canary table and
///    the verification table on the single node (they reach the cluster physically);
/// 3. freeze: PgBouncer `PAUSE`, `default_transaction_read_only` system-wide, the application's
///    roles `NOLOGIN` and their sessions terminated, proof that the application cannot write; the
///    final LSN; every member replays it within `cutover.timeout`, else everything is unfrozen;
/// 4. promote (`PATCH /config {"standby_cluster": null}`), wait for a writable leader, reset the
///    freeze the members may have inherited, give the roles LOGIN back on the cluster;
/// 5. the way back: a publication and a Patroni permanent logical slot per database on the cluster
///    (before the application's first write there);
/// 6. switch the application — the point of no return: PgBouncer's `[databases]` repointed,
///    `RELOAD`, `RESUME` (or the hook); the pause ends here;
/// 7. the single node subscribes to the cluster (`copy_data = false`) and a canary row written on
///    the cluster arrives on it.
///
/// Before step 6 any failure unfreezes the single node and resumes PgBouncer where it was; the
/// application never moved. Undo after step 6 is the rollback after cutover (`CutoverRollback`).
public struct CutoverStage: MigrationStageExecutor {
    public let stage = MigrationStage.cutover
    public let makesChanges = true
    /// Between two looks while waiting (catch-up, promotion, the canary).
    public var pollInterval: Duration

    public init(pollInterval: Duration = .milliseconds(20)) {
        self.pollInterval = pollInterval
    }

    public func unavailableReason(for playbook: Playbook) -> String? {
        let c = playbook.cutover
        if c.method == .pgbouncer, c.pgbouncer == nil {
            return "the playbook has no cutover.pgbouncer (PgBouncer's admin console and ini_file) nor cutover.method: hook: pgha cannot move the application, so a run stops before this stage (docs/PLAYBOOKS.md, cutover)"
        }
        if c.method == .hook, c.switchApplication == nil {
            return "cutover.method is hook but cutover.switch_application is missing: a run stops before this stage"
        }
        return nil
    }

    // MARK: - Names

    static let canaryTable = "public.pgha_canary"
    static let verifyTable = "public.pgha_verify"

    /// The way back's slot and subscription name for a database (slot names: [a-z0-9_]).
    static func wayBackSlot(_ playbook: Playbook, database: String) -> String {
        let clean = database.lowercased().map { ($0.isLetter && $0.isASCII) || $0.isNumber ? $0 : "_" }
        return String((playbook.cutover.wayBackName + "_" + String(clean)).prefix(63))
    }

    /// PgBouncer's database names (the single node's names: the application's connection strings).
    static func pgbouncerDatabases(_ playbook: Playbook) -> [String] {
        [playbook.source.databases.project] + (playbook.source.databases.shared.map { [$0] } ?? [])
    }

    // MARK: - Plan

    public func plan(_ context: StageContext) async throws -> StagePlan {
        let p = context.playbook
        let c = p.cutover
        var changes = [
            "prepare on the single node: REPLICA IDENTITY FULL for every table without a primary key, tables \(Self.canaryTable) and \(Self.verifyTable)",
        ]
        switch c.method {
        case .pgbouncer:
            let b = c.pgbouncer.map { "\($0.adminHost):\($0.adminPort)" } ?? "?"
            changes.append("freeze: PgBouncer (\(b)) PAUSE (bounded by cutover.pause_timeout, \(Int(c.pauseTimeoutSeconds)) s), default_transaction_read_only = on on the single node, the application's roles NOLOGIN and their sessions terminated")
        case .hook:
            changes.append("freeze: default_transaction_read_only = on on the single node, the application's roles NOLOGIN and their sessions terminated")
        }
        if p.sync.method == .logical {
            changes[0] = "prepare: REPLICA IDENTITY FULL for every table without a primary key on the single node; tables \(Self.canaryTable) and \(Self.verifyTable) on the cluster, then on the single node, and the forward subscriptions refreshed (copy_data = false)"
            changes += [
                "a marker row per database on the frozen single node; wait until it arrived on the cluster's leader and every replica replayed the leader (cutover.timeout, \(Int(c.timeoutSeconds)) s; else everything is unfrozen and the stage fails)",
                "every sequence (all of pg_sequences) set on the cluster to the single node's value + \(c.sequenceMargin) (cutover.sequence_margin), never lowered",
                "the way back: publication \(c.wayBackName) and Patroni permanent logical slot(s) " + CutoverDatabasesNames.slots(p).joined(separator: ", ") + " on the cluster, made after the catch-up (they hold none of the forward copy)",
            ]
        } else {
            changes += [
                "wait until every member replayed the final LSN (cutover.timeout, \(Int(c.timeoutSeconds)) s; else everything is unfrozen and the stage fails)",
                "promote the cluster \(p.target.scope) (PATCH /config standby_cluster: null), reset the freeze on its members, LOGIN back for the application's roles there",
                "the way back: publication \(c.wayBackName) and Patroni permanent logical slot(s) " + CutoverDatabasesNames.slots(p).joined(separator: ", ") + " on the cluster",
            ]
        }
        switch c.method {
        case .pgbouncer:
            changes.append("point of no return: PgBouncer's [databases] repointed at \(c.pgbouncer?.target.description ?? "?") (\(c.pgbouncer?.iniFile ?? "?"), backed up), RELOAD, RESUME")
        case .hook:
            changes.append("point of no return: " + (c.applicationEnv.map { "\($0) replaced by \(p.outputs.envFile) (backed up), " } ?? "") + "cutover.switch_application (`\(c.switchApplication ?? "?")`), then the application's first writes on the cluster awaited")
        }
        if p.sync.method == .logical {
            changes.append("the forward subscription(s) " + CutoverDatabasesNames.forward(p).joined(separator: ", ") + " dropped on the cluster, their slots on the single node (before the way back: no echo)")
        }
        changes.append("the single node subscribes to the cluster (copy_data = false); a canary row proves the way back")
        return StagePlan(
            stage: stage, makesChanges: true,
            summary: "The application moves to the cluster: a pause, not errors; nothing written on the single node is lost, and the cluster's writes flow back to the single node until `complete`.",
            checks: [
                p.sync.method == .logical
                    ? "before any freeze: the forward subscriptions have every table ready, lag ≤ \(formatBytes(p.thresholds.maxLagBytes)), no error, no DDL since the copy, the leader of the copy; every replica streaming; the application's roles and the way back's role log in on the cluster; no transaction older than \(Int(c.pauseTimeoutSeconds)) s on the single node; wal_level = logical on the cluster"
                    : "before any freeze: every member streaming, replay lag ≤ \(formatBytes(p.thresholds.maxLagBytes)); no transaction older than \(Int(c.pauseTimeoutSeconds)) s or DDL on the single node; wal_level = logical on the cluster",
                "after the freeze: the application's role cannot log in (a probe), the read-only default is in force",
                "after the switch: the application reaches a writable leader, the way back streams (canary), the verification suite passes on the cluster",
            ],
            changes: changes,
            undo: [
                "before the point of no return: unfreeze the single node (settings and logins as before), RESUME PgBouncer: the application never moved",
                "after it (rollback after cutover): freeze the cluster (Patroni dynamic configuration), wait until the single node applied everything (canary), copy sequences back, switch the application back, unfreeze the single node, remove the way back",
            ],
            warnings: c.method == .pgbouncer && c.pgbouncer == nil ? ["cutover.pgbouncer is missing: the stage cannot pause the application"] : [])
    }

    // MARK: - Run

    public func run(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let db = CutoverDatabases(connections: StageConnections(context))
        defer { db.close() }
        let ops = CutoverOperations(context: context, journal: journal, db: db, pollInterval: pollInterval)

        switch CutoverProgress.of(journal.steps(of: stage)) {
        case .fresh:
            break
        case .unfreezeThenStartOver:
            context.progress("an earlier attempt froze the single node and stopped before promotion: unfreezing, then starting over")
            try await ops.unfreeze(reason: "an interrupted attempt")
        case .promotedButUnfrozen:
            throw MigrationError(.stageFailed, "the cluster was promoted in an earlier attempt but the single node was unfrozen afterwards: the cluster no longer follows it. Next: `pgha rollback` (rebuilds the cluster from the start), then `pgha run` again")
        case .continueAfterPromotion:
            context.progress("continuing an interrupted cutover after promotion (the single node is still frozen)")
        case .continueAfterSwitch:
            context.progress("continuing an interrupted cutover after the switch (the application is on the cluster)")
        }

        if journal.step(stage, named: "promote").map({ $0.phase == .done || $0.phase == .intent }) != true {
            try await ops.guardrails()
            try await ops.prepare()
        }
        if journal.step(stage, named: "switch-application").map({ $0.phase == .done || $0.phase == .intent }) != true {
            do {
                let leader: (name: String, host: String, port: Int)
                if ops.isLogical {
                    try await ops.freezeAndCatchUp()
                    try await ops.copySequencesToCluster()
                    leader = try await ops.leader()
                } else {
                    let standbyLeader = await ops.standbyLeader()
                    try await ops.freezeAndCatchUp()
                    leader = try await ops.promote(standbyLeader: standbyLeader)
                }
                async let targetReady: Void = ops.awaitSwitchTarget()
                try await ops.prepareWayBack(leader: leader)
                try await targetReady
            } catch {
                // Before the point of no return: the application goes back to where it was.
                let why = (error as? MigrationError)?.message ?? "\(error)"
                await ops.unfreezeAfterFailure(reason: why)
                throw error
            }
            try await ops.switchApplication()
        } else if journal.step(stage, named: "switch-application")?.phase == .intent {
            // Interrupted during the switch (it may or may not have happened): its body is
            // idempotent (the ini is rewritten from the backup), so it runs again — else PgBouncer
            // could stay paused, or pointed at the frozen single node.
            try await ops.awaitSwitchTarget()
            try await ops.switchApplication()
        }
        // The way back first: from the switch on, the cluster's writes wait in its slots.
        try await ops.subscribeWayBack()
        if !ops.isLogical {
            // Outside the pause: a member cloned during it would have inherited the freeze.
            try await ops.resetInheritedFreeze("reset-inherited-freeze:after-switch")
        }
        try await ops.proveWayBack()
        try await ops.awaitReplicasStreaming()
    }

    // MARK: - Gate

    public func gate(_ context: StageContext) async throws -> [CheckResult] {
        let db = CutoverDatabases(connections: StageConnections(context))
        defer { db.close() }
        var results: [CheckResult] = []
        let p = context.playbook
        let record = context.journal?.snapshot.cutover

        if let leader = await db.writableLeader() {
            results.append(.pass("cutover.leader", observed: "\(leader.name) (\(leader.host):\(leader.port)) is a writable primary", expected: "a writable leader"))
        } else {
            results.append(.fail("cutover.leader", observed: "no member answers as a writable primary", expected: "a writable leader",
                                 advice: "look at `patronictl list` / `pgha health`; then `pgha resume`"))
        }
        if p.cutover.method == .pgbouncer, let settings = p.cutover.pgbouncer {
            let admin = PgBouncerAdmin(settings: settings, connections: db.connections)
            do {
                let console = try await admin.connect()
                defer { console.close() }
                let shown = try await admin.databases(console: console)
                let wrong = Self.pgbouncerDatabases(p).filter { shown[$0] != settings.target.description }
                results.append(wrong.isEmpty
                    ? .pass("cutover.application", observed: "PgBouncer sends " + Self.pgbouncerDatabases(p).joined(separator: ", ") + " to \(settings.target)", expected: "the cluster")
                    : .fail("cutover.application", observed: wrong.map { "\($0) → \(shown[$0] ?? "none")" }.joined(separator: ", "), expected: "every database → \(settings.target)",
                            advice: "PgBouncer was not repointed: `pgha resume` repeats the switch"))
            } catch {
                results.append(.fail("cutover.application", observed: error.message, expected: "PgBouncer answers", advice: "start PgBouncer, then `pgha resume`"))
            }
        } else {
            results.append(.pass("cutover.application", observed: "cutover.switch_application ran", expected: "the hook ran"))
        }
        // The way back: each subscription has an apply worker and the canary crossed.
        for database in db.databases {
            let name = Self.wayBackSlot(p, database: database.source)
            do {
                let source = try await db.source(database.source)
                let r = try await db.run(source, "SELECT s.subenabled, st.pid IS NOT NULL, st.latest_end_lsn::text FROM pg_subscription s LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL WHERE s.subname = $1",
                                         [.text(name)], what: "reading the way back's subscription")
                if r.rowCount == 0 {
                    results.append(.fail("cutover.way_back.\(database.source)", observed: "no subscription \(name) on the single node", expected: "subscribed and streaming",
                                         advice: "`pgha resume` creates it"))
                } else if (try? r.bool(0, 1)) == true, record?.wayBackProvenAt != nil {
                    results.append(.pass("cutover.way_back.\(database.source)", observed: "\(name) streaming (applied up to \(r.string(0, 2) ?? "?")), canary crossed", expected: "subscribed and streaming"))
                } else {
                    results.append(.fail("cutover.way_back.\(database.source)", observed: "\(name) has no running apply worker", expected: "subscribed and streaming",
                                         advice: "see the single node's log (logical replication worker); then `pgha resume`"))
                }
            } catch {
                results.append(.fail("cutover.way_back.\(database.source)", observed: error.message, expected: "subscribed and streaming", advice: "`pgha resume`"))
            }
        }
        if let pause = record?.pauseSeconds {
            results.append(.pass("cutover.pause", observed: String(format: "the application could not write for %.2f s", pause), expected: "a pause, not errors"))
        }
        // The verification suite, on the cluster, as the application will use it.
        results += await verifyCluster(context, connections: db.connections)
        return results.map { $0.redacted(by: context.redactor) }
    }

    func verifyCluster(_ context: StageContext, connections: StageConnections) async -> [CheckResult] {
        let p = context.playbook
        do {
            let pools = try DualDatabasePools(config: DualPoolsConfig(
                mode: .patroni, patroni: connections.poolConfiguration(),
                patroniSharedDatabase: p.target.databases.shared ?? p.source.databases.shared))
            var verification = SeedVerification(pools: pools)
            verification.startTimeout = .seconds(10)
            let report = await verification.run()
            await pools.close()
            return report.checks.map { check in
                var check = check
                check.name = "verify." + check.name
                return check
            }
        } catch {
            return [.fail("verify.pool_initialization", observed: "\(error)", expected: "the pools start", advice: "check the target section of the playbook")]
        }
    }

    // MARK: - Undo

    public func undo(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let db = CutoverDatabases(connections: StageConnections(context))
        defer { db.close() }
        let ops = CutoverOperations(context: context, journal: journal, db: db, pollInterval: pollInterval)
        let switched = journal.step(stage, named: "switch-application").map { $0.phase == .done || $0.phase == .intent } == true
        if switched {
            try await CutoverRollback(ops: ops).run()
        } else {
            try await ops.unfreeze(reason: "rollback", countsAsAttempt: false)
            try await ops.undoPreparation()
        }
    }
}

/// Names the plan shows.
enum CutoverDatabasesNames {
    static func slots(_ playbook: Playbook) -> [String] {
        CutoverStage.pgbouncerDatabases(playbook).map { CutoverStage.wayBackSlot(playbook, database: $0) }
    }

    static func forward(_ playbook: Playbook) -> [String] {
        CutoverStage.pgbouncerDatabases(playbook).map { LogicalSync.subscriptionName(playbook, database: $0) }
    }
}

