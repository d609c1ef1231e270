import Foundation

/// Everything a client needs to reach the sandbox: addresses, ports, databases, user names and the
/// paths of the password files. Written to `<baseDir>/sandbox.json` by `pgha sandbox up`.
///
/// It holds **no password**: read a password from the file that `secrets` names.
public struct SandboxConfiguration: Codable, Sendable, Equatable {
    /// Format version of `sandbox.json`.
    public var formatVersion: Int
    /// The sandbox's base directory (absolute).
    public var baseDir: String
    /// `pg_config --bindir`: where initdb, postgres, pg_ctl and psql live.
    public var postgresBinDir: String
    /// The Patroni virtual environment (its `bin/patroni` is started).
    public var patroniVenv: String
    /// The "before" system: a single PostgreSQL 15 server.
    public var single: SingleNode
    /// The one-member etcd (v3 API) that the Patroni cluster uses.
    public var etcd: Etcd
    /// An independent three-member Patroni cluster (its own initdb), started by `up`: what the HA
    /// pool's tests and the logical method use.
    public var cluster: Cluster
    /// The migration's target in the physical rehearsal: three members (`ha1`…`ha3`) that `pgha
    /// sandbox start-cluster` starts from the config stage's rendered patroni.yml, born as a
    /// standby cluster of the single node. Not started by `up`.
    public var target: Cluster
    /// Role names.
    public var users: Users
    /// Paths of the password files (0600, in the 0700 `secrets/` directory).
    public var secrets: SecretFiles
    /// Certificates, when the sandbox was started with `--tls`.
    public var tls: TLSFiles?
    /// The application's way in: PgBouncer in front of the single node (transaction pooling),
    /// repointed at the cluster by the migration's cutover.
    public var pgbouncer: PgBouncer

    /// PgBouncer.
    public struct PgBouncer: Codable, Sendable, Equatable {
        public var host: String
        public var port: Int
        /// Its directory (config, auth file, unix socket).
        public var dir: String
        /// `pgbouncer.ini` (no secret; the cutover rewrites its `[databases]` lines).
        public var configFile: String
        /// `userlist.txt` (0600: the passwords).
        public var authFile: String
        /// The admin console's user (`admin_users`).
        public var adminUser: String
    }

    /// The single PostgreSQL server.
    public struct SingleNode: Codable, Sendable, Equatable {
        public var host: String
        public var port: Int
        public var dataDir: String
        /// Unix socket directory (the data directory itself).
        public var socketDir: String
        /// The seed's project database.
        public var projectDatabase: String
        /// The seed's shared database.
        public var sharedDatabase: String
        /// `pgbench -i -s` scale of the pgbench tables in the project database (1 ≈ 15 MB).
        public var pgbenchScale: Int
    }

    /// The etcd server.
    public struct Etcd: Codable, Sendable, Equatable {
        public var host: String
        public var clientPort: Int
        public var peerPort: Int
        public var dataDir: String
        public var name: String
        /// `http://host:clientPort`.
        public var clientURL: String { "http://\(host):\(clientPort)" }
        /// `http://host:peerPort`.
        public var peerURL: String { "http://\(host):\(peerPort)" }
    }

    /// The Patroni cluster.
    public struct Cluster: Codable, Sendable, Equatable {
        /// Patroni `scope`.
        public var scope: String
        public var members: [Member]
        /// The application's project database (created empty on the leader).
        public var projectDatabase: String
        /// The application's shared database (created empty on the leader).
        public var sharedDatabase: String
        /// The REST API port shared by every member (the seed's `PATRONI_PORT`).
        public var restPort: Int { members.first?.restPort ?? 8008 }
    }

    /// One Patroni member.
    public struct Member: Codable, Sendable, Equatable {
        public var name: String
        public var host: String
        public var pgPort: Int
        public var restPort: Int
        /// The member's directory (`patroni.yml` lives here; it is also the unix socket directory).
        public var dir: String
        /// PostgreSQL data directory, managed by Patroni.
        public var dataDir: String
        public var configFile: String
        /// Unix socket directory of this member's PostgreSQL.
        public var socketDir: String
        /// `http(s)://host:restPort`.
        public var apiURL: String
    }

