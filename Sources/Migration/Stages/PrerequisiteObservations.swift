public import Foundation

/// Everything the prerequisites stage looked at, as plain values: what `run` collects and what
/// `PrerequisitesEvaluation.evaluate` turns into checks. No I/O, no secrets (error texts are
/// redacted before they get here).
public struct PrerequisiteObservations: Sendable, Hashable, Codable {
    /// When the observation was taken (the stage context's clock); `dcs_last_seen` is judged
    /// against it.
    public var observedAt: Date
    public var source: SourceObservation
    public var cluster: ClusterObservation

    public init(observedAt: Date, source: SourceObservation, cluster: ClusterObservation) {
        self.observedAt = observedAt
        self.source = source
        self.cluster = cluster
    }
}

// MARK: - The single node

/// The single node: logins, version, settings, and per-database catalog facts.
public struct SourceObservation: Sendable, Hashable, Codable {
    /// `host:port`.
    public var address: String
    /// Every login tried: the application's (per database) and the superuser's.
    public var logins: [LoginObservation]
    /// `server_version_num`, e.g. 150018; nil when no login succeeded.
    public var serverVersionNum: Int?
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    public var serverVersion: String?
    public var settings: Probe<SourceSettings>
    /// Open transactions, oldest first.
    public var transactions: Probe<OpenTransactions>
    /// One entry per source database.
    public var databases: [SourceDatabaseObservation]
    /// What the physical method needs (nil when the playbook's method is logical).
    public var physical: Probe<PhysicalSourceFacts>?
    /// How long the observation took.
    public var elapsedMs: Double

    public init(
        address: String, logins: [LoginObservation], serverVersionNum: Int? = nil, serverVersion: String? = nil,
        settings: Probe<SourceSettings>, transactions: Probe<OpenTransactions>, databases: [SourceDatabaseObservation],
        physical: Probe<PhysicalSourceFacts>? = nil, elapsedMs: Double = 0
    ) {
        self.physical = physical
        self.address = address
        self.logins = logins
        self.serverVersionNum = serverVersionNum
        self.serverVersion = serverVersion
        self.settings = settings
        self.transactions = transactions
        self.databases = databases
        self.elapsedMs = elapsedMs
    }
}

/// The settings logical replication out of the single node depends on.
public struct SourceSettings: Sendable, Hashable, Codable {
    /// `wal_level` in effect.
    public var walLevel: String
    /// `pg_settings.pending_restart` for `wal_level`: a changed value waits for a restart.
    public var walLevelPendingRestart: Bool
    /// The value in the configuration files (`pg_file_settings`), when readable.
    public var walLevelConfigured: String?
    public var maxReplicationSlots: Int
    /// Slots that exist (`pg_replication_slots`).
    public var usedReplicationSlots: Int
    public var maxWalSenders: Int
    /// WAL senders running (`pg_stat_replication`).
    public var usedWalSenders: Int

    public init(walLevel: String, walLevelPendingRestart: Bool = false, walLevelConfigured: String? = nil, maxReplicationSlots: Int, usedReplicationSlots: Int, maxWalSenders: Int, usedWalSenders: Int) {
        self.walLevel = walLevel
        self.walLevelPendingRestart = walLevelPendingRestart
        self.walLevelConfigured = walLevelConfigured
        self.maxReplicationSlots = maxReplicationSlots
        self.usedReplicationSlots = usedReplicationSlots
        self.maxWalSenders = maxWalSenders
        self.usedWalSenders = usedWalSenders
    }
}

/// The source's open transactions.
public struct OpenTransactions: Sendable, Hashable, Codable {
    /// The observing role sees every session's `xact_start` (superuser or `pg_read_all_stats`);
    /// otherwise only its own sessions were visible.
    public var seesAllSessions: Bool
    /// Open transactions (client sessions and prepared transactions), oldest first; at most 20.
    public var oldest: [OpenTransaction]

    public init(seesAllSessions: Bool, oldest: [OpenTransaction]) {
        self.seesAllSessions = seesAllSessions
        self.oldest = oldest
    }
}

/// One open transaction on the source. No query text: it could hold secrets.
public struct OpenTransaction: Sendable, Hashable, Codable {
    /// The backend's PID; nil for a prepared transaction.
    public var pid: Int?
    /// The prepared transaction's GID.
    public var preparedGID: String?
    public var database: String
    public var user: String
    /// `active`, `idle in transaction`, … (`prepared` for a prepared transaction).
    public var state: String
    public var ageSeconds: Double

