import ArgumentParser
import Foundation
import Sandbox

extension SandboxCommand {
    /// `pgha sandbox down`.
    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every sandbox server (idempotent); --purge also deletes the base directory.",
            discussion: """
                Stops the Patroni members (SIGTERM), etcd, then the single node (pg_ctl stop -m fast), \
                SIGKILLs what is left after --timeout, and checks /proc that no process uses the base \
                directory. Exit codes: 0 everything stopped; 1 processes are still running (listed).
                """
        )

        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: SandboxLocationOptions

        @Flag(help: "Also delete the base directory (data, logs, secrets).")
        var purge = false

        @Option(help: ArgumentHelp("Seconds to wait for each server before SIGKILL.", valueName: "seconds"))
        var timeout = 30

        func validate() throws {
            guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        }

        func run() async throws {
            let global = global
            do {
                let (configuration, _) = try await location.configuration()
                let controller = SandboxController(configuration: configuration)
                let report = try await controller.down(purge: purge, timeout: .seconds(timeout)) { global.progress($0) }
                var line = report.stopped.isEmpty
                    ? "sandbox down: nothing was running"
                    : String(format: "sandbox down in %.1f s (stopped %@)", report.seconds, report.stopped.joined(separator: ", "))
                if !report.killed.isEmpty { line += "; SIGKILLed pids \(report.killed.map(String.init).joined(separator: " "))" }
                if report.purged { line += "; removed \(configuration.baseDir)" }
                print(line)
            } catch {
                throw failure(error)
            }
        }
    }
}
