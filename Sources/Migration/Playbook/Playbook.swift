import Foundation
public import HAPool

/// A validated migration playbook (playbooks/*.yml): where the application's single node is, where
/// the Patroni cluster is, what must be true before each stage, which files to generate, and what
/// to do on failure. docs/PLAYBOOKS.md describes every key.
///
/// Credentials are never values here: a credential field holds an `EnvironmentReference`
/// (`${VAR}`), resolved from the environment when a stage needs it and never stored resolved.
public struct Playbook: Hashable, Sendable {
    /// The only schema version so far.
    public static let currentVersion = 1

    public var version: Int
    public var name: String
    public var source: Source
    public var target: Target
    public var extensions: Extensions
    public var thresholds: Thresholds
    public var application: Application
    public var haproxy: HAProxy
    public var outputs: Outputs
    public var sync: Sync
    public var cutover: Cutover
    public var complete: Complete
    /// Shadowing before cutover (Playbook+Shadow.swift).
    public var shadow: Shadow
    public var onFailure: OnFailure

    /// The application's single PostgreSQL node.
    public struct Source: Hashable, Sendable {
        public var host: String
        public var port: Int
        public var user: String
        public var password: EnvironmentReference
        /// A superuser for the later stages (publications, slots, sequence values).
        public var adminUser: String?
        public var adminPassword: EnvironmentReference?
        public var sslmode: String?
        public var sslrootcert: String?
        public var sslcert: String?
        public var sslkey: String?
        public var databases: Databases
        /// The shared database's own user and password, when it has them (default: `user`/`password`).
        public var sharedUser: String?
        public var sharedPassword: EnvironmentReference?

        public init(
            host: String, port: Int, user: String, password: EnvironmentReference,
            adminUser: String? = nil, adminPassword: EnvironmentReference? = nil, sslmode: String? = nil,
            sslrootcert: String? = nil, sslcert: String? = nil, sslkey: String? = nil,
            databases: Databases, sharedUser: String? = nil, sharedPassword: EnvironmentReference? = nil
        ) {
            self.host = host
            self.port = port
            self.user = user
            self.password = password
            self.adminUser = adminUser
            self.adminPassword = adminPassword
            self.sslmode = sslmode
            self.sslrootcert = sslrootcert
            self.sslcert = sslcert
            self.sslkey = sslkey
            self.databases = databases
            self.sharedUser = sharedUser
            self.sharedPassword = sharedPassword
        }

        /// libpq's TLS settings for every login to the single node.
        public var tls: PostgresTLS { PostgresTLS(sslMode: sslmode, sslRootCert: sslrootcert, sslCert: sslcert, sslKey: sslkey) }
    }

    /// The project and shared databases (the seed's `DualDatabasePools`).
    public struct Databases: Hashable, Sendable {
        public var project: String
        public var shared: String?

        public init(project: String, shared: String? = nil) {
            self.project = project
            self.shared = shared
        }
    }

    /// A host and port, as written `host`, `host:port` or `[v6]:port`: the pool's `NodeAddress`
    /// (its description brackets an IPv6 address).
    public typealias HostPort = NodeAddress

