/// A member's role as Patroni reports it. Unknown values are kept as they are, never fatal.
///
/// `/cluster` says `leader`, `standby_leader`, `sync_standby`, `quorum_standby` or `replica`;
/// `/patroni` says `primary` (4.x) or `master` (3.x and older), `replica`, `standby_leader`,
/// `demoted`, `uninitialized`.
public struct PatroniRole: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Holds the leader lock in a normal cluster (`/cluster`).
    public static let leader = PatroniRole(rawValue: "leader")
    /// A streaming or archive-recovering standby.
    public static let replica = PatroniRole(rawValue: "replica")
    /// A synchronous standby (`synchronous_mode`).
    public static let syncStandby = PatroniRole(rawValue: "sync_standby")
    /// A standby counted in the commit quorum (`synchronous_mode: quorum`, Patroni 4).
    public static let quorumStandby = PatroniRole(rawValue: "quorum_standby")
    /// Holds the leader lock of a standby cluster: replicates from another cluster, takes no writes.
    public static let standbyLeader = PatroniRole(rawValue: "standby_leader")
    /// Legacy name of the primary (Patroni 3.x `/patroni` and older), same as ``primary``.
    public static let master = PatroniRole(rawValue: "master")
    /// The primary as `/patroni` reports it in Patroni 4.x.
    public static let primary = PatroniRole(rawValue: "primary")
    /// A former primary that stepped down (`/patroni`).
    public static let demoted = PatroniRole(rawValue: "demoted")
    /// Not initialised yet (`/patroni`).
    public static let uninitialized = PatroniRole(rawValue: "uninitialized")
    /// What pgha records when the answer had no usable role.
    public static let unknown = PatroniRole(rawValue: "unknown")

    /// Holds the cluster's leader lock: `leader`, `master`, `primary` or `standby_leader`.
    public var isLeader: Bool { self == .leader || self == .master || self == .primary || self == .standbyLeader }

    /// A leader that takes writes (`leader`, `master`, `primary`; not a standby cluster's leader).
    public var isWritableLeader: Bool { self == .leader || self == .master || self == .primary }

    /// A standby of this cluster's leader: `replica`, `sync_standby` or `quorum_standby`.
    public var isReplica: Bool { self == .replica || self == .syncStandby || self == .quorumStandby }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        self.init(rawValue: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// A member's PostgreSQL state as Patroni reports it (`patroni.postgresql.misc.PostgresqlState`,
/// plus the replication states `/cluster` shows for standbys). Unknown values are kept.
public struct PatroniMemberState: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let running = PatroniMemberState(rawValue: "running")
    /// A standby receiving WAL over streaming replication (`/cluster`).
    public static let streaming = PatroniMemberState(rawValue: "streaming")
    /// A standby replaying WAL from the archive (`/cluster`).
    public static let inArchiveRecovery = PatroniMemberState(rawValue: "in archive recovery")
    public static let stopped = PatroniMemberState(rawValue: "stopped")
    public static let starting = PatroniMemberState(rawValue: "starting")
    public static let stopping = PatroniMemberState(rawValue: "stopping")
    public static let crashed = PatroniMemberState(rawValue: "crashed")
    public static let restarting = PatroniMemberState(rawValue: "restarting")
    public static let initializingNewCluster = PatroniMemberState(rawValue: "initializing new cluster")
    public static let initdbFailed = PatroniMemberState(rawValue: "initdb failed")
    public static let runningCustomBootstrapScript = PatroniMemberState(rawValue: "running custom bootstrap script")
    public static let customBootstrapFailed = PatroniMemberState(rawValue: "custom bootstrap failed")
    public static let creatingReplica = PatroniMemberState(rawValue: "creating replica")
    public static let startingAfterCustomBootstrap = PatroniMemberState(rawValue: "starting after custom bootstrap")
    public static let startFailed = PatroniMemberState(rawValue: "start failed")
    public static let restartFailed = PatroniMemberState(rawValue: "restart failed")
    public static let stopFailed = PatroniMemberState(rawValue: "stop failed")
    /// `/patroni` when Patroni could not query its running PostgreSQL.
    public static let unknown = PatroniMemberState(rawValue: "unknown")

    /// PostgreSQL is up and serving: `running`, `streaming` or `in archive recovery`.
    public var isHealthy: Bool { self == .running || self == .streaming || self == .inArchiveRecovery }

    /// A failure Patroni will not get out of by itself.
    public var isFailed: Bool {
        self == .crashed || self == .initdbFailed || self == .customBootstrapFailed || self == .startFailed
            || self == .restartFailed || self == .stopFailed
    }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        self.init(rawValue: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
