import Foundation
import PGClient
import PlainText

/// Stage `sync`, physical method: the Patroni cluster is born as a standby cluster of the single
/// node (from the config stage's patroni.yml) and follows it by streaming replication.
///
/// Run, every side effect journaled first:
/// 1. `create-slot:<slot>`: the physical slot on the single node, reserving WAL from now (undo drops
///    it once nothing uses it; a slot that existed before is used and left alone);
/// 2. `start-cluster` (when the playbook has `sync.start_cluster`): the hook that starts the members;
///    otherwise the stage waits for the operator to start them;
/// 3. the wait (`SyncMonitor`): the cluster appearing, the initial copy as a progress bar
///    (`pg_stat_progress_basebackup`), then every member's replay lag; bounded by
///    `sync.cluster_timeout` and `sync.stall_timeout`; stopped at once by a cluster of another
///    system or by the slot holding back more than `sync.max_wal_retention`.
///
/// Gate: the same system identifier everywhere, every member streaming, replay lag within
/// `sync.caught_up_lag`, WAL retention within the limit; plus the extension checks on every member
/// (deferred by the extensions stage while the cluster did not exist).
///
/// Undo: `sync.stop_cluster` (when given, whoever started the members), then the slot is dropped
/// once inactive (bounded; a slot still in use fails the undo with what to do).
public struct SyncStage: MigrationStageExecutor {
    public let stage = MigrationStage.sync
    public let makesChanges = true
    /// Seconds between two looks.
    public var pollInterval: Duration
    /// How long undo waits for the slot to become unused.
    public var slotReleaseTimeout: Duration

    public init(pollInterval: Duration = .seconds(1), slotReleaseTimeout: Duration = .seconds(30)) {
        self.pollInterval = pollInterval
        self.slotReleaseTimeout = slotReleaseTimeout
    }

    public func unavailableReason(for playbook: Playbook) -> String? {
        switch playbook.sync.method {
        case .physical: return nil
        case .logical:
            return playbook.sync.publisherUser == nil
                ? "sync.method: logical needs sync.publisher (user and password: the role the cluster's subscriptions log in to the single node as, with REPLICATION and read access to every table): a run stops before this stage."
                : nil
        }
    }

    static func limits(_ context: StageContext) -> SyncLimits {
        let p = context.playbook
        return SyncLimits(
            members: p.target.members.map(\.name), membersNamed: p.target.membersNamed, minMembers: p.thresholds.minMembers,
            caughtUpLagBytes: p.sync.caughtUpLagBytes, maxWALRetentionBytes: p.sync.maxWALRetentionBytes,
            clusterTimeoutSeconds: p.sync.clusterTimeoutSeconds, stallTimeoutSeconds: p.sync.stallTimeoutSeconds,
            slot: p.sync.slot, sourceAddress: Playbook.HostPort(host: p.source.host, port: p.source.port).description,
            patroniYML: ConfigRenderer.absolutePath(p.outputs.patroniYML, in: context.workingDirectory),
            startHook: p.sync.startCluster != nil)
    }