    /// The Patroni cluster.
    public struct Target: Hashable, Sendable {
        /// Patroni's cluster name (`scope`), used in the reference patroni.yml.
        public var scope: String
        /// Patroni REST API endpoints, one per member (the port defaults to `apiPort`).
        public var apiHosts: [HostPort]
        public var apiPort: Int
        /// `http` or `https`.
        public var apiScheme: String
        public var apiCAFile: String?
        /// pgha's client certificate and key for the REST API (Patroni's `verify_client`).
        public var apiCertFile: String?
        public var apiKeyFile: String?
        public var apiUser: String?
        public var apiPassword: EnvironmentReference?
        /// PostgreSQL's port on the members.
        public var port: Int
        public var user: String
        public var password: EnvironmentReference
        public var adminUser: String?
        public var adminPassword: EnvironmentReference?
        public var sslmode: String?
        public var sslrootcert: String?
        public var sslcert: String?
        public var sslkey: String?
        /// Database names on the cluster (default: the source's).
        public var databases: Databases
        /// etcd endpoints, for the generated patroni.yml.
        public var etcdHosts: [HostPort]
        /// The members by name and address (`target.members`), for the generated patroni.yml and
        /// haproxy.cfg; when the playbook has none, they are `node1`… at the `api_hosts`.
        public var members: [Member]
        /// True when the playbook names the members (`target.members`); false when they are the
        /// `nodeN` stand-ins for the `api_hosts` (then only their number is known).
        public var membersNamed: Bool
        /// The replication role the members use (physical method: to stream from the single node).
        public var replicationUser: String
        /// Patroni's DCS timings for the generated patroni.yml (`target.patroni_dcs`).
        public var dcs: DCSTimings
        /// The certificate the members serve PostgreSQL and the REST API with, for the generated
        /// patroni.yml (`target.member_tls`); nil: the file has no TLS.
        public var memberTLS: MemberTLS?

        public init(
            scope: String = "pgha", apiHosts: [HostPort], apiPort: Int = 8008, apiScheme: String = "http",
            apiCAFile: String? = nil, apiCertFile: String? = nil, apiKeyFile: String? = nil,
            apiUser: String? = nil, apiPassword: EnvironmentReference? = nil,
            port: Int = 5432, user: String, password: EnvironmentReference,
            adminUser: String? = nil, adminPassword: EnvironmentReference? = nil,
            sslmode: String? = nil, sslrootcert: String? = nil, sslcert: String? = nil, sslkey: String? = nil,
            databases: Databases, etcdHosts: [HostPort] = [], members: [Member] = [], replicationUser: String = "replicator",
            dcs: DCSTimings = DCSTimings(), memberTLS: MemberTLS? = nil
        ) {
            self.scope = scope
            self.apiHosts = apiHosts
            self.apiPort = apiPort
            self.apiScheme = apiScheme
            self.apiCAFile = apiCAFile
            self.apiCertFile = apiCertFile
            self.apiKeyFile = apiKeyFile
            self.apiUser = apiUser
            self.apiPassword = apiPassword
            self.port = port
            self.user = user
            self.password = password
            self.adminUser = adminUser
            self.adminPassword = adminPassword
            self.sslmode = sslmode
            self.sslrootcert = sslrootcert
            self.sslcert = sslcert
            self.sslkey = sslkey
            self.databases = databases
            self.etcdHosts = etcdHosts
            self.membersNamed = !members.isEmpty
            self.members = members.isEmpty
                ? apiHosts.enumerated().map { Member(name: "node\($0.offset + 1)", host: $0.element.host, apiPort: $0.element.port) }
                : members
            self.replicationUser = replicationUser
            self.dcs = dcs
            self.memberTLS = memberTLS
        }

        /// libpq's TLS settings for every login to a member.
        public var tls: PostgresTLS { PostgresTLS(sslMode: sslmode, sslRootCert: sslrootcert, sslCert: sslcert, sslKey: sslkey) }
    }

    /// `target.member_tls`: paths on each member (the same on every machine; the certificate names
    /// every member's address, or each machine has its own at that path).
    public struct MemberTLS: Hashable, Sendable {
        /// Patroni's `restapi.verify_client`.
        public enum VerifyClient: String, CaseIterable, Sendable {
            /// No client certificate asked for.
            case none
            /// A certificate signed by `cafile` for the unsafe endpoints (PATCH /config, switchover…);
            /// reads (HAProxy's checks, the pool's /cluster) need none.
            case optional
            /// A certificate for every request (HAProxy's checks too).
            case required
        }

        public var certFile: String
        public var keyFile: String
        public var caFile: String?
        public var verifyClient: VerifyClient

