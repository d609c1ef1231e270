import Foundation
import PGClient
import Patroni
import HAPool
import PlainText

/// The logical sync's wait: every table copied and the lag within bounds, with every leader change noticed, verified and repaired on the way (docs/MIGRATION_TO_HA.md, logical sync).
extension LogicalSync {
    // MARK: - The wait

    /// One look at every database's subscription and slot.
    struct Look: Sendable {
        var tables = 0
        var ready = 0
        var notReady: [String] = []
        var lagBytes: Int64 = 0
        var retainedBytes: Int64 = 0
        var errors: [String] = []
        var schemaChanges: [String] = []
        var slotMissing: [String] = []
        /// The table syncs copying now (pg_stat_progress_copy on the cluster's leader).
        var copying: [TableCopy] = []
        /// `database.table` of every table whose copy has not finished (states i, d).
        var toCopy: Set<String> = []
        /// Table syncs stranded by a leader change: state `f` (copied, catching up) on the new
        /// leader while their slot on the single node is gone — the old leader had finished them.
        /// PostgreSQL retries them forever; pgha copies them again (`resync:`).
        var stranded: [(database: String, table: String)] = []
        /// Subscriptions whose apply worker is not running yet: the launcher starts one worker
        /// per `wal_retrieve_retry_interval` (5 s), so a second subscription made a second after
        /// the first streams 5 s later — its slot's lag looks small meanwhile, since nothing has
        /// been written for it to confirm. Until it runs the copy is not caught up (a cutover
        /// would otherwise wait for it inside the application's pause).
        var notStreaming: [String] = []
        /// The entries of `errors` of subscriptions with apply errors.
        var applyErrors: [String] = []
    }

    /// One table sync's COPY as pg_stat_progress_copy shows it on the cluster's leader, with the
    /// single node's estimate of the table's rows (`reltuples`; nil before an ANALYZE).
    struct TableCopy: Sendable, Hashable {
        var database: String
        var table: String
        var rows: Int64
        var bytes: Int64
        var estimatedRows: Int64?

        var task: String { "logical-copy:\(database).\(table)" }

        /// The bar while copying; `done`: the last one, once the table's COPY has ended (the last
        /// look saw part of it: the whole estimate counts as copied).
        func progress(done: Bool = false) -> StageProgress {
            let total = estimatedRows.map { max($0, rows) }
            if done {
                return StageProgress(task: task, title: "copying \(database).\(table) (its table sync's COPY)", kind: .transfer, unit: .items,
                                     value: total ?? rows, total: total ?? rows, detail: "copied")
            }
            return StageProgress(task: task, title: "copying \(database).\(table) (its table sync's COPY)", kind: .transfer, unit: .items,
                                 value: rows, total: total, detail: formatBytes(bytes) + " received")
        }
    }

    func look() async throws -> Look {
        var look = Look()
        let leader = try await leader()
        for database in db.databases {
            let name = Self.subscriptionName(playbook, database: database.source)
            let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            let rel = try await db.run(cluster, """
                SELECT count(*) FILTER (WHERE r.srsubstate = 'r'), count(r.srrelid),
                       string_agg(CASE WHEN r.srsubstate <> 'r' THEN r.srrelid::regclass::text || ' (' || r.srsubstate::text || ')' END, ', '),
                       coalesce(max(st.apply_error_count), 0), coalesce(max(st.sync_error_count), 0),
                       string_agg(CASE WHEN r.srsubstate IN ('i', 'd') THEN r.srrelid::regclass::text END, E'\n')
                FROM pg_subscription s
                LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid
                LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid
                WHERE s.subname = $1
                """, [.text(name)], what: "reading the subscription's tables")
            look.ready += Int(try rel.int(0, 0) ?? 0)
            look.tables += Int(try rel.int(0, 1) ?? 0)
            if let pending = rel.string(0, 2) { look.notReady.append(pending) }
            for table in (rel.string(0, 5) ?? "").split(separator: "\n") { look.toCopy.insert(database.source + "." + table) }
            let applyErrors = try rel.int(0, 3) ?? 0, syncErrors = try rel.int(0, 4) ?? 0
            if applyErrors + syncErrors > 0 {
                let message = "\(name): \(syncErrors) copy and \(applyErrors) apply error(s) on the cluster (its PostgreSQL log on \(leader.name) says which)"
                look.errors.append(message)
                if applyErrors > 0 { look.applyErrors.append(message) }
            }
            let source = try await db.source(database.source)
            let slot = try await db.run(source, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                                        [.text(name)], what: "reading the slot on the single node")
            if slot.rowCount == 0 {
                look.slotMissing.append(name)
            } else {
                look.lagBytes = max(look.lagBytes, try slot.int(0, 0) ?? 0)
                look.retainedBytes = max(look.retainedBytes, try slot.int(0, 1) ?? 0)
            }
            let worker = try await db.run(cluster, "SELECT count(*) FROM pg_stat_subscription st JOIN pg_subscription s ON s.oid = st.subid WHERE s.subname = $1 AND st.relid IS NULL AND st.pid IS NOT NULL",
                                          [.text(name)], what: "looking for the subscription's apply worker")
            if (try worker.int(0, 0) ?? 0) == 0 { look.notStreaming.append(name) }
            // Only a leader change strands a table sync: no extra queries otherwise.
            if !unverifiedChanges.isEmpty {
                look.stranded += try await strandedTableSyncs(database, subscription: name, cluster: cluster, source: source)
            }
            look.schemaChanges += try await schemaDifferences(database, cluster: cluster, source: source)
            if look.ready < look.tables {
                look.copying += try await tableCopies(database, cluster: cluster, source: source)
            }
        }
        return look
    }

