import Foundation
import PGClient
import Patroni
import PlainText

/// The logical sync's defences against the silent loss (../shared/ENVIRONMENT.md: after a crash
/// of the cluster's leader, rows the old leader had applied and confirmed to the single node may be
/// missing on the new one, and nothing reports an error).
///
/// 1. **Patroni's synchronous mode** while the subscriptions copy and stream
///    (`sync.synchronous_mode`, default on): with the subscriptions' `synchronous_commit = on` the
///    leader's apply commits wait for a synchronous standby before the single node hears of them,
///    so a crash of the whole leader node loses nothing. It does not cover the death of the
///    postmaster alone (the orphaned apply worker confirms before it exits), and it applies many
///    small transactions more slowly.
/// 2. **Every unplanned change of the leader is verified**: the leader's identity (its name, its
///    timeline and its postmaster's start, so that a crash restarted in place counts too) is
///    journaled when the copy starts; any other identity seen later is journaled
///    (`leader-change:<n>`), and before the stage may finish every table is compared with the
///    single node (`DataCompare`, ranges read again while the data moves) and each table that
///    differs is copied again (`recopy:<n>:<db>:<table>`): taken out of the publication and the
///    subscription, emptied on the cluster, put back and copied by a new table sync. Then
///    `verified:<n>` is journaled. A difference caused only by moving data costs one re-copy of
///    that table; a lost row is never missed.
extension LogicalSync {
    // MARK: - Synchronous mode

    static let synchronousModeStep = "synchronous-mode"

