public import Foundation
import PlainText

/// Builds pool configuration from environment variables (the seed's names), optionally merged
/// with a `.env` file. Real environment variables win over the file; callers apply flags last.
///
/// Patroni mode (`ENABLE_PATRONI=true`): `PATRONI_HOSTS`, `PATRONI_PORT`, `PATRONI_DB`,
/// `PATRONI_SHARED_DB`, `PATRONI_USER`, `PATRONI_PASSWORD`, `PATRONI_MIN_CONNECTIONS`,
/// `PATRONI_MAX_CONNECTIONS`, `PATRONI_HEALTH_CHECK_INTERVAL`, `PATRONI_FAILOVER_TIMEOUT`,
/// `PATRONI_SSLMODE`, `PATRONI_SSLROOTCERT`, `PATRONI_SSLCERT`, `PATRONI_SSLKEY`, and pgha's
/// additions `PATRONI_API_USER`, `PATRONI_API_PASSWORD`, `PATRONI_API_CAFILE`,
/// `PATRONI_API_CERTFILE`, `PATRONI_API_KEYFILE`, `PATRONI_MAX_REPLICA_LAG`,
/// `PATRONI_REPLICA_FALLBACK`, `PATRONI_MAX_RETRIES`.
///
/// Single-node mode (default): `PROJECT_DB_HOST`, `PROJECT_DB_PORT`, `PROJECT_DB_NAME`,
/// `PROJECT_DB_USER`, `PROJECT_DB_PASSWORD`, `PROJECT_DB_MAX_CONNECTIONS`, `PROJECT_DB_SSLMODE`,
/// and the same with `SHARED_DB_`.
public struct EnvironmentConfiguration: Sendable {
    public var variables: [String: String]
    /// Where a variable was written, when it came from a file (`.env` or YAML): errors about it
    /// then name the file, line and column.
    public var origins: [String: Origin]

    /// A variable's place in a file.
    public struct Origin: Sendable, Hashable {
        public var file: String
        public var line: Int
        public var column: Int
        public init(file: String, line: Int, column: Int) {
            self.file = file
            self.line = line
            self.column = column
        }
    }

    /// The `.env` file that was read, if any: a variable missing from both it and the
    /// environment is reported against it.
    public var dotEnvFile: String?

    public init(_ variables: [String: String], origins: [String: Origin] = [:], dotEnvFile: String? = nil) {
        self.variables = variables
        self.origins = origins
        self.dotEnvFile = dotEnvFile
    }

    /// The process environment over the `.env` file at `dotEnvPath` (if it exists).
    public static func load(dotEnvPath: String? = ".env", processEnvironment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> EnvironmentConfiguration {
        var merged: [String: String] = [:]
        var origins: [String: Origin] = [:]
        var file: String?
        if let dotEnvPath, FileManager.default.fileExists(atPath: dotEnvPath) {
            file = dotEnvPath
            for entry in try DotEnv.loadEntries(path: dotEnvPath) {
                merged[entry.key] = entry.value
                origins[entry.key] = Origin(file: dotEnvPath, line: entry.line, column: entry.column)
            }
        }
        for (key, value) in processEnvironment {
            merged[key] = value
            origins[key] = nil
        }
        return EnvironmentConfiguration(merged, origins: origins, dotEnvFile: file)
    }

    /// Runs `body`, placing an error about a variable that came from a file in that file.
    func locating<T>(_ body: () throws(ConfigurationError) -> T) throws(ConfigurationError) -> T {
        do {
            return try body()
        } catch {
            guard error.file == nil else { throw error }
            if let origin = origins[error.key] {
                throw error.located(file: origin.file, line: origin.line, column: origin.column)
            }
            if error.code == .missing, variables[error.key] == nil, let dotEnvFile {
                var missing = error.located(file: dotEnvFile, line: nil, column: nil)
                missing.message += " (in \(dotEnvFile) or the environment)"
                throw missing
            }
            throw error
        }
    }

    /// Every variable this configuration reads as text (passwords excluded: any character may be
    /// part of a password).
    static let textVariables: [String] = {
        let patroni = YAMLConfiguration.patroniKeys.values.filter { !$0.hasSuffix("PASSWORD") }
        let single = YAMLConfiguration.singleNodeKeys.values.filter { $0 != "PASSWORD" }
        return ["ENABLE_PATRONI"] + patroni + single.flatMap { ["PROJECT_DB_" + $0, "SHARED_DB_" + $0] }
    }()

    /// Refuses control and invisible characters in the variables read as text: they would reach
    /// libpq and libcurl, or hide in a host name.
    func checkText() throws(ConfigurationError) {
        for key in Self.textVariables.sorted() {
            guard let value = variables[key], let hidden = UTF8Text.firstHiddenCharacter(in: value) else { continue }
            throw ConfigurationError(.invalidValue, key: key, "contains the control or invisible character \(hidden): remove it")
        }
    }

    // MARK: - Typed lookups

    func string(_ key: String) -> String? {
        guard let value = variables[key]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        return value
    }

    func required(_ key: String) throws(ConfigurationError) -> String {
        guard let value = string(key) else { throw ConfigurationError(.missing, key: key, "is not set: set it") }
        return value
    }

    func int(_ key: String, default value: Int, range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let text = string(key) else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw ConfigurationError(.invalidValue, key: key, "expected a whole number in \(range.lowerBound)…\(range.upperBound), got \(UTF8Text.quoted(text))")
        }
        return number
    }

