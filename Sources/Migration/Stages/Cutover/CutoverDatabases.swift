import Foundation
import PlainText
import PGClient
import Patroni
import HAPool
import Synchronization

/// The cutover's connections and the SQL of each of its steps: the single node's superuser per
/// database, each member's superuser per database, the Patroni REST API. Connections stay open
/// between steps (reopened when broken); every error text is redacted.
///
/// Sessions that must write on a frozen server (the way back's subscription, the canary, the
/// sequences copied back) run `SET default_transaction_read_only = off` first: the freeze is a
/// default, which only a superuser's own session may lift for itself (the application's roles
/// cannot log in while it lasts).
final class CutoverDatabases: Sendable {
    let connections: StageConnections
    private let cache: ConnectionCache
    static let applicationName = "pgha-cutover"
    /// Bound of one statement of the cutover (every step is bounded).
    static let statementTimeout: Duration = .seconds(15)

    init(connections: StageConnections) {
        self.connections = connections
        // pgha's own superuser sessions write on frozen servers (undoing the freeze, the way back).
        self.cache = ConnectionCache(connections: connections, applicationName: Self.applicationName, onOpen: "SET default_transaction_read_only = off")
    }

    func close() { cache.close() }

    /// A libpq connection string, every value quoted as libpq needs: `host` and `port` may be
    /// comma-separated lists; the TLS settings name files on the machine that connects; the
    /// password only when given (subscriptions store it; children get theirs in PGPASSWORD).
    static func conninfo(host: String, port: String, database: String, user: String, tls: PostgresTLS,
                         extra: [String] = [], password: String? = nil) -> String {
        let quoted = PGConnectionConfig.quoted
        var parts = ["host=" + quoted(host), "port=" + quoted(port), "dbname=" + quoted(database), "user=" + quoted(user)]
        if let v = tls.sslMode { parts.append("sslmode=" + quoted(v)) }
        if let v = tls.sslRootCert { parts.append("sslrootcert=" + quoted(v)) }
        if let v = tls.sslCert { parts.append("sslcert=" + quoted(v)) }
        if let v = tls.sslKey { parts.append("sslkey=" + quoted(v)) }
        parts += extra
        if let password { parts.append("password=" + quoted(password)) }
        return parts.joined(separator: " ")
    }

    /// `PATCH /config`, retried while no REST API answers (a member busy restarting — copying the
    /// permanent slots restarts the replicas — or a loaded machine), for up to 15 s. A merge patch
    /// is idempotent, so sending it again is safe; Patroni refusing it fails at once.
    func patchConfig(_ patch: JSONValue, what: String, context: StageContext) async throws {
        let client = try connections.patroniClient()
        let deadline = context.clock.now().addingTimeInterval(15)
        while true {
            do {
                try await client.patchConfig(patch)
                return
            } catch {
                if error.code == .rejected || context.clock.now() >= deadline {
                    throw MigrationError(.stageFailed, "Patroni refused \(what) (PATCH /config): \(connections.describe(error.description))")
                }
            }
            try await context.sleep(for: .milliseconds(250))
        }
    }

    var playbook: Playbook { connections.playbook }

    /// The databases that move: the single node's names, each with the cluster's name for it.
    var databases: [(source: String, cluster: String)] {
        let s = playbook.source.databases
        let t = playbook.target.databases
        var list = [(s.project, t.project)]
        if let shared = s.shared { list.append((shared, t.shared ?? shared)) }
        return list
    }

    /// Every member's name and address.
    var members: [(name: String, host: String, port: Int)] {
        let t = playbook.target
        return t.members.map { ($0.name, $0.host, t.port) }
    }

    // MARK: - Connections

    func source(_ database: String) async throws(MigrationError) -> PGConnection {
        guard let login = connections.sourceAdminLogin(database: database) else {
            throw MigrationError(.stageFailed, "the cutover needs source.admin_user (a superuser on the single node): it freezes writes and subscribes to the cluster")
        }
        return try await connection(key: "source/\(database)", login: login)
    }

