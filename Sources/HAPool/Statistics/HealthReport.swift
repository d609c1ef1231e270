import Foundation

/// The seed's `health_check()` result, as a value: printable as a table, JSON, or Prometheus text.
public struct HealthReport: Sendable, Codable {
    public struct DatabaseHealth: Sendable, Codable {
        public var role: String
        public var database: String
        public var host: String
        public var port: Int
        /// `healthy` or `unhealthy`.
        public var status: String
        public var latencyMs: Double?
        public var error: String?
        public var pool: NodePoolUsage?
    }

    public struct MemberHealth: Sendable, Codable {
        public var name: String
        public var host: String?
        public var port: Int?
        public var role: String
        public var state: String
        public var lagBytes: Int64?
        public var timeline: Int?
        /// Serves `readOnly` traffic right now.
        public var inReadRotation: Bool
    }

    public struct ClusterHealth: Sendable, Codable {
        /// The confirmed writable leader.
        public var primary: MemberHealth?
        public var replicas: [MemberHealth]
        public var statistics: PoolStatistics
        public var pools: [String: [NodePoolUsage]]
        public var leaderLatencyMs: Double?
        public var error: String?
    }

    /// `single-node` or `patroni` (the seed's values).
    public var mode: String
    public var healthy: Bool
    public var project: DatabaseHealth?
    public var shared: DatabaseHealth?
    public var haCluster: ClusterHealth?

    enum CodingKeys: String, CodingKey {
        case mode, healthy, project, shared
        case haCluster = "ha_cluster"
    }

    /// JSON with sorted keys (stable for automation).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return (try? encoder.encode(self)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    /// Prometheus text exposition format (version 0.0.4).
    public func prometheusText() -> String {
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in samples {
                let formatted = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
                out += "\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(formatted)\n"
            }
        }
        func label(_ pairs: [(String, String)]) -> String {
            pairs.map { "\($0.0)=\"\($0.1.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"" }.joined(separator: ",")
        }
        metric("pgha_up", "gauge", "1 when the pools can serve writes.", [("mode=\"\(mode)\"", healthy ? 1 : 0)])
        for db in [project, shared].compactMap({ $0 }) {
            metric("pgha_database_up", "gauge", "1 when the database answers.", [(label([("role", db.role), ("database", db.database)]), db.status == "healthy" ? 1 : 0)])
        }
        if let cluster = haCluster {
            let s = cluster.statistics
            let counters: [(String, String, Int)] = [
                ("pgha_failovers_total", "Leader changes completed.", s.failovers),
                ("pgha_topology_refreshes_total", "Successful topology refreshes.", s.topologyRefreshes),
                ("pgha_topology_refresh_failures_total", "Refreshes where no REST host answered.", s.topologyRefreshFailures),
                ("pgha_reads_total", "Read statements served.", s.reads),
                ("pgha_writes_total", "Write statements served.", s.writes),
                ("pgha_errors_total", "Statements that failed.", s.errors),
                ("pgha_retries_total", "Attempts retried.", s.retries),
                ("pgha_outcome_unknown_total", "Statements whose outcome is unknown (never re-run).", s.outcomeUnknown),
                ("pgha_replica_fallbacks_total", "readOnly requests served by the leader.", s.replicaFallbacks),
            ]
            for (name, help, value) in counters { metric(name, "counter", help, [("", Double(value))]) }
            let members = (cluster.primary.map { [$0] } ?? []) + cluster.replicas
            metric("pgha_member_lag_bytes", "gauge", "Replication lag per member (bytes).",
                   members.compactMap { m in m.lagBytes.map { (label([("member", m.name), ("role", m.role)]), Double($0)) } })
            metric("pgha_member_in_read_rotation", "gauge", "1 when the member serves readOnly traffic.",
                   cluster.replicas.map { (label([("member", $0.name)]), $0.inReadRotation ? 1 : 0) })
            var poolSamples: [(String, Double)] = []
            for (database, usages) in cluster.pools.sorted(by: { $0.key < $1.key }) {
                for u in usages {
                    poolSamples.append((label([("database", database), ("node", u.node.description), ("state", "idle")]), Double(u.idle)))
                    poolSamples.append((label([("database", database), ("node", u.node.description), ("state", "in_use")]), Double(u.inUse)))
                }
            }
            metric("pgha_pool_connections", "gauge", "Connections per node pool.", poolSamples)
            if let p50 = s.refreshLatencyP50Ms, let p99 = s.refreshLatencyP99Ms {
                metric("pgha_topology_refresh_latency_ms", "gauge", "Topology refresh latency.", [("quantile=\"0.5\"", p50), ("quantile=\"0.99\"", p99)])
            }
        }
        return out
    }
}

extension DualDatabasePools {
    /// Checks every pool with a round trip and reports the topology (the seed's `health_check()`).
    public func healthCheck() async -> HealthReport {
        switch mode {
        case .singleNode:
            var report = HealthReport(mode: "single-node", healthy: true)
            for pool in singlePools {
                let handle = pool === singlePools.first ? project : shared
                let health = await pool.health(role: handle?.role ?? "shared")
                if health.status != "healthy" { report.healthy = false }
                if handle?.role == "project" { report.project = health } else { report.shared = health }
            }
            return report
        case .patroni:
            guard let pool = patroniPool else { return HealthReport(mode: "patroni", healthy: false) }
            let cluster = await pool.clusterHealth()
            return HealthReport(mode: "patroni", healthy: cluster.primary != nil && cluster.error == nil, haCluster: cluster)
        }
    }
}

extension SingleNodePool {
    func health(role: String) async -> HealthReport.DatabaseHealth {
        let started = ContinuousClock.now
        var health = HealthReport.DatabaseHealth(role: role, database: config.database, host: config.host, port: config.port, status: "healthy", pool: nil)
        do {
            _ = try await query("SELECT 1", readOnly: true)
            health.latencyMs = (ContinuousClock.now - started).asSeconds * 1000
        } catch {
            health.status = "unhealthy"
            health.error = error.description
        }
        health.pool = usage
        return health
    }
}

extension PatroniHAPool {
    /// The cluster as the pool sees it, with a live round trip to the leader.
    public func clusterHealth() async -> HealthReport.ClusterHealth {
        let table = routingTable
        let rotation = Set(table.readers.compactMap(\.address))
        var primary: HealthReport.MemberHealth?
        var replicas: [HealthReport.MemberHealth] = []
        for member in topology?.members ?? [] {
            let role: String
            switch member.role {
            case .leader: role = "leader"
            case .replica: role = "replica"
            case .other(let raw): role = raw
            }
            let health = HealthReport.MemberHealth(
                name: member.name, host: member.address?.host, port: member.address?.port, role: role,
                state: member.state, lagBytes: member.lagBytes, timeline: member.timeline,
                inReadRotation: member.address.map(rotation.contains) ?? false
            )
            if member.role == .leader, member.address == table.writer { primary = health } else { replicas.append(health) }
        }
        var cluster = HealthReport.ClusterHealth(primary: primary, replicas: replicas, statistics: statistics(), pools: poolUsage())
        guard table.writer != nil else {
            // No confirmed leader: do not wait another failover timeout for one.
            cluster.error = executor.noLeaderExplanation
            return cluster
        }
        let started = ContinuousClock.now
        do {
            _ = try await query("SELECT 1")
            cluster.leaderLatencyMs = (ContinuousClock.now - started).asSeconds * 1000
        } catch {
            cluster.error = error.description
        }
        cluster.statistics = statistics()
        return cluster
    }
}
