import Foundation
import PGClient

/// Read-only SQL against the single node: logins, version, `wal_level`, slot and WAL-sender
/// headroom, replica identities, open transactions, large objects, installed extensions.
///
/// Catalog queries use the playbook's superuser (`source.admin_user`) when it has one — only a
/// superuser (or `pg_read_all_stats`) sees every session's transaction start — and fall back to
/// the application's login. Nothing is ever written.
struct SourceInspector: Sendable {
    let connections: StageConnections

    static let applicationName = "pgha-prerequisites"

    /// The open connections of one inspection: per database, the application's and the admin's.
    struct Sessions: Sendable {
        var logins: [LoginObservation] = []
        /// database → connection used for catalog queries (admin if it logged in, else application).
        var catalog: [String: PGConnection] = [:]
        var all: [PGConnection] = []

        func close() { for connection in all { connection.close() } }
    }

    /// Logs in to every source database as the application and as the superuser.
    func openSessions() async -> Sessions {
        var sessions = Sessions()
        let applicationLogins = connections.sourceApplicationLogins
        for login in applicationLogins {
            let (connection, observation) = await connections.connect(login, applicationName: Self.applicationName)
            sessions.logins.append(observation)
            if let connection {
                sessions.all.append(connection)
                sessions.catalog[login.database] = connection
            }
        }
        for database in connections.sourceDatabases {
            guard let login = connections.sourceAdminLogin(database: database) else { continue }
            let (connection, observation) = await connections.connect(login, applicationName: Self.applicationName)
            sessions.logins.append(observation)
            if let connection {
                sessions.all.append(connection)
                sessions.catalog[database] = connection  // the superuser sees more: preferred
            }
        }
        return sessions
    }

    /// Observes everything the prerequisites gate needs from the single node.
    func observe() async -> SourceObservation {
        let started = ContinuousClock.now
        let s = connections.playbook.source
        let address = Playbook.HostPort(host: s.host, port: s.port).description
        let sessions = await openSessions()
        defer { sessions.close() }

        let project = s.databases.project
        let main = sessions.catalog[project] ?? connections.sourceDatabases.lazy.compactMap { sessions.catalog[$0] }.first
        let noConnection = "no login to the single node succeeded"
        var versionNum: Int?
        var version: String?
        var settings = Probe<SourceSettings>.failed(noConnection)
        var transactions = Probe<OpenTransactions>.failed(noConnection)
        let sync = connections.playbook.sync
        var physical: Probe<PhysicalSourceFacts>? = sync.method == .physical ? .failed(noConnection) : nil
        if let main {
            if sync.method == .physical {
                physical = await physicalFacts(main, replicationUser: connections.playbook.target.replicationUser, slot: sync.slot)
            }
            versionNum = main.serverVersion
            if case .success(let r) = await connections.query(main, "SHOW server_version") { version = r.string(0, 0) }
            settings = await self.settings(main)
            transactions = await self.transactions(main)
        }
        var databases: [SourceDatabaseObservation] = []
        for database in connections.sourceDatabases {
            guard let connection = sessions.catalog[database] else {
                let reason = "no login to database \(database) succeeded"
                databases.append(SourceDatabaseObservation(name: database, tables: .failed(reason), largeObjects: .failed(reason), unloggedTables: .failed(reason)))
                continue
            }
            databases.append(SourceDatabaseObservation(name: database, tables: await tables(connection), largeObjects: await largeObjects(connection),
                                                       unloggedTables: await unloggedTables(connection)))
        }
        return SourceObservation(
            address: address, logins: sessions.logins, serverVersionNum: versionNum, serverVersion: version,
            settings: settings, transactions: transactions, databases: databases, physical: physical,
            elapsedMs: (ContinuousClock.now - started).milliseconds)
    }

    // MARK: - Queries

    func settings(_ connection: PGConnection) async -> Probe<SourceSettings> {
        let sql = """
            SELECT current_setting('wal_level'),
                   (SELECT pending_restart FROM pg_settings WHERE name = 'wal_level'),
                   current_setting('max_replication_slots')::int8,
                   (SELECT count(*) FROM pg_replication_slots),
                   current_setting('max_wal_senders')::int8,
                   (SELECT count(*) FROM pg_stat_replication)
            """
        switch await connections.query(connection, sql) {
        case .failure(let failure):
            return .failed(failure.message)
        case .success(let r):
            do {
                var settings = SourceSettings(
                    walLevel: r.string(0, 0) ?? "?", walLevelPendingRestart: try r.bool(0, 1) ?? false,
                    maxReplicationSlots: Int(try r.int(0, 2) ?? 0), usedReplicationSlots: Int(try r.int(0, 3) ?? 0),
                    maxWalSenders: Int(try r.int(0, 4) ?? 0), usedWalSenders: Int(try r.int(0, 5) ?? 0))
                // The configured value is only readable by a superuser or pg_read_all_settings.
                let fileSQL = "SELECT setting FROM pg_file_settings WHERE name = 'wal_level' AND error IS NULL ORDER BY seqno DESC LIMIT 1"
                if case .success(let f) = await connections.query(connection, fileSQL), f.rowCount > 0 {
                    settings.walLevelConfigured = f.string(0, 0)
                }
                return .observed(settings)
            } catch {
                return .failed(connections.describe(error.description))
            }
        }
    }

