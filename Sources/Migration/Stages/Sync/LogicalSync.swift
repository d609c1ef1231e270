import Foundation
import PGClient
import Patroni
import HAPool
import PlainText

/// Stage `sync`, logical method: copies every migrated database into an independently initialised
/// cluster (another major version, checksums, a fresh initdb) by logical replication.
///
/// Run, every side effect journaled first (undo in reverse): `role:<name>` for each role the
/// databases need that the cluster lacks (LogicalSync+Roles); then per database:
/// 1. `database:<db>` — the database on the cluster's leader, created by pgha (it must not
///    exist: the copy goes into an empty database; undo drops it);
/// 2. `schema:<db>` — the single node's schema (`pg_dump --schema-only`, no publications or
///    subscriptions) restored on the leader in one transaction (undone with the database);
///    `cluster-timeline` records the leader's timeline; `defer-indexes:<db>` drops the cluster's
///    secondary indexes until the copy is done (`sync.defer_indexes`, LogicalSync+Indexes);
/// 3. `publication:<db>` — `CREATE PUBLICATION <sync.publication> FOR ALL TABLES` on the single
///    node (undo drops it);
/// 4. `subscription:<db>` — `CREATE SUBSCRIPTION` on the leader, logging in to the single node as
///    `sync.publisher`, with `synchronous_commit = on` (undo disables it, detaches and drops it,
///    then drops its slot on the single node);
/// `launcher-interval` lowers the leader's `wal_retrieve_retry_interval` while the subscriptions
/// start (LogicalSync+Launcher), put back once every apply worker runs;
/// 5. the wait: every table's initial copy (`pg_subscription_rel`) as a progress bar, then the
///    slot's lag on the single node; bounded by `sync.cluster_timeout` and `sync.stall_timeout`;
/// 6. `indexes:<db>` — the deferred indexes built on the leader, then the lag waited for again.
///
/// Stopped at once, with what to do: a copy or apply error on the cluster
/// (`pg_stat_subscription_stats`), the slot holding back more than `sync.max_wal_retention`, DDL
/// on the single node (its tables and columns no longer those the cluster got), and any change of
/// the cluster's leader timeline — after a crash of the leader, rows it had applied and confirmed
/// may be missing on the new one, silently (../shared/ENVIRONMENT.md), so the copy is not trusted.
struct LogicalSync: Sendable {
    let context: StageContext
    let journal: StateJournal
    let db: CutoverDatabases
    let stage = MigrationStage.sync
    var pollInterval: Duration = .seconds(1)

    var playbook: Playbook { context.playbook }
    var sync: Playbook.Sync { playbook.sync }

    /// The subscription (and its slot on the single node) for a database.
    static func subscriptionName(_ playbook: Playbook, database: String) -> String {
        let clean = database.lowercased().map { ($0.isLetter && $0.isASCII) || $0.isNumber ? $0 : "_" }
        return String((playbook.sync.slot + "_" + String(clean)).prefix(63))
    }

    // MARK: - Steps

    func step(_ name: String, _ detail: String, undo: StepUndo = .nothing, _ body: () async throws -> Void) async throws {
        try await journal.runStep(stage, name, detail: detail, undo: undo) {
            try await body()
            return nil
        }
    }

    func leader() async throws(MigrationError) -> (name: String, host: String, port: Int) {
        guard let leader = await db.writableLeader() else {
            throw MigrationError(.stageFailed, "the cluster has no writable leader: the logical method copies into a running cluster (check `patronictl list`), then `pgha resume`")
        }
        return leader
    }

    func run() async throws {
        let leader = try await leader()
        // First, so that Patroni names its synchronous standby while the schema is restored.
        try await enableSynchronousMode()
        try await createRoles(on: leader)
        for database in db.databases {
            try context.checkCancellation()
            try await createDatabase(database, on: leader)
            try await copySchema(database, on: leader)
            if sync.initialCopy == .subscription { try await deferIndexes(database, on: leader) }
        }
        if sync.initialCopy == .subscription { try await awaitSynchronousStandby() }
        try await recordIdentity()
        try await quickenLauncher(on: leader)
        for (index, database) in db.databases.enumerated() {
            try context.checkCancellation()
            try await createPublication(database)
            if sync.initialCopy == .snapshot {
                // The slot (and its snapshot) after the publication: pgoutput reads the
                // publication as the catalog stood at each change it decodes.
                try await snapshotCopy(database, on: leader)
                try await restorePostData(database, on: leader)
                // Patroni has named its synchronous standby while the copy ran.
                if index == 0 { try await awaitSynchronousStandby() }
            }
            try await createSubscription(database, on: leader)
        }
        try await wait()
        await restoreLauncher()
        // Building an index holds its table's apply back: the lag is waited for again after.
        if try await buildDeferredIndexes() { try await wait() }
    }

