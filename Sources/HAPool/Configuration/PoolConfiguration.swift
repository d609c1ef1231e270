import Foundation
public import PGClient

/// TLS settings for PostgreSQL connections (libpq's sslmode, sslrootcert, sslcert, sslkey).
public struct PostgresTLS: Sendable, Hashable, Codable {
    public var sslMode: String?
    public var sslRootCert: String?
    public var sslCert: String?
    public var sslKey: String?

    public init(sslMode: String? = nil, sslRootCert: String? = nil, sslCert: String? = nil, sslKey: String? = nil) {
        self.sslMode = sslMode
        self.sslRootCert = sslRootCert
        self.sslCert = sslCert
        self.sslKey = sslKey
    }

    static let validModes: Set<String> = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    /// These settings on a libpq connection configuration: the one place the pool, the single-node
    /// pool and the migration's own logins turn TLS settings into libpq's. A mode libpq does not
    /// know leaves libpq's default (the parsers refuse one first).
    public func apply(to config: inout PGConnectionConfig) {
        config.sslMode = sslMode.flatMap(PGSSLMode.init(rawValue:))
        config.sslRootCert = sslRootCert
        config.sslCert = sslCert
        config.sslKey = sslKey
    }
}

/// TLS and authentication for the Patroni REST API.
public struct RESTAPISettings: Sendable, Hashable {
    public var useTLS: Bool
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    /// Basic-auth user for unsafe endpoints (POST /switchover); reads need none.
    public var user: String?
    public var password: String?
    /// Per-host connect timeout: short, so that one dead host never stalls routing.
    public var connectTimeout: Duration
    /// Per-request total timeout.
    public var requestTimeout: Duration

    public init(
        useTLS: Bool = false, caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil,
        user: String? = nil, password: String? = nil,
        connectTimeout: Duration = .milliseconds(300), requestTimeout: Duration = .milliseconds(1000)
    ) {
        self.useTLS = useTLS
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.user = user
        self.password = password
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
    }
}

/// What a `readOnly` request does when no replica qualifies (all lagging, paused, tagged
/// `noloadbalance`, or none running).
public enum ReplicaFallback: String, Sendable, Hashable, Codable {
    /// Serve the read from the leader (the default: reads never fail because replicas are behind).
    case leader
    /// Fail the request with `HAError.Code.noReplicaAvailable`.
    case fail
}

/// Read-your-writes for a session (`HASession`): after a write, a replica serves reads only once
/// its replay LSN has reached the write's commit LSN.
public enum ReadYourWrites: Sendable, Hashable {
    case off
    /// Use a caught-up replica if there is one, else the leader.
    case leaderFallback
    /// Wait up to the bound for a replica to catch up, then use the leader.
    case wait(Duration)
}

/// Configuration of a `PatroniHAPool`: the seed's `PatroniClusterConfig`.
public struct PatroniClusterConfig: Sendable {
    /// Patroni REST API hosts: `host`, `host:port` or `http(s)://host:port` (PATRONI_HOSTS).
    public var apiHosts: [String]
    /// Default REST API port for hosts given without one (PATRONI_PORT, default 8008).
    public var apiPort: Int
    public var api: RESTAPISettings
    public var database: String
    public var user: String
    /// nil: libpq's PGPASSFILE / ~/.pgpass is used.
    public var password: String?
    public var tls: PostgresTLS
    /// Connections kept open per node (PATRONI_MIN_CONNECTIONS, default 2).
    public var minConnections: Int
    /// Upper bound of connections per node (PATRONI_MAX_CONNECTIONS, default 20).
    public var maxConnections: Int
    /// Periodic topology refresh (PATRONI_HEALTH_CHECK_INTERVAL, default 30 s).
    public var healthCheckInterval: Duration
    /// How long an operation waits for a new leader (PATRONI_FAILOVER_TIMEOUT, default 30 s).
    public var failoverTimeout: Duration
    public var retry: RetryPolicy
    /// A replica whose lag (bytes) exceeds this leaves the read rotation (PATRONI_MAX_REPLICA_LAG).
    public var maxReplicaLagBytes: Int64
    public var replicaFallback: ReplicaFallback
    public var readYourWrites: ReadYourWrites
    /// libpq connect timeout per attempt.
    public var connectTimeout: Duration
    public var applicationName: String
    /// A connection idle longer than this gets a local liveness check (poll + PQconsumeInput, no
    /// round trip) before it is handed out; zero checks every time.
    public var idleCheckAfter: Duration