    /// Switches Patroni's synchronous mode on (journaled with the value it had); Patroni names a
    /// synchronous standby in its next loops (`awaitSynchronousStandby`).
    func enableSynchronousMode() async throws {
        guard sync.synchronousMode, journal.step(stage, named: Self.synchronousModeStep)?.phase != .done else { return }
        let client: PatroniClient
        let previous: JSONValue?
        do {
            client = try db.connections.patroniClient()
            previous = try await client.config()["synchronous_mode"]
        } catch {
            throw MigrationError(.stageFailed, "reading Patroni's dynamic configuration (GET /config) failed: \(db.connections.describe(String(describing: error))). Next: check the REST API (target.api_hosts), then `pgha resume`")
        }
        if previous?.isTruthy == true || previous?.stringValue == "quorum" {
            try await step(Self.synchronousModeStep, "Patroni's synchronous_mode is on already (\(previous!.description)): left as it is") {}
            context.progress("Patroni's synchronous_mode is on already: left as it is")
            return
        }
        let encoded = try previous.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) }
        try await step(Self.synchronousModeStep, "PATCH /config synchronous_mode: true while the subscriptions copy and stream (was \(previous?.description ?? "unset"))",
                       undo: .patroniSetting(.init(key: "synchronous_mode", previous: encoded))) {
            try await db.patchConfig(.object(["synchronous_mode": .bool(true)]), what: "switching synchronous_mode on", context: context)
        }
    }

    /// Waits (up to 30 s) for the synchronous standby Patroni names once synchronous mode is on;
    /// without one the sync goes on, with a warning. Called before the first subscription streams
    /// (the window of the silent loss); pgha's snapshot copy runs meanwhile — a copy the leader's
    /// crash cuts is started again, one it committed and lost is found by the verification.
    func awaitSynchronousStandby() async throws {
        guard sync.synchronousMode, let client = try? db.connections.patroniClient() else { return }
        let deadline = context.clock.now().addingTimeInterval(30)
        while context.clock.now() < deadline {
            if let cluster = try? await client.cluster().value, let standby = cluster.members.first(where: { $0.role.rawValue == "sync_standby" }) {
                context.progress("Patroni's synchronous_mode is on: \(standby.name) is the synchronous standby (the subscriptions' commits wait for it)")
                return
            }
            try await context.sleep(for: .milliseconds(250))
        }
        context.progress("warning: Patroni's synchronous_mode is on but no member became a synchronous standby within 30 s: a crash of the leader may lose applied rows (the leader change is then verified by a compare)")
    }

    /// Puts `synchronous_mode` back as the journal says it was.
    func restore(_ setting: StepUndo.PatroniSetting) async throws {
        let value = try setting.previous.map { try JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) } ?? .null
        try await db.patchConfig(.object([setting.key: value]), what: "putting \(setting.key) back to \(value.description)", context: context)
        context.progress("Patroni's \(setting.key) put back to \(setting.previous ?? "unset")")
    }

    // MARK: - The leader's identity

    /// Who leads the cluster and since when: Patroni's leader and its timeline, and the start of
    /// its postmaster (a crash restarted in place keeps the leader and the timeline, not this).
    /// nil while there is no leader, or it does not answer.
    func leaderIdentity() async -> String? {
        guard let client = try? db.connections.patroniClient(), let answer = try? await client.cluster(),
              let leader = answer.value.leader, let host = leader.host, let port = leader.port,
              let c = try? await db.member(host: host, port: port, database: "postgres"),
              // The timeline from the server itself (its current WAL file's name): Patroni's
              // /cluster names the old one for a moment after a promotion.
              let r = try? await c.query("""
                  SELECT pg_postmaster_start_time()::text, ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
                  FROM (SELECT 1) one WHERE NOT pg_is_in_recovery()
                  """, timeout: .seconds(5)),
              r.rowCount == 1, let started = r.string(0, 0), let timeline = r.string(0, 1)
        else { return nil }
        return "the cluster's leader \(leader.name) is on timeline \(timeline), its PostgreSQL running since \(started)"
    }

    static let identityStep = "cluster-timeline"
    static let changePrefix = "leader-change:"
    static let verifiedPrefix = "verified:"

    /// The identity last journaled: at the copy's start, or at the latest leader change.
    var recordedIdentity: String? {
        journal.steps(of: stage).last { $0.phase == .done && ($0.name == Self.identityStep || $0.name.hasPrefix(Self.changePrefix)) }?.detail
    }

    /// The leader changes journaled and not verified yet (their numbers).
    var unverifiedChanges: [Int] {
        let steps = journal.steps(of: stage).filter { $0.phase == .done }
        let verified = Set(steps.compactMap { $0.name.hasPrefix(Self.verifiedPrefix) ? Int($0.name.dropFirst(Self.verifiedPrefix.count)) : nil })
        return steps.compactMap { $0.name.hasPrefix(Self.changePrefix) ? Int($0.name.dropFirst(Self.changePrefix.count)) : nil }
            .filter { !verified.contains($0) }
    }

    /// Journals the leader's identity at the copy's start.
    func recordIdentity() async throws {
        guard journal.step(stage, named: Self.identityStep)?.phase != .done else { return }
        guard let identity = await leaderIdentity() else {
            throw MigrationError(.stageFailed, "the cluster's leader could not be identified (Patroni's /cluster and its PostgreSQL): the copy needs it to notice a leader change. Next: `patronictl list`, then `pgha resume`")
        }
        try await step(Self.identityStep, identity) {}
    }

    /// Journals a leader identity other than the recorded one (an unplanned leader change or a
    /// restart of the leader's PostgreSQL). Returns whether it did.
    func noticeLeaderChange() async throws -> Bool {
        try await noticeLeaderChange(seen: await leaderIdentity())
    }

    /// The same with an identity the caller has just looked up (nil: no leader answered).
    func noticeLeaderChange(seen identity: String?) async throws -> Bool {
        guard let recorded = recordedIdentity, let now = identity, now != recorded else { return false }
        let number = (journal.steps(of: stage).filter { $0.name.hasPrefix(Self.changePrefix) }.count) + 1
        try await step(Self.changePrefix + String(number), now) {}
        context.progress("the cluster's leader changed during the logical sync (\(recorded); now \(now.replacingOccurrences(of: "the cluster's leader ", with: ""))): rows the old leader had applied may be missing on the new one, so every table will be compared and what differs copied again")
        return true
    }

    // MARK: - Verification after a leader change

    /// Compares every table with the single node and re-copies each that differs; journals
    /// `verified:<n>` for every change seen so far. Called once everything is copied and streaming.
    func verifyAfterLeaderChanges(_ changes: [Int]) async throws {
        guard let last = changes.max() else { return }
        try context.activity.doneWaiting()
        context.progress("verifying after leader change \(changes.map(String.init).joined(separator: ", ")): every table compared with the single node")
        // The workers' errors while the new leader took over were retried and are over (every
        // table is ready): counted from zero again, so that a new one stops the stage.
        try await resetErrorCounters()
        var options = DataCompare.Options()
        options.limits.rechecks = 3
        options.recheckDelay = .milliseconds(500)
        // Resumable: each table found identical is journaled (`compared:<change>:<db>.<table>`);
        // a resumed verification of the same change skips those (the copy streams on: an
        // identical table stays so unless the leader changes again, which is a new verification).
        let prefix = "compared:\(last):"
        let already = Set(journal.steps(of: stage).filter { $0.name.hasPrefix(prefix) && $0.phase == .done }.map { String($0.name.dropFirst(prefix.count)) })
        options.skip = already
        if !already.isEmpty { context.progress("compare: \(already.count) table(s) found identical before the interruption are not compared again") }
        let journal = self.journal, stage = self.stage
        let report: CompareReport
        do {
            report = try await DataCompare(playbook: playbook, environment: context.environment, redactor: context.redactor, options: options)
                .run(progress: { line in context.progress("compare: " + line) }, compared: { table throws(MigrationError) in
                    guard table.isIdentical else { return }
                    let id = try journal.beginStep(stage, name: prefix + table.database + "." + table.table, detail: "\(table.database).\(table.table) identical after leader change \(last)")
                    try journal.completeStep(id)
                })
        } catch {
            throw MigrationError(.stageFailed, "the compare after the leader change failed: \(error.message). Next: `pgha resume` compares again")
        }
        var recopied: [String] = []
        for table in report.tables where !table.isIdentical {
            guard table.status == .different, let database = db.databases.first(where: { $0.source == table.database }) else {
                throw MigrationError(.stageFailed, "after the leader change, \(table.database).\(table.table) is \(table.summary): it cannot be copied again by pgha. Next: `pgha rollback` and run the sync again")
            }
            try await step("recopy:\(last):\(table.database):\(table.table)", "copy \(table.table) of \(table.database) again after leader change \(last): \(table.summary)") {
                try await recopy(table.table, database: database)
            }
            recopied.append("\(table.database).\(table.table)")
        }
        for change in changes {
            try await step(Self.verifiedPrefix + String(change), recopied.isEmpty
                ? "after leader change \(change): \(report.tables.count) tables compared, every one identical"
                : "after leader change \(change): \(report.tables.count) tables compared; copied again: \(recopied.joined(separator: ", "))") {}
        }
        context.progress(recopied.isEmpty
            ? "after the leader change every table agrees with the single node (\(report.tables.count) compared in \(String(format: "%.1f", report.elapsedSeconds)) s" + (already.isEmpty ? ")" : ", \(already.count) more before the interruption)")
            : "after the leader change \(recopied.count) table(s) differed and are copied again: \(recopied.joined(separator: ", "))")
    }

    /// The subscriptions' copy and apply error counters back to zero (pg_stat_subscription_stats).
    func resetErrorCounters() async throws {
        let leader = try await leader()
        for database in db.databases {
            let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            try await db.run(cluster, "SELECT pg_stat_reset_subscription_stats(oid) FROM pg_subscription WHERE subname = $1",
                             [.text(Self.subscriptionName(playbook, database: database.source))], what: "resetting the subscription's error counters")
        }
    }

    /// Copies `table` (`schema.name`) again: out of the publication and the subscription (the
    /// apply worker stops touching it), emptied on the cluster under an exclusive lock (waiting
    /// for an apply in flight; foreign keys not fired, as the apply worker does), back into the
    /// publication, and a refresh with `copy_data = true` starts a new table sync. Every statement
    /// is safe to run again after an interruption.
    func recopy(_ displayName: String, database: (source: String, cluster: String)) async throws {
        let parts = displayName.split(separator: ".", maxSplits: 1).map(String.init)
        let table = parts.count == 2 ? SQLQuoting.quotedIdentifier(parts[0]) + "." + SQLQuoting.quotedIdentifier(parts[1]) : SQLQuoting.quotedIdentifier(displayName)
        let subscription = SQLQuoting.identifier(Self.subscriptionName(playbook, database: database.source))
        let publication = SQLQuoting.identifier(sync.publication)
        let source = try await db.source(database.source)
        let membership = try await db.run(source, """
            SELECT p.puballtables, EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid = to_regclass($2))
            FROM pg_publication p WHERE p.pubname = $1
            """, [.text(sync.publication), .text(table)], what: "looking for \(table) in publication \(sync.publication)")
        guard membership.rowCount == 1, try membership.bool(0, 0) == false else {
            throw MigrationError(.stageFailed, "publication \(sync.publication) on the single node is FOR ALL TABLES (made before pgha?): one table cannot be copied again. Next: `pgha rollback` and run the sync again")
        }
        let leader = try await leader()
        let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
        if try membership.bool(0, 1) == true {
            try await db.run(source, "ALTER PUBLICATION \(publication) DROP TABLE \(table)", what: "taking \(table) out of publication \(sync.publication)")
        }
        try await db.run(cluster, "ALTER SUBSCRIPTION \(subscription) REFRESH PUBLICATION WITH (copy_data = false)", what: "taking \(table) out of the subscription")
        try await db.run(cluster, "BEGIN; SET LOCAL session_replication_role = replica; LOCK TABLE \(table) IN ACCESS EXCLUSIVE MODE; DELETE FROM \(table); COMMIT",
                         what: "emptying \(table) on the cluster")
        try await db.run(source, "ALTER PUBLICATION \(publication) ADD TABLE \(table)", what: "putting \(table) back into publication \(sync.publication)")
        try await db.run(cluster, "ALTER SUBSCRIPTION \(subscription) REFRESH PUBLICATION WITH (copy_data = true)", what: "copying \(table) again")
        context.progress("\(database.source): \(displayName) emptied on the cluster and copied again by a new table sync")
    }
}
