import PlainText
import Foundation

/// Stage `prerequisites`: is everything in place to start? Read-only; changes nothing.
///
/// - The single node: reachable, its version, every login accepted, `wal_level = logical` (or the
///   restart that change still needs), free replication slots and WAL senders for the sync stage,
///   every table with a primary key or replica identity, no transaction older than
///   `thresholds.max_transaction_age`, large objects reported.
/// - The Patroni cluster: every configured REST host answers, ≥ `thresholds.min_members` members
///   running, exactly one leader (confirmed not in recovery over a direct connection), every
///   replica streaming within `thresholds.max_lag_bytes`, every member's major version ≥ the single
///   node's and the threshold, the DCS healthy as Patroni sees it (`dcs_last_seen` within the ttl,
///   leader lock held, no pause, no failsafe), the application's HA pool starts, and every login
///   accepted on every member.
///
/// `run` collects the observations (SQL on the single node, REST on every Patroni host, a direct
/// connection to every member) and reports a summary; `gate` evaluates them with the pure
/// `PrerequisitesEvaluation.evaluate` into PASS / WARN / FAIL checks with the value observed and,
/// when not PASS, what to do next. Every server error text passes through the playbook's
/// redactor. docs/MIGRATION_TO_HA.md lists the checks.
public struct PrerequisitesStage: CheckOnlyStage {
    public let stage = MigrationStage.prerequisites
    let cache = ObservationCache<PrerequisiteObservations>()

    public init() {}

    func checks(_ context: StageContext) -> [String] {
        let p = context.playbook
        let method = p.sync.method
        var lines = PrerequisiteCheck.checks(for: method).map { "\($0.name): " + Self.describe($0, context) }
        if method == .logical {
            let memberLogins = [p.target.user] + (p.target.adminUser.map { [$0] } ?? [])
            lines.append("credentials.<member>: " + memberLogins.joined(separator: " and ") + " log in on every member, connected directly")
        }
        return lines
    }

    /// What `check` verifies, with the playbook's values (the plan's list).
    static func describe(_ check: PrerequisiteCheck, _ context: StageContext) -> String {
        let p = context.playbook
        let t = p.thresholds
        let limits = PrerequisiteLimits(playbook: p)
        let connections = StageConnections(context)
        let physical = p.sync.method == .physical
        // The physical method's cluster is started by sync: its checks wait until it exists.
        let once = physical ? "once the cluster exists (skipped before: sync starts it), " : ""
        switch check {
        case .sourceReachable: return "the single node \(Playbook.HostPort(host: p.source.host, port: p.source.port)) answers"
        case .sourceVersion: return "PostgreSQL ≥ \(t.minServerVersion) on the single node"
        case .credentialsSource:
            let logins = connections.sourceApplicationLogins + connections.sourceDatabases.compactMap(connections.sourceAdminLogin)
            return logins.map { "\($0.user)@\($0.database)" }.joined(separator: ", ") + " log in"
        case .sourceWalLevel: return "logical (changing it needs a restart of the single node)"
        case .sourceReplicationSlots, .sourceWalSenders:
            return "≥ \(limits.slotsNeeded) free (\(physical ? "the standby cluster's slot" : "one per source database")); WARN below \(limits.slotsNeeded + limits.slotsMargin)"
        case .sourcePrimaryKeys: return "every table in " + connections.sourceDatabases.joined(separator: ", ") + " has a primary key or a replica identity"
        case .sourceLongTransactions: return "no transaction open longer than \(Int(t.maxTransactionAgeSeconds.rounded())) s (thresholds.max_transaction_age)"
        case .sourceLargeObjects: return physical ? "reported (the physical method carries them; the way back does not)" : "reported (logical replication does not copy them)"
        case .sourceUnloggedTables: return "none: an unlogged table's rows reach the cluster by neither method (ALTER TABLE … SET LOGGED first)"
        case .sourceReplicationRole: return "role \(p.target.replicationUser) exists on the single node with LOGIN and REPLICATION (the standby cluster streams as it)"
        case .sourceHbaReplication:
            return "pg_hba.conf on the single node lets \(p.target.replicationUser) connect for replication from every member (" + p.target.members.map(\.host).joined(separator: ", ") + ")"
        case .sourceConfigFile: return "the single node's data directory holds a postgresql.conf (pg_basebackup copies it to the members)"
        case .sourceSlot: return "slot \(p.sync.slot) does not exist yet (sync creates it) or is an unused physical slot"
        case .clusterRestHosts: return once + "each of " + p.target.apiHosts.map(\.description).joined(separator: ", ") + " answers /cluster and /patroni"
        case .clusterMembers: return once + "≥ \(t.minMembers) members running (thresholds.min_members)"
        case .clusterStandby: return once + "a standby cluster of the single node: no writable leader"
        case .clusterLeader: return "exactly one leader, confirmed not in recovery over a direct connection"
        case .clusterReplicasStreaming: return "every replica streaming (≥ \(max(0, t.minMembers - 1)))"
        case .clusterReplicaLag: return "≤ \(formatBytes(t.maxLagBytes)) behind the leader (thresholds.max_lag_bytes)"
        case .clusterVersion: return once + "every member's major version ≥ the single node's and ≥ \(t.minServerVersion)"
        case .clusterDcs: return "every member reached the DCS within Patroni's ttl; leader lock held; not paused; failsafe inactive"
        case .clusterPool: return "the application's HA pool starts against the cluster and confirms a writable leader"
        }
    }

    func observedAt(_ observations: PrerequisiteObservations) -> Date { observations.observedAt }

    func summary(_ observations: PrerequisiteObservations, _ context: StageContext) -> [String] { Self.summary(observations) }

    func evaluate(_ observations: PrerequisiteObservations, _ context: StageContext) -> [CheckResult] {
        PrerequisitesEvaluation.evaluate(observations, limits: PrerequisiteLimits(playbook: context.playbook))
    }

    /// Looks at the single node and the cluster (concurrently). Never throws: what cannot be
    /// observed is recorded as such and fails its check.
    public func observe(_ context: StageContext) async -> PrerequisiteObservations {
        let connections = StageConnections(context)
        let observedAt = context.clock.now()
        async let source = SourceInspector(connections: connections).observe()
        async let cluster = ClusterInspector(connections: connections).observe()
        return PrerequisiteObservations(observedAt: observedAt, source: await source, cluster: await cluster)
    }

    /// Progress lines for the operator: what was seen, before the gate judges it.
    static func summary(_ o: PrerequisiteObservations) -> [String] {
        var lines: [String] = []
        let s = o.source
        if let version = s.serverVersionNum {
            var line = "single node \(s.address): PostgreSQL \(versionText(version))"
            if let settings = s.settings.value {
                line += ", wal_level \(settings.walLevel), \(settings.maxReplicationSlots - settings.usedReplicationSlots) free slots, \(settings.maxWalSenders - settings.usedWalSenders) free WAL senders"
            }
            lines.append(line + " (\(Int(s.elapsedMs)) ms)")
        } else {
            lines.append("single node \(s.address): no login succeeded (\(Int(s.elapsedMs)) ms)")
        }
        let c = o.cluster
        let answering = c.restHosts.filter(\.answered).count
        let members = c.members.map { m in "\(m.name) \(m.role) \(m.state ?? "?")" }.joined(separator: ", ")
        lines.append("cluster: \(answering) of \(c.restHosts.count) REST hosts answer; members: \(members.isEmpty ? "none seen" : members) (\(Int(c.elapsedMs)) ms)")
        return lines
    }
}