    func createDatabase(_ database: (source: String, cluster: String), on leader: (name: String, host: String, port: Int)) async throws {
        let name = database.cluster
        try await step("database:\(database.source)", "CREATE DATABASE \(name) on the cluster",
                       undo: .createdObject(.init(server: "cluster", database: name, kind: "database", name: name))) {
            let postgres = try await db.member(host: leader.host, port: leader.port, database: "postgres")
            let exists = try await db.run(postgres, "SELECT 1 FROM pg_database WHERE datname = $1", [.text(name)], what: "looking for database \(name)")
            if exists.rowCount > 0 {
                // Only an interrupted run of this very step may find it (its intent is recorded).
                guard journal.step(stage, named: "database:\(database.source)")?.phase == .intent, await isEmpty(name, on: leader) else {
                    throw MigrationError(.stageFailed, "database \(name) exists on the cluster already: the logical method copies into a database it creates. Drop it there, or name another one in target.databases, then `pgha resume`")
                }
                return
            }
            let owner = database.source == playbook.source.databases.shared ? (playbook.source.sharedUser ?? playbook.target.user) : playbook.target.user
            try await db.run(postgres, "CREATE DATABASE \(SQLQuoting.quotedIdentifier(name)) OWNER \(SQLQuoting.quotedIdentifier(owner))", what: "CREATE DATABASE \(name)")
            context.progress("\(database.source): database \(name) created on the cluster (owner \(owner))")
        }
    }

    /// No user table in `database` (so restoring the schema cannot collide).
    func isEmpty(_ database: String, on leader: (name: String, host: String, port: Int)) async -> Bool {
        guard let c = try? await db.member(host: leader.host, port: leader.port, database: database),
              let r = try? await c.query("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')", timeout: .seconds(10))
        else { return false }
        return (try? r.int(0, 0)) == 0
    }

    /// libpq connection strings (no password: the child gets it in PGPASSWORD).
    func dsn(host: String, port: Int, database: String, user: String, tls: PostgresTLS) -> String {
        CutoverDatabases.conninfo(host: host, port: String(port), database: database, user: user, tls: tls)
    }

    func copySchema(_ database: (source: String, cluster: String), on leader: (name: String, host: String, port: Int)) async throws {
        // The snapshot copy restores only the tables (pre-data) now; keys, indexes, constraints and
        // triggers come after the data (`post-data:<db>`, LogicalSync+SnapshotCopy).
        let preDataOnly = sync.initialCopy == .snapshot
        let what = preDataOnly ? "pg_dump --schema-only --section=pre-data" : "pg_dump --schema-only"
        try await step("schema:\(database.source)", "the single node's schema of \(database.source) restored on the cluster (\(what))") {
            // An interrupted restore rolled back (one transaction); one that committed left tables.
            if journal.step(stage, named: "schema:\(database.source)")?.phase == .intent, await !isEmpty(database.cluster, on: leader) {
                context.progress("\(database.source): the schema is on the cluster already (restored before an interruption)")
                return
            }
            let seconds = try await dumpAndRestore(database, on: leader, options: preDataOnly ? "--schema-only --section=pre-data" : "--schema-only",
                                                   key: "sync.schema", what: "copying the schema of \(database.source) (\(what) | psql)")
            context.progress(String(format: "%@: schema restored on the cluster in %.1f s", database.source, seconds))
        }
    }

