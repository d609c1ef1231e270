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
        let t = p.thresholds
        let limits = PrerequisiteLimits(playbook: p)
        let source = Playbook.HostPort(host: p.source.host, port: p.source.port)
        let connections = StageConnections(context)
        let sourceLogins = connections.sourceApplicationLogins + connections.sourceDatabases.compactMap(connections.sourceAdminLogin)
        let memberLogins = [p.target.user] + (p.target.adminUser.map { [$0] } ?? [])
        return [
            "source.reachable, source.version: the single node \(source) answers; PostgreSQL ≥ \(t.minServerVersion)",
            "credentials.source: " + sourceLogins.map { "\($0.user)@\($0.database)" }.joined(separator: ", ") + " log in",
            "source.wal_level: logical (changing it needs a restart of the single node)",
            "source.replication_slots, source.wal_senders: ≥ \(limits.slotsNeeded) free (one per source database); WARN below \(limits.slotsNeeded + limits.slotsMargin)",
            "source.primary_keys: every table in " + connections.sourceDatabases.joined(separator: ", ") + " has a primary key or a replica identity",
            "source.long_transactions: no transaction open longer than \(Int(t.maxTransactionAgeSeconds.rounded())) s (thresholds.max_transaction_age)",
            "source.large_objects: reported (logical replication does not copy them)",
            "cluster.rest_hosts: each of " + p.target.apiHosts.map(\.description).joined(separator: ", ") + " answers /cluster and /patroni",
            "cluster.members: ≥ \(t.minMembers) members running (thresholds.min_members)",
            "cluster.leader: exactly one leader, confirmed not in recovery over a direct connection",
            "cluster.replicas_streaming: every replica streaming (≥ \(max(0, t.minMembers - 1)))",
            "cluster.replica_lag: ≤ \(formatBytes(t.maxLagBytes)) behind the leader (thresholds.max_lag_bytes)",
            "cluster.version: every member's major version ≥ the single node's and ≥ \(t.minServerVersion)",
            "cluster.dcs: every member reached the DCS within Patroni's ttl; leader lock held; not paused; failsafe inactive",
            "cluster.pool: the application's HA pool starts against the cluster and confirms a writable leader",
            "credentials.<member>: " + memberLogins.joined(separator: " and ") + " log in on every member, connected directly",
        ]
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
