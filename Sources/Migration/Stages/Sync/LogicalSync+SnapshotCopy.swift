import Foundation
import PGClient
import PlainText
import Synchronization

/// The logical method's initial copy by pgha (`sync.initial_copy: snapshot`, the default), what
/// pg_dump | pg_restore does but with no compression and no file, at the very point the
/// subscription will stream from:
/// 1. `copy:<db>` — over a replication connection to the single node,
///    `CREATE_REPLICATION_SLOT … LOGICAL pgoutput (SNAPSHOT 'export')` (the subscription's own
///    slot; undo drops it); `sync.copy_jobs` sessions import its snapshot
///    (`SET TRANSACTION SNAPSHOT`), and each table, largest first, is streamed from
///    `COPY … TO STDOUT` on the single node into `COPY … FROM STDIN` on the leader (a plain table
///    of 64 MiB or more in `copy_jobs` ranges of heap blocks, copied at once) — binary when
///    both servers have the same major version and every column is of a built-in type, text
///    otherwise. The tables have no key or index yet. An interrupted copy cannot continue (its
///    snapshot ended with the connection): it is started again, the slot dropped and made anew,
///    the cluster's tables emptied.
/// 2. `post-data:<db>` — `pg_dump --section=post-data` restored on the leader in one transaction:
///    primary keys, unique and foreign-key constraints, indexes, triggers, as pg_restore builds
///    them after its data (the apply workers need the replica identity's index, so before the
///    subscription starts).
/// 3. the subscription, `copy_data = false, create_slot = false`, streams every change committed
///    after the snapshot.
extension LogicalSync {
    static func copyStep(_ database: String) -> String { "copy:\(database)" }

    /// Bytes gathered from the single node's COPY OUT before they are sent on.
    static let copyPiece = 256 << 10

    /// A plain table at least this large is copied in `sync.copy_jobs` pieces at once.
    static let splitBytes: Int64 = 64 << 20

    /// One table to copy: quoted name and column list (generated columns left out: COPY FROM
    /// refuses them), its size on the single node, whether COPY can be binary; `blocks`, a piece
    /// of a large plain table: the rows in the heap blocks `lower..<upper` (`upper` nil: to the
    /// end), read by a TID range scan.
    struct CopyTable: Sendable, Equatable {
        /// Heap blocks `lower..<upper` (`upper` nil: to the end of the table).
        struct Blocks: Sendable, Equatable {
            let lower: Int64
            let upper: Int64?
        }

        let name: String
        let columns: String
        let partitioned: Bool
        let bytes: Int64
        let binary: Bool
        var blocks: Blocks? = nil

        var copyOut: String {
            var range = ""
            if let blocks {
                range = blocks.lower > 0 ? " WHERE ctid >= '(\(blocks.lower),0)'::tid" : ""
                if let upper = blocks.upper { range += (range.isEmpty ? " WHERE" : " AND") + " ctid < '(\(upper),0)'::tid" }
            }
            return "COPY (SELECT \(columns) FROM \(partitioned ? "" : "ONLY ")\(name)\(range)) TO STDOUT" + (binary ? " (FORMAT binary)" : "")
        }

        /// The pieces `jobs` sessions copy at once: a plain table of at least `splitBytes` in
        /// `jobs` ranges of heap blocks (the last one open, whatever the heap has beyond), every
        /// other table whole. Pieces of one table stay together, largest tables first.
        static func pieces(_ tables: [CopyTable], jobs: Int, blockSize: Int64) -> [CopyTable] {
            tables.flatMap { table -> [CopyTable] in
                let blocks = table.bytes / max(1, blockSize)
                guard jobs > 1, !table.partitioned, table.bytes >= LogicalSync.splitBytes, blocks >= Int64(jobs) else { return [table] }
                return (0..<Int64(jobs)).map { i in
                    var piece = CopyTable(name: table.name, columns: table.columns, partitioned: false,
                                          bytes: table.bytes / Int64(jobs), binary: table.binary)
                    piece.blocks = Blocks(lower: blocks * i / Int64(jobs), upper: i == Int64(jobs) - 1 ? nil : blocks * (i + 1) / Int64(jobs))
                    return piece
                }
            }
        }
        var copyIn: String {
            "COPY \(name)" + (columns.isEmpty ? "" : " (\(columns))") + " FROM STDIN" + (binary ? " (FORMAT binary)" : "")
        }
    }

