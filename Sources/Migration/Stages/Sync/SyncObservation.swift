public import Foundation
public import PGClient

/// One look at the single node and the standby cluster during the physical sync: what the sync
/// monitor decides on. Plain values (tests build them by hand).
public struct SyncObservation: Sendable, Hashable, Codable {
    public var at: Date
    public var source: Probe<SourceSync>
    /// The members `/cluster` lists (empty when no REST host answered).
    public var members: [SyncMember]
    /// Why no REST host answered (nil when one did).
    public var restError: String?

    public init(at: Date, source: Probe<SourceSync>, members: [SyncMember], restError: String? = nil) {
        self.at = at
        self.source = source
        self.members = members
        self.restError = restError
    }
}

/// The single node during sync.
public struct SourceSync: Sendable, Hashable, Codable {
    /// `pg_control_system().system_identifier`.
    public var systemIdentifier: String
    /// `pg_current_wal_lsn()`.
    public var currentLSN: LSN
    /// The sync slot, when it exists.
    public var slot: SlotState?
    /// `pg_stat_progress_basebackup`, while a copy runs.
    public var basebackup: BasebackupProgress?

    public init(systemIdentifier: String, currentLSN: LSN, slot: SlotState?, basebackup: BasebackupProgress? = nil) {
        self.systemIdentifier = systemIdentifier
        self.currentLSN = currentLSN
        self.slot = slot
        self.basebackup = basebackup
    }
}

/// The sync slot on the single node.
public struct SlotState: Sendable, Hashable, Codable {
    public var active: Bool
    /// The walsender using it.
    public var activePID: Int?
    public var restartLSN: LSN?
    /// WAL the slot holds back: `pg_current_wal_lsn() - restart_lsn`.
    public var retainedBytes: Int64

    public init(active: Bool, activePID: Int? = nil, restartLSN: LSN?, retainedBytes: Int64) {
        self.active = active
        self.activePID = activePID
        self.restartLSN = restartLSN
        self.retainedBytes = retainedBytes
    }
}

/// A pg_basebackup in progress on the single node.
public struct BasebackupProgress: Sendable, Hashable, Codable {
    /// `waiting for checkpoint to finish`, `streaming database files`, …
    public var phase: String
    public var streamedBytes: Int64
    /// nil until PostgreSQL has estimated it.
    public var totalBytes: Int64?

    public init(phase: String, streamedBytes: Int64, totalBytes: Int64?) {
        self.phase = phase
        self.streamedBytes = streamedBytes
        self.totalBytes = totalBytes
    }
}

/// One member as `/cluster` lists it, and what a direct connection to it said.
public struct SyncMember: Sendable, Hashable, Codable {
    public var name: String
    /// `standby_leader`, `replica`, `leader`, …
    public var role: String
    /// `streaming`, `running`, `creating replica`, `starting`, …
    public var state: String?
    public var address: String?
    public var timeline: Int?
    /// nil when `/cluster` gives no address; `.failed` while its PostgreSQL does not answer.
    public var server: Probe<MemberSync>?

    public init(name: String, role: String, state: String?, address: String?, timeline: Int? = nil, server: Probe<MemberSync>?) {
        self.name = name
        self.role = role
        self.state = state
        self.address = address
        self.timeline = timeline
        self.server = server
    }

    /// A writable leader: this is not a standby cluster.
    public var isWritableLeader: Bool { role == "leader" || role == "master" || role == "primary" }
    public var isStandbyLeader: Bool { role == "standby_leader" }
    /// Following its upstream by streaming replication.
    public var isStreaming: Bool { state == "streaming" }
}

/// A member's PostgreSQL during sync.
public struct MemberSync: Sendable, Hashable, Codable {
    public var systemIdentifier: String
    /// `pg_last_wal_replay_lsn()`.
    public var replayLSN: LSN?
    /// `pg_last_wal_receive_lsn()`.
    public var receiveLSN: LSN?
    public var inRecovery: Bool

    public init(systemIdentifier: String, replayLSN: LSN?, receiveLSN: LSN? = nil, inRecovery: Bool = true) {
        self.systemIdentifier = systemIdentifier
        self.replayLSN = replayLSN
        self.receiveLSN = receiveLSN
        self.inRecovery = inRecovery
    }
}

/// What the sync monitor holds the observations to (from the playbook).
public struct SyncLimits: Sendable, Hashable {
    /// The members that must stream; when `membersNamed` is false only their number counts.
    public var members: [String]
    public var membersNamed: Bool
    public var minMembers: Int
    public var caughtUpLagBytes: Int64
    public var maxWALRetentionBytes: Int64
    public var clusterTimeoutSeconds: Double
    public var stallTimeoutSeconds: Double
    public var slot: String
    /// `host:port` of the single node, for messages.
    public var sourceAddress: String
    /// The rendered patroni.yml, for messages.
    public var patroniYML: String
    /// Whether a `sync.start_cluster` hook starts the members (else the operator does).
    public var startHook: Bool

    public init(
        members: [String], membersNamed: Bool = true, minMembers: Int, caughtUpLagBytes: Int64, maxWALRetentionBytes: Int64,
        clusterTimeoutSeconds: Double, stallTimeoutSeconds: Double, slot: String, sourceAddress: String, patroniYML: String, startHook: Bool
    ) {
        self.members = members
        self.membersNamed = membersNamed
        self.minMembers = minMembers
        self.caughtUpLagBytes = caughtUpLagBytes
        self.maxWALRetentionBytes = maxWALRetentionBytes
        self.clusterTimeoutSeconds = clusterTimeoutSeconds
        self.stallTimeoutSeconds = stallTimeoutSeconds
        self.slot = slot
        self.sourceAddress = sourceAddress
        self.patroniYML = patroniYML
        self.startHook = startHook
    }

    /// How many members must stream.
    public var requiredCount: Int { membersNamed ? max(members.count, minMembers) : minMembers }
}
