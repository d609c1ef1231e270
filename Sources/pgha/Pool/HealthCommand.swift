import PlainText
import ArgumentParser
import Foundation
import HAPool
import Verification

/// `pgha health`: the seed's `health_check()` from the command line.
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Show the pools' view of the database: mode, leader, replicas with lag, counters.",
        discussion: """
            Reads the seed's variables (ENABLE_PATRONI, PATRONI_*, PROJECT_DB_*, SHARED_DB_*) from \
            the environment and .env, or the seed's YAML block with --config.
            Exit codes: 0 healthy; 1 unhealthy (a database down, a check failed); \
            2 configuration error, including a refused login or a certificate that does not \
            verify; 3 unreachable (no REST host answers, no leader confirmed).
            """
    )

    @OptionGroup var pool: PoolOptions

    @Flag(help: "Print JSON (the seed's keys: mode, project, shared, ha_cluster.primary, ha_cluster.replicas, ha_cluster.statistics).")
    var json = false

    @Flag(help: "Print Prometheus text format.")
    var prometheus = false

    func run() async throws {
        let config: DualPoolsConfig
        do { config = try pool.load() } catch let failure as CLIFailure { throw failure.report() }
        // Before the pools exist, so their counters register with the Prometheus registry.
        let registry = prometheus ? PrometheusExposition.bootstrap() : nil
        let pools = try DualDatabasePools(config: config)
        var startError: HAError?
        do { try await pools.start(timeout: DualDatabasePools.oneShotStartTimeout) } catch { startError = error }
        let report = await pools.healthCheck()
        await pools.close()
        let standby = startError == nil ? nil : await StandbyClusterProbe.look(config)
        if json {
            print(report.json())
        } else if let registry {
            print(PrometheusExposition.text(report, registry: registry), terminator: "")
        } else {
            print(Self.render(report))
            if let standby {
                print("this is a standby cluster: \(standby.summary)")
            } else if let startError {
                printError("error: \(startError)")
            }
        }
        if let standby {
            // A standby cluster that follows is healthy for what it is (exit 0).
            if !standby.following { throw ExitCode(ExitCodes.checkFailed) }
            return
        }
        if !report.healthy {
            if let startError, !json, !prometheus {
                printError("next: \(Self.nextStep(for: startError))")
            }
            throw ExitCode(startError.map(ExitCodes.forStartFailure) ?? ExitCodes.checkFailed)
        }
    }

    /// The command to run next, by what went wrong.
    static func nextStep(for error: HAError) -> String {
        if let advice = certificateAdvice(error) { return advice }
        if error.underlying?.code == .authenticationFailed {
            return "check PATRONI_USER and PATRONI_PASSWORD (and pg_hba.conf on the members); the login was refused"
        }
        switch error.code {
        case .topologyUnavailable:
            return "check PATRONI_HOSTS and PATRONI_PORT: curl http://HOST:PORT/cluster must answer"
        case .noLeader:
            return "patronictl list (or curl http://HOST:PORT/cluster): is there a leader, is etcd healthy?"
        default:
            return "pgha verify for the individual checks"
        }
    }

    /// The fix for a certificate problem behind `error` (a member's, or in single-node mode the
    /// database's), nil when there is none.
    static func certificateAdvice(_ error: HAError) -> String? {
        if let certificate = error.certificate { return certificate.advice }
        guard let underlying = error.underlying, let problem = CertificateProblem(message: underlying.message) else { return nil }
        return problem.advice(server: error.node?.description ?? "the server", caSetting: "PROJECT_DB_SSLROOTCERT (SHARED_DB_SSLROOTCERT)",
                              caFile: nil, certSetting: "PROJECT_DB_SSLCERT", postgres: true)
    }

    static func render(_ report: HealthReport) -> String {
        var lines = ["mode: \(report.mode)   healthy: \(report.healthy ? "yes" : "NO")", ""]
        if let cluster = report.haCluster {
            var rows: [[String]] = []
            if let p = cluster.primary { rows.append(row(p, rotation: "writes")) }
            for r in cluster.replicas { rows.append(row(r, rotation: r.inReadRotation ? "reads" : "-")) }
            lines.append(TextTable(header: ["MEMBER", "ADDRESS", "ROLE", "STATE", "LAG", "TL", "SERVES"], rows: rows).render())
            let s = cluster.statistics
            lines.append("")
            lines.append("failovers \(s.failovers)  refreshes \(s.topologyRefreshes) (failed \(s.topologyRefreshFailures))  reads \(s.reads)  writes \(s.writes)  errors \(s.errors)  retries \(s.retries)")
            if let latency = cluster.leaderLatencyMs { lines.append(String(format: "leader round trip %.2f ms", latency)) }
            if let error = cluster.error { lines.append("error: \(error)") }
        }
        for db in [report.project, report.shared].compactMap({ $0 }) {
            lines.append("\(db.role): \(db.database) at \(db.host):\(db.port) \(db.status)" + (db.error.map { " (\($0))" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }

    static func row(_ m: HealthReport.MemberHealth, rotation: String) -> [String] {
        [m.name, "\(m.host ?? "?"):\(m.port.map(String.init) ?? "?")", m.role, m.state, m.lagBytes.map { "\($0) B" } ?? "-", m.timeline.map(String.init) ?? "-", rotation]
    }
}