    func member(host: String, port: Int, database: String) async throws(MigrationError) -> PGConnection {
        guard var login = connections.memberAdminLogin(host: host, port: port) else {
            throw MigrationError(.stageFailed, "the cutover needs target.admin_user (a superuser on the cluster): it resets the freeze, creates the way back and proves it")
        }
        login.database = database
        return try await connection(key: "\(host):\(port)/\(database)", login: login)
    }

    private func connection(key: String, login: StageConnections.Login) async throws(MigrationError) -> PGConnection {
        switch await cache.connection(key: key, login: login) {
        case .success(let connection):
            return connection
        case .failure(let failure):
            throw MigrationError(.stageFailed, failure.message)
        }
    }

    /// Runs one statement, bounded, with a redacted error naming `what`.
    @discardableResult
    func run(_ connection: PGConnection, _ sql: String, _ params: [PGValue] = [], what: String) async throws(MigrationError) -> PGResult {
        do {
            return try await connection.query(sql, params, timeout: Self.statementTimeout)
        } catch {
            if error.code == .cancelled { throw MigrationError(.interrupted, "interrupted while: \(what)") }
            throw MigrationError(.stageFailed, "\(what) failed: \(connections.describe(error.description))")
        }
    }

    /// Disables, detaches and drops subscription `name` on `connection`'s server, if it exists
    /// (its slot on the publisher is left: that server may not answer). Returns whether it existed.
    @discardableResult
    func dropSubscription(_ name: String, on connection: PGConnection) async throws(MigrationError) -> Bool {
        let exists = try await run(connection, "SELECT 1 FROM pg_subscription WHERE subname = $1", [.text(name)], what: "looking for subscription \(name)")
        guard exists.rowCount > 0 else { return false }
        let quoted = SQLQuoting.identifier(name)
        try await run(connection, "ALTER SUBSCRIPTION \(quoted) DISABLE", what: "disabling \(name)")
        try await run(connection, "ALTER SUBSCRIPTION \(quoted) SET (slot_name = NONE)", what: "detaching \(name) from its slot")
        try await run(connection, "DROP SUBSCRIPTION \(quoted)", what: "dropping \(name)")
        return true
    }

    /// Every sequence of `from` (all of pg_sequences, owned by a column or not) set on `to` to its
    /// value plus `margin` in the sequence's direction, clamped to its bounds and never moved
    /// backwards. `to` must be writable for pgha's session. Returns how many were set and the
    /// names `to` does not have.
    func copySequences(from: PGConnection, to: PGConnection, margin: Int64, direction: String) async throws(MigrationError) -> (copied: Int, missing: [String]) {
        let read = try await run(from, "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences WHERE last_value IS NOT NULL ORDER BY 1",
                                 what: "reading the sequences")
        try await writable(to)
        var copied = 0
        var missing: [String] = []
        for row in 0..<read.rowCount {
            guard let name = read.string(row, 0), let value = try? read.int(row, 1) else { continue }
            let set = try await run(to, """
                SELECT setval(to_regclass($1), CASE WHEN q.increment_by > 0
                    THEN greatest(least($2::numeric + $3::numeric, q.max_value), coalesce(q.last_value, q.start_value - q.increment_by))
                    ELSE least(greatest($2::numeric - $3::numeric, q.min_value), coalesce(q.last_value, q.start_value - q.increment_by)) END::int8)
                FROM pg_sequences q WHERE format('%I.%I', q.schemaname, q.sequencename) = $1
                """, [.text(name), .int(value), .int(margin)], what: "copying sequence \(name) \(direction)")
            if set.rowCount == 0 { missing.append(name) } else { copied += 1 }
        }
        return (copied, missing)
    }

    /// A session that may write although the server is frozen (superuser only).
    func writable(_ connection: PGConnection) async throws(MigrationError) {
        try await run(connection, "SET default_transaction_read_only = off", what: "lifting the read-only default for pgha's own session")
    }

    // MARK: - The single node