    /// The published tables (LogicalSync.publishedTablesSQL's filter) with what the copy needs;
    /// `$1`: the cluster's major version (binary COPY only between equal ones).
    static let copyTablesSQL = """
        SELECT format('%I.%I', n.nspname, c.relname), c.relkind = 'p',
               CASE WHEN c.relkind = 'p' THEN coalesce((SELECT sum(pg_relation_size(p.relid)) FROM pg_partition_tree(c.oid) p), 0)
                    ELSE pg_relation_size(c.oid) END,
               coalesce((SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), ''),
               current_setting('server_version_num')::int / 10000 = $1::int
                 AND NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                   AND (t.oid >= 16384 OR t.typelem >= 16384 OR t.typtype IN ('d', 'c', 'e', 'r', 'm')))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
        ORDER BY 3 DESC, 1
        """

    /// Step `copy:<db>`: the slot with its exported snapshot, every table copied at it.
    func snapshotCopy(_ database: (source: String, cluster: String), on leader: (name: String, host: String, port: Int)) async throws {
        let slot = Self.subscriptionName(playbook, database: database.source)
        let name = Self.copyStep(database.source)
        let again = journal.step(stage, named: name)?.phase == .intent
        try await step(name, "every table of \(database.source) copied to the cluster at the snapshot of slot \(slot) on the single node (COPY, \(sync.copyJobs) at a time)",
                       undo: .replicationSlot(.init(server: "source", name: slot, type: "logical", createdByPGHA: true))) {
            if again {
                // The interrupted attempt's snapshot is gone: start again from a new one.
                context.progress("\(database.source): the copy was interrupted: starting it again from a new snapshot")
                try await dropSourceSlot(slot, database: database.source)
            }
            try await copyAtSnapshot(database, slot: slot, on: leader)
        }
    }

