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

    /// A host and port, as written `host`, `host:port` or `[v6]:port`.
    public struct HostPort: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port`, with brackets around an IPv6 address.
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

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

    /// How the data moves (`sync:`).
    public struct Sync: Hashable, Sendable {
        public enum Method: String, Hashable, Sendable, CaseIterable {
            /// The cluster is bootstrapped as a Patroni standby cluster of the single node and follows
            /// it by physical streaming replication (same major version).
            case physical
            /// Publication on the single node, subscription on an independently initialised cluster
            /// (sync built; shadow and cutover not yet).
            case logical
        }

        public var method: Method
        /// The physical replication slot on the single node that the standby cluster streams from.
        public var slot: String
        /// WAL the slot may hold back on the single node before the stage stops (a vanished
        /// cluster must not fill the source's disk).
        public var maxWALRetentionBytes: Int64
        /// Replay lag on every member that counts as caught up (default `thresholds.max_lag_bytes`).
        public var caughtUpLagBytes: Int64
        /// How long the stage waits for the cluster to appear (its REST API to answer).
        public var clusterTimeoutSeconds: Double
        /// How long the copy or the catch-up may make no progress before the stage fails.
        public var stallTimeoutSeconds: Double
        /// A command that starts the cluster's members (run by `/bin/sh -c` once the slot exists);
        /// without one, pgha waits for the operator to start them.
        public var startCluster: String?
        /// A command that stops them, run by undo before the slot is dropped.
        public var stopCluster: String?
        /// Longest a hook may run.
        public var hookTimeoutSeconds: Double
        /// Logical method: the role the cluster's subscriptions log in to the single node as
        /// (REPLICATION, and reading every table for the initial copy), and its password. The
        /// password is written into the subscription's connection string on the cluster
        /// (`pg_subscription`, readable by superusers only).
        public var publisherUser: String?
        public var publisherPassword: EnvironmentReference?
        /// Logical method: the publication on the single node (one per database, same name).
        public var publication: String
        /// Logical method: Patroni's `synchronous_mode` switched on while the subscriptions copy
        /// and stream (with their `synchronous_commit = on` the leader's commit waits for a
        /// synchronous standby, so a crash of the whole leader node loses no applied row); put
        /// back as it was after the cutover, or by the sync's undo.
        public var synchronousMode: Bool
        /// Logical method: whether the roles pgha creates on the cluster get the single node's
        /// password hashes (`copy`) or none (`none`, the default: the operator sets them).
        public var rolePasswords: RolePasswords

        public enum RolePasswords: String, Sendable, Hashable, CaseIterable {
            case none
            case copy
        }

        public init(
            method: Method = .physical, slot: String = "pgha_standby", maxWALRetentionBytes: Int64 = 10 << 30,
            caughtUpLagBytes: Int64 = 1 << 20, clusterTimeoutSeconds: Double = 3600, stallTimeoutSeconds: Double = 600,
            startCluster: String? = nil, stopCluster: String? = nil, hookTimeoutSeconds: Double = 600,
            publisherUser: String? = nil, publisherPassword: EnvironmentReference? = nil, publication: String = "pgha_sync",
            synchronousMode: Bool = true, rolePasswords: RolePasswords = .none
        ) {
            self.synchronousMode = synchronousMode
            self.rolePasswords = rolePasswords
            self.publisherUser = publisherUser
            self.publisherPassword = publisherPassword
            self.publication = publication
            self.method = method
            self.slot = slot
            self.maxWALRetentionBytes = maxWALRetentionBytes
            self.caughtUpLagBytes = caughtUpLagBytes
            self.clusterTimeoutSeconds = clusterTimeoutSeconds
            self.stallTimeoutSeconds = stallTimeoutSeconds
            self.startCluster = startCluster
            self.stopCluster = stopCluster
            self.hookTimeoutSeconds = hookTimeoutSeconds
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

    /// How the application moves (`cutover:`).
    public struct Cutover: Hashable, Sendable {
        public enum Method: String, Hashable, Sendable, CaseIterable {
            /// PgBouncer in front of the database: PAUSE, repoint, RELOAD, RESUME (a pause, not errors).
            case pgbouncer
            /// Commands that deploy the Patroni-mode .env and restart the application.
            case hook
        }

        /// PgBouncer's admin console and configuration.
        public struct PgBouncer: Hashable, Sendable {
            public var adminHost: String
            public var adminPort: Int
            public var adminUser: String
            public var adminPassword: EnvironmentReference?
            /// The pgbouncer.ini whose `[databases]` lines pgha rewrites (it must be on this machine).
            public var iniFile: String
            /// Where those lines point after cutover (default: HAProxy's primary listener).
            public var target: HostPort

            public init(adminHost: String, adminPort: Int = 6432, adminUser: String = "pgbouncer", adminPassword: EnvironmentReference? = nil, iniFile: String, target: HostPort) {
                self.adminHost = adminHost
                self.adminPort = adminPort
                self.adminUser = adminUser
                self.adminPassword = adminPassword
                self.iniFile = iniFile
                self.target = target
            }
        }

        public var method: Method
        public var pgbouncer: PgBouncer?
        /// Hook method: the command that deploys the Patroni-mode .env and restarts the application.
        public var switchApplication: String?
        /// Hook method: the command that switches it back (rollback after cutover).
        public var switchBack: String?
        /// Hook method: the application's `.env`, which cutover replaces by `outputs.env_file`
        /// (backed up; rollback restores it).
        public var applicationEnv: String?
        /// Longest catch-up after the freeze; beyond it the single node is unfrozen and the stage fails.
        public var timeoutSeconds: Double
        /// Longest PgBouncer PAUSE may take (a long transaction holds it); then resumed, stage failed.
        public var pauseTimeoutSeconds: Double
        /// Hook method: how long to wait for the application's first writes on the cluster.
        public var applicationWaitSeconds: Double
        public var hookTimeoutSeconds: Double
        /// The role the single node subscribes to the cluster with (the way back) and its password.
        public var wayBackUser: String
        public var wayBackPassword: EnvironmentReference?
        /// Publication, subscription and slot names of the way back (a database suffix is added).
        public var wayBackName: String
        /// Logical method: how far ahead of the single node's value every sequence is set on the
        /// cluster at cutover (values the single node handed out but had not yet committed).
        public var sequenceMargin: Int64

        public init(
            method: Method = .pgbouncer, pgbouncer: PgBouncer? = nil, switchApplication: String? = nil, switchBack: String? = nil,
            applicationEnv: String? = nil, timeoutSeconds: Double = 30, pauseTimeoutSeconds: Double = 10,
            applicationWaitSeconds: Double = 60, hookTimeoutSeconds: Double = 300, wayBackUser: String = "replicator",
            wayBackPassword: EnvironmentReference? = nil, wayBackName: String = "pgha_way_back", sequenceMargin: Int64 = 1000
        ) {
            self.method = method
            self.pgbouncer = pgbouncer
            self.switchApplication = switchApplication
            self.switchBack = switchBack
            self.applicationEnv = applicationEnv
            self.timeoutSeconds = timeoutSeconds
            self.pauseTimeoutSeconds = pauseTimeoutSeconds
            self.applicationWaitSeconds = applicationWaitSeconds
            self.hookTimeoutSeconds = hookTimeoutSeconds
            self.wayBackUser = wayBackUser
            self.wayBackPassword = wayBackPassword
            self.wayBackName = wayBackName
            self.sequenceMargin = sequenceMargin
        }
    }

    /// The end of the migration (`complete:`).
    public struct Complete: Hashable, Sendable {
        /// Soak: how long after cutover the way back stays before it is dropped.
        public var afterSeconds: Double
        /// A command that stops the single node (else it stays, frozen read-only).
        public var stopSource: String?
        public var hookTimeoutSeconds: Double

        public init(afterSeconds: Double = 0, stopSource: String? = nil, hookTimeoutSeconds: Double = 300) {
            self.afterSeconds = afterSeconds
            self.stopSource = stopSource
            self.hookTimeoutSeconds = hookTimeoutSeconds
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

/// A `${VAR}` reference in a playbook: the name of an environment variable, never its value.
public struct EnvironmentReference: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The variable's name, e.g. `PATRONI_PASSWORD`.
    public var variable: String

    public init(_ variable: String) { self.variable = variable }

    /// `${PATRONI_PASSWORD}`.
    public var description: String { "${\(variable)}" }

    /// Parses exactly `${NAME}` (NAME: letters, digits, underscores, not starting with a digit).
    public init?(parsing text: String) {
        guard text.hasPrefix("${"), text.hasSuffix("}"), text.count > 3 else { return nil }
        let name = String(text.dropFirst(2).dropLast())
        guard Self.isValidName(name) else { return nil }
        self.variable = name
    }

    /// True for a POSIX-style variable name.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }

    /// The value from `environment`.
    /// - Throws: `.environmentVariableMissing`, naming the variable and the playbook key, never a value.
    public func resolve(in environment: some EnvironmentProviding, key: String) throws(MigrationError) -> String {
        guard let value = environment.value(of: variable), !value.isEmpty else {
            throw MigrationError(.environmentVariableMissing, "\(key) refers to ${\(variable)}, which is not set; export it before running pgha")
        }
        return value
    }
}

/// Where `${VAR}` values come from.
public protocol EnvironmentProviding: Sendable {
    /// The variable's value, or nil when unset.
    func value(of name: String) -> String?
}

/// The process environment (`ProcessInfo.processInfo.environment`, read at each lookup).
public struct ProcessEnvironment: EnvironmentProviding {
    public init() {}
    public func value(of name: String) -> String? { ProcessInfo.processInfo.environment[name] }
}

/// A fixed set of variables (tests, or an environment merged from several sources by the CLI).
public struct StaticEnvironment: EnvironmentProviding {
    public var variables: [String: String]
    public init(_ variables: [String: String]) { self.variables = variables }
    public func value(of name: String) -> String? { variables[name] }
}
