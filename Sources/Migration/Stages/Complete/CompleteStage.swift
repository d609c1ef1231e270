import Foundation
import PGClient
import Patroni
import PlainText

/// Stage `complete`: after the soak (`complete.after`, counted from the switch), the way back is
/// dropped (subscriptions on the single node, permanent slots and publication on the cluster),
/// then the single node's physical slot; the single node stays frozen (or `complete.stop_source`
/// stops it); the final report is written to `<state-dir>/report.json` and shown.
///
/// Undo refuses: after `complete` the single node no longer receives the cluster's writes, so
/// going back would lose them. (Rollback stays possible until this stage runs.)
public struct CompleteStage: MigrationStageExecutor {
    public let stage = MigrationStage.complete
    public let makesChanges = true

    public init() {}

    public func unavailableReason(for playbook: Playbook) -> String? {
        CutoverStage().unavailableReason(for: playbook)
    }

    public func plan(_ context: StageContext) async throws -> StagePlan {
        let p = context.playbook
        return StagePlan(
            stage: stage, makesChanges: true,
            summary: "The end: the way back is dropped after the soak; the single node stays as it is now, frozen.",
            checks: ["the application is on the cluster (the cutover's gate passed)", "the soak: \(Int(p.complete.afterSeconds)) s after the switch (complete.after)"],
            changes: [
                "drop the way back: subscription(s) " + CutoverDatabasesNames.slots(p).joined(separator: ", ") + " on the single node, the permanent slot(s) and publication \(p.cutover.wayBackName) on the cluster",
                p.sync.method == .logical ? "drop publication \(p.sync.publication) on the single node" : "drop the physical slot \(p.sync.slot) on the single node",
                p.complete.stopSource.map { "run complete.stop_source (`\($0)`)" } ?? "leave the single node running, frozen (read-only, the application's roles without LOGIN)",
                "write the final report to \(context.store.directory)/report.json",
            ],
            undo: ["none: after complete, the single node no longer receives the cluster's writes; a way back would lose them"])
    }

    public func run(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let p = context.playbook
        let db = CutoverDatabases(connections: StageConnections(context))
        defer { db.close() }
        let ops = CutoverOperations(context: context, journal: journal, db: db, pollInterval: .milliseconds(500))

        // The soak.
        let switched = journal.snapshot.cutover?.resumedAt ?? context.clock.now()
        let end = switched.addingTimeInterval(p.complete.afterSeconds)
        if context.clock.now() < end {
            try context.activity.waiting("the soak (complete.after) before the way back is dropped", deadline: end)
            while context.clock.now() < end {
                try await context.sleep(for: .milliseconds(Int64(min(1000, max(10, end.timeIntervalSince(context.clock.now()) * 1000)))))
            }
            try context.activity.doneWaiting()
        }

        // The way back.
        let id = try journal.beginStep(stage, name: "drop-way-back", detail: "drop the way back (subscriptions, permanent slots, publication)")
        try await CutoverRollback(ops: ops).removeWayBack()
        try journal.completeStep(id)

        // Logical method: the sync's publications on the single node (their subscriptions were
        // dropped at cutover).
        if p.sync.method == .logical {
            let pubID = try journal.beginStep(stage, name: "drop-sync-publication", detail: "drop publication \(p.sync.publication) on the single node")
            for database in db.databases {
                let source = try await db.source(database.source)
                try await db.writable(source)
                try await db.run(source, "DROP PUBLICATION IF EXISTS \(SQLQuoting.identifier(p.sync.publication))", what: "dropping publication \(p.sync.publication)")
            }
            try journal.completeStep(pubID)
            context.progress("publication \(p.sync.publication) dropped on the single node")
        }
        // The single node's physical slot: nothing streams from it since promotion.
        let slot = p.sync.slot
        let slotID = try journal.beginStep(stage, name: "drop-source-slot", detail: "drop the physical slot \(slot) on the single node")
        let source = try await db.source(p.source.databases.project)
        try await db.writable(source)
        switch try await ReplicationSlots.dropWhenInactive(slot, on: source, timeout: .zero, context: context, describe: db.connections.describe) {
        case .dropped: context.progress("slot \(slot) dropped on the single node")
        case .absent: break
        case .inUse: context.progress("slot \(slot) is still in use on the single node: left in place (drop it once nothing streams from it)")
        }
        try journal.completeStep(slotID)

        if let command = p.complete.stopSource {
            let hookID = try journal.beginStep(stage, name: "hook:complete.stop_source", detail: "run complete.stop_source")
            try await HookRunner.runForStage(context, key: "complete.stop_source", command: command, timeoutSeconds: p.complete.hookTimeoutSeconds)
            try journal.completeStep(hookID)
        } else {
            context.progress("the single node stays running, frozen: read-only by default, the application's roles without LOGIN")
        }
        try writeReport(context, journal: journal)
    }

