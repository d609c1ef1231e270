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
    /// Shadow mode's statistics (`DualDatabasePools(config:shadow:)`), when it is on.
    public var shadow: ShadowReadStatistics?

    enum CodingKeys: String, CodingKey {
        case mode, healthy, project, shared
        case haCluster = "ha_cluster"
        case shadow
    }

    /// JSON with sorted keys (stable for automation).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return (try? encoder.encode(self)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
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
            report.shadow = shadowStatistics
            return report
        case .patroni:
            guard let pool = patroniPool else { return HealthReport(mode: "patroni", healthy: false) }
            let cluster = await pool.clusterHealth()
            var report = HealthReport(mode: "patroni", healthy: cluster.primary != nil && cluster.error == nil, haCluster: cluster)
            report.shadow = shadowStatistics
            return report
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
