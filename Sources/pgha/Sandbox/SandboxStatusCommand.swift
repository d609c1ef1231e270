import ArgumentParser
import Foundation
import Sandbox

extension SandboxCommand {
    /// `pgha sandbox status`.
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the single node, etcd and every Patroni member (role, state, lag, timeline).",
            discussion: """
                Exit codes: 0 healthy (single node up, etcd healthy, a leader and two streaming \
                replicas); 2 down (nothing runs, or no sandbox in this directory); 3 degraded \
                (some parts run, not all); 1 the command itself failed.
                """
        )

        @OptionGroup var location: SandboxLocationOptions

        @Flag(help: "Print JSON (stable keys: healthy, leader, streaming_replicas, single_node, etcd, members, problems).")
        var json = false

        func run() async throws {
            let status: SandboxStatus
            do {
                let (configuration, stored) = try await location.configuration()
                // Without sandbox.json there is no sandbox here: the default addresses may belong
                // to another sandbox, whose servers must not be reported as this one's.
                guard stored else {
                    throw CLIFailure(exitCode: 2, message: "no sandbox in \(configuration.baseDir) (no sandbox.json there)",
                                     next: "pgha sandbox up --base-dir \(configuration.baseDir)").report()
                }
                status = await SandboxController(configuration: configuration).status()
            } catch let exit as ExitCode {
                throw exit
            } catch {
                throw failure(error)
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
            } else {
                print(status.renderTable(), terminator: "")
            }
            if status.exitStatus != .healthy { throw ExitCode(status.exitStatus.rawValue) }
        }
    }
}
