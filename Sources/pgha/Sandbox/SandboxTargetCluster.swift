import ArgumentParser
import Foundation
import Sandbox

extension SandboxCommand {
    /// `pgha sandbox start-cluster`.
    struct StartCluster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "start-cluster",
            abstract: "Start the migration's target cluster (ha1–ha3) from the config stage's patroni.yml.",
            discussion: """
                What an operator does on three machines, here on loopback: each member gets a copy of \
                the rendered patroni.yml and a file of its own (name, addresses, data directory, \
                passwords), and Patroni starts from the two. When no member runs, every data directory \
                and the scope's keys in etcd are removed first (a standby cluster must start empty). \
                Returns once every member's REST API answers; the migration's sync stage watches the \
                copy. Idempotent when the members already run with the same file. Exit codes: 0 \
                started (or already running); 1 it could not start (the message names the log); 4 a \
                prerequisite is missing.
                """
        )

        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: SandboxLocationOptions

        @Option(name: .customLong("patroni-yml"), help: ArgumentHelp("The patroni.yml the config stage rendered.", valueName: "file"))
        var patroniYML: String

        @Option(help: ArgumentHelp("Seconds to wait for the members' REST APIs.", valueName: "seconds"))
        var timeout = 60

        @Option(name: .customLong("haproxy-cfg"), help: ArgumentHelp("Also start HAProxy from this haproxy.cfg (the config stage's).", valueName: "file"))
        var haproxyCfg: String?

        @Option(name: .customLong("member"), help: ArgumentHelp("Start only this member (repeatable; the others stay as they are).", valueName: "name"))
        var members: [String] = []

        func validate() throws {
            guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        }

        func run() async throws {
            let global = global
            do {
                let controller = SandboxController(configuration: try await location.storedConfiguration())
                let report = try await controller.startTargetCluster(
                    patroniYML: SandboxLocationOptions.absolute(patroniYML), haproxyConfig: haproxyCfg.map(SandboxLocationOptions.absolute),
                    only: members.isEmpty ? nil : members, timeout: .seconds(timeout)) { global.progress($0) }
                if report.started.isEmpty {
                    print("target cluster \(report.scope): already running with this patroni.yml")
                } else {
                    print(String(format: "target cluster %@: started %@ in %.1f s (REST APIs answer; the copy runs on)", report.scope, report.started.joined(separator: ", "), report.seconds))
                }
            } catch {
                throw failure(error)
            }
        }
    }

    /// `pgha sandbox stop-cluster`.
    struct StopCluster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stop-cluster",
            abstract: "Stop the migration's target cluster (ha1–ha3) and HAProxy; --purge also empties the cluster.",
            discussion: "Exit codes: 0 stopped (or nothing ran); 1 it could not be stopped."
        )

        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: SandboxLocationOptions

        @Flag(help: "Also remove the members' data directories and the scope's keys in etcd.")
        var purge = false

        @Option(help: ArgumentHelp("Seconds to wait for each member before SIGKILL.", valueName: "seconds"))
        var timeout = 30

        func run() async throws {
            let global = global
            do {
                let (configuration, stored) = try await location.configuration()
                guard stored else {
                    print("target cluster: nothing to stop (no sandbox in \(configuration.baseDir))")
                    return
                }
                let stopped = try await SandboxController(configuration: configuration)
                    .stopTargetCluster(purge: purge, timeout: .seconds(timeout)) { global.progress($0) }
                print("target cluster: " + (stopped.isEmpty ? "nothing was running" : "stopped " + stopped.joined(separator: ", ")) + (purge ? "; emptied" : ""))
            } catch {
                throw failure(error)
            }
        }
    }
}

extension SandboxCommand {
    /// `pgha sandbox start-haproxy`.
    struct StartHAProxy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "start-haproxy",
            abstract: "Start HAProxy alone from the config stage's haproxy.cfg (the logical rehearsal's way to the cluster).",
            discussion: """
                start-cluster starts HAProxy with ha1–ha3; the logical method migrates into the \
                sandbox's running cluster (node1–node3), which only needs HAProxy in front of it. One \
                started from another file is stopped first. Exit codes: 0 started (or already running \
                with this file); 1 it could not start; 2 the file is missing.
                """
        )

        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: SandboxLocationOptions

        @Option(name: .customLong("haproxy-cfg"), help: ArgumentHelp("The haproxy.cfg the config stage rendered.", valueName: "file"))
        var haproxyCfg: String

        func run() async throws {
            let global = global
            do {
                let path = SandboxLocationOptions.absolute(haproxyCfg)
                let started = try await SandboxController(configuration: try await location.storedConfiguration()).startHAProxyAlone(config: path) { global.progress($0) }
                print(started ? "HAProxy started from \(path)" : "HAProxy: already running with \(path)")
            } catch {
                throw failure(error)
            }
        }
    }

    /// `pgha sandbox stop-haproxy`.
    struct StopHAProxy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stop-haproxy",
            abstract: "Stop the sandbox's HAProxy (idempotent).",
            discussion: "Exit codes: 0 stopped (or none ran)."
        )

        @OptionGroup var global: GlobalOptions
        @OptionGroup var location: SandboxLocationOptions

        func run() async throws {
            do {
                let (configuration, stored) = try await location.configuration()
                guard stored else {
                    print("HAProxy: nothing to stop (no sandbox in \(configuration.baseDir))")
                    return
                }
                let pid = await SandboxController(configuration: configuration).stopHAProxyAlone()
                print(pid.map { "HAProxy stopped (pid \($0))" } ?? "HAProxy: none was running")
            } catch {
                throw failure(error)
            }
        }
    }
}
