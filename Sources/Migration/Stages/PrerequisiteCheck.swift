import Verification

/// Every check of the prerequisites gate, by its stable name (scripts, `--json` readers and
/// docs/MIGRATION_TO_HA.md refer to it). The evaluation produces exactly `checks(for:)`, plus
/// `credentials.<member>` for every member in the logical method; the plan lists the same (a test
/// holds the three together).
public enum PrerequisiteCheck: String, CaseIterable, Sendable {
    case sourceReachable = "source.reachable"
    case sourceVersion = "source.version"
    case credentialsSource = "credentials.source"
    case sourceWalLevel = "source.wal_level"
    case sourceReplicationSlots = "source.replication_slots"
    case sourceWalSenders = "source.wal_senders"
    case sourcePrimaryKeys = "source.primary_keys"
    case sourceLongTransactions = "source.long_transactions"
    case sourceLargeObjects = "source.large_objects"
    case sourceUnloggedTables = "source.unlogged_tables"
    // The physical method's: what a standby cluster needs from the single node.
    case sourceReplicationRole = "source.replication_role"
    case sourceHbaReplication = "source.hba_replication"
    case sourceConfigFile = "source.config_file"
    case sourceSlot = "source.slot"
    case clusterRestHosts = "cluster.rest_hosts"
    case clusterMembers = "cluster.members"
    /// The physical method's: the cluster is a standby cluster of the single node.
    case clusterStandby = "cluster.standby"
    case clusterLeader = "cluster.leader"
    case clusterReplicasStreaming = "cluster.replicas_streaming"
    case clusterReplicaLag = "cluster.replica_lag"
    case clusterVersion = "cluster.version"
    case clusterDcs = "cluster.dcs"
    case clusterPool = "cluster.pool"

    /// The name in reports.
    public var name: String { rawValue }

    static let sourceCommon: [PrerequisiteCheck] = [
        .sourceReachable, .sourceVersion, .credentialsSource, .sourceWalLevel, .sourceReplicationSlots, .sourceWalSenders,
        .sourcePrimaryKeys, .sourceLongTransactions, .sourceLargeObjects, .sourceUnloggedTables,
    ]
    static let sourcePhysical: [PrerequisiteCheck] = [.sourceReplicationRole, .sourceHbaReplication, .sourceConfigFile, .sourceSlot]
    /// The physical method's cluster checks (skipped while the cluster does not exist yet).
    static let clusterPhysical: [PrerequisiteCheck] = [.clusterRestHosts, .clusterMembers, .clusterStandby, .clusterVersion]
    static let clusterLogical: [PrerequisiteCheck] = [
        .clusterRestHosts, .clusterMembers, .clusterLeader, .clusterReplicasStreaming, .clusterReplicaLag, .clusterVersion, .clusterDcs, .clusterPool,
    ]

    /// The checks of the gate for `method`, in report order (`credentials.<member>` aside).
    public static func checks(for method: Playbook.Sync.Method) -> [PrerequisiteCheck] {
        switch method {
        case .physical: sourceCommon + sourcePhysical + clusterPhysical
        case .logical: sourceCommon + clusterLogical
        }
    }
}

extension CheckResult {
    static func pass(_ check: PrerequisiteCheck, observed: String, expected: String? = nil) -> CheckResult {
        .pass(check.name, observed: observed, expected: expected)
    }

    static func warn(_ check: PrerequisiteCheck, observed: String, expected: String? = nil, advice: String) -> CheckResult {
        .warn(check.name, observed: observed, expected: expected, advice: advice)
    }

    static func fail(_ check: PrerequisiteCheck, observed: String, expected: String? = nil, advice: String) -> CheckResult {
        .fail(check.name, observed: observed, expected: expected, advice: advice)
    }
}
