import CoreMetrics
import HAPool
import Prometheus

/// `pgha health --prometheus`: the text exposition format from swift-prometheus. The pool's
/// counters (`pgha_*_total`, `pgha_topology_refresh_seconds`) reach the registry through
/// swift-metrics, as they would reach an application's backend; the report's gauges are set here.
enum PrometheusExposition {
    /// Bootstraps this process's `MetricsSystem` with a Prometheus registry; call before the pools
    /// are created (once per process).
    static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// The registry's counters plus the report's gauges, names as docs/POOL.md lists them.
    static func text(_ report: HealthReport, registry: PrometheusCollectorRegistry) -> String {
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            let descriptor = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
            registry.makeGauge(descriptor: descriptor, labels: labels).set(value)
        }
        gauge("pgha_up", "1 when the pools can serve writes.", [("mode", report.mode)], report.healthy ? 1 : 0)
        for db in [report.project, report.shared].compactMap({ $0 }) {
            gauge("pgha_database_up", "1 when the database answers.", [("role", db.role), ("database", db.database)], db.status == "healthy" ? 1 : 0)
        }
        if let cluster = report.haCluster {
            let members = (cluster.primary.map { [$0] } ?? []) + cluster.replicas
            for m in members {
                if let lag = m.lagBytes {
                    gauge("pgha_member_lag_bytes", "Replication lag per member (bytes).", [("member", m.name), ("role", m.role)], Double(lag))
                }
            }
            for r in cluster.replicas {
                gauge("pgha_member_in_read_rotation", "1 when the member serves readOnly traffic.", [("member", r.name)], r.inReadRotation ? 1 : 0)
            }
            for (database, usages) in cluster.pools.sorted(by: { $0.key < $1.key }) {
                for u in usages {
                    let node = u.node.description
                    gauge("pgha_pool_connections", "Connections per node pool.", [("database", database), ("node", node), ("state", "idle")], Double(u.idle))
                    gauge("pgha_pool_connections", "Connections per node pool.", [("database", database), ("node", node), ("state", "in_use")], Double(u.inUse))
                }
            }
            let s = cluster.statistics
            if let p50 = s.refreshLatencyP50Ms, let p99 = s.refreshLatencyP99Ms {
                gauge("pgha_topology_refresh_latency_ms", "Topology refresh latency.", [("quantile", "0.5")], p50)
                gauge("pgha_topology_refresh_latency_ms", "Topology refresh latency.", [("quantile", "0.99")], p99)
            }
        }
        // Shadow mode's counters are kept by the pools themselves (ShadowReadStatistics).
        return registry.emitToString() + (report.shadow?.prometheusText() ?? "")
    }
}