    func bool(_ key: String, default value: Bool) throws(ConfigurationError) -> Bool {
        guard let text = string(key)?.lowercased() else { return value }
        switch text {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(.invalidValue, key: key, "expected true or false, got \(UTF8Text.quoted(text))")
        }
    }

    func duration(_ key: String, default value: Duration) throws(ConfigurationError) -> Duration {
        guard let text = string(key) else { return value }
        guard let parsed = Duration(parsing: text), parsed > .zero else {
            throw ConfigurationError(.invalidValue, key: key, "expected seconds (30) or a duration (250ms, 2m), got \(UTF8Text.quoted(text))")
        }
        return parsed
    }

    func bytes(_ key: String, default value: Int64) throws(ConfigurationError) -> Int64 {
        guard let text = string(key) else { return value }
        guard let parsed = parseBytes(text) else {
            throw ConfigurationError(.invalidValue, key: key, "expected bytes (1048576) or a size (16MB, 512kB), got \(UTF8Text.quoted(text))")
        }
        return parsed
    }

    func password(_ key: String) throws(ConfigurationError) -> String? {
        guard let value = variables[key], !value.isEmpty else { return nil }
        if PlaceholderPassword.isPlaceholder(value) {
            throw ConfigurationError(.placeholderPassword, key: key, "is a placeholder; set the real password (or leave it unset to use ~/.pgpass)")
        }
        return value
    }

    func tls(prefix: String) throws(ConfigurationError) -> PostgresTLS {
        let mode = string(prefix + "SSLMODE")
        if let mode, !PostgresTLS.validModes.contains(mode) {
            throw ConfigurationError(.invalidValue, key: prefix + "SSLMODE", "expected one of \(PostgresTLS.validModes.sorted().joined(separator: ", ")), got \(UTF8Text.quoted(mode))")
        }
        return PostgresTLS(
            sslMode: mode, sslRootCert: string(prefix + "SSLROOTCERT"),
            sslCert: string(prefix + "SSLCERT"), sslKey: string(prefix + "SSLKEY")
        )
    }

    // MARK: - Configurations

    /// `ENABLE_PATRONI` (default false).
    public func mode() throws(ConfigurationError) -> DatabaseMode {
        try locating { () throws(ConfigurationError) in try bool("ENABLE_PATRONI", default: false) ? .patroni : .singleNode }
    }

    /// The Patroni cluster configuration from `PATRONI_*`.
    public func patroni() throws(ConfigurationError) -> PatroniClusterConfig {
        try locating { () throws(ConfigurationError) in try readPatroni() }
    }

