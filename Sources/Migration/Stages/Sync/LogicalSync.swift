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
///    `cluster-timeline` records the leader's timeline;
/// 3. `publication:<db>` — `CREATE PUBLICATION <sync.publication> FOR ALL TABLES` on the single
///    node (undo drops it);
/// 4. `subscription:<db>` — `CREATE SUBSCRIPTION` on the leader, logging in to the single node as
///    `sync.publisher`, with `synchronous_commit = on` (undo disables it, detaches and drops it,
///    then drops its slot on the single node);
/// 5. the wait: every table's initial copy (`pg_subscription_rel`) as a progress bar, then the
///    slot's lag on the single node; bounded by `sync.cluster_timeout` and `sync.stall_timeout`.
///
/// Stopped at once, with what to do: a copy or apply error on the cluster
/// (`pg_stat_subscription_stats`), the slot holding back more than `sync.max_wal_retention`, DDL
/// on the single node (its tables and columns no longer those the cluster got), and any change of
/// the cluster's leader timeline — after a crash of the leader, rows it had applied and confirmed
/// may be missing on the new one, silently (../shared/ENVIRONMENT.md), so the copy is not trusted.
struct LogicalSync {
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
        try await createRoles(on: leader)
        for database in db.databases {
            try context.checkCancellation()
            try await createDatabase(database, on: leader)
            try await copySchema(database, on: leader)
        }
        try await enableSynchronousMode()
        try await recordIdentity()
        for database in db.databases {
            try context.checkCancellation()
            try await createPublication(database)
            try await createSubscription(database, on: leader)
        }
        try await wait()
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
        guard let sourceAdmin = playbook.source.adminUser, let targetAdmin = playbook.target.adminUser else {
            throw MigrationError(.stageFailed, "the logical method needs source.admin_user and target.admin_user (superusers): it copies the schema and creates publications and subscriptions")
        }
        try await step("schema:\(database.source)", "the single node's schema of \(database.source) restored on the cluster (pg_dump --schema-only)") {
            // An interrupted restore rolled back (one transaction); one that committed left tables.
            if journal.step(stage, named: "schema:\(database.source)")?.phase == .intent, await !isEmpty(database.cluster, on: leader) {
                context.progress("\(database.source): the schema is on the cluster already (restored before an interruption)")
                return
            }
            let file = context.store.directory + "/schema-\(Self.subscriptionName(playbook, database: database.source)).sql"
            defer { try? FileManager.default.removeItem(atPath: file) }
            var env = HookRunner.environment(for: context, key: "sync.schema")
            env["PGHA_SCHEMA_FILE"] = file
            env["PGHA_SOURCE_DSN"] = dsn(host: playbook.source.host, port: playbook.source.port, database: database.source, user: sourceAdmin, tls: playbook.source.tls)
            env["PGHA_TARGET_DSN"] = dsn(host: leader.host, port: leader.port, database: database.cluster, user: targetAdmin, tls: playbook.target.tls)
            env["PGHA_SOURCE_PASSWORD"] = try playbook.source.adminPassword.map { try $0.resolve(in: context.environment, key: "source.admin_password") }
            env["PGHA_TARGET_PASSWORD"] = try playbook.target.adminPassword.map { try $0.resolve(in: context.environment, key: "target.admin_password") }
            let command = """
                set -e
                umask 077
                if [ -n "$PGHA_SOURCE_PASSWORD" ]; then PGPASSWORD="$PGHA_SOURCE_PASSWORD"; export PGPASSWORD; fi
                pg_dump --schema-only --no-publications --no-subscriptions --file "$PGHA_SCHEMA_FILE" --dbname "$PGHA_SOURCE_DSN"
                unset PGPASSWORD
                if [ -n "$PGHA_TARGET_PASSWORD" ]; then PGPASSWORD="$PGHA_TARGET_PASSWORD"; export PGPASSWORD; fi
                psql -X -q -v ON_ERROR_STOP=1 --single-transaction --file "$PGHA_SCHEMA_FILE" --dbname "$PGHA_TARGET_DSN"
                """
            let runner = HookRunner(environment: env, redactor: context.redactor)
            let result = try await runner.run(command, key: "sync.schema", timeout: .seconds(sync.hookTimeoutSeconds), clock: context.clock)
            guard result.exitStatus == 0 else {
                throw MigrationError(.stageFailed, "copying the schema of \(database.source) failed (pg_dump --schema-only | psql, exit \(result.exitStatus)): " + result.outputTail.suffix(3).joined(separator: " / ") + ". Next: fix the cause on the cluster, then `pgha resume` (or `pgha rollback`)")
            }
            context.progress(String(format: "%@: schema restored on the cluster in %.1f s", database.source, result.seconds))
        }
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
                try await db.run(cluster, "CREATE SUBSCRIPTION \(SQLQuoting.identifier(name)) CONNECTION \(SQLQuoting.literal(conninfo)) PUBLICATION \(SQLQuoting.identifier(sync.publication)) WITH (slot_name = \(SQLQuoting.literal(name)), copy_data = true, synchronous_commit = 'on')",
                                 what: "CREATE SUBSCRIPTION \(name)")
            }
            context.progress("\(database.source): subscription \(name) on the cluster: the initial copy runs")
        }
    }

    // MARK: - The wait

    /// One look at every database's subscription and slot.
    struct Look: Sendable {
        var tables = 0
        var ready = 0
        var notReady: [String] = []
        var lagBytes: Int64 = 0
        var retainedBytes: Int64 = 0
        var errors: [String] = []
        var applyErrorCount: Int64 = 0
        var schemaChanges: [String] = []
        var slotMissing: [String] = []
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
                       coalesce(max(st.apply_error_count), 0), coalesce(max(st.sync_error_count), 0)
                FROM pg_subscription s
                LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid
                LEFT JOIN pg_stat_subscription_stats st ON st.subid = s.oid
                WHERE s.subname = $1
                """, [.text(name)], what: "reading the subscription's tables")
            look.ready += Int(try rel.int(0, 0) ?? 0)
            look.tables += Int(try rel.int(0, 1) ?? 0)
            if let pending = rel.string(0, 2) { look.notReady.append(pending) }
            let applyErrors = try rel.int(0, 3) ?? 0, syncErrors = try rel.int(0, 4) ?? 0
            look.applyErrorCount += applyErrors
            if applyErrors + syncErrors > 0 {
                look.errors.append("\(name): \(syncErrors) copy and \(applyErrors) apply error(s) on the cluster (its PostgreSQL log on \(leader.name) says which)")
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
            look.schemaChanges += try await schemaDifferences(database, cluster: cluster, source: source)
        }
        return look
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
            var judged = look
            if !unverifiedChanges.isEmpty || (look.ready < look.tables && look.applyErrorCount == 0) { judged.errors = [] }
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
            if look.ready == look.tables && look.tables > 0 {
                context.activity.progress(StageProgress(task: "logical-lag", title: "the subscriptions' lag on the single node", kind: .gauge, unit: .bytes,
                                                        value: look.lagBytes, target: sync.caughtUpLagBytes))
            }
            if look.tables > 0, look.ready == look.tables, look.lagBytes <= sync.caughtUpLagBytes {
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
        // The slot on the single node, once its walsender has gone (bounded).
        let sourceDatabase = db.databases.first { $0.cluster == database }?.source ?? playbook.source.databases.project
        let source = try await db.source(sourceDatabase)
        switch try await ReplicationSlots.dropWhenInactive(name, on: source, timeout: .seconds(30), context: context, describe: db.connections.describe) {
        case .dropped: context.progress("slot \(name) dropped on the single node")
        case .absent: break
        case .inUse:
            throw MigrationError(.stageFailed, "slot \(name) on the single node is still in use: something still streams from it. Next: stop that subscriber, then `pgha rollback` again")
        }
    }
}
