import Foundation
import HAPool
import PGClient
import Patroni

/// A value a check-only stage observed, or why it could not observe it.
///
/// Failure texts come from servers and libraries; they are passed through the playbook's
/// `SecretRedactor` before they are stored here.
public enum Probe<Value: Sendable & Hashable & Codable>: Sendable, Hashable, Codable {
    case observed(Value)
    case failed(String)

    /// The value, when observed.
    public var value: Value? {
        switch self {
        case .observed(let value): return value
        case .failed: return nil
        }
    }

    /// Why it could not be observed.
    public var failure: String? {
        switch self {
        case .observed: return nil
        case .failed(let reason): return reason
        }
    }
}

/// One login attempt: which user, which database, and how it went.
public struct LoginObservation: Sendable, Hashable, Codable {
    /// What the login is for: `application`, `shared`, `admin`.
    public var purpose: String
    public var user: String
    public var database: String
    /// Why the login failed (redacted); nil when it succeeded.
    public var error: String?
    /// The server answered (the failure is an authentication error, a missing database, too many
    /// connections…), as opposed to not being reachable at all.
    public var serverAnswered: Bool
    /// The database does not exist (SQLSTATE 3D000). The server checks the password before it
    /// looks for the database, so the credentials themselves were accepted.
    public var databaseMissing: Bool

    public init(purpose: String, user: String, database: String, error: String? = nil, serverAnswered: Bool = true, databaseMissing: Bool = false) {
        self.purpose = purpose
        self.user = user
        self.database = database
        self.error = error
        self.serverAnswered = serverAnswered
        self.databaseMissing = databaseMissing
    }

    /// The credentials were accepted (connected, or only the database is missing).
    public var credentialsAccepted: Bool { error == nil || databaseMissing }

    /// `dpg_cluster@distributed_postgres_cluster`.
    public var label: String { "\(user)@\(database)" }
}

/// How the check-only stages reach the single node and the cluster: connection settings from the
/// playbook, credentials resolved through the stage context's environment (`${VAR}`), every
/// error text redacted.
struct StageConnections: Sendable {
    let playbook: Playbook
    let environment: any EnvironmentProviding
    let redactor: SecretRedactor

    init(_ context: StageContext) {
        self.init(playbook: context.playbook, environment: context.environment, redactor: context.redactor)
    }

    init(playbook: Playbook, environment: any EnvironmentProviding, redactor: SecretRedactor) {
        self.playbook = playbook
        self.environment = environment
        self.redactor = redactor
    }

    /// A login to make: where, as whom, with which password reference.
    struct Login: Sendable {
        var purpose: String
        var host: String
        var port: Int
        var database: String
        var user: String
        /// nil: libpq's password file (PGPASSFILE from the environment, or ~/.pgpass).
        var password: EnvironmentReference?
        /// The playbook key of `password`, for the "not set" message.
        var passwordKey: String
        var tls: PostgresTLS
    }

    var connectTimeout: Duration {
        .milliseconds(Int64(max(0.5, playbook.thresholds.connectTimeoutSeconds) * 1000))
    }

    /// The database of the source's application logins and catalog checks.
    var sourceDatabases: [String] {
        [playbook.source.databases.project] + (playbook.source.databases.shared.map { [$0] } ?? [])
    }

    /// The application's login to each source database (the shared one with its own user, if any).
    var sourceApplicationLogins: [Login] {
        let s = playbook.source
        var logins = [sourceLogin("application", database: s.databases.project, user: s.user, password: s.password, key: "source.password")]
        if let shared = s.databases.shared {
            logins.append(sourceLogin("shared", database: shared, user: s.sharedUser ?? s.user,
                                      password: s.sharedPassword ?? s.password, key: s.sharedPassword == nil ? "source.password" : "source.shared_password"))
        }
        return logins
    }

    /// The source's superuser login to `database`, when the playbook names one.
    func sourceAdminLogin(database: String) -> Login? {
        guard let admin = playbook.source.adminUser else { return nil }
        return sourceLogin("admin", database: database, user: admin, password: playbook.source.adminPassword, key: "source.admin_password")
    }

    private func sourceLogin(_ purpose: String, database: String, user: String, password: EnvironmentReference?, key: String) -> Login {
        let s = playbook.source
        return Login(purpose: purpose, host: s.host, port: s.port, database: database, user: user, password: password, passwordKey: key, tls: s.tls)
    }

    /// The cluster's project database (the source's name unless the playbook renames it).
    var targetProjectDatabase: String { playbook.target.databases.project }

    /// The application's login on one member.
    func memberApplicationLogin(host: String, port: Int) -> Login {
        let t = playbook.target
        return Login(purpose: "application", host: host, port: port, database: targetProjectDatabase, user: t.user, password: t.password,
                     passwordKey: "target.password", tls: t.tls)
    }