        public init(certFile: String, keyFile: String, caFile: String? = nil, verifyClient: VerifyClient? = nil) {
            self.certFile = certFile
            self.keyFile = keyFile
            self.caFile = caFile
            self.verifyClient = verifyClient ?? (caFile == nil ? .none : .optional)
        }
    }

    /// Patroni's `ttl`, `loop_wait` and `retry_timeout` (its defaults: 30, 10, 10).
    public struct DCSTimings: Hashable, Sendable {
        public var ttl: Int
        public var loopWait: Int
        public var retryTimeout: Int

        public init(ttl: Int = 30, loopWait: Int = 10, retryTimeout: Int = 10) {
            self.ttl = ttl
            self.loopWait = loopWait
            self.retryTimeout = retryTimeout
        }
    }

    /// One cluster member as the playbook names it.
    public struct Member: Hashable, Sendable {
        /// Patroni's `name` (unique across the single node and the cluster).
        public var name: String
        /// Where its PostgreSQL and REST API listen.
        public var host: String
        /// Its REST API port.
        public var apiPort: Int

        public init(name: String, host: String, apiPort: Int) {
            self.name = name
            self.host = host
            self.apiPort = apiPort
        }
    }

    /// Extensions every node must have.
    public struct Extensions: Hashable, Sendable {
        public var required: [String]
        /// Minimum versions, by extension name (e.g. `ruvector: "2.0"`).
        public var minVersions: [String: String]

        public init(required: [String] = [], minVersions: [String: String] = [:]) {
            self.required = required
            self.minVersions = minVersions
        }
    }

    /// Limits the gates hold the cluster and the source to.
    public struct Thresholds: Hashable, Sendable {
        /// Members the cluster must have running (leader included).
        public var minMembers: Int
        /// Largest replication lag allowed on a replica, in bytes.
        public var maxLagBytes: Int64
        /// Longest-running transaction allowed on the source, in seconds.
        public var maxTransactionAgeSeconds: Double
        /// Lowest PostgreSQL major version accepted on every node.
        public var minServerVersion: Int
        /// Connection timeout for checks, in seconds.
        public var connectTimeoutSeconds: Double

        public init(minMembers: Int = 3, maxLagBytes: Int64 = 1 << 20, maxTransactionAgeSeconds: Double = 300, minServerVersion: Int = 13, connectTimeoutSeconds: Double = 5) {
            self.minMembers = minMembers
            self.maxLagBytes = maxLagBytes
            self.maxTransactionAgeSeconds = maxTransactionAgeSeconds
            self.minServerVersion = minServerVersion
            self.connectTimeoutSeconds = connectTimeoutSeconds
        }
    }

    /// Pool settings written into the application's environment (the seed's defaults).
    public struct Application: Hashable, Sendable {
        public var minConnections: Int
        public var maxConnections: Int
        public var healthCheckIntervalSeconds: Int
        public var failoverTimeoutSeconds: Int
        public var projectMaxConnections: Int
        public var sharedMaxConnections: Int

        public init(minConnections: Int = 2, maxConnections: Int = 20, healthCheckIntervalSeconds: Int = 30, failoverTimeoutSeconds: Int = 30, projectMaxConnections: Int = 40, sharedMaxConnections: Int = 15) {
            self.minConnections = minConnections
            self.maxConnections = maxConnections
            self.healthCheckIntervalSeconds = healthCheckIntervalSeconds
            self.failoverTimeoutSeconds = failoverTimeoutSeconds
            self.projectMaxConnections = projectMaxConnections
            self.sharedMaxConnections = sharedMaxConnections
        }
    }

    /// Where the generated haproxy.cfg listens.
    public struct HAProxy: Hashable, Sendable {
        public var bindAddress: String
        public var primaryPort: Int
        public var replicaPort: Int
        /// 0: no stats listener.
        public var statsPort: Int