    /// The final report: one line per stage (its duration) and the cutover's facts, on screen;
    /// everything as JSON in `<state-dir>/report.json` (the same document as `pgha status --json`).
    func writeReport(_ context: StageContext, journal: StateJournal) throws {
        let state = journal.snapshot
        let path = context.store.directory + "/report.json"
        try FileIO.writeAtomically(Data(MigrationReport(state: state, store: context.store).json().utf8), to: path, mode: 0o600)
        context.progress("final report:")
        for s in state.stages {
            let seconds = s.startedAt.flatMap { start in s.finishedAt.map { $0.timeIntervalSince(start) } }
            context.progress("  " + s.stage.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)
                             + (seconds.map { String(format: "%7.1f s", $0) } ?? "      —  ") + "  \(s.status.name)")
        }
        if let c = state.cutover {
            let playbook = context.playbook
            let window = playbook.cutover.method == .pgbouncer ? "PgBouncer PAUSE to RESUME" : "the freeze to the hook's switch"
            let promotion = playbook.sync.method == .logical
                ? "no promotion (logical: the cluster was writable all along)" : "promoted \(c.promotedMember ?? "?")"
            context.progress(String(format: "  write pause %.2f s (%@); final LSN %@; %@; earlier attempts unfrozen: %d",
                                    c.pauseSeconds ?? 0, window, c.finalLSN ?? "?", promotion, c.abandonedAttempts))
        }
        context.progress("  JSON: \(path)")
    }

    public func gate(_ context: StageContext) async throws -> [CheckResult] {
        let db = CutoverDatabases(connections: StageConnections(context))
        defer { db.close() }
        var results: [CheckResult] = []
        if let leader = await db.writableLeader() {
            results.append(.pass("complete.leader", observed: "\(leader.name) is the writable leader", expected: "a writable leader"))
        } else {
            results.append(.fail("complete.leader", observed: "no writable leader", expected: "a writable leader", advice: "`pgha health`"))
        }
        if context.playbook.complete.stopSource == nil, let source = try? await db.source(context.playbook.source.databases.project) {
            let subs = try await db.run(source, "SELECT count(*) FROM pg_subscription WHERE subname LIKE $1", [.text(context.playbook.cutover.wayBackName + "%")], what: "counting subscriptions")
            let n = (try? subs.int(0, 0)) ?? nil
            results.append(n == 0
                ? .pass("complete.way_back_removed", observed: "no way-back subscription on the single node", expected: "removed")
                : .fail("complete.way_back_removed", observed: "\(n ?? -1) subscription(s) left", expected: "removed", advice: "`pgha resume`"))
        }
        return results.map { $0.redacted(by: context.redactor) }
    }

    public func undo(_ context: StageContext) async throws {
        guard let journal = context.journal, !journal.steps(of: stage).isEmpty else { return }
        throw MigrationError(.stageFailed, "the migration is complete: the way back was dropped, so a rollback would lose the writes made on the cluster since. Nothing was changed. To go back now, migrate again in the other direction")
    }
}