    public init(
        apiHosts: [String],
        apiPort: Int = 8008,
        api: RESTAPISettings = RESTAPISettings(),
        database: String,
        user: String,
        password: String?,
        tls: PostgresTLS = PostgresTLS(),
        minConnections: Int = 2,
        maxConnections: Int = 20,
        healthCheckInterval: Duration = .seconds(30),
        failoverTimeout: Duration = .seconds(30),
        retry: RetryPolicy = RetryPolicy(),
        maxReplicaLagBytes: Int64 = 1 << 20,
        replicaFallback: ReplicaFallback = .leader,
        readYourWrites: ReadYourWrites = .off,
        connectTimeout: Duration = .seconds(2),
        applicationName: String = "pgha",
        idleCheckAfter: Duration = .seconds(1)
    ) {
        self.apiHosts = apiHosts
        self.apiPort = apiPort
        self.api = api
        self.database = database
        self.user = user
        self.password = password
        self.tls = tls
        self.minConnections = minConnections
        self.maxConnections = maxConnections
        self.healthCheckInterval = healthCheckInterval
        self.failoverTimeout = failoverTimeout
        self.retry = retry
        self.maxReplicaLagBytes = maxReplicaLagBytes
        self.replicaFallback = replicaFallback
        self.readYourWrites = readYourWrites
        self.connectTimeout = connectTimeout
        self.applicationName = applicationName
        self.idleCheckAfter = idleCheckAfter
    }

    /// The same cluster, another database (the `shared` pool of `DualDatabasePools`).
    public func with(database: String) -> PatroniClusterConfig {
        var copy = self
        copy.database = database
        return copy
    }
}

/// One plain PostgreSQL server (single-node mode).
public struct SingleNodeConfig: Sendable {
    public var host: String
    public var port: Int
    public var database: String
    public var user: String
    public var password: String?
    public var tls: PostgresTLS
    public var minConnections: Int
    public var maxConnections: Int
    public var connectTimeout: Duration
    public var applicationName: String

    public init(
        host: String, port: Int = 5432, database: String, user: String, password: String?,
        tls: PostgresTLS = PostgresTLS(), minConnections: Int = 1, maxConnections: Int = 40,
        connectTimeout: Duration = .seconds(5), applicationName: String = "pgha"
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
        self.tls = tls
        self.minConnections = minConnections
        self.maxConnections = maxConnections
        self.connectTimeout = connectTimeout
        self.applicationName = applicationName
    }
}

/// Which mode `DualDatabasePools` runs in.
public enum DatabaseMode: String, Sendable, Hashable, Codable {
    case singleNode = "single-node"
    case patroni = "patroni"
}

/// Everything `DualDatabasePools` needs: the seed's two databases, in either mode.
public struct DualPoolsConfig: Sendable {
    public var mode: DatabaseMode
    /// Single-node mode: the project database.
    public var project: SingleNodeConfig?
    /// Single-node mode: the shared database.
    public var shared: SingleNodeConfig?
    /// Patroni mode: the cluster; `database` is the project database.
    public var patroni: PatroniClusterConfig?
    /// Patroni mode: the shared database's name on the cluster (PATRONI_SHARED_DB); nil = no shared pool.
    public var patroniSharedDatabase: String?

    public init(
        mode: DatabaseMode, project: SingleNodeConfig? = nil, shared: SingleNodeConfig? = nil,
        patroni: PatroniClusterConfig? = nil, patroniSharedDatabase: String? = nil
    ) {
        self.mode = mode
        self.project = project
        self.shared = shared
        self.patroni = patroni
        self.patroniSharedDatabase = patroniSharedDatabase
    }
}