    /// What `postgresql.auto.conf` sets for `name` now (nil: nothing).
    func autoConfSetting(_ connection: PGConnection, _ name: String) async throws(MigrationError) -> String? {
        let r = try await run(connection, "SELECT setting FROM pg_file_settings WHERE name = $1 AND sourcefile LIKE '%postgresql.auto.conf' AND applied IS NOT NULL ORDER BY seqno DESC LIMIT 1",
                              [.text(name)], what: "reading postgresql.auto.conf")
        return r.rowCount > 0 ? r.string(0, 0) : nil
    }

    /// `ALTER SYSTEM SET/RESET name` and a reload.
    func alterSystem(_ connection: PGConnection, _ name: String, to value: String?) async throws(MigrationError) {
        let sql = value.map { "ALTER SYSTEM SET \(name) = \(SQLQuoting.literal($0))" } ?? "ALTER SYSTEM RESET \(name)"
        try await run(connection, sql, what: "ALTER SYSTEM \(value == nil ? "RESET" : "SET") \(name)")
        try await run(connection, "SELECT pg_reload_conf()", what: "reloading the configuration")
    }

    /// Login roles the freeze takes LOGIN from: every role that can log in, except superusers,
    /// replication roles and PostgreSQL's own.
    func freezableRoles(_ connection: PGConnection) async throws(MigrationError) -> [String] {
        let r = try await run(connection, "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND NOT rolreplication AND rolname !~ '^pg_' ORDER BY 1",
                              what: "listing the application's login roles")
        return (0..<r.rowCount).compactMap { r.string($0, 0) }
    }

    func setLogin(_ connection: PGConnection, roles: [String], login: Bool) async throws(MigrationError) {
        for role in roles {
            try await run(connection, "ALTER ROLE \(SQLQuoting.identifier(role)) \(login ? "LOGIN" : "NOLOGIN")", what: "ALTER ROLE \(role) \(login ? "LOGIN" : "NOLOGIN")")
        }
    }

    /// Terminates the client sessions of `roles` (their PIDs selected first; never pgha's own) and
    /// returns how many there were.
    @discardableResult
    func terminateSessions(_ connection: PGConnection, roles: [String]) async throws(MigrationError) -> Int {
        guard !roles.isEmpty else { return 0 }
        let list = "{" + roles.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
        let r = try await run(connection, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND usename = ANY($1::text[])",
                              [.text(list)], what: "selecting the application's sessions")
        let pids = (0..<r.rowCount).compactMap { try? r.int($0, 0) ?? nil }
        for pid in pids {
            try await run(connection, "SELECT pg_terminate_backend($1::int)", [.int(pid)], what: "terminating session \(pid)")
        }
        return pids.count
    }

    /// A session on the single node opened before the freeze, without pgha's override of the
    /// read-only default: it reports the server's default as configuration reloads reach it.
    func readOnlyWitness() async -> PGConnection? {
        guard let login = connections.sourceAdminLogin(database: playbook.source.databases.project) else { return nil }
        return await connections.connect(login, applicationName: Self.applicationName + "-witness").0
    }

    /// Whether new sessions on the single node start with `default_transaction_read_only = on`.
    /// With a `witness` (opened before): once it sees `on`, the postmaster has reloaded (it
    /// signals its sessions after reloading itself), so every session forked from now on starts
    /// read-only — one query on an open session instead of a new login. Without one (or when it
    /// broke), a new session of its own is asked.
    func sourceReadOnlyDefault(witness: PGConnection?) async throws(MigrationError) -> Bool {
        if let witness, witness.isHealthy,
           let r = try? await witness.query("SELECT current_setting('default_transaction_read_only')", timeout: .seconds(3)) {
            return r.string(0, 0) == "on"
        }
        return try await sourceReadOnlyDefault()
    }