    private func readPatroni() throws(ConfigurationError) -> PatroniClusterConfig {
        try checkText()
        let hosts = try required("PATRONI_HOSTS").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !hosts.isEmpty else { throw ConfigurationError(.invalidValue, key: "PATRONI_HOSTS", "lists no host: write host[:port] entries separated by commas") }
        let minConnections = try int("PATRONI_MIN_CONNECTIONS", default: 2, range: 0...10_000)
        let maxConnections = try int("PATRONI_MAX_CONNECTIONS", default: 20, range: 1...10_000)
        guard minConnections <= maxConnections else {
            throw ConfigurationError(.invalidValue, key: "PATRONI_MIN_CONNECTIONS", "is larger than PATRONI_MAX_CONNECTIONS (\(minConnections) > \(maxConnections)): lower it or raise PATRONI_MAX_CONNECTIONS")
        }
        let caFile = string("PATRONI_API_CAFILE")
        let api = RESTAPISettings(
            useTLS: caFile != nil || string("PATRONI_API_SCHEME")?.lowercased() == "https",
            caFile: caFile, certFile: string("PATRONI_API_CERTFILE"), keyFile: string("PATRONI_API_KEYFILE"),
            user: string("PATRONI_API_USER"), password: try password("PATRONI_API_PASSWORD")
        )
        let fallback: ReplicaFallback
        switch string("PATRONI_REPLICA_FALLBACK")?.lowercased() {
        case nil, "leader": fallback = .leader
        case "fail": fallback = .fail
        case let other?: throw ConfigurationError(.invalidValue, key: "PATRONI_REPLICA_FALLBACK", "expected leader or fail, got \(UTF8Text.quoted(other))")
        }
        var retry = RetryPolicy()
        retry.maxRetries = try int("PATRONI_MAX_RETRIES", default: retry.maxRetries, range: 0...100)
        return PatroniClusterConfig(
            apiHosts: hosts,
            apiPort: try int("PATRONI_PORT", default: 8008, range: 1...65535),
            api: api,
            database: try required("PATRONI_DB"),
            user: try required("PATRONI_USER"),
            password: try password("PATRONI_PASSWORD"),
            tls: try tls(prefix: "PATRONI_"),
            minConnections: minConnections,
            maxConnections: maxConnections,
            healthCheckInterval: try duration("PATRONI_HEALTH_CHECK_INTERVAL", default: .seconds(30)),
            failoverTimeout: try duration("PATRONI_FAILOVER_TIMEOUT", default: .seconds(30)),
            retry: retry,
            maxReplicaLagBytes: try bytes("PATRONI_MAX_REPLICA_LAG", default: 1 << 20),
            replicaFallback: fallback
        )
    }

    /// A single-node database from `<PREFIX>HOST`, `PORT`, `NAME`, `USER`, `PASSWORD`,
    /// `MAX_CONNECTIONS`, `SSLMODE`…; nil when `<PREFIX>NAME` is unset.
    public func singleNode(prefix: String, defaultMaxConnections: Int) throws(ConfigurationError) -> SingleNodeConfig? {
        try locating { () throws(ConfigurationError) in try readSingleNode(prefix: prefix, defaultMaxConnections: defaultMaxConnections) }
    }

    private func readSingleNode(prefix: String, defaultMaxConnections: Int) throws(ConfigurationError) -> SingleNodeConfig? {
        try checkText()
        guard let name = string(prefix + "NAME") else { return nil }
        let maxConnections = try int(prefix + "MAX_CONNECTIONS", default: defaultMaxConnections, range: 1...10_000)
        return SingleNodeConfig(
            host: string(prefix + "HOST") ?? "localhost",
            port: try int(prefix + "PORT", default: 5432, range: 1...65535),
            database: name,
            user: try required(prefix + "USER"),
            password: try password(prefix + "PASSWORD"),
            tls: try tls(prefix: prefix),
            minConnections: try int(prefix + "MIN_CONNECTIONS", default: 1, range: 0...maxConnections),
            maxConnections: maxConnections
        )
    }

    /// The whole `DualDatabasePools` configuration. Single-node defaults as the seed: project pool
    /// up to 40 connections, shared pool up to 15.
    public func dualPools() throws(ConfigurationError) -> DualPoolsConfig {
        try locating { () throws(ConfigurationError) in try readDualPools() }
    }

    private func readDualPools() throws(ConfigurationError) -> DualPoolsConfig {
        switch try mode() {
        case .patroni:
            return DualPoolsConfig(mode: .patroni, patroni: try patroni(), patroniSharedDatabase: string("PATRONI_SHARED_DB"))
        case .singleNode:
            guard let project = try singleNode(prefix: "PROJECT_DB_", defaultMaxConnections: 40) else {
                throw ConfigurationError(.missing, key: "PROJECT_DB_NAME", "is not set (single-node mode; set ENABLE_PATRONI=true for Patroni mode)")
            }
            return DualPoolsConfig(
                mode: .singleNode, project: project,
                shared: try singleNode(prefix: "SHARED_DB_", defaultMaxConnections: 15)
            )
        }
    }
}
