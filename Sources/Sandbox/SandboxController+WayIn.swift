import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The application's way in (PgBouncer in front of the single node, started by `up`) and HAProxy
/// (started with the target cluster from the config stage's generated haproxy.cfg — the file
/// itself: HAProxy runs as root and reads it where the migration wrote it).
extension SandboxController {
    static let pgbouncerBinary = "/usr/sbin/pgbouncer"
    static let haproxyBinary = "/usr/sbin/haproxy"

    /// Starts PgBouncer when it does not run. Its ini is written only then, from the before-state
    /// (pointing at the single node): a running PgBouncer that a migration repointed is left alone.
    func bringUpPgBouncer(
        postgres: OSUser, passwords: Passwords, deadline: ContinuousClock.Instant, progress: @escaping @Sendable (String) -> Void
    ) async throws -> [String] {
        let b = configuration.pgbouncer
        let pidFile = pidFile("pgbouncer")
        var started: [String] = []
        if pidFile.livePID(marker: b.configFile) == nil {
            try FileSystem.makeDirectory(b.dir, mode: 0o755, owner: postgres)
            try FileSystem.writeFile(b.configFile, contents: SandboxRendering.pgbouncerINI(configuration), mode: 0o644, owner: postgres)
            try FileSystem.writeFile(b.authFile, contents: SandboxRendering.pgbouncerAuthFile(configuration, passwords), mode: 0o600, owner: postgres)
            progress("starting PgBouncer \(b.host):\(b.port) (transaction pooling, in front of the single node)")
            let pid = try await Processes.launchDetached(
                Self.pgbouncerBinary, [b.configFile], as: postgres, environment: postgresEnvironment,
                workingDirectory: b.dir, logFile: logFile("pgbouncer"))
            try pidFile.write(pid)
            started.append("PgBouncer")
        }
        try await waitUntil(deadline: deadline, what: "PgBouncer \(b.host):\(b.port)", log: logFile("pgbouncer")) {
            guard let pid = pidFile.read(), Processes.isAlive(pid) else { throw DiedError() }
            guard let output = try? await Processes.run(
                binary("pg_isready"), ["-h", b.host, "-p", String(b.port), "-t", "1"],
                environment: postgresEnvironment, timeout: .seconds(5))
            else { return false }
            return output.succeeded
        }
        return started
    }

    /// Starts HAProxy from `config` (as root, so it reads the generated file where it is) unless it
    /// runs with that file already; one with another file is stopped first.
    /// - Returns: whether it was started.
    @discardableResult
    func startHAProxy(config: String, progress: @escaping @Sendable (String) -> Void) async throws -> Bool {
        let pidFile = pidFile("haproxy")
        // Running from this config: nothing to do. From another one (the config stage of another
        // rehearsal), stop it first: `livePID(marker:)` would forget its PID file, and the old
        // HAProxy would keep listening on the same port beside the new one (SO_REUSEPORT), taking
        // a share of the connections to members it no longer checks correctly.
        if let pid = pidFile.read(), Processes.isAlive(pid), Processes.commandLine(pid).contains(where: { $0.contains(config) }) { return false }
        _ = await stopHAProxy()
        let check = try await Processes.run(Self.haproxyBinary, ["-c", "-q", "-f", config], environment: Processes.minimalEnvironment(home: "/"), timeout: .seconds(10))
        guard check.succeeded else {
            throw SandboxError(.invalidConfiguration, "haproxy -c rejects \(config): \(Self.redacted(check.stderr + check.stdout))")
        }
        guard let root = OSUser.lookup("root") else { throw SandboxError(.missingPrerequisite, "OS user root not found") }
        progress("starting HAProxy from \(config)")
        let pid = try await Processes.launchDetached(
            Self.haproxyBinary, ["-db", "-f", config], as: root, environment: Processes.minimalEnvironment(home: "/"),
            workingDirectory: configuration.runDir, logFile: logFile("haproxy"))
        try pidFile.write(pid)
        try await Task.sleep(for: .milliseconds(300))
        guard Processes.isAlive(pid) else {
            throw SandboxError(.startFailed, "HAProxy exited right after starting", advice: "read \(logFile("haproxy"))\(Self.logTail(logFile("haproxy")))")
        }
        return true
    }

    /// Stops HAProxy (SIGTERM, then SIGKILL). Returns its PID when it ran.
    func stopHAProxy() async -> pid_t? {
        let pidFile = pidFile("haproxy")
        guard let pid = pidFile.read(), Processes.isAlive(pid), Processes.commandLine(pid).contains(where: { $0.hasSuffix("haproxy") }) else {
            pidFile.remove()
            return nil
        }
        Processes.signal(pid, SIGTERM)
        if !(await Processes.waitForExit(pid, timeout: .seconds(5))) { Processes.signal(pid, SIGKILL) }
        pidFile.remove()
        return pid
    }
}

extension SandboxController {
    /// `pgha sandbox start-haproxy`: HAProxy alone, from the config stage's haproxy.cfg, in front
    /// of whichever cluster that file names (the logical rehearsal's: the independent node1–node3).
    /// - Returns: whether it was started (false: it runs with that file already).
    public func startHAProxyAlone(config: String, progress: @escaping @Sendable (String) -> Void) async throws -> Bool {
        guard FileSystem.exists(config) else {
            throw SandboxError(.invalidConfiguration, "cannot read \(config)", advice: "run the migration's config stage first (`pgha run PLAYBOOK --until config`)")
        }
        return try await startHAProxy(config: config, progress: progress)
    }

    /// `pgha sandbox stop-haproxy`: the PID it stopped, nil when none ran.
    public func stopHAProxyAlone() async -> Int32? {
        await stopHAProxy().map { Int32($0) }
    }
}