    /// Role names used in the sandbox.
    public struct Users: Codable, Sendable, Equatable {
        /// PostgreSQL superuser (also the OS user running every server).
        public var superuser: String
        /// Patroni replication role.
        public var replication: String
        /// Patroni pg_rewind role.
        public var rewind: String
        /// The application role (the seed's `PATRONI_USER`), owner of both databases.
        public var application: String
        /// User name of the Patroni REST API's `restapi.authentication`.
        public var restAPI: String
    }

    /// Password files (never the passwords themselves).
    public struct SecretFiles: Codable, Sendable, Equatable {
        public var directory: String
        public var superuser: String
        public var replication: String
        public var rewind: String
        public var application: String
        public var restAPI: String
        /// A libpq password file covering every server and role above.
        public var pgpass: String
    }

    /// TLS material made by `SandboxTLS`.
    public struct TLSFiles: Codable, Sendable, Equatable {
        public var directory: String
        public var caCertificate: String
        public var caKey: String
        /// Per member name and `"single"`: certificate and key whose SAN is the server's IP.
        public var serverCertificates: [String: KeyPair]
        /// A client certificate (CN = the application role).
        public var client: KeyPair
    }

    /// A certificate and its private key.
    public struct KeyPair: Codable, Sendable, Equatable {
        public var certificate: String
        public var key: String
    }

    /// Path of `sandbox.json` inside `baseDir`.
    public static func fileURL(baseDir: String) -> String {
        (baseDir as NSString).appendingPathComponent("sandbox.json")
    }

    /// Reads `<baseDir>/sandbox.json`.
    ///
    /// - Throws: `SandboxError` `.notSetUp` if the file does not exist, `.invalidConfiguration` if
    ///   it cannot be decoded.
    public static func load(baseDir: String) throws -> SandboxConfiguration {
        let path = fileURL(baseDir: baseDir)
        guard FileManager.default.fileExists(atPath: path) else {
            throw SandboxError(
                .notSetUp, "no sandbox in \(baseDir) (\(path) does not exist)",
                advice: "start it with `pgha sandbox up --base-dir \(baseDir)`")
        }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return try JSONDecoder().decode(SandboxConfiguration.self, from: data)
        } catch {
            throw SandboxError(.invalidConfiguration, "cannot read \(path)", underlying: error)
        }
    }

    /// The JSON text written to `sandbox.json` (sorted keys, pretty-printed).
    public func encodedJSON() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
    }

    /// Reads one password file named in `secrets` (trailing newline removed).
    public func password(_ file: KeyPath<SecretFiles, String>) throws -> String {
        try SandboxSecrets.read(secrets[keyPath: file])
    }

    /// The REST API endpoints `host:port` of every member, in member order.
    public var patroniHostPorts: [String] { cluster.members.map { "\($0.host):\($0.restPort)" } }

    /// Every Patroni member of both clusters.
    public var allMembers: [Member] { cluster.members + target.members }

    /// Paths derived from the base directory.
    public var logsDir: String { (baseDir as NSString).appendingPathComponent("logs") }
    public var runDir: String { (baseDir as NSString).appendingPathComponent("run") }
}

/// The knobs of `pgha sandbox up` from which a `SandboxConfiguration` is derived.
public struct SandboxOptions: Sendable, Equatable {
    /// Default base directory when neither `--base-dir` nor `PGHA_SANDBOX_DIR` is given.
    public static let defaultBaseDir = "/tmp/pgha-sandbox"
    /// Default Patroni venv when `PGHA_PATRONI_VENV` is not set.
    public static let defaultPatroniVenv = "/opt/pgha/patroni-venv"

    public var baseDir: String
    /// The single node's IPv4 address; members get the next three addresses.
    public var firstAddress: String
    /// PostgreSQL port of the single node and of every member.
    public var pgPort: Int
    /// Patroni REST API port of every member.
    public var restPort: Int
    /// etcd client port (the peer port is the next one).
    public var etcdPort: Int
    public var patroniVenv: String
    public var postgresBinDir: String
    /// Create certificates and switch on TLS for PostgreSQL and the REST API.
    public var tls: Bool
    /// `pgbench -i -s` scale of the single node's pgbench tables (1 ≈ 15 MB; 34 ≈ 500 MB).
    public var pgbenchScale: Int