    func transactions(_ connection: PGConnection) async -> Probe<OpenTransactions> {
        let visibility = """
            SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') FROM pg_roles WHERE rolname = current_user
            """
        let sessions = """
            SELECT pid, coalesce(datname, ''), coalesce(usename, ''), coalesce(state, ''),
                   extract(epoch FROM clock_timestamp() - xact_start)::float8
            FROM pg_stat_activity
            WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
            ORDER BY xact_start LIMIT 20
            """
        let prepared = """
            SELECT gid, database, owner, extract(epoch FROM clock_timestamp() - prepared)::float8
            FROM pg_prepared_xacts ORDER BY prepared LIMIT 20
            """
        do {
            let seesAll: Bool
            switch await connections.query(connection, visibility) {
            case .success(let r): seesAll = try r.bool(0, 0) ?? false
            case .failure(let f): return .failed(f.message)
            }
            var open: [OpenTransaction] = []
            switch await connections.query(connection, sessions) {
            case .success(let r):
                for row in 0..<r.rowCount {
                    open.append(OpenTransaction(
                        pid: try r.int(row, 0).map(Int.init), database: r.string(row, 1) ?? "", user: r.string(row, 2) ?? "",
                        state: r.string(row, 3) ?? "", ageSeconds: try r.double(row, 4) ?? 0))
                }
            case .failure(let f): return .failed(f.message)
            }
            switch await connections.query(connection, prepared) {
            case .success(let r):
                for row in 0..<r.rowCount {
                    open.append(OpenTransaction(
                        preparedGID: r.string(row, 0), database: r.string(row, 1) ?? "", user: r.string(row, 2) ?? "",
                        state: "prepared", ageSeconds: try r.double(row, 3) ?? 0))
                }
            case .failure(let f): return .failed(f.message)
            }
            open.sort { $0.ageSeconds > $1.ageSeconds }
            return .observed(OpenTransactions(seesAllSessions: seesAll, oldest: Array(open.prefix(20))))
        } catch {
            return .failed(connections.describe(error.description))
        }
    }

    /// Permanent tables that logical replication would copy, without a usable replica identity.
    func tables(_ connection: PGConnection) async -> Probe<TableIdentities> {
        let sql = """
            SELECT n.nspname, c.relname, c.relreplident::text,
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND c.relpersistence = 'p'
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d
                              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
            ORDER BY 1, 2
            """
        switch await connections.query(connection, sql) {
        case .failure(let f):
            return .failed(f.message)
        case .success(let r):
            var missing: [String] = []
            do {
                for row in 0..<r.rowCount {
                    let identity = r.string(row, 2) ?? "d"
                    let hasPrimaryKey = try r.bool(row, 3) ?? false
                    if !Self.hasReplicaIdentity(identity: identity, hasPrimaryKey: hasPrimaryKey) {
                        missing.append("\(r.string(row, 0) ?? "?").\(r.string(row, 1) ?? "?")")
                    }
                }
            } catch {
                return .failed(connections.describe(error.description))
            }
            return .observed(TableIdentities(checked: r.rowCount, withoutIdentity: missing))
        }
    }

    /// `relreplident`: `d` default (the primary key, if any), `n` nothing, `f` full, `i` an index.
    static func hasReplicaIdentity(identity: String, hasPrimaryKey: Bool) -> Bool {
        switch identity {
        case "f", "i": return true
        case "d": return hasPrimaryKey
        default: return false
        }
    }

    /// The unlogged tables (not an extension's).
    func unloggedTables(_ connection: PGConnection) async -> Probe<[String]> {
        let sql = """
            SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
            ORDER BY 1
            """
        switch await connections.query(connection, sql) {
        case .failure(let f): return .failed(f.message)
        case .success(let r): return .observed((0..<r.rowCount).compactMap { r.string($0, 0) })
        }
    }

    func largeObjects(_ connection: PGConnection) async -> Probe<Int> {
        switch await connections.query(connection, "SELECT count(*) FROM pg_largeobject_metadata") {
        case .failure(let f): return .failed(f.message)
        case .success(let r):
            do {
                return .observed(Int(try r.int(0, 0) ?? 0))
            } catch {
                return .failed(connections.describe(error.description))
            }
        }
    }

    /// `pg_extension` of every source database.
    func installedExtensions() async -> [SourceExtensions] {
        let sessions = await openSessions()
        defer { sessions.close() }
        var result: [SourceExtensions] = []
        for database in connections.sourceDatabases {
            guard let connection = sessions.catalog[database] else {
                let why = sessions.logins.filter { $0.database == database }.compactMap(\.error).first ?? "no login to database \(database) succeeded"
                result.append(SourceExtensions(database: database, installed: .failed(why)))
                continue
            }
            switch await connections.query(connection, "SELECT extname, extversion FROM pg_extension ORDER BY extname") {
            case .failure(let f):
                result.append(SourceExtensions(database: database, installed: .failed(f.message)))
            case .success(let r):
                var installed: [String: String] = [:]
                for row in 0..<r.rowCount {
                    if let name = r.string(row, 0) { installed[name] = r.string(row, 1) ?? "" }
                }
                result.append(SourceExtensions(database: database, installed: .observed(installed)))
            }
        }
        return result
    }
}
