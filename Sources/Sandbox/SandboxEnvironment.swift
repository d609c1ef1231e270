/// The environment variables `pgha sandbox env` prints: the seed's `PATRONI_*` and single-node
/// variables pointing at the sandbox, and the `PGHA_TEST_*` variables the integration tests read.
///
/// Secrets are never part of the output: a password variable is printed as
/// `export NAME="$(cat '/path/to/file')"`, so `eval "$(pgha sandbox env)"` sets it while the
/// terminal shows only the file name.
public struct SandboxEnvironment: Sendable, Equatable {
    /// The value of one variable.
    public enum Value: Sendable, Equatable {
        /// A plain, non-secret value.
        case literal(String)
        /// The contents of a (password) file, read by the shell at `eval` time.
        case contentsOf(path: String)
    }

    /// The variables, in output order.
    public var variables: [(name: String, value: Value)]

    public static func == (lhs: SandboxEnvironment, rhs: SandboxEnvironment) -> Bool {
        lhs.variables.map(\.name) == rhs.variables.map(\.name) && lhs.variables.map(\.value) == rhs.variables.map(\.value)
    }

    /// The variables for `configuration`.
    public init(_ configuration: SandboxConfiguration) {
        let single = configuration.single
        let cluster = configuration.cluster
        let users = configuration.users
        let secrets = configuration.secrets
        var list: [(String, Value)] = [
            ("ENABLE_PATRONI", .literal("true")),
            ("PATRONI_HOSTS", .literal(cluster.members.map(\.host).joined(separator: ","))),
            ("PATRONI_PORT", .literal(String(cluster.restPort))),
            ("PATRONI_DB", .literal(cluster.projectDatabase)),
            ("PATRONI_SHARED_DB", .literal(cluster.sharedDatabase)),
            ("PATRONI_USER", .literal(users.application)),
            ("PATRONI_PASSWORD", .contentsOf(path: secrets.application)),
            ("PATRONI_MIN_CONNECTIONS", .literal("2")),
            ("PATRONI_MAX_CONNECTIONS", .literal("20")),
            ("PATRONI_HEALTH_CHECK_INTERVAL", .literal("5")),
            ("PATRONI_FAILOVER_TIMEOUT", .literal("30")),
        ]
        if let tls = configuration.tls {
            list += [
                ("PATRONI_SSLMODE", .literal("verify-full")),
                ("PATRONI_SSLROOTCERT", .literal(tls.caCertificate)),
                ("PATRONI_SSLCERT", .literal(tls.client.certificate)),
                ("PATRONI_SSLKEY", .literal(tls.client.key)),
                ("PATRONI_API_CAFILE", .literal(tls.caCertificate)),
            ]
        } else {
            list.append(("PATRONI_SSLMODE", .literal("disable")))
        }
        list += [
            ("PATRONI_API_USER", .literal(users.restAPI)),
            ("PATRONI_API_PASSWORD", .contentsOf(path: secrets.restAPI)),
            // The replication role's password: the way back's subscription (cutover.way_back).
            ("PATRONI_REPLICATION_PASSWORD", .contentsOf(path: secrets.replication)),
            ("PROJECT_DB_HOST", .literal(single.host)),
            ("PROJECT_DB_PORT", .literal(String(single.port))),
            ("PROJECT_DB_NAME", .literal(single.projectDatabase)),
            ("PROJECT_DB_USER", .literal(users.application)),
            ("PROJECT_DB_PASSWORD", .contentsOf(path: secrets.application)),
            ("SHARED_DB_HOST", .literal(single.host)),
            ("SHARED_DB_PORT", .literal(String(single.port))),
            ("SHARED_DB_NAME", .literal(single.sharedDatabase)),
            ("SHARED_DB_USER", .literal(users.application)),
            ("SHARED_DB_PASSWORD", .contentsOf(path: secrets.application)),
            ("PGHA_SANDBOX_DIR", .literal(configuration.baseDir)),
            // libpq's password file for the roles without a ${VAR} password in
            // playbooks/sandbox.yml (the superuser logins of the migration checks).
            ("PGPASSFILE", .literal(secrets.pgpass)),
            ("PGHA_TEST_PG_HOST", .literal(single.host)),
            ("PGHA_TEST_PG_PORT", .literal(String(single.port))),
            ("PGHA_TEST_PG_USER", .literal(users.application)),
            ("PGHA_TEST_PG_DB", .literal(single.projectDatabase)),
            ("PGHA_TEST_PG_PASSWORD_FILE", .literal(secrets.application)),
            ("PGHA_TEST_PATRONI_HOSTS", .literal(configuration.patroniHostPorts.joined(separator: ","))),
            ("PGHA_TEST_PATRONI_API_USER", .literal(users.restAPI)),
            ("PGHA_TEST_PATRONI_API_PASSWORD_FILE", .literal(secrets.restAPI)),
            ("PGHA_TEST_SANDBOX_DIR", .literal(configuration.baseDir)),
        ]
        if let tls = configuration.tls {
            list.append(("PGHA_TEST_PATRONI_CA_FILE", .literal(tls.caCertificate)))
        }
        variables = list
    }

    /// `export` lines for a POSIX shell, one per variable.
    public func exportLines() -> String {
        variables.map { name, value in
            switch value {
            case .literal(let text): return "export \(name)=\(Self.shellQuoted(text))"
            case .contentsOf(let path): return "export \(name)=\"$(cat \(Self.singleQuoted(path)))\""
            }
        }.joined(separator: "\n") + "\n"
    }

    /// `text` bare if it contains only characters a shell leaves alone, else single-quoted.
    static func shellQuoted(_ text: String) -> String {
        let safe = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.,:/@%+=")
        if !text.isEmpty, text.allSatisfy(safe.contains) { return text }
        return singleQuoted(text)
    }

    /// `'text'` with each `'` written as `'\''`.
    static func singleQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
