import ArgumentParser
import Foundation
import Sandbox

/// `pgha sandbox`: the local rehearsal system.
struct SandboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Run a local rehearsal system: single PostgreSQL node, etcd, Patroni clusters on loopback.",
        discussion: """
            Everything listens on loopback and runs as the `postgres` OS user; run as root. \
            See docs/SANDBOX.md.
            """,
        subcommands: [Up.self, Down.self, Status.self, Env.self, StartCluster.self, StopCluster.self, StartHAProxy.self, StopHAProxy.self]
    )
}

/// `--base-dir`, shared by every sandbox subcommand.
struct SandboxLocationOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The sandbox's directory (default: $PGHA_SANDBOX_DIR, else \(SandboxOptions.defaultBaseDir)).",
            valueName: "dir"))
    var baseDir: String?

    /// `--base-dir`, else `PGHA_SANDBOX_DIR`, else the default.
    var resolvedBaseDir: String {
        SandboxOptions.resolveBaseDir(option: baseDir, environment: ProcessInfo.processInfo.environment)
    }

    /// The stored `sandbox.json`, or (when the sandbox was never started) the configuration the
    /// defaults would give.
    func configuration() async throws -> (SandboxConfiguration, stored: Bool) {
        do {
            return (try SandboxConfiguration.load(baseDir: resolvedBaseDir), true)
        } catch let error as SandboxError where error.code == .notSetUp {
            var options = SandboxOptions(baseDir: resolvedBaseDir)
            options.patroniVenv = SandboxOptions.resolvePatroniVenv(environment: ProcessInfo.processInfo.environment)
            options.postgresBinDir = await SandboxPrerequisites.postgresBinDir()
            return (try options.makeConfiguration(), false)
        }
    }

    /// The stored `sandbox.json`; a sandbox never started is an error (`notSetUp`, with the command
    /// that starts it): for the commands that act on a running sandbox.
    func storedConfiguration() async throws -> SandboxConfiguration {
        let (configuration, stored) = try await configuration()
        guard stored else {
            throw SandboxError(.notSetUp, "no sandbox in \(configuration.baseDir)", advice: "start it with `pgha sandbox up`")
        }
        return configuration
    }

    /// `path` made absolute against the current directory (hooks run from the playbook's).
    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}

/// Reports a `SandboxError` as every CLI failure is reported (`CLIFailure`: `error:` what
/// happened, `next:` the advice) and turns it into the documented exit code (docs/EXIT_CODES.md).
func failure(_ error: any Error, code: Int32 = 1) -> ExitCode {
    guard let error = error as? SandboxError else {
        return CLIFailure(exitCode: code, message: "\(error)", next: nil).report()
    }
    let exitCode: Int32
    switch error.code {
    case .missingPrerequisite: exitCode = 4
    case .spent: exitCode = 5
    default: exitCode = code
    }
    return CLIFailure(exitCode: exitCode, message: error.message, next: error.advice).report()
}