        public init(bindAddress: String = "127.0.0.1", primaryPort: Int = 5000, replicaPort: Int = 5001, statsPort: Int = 7000) {
            self.bindAddress = bindAddress
            self.primaryPort = primaryPort
            self.replicaPort = replicaPort
            self.statsPort = statsPort
        }
    }

    /// Files the config stage generates (paths relative to the working directory of the first run).
    public struct Outputs: Hashable, Sendable {
        /// The application's `.env` for Patroni mode (`ENABLE_PATRONI=true`); switched in at cutover.
        public var envFile: String
        /// The application's `.env` for single-node mode (`ENABLE_PATRONI=false`).
        public var envSingleNodeFile: String
        /// The seed's `memory.postgresql` YAML block, Patroni mode.
        public var configYAML: String
        public var haproxyCfg: String
        /// A reference patroni.yml (pgha does not use it).
        public var patroniYML: String

        public init(
            envFile: String = ".pgha/out/app.env", envSingleNodeFile: String = ".pgha/out/app.single-node.env",
            configYAML: String = ".pgha/out/config.yaml", haproxyCfg: String = ".pgha/out/haproxy.cfg",
            patroniYML: String = ".pgha/out/patroni.yml"
        ) {
            self.envFile = envFile
            self.envSingleNodeFile = envSingleNodeFile
            self.configYAML = configYAML
            self.haproxyCfg = haproxyCfg
            self.patroniYML = patroniYML
        }
    }

    /// What a non-interactive run does when a stage fails.
    public enum OnFailure: String, Hashable, Sendable, CaseIterable {
        /// Undo every stage that ran, last first, back to single-node mode.
        case rollback
        /// Stop and keep everything as it is; `pgha resume` retries.
        case stop
    }

    public init(
        version: Int = Playbook.currentVersion, name: String, source: Source, target: Target,
        extensions: Extensions = Extensions(), thresholds: Thresholds = Thresholds(),
        application: Application = Application(), haproxy: HAProxy = HAProxy(),
        outputs: Outputs = Outputs(), sync: Sync = Sync(), cutover: Cutover = Cutover(), complete: Complete = Complete(),
        shadow: Shadow = Shadow(),
        onFailure: OnFailure = .stop
    ) {
        self.version = version
        self.name = name
        self.source = source
        self.target = target
        self.extensions = extensions
        self.thresholds = thresholds
        self.application = application
        self.haproxy = haproxy
        self.outputs = outputs
        self.sync = sync
        self.cutover = cutover
        self.complete = complete
        self.shadow = shadow
        self.onFailure = onFailure
    }

    /// Every credential reference, with the key that holds it (`target.password` → `PATRONI_PASSWORD`).
    public var credentialReferences: [(key: String, reference: EnvironmentReference)] {
        var refs: [(String, EnvironmentReference)] = [("source.password", source.password)]
        if let r = source.adminPassword { refs.append(("source.admin_password", r)) }
        if let r = source.sharedPassword { refs.append(("source.shared_password", r)) }
        if let r = target.apiPassword { refs.append(("target.api_password", r)) }
        refs.append(("target.password", target.password))
        if let r = target.adminPassword { refs.append(("target.admin_password", r)) }
        if let r = cutover.pgbouncer?.adminPassword { refs.append(("cutover.pgbouncer.admin_password", r)) }
        if let r = cutover.wayBackPassword { refs.append(("cutover.way_back.password", r)) }
        if let r = sync.publisherPassword { refs.append(("sync.publisher.password", r)) }
        return refs
    }

    /// The credential references whose variables are not set in `environment`.
    public func missingCredentials(in environment: some EnvironmentProviding) -> [(key: String, reference: EnvironmentReference)] {
        credentialReferences.filter { environment.value(of: $0.reference.variable)?.isEmpty ?? true }
    }

    /// A redactor that masks every credential value `environment` resolves.
    public func secretRedactor(environment: some EnvironmentProviding) -> SecretRedactor {
        SecretRedactor(secrets: credentialReferences.compactMap { environment.value(of: $0.reference.variable) })
    }
}
