import Foundation
import PGClient

/// The logical method's deferred secondary indexes (`sync.defer_indexes: true`; off by default,
/// see docs/BENCHMARKS.md), as pg_restore builds its indexes after the data: the cluster's indexes
/// that no constraint owns, that are not unique and not the replica identity are dropped before
/// the initial copy (`defer-indexes:<db>`, undone with the database pgha created) and built once
/// every table is copied (`indexes:<db>`, from the single node's definitions). The apply workers
/// need only the primary key or the replica identity, which stay.
extension LogicalSync {
    /// Secondary indexes of the published tables: name (quoted) and definition.
    static let secondaryIndexesSQL = """
        SELECT format('%I.%I', n.nspname, c.relname), pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relkind = 'r' AND NOT t.relispartition AND t.relpersistence = 'p' AND c.relkind = 'i'
          AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion AND NOT i.indisreplident
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND d.deptype = 'e')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
        ORDER BY 1
        """

    static func deferStep(_ database: String) -> String { "defer-indexes:\(database)" }

    /// Before the subscription: the cluster's secondary indexes of `database` dropped.
    func deferIndexes(_ database: (source: String, cluster: String), on leader: (name: String, host: String, port: Int)) async throws {
        guard sync.deferIndexes else { return }
        try await step(Self.deferStep(database.source), "the cluster's secondary indexes of \(database.cluster) dropped until every table is copied (built again then; undone with the database)") {
            let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            let r = try await db.run(cluster, Self.secondaryIndexesSQL, what: "listing the secondary indexes of \(database.cluster)")
            let names = (0..<r.rowCount).compactMap { r.string($0, 0) }
            guard !names.isEmpty else { return }
            try await db.run(cluster, "DROP INDEX IF EXISTS " + names.joined(separator: ", "), what: "dropping \(names.count) secondary index(es) of \(database.cluster) until the copy is done")
            context.progress("\(database.source): \(names.count) secondary index(es) dropped on the cluster until every table is copied")
        }
    }

    /// Once every table is copied: each deferred index built on the leader (one at a time, as the
    /// single node defines it). Returns whether any was built (the lag is then waited for again).
    func buildDeferredIndexes() async throws -> Bool {
        var built = 0
        for database in db.databases where journal.step(stage, named: Self.deferStep(database.source))?.phase == .done {
            try context.checkCancellation()
            try await step("indexes:\(database.source)", "the secondary indexes of \(database.cluster) built on the cluster (every table copied)") {
                let leader = try await leader()
                let source = try await db.source(database.source)
                let r = try await db.run(source, Self.secondaryIndexesSQL, what: "listing the secondary indexes of \(database.source)")
                let definitions = (0..<r.rowCount).compactMap { row in r.string(row, 1).map { (name: r.string(row, 0) ?? "?", sql: $0) } }
                let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
                let started = context.clock.now()
                for (index, definition) in definitions.enumerated() {
                    try context.checkCancellation()
                    context.activity.progress(StageProgress(
                        task: "logical-indexes:\(database.source)", title: "secondary indexes of \(database.cluster) built", kind: .transfer,
                        unit: .items, value: Int64(index), total: Int64(definitions.count), detail: definition.name))
                    try await createIfMissing(definition.sql, name: definition.name, on: cluster)
                    built += 1
                }
                context.activity.progress(StageProgress(
                    task: "logical-indexes:\(database.source)", title: "secondary indexes of \(database.cluster) built", kind: .transfer,
                    unit: .items, value: Int64(definitions.count), total: Int64(definitions.count), detail: nil))
                context.progress(String(format: "%@: %d secondary index(es) built on the cluster in %.1f s", database.source, definitions.count,
                                        context.clock.now().timeIntervalSince(started)))
            }
        }
        return built > 0
    }

    /// `CREATE INDEX IF NOT EXISTS` from the single node's definition (an interrupted build rolled
    /// back: it is simply built again), bounded by sync.cluster_timeout.
    private func createIfMissing(_ definition: String, name: String, on cluster: PGConnection) async throws {
        let prefix = "CREATE INDEX "
        let sql = definition.hasPrefix(prefix) ? "CREATE INDEX IF NOT EXISTS " + definition.dropFirst(prefix.count) : definition
        do {
            _ = try await cluster.query(sql, timeout: .seconds(sync.clusterTimeoutSeconds))
        } catch {
            if error.code == .cancelled { throw MigrationError(.interrupted, "interrupted while building index \(name) on the cluster") }
            throw MigrationError(.stageFailed, "building index \(name) on the cluster failed: \(error.message). Next: fix the cause on the cluster, then `pgha resume` (or set sync.defer_indexes: false)")
        }
    }
}