    public init(pid: Int? = nil, preparedGID: String? = nil, database: String, user: String, state: String, ageSeconds: Double) {
        self.pid = pid
        self.preparedGID = preparedGID
        self.database = database
        self.user = user
        self.state = state
        self.ageSeconds = ageSeconds
    }

    /// `pid 4242 (distributed_postgres_cluster, dpg_cluster, idle in transaction) open 412 s`.
    public var summary: String {
        let who = pid.map { "pid \($0)" } ?? "prepared transaction '\(preparedGID ?? "?")'"
        return "\(who) (\(database), \(user), \(state)) open \(Int(ageSeconds.rounded())) s"
    }
}

/// Catalog facts of one source database.
public struct SourceDatabaseObservation: Sendable, Hashable, Codable {
    public var name: String
    /// Tables logical replication would copy, and those without a primary key or replica identity.
    public var tables: Probe<TableIdentities>
    /// `pg_largeobject_metadata` rows.
    public var largeObjects: Probe<Int>
    /// `schema.table` of the unlogged tables (nil: not looked at). Their rows are not written to
    /// WAL: neither a standby nor a subscription ever receives them.
    public var unloggedTables: Probe<[String]>?

    public init(name: String, tables: Probe<TableIdentities>, largeObjects: Probe<Int>, unloggedTables: Probe<[String]>? = nil) {
        self.name = name
        self.tables = tables
        self.largeObjects = largeObjects
        self.unloggedTables = unloggedTables
    }
}

/// Replica identities of one database's tables.
public struct TableIdentities: Sendable, Hashable, Codable {
    /// Permanent, non-extension tables checked.
    public var checked: Int
    /// `schema.table` of those without a primary key and without `REPLICA IDENTITY FULL` or
    /// `USING INDEX` (or with `REPLICA IDENTITY NOTHING`): UPDATE and DELETE on them fail once
    /// they are published.
    public var withoutIdentity: [String]

    public init(checked: Int, withoutIdentity: [String]) {
        self.checked = checked
        self.withoutIdentity = withoutIdentity
    }
}

// MARK: - The cluster

/// The Patroni cluster as its REST API and its members' PostgreSQL show it.
public struct ClusterObservation: Sendable, Hashable, Codable {
    /// One entry per configured REST API host, in the playbook's order.
    public var restHosts: [RESTHostObservation]
    /// The members of `/cluster`, from the leader's own answer when it gave one, else the first
    /// valid answer; each with its direct connections.
    public var members: [MemberObservation]
    /// The REST host whose `/cluster` answer `members` is.
    public var membersFrom: String?
    /// Patroni's `ttl` from `/config` (the leader key's lifetime), when readable.
    public var ttlSeconds: Int?
    /// The HA pool's start against the cluster: its summary, or why it failed.
    public var pool: Probe<String>
    public var elapsedMs: Double

    public init(restHosts: [RESTHostObservation], members: [MemberObservation], membersFrom: String? = nil, ttlSeconds: Int? = nil, pool: Probe<String>, elapsedMs: Double = 0) {
        self.restHosts = restHosts
        self.members = members
        self.membersFrom = membersFrom
        self.ttlSeconds = ttlSeconds
        self.pool = pool
        self.elapsedMs = elapsedMs
    }
}

/// One configured REST API host: its `/cluster` answer and its own `/patroni` status.
public struct RESTHostObservation: Sendable, Hashable, Codable {
    /// `host:port` (with `https://` when TLS is used).
    public var endpoint: String
    /// Why `/cluster` gave no usable answer; nil when it did.
    public var clusterError: String?
    /// Members claiming the leader role in this host's `/cluster` answer (also from an answer
    /// rejected because two members claimed it).
    public var leaders: [String]
    /// Every member this host's `/cluster` lists.
    public var memberNames: [String]
    /// `/patroni`: the member's own view; nil when it did not answer (see `statusError`).
    public var status: NodeStatusObservation?
    public var statusError: String?

    public init(endpoint: String, clusterError: String? = nil, leaders: [String] = [], memberNames: [String] = [], status: NodeStatusObservation? = nil, statusError: String? = nil) {
        self.endpoint = endpoint
        self.clusterError = clusterError
        self.leaders = leaders
        self.memberNames = memberNames
        self.status = status
        self.statusError = statusError
    }