    public init(
        baseDir: String = SandboxOptions.defaultBaseDir, firstAddress: String = "127.0.0.10",
        pgPort: Int = 15432, restPort: Int = 8008, etcdPort: Int = 12379,
        patroniVenv: String = SandboxOptions.defaultPatroniVenv,
        postgresBinDir: String = "/usr/lib/postgresql/15/bin", tls: Bool = false, pgbenchScale: Int = 1
    ) {
        self.baseDir = baseDir
        self.firstAddress = firstAddress
        self.pgPort = pgPort
        self.restPort = restPort
        self.etcdPort = etcdPort
        self.patroniVenv = patroniVenv
        self.postgresBinDir = postgresBinDir
        self.tls = tls
        self.pgbenchScale = pgbenchScale
    }

    /// `--base-dir`, else `PGHA_SANDBOX_DIR`, else `/tmp/pgha-sandbox`.
    public static func resolveBaseDir(option: String?, environment: [String: String]) -> String {
        if let option, !option.isEmpty { return option }
        if let fromEnv = environment["PGHA_SANDBOX_DIR"], !fromEnv.isEmpty { return fromEnv }
        return defaultBaseDir
    }

    /// `PGHA_PATRONI_VENV`, else `/opt/pgha/patroni-venv`.
    public static func resolvePatroniVenv(environment: [String: String]) -> String {
        if let venv = environment["PGHA_PATRONI_VENV"], !venv.isEmpty { return venv }
        return defaultPatroniVenv
    }