    /// Whether a new session on the single node gets `default_transaction_read_only = on` (pgha's
    /// own cached sessions lift it for themselves, so this opens one of its own).
    func sourceReadOnlyDefault() async throws(MigrationError) -> Bool {
        guard let login = connections.sourceAdminLogin(database: playbook.source.databases.project) else { return false }
        let (connection, observation) = await connections.connect(login, applicationName: Self.applicationName + "-probe")
        guard let connection else {
            throw MigrationError(.stageFailed, "cannot log in to the single node as \(login.user): \(observation.error ?? "?")")
        }
        defer { connection.close() }
        let r = try await run(connection, "SELECT current_setting('default_transaction_read_only')", what: "reading default_transaction_read_only")
        return r.string(0, 0) == "on"
    }

    func currentLSN(_ connection: PGConnection) async throws(MigrationError) -> LSN {
        let r = try await run(connection, "SELECT pg_current_wal_lsn()::text", what: "reading the WAL position")
        guard let lsn = r.string(0, 0).flatMap(LSN.init) else {
            throw MigrationError(.stageFailed, "pg_current_wal_lsn() gave nothing")
        }
        return lsn
    }

    /// Tables of `database` without a primary key or replica identity: `(schema.table quoted, relreplident)`.
    func tablesWithoutIdentity(_ connection: PGConnection) async throws(MigrationError) -> [(table: String, identity: String)] {
        let r = try await run(connection, """
            SELECT format('%I.%I', n.nspname, c.relname), c.relreplident::text
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
              AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
            ORDER BY 1
            """, what: "listing tables without a replica identity")
        return (0..<r.rowCount).map { (r.string($0, 0) ?? "?", r.string($0, 1) ?? "d") }
    }

    /// Sessions that would hold the freeze up: transactions open longer than `seconds`, DDL running.
    func blockers(_ connection: PGConnection, olderThan seconds: Double) async throws(MigrationError) -> [String] {
        let r = try await run(connection, """
            SELECT pid, usename, round(extract(epoch FROM now() - xact_start))::int, left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
            FROM pg_stat_activity
            WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name NOT LIKE 'pgha%'
              AND ((xact_start IS NOT NULL AND xact_start < now() - make_interval(secs => $1))
                   OR (state = 'active' AND query ~* '^\\s*(alter|create|drop|truncate|reindex|cluster|vacuum full)\\M'))
            ORDER BY xact_start
            """, [.double(seconds)], what: "looking for long transactions and DDL")
        return (0..<r.rowCount).map { "pid \(r.string($0, 0) ?? "?") (\(r.string($0, 1) ?? "?"), \(r.string($0, 2) ?? "?") s): \(r.string($0, 3) ?? "")" }
    }

    // MARK: - The members

    /// Each member's replay position (nil: not answering or not in recovery any more).
    func replayLSN(host: String, port: Int) async -> LSN? {
        guard let c = try? await member(host: host, port: port, database: "postgres"),
              let r = try? await c.query("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END", timeout: .seconds(3))
        else { return nil }
        return r.string(0, 0).flatMap(LSN.init)
    }

    /// The members (but `except`) that have not replayed `target`, each as "name at LSN" ("?" for
    /// one that does not answer as a replica).
    func membersBehind(_ target: LSN, except: String? = nil) async -> [String] {
        var behind: [String] = []
        for m in members where m.name != except {
            let replay = await replayLSN(host: m.host, port: m.port)
            if replay.map({ $0 < target }) ?? true { behind.append("\(m.name) at \(replay?.description ?? "?")") }
        }
        return behind
    }

    /// Whether the member answers as a writable primary.
    func isWritablePrimary(host: String, port: Int) async -> Bool {
        guard let c = try? await member(host: host, port: port, database: "postgres"),
              let r = try? await c.query("SELECT NOT pg_is_in_recovery()", timeout: .seconds(3))
        else { return false }
        return (try? r.bool(0, 0)) == true
    }

    /// The member that is a writable primary now, if any.
    func writableLeader() async -> (name: String, host: String, port: Int)? {
        for m in members where await isWritablePrimary(host: m.host, port: m.port) { return m }
        return nil
    }
}