    /// Tables in state `f` whose table sync's slot (`pg_<subid>_sync_<relid>_<sysid>`, as
    /// PostgreSQL names it) is not on the single node.
    func strandedTableSyncs(_ database: (source: String, cluster: String), subscription: String, cluster: PGConnection, source: PGConnection) async throws -> [(database: String, table: String)] {
        let finished = try await db.run(cluster, """
            SELECT n.nspname || '.' || c.relname, format('pg_%s_sync_%s_%s', s.oid, r.srrelid, (SELECT system_identifier FROM pg_control_system()))
            FROM pg_subscription s JOIN pg_subscription_rel r ON r.srsubid = s.oid
            JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE s.subname = $1 AND r.srsubstate = 'f'
            """, [.text(subscription)], what: "reading the table syncs catching up")
        guard finished.rowCount > 0 else { return [] }
        let slots = (0..<finished.rowCount).compactMap { finished.string($0, 1) }
        let present = try await db.run(source, "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name = ANY($1::text[])",
                                       [.text("{" + slots.joined(separator: ",") + "}")], what: "looking for the table syncs' slots")
        let existing = Set((0..<present.rowCount).compactMap { present.string($0, 0) })
        return (0..<finished.rowCount).compactMap { row in
            guard let table = finished.string(row, 0), let slot = finished.string(row, 1), !existing.contains(slot) else { return nil }
            return (database.source, table)
        }
    }

    /// The table syncs' COPY into `database` on the cluster, with the single node's row estimates.
    func tableCopies(_ database: (source: String, cluster: String), cluster: PGConnection, source: PGConnection) async throws -> [TableCopy] {
        let copies = try await db.run(cluster, """
            SELECT p.relid::regclass::text, p.tuples_processed, p.bytes_processed
            FROM pg_stat_progress_copy p WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND p.command = 'COPY FROM'
            ORDER BY 1
            """, what: "reading the table syncs' COPY progress")
        var result: [TableCopy] = []
        for row in 0..<copies.rowCount {
            guard let table = copies.string(row, 0) else { continue }
            let estimate = try await db.run(source, "SELECT c.reltuples::bigint FROM pg_class c WHERE c.oid = to_regclass($1)", [.text(table)],
                                            what: "reading the single node's row estimate of \(table)")
            let rows = estimate.rowCount > 0 ? (try estimate.int(0, 0) ?? -1) : -1
            result.append(TableCopy(database: database.source, table: table, rows: try copies.int(row, 1) ?? 0, bytes: try copies.int(row, 2) ?? 0,
                                    estimatedRows: rows > 0 ? rows : nil))
        }
        return result
    }

    /// Tables and columns of the single node that the cluster does not have as such (DDL on the
    /// single node since the schema was copied).
    func schemaDifferences(_ database: (source: String, cluster: String), cluster: PGConnection, source: PGConnection) async throws -> [String] {
        let sql = """
            SELECT n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
            """
        let onSource = try await db.run(source, sql, what: "reading the single node's columns")
        let onCluster = try await db.run(cluster, sql, what: "reading the cluster's columns")
        let a = Set((0..<onSource.rowCount).compactMap { onSource.string($0, 0) })
        let b = Set((0..<onCluster.rowCount).compactMap { onCluster.string($0, 0) })
        return a.subtracting(b).sorted().map { "\(database.source): \($0) only on the single node" }
            + b.subtracting(a).sorted().map { "\(database.source): \($0) only on the cluster" }
    }

