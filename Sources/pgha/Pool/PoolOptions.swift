import ArgumentParser
import Foundation
import HAPool
import Verification

/// Where `health`, `verify` and friends read their configuration: the seed's environment variables,
/// a `.env` file, or the seed's YAML block; flags override.
struct PoolOptions: ParsableArguments {
    @Option(name: .customLong("env-file"), help: "A .env file with the seed's variables (real environment variables win).")
    var envFile: String = ".env"

    @Option(name: .customLong("config"), help: "A YAML file with the seed's memory.postgresql block (instead of environment variables).")
    var configFile: String?

    @Option(name: .customLong("hosts"), help: "Override PATRONI_HOSTS (comma-separated host[:port]).")
    var hosts: String?

    @Option(name: .customLong("mode"), help: "Override ENABLE_PATRONI: patroni or single-node.")
    var mode: String?

    @Option(name: .customLong("max-lag"), help: "Override PATRONI_MAX_REPLICA_LAG (bytes or 16MB).")
    var maxLag: String?

    /// The pools configuration, or a usage error naming the variable.
    func load() throws -> DualPoolsConfig {
        CLILogging.bootstrap()
        do {
            var config: DualPoolsConfig
            if let configFile {
                config = try YAMLConfiguration.dualPools(path: configFile)
            } else {
                var env = try EnvironmentConfiguration.load(dotEnvPath: envFile)
                if let mode {
                    guard mode == "patroni" || mode == "single-node" else {
                        throw ValidationError("--mode takes patroni or single-node")
                    }
                    env.variables["ENABLE_PATRONI"] = mode == "patroni" ? "true" : "false"
                }
                if let hosts { env.variables["PATRONI_HOSTS"] = hosts }
                if let maxLag { env.variables["PATRONI_MAX_REPLICA_LAG"] = maxLag }
                config = try env.dualPools()
            }
            return config
        } catch let error as ConfigurationError {
            throw CLIFailure(
                exitCode: ExitCodes.configuration,
                message: "configuration error: \(error)",
                next: "set the variable (see `pgha sandbox env` for an example) or pass --env-file/--config"
            )
        }
    }
}

/// An error the CLI prints as "what happened" + "next command", exiting with a documented code.
struct CLIFailure: Error, CustomStringConvertible {
    var exitCode: Int32
    var message: String
    var next: String?

    var description: String { message }

    /// Prints the failure to stderr and returns the exit code to throw.
    func report() -> ExitCode {
        printError("error: \(message)")
        if let next { printError("next: \(next)") }
        return ExitCode(exitCode)
    }
}

/// Exit codes shared by `health` and `verify` (docs/ERROR_HANDLING.md).
enum ExitCodes {
    /// Everything passed.
    static let ok: Int32 = 0
    /// A check failed (verify), or the cluster is unhealthy (health).
    static let checkFailed: Int32 = 1
    /// The configuration is missing or invalid.
    static let configuration: Int32 = 2
    /// The cluster could not be reached at all (no REST host, no leader, no server).
    static let unreachable: Int32 = 3

    /// The exit code for a pool that could not start: 2 when the login was refused (the
    /// credentials are configuration), 3 otherwise.
    static func forStartFailure(_ error: HAError) -> Int32 {
        error.underlying?.code == .authenticationFailed || HealthCommand.certificateAdvice(error) != nil ? configuration : unreachable
    }
}

import Logging
import Synchronization

/// Log lines go to stderr at `PGHA_LOG_LEVEL` (default `warning`: a command's output is its
/// result, not the pool's chatter). No log line carries a password or DSN.
enum CLILogging {
    private static let done = Mutex(false)

    static func bootstrap() {
        let first = done.withLock { d -> Bool in
            defer { d = true }
            return !d
        }
        guard first else { return }
        let level = ProcessInfo.processInfo.environment["PGHA_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Whether the configured Patroni cluster is a standby cluster (asked once the pool could not find
/// a writable leader): `/cluster` from the configured REST hosts.
enum StandbyClusterProbe {
    static func look(_ config: DualPoolsConfig) async -> StandbyCluster? {
        guard let patroni = config.patroni, let source = try? PatroniTopologySource(config: patroni),
              let answer = try? await source.client.cluster()
        else { return nil }
        return StandbyCluster.of(answer.value)
    }
}