    private func copyAtSnapshot(_ database: (source: String, cluster: String), slot: String, on leader: (name: String, host: String, port: Int)) async throws {
        guard let sourceLogin = db.connections.sourceAdminLogin(database: database.source),
              var clusterLogin = db.connections.memberAdminLogin(host: leader.host, port: leader.port) else {
            throw MigrationError(.stageFailed, "the logical method needs source.admin_user and target.admin_user (superusers): it copies the tables")
        }
        clusterLogin.database = database.cluster
        let targetLogin = clusterLogin
        let started = context.clock.now()
        let deadline = Duration.seconds(sync.clusterTimeoutSeconds)
        let cache = ConnectionCache(connections: db.connections, applicationName: "pgha_sync_copy")
        defer { cache.close() }
        @Sendable func open(_ key: String, _ login: StageConnections.Login) async throws(MigrationError) -> PGConnection {
            switch await cache.connection(key: key, login: login) {
            case .success(let c): return c
            case .failure(let failure): throw MigrationError(.stageFailed, failure.message)
            }
        }

        // A leader change before this copy (the one that interrupted the last attempt) is
        // journaled now, so that the watchdog stops this copy only for a change during it.
        _ = try await noticeLeaderChange()

        // The cluster's tables, emptied (a copy started again finds the first attempt's rows).
        let cluster = try await open("target/\(database.cluster)/0", targetLogin)
        let major = try await db.run(cluster, "SELECT current_setting('server_version_num')::int / 10000", what: "reading the cluster's version")
        let listed = try await db.run(cluster, Self.publishedTablesSQL, what: "listing the tables of \(database.cluster) on the cluster")
        let clusterTables = (0..<listed.rowCount).compactMap { listed.string($0, 0) }
        if !clusterTables.isEmpty {
            try await db.run(cluster, "TRUNCATE " + clusterTables.joined(separator: ", "), what: "emptying the tables of \(database.cluster) on the cluster")
        }

        // The slot and its snapshot: the replication connection stays open, idle, until every
        // session has imported the snapshot.
        let (replication, observation) = await db.connections.connect(sourceLogin, applicationName: "pgha_sync_copy", parameters: ["replication": "database"])
        guard let replication else {
            throw MigrationError(.stageFailed, "cannot open a replication connection to the single node as \(sourceLogin.user): \(observation.error ?? "?")")
        }
        defer { replication.close() }
        let created: PGResult
        do {
            created = try await replication.query("CREATE_REPLICATION_SLOT \(SQLQuoting.quotedIdentifier(slot)) LOGICAL pgoutput (SNAPSHOT 'export')", timeout: .seconds(120))
        } catch {
            if error.code == .cancelled { throw MigrationError(.interrupted, "interrupted while creating slot \(slot)") }
            throw MigrationError(.stageFailed, "creating slot \(slot) on the single node failed: \(db.connections.describe(error.description)) (it waits for the transactions running then to end: a long one holds it). Next: `pgha resume`")
        }
        guard let snapshot = created.string(0, 2), let point = created.string(0, 1) else {
            throw MigrationError(.stageFailed, "CREATE_REPLICATION_SLOT returned no snapshot")
        }
        context.progress("\(database.source): slot \(slot) created on the single node at \(point); copying at its snapshot")

        // The sessions that read the single node, all at the snapshot.
        var sources: [PGConnection] = []
        for job in 0..<max(1, sync.copyJobs) {
            let c = try await open("source/\(database.source)/\(job)", sourceLogin)
            try await db.run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", what: "starting the copy's transaction")
            try await db.run(c, "SET TRANSACTION SNAPSHOT \(SQLQuoting.literal(snapshot))", what: "importing the slot's snapshot")
            sources.append(c)
        }
        replication.close()
        let r = try await db.run(sources[0], Self.copyTablesSQL, [.text(major.string(0, 0) ?? "0")], what: "listing the tables of \(database.source)")
        let listedTables = (0..<r.rowCount).map { row in
            CopyTable(name: r.string(row, 0) ?? "?", columns: r.string(row, 3) ?? "", partitioned: (try? r.bool(row, 1)) == true,
                      bytes: (try? r.int(row, 2)) ?? 0, binary: (try? r.bool(row, 4)) == true)
        }
        let blockSize = try await db.run(sources[0], "SELECT current_setting('block_size')::bigint", what: "reading the block size")
        let tables = CopyTable.pieces(listedTables, jobs: sources.count, blockSize: (try? blockSize.int(0, 0)) ?? 8192)
        let total = listedTables.reduce(Int64(0)) { $0 + $1.bytes }
        let work = CopyWork(tables)
        let task = "logical-copy:\(database.source)"
        let title = "copying \(database.source) at the slot's snapshot"
        let report: @Sendable (String?) -> Void = { [context] detail in
            context.activity.progress(StageProgress(task: task, title: title, kind: .transfer, unit: .bytes,
                                                    value: min(work.bytes.load(ordering: .relaxed), total), total: total,
                                                    detail: detail ?? "\(work.finished.load(ordering: .relaxed)) of \(tables.count) pieces (\(listedTables.count) tables)"))
        }
        report(nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (job, source) in sources.enumerated() {
                group.addTask { [self] in
                    let target = try await open("target/\(database.cluster)/\(job)", targetLogin)
                    while let table = work.next() {
                        try context.checkCancellation()
                        let remaining = deadline - Duration.seconds(context.clock.now().timeIntervalSince(started))
                        guard remaining > .zero else {
                            throw MigrationError(.stageFailed, "the copy of \(database.source) took longer than sync.cluster_timeout (\(Int(sync.clusterTimeoutSeconds)) s). Next: raise it, then `pgha resume` (the copy starts again)")
                        }
                        try await copy(table, from: source, to: target, timeout: remaining, work: work, database: database.source)
                        work.finished.add(1, ordering: .relaxed)
                    }
                }
            }
            group.addTask { [self] in
                // The watchdog: a COPY into a leader whose node died can hang without an error
                // (its backend outlives the postmaster), so the copy is stopped when the leader
                // changes, stops answering while nothing moves, or nothing moves for
                // sync.stall_timeout. Throwing cancels the workers (PQcancel, then closed).
                // Ticks of 50 ms, so that the copy's end is not held back by a sleep (a bar every
                // 500 ms, the leader looked at every 2 s).
                var watch = CopyWatch(started: context.clock.now())
                var tick = 0
                while work.finished.load(ordering: .relaxed) < tables.count {
                    try await context.sleep(for: .milliseconds(50))
                    tick += 1
                    guard tick % 10 == 0 else { continue }
                    report(nil)
                    let now = context.clock.now()
                    watch.moved(work.bytes.load(ordering: .relaxed), at: now)
                    if tick % 40 == 0 {
                        let identity = await leaderIdentity()
                        if try await noticeLeaderChange(seen: identity) {
                            throw MigrationError(.stageFailed, "the cluster's leader changed during the copy of \(database.source): the copy stopped. Next: `pgha resume` (the copy starts again from a new snapshot on the new leader)")
                        }
                        watch.answered(identity != nil, at: now)
                    }
                    if let reason = watch.verdict(at: now, stallSeconds: sync.stallTimeoutSeconds) {
                        throw MigrationError(.stageFailed, "the copy of \(database.source) stopped: \(reason). Next: check the cluster (`patronictl list`), then `pgha resume` (the copy starts again from a new snapshot)")
                    }
                }
            }
            try await group.waitForAll()
        }
        for source in sources { _ = try? await source.query("COMMIT", timeout: CutoverDatabases.statementTimeout) }
        work.bytes.store(total, ordering: .relaxed)
        let seconds = context.clock.now().timeIntervalSince(started)
        report(String(format: "%d tables in %.1f s", listedTables.count, seconds))
        context.progress(String(format: "%@: %d tables copied (%@ on the single node, %d pieces) in %.1f s at the snapshot of slot %@",
                                database.source, listedTables.count, formatBytes(total), tables.count, seconds, slot))
    }