    /// `pg_dump <options>` of the single node's `database` restored with psql in one transaction
    /// on the leader's copy of it; returns the seconds taken. The passwords go to the children in
    /// PGPASSWORD, one at a time; the file (schema only, mode 0600) is removed after.
    func dumpAndRestore(_ database: (source: String, cluster: String), on leader: (name: String, host: String, port: Int),
                        options: String, key: String, what: String) async throws -> Double {
        guard let sourceAdmin = playbook.source.adminUser, let targetAdmin = playbook.target.adminUser else {
            throw MigrationError(.stageFailed, "the logical method needs source.admin_user and target.admin_user (superusers): it copies the schema and creates publications and subscriptions")
        }
        let file = context.store.directory + "/schema-\(Self.subscriptionName(playbook, database: database.source)).sql"
        defer { try? FileManager.default.removeItem(atPath: file) }
        var env = HookRunner.environment(for: context, key: key)
        env["PGHA_SCHEMA_FILE"] = file
        env["PGHA_DUMP_OPTIONS"] = options
        env["PGHA_SOURCE_DSN"] = dsn(host: playbook.source.host, port: playbook.source.port, database: database.source, user: sourceAdmin, tls: playbook.source.tls)
        env["PGHA_TARGET_DSN"] = dsn(host: leader.host, port: leader.port, database: database.cluster, user: targetAdmin, tls: playbook.target.tls)
        env["PGHA_SOURCE_PASSWORD"] = try playbook.source.adminPassword.map { try $0.resolve(in: context.environment, key: "source.admin_password") }
        env["PGHA_TARGET_PASSWORD"] = try playbook.target.adminPassword.map { try $0.resolve(in: context.environment, key: "target.admin_password") }
        let command = """
            set -e
            umask 077
            if [ -n "$PGHA_SOURCE_PASSWORD" ]; then PGPASSWORD="$PGHA_SOURCE_PASSWORD"; export PGPASSWORD; fi
            pg_dump $PGHA_DUMP_OPTIONS --no-publications --no-subscriptions --file "$PGHA_SCHEMA_FILE" --dbname "$PGHA_SOURCE_DSN"
            unset PGPASSWORD
            if [ -n "$PGHA_TARGET_PASSWORD" ]; then PGPASSWORD="$PGHA_TARGET_PASSWORD"; export PGPASSWORD; fi
            psql -X -q -v ON_ERROR_STOP=1 --single-transaction --file "$PGHA_SCHEMA_FILE" --dbname "$PGHA_TARGET_DSN"
            """
        let runner = HookRunner(environment: env, redactor: context.redactor)
        let result = try await runner.run(command, key: key, timeout: .seconds(max(sync.hookTimeoutSeconds, sync.clusterTimeoutSeconds)), clock: context.clock)
        guard result.exitStatus == 0 else {
            throw MigrationError(.stageFailed, "\(what) failed (exit \(result.exitStatus)): " + result.outputTail.suffix(3).joined(separator: " / ") + ". Next: fix the cause on the cluster, then `pgha resume` (or `pgha rollback`)")
        }
        return result.seconds
    }

    /// The tables the publication lists: every permanent table (a partitioned one as its root),
    /// outside the system schemas. Unlogged tables cannot be published (prerequisites name them).
    static let publishedTablesSQL = """
        SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
        ORDER BY 1
        """

    func createPublication(_ database: (source: String, cluster: String)) async throws {
        let name = sync.publication
        try await step("publication:\(database.source)", "CREATE PUBLICATION \(name) FOR TABLE (every table) on the single node (\(database.source))",
                       undo: .createdObject(.init(server: "source", database: database.source, kind: "publication", name: name))) {
            let source = try await db.source(database.source)
            let exists = try await db.run(source, "SELECT 1 FROM pg_publication WHERE pubname = $1", [.text(name)], what: "looking for publication \(name)")
            if exists.rowCount == 0 {
                // A list, not FOR ALL TABLES: one table can then be copied again (after a leader
                // change). A table created later is DDL, which stops the stage anyway.
                let tables = try await db.run(source, Self.publishedTablesSQL, what: "listing the tables of \(database.source)")
                let list = (0..<tables.rowCount).compactMap { tables.string($0, 0) }
                try await db.run(source, "CREATE PUBLICATION \(SQLQuoting.identifier(name))" + (list.isEmpty ? "" : " FOR TABLE " + list.joined(separator: ", ")), what: "CREATE PUBLICATION \(name)")
            }
            context.progress("\(database.source): publication \(name) on the single node")
        }
    }

