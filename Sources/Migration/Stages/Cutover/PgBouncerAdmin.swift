import Foundation
import HAPool
import PGClient

/// PgBouncer's admin console (the virtual database `pgbouncer`: simple queries only) and the
/// `[databases]` lines of its ini, which the cutover repoints.
struct PgBouncerAdmin: Sendable {
    let settings: Playbook.Cutover.PgBouncer
    let connections: StageConnections

    func connect() async throws(MigrationError) -> PGConnection {
        let login = StageConnections.Login(
            purpose: "pgbouncer", host: settings.adminHost, port: settings.adminPort, database: "pgbouncer",
            user: settings.adminUser, password: settings.adminPassword, passwordKey: "cutover.pgbouncer.admin_password", tls: PostgresTLS(sslMode: "disable"))
        let (connection, observation) = await connections.connect(login, applicationName: "pgha-cutover")
        guard let connection else {
            throw MigrationError(.stageFailed, "cannot reach PgBouncer's admin console at \(settings.adminHost):\(settings.adminPort) as \(settings.adminUser): \(observation.error ?? "?") (cutover.pgbouncer: admin_user must be in PgBouncer's admin_users)")
        }
        return connection
    }

    /// `PAUSE db` for each database, bounded: PAUSE waits for the transactions in progress to
    /// end. On timeout the databases are resumed and the error names the blocking sessions' count.
    func pause(_ databases: [String], timeout: Duration, console: PGConnection) async throws(MigrationError) {
        for database in databases {
            do {
                _ = try await console.query("PAUSE \(Self.identifier(database))", timeout: timeout)
            } catch {
                // A database paused already (a resumed run) is what pgha wants.
                if error.message.contains("already") { continue }
                for d in databases { _ = try? await console.query("RESUME \(Self.identifier(d))", timeout: .seconds(5)) }
                if error.code == .timeout {
                    throw MigrationError(.stageFailed, "PgBouncer's PAUSE of \(database) did not complete within cutover.pause_timeout (\(Int(timeout.asSeconds)) s): a transaction in progress holds it (PgBouncer waits for it to end). The databases were resumed; nothing changed. Next: end the long transaction (SELECT pid, xact_start, state, query FROM pg_stat_activity WHERE xact_start < now() - interval '5 seconds'), or raise cutover.pause_timeout, then `pgha resume`")
                }
                throw MigrationError(.stageFailed, "PgBouncer refused PAUSE \(database): \(connections.describe(error.description))")
            }
        }
    }

    func resume(_ databases: [String], console: PGConnection) async throws(MigrationError) {
        for database in databases {
            do {
                _ = try await console.query("RESUME \(Self.identifier(database))", timeout: .seconds(10))
            } catch {
                // "database is not paused" is fine: RESUME is idempotent for pgha.
                if error.message.contains("not paused") { continue }
                throw MigrationError(.stageFailed, "PgBouncer refused RESUME \(database): \(connections.describe(error.description))")
            }
        }
    }

    func reload(console: PGConnection) async throws(MigrationError) {
        do {
            _ = try await console.query("RELOAD", timeout: .seconds(10))
        } catch {
            throw MigrationError(.stageFailed, "PgBouncer refused RELOAD: \(connections.describe(error.description))")
        }
    }

    /// `SHOW DATABASES`: name → `host:port` PgBouncer uses now.
    func databases(console: PGConnection) async throws(MigrationError) -> [String: String] {
        do {
            let r = try await console.query("SHOW DATABASES", timeout: .seconds(10))
            guard let name = r.columnIndex("name"), let host = r.columnIndex("host"), let port = r.columnIndex("port") else { return [:] }
            var result: [String: String] = [:]
            for row in 0..<r.rowCount { result[r.string(row, name) ?? "?"] = "\(r.string(row, host) ?? "?"):\(r.string(row, port) ?? "?")" }
            return result
        } catch {
            throw MigrationError(.stageFailed, "PgBouncer refused SHOW DATABASES: \(connections.describe(error.description))")
        }
    }

    /// PgBouncer's admin console takes plain or double-quoted names. Its own grammar (names are
    /// kept as written, upper case included), hence not `SQLQuoting.identifier`.
    static func identifier(_ name: String) -> String {
        name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } ? name : "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The ini with the `[databases]` entries of `databases` pointing at `host:port` (other keys
    /// of each entry — `dbname`, `user`, `pool_size`… — kept; other lines untouched). `dbname` is
    /// set to the cluster's name for the database when `renamed` gives one.
    /// - Throws: `.stageFailed` when an entry is missing (pgha does not guess a database's line).
    static func repointed(_ ini: String, databases: [String], to target: Playbook.HostPort, renamed: [String: String] = [:]) throws(MigrationError) -> String {
        var lines = ini.components(separatedBy: "\n")
        var inDatabases = false
        var found: Set<String> = []
        for (i, raw) in lines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") {
                inDatabases = line.lowercased() == "[databases]"
                continue
            }
            guard inDatabases, !line.hasPrefix(";"), !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { continue }
            let name = line[..<eq].trimmingCharacters(in: .whitespaces)
            guard databases.contains(name) else { continue }
            var fields = line[line.index(after: eq)...].split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            fields.removeAll { $0.hasPrefix("host=") || $0.hasPrefix("port=") }
            if let newName = renamed[name] {
                fields.removeAll { $0.hasPrefix("dbname=") }
                fields.insert("dbname=\(newName)", at: 0)
            }
            fields.insert(contentsOf: ["host=\(target.host)", "port=\(target.port)"], at: 0)
            lines[i] = "\(name) = " + fields.joined(separator: " ")
            found.insert(name)
        }
        let missing = databases.filter { !found.contains($0) }
        guard missing.isEmpty else {
            throw MigrationError(.stageFailed, "PgBouncer's ini has no [databases] line for \(missing.joined(separator: ", ")): add one (e.g. `\(missing[0]) = host=… port=…`) so that pgha can repoint it")
        }
        return lines.joined(separator: "\n")
    }
}