    public func plan(_ context: StageContext) async throws -> StagePlan {
        let p = context.playbook
        let s = p.sync
        if s.method == .logical { return logicalPlan(context) }
        let limits = Self.limits(context)
        var changes = [
            "create the physical replication slot \(s.slot) on the single node \(limits.sourceAddress) (it holds WAL for the standby cluster from now on)",
        ]
        var warnings: [String] = []
        if let start = s.startCluster {
            changes.append("start the cluster's members: sync.start_cluster (`\(start)`), bounded by sync.hook_timeout (\(Int(s.hookTimeoutSeconds)) s)")
        } else {
            changes.append("nothing else: you start the members, with \(limits.patroniYML), once the slot exists; the stage waits for them (up to sync.cluster_timeout, \(Int(s.clusterTimeoutSeconds)) s)")
            warnings.append("no sync.start_cluster: after the slot is created, start Patroni on every member with \(limits.patroniYML) (docs/MIGRATION_TO_HA.md, \"The physical method: order of work\")")
        }
        return StagePlan(
            stage: stage, makesChanges: true,
            summary: "Physical method: the cluster \(p.target.scope) is bootstrapped as a standby cluster of the single node and follows it by streaming replication; everything (DDL, sequences, large objects, roles, tables without a primary key) comes along byte for byte.",
            checks: [
                "the cluster that appears is a standby cluster (no writable leader) of this very single node: the same system_identifier on every member",
                "the initial copy (pg_basebackup), shown as a progress bar, then every member's replay lag",
                "every member streaming; replay lag ≤ \(formatBytes(s.caughtUpLagBytes)) (sync.caught_up_lag)",
                "slot \(s.slot) holds back ≤ \(formatBytes(s.maxWALRetentionBytes)) of WAL (sync.max_wal_retention), else the stage stops",
                "no progress for \(Int(s.stallTimeoutSeconds)) s (sync.stall_timeout) stops the stage",
                "every extension the source uses is available on every member",
            ],
            changes: changes,
            undo: [
                s.stopCluster.map { "run sync.stop_cluster (`\($0)`), whoever started the members" } ?? "the cluster's members keep running (no sync.stop_cluster): stop them yourself before the slot can be dropped",
                "drop slot \(s.slot) on the single node once nothing streams from it (only if pgha created it)",
            ],
            warnings: warnings)
    }

    /// The logical method's executor for this context.
    func logical(_ context: StageContext, journal: StateJournal) -> LogicalSync {
        LogicalSync(context: context, journal: journal, db: CutoverDatabases(connections: StageConnections(context)), pollInterval: pollInterval)
    }

    public func run(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let p = context.playbook
        if p.sync.method == .logical {
            // sync.start_cluster: whatever makes the running cluster reachable (the sandbox's
            // HAProxy in front of it), before the copy.
            if let start = p.sync.startCluster {
                try await runHookOnce(context, journal: journal, key: "sync.start_cluster", command: start, undoKey: p.sync.stopCluster == nil ? nil : "sync.stop_cluster")
            }
            let sync = logical(context, journal: journal)
            defer { sync.db.close() }
            return try await sync.run()
        }
        let inspector = SyncInspector(connections: StageConnections(context), slot: p.sync.slot)
        defer { inspector.close() }

        // 1. The slot, before any member can start streaming.
        try await ensureSlot(context, journal: journal, inspector: inspector)
        try context.checkCancellation()

        // 2. The members (or the operator) start.
        if let start = p.sync.startCluster {
            try await runHookOnce(context, journal: journal, key: "sync.start_cluster", command: start, undoKey: p.sync.stopCluster == nil ? nil : "sync.stop_cluster")
        }

        // 3. The wait.
        var monitor = SyncMonitor(limits: Self.limits(context), startedAt: context.clock.now())
        while true {
            try context.checkCancellation()
            let observation = await inspector.observe(at: context.clock.now())
            switch monitor.observe(observation) {
            case .waiting(let what, let detail, let deadline, let progress):
                try context.activity.waiting(what, detail: detail, deadline: deadline)
                for update in progress { context.activity.progress(update) }
            case .caughtUp(let summary, let progress):
                for update in progress { context.activity.progress(update) }
                try context.activity.doneWaiting()
                context.progress(summary)
                return
            case .failed(let reason, let advice):
                try context.activity.doneWaiting()
                throw MigrationError(.stageFailed, reason + ". Next: " + advice)
            }
            try await context.sleep(for: pollInterval)
        }
    }

