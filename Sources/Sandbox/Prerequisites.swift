import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One thing the sandbox needs that is not there, with the command that installs it.
public struct MissingPrerequisite: Sendable, Equatable, CustomStringConvertible {
    /// What is missing (a path or a user name).
    public var what: String
    /// How to install it.
    public var install: String

    public var description: String { "\(what) is missing: \(install)" }
}

/// Checks for the programs, the Patroni venv and the `postgres` user before anything starts.
public enum SandboxPrerequisites {
    /// The command that installs everything at once.
    public static let installEverything = "run `scripts/install-deps` (as root) to install everything at once"

    /// What is missing for `configuration` (empty when everything is there). Pure file checks.
    public static func missing(for configuration: SandboxConfiguration) -> [MissingPrerequisite] {
        var missing: [MissingPrerequisite] = []
        let bin = configuration.postgresBinDir
        for tool in ["initdb", "postgres", "pg_ctl", "psql", "pg_isready", "pg_basebackup", "pg_rewind"] {
            let path = (bin as NSString).appendingPathComponent(tool)
            if !FileSystem.isExecutable(path) {
                missing.append(.init(what: path, install: "apt-get install -y postgresql-15 postgresql-contrib"))
            }
        }
        if !FileSystem.isExecutable("/usr/bin/etcd") {
            missing.append(.init(what: "/usr/bin/etcd", install: "apt-get install -y etcd-server"))
        }
        if !FileSystem.isExecutable(SandboxController.pgbouncerBinary) {
            missing.append(.init(what: SandboxController.pgbouncerBinary, install: "apt-get install -y pgbouncer"))
        }
        if !FileSystem.isExecutable(SandboxController.haproxyBinary) {
            missing.append(.init(what: SandboxController.haproxyBinary, install: "apt-get install -y haproxy"))
        }
        if !FileSystem.isExecutable("/usr/bin/etcdctl") {
            missing.append(.init(what: "/usr/bin/etcdctl", install: "apt-get install -y etcd-client"))
        }
        let patroni = (configuration.patroniVenv as NSString).appendingPathComponent("bin/patroni")
        if !FileSystem.isExecutable(patroni) {
            let venv = configuration.patroniVenv
            missing.append(.init(
                what: patroni,
                install: "apt-get install -y python3-venv && /usr/bin/python3 -m venv \(venv) && \(venv)/bin/pip install 'patroni[etcd]' psycopg2-binary"))
        }
        for tool in [Processes.setpriv, Processes.setsid] where !FileSystem.isExecutable(tool) {
            missing.append(.init(what: tool, install: "apt-get install -y util-linux"))
        }
        if OSUser.lookup("postgres") == nil {
            missing.append(.init(what: "OS user postgres", install: "apt-get install -y postgresql-15 (creates the user)"))
        }
        if configuration.tls != nil, !FileSystem.isExecutable(SandboxTLS.openssl) {
            missing.append(.init(what: SandboxTLS.openssl, install: "apt-get install -y openssl"))
        }
        return missing
    }

    /// Throws `.missingPrerequisite` listing everything missing, or `.invalidConfiguration` when
    /// not run as root (the servers are started as `postgres` with setpriv, which needs root).
    public static func check(_ configuration: SandboxConfiguration) throws {
        let missing = missing(for: configuration)
        if !missing.isEmpty {
            let lines = missing.map { "  - \($0.what): \($0.install)" }.joined(separator: "\n")
            throw SandboxError(
                .missingPrerequisite, "the sandbox cannot start, prerequisites are missing:\n\(lines)",
                advice: installEverything)
        }
        if getuid() != 0 {
            throw SandboxError(
                .invalidConfiguration, "the sandbox must be started as root (servers run as `postgres` via setpriv)")
        }
    }

    /// `pg_config --bindir`, or `/usr/lib/postgresql/15/bin` when pg_config is not installed.
    public static func postgresBinDir() async -> String {
        let fallback = "/usr/lib/postgresql/15/bin"
        guard FileSystem.isExecutable("/usr/bin/pg_config"),
              let output = try? await Processes.run(
                  "/usr/bin/pg_config", ["--bindir"], environment: Processes.minimalEnvironment(home: "/"),
                  timeout: .seconds(10)),
              output.succeeded
        else { return fallback }
        let dir = output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return dir.isEmpty ? fallback : dir
    }
}