    /// Answered both `/cluster` and `/patroni`.
    public var answered: Bool { clusterError == nil && statusError == nil }
}

/// A member's `/patroni` answer, reduced to what the checks need.
public struct NodeStatusObservation: Sendable, Hashable, Codable {
    /// The member's name (`patroni.name`).
    public var name: String?
    public var role: String?
    public var state: String?
    /// `server_version`, e.g. 150018.
    public var serverVersion: Int?
    /// Epoch seconds when Patroni last reached the DCS.
    public var dcsLastSeen: Int64?
    public var pause: Bool
    /// The member sees no leader lock.
    public var clusterUnlocked: Bool
    /// Patroni's failsafe mode is active: the DCS is unreachable and the leader keeps running on
    /// the members' word alone.
    public var failsafeActive: Bool

    public init(name: String?, role: String? = nil, state: String? = nil, serverVersion: Int? = nil, dcsLastSeen: Int64? = nil, pause: Bool = false, clusterUnlocked: Bool = false, failsafeActive: Bool = false) {
        self.name = name
        self.role = role
        self.state = state
        self.serverVersion = serverVersion
        self.dcsLastSeen = dcsLastSeen
        self.pause = pause
        self.clusterUnlocked = clusterUnlocked
        self.failsafeActive = failsafeActive
    }
}

/// One member of `/cluster`, with what its own PostgreSQL said over a direct connection.
public struct MemberObservation: Sendable, Hashable, Codable {
    public var name: String
    /// Patroni's role: `leader`, `replica`, `sync_standby`, `standby_leader`, …
    public var role: String
    public var isLeader: Bool
    public var isReplica: Bool
    /// `running`, `streaming`, `stopped`, … (nil when Patroni gave none).
    public var state: String?
    public var host: String?
    public var port: Int?
    /// Bytes behind the leader (`lag`), replicas only; nil when unknown.
    public var lagBytes: Int64?
    /// The member's REST API address from `api_url` (`host:port`).
    public var apiEndpoint: String?
    /// The member's PostgreSQL over a direct connection; nil when `/cluster` gave no address.
    public var server: Probe<MemberServer>?
    /// Logins tried on this member (application role, superuser).
    public var logins: [LoginObservation]

    public init(
        name: String, role: String, isLeader: Bool, isReplica: Bool, state: String?, host: String? = nil, port: Int? = nil,
        lagBytes: Int64? = nil, apiEndpoint: String? = nil, server: Probe<MemberServer>? = nil, logins: [LoginObservation] = []
    ) {
        self.name = name
        self.role = role
        self.isLeader = isLeader
        self.isReplica = isReplica
        self.state = state
        self.host = host
        self.port = port
        self.lagBytes = lagBytes
        self.apiEndpoint = apiEndpoint
        self.server = server
        self.logins = logins
    }

    /// PostgreSQL up and serving as Patroni reports it: `running`, `streaming`, `in archive recovery`.
    public var isRunning: Bool { state == "running" || state == "streaming" || state == "in archive recovery" }

    /// Its PostgreSQL answered a direct connection (a refused login counts: the server is up), or
    /// none was tried. False when every connection was refused or timed out — Patroni's
    /// `/cluster` keeps showing a dead member's last state until its DCS key expires.
    public var postgresAnswers: Bool { logins.isEmpty || logins.contains { $0.error == nil || $0.serverAnswered } }

    /// `host:port` of its PostgreSQL.
    public var address: String { "\(host ?? "?"):\(port.map(String.init) ?? "?")" }
}

/// A member's PostgreSQL, connected to directly.
public struct MemberServer: Sendable, Hashable, Codable {
    /// `server_version_num`.
    public var serverVersionNum: Int
    /// `pg_is_in_recovery()`.
    public var inRecovery: Bool

    public init(serverVersionNum: Int, inRecovery: Bool) {
        self.serverVersionNum = serverVersionNum
        self.inRecovery = inRecovery
    }
}

/// PostgreSQL's major version from `server_version_num` (150018 → 15; 90624, i.e. 9.6, → 9).
func majorVersion(_ versionNum: Int) -> Int { versionNum / 10_000 }

/// `150018` → `15.18`; `90624` → `9.6.24`.
func versionText(_ versionNum: Int) -> String {
    if versionNum >= 100_000 { return "\(versionNum / 10_000).\(versionNum % 10_000)" }
    return "\(versionNum / 10_000).\(versionNum / 100 % 100).\(versionNum % 100)"
}