    public func gate(_ context: StageContext) async throws -> [CheckResult] {
        if context.playbook.sync.method == .logical {
            let sync = logical(context, journal: try context.requireJournal())
            defer { sync.db.close() }
            return await sync.gate().map { $0.redacted(by: context.redactor) }
        }
        let inspector = SyncInspector(connections: StageConnections(context), slot: context.playbook.sync.slot)
        defer { inspector.close() }
        let started = ContinuousClock.now
        let observation = await inspector.observe(at: context.clock.now())
        let ms = (ContinuousClock.now - started).milliseconds
        var results = SyncMonitor.gate(observation, limits: Self.limits(context)).map { check in
            var check = check
            check.durationMs = ms
            return check
        }
        // The extension checks the extensions stage deferred until the cluster exists.
        let extensions = ExtensionsStage()
        let e = context.playbook.extensions
        let observed = await extensions.observe(context)
        results += ExtensionsEvaluation.evaluate(observed, required: e.required, minVersions: e.minVersions)
            .filter { $0.name != "extensions.source" }
        return results.map { $0.redacted(by: context.redactor) }
    }

    public func undo(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let p = context.playbook
        if p.sync.method == .logical {
            let ran = journal.step(stage, named: "hook:sync.start_cluster").map { $0.phase == .done || $0.phase == .intent } == true
            let sync = logical(context, journal: journal)
            defer { sync.db.close() }
            try await sync.undo()
            if ran, let command = p.sync.stopCluster {
                context.progress("running sync.stop_cluster")
                try await runHook(context, key: "sync.stop_cluster", command: command)
            }
            return
        }
        let inspector = SyncInspector(connections: StageConnections(context), slot: p.sync.slot)
        defer { inspector.close() }
        let steps = journal.steps(of: stage).filter { $0.phase == .done || $0.phase == .intent }
        // First the cluster: whoever started it (the hook or the operator), the playbook's
        // sync.stop_cluster stops it, so that nothing streams from the slot any more.
        if let command = p.sync.stopCluster, !steps.isEmpty {
            context.progress("running sync.stop_cluster")
            try await runHook(context, key: "sync.stop_cluster", command: command)
        } else if !steps.isEmpty {
            context.progress("no sync.stop_cluster in the playbook: the cluster's members keep running; stop them yourself (the slot can only be dropped once nothing streams from it)")
        }
        for step in steps.reversed() {
            switch step.undo {
            case .replicationSlot(let slot):
                if slot.createdByPGHA {
                    try await dropSlot(slot.name, context: context, inspector: inspector)
                } else {
                    context.progress("slot \(slot.name) existed before pgha: left in place")
                }
            case .hook, .nothing, .legacy, .serverSettings, .table, .roleLogins, .replicaIdentity, .pgbouncerPause, .createdObject, .patroniSlot, .patroniSetting, .promotion:
                break
            }
            try journal.markStepUndone(step.id)
        }
    }

    // MARK: - Steps

    static func slotStepName(_ slot: String) -> String { "create-slot:\(slot)" }

    /// Creates the slot (journaled), or finds it done; on resume, an intent is settled by looking.
    func ensureSlot(_ context: StageContext, journal: StateJournal, inspector: SyncInspector) async throws {
        let slot = context.playbook.sync.slot
        let name = Self.slotStepName(slot)
        if let step = journal.step(stage, named: name), step.phase == .done { return }
        let source = try await inspector.sourceConnection()
        let existing = try await source.query(
            "SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = $1", [.text(slot)],
            timeout: .seconds(10))
        if let pending = journal.step(stage, named: name), pending.phase == .intent {
            // Killed between the intent and its completion: the slot is there or it is not.
            if existing.rowCount > 0 {
                try journal.completeStep(pending.id)
                context.progress("slot \(slot) on the single node: created (found after an interruption)")
                return
            }
            try journal.abandonStep(pending.id)
        }
        if existing.rowCount > 0 {
            guard existing.string(0, 0) == "physical" else {
                throw MigrationError(.stageFailed, "slot \(slot) exists on the single node and is a \(existing.string(0, 0) ?? "?") slot: choose another sync.slot")
            }
            let id = try journal.beginStep(stage, name: name, detail: "use the existing physical slot \(slot) on the single node",
                                           undo: .replicationSlot(.init(server: "source", name: slot, createdByPGHA: false)))
            try journal.completeStep(id)
            context.progress("slot \(slot) on the single node: exists already, used as it is (rollback leaves it)")
            return
        }
        let id = try journal.beginStep(stage, name: name, detail: "create the physical replication slot \(slot) on the single node",
                                       undo: .replicationSlot(.init(server: "source", name: slot, createdByPGHA: true)))
        _ = try await source.query("SELECT pg_create_physical_replication_slot($1, true)", [.text(slot)], timeout: .seconds(30))
        try journal.completeStep(id)
        context.progress("slot \(slot) on the single node: created (it holds WAL for the standby cluster from now on)")
    }