    /// Derives the full configuration. Pure: no file is touched.
    ///
    /// - Throws: `.invalidConfiguration` for a relative base dir, a bad IPv4 address, a port out of
    ///   range, or a unix socket path too long for PostgreSQL (107 bytes).
    public func makeConfiguration() throws -> SandboxConfiguration {
        guard baseDir.hasPrefix("/") else {
            throw SandboxError(.invalidConfiguration, "the base directory must be an absolute path: \(baseDir)")
        }
        let base = (baseDir as NSString).standardizingPath
        guard let first = IPv4(firstAddress) else {
            throw SandboxError(.invalidConfiguration, "not an IPv4 address: \(firstAddress)")
        }
        guard first.octets[0] == 127, first.octets[3] <= 248 else {
            throw SandboxError(
                .invalidConfiguration,
                "--first-address must be a loopback address 127.x.y.z with z <= 248 (the single node and six members take seven addresses; got \(firstAddress))")
        }
        for (name, port) in [("--pg-port", pgPort), ("--rest-port", restPort), ("--etcd-port", etcdPort)] {
            guard (1...65534).contains(port) else {
                throw SandboxError(.invalidConfiguration, "\(name) out of range: \(port)")
            }
        }
        let etcdHost = "127.0.0.1"
        let memberHosts = (1...3).map { first.adding($0).description }
        let targetHosts = (4...6).map { first.adding($0).description }
        if (memberHosts + targetHosts).contains(etcdHost) || first.description == etcdHost {
            guard etcdPort != pgPort, etcdPort + 1 != pgPort, etcdPort != restPort, etcdPort + 1 != restPort else {
                throw SandboxError(.invalidConfiguration, "etcd ports clash with the PostgreSQL or REST port on \(etcdHost)")
            }
        }
        guard (1...10_000).contains(pgbenchScale) else {
            throw SandboxError(.invalidConfiguration, "--pgbench-scale must be between 1 and 10000 (got \(pgbenchScale))")
        }
        guard pgPort + 1000 <= 65535, pgPort + 1000 != restPort else {
            throw SandboxError(.invalidConfiguration, "PgBouncer listens on --pg-port + 1000 (\(pgPort + 1000)): choose another --pg-port")
        }
        guard pgPort != restPort else {
            throw SandboxError(.invalidConfiguration, "--pg-port and --rest-port must differ")
        }
        func path(_ parts: String...) -> String {
            parts.reduce(base) { ($0 as NSString).appendingPathComponent($1) }
        }
        let scheme = tls ? "https" : "http"
        let members = memberHosts.enumerated().map { index, host in
            let name = "node\(index + 1)"
            return SandboxConfiguration.Member(
                name: name, host: host, pgPort: pgPort, restPort: restPort,
                dir: path(name), dataDir: path(name, "data"), configFile: path(name, "patroni.yml"),
                socketDir: path(name), apiURL: "\(scheme)://\(host):\(restPort)")
        }
        let targetMembers = targetHosts.enumerated().map { index, host in
            let name = "ha\(index + 1)"
            return SandboxConfiguration.Member(
                name: name, host: host, pgPort: pgPort, restPort: restPort,
                dir: path("ha", name), dataDir: path("ha", name, "data"), configFile: path("ha", name, "conf.d"),
                socketDir: path("ha", name), apiURL: "\(scheme)://\(host):\(restPort)")
        }
        let socketPaths = [path("single")] + (members + targetMembers).map(\.socketDir)
        for dir in socketPaths where (dir + "/.s.PGSQL.\(pgPort).lock").utf8.count > 107 {
            throw SandboxError(.invalidConfiguration, "base directory too long for a unix socket path: \(dir)")
        }
        let secretsDir = path("secrets")
        let project = "distributed_postgres_cluster"
        let shared = "shared_knowledge"
        var tlsFiles: SandboxConfiguration.TLSFiles?
        if tls {
            let dir = path("tls")
            var servers: [String: SandboxConfiguration.KeyPair] = [:]
            // The target cluster's members share one certificate naming all their addresses: the
            // config stage's patroni.yml names one path for every member (target.member_tls).
            for name in ["single"] + members.map(\.name) + [SandboxTLS.targetCertificate] {
                servers[name] = .init(
                    certificate: (dir as NSString).appendingPathComponent("\(name).crt"),
                    key: (dir as NSString).appendingPathComponent("\(name).key"))
            }
            tlsFiles = .init(
                directory: dir, caCertificate: (dir as NSString).appendingPathComponent("ca.crt"),
                caKey: (dir as NSString).appendingPathComponent("ca.key"), serverCertificates: servers,
                client: .init(
                    certificate: (dir as NSString).appendingPathComponent("client.crt"),
                    key: (dir as NSString).appendingPathComponent("client.key")))
        }
        return SandboxConfiguration(
            formatVersion: 2, baseDir: base, postgresBinDir: postgresBinDir, patroniVenv: patroniVenv,
            single: .init(
                host: first.description, port: pgPort, dataDir: path("single"), socketDir: path("single"),
                projectDatabase: project, sharedDatabase: shared, pgbenchScale: pgbenchScale),
            etcd: .init(
                host: etcdHost, clientPort: etcdPort, peerPort: etcdPort + 1, dataDir: path("etcd"),
                name: "pgha-sandbox-etcd"),
            cluster: .init(scope: "pgha-sandbox", members: members, projectDatabase: project, sharedDatabase: shared),
            target: .init(scope: "pgha-ha", members: targetMembers, projectDatabase: project, sharedDatabase: shared),
            users: .init(
                superuser: "postgres", replication: "replicator", rewind: "rewind_user",
                application: "dpg_cluster", restAPI: "pgha_api"),
            secrets: .init(
                directory: secretsDir,
                superuser: (secretsDir as NSString).appendingPathComponent("superuser.password"),
                replication: (secretsDir as NSString).appendingPathComponent("replication.password"),
                rewind: (secretsDir as NSString).appendingPathComponent("rewind.password"),
                application: (secretsDir as NSString).appendingPathComponent("app.password"),
                restAPI: (secretsDir as NSString).appendingPathComponent("restapi.password"),
                pgpass: (secretsDir as NSString).appendingPathComponent("pgpass")),
            tls: tlsFiles,
            pgbouncer: .init(
                host: first.description, port: pgPort + 1000, dir: path("pgbouncer"),
                configFile: path("pgbouncer", "pgbouncer.ini"), authFile: path("pgbouncer", "userlist.txt"),
                adminUser: "postgres"))
    }
}

/// A dotted IPv4 address (loopback arithmetic only).
struct IPv4: Equatable, CustomStringConvertible {
    var octets: [Int]

    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var values: [Int] = []
        for part in parts {
            guard let value = Int(part), (0...255).contains(value), String(value) == part else { return nil }
            values.append(value)
        }
        octets = values
    }

    private init(octets: [Int]) { self.octets = octets }

    func adding(_ offset: Int) -> IPv4 {
        var copy = octets
        copy[3] += offset
        return IPv4(octets: copy)
    }

    var description: String { octets.map(String.init).joined(separator: ".") }
}