    /// Why the copy cannot be trusted or go on, if it cannot.
    func problem(_ look: Look) async -> (String, String)? {
        if !look.errors.isEmpty {
            return (look.errors.joined(separator: "; "), "fix the cause on the cluster (a missing role or extension, a constraint), then `pgha resume`; or `pgha rollback`")
        }
        if !look.slotMissing.isEmpty {
            return ("the subscription's slot \(look.slotMissing.joined(separator: ", ")) is missing on the single node", "`pgha rollback` and run again")
        }
        if look.retainedBytes > sync.maxWALRetentionBytes {
            return ("the single node holds back \(formatBytes(look.retainedBytes)) of WAL for the subscription, more than sync.max_wal_retention (\(formatBytes(sync.maxWALRetentionBytes)))",
                    "find why the cluster does not keep up (its PostgreSQL log), then `pgha resume`; or `pgha rollback`, which frees the WAL")
        }
        if !look.schemaChanges.isEmpty {
            return ("the single node's schema changed during sync (DDL is not replicated logically): " + look.schemaChanges.prefix(5).joined(separator: "; "),
                    "apply the same DDL on the cluster, then `pgha resume`; or `pgha rollback` and run again")
        }
        return nil
    }

    /// Why the copy cannot be trusted yet after leader changes, if it cannot: a change not
    /// verified, or a leader other than the one journaled last.
    func leaderChange() async -> (String, String)? {
        let pending = unverifiedChanges
        if !pending.isEmpty {
            return ("the cluster's leader changed during the logical sync and the compare that verifies it has not finished (leader change \(pending.map(String.init).joined(separator: ", ")))",
                    "`pgha resume` compares every table and copies again what differs")
        }
        if let recorded = recordedIdentity, let now = await leaderIdentity(), now != recorded {
            return ("the cluster's leader is not the one of the copy (\(recorded); now \(now.replacingOccurrences(of: "the cluster's leader ", with: "")))",
                    "`pgha resume` compares every table and copies again what differs")
        }
        return nil
    }

