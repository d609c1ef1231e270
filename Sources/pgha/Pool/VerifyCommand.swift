import ArgumentParser
import Foundation
import HAPool
import Verification

/// `pgha verify`: the seed's verification suite, and the failover drill.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Run the seed's checks (pool initialization, cluster health, write to primary, read from replica, read/write split) and more.",
        discussion: """
            --failover-drill requests a switchover through the REST API while a read and write \
            workload runs, then reports write unavailability, writes lost, duplicated, and \
            written to a non-leader.
            Exit codes: 0 all checks passed; 1 a check failed (or the drill lost, duplicated or \
            misrouted a write); 2 configuration error, including a refused login or a certificate that does not verify; 3 the cluster \
            is unreachable (no REST host answers, no leader confirmed).
            """
    )

    @OptionGroup var pool: PoolOptions

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(name: .customLong("failover-drill"), help: "Switch the leader over under load and count lost/duplicated/misrouted writes.")
    var failoverDrill = false

    @Option(help: "Drill: concurrent writers.")
    var writers = 4

    @Option(help: "Drill: seconds of workload after the new leader is confirmed.")
    var after = 2.0

    @Option(help: ArgumentHelp("Drill: write through this HOST:PORT (HAProxy's primary listener) with plain connections instead of the pool.", valueName: "host:port"))
    var via: String?

    func run() async throws {
        let config: DualPoolsConfig
        do { config = try pool.load() } catch let failure as CLIFailure { throw failure.report() }
        let pools = try DualDatabasePools(config: config)
        if failoverDrill {
            try await drill(pools)
            return
        }
        var verification = SeedVerification(pools: pools)
        verification.startTimeout = DualDatabasePools.oneShotStartTimeout
        var (report, startError) = await verification.runReportingStart()
        await pools.close()
        if startError != nil, let standby = await StandbyClusterProbe.look(config) {
            // Before cutover: no writable leader by design.
            report = standby.verificationReport(startedAt: report.startedAt, mode: report.mode)
            print(json ? report.json() : report.text())
            if !standby.following { throw ExitCode(ExitCodes.checkFailed) }
            return
        }
        print(json ? report.json() : report.text())
        if let startError { throw ExitCode(ExitCodes.forStartFailure(startError)) }
        if !report.allPassed { throw ExitCode(ExitCodes.checkFailed) }
    }

    private func drill(_ pools: DualDatabasePools) async throws {
        guard let pool = pools.patroniPool, let client = pool.patroniClient else {
            throw CLIFailure(exitCode: ExitCodes.configuration, message: "the failover drill needs Patroni mode (ENABLE_PATRONI=true)", next: "eval \"$(pgha sandbox env)\" && pgha verify --failover-drill").report()
        }
        do { try await pools.start(timeout: DualDatabasePools.oneShotStartTimeout) } catch {
            throw CLIFailure(exitCode: ExitCodes.unreachable, message: "\(error)", next: "pgha health").report()
        }
        var options = FailoverDrill.Options()
        options.writers = writers
        options.afterFailover = .milliseconds(Int64(after * 1000))
        if let via {
            let parts = via.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port) else {
                await pools.close()
                throw CLIFailure(exitCode: ExitCodes.configuration, message: "--via expects HOST:PORT (HAProxy's primary listener), got \(via)", next: "pgha verify --failover-drill --via 127.0.0.1:15000").report()
            }
            options.via = NodeAddress(host: String(parts[0]), port: port)
        }
        if !json { print("failover drill: \(writers) writers" + (via.map { " through \($0)" } ?? " through the pool") + ", 2 readers; requesting a switchover…") }
        let report: FailoverDrill.Report
        do {
            report = try await FailoverDrill(pool: pool, client: client, options: options).run(trigger: .switchover)
        } catch {
            await pools.close()
            throw CLIFailure(exitCode: ExitCodes.checkFailed, message: "the drill could not run: \(error)", next: "pgha health").report()
        }
        await pools.close()
        print(json ? report.json() : report.text())
        if !report.passed { throw ExitCode(ExitCodes.checkFailed) }
    }
}