    /// Runs a hook unless its step is done (a hook whose intent has no completion runs again).
    func runHookOnce(_ context: StageContext, journal: StateJournal, key: String, command: String, undoKey: String?) async throws {
        let name = "hook:\(key)"
        if let step = journal.step(stage, named: name), step.phase == .done { return }
        if let pending = journal.step(stage, named: name), pending.phase == .intent { try journal.abandonStep(pending.id) }
        let id = try journal.beginStep(stage, name: name, detail: "run \(key)", undo: .hook(.init(key: key, undoKey: undoKey)))
        try await runHook(context, key: key, command: command)
        try journal.completeStep(id)
    }

    func runHook(_ context: StageContext, key: String, command: String) async throws {
        try await HookRunner.runForStage(context, key: key, command: command, timeoutSeconds: context.playbook.sync.hookTimeoutSeconds)
    }

    /// Waits (bounded) until nothing streams from the slot, then drops it.
    func dropSlot(_ slot: String, context: StageContext, inspector: SyncInspector) async throws {
        let source = try await inspector.sourceConnection()
        switch try await ReplicationSlots.dropWhenInactive(slot, on: source, timeout: slotReleaseTimeout, context: context) {
        case .dropped: context.progress("slot \(slot) dropped on the single node (its WAL is free again)")
        case .absent: context.progress("slot \(slot): already gone")
        case .inUse(let pid):
            throw MigrationError(
                .stageFailed,
                "slot \(slot) on the single node is still in use (walsender pid \(pid.map(String.init) ?? "?")): the standby cluster still streams from it. Stop its members (or give sync.stop_cluster), then run `pgha rollback` again")
        }
    }