    func wait() async throws {
        let started = context.clock.now()
        var lastProgress = started
        var best = (ready: -1, lag: Int64.max)
        var unreachableSince: Date?
        var copying: [String: TableCopy] = [:]
        var strandedSince: [String: Date] = [:]
        while true {
            try context.checkCancellation()
            let look: Look
            do {
                look = try await self.look()
                unreachableSince = nil
            } catch let error as MigrationError where error.code == .stageFailed {
                // No leader (a failover under way) or a member not answering: waited for, up to
                // sync.stall_timeout.
                let now = context.clock.now()
                let since = unreachableSince ?? now
                unreachableSince = since
                if now.timeIntervalSince(since) > sync.stallTimeoutSeconds {
                    try context.activity.doneWaiting()
                    throw MigrationError(.stageFailed, "the cluster did not answer for \(Int(sync.stallTimeoutSeconds)) s (sync.stall_timeout): \(error.message)")
                }
                try context.activity.waiting("the cluster to answer again (a leader change?): " + error.message, detail: nil, deadline: since.addingTimeInterval(sync.stallTimeoutSeconds))
                try await context.sleep(for: pollInterval)
                continue
            }
            if try await noticeLeaderChange() {
                best = (-1, Int64.max)
                lastProgress = context.clock.now()
            }
            // While a leader change waits for its verification, the workers' copy and apply
            // errors are the new leader's restart (a table sync's slot, a dropped connection:
            // retried by PostgreSQL); one that persists keeps its table from getting ready, which
            // the stall timeout reports. The verification resets the counters.
            // So are table-sync errors during the initial copy (a copy interrupted by a crash or a
            // DDL: PostgreSQL retries the table; the DDL check names the DDL).
            // A table sync stranded by the leader change (seen for 10 s: its slot is dropped a
            // moment before its state commits) is copied again now; the verification follows.
            let changes = unverifiedChanges
            if let change = changes.max() {
                let now = context.clock.now()
                let keys = Set(look.stranded.map { $0.database + ":" + $0.table })
                strandedSince = strandedSince.filter { keys.contains($0.key) }
                for (database, table) in look.stranded {
                    let key = database + ":" + table
                    let since = strandedSince[key] ?? now
                    strandedSince[key] = since
                    guard now.timeIntervalSince(since) >= 10, let pair = db.databases.first(where: { $0.source == database }) else { continue }
                    try context.activity.doneWaiting()
                    context.progress("\(database).\(table): its table sync lost its slot in the leader change (state f, no slot on the single node): copied again")
                    try await step("resync:\(change):\(database):\(table)", "copy \(table) of \(database) again: its table sync was stranded by leader change \(change)") {
                        try await recopy(table, database: pair)
                    }
                    strandedSince[key] = nil
                    lastProgress = context.clock.now()
                }
            }
            // Copy errors alone never stop the wait: PostgreSQL retries the table, and one that
            // keeps failing keeps its table from getting ready (the stall timeout reports it, with
            // the counts); a copy error retried and over (its table ready) is history — it had
            // stopped a resume after the operator fixed the cause. Apply errors stop it.
            var judged = look
            judged.errors = changes.isEmpty ? look.applyErrors : []
            if let (reason, advice) = await problem(judged) {
                try context.activity.doneWaiting()
                throw MigrationError(.stageFailed, reason + ". Next: " + advice)
            }
            let now = context.clock.now()
            if look.ready > best.ready || (look.ready == look.tables && look.lagBytes < best.lag) {
                best = (look.ready, look.lagBytes)
                lastProgress = now
            }
            context.activity.progress(StageProgress(task: "logical-copy", title: "initial copy (tables copied by the subscriptions)", kind: .transfer, unit: .items,
                                                    value: Int64(look.ready), total: Int64(look.tables), detail: look.notReady.isEmpty ? nil : String(look.notReady.joined(separator: "; ").prefix(120))))
            // One bar per table being copied; a table whose COPY ended gets its last bar, done.
            let nowCopying = Dictionary(look.copying.map { ($0.task, $0) }, uniquingKeysWith: { a, _ in a })
            for (task, ended) in copying where nowCopying[task] == nil {
                // Copied, or interrupted (a crash: PostgreSQL copies it again, a new bar).
                if !look.toCopy.contains(ended.database + "." + ended.table) { context.activity.progress(ended.progress(done: true)) }
            }
            for copy in look.copying { context.activity.progress(copy.progress()) }
            copying = nowCopying
            if look.ready == look.tables && look.tables > 0 {
                context.activity.progress(StageProgress(task: "logical-lag", title: "the subscriptions' lag on the single node", kind: .gauge, unit: .bytes,
                                                        value: look.lagBytes, target: sync.caughtUpLagBytes))
            }
            if look.tables > 0, look.ready == look.tables, look.lagBytes <= sync.caughtUpLagBytes, look.notStreaming.isEmpty {
                let changes = unverifiedChanges
                if !changes.isEmpty {
                    // Everything copied and streaming on the new leader: now it can be compared.
                    try await verifyAfterLeaderChanges(changes)
                    best = (-1, Int64.max)
                    lastProgress = context.clock.now()
                    continue
                }
                try context.activity.doneWaiting()
                // Every table sync succeeded: the errors retried on the way are over.
                if !look.errors.isEmpty { try await resetErrorCounters() }
                context.progress("every table copied (\(look.tables)); the subscriptions stream, lag \(formatBytes(look.lagBytes))")
                return
            }
            let what = look.ready < look.tables || look.tables == 0
                ? "the initial copy: \(look.ready) of \(look.tables) tables ready" + (look.notReady.isEmpty ? "" : " (copying: " + look.notReady.joined(separator: "; ").prefix(200) + ")")
                    + (look.errors.isEmpty ? "" : "; " + look.errors.joined(separator: "; "))
                : look.lagBytes <= sync.caughtUpLagBytes && !look.notStreaming.isEmpty
                    ? "the apply worker of \(look.notStreaming.joined(separator: ", ")) to start (PostgreSQL starts one per wal_retrieve_retry_interval)"
                    : "the subscriptions to catch up: lag \(formatBytes(look.lagBytes))"
            try context.activity.waiting(what, detail: nil, deadline: started.addingTimeInterval(sync.clusterTimeoutSeconds))
            if now.timeIntervalSince(started) > sync.clusterTimeoutSeconds {
                try context.activity.doneWaiting()
                throw MigrationError(.stageFailed, "the logical copy did not finish within sync.cluster_timeout (\(Int(sync.clusterTimeoutSeconds)) s): \(what). Next: `pgha resume` waits again")
            }
            if now.timeIntervalSince(lastProgress) > sync.stallTimeoutSeconds {
                try context.activity.doneWaiting()
                throw MigrationError(.stageFailed, "no progress for \(Int(sync.stallTimeoutSeconds)) s (sync.stall_timeout): \(what). Next: the cluster's PostgreSQL log; then `pgha resume`")
            }
            try await context.sleep(for: pollInterval)
        }
    }
}