    func subscriptionConninfo(database: String) throws(MigrationError) -> String {
        let s = playbook.source
        guard let user = sync.publisherUser, let reference = sync.publisherPassword else {
            throw MigrationError(.stageFailed, "the logical method needs sync.publisher (user and password): the role the cluster's subscription logs in to the single node as")
        }
        let password = try reference.resolve(in: context.environment, key: "sync.publisher.password")
        // The cluster's leader makes this connection: sslrootcert is a path on its machine.
        return CutoverDatabases.conninfo(host: s.host, port: String(s.port), database: database, user: user,
                                         tls: PostgresTLS(sslMode: s.sslmode, sslRootCert: s.sslrootcert),
                                         extra: ["connect_timeout=5", "application_name=pgha_sync"], password: password)
    }

    func createSubscription(_ database: (source: String, cluster: String), on leader: (name: String, host: String, port: Int)) async throws {
        let name = Self.subscriptionName(playbook, database: database.source)
        try await step("subscription:\(database.source)", "CREATE SUBSCRIPTION \(name) on the cluster (\(database.cluster)): the initial copy, then streaming",
                       undo: .createdObject(.init(server: "cluster", database: database.cluster, kind: "subscription", name: name))) {
            let cluster = try await db.member(host: leader.host, port: leader.port, database: database.cluster)
            let exists = try await db.run(cluster, "SELECT 1 FROM pg_subscription WHERE subname = $1", [.text(name)], what: "looking for subscription \(name)")
            if exists.rowCount == 0 {
                let conninfo = try subscriptionConninfo(database: database.source)
                // The snapshot copy made the slot and copied at its snapshot: stream from it.
                let copy = sync.initialCopy == .snapshot ? "copy_data = false, create_slot = false" : "copy_data = true"
                try await db.run(cluster, "CREATE SUBSCRIPTION \(SQLQuoting.identifier(name)) CONNECTION \(SQLQuoting.literal(conninfo)) PUBLICATION \(SQLQuoting.identifier(sync.publication)) WITH (slot_name = \(SQLQuoting.literal(name)), \(copy), synchronous_commit = 'on')",
                                 what: "CREATE SUBSCRIPTION \(name)")
            }
            context.progress("\(database.source): subscription \(name) on the cluster: " + (sync.initialCopy == .snapshot ? "streaming from the copy's snapshot" : "the initial copy runs"))
        }
    }

    // MARK: - Gate

    func gate() async -> [CheckResult] {
        let look: Look
        do { look = try await self.look() } catch {
            return [.fail("sync.logical", observed: "could not look: \(error)", expected: "every table copied and streaming", advice: "fix the cause, then `pgha resume`")]
        }
        var results: [CheckResult] = []
        results.append(look.tables > 0 && look.ready == look.tables
            ? .pass("sync.tables_copied", observed: "\(look.ready) of \(look.tables) tables ready", expected: "every table ready")
            : .fail("sync.tables_copied", observed: "\(look.ready) of \(look.tables) tables ready" + (look.notReady.isEmpty ? "" : ": " + look.notReady.joined(separator: "; ")), expected: "every table ready", advice: "`pgha resume` waits for the copy"))
        results.append(look.notStreaming.isEmpty
            ? .pass("sync.apply_workers", observed: "every subscription's apply worker runs", expected: "one per subscription")
            : .fail("sync.apply_workers", observed: "no apply worker yet for " + look.notStreaming.joined(separator: ", "), expected: "one per subscription", advice: "`pgha resume` waits for it (PostgreSQL starts one per wal_retrieve_retry_interval)"))
        results.append(look.lagBytes <= sync.caughtUpLagBytes
            ? .pass("sync.lag", observed: formatBytes(look.lagBytes), expected: "≤ \(formatBytes(sync.caughtUpLagBytes)) (sync.caught_up_lag)")
            : .fail("sync.lag", observed: formatBytes(look.lagBytes), expected: "≤ \(formatBytes(sync.caughtUpLagBytes)) (sync.caught_up_lag)", advice: "`pgha resume` waits for the subscriptions"))
        results.append(look.retainedBytes <= sync.maxWALRetentionBytes
            ? .pass("sync.wal_retention", observed: formatBytes(look.retainedBytes), expected: "≤ \(formatBytes(sync.maxWALRetentionBytes)) (sync.max_wal_retention)")
            : .fail("sync.wal_retention", observed: formatBytes(look.retainedBytes), expected: "≤ \(formatBytes(sync.maxWALRetentionBytes))", advice: "find why the cluster does not keep up"))
        results.append(look.errors.isEmpty
            ? .pass("sync.subscription_errors", observed: "none", expected: "no copy or apply error")
            : .fail("sync.subscription_errors", observed: look.errors.joined(separator: "; "), expected: "no copy or apply error", advice: "the cluster's PostgreSQL log says which; fix, then `pgha resume`"))
        results.append(look.schemaChanges.isEmpty
            ? .pass("sync.schema", observed: "the cluster has the single node's tables and columns", expected: "no DDL since the copy")
            : .fail("sync.schema", observed: look.schemaChanges.prefix(5).joined(separator: "; "), expected: "no DDL since the copy", advice: "apply the DDL on the cluster, then `pgha resume`"))
        if let (reason, advice) = await leaderChange() {
            results.append(.fail("sync.leader_unchanged", observed: reason, expected: "no unplanned leader change, or each verified", advice: advice))
        } else {
            let verified = journal.steps(of: stage).filter { $0.phase == .done && $0.name.hasPrefix(Self.verifiedPrefix) }.count
            results.append(.pass("sync.leader_unchanged", observed: verified == 0 ? "the leader of the copy" : "\(verified) leader change(s), each verified by a compare (what differed copied again)",
                                 expected: "no unplanned leader change, or each verified"))
        }
        return results
    }

