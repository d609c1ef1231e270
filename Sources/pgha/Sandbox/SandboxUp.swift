import ArgumentParser
import Foundation
import Sandbox

extension SandboxCommand {
    /// `pgha sandbox up`.
    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the sandbox (idempotent) and wait for a leader and two streaming replicas.",
            discussion: """
                Exit codes: 0 up and healthy; 1 a server did not start or the cluster did not \
                become healthy in time (the message names the log file); 4 a prerequisite is \
                missing (the message says what to install); 5 the sandbox was left by a \
                migration's cutover (its single node is frozen): rebuild it with \
                --rebuild-if-spent.
                """
        )

        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: SandboxLocationOptions

        @Option(help: ArgumentHelp("IPv4 address of the single node; members get the next three.", valueName: "ip"))
        var firstAddress = "127.0.0.10"

        @Option(help: ArgumentHelp("PostgreSQL port of the single node and of every member.", valueName: "port"))
        var pgPort = 15432

        @Option(help: ArgumentHelp("Patroni REST API port of every member.", valueName: "port"))
        var restPort = 8008

        @Option(help: ArgumentHelp("etcd client port (the peer port is the next one).", valueName: "port"))
        var etcdPort = 12379

        @Flag(help: "Create a CA and certificates and switch on TLS for PostgreSQL and the REST API.")
        var tls = false

        @Option(help: ArgumentHelp("Seconds to wait for everything to come up.", valueName: "seconds"))
        var timeout = 90

        @Option(help: ArgumentHelp("pgbench -i scale of the single node's pgbench tables (1 ≈ 15 MB, 34 ≈ 500 MB), used when the project database is first created.", valueName: "n"))
        var pgbenchScale = 1

        @Flag(help: "When a migration's cutover left the sandbox (its single node frozen), delete it and start from nothing instead of refusing.")
        var rebuildIfSpent = false

        func validate() throws {
            guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        }

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            let options = SandboxOptions(
                baseDir: location.resolvedBaseDir, firstAddress: firstAddress, pgPort: pgPort, restPort: restPort,
                etcdPort: etcdPort, patroniVenv: SandboxOptions.resolvePatroniVenv(environment: environment),
                postgresBinDir: await SandboxPrerequisites.postgresBinDir(), tls: tls, pgbenchScale: pgbenchScale)
            let global = global
            do {
                let controller = SandboxController(configuration: try options.makeConfiguration())
                let report = try await controller.up(timeout: .seconds(timeout), rebuildIfSpent: rebuildIfSpent) { global.progress($0) }
                let started = report.started.isEmpty ? "everything was already running" : "started " + report.started.joined(separator: ", ")
                print(String(format: "sandbox up in %.1f s (%@)", report.seconds, started))
                print("")
                print(report.status.renderTable(), terminator: "")
                if !report.status.healthy { throw ExitCode(report.status.exitStatus.rawValue) }
            } catch let exit as ExitCode {
                throw exit
            } catch {
                throw failure(error)
            }
        }
    }
}