    /// The cluster superuser's login on one member (database `postgres`), when the playbook names one.
    func memberAdminLogin(host: String, port: Int) -> Login? {
        let t = playbook.target
        guard let admin = t.adminUser else { return nil }
        return Login(purpose: "admin", host: host, port: port, database: "postgres", user: admin, password: t.adminPassword,
                     passwordKey: "target.admin_password", tls: t.tls)
    }

    /// Connects; returns the connection (nil on failure) and what happened. Never throws: a
    /// failure is an observation. `parameters` are further libpq connection parameters (the
    /// logical copy's `replication=database`).
    func connect(_ login: Login, applicationName: String, parameters: [String: String] = [:]) async -> (PGConnection?, LoginObservation) {
        var observation = LoginObservation(purpose: login.purpose, user: login.user, database: login.database)
        var password: String?
        if let reference = login.password {
            do {
                password = try reference.resolve(in: environment, key: login.passwordKey)
            } catch {
                observation.error = error.message
                observation.serverAnswered = false
                return (nil, observation)
            }
        }
        var extra = parameters
        if let passfile = environment.value(of: "PGPASSFILE"), !passfile.isEmpty { extra["passfile"] = passfile }
        var config = PGConnectionConfig(
            host: login.host, port: login.port, database: login.database, user: login.user, password: password,
            connectTimeout: connectTimeout, applicationName: applicationName, extra: extra)
        login.tls.apply(to: &config)
        do {
            let connection = try await PGConnection.connect(config)
            return (connection, observation)
        } catch {
            observation.error = describe(error.description)
            // 3D000: no such database. A half-dropped one (PostgreSQL ≥ 15.4 marks a database
            // invalid while DROP DATABASE runs; a replica still replaying a rollback's drop shows
            // it so for a while) counts as missing too: the sync stage creates it anew.
            observation.databaseMissing = error.sqlState == "3D000" || error.description.contains("cannot connect to invalid database")
            observation.serverAnswered = error.code == .authenticationFailed || error.sqlState != nil
            return (nil, observation)
        }
    }

    /// Runs a query, giving a redacted error text instead of throwing.
    func query(_ connection: PGConnection, _ sql: String) async -> Result<PGResult, QueryFailure> {
        do {
            return .success(try await connection.query(sql, timeout: connectTimeout * 4))
        } catch {
            return .failure(QueryFailure(message: describe(error.description)))
        }
    }

    /// A server's or library's error text as observations store it: every known secret masked,
    /// on one line (libpq's messages span several).
    func describe(_ text: String) -> String {
        redactor.redact(text).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
            .joined(separator: " ")
    }

    struct QueryFailure: Error {
        let message: String
    }

    // MARK: - Patroni

    /// The HA pool's view of the cluster (API hosts, TLS, REST credentials) for the application
    /// role, as the application will use it. `database` defaults to the cluster's project database.
    func poolConfiguration(database: String? = nil) -> PatroniClusterConfig {
        let t = playbook.target
        let apiPassword = t.apiPassword.flatMap { environment.value(of: $0.variable) }.flatMap { $0.isEmpty ? nil : $0 }
        let api = RESTAPISettings(
            useTLS: t.apiScheme == "https", caFile: t.apiCAFile, certFile: t.apiCertFile, keyFile: t.apiKeyFile,
            user: t.apiUser, password: apiPassword,
            connectTimeout: .seconds(2), requestTimeout: .seconds(5))
        return PatroniClusterConfig(
            apiHosts: t.apiHosts.map(\.description), apiPort: t.apiPort, api: api,
            database: database ?? targetProjectDatabase, user: t.user,
            password: environment.value(of: t.password.variable).flatMap { $0.isEmpty ? nil : $0 },
            tls: t.tls,
            minConnections: 1, maxConnections: 2, healthCheckInterval: .seconds(5), failoverTimeout: connectTimeout,
            maxReplicaLagBytes: playbook.thresholds.maxLagBytes, connectTimeout: connectTimeout,
            applicationName: "pgha-prerequisites")
    }

    /// The configured REST API endpoints, in the playbook's order.
    var apiEndpoints: [PatroniEndpoint] {
        let tls = playbook.target.apiScheme == "https"
        return playbook.target.apiHosts.map { PatroniEndpoint(host: $0.host, port: $0.port, useTLS: tls) }
    }

    /// A REST client for the configured endpoints (through the HA pool's topology source, so the
    /// stage talks to Patroni exactly as the pool does).
    func patroniClient() throws -> PatroniClient {
        try PatroniTopologySource(config: poolConfiguration()).client
    }
}

extension Duration {
    /// Milliseconds as a Double (for `CheckResult.durationMs`).
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