    func logicalPlan(_ context: StageContext) -> StagePlan {
        let p = context.playbook
        let s = p.sync
        let databases = CutoverDatabases(connections: StageConnections(context)).databases
        var changes: [String] = s.startCluster.map { ["run sync.start_cluster (`\($0)`) before the copy"] } ?? []
        changes.append("CREATE ROLE on the cluster for each role the databases' schema names (owners, grantees) or the application logs in as, that the cluster lacks: the single node's attributes (never SUPERUSER) and memberships, " + (s.rolePasswords == .copy ? "its password hash (sync.role_passwords: copy)" : "no password (sync.role_passwords: none; set them before the cutover)"))
        if s.synchronousMode {
            changes.append("PATCH /config synchronous_mode: true on the cluster while the subscriptions copy and stream (sync.synchronous_mode; put back after the cutover)")
        }
        for d in databases { changes += logicalChanges(p, database: d) }
        return StagePlan(
            stage: stage, makesChanges: true,
            summary: "Logical method: every database is copied into the cluster \(p.target.scope) by logical replication (publication on the single node, subscription on the cluster's leader), which then follows the single node. DDL, sequences and large objects do not flow: the schema is copied once, DDL during sync stops the stage.",
            checks: [
                p.sync.initialCopy == .snapshot
                    ? "the copy of every table at the slot's snapshot, as a progress bar (bytes against the single node's table sizes), then the subscriptions' lag on the single node"
                    : "every table's initial copy (pg_subscription_rel), as a progress bar, then the subscriptions' lag on the single node",
                "lag ≤ \(formatBytes(s.caughtUpLagBytes)) (sync.caught_up_lag); no copy or apply error on the cluster",
                "the slots hold back ≤ \(formatBytes(s.maxWALRetentionBytes)) of WAL (sync.max_wal_retention), else the stage stops",
                "no DDL on the single node since the schema was copied (its tables and columns are the cluster's), else the stage stops",
                "the cluster's leader (its name, timeline and postmaster start) watched: after an unplanned leader change rows may be missing silently, so every table is compared with the single node once all are copied, and each that differs is copied again",
                "no progress for \(Int(s.stallTimeoutSeconds)) s (sync.stall_timeout) stops the stage",
            ],
            changes: changes,
            undo: (s.stopCluster.map { ["run sync.stop_cluster (`\($0)`) last"] } ?? []) + (s.synchronousMode ? ["put Patroni's synchronous_mode back as it was"] : []) + [
                "drop the subscriptions on the cluster and their slots on the single node",
                "drop publication \(s.publication) on the single node",
                "drop the databases pgha created on the cluster (" + databases.map(\.cluster).joined(separator: ", ") + ")",
                "drop the roles pgha created on the cluster",
            ],
            warnings: s.synchronousMode
                ? ["synchronous_mode: every apply commit on the cluster waits for a synchronous standby: many small transactions apply more slowly (1.5–1.9× the time measured by scripts/bench-logical, up to ~9× seen elsewhere; one large one at the same speed). It protects against the crash of the whole leader node, not of its postmaster alone: every leader change is verified by a compare either way"]
                : ["sync.synchronous_mode: false: a crash of the cluster's leader may lose applied rows silently; the leader change is verified by a compare (and what differs copied again)"])
    }

    /// The logical method's changes for one database, in the plan.
    private func logicalChanges(_ p: Playbook, database d: (source: String, cluster: String)) -> [String] {
        let s = p.sync
        let slot = LogicalSync.subscriptionName(p, database: d.source)
        let subscription = "CREATE SUBSCRIPTION \(slot) on the cluster, logging in to the single node as \(s.publisherUser ?? "?") (sync.publisher), synchronous_commit = on"
        let publication = "CREATE PUBLICATION \(s.publication) FOR TABLE (every table of \(d.source)) on the single node"
        guard s.initialCopy == .subscription else {
            return [
                "CREATE DATABASE \(d.cluster) on the cluster's leader (it must not exist), and the single node's tables of \(d.source) created in it (pg_dump --schema-only --section=pre-data | psql, one transaction)",
                publication,
                "slot \(slot) created on the single node with its snapshot exported (CREATE_REPLICATION_SLOT … LOGICAL pgoutput), and every table copied at that snapshot by pgha, \(s.copyJobs) at a time (COPY … TO STDOUT into COPY … FROM STDIN; binary between equal major versions and built-in types) (sync.initial_copy: snapshot)",
                "the keys, indexes, constraints and triggers of \(d.source) restored on the cluster after the data (pg_dump --section=post-data | psql, one transaction)",
                subscription + ", copy_data = false, streaming from slot \(slot)",
            ]
        }
        var changes = ["CREATE DATABASE \(d.cluster) on the cluster's leader (it must not exist), and the single node's schema of \(d.source) restored in it (pg_dump --schema-only | psql, one transaction)"]
        if s.deferIndexes {
            changes.append("DROP INDEX for the secondary indexes of \(d.cluster) on the cluster until every table is copied, then CREATE INDEX for each as the single node defines it (sync.defer_indexes)")
        }
        changes += [publication, subscription + ", copy_data = true (sync.initial_copy: subscription: PostgreSQL's table sync workers copy)"]
        return changes
    }
}