    /// One table: the single node's COPY OUT streamed into the leader's COPY IN, chunk by chunk.
    private func copy(_ table: CopyTable, from source: PGConnection, to target: PGConnection, timeout: Duration,
                      work: CopyWork, database: String) async throws {
        let out = table.copyOut
        do {
            _ = try await target.copyIn(table.copyIn, timeout: timeout) { writer in
                // libpq hands COPY OUT over one row at a time: rows are gathered into pieces of
                // `copyPiece` bytes before each is sent (one PQputCopyData per row cost ~3 µs, a
                // third of the copy's time on 3.4 million rows).
                var piece: [UInt8] = []
                piece.reserveCapacity(Self.copyPiece + (64 << 10))
                _ = try source.copyOut(out, timeout: timeout) { chunk in
                    piece.append(contentsOf: chunk)
                    if piece.count >= Self.copyPiece {
                        try writer.write(piece)
                        work.bytes.add(Int64(piece.count), ordering: .relaxed)
                        piece.removeAll(keepingCapacity: true)
                    }
                    return .next
                }
                try writer.write(piece)
                work.bytes.add(Int64(piece.count), ordering: .relaxed)
            }
        } catch {
            if (error as? PGError)?.code == .cancelled || Task.isCancelled {
                throw MigrationError(.interrupted, "interrupted while copying \(database).\(table.name)")
            }
            throw MigrationError(.stageFailed, "copying \(database).\(table.name) to the cluster failed: \(db.connections.describe(String(describing: error))). Next: fix the cause, then `pgha resume` (the copy starts again from a new snapshot), or `pgha rollback`")
        }
    }
}

/// The snapshot copy's watchdog (pure: the caller brings the clock's readings): when the bytes
/// last moved and since when the leader has not answered; `verdict` says why to stop, if it must.
struct CopyWatch: Equatable {
    /// The leader unanswering this long, with no byte copied meanwhile, stops the copy.
    static let unansweredSeconds: Double = 15
    private(set) var bytes: Int64 = -1
    private(set) var movedAt: Date
    private(set) var unansweredSince: Date?

    init(started: Date) { movedAt = started }

    mutating func moved(_ now: Int64, at time: Date) {
        if now != bytes { bytes = now; movedAt = time }
    }

    mutating func answered(_ answered: Bool, at time: Date) {
        unansweredSince = answered ? nil : (unansweredSince ?? time)
    }

    func verdict(at time: Date, stallSeconds: Double) -> String? {
        let still = time.timeIntervalSince(movedAt)
        if let since = unansweredSince, time.timeIntervalSince(since) >= Self.unansweredSeconds, still >= Self.unansweredSeconds {
            return String(format: "the cluster's leader has not answered for %.0f s and no byte was copied meanwhile", time.timeIntervalSince(since))
        }
        if still >= stallSeconds {
            return String(format: "no byte copied for %.0f s (sync.stall_timeout)", still)
        }
        return nil
    }
}

/// The copy's shared work: the tables left (largest first) and the bytes and tables done.
final class CopyWork: Sendable {
    private let left: Mutex<ArraySlice<LogicalSync.CopyTable>>
    let bytes = Atomic<Int64>(0)
    let finished = Atomic<Int>(0)

    init(_ tables: [LogicalSync.CopyTable]) { left = Mutex(tables[...]) }

    func next() -> LogicalSync.CopyTable? { left.withLock { $0.popFirst() } }
}

extension LogicalSync {

    /// Step `post-data:<db>`: keys, constraints, indexes and triggers, after the data.
    func restorePostData(_ database: (source: String, cluster: String), on leader: (name: String, host: String, port: Int)) async throws {
        let name = "post-data:\(database.source)"
        try await step(name, "the single node's keys, indexes, constraints and triggers of \(database.source) restored on the cluster after the data (pg_dump --section=post-data)") {
            // An interrupted restore rolled back (one transaction); one that committed left indexes.
            if journal.step(stage, named: name)?.phase == .intent {
                let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
                let r = try await db.run(cluster, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'", what: "looking for indexes on the cluster")
                if ((try? r.int(0, 0)) ?? 0) > 0 {
                    context.progress("\(database.source): keys and indexes are on the cluster already (restored before an interruption)")
                    return
                }
            }
            let seconds = try await dumpAndRestore(database, on: leader, options: "--section=post-data", key: "sync.post_data",
                                                   what: "restoring the keys and indexes of \(database.source) (pg_dump --section=post-data | psql)")
            context.progress(String(format: "%@: keys, indexes, constraints and triggers built on the cluster in %.1f s", database.source, seconds))
        }
    }
}