    // MARK: - Undo

    func undo() async throws {
        for step in journal.steps(of: stage).reversed() where step.phase == .done || step.phase == .intent {
            if case .patroniSetting(let setting) = step.undo {
                try await restore(setting)
            }
            if case .serverSettings = step.undo, step.name == Self.launcherStep {
                try await restoreLauncher(throwing: true)
            }
            if case .replicationSlot(let slot) = step.undo, slot.server == "source", slot.createdByPGHA {
                try await dropSourceSlot(slot.name, database: step.name.hasPrefix("copy:") ? String(step.name.dropFirst(5)) : playbook.source.databases.project)
            }
            if case .createdObject(let object) = step.undo {
                switch (object.server, object.objectKind) {
                case ("cluster", "subscription"):
                    try await dropSubscription(object.name, database: object.database)
                case ("source", "publication"):
                    let source = try await db.source(object.database)
                    try await db.run(source, "DROP PUBLICATION IF EXISTS \(SQLQuoting.identifier(object.name))", what: "dropping publication \(object.name)")
                    context.progress("\(object.database): publication \(object.name) dropped on the single node")
                case ("cluster", "role"):
                    await dropRole(object.name)
                case ("cluster", "database"):
                    if let leader = await db.writableLeader() {
                        let postgres = try await db.member(host: leader.host, port: leader.port, database: "postgres")
                        try await db.run(postgres, "DROP DATABASE IF EXISTS \(SQLQuoting.quotedIdentifier(object.name)) WITH (FORCE)", what: "dropping database \(object.name) on the cluster")
                        context.progress("database \(object.name) dropped on the cluster")
                    } else {
                        throw MigrationError(.stageFailed, "the cluster has no writable leader: database \(object.name) cannot be dropped. Next: start the cluster, then `pgha rollback` again")
                    }
                default:
                    break
                }
            }
            try journal.markStepUndone(step.id)
        }
    }

    /// Disables, detaches and drops the subscription on the cluster, then its slot on the single node.
    func dropSubscription(_ name: String, database: String) async throws {
        if let leader = await db.writableLeader() {
            let cluster = try await db.member(host: leader.host, port: leader.port, database: database)
            if try await db.dropSubscription(name, on: cluster) {
                context.progress("subscription \(name) dropped on the cluster")
            }
        }
        try await dropSourceSlot(name, database: db.databases.first { $0.cluster == database }?.source ?? playbook.source.databases.project)
    }

    /// Slot `name` on the single node (a connection to its `database`), once its walsender has
    /// gone (bounded).
    func dropSourceSlot(_ name: String, database: String) async throws {
        let source = try await db.source(database)
        switch try await ReplicationSlots.dropWhenInactive(name, on: source, timeout: .seconds(30), context: context, describe: db.connections.describe) {
        case .dropped: context.progress("slot \(name) dropped on the single node")
        case .absent: break
        case .inUse:
            throw MigrationError(.stageFailed, "slot \(name) on the single node is still in use: something still streams from it. Next: stop that subscriber, then `pgha rollback` again")
        }
    }
}
