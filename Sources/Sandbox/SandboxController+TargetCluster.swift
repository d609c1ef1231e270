import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The physical rehearsal's target cluster (`ha1`…`ha3`): started from the config stage's rendered
/// patroni.yml, as an operator would start it on three machines.
///
/// Each member gets a configuration directory `ha/<name>/conf.d/` holding `00-patroni.yml`, a byte
/// for byte copy of the rendered file (the copy an operator makes to each machine; Patroni runs as
/// `postgres`, which cannot read the migration's 0700 state directory), and `10-member.yml` with
/// what only that member knows: its name, addresses, data and socket directories, the passwords.
/// Patroni merges the files of the directory in name order.
extension SandboxController {
    /// What `startTargetCluster` did.
    public struct TargetStartReport: Sendable {
        public var seconds: Double
        /// Members started by this call (empty: the cluster already ran with this file).
        public var started: [String]
        /// The scope named by the rendered file.
        public var scope: String
        /// Whether data directories and the scope's DCS keys from an earlier cluster were removed.
        public var wiped: Bool
    }

    var targetMembers: [SandboxConfiguration.Member] { configuration.target.members }

    /// Starts every target member from `patroniYML` and waits until each REST API answers (not for
    /// the copy: the migration's sync stage watches that). When none runs, every data directory and
    /// the scope's keys in etcd are removed first: a standby cluster must start empty and new. When
    /// some run with this very file, only the others are started (as they are); when all do,
    /// nothing happens.
    ///
    /// - Throws: `.notSetUp` when the single node or etcd is not up (`pgha sandbox up` first),
    ///   `.invalidConfiguration` for an unreadable file or members running with another file,
    ///   `.startFailed`, `.timeout`.
    /// - Parameter only: start just these members (the others stay as they are; drills start a
    ///   cluster in steps). Nil: all of them.
    /// - Parameter haproxyConfig: the config stage's haproxy.cfg: HAProxy is started from it too
    ///   (routing to whichever member Patroni's `/primary` names: nobody until the cutover promotes
    ///   the cluster).
    public func startTargetCluster(
        patroniYML: String, haproxyConfig: String? = nil, only: [String]? = nil, timeout: Duration = .seconds(60),
        progress: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> TargetStartReport {
        let clock = ContinuousClock()
        let start = clock.now
        guard let postgres = postgresUser else {
            throw SandboxError(.missingPrerequisite, "OS user postgres not found", advice: SandboxPrerequisites.installEverything)
        }
        guard pidFile("single").livePID(marker: configuration.single.dataDir) != nil,
              pidFile("etcd").livePID(marker: configuration.etcd.dataDir) != nil else {
            throw SandboxError(.notSetUp, "the single node and etcd must run before the target cluster",
                               advice: "start them with `pgha sandbox up --base-dir \(configuration.baseDir)`")
        }
        guard let text = FileSystem.readText(patroniYML) else {
            throw SandboxError(.invalidConfiguration, "cannot read \(patroniYML)",
                               advice: "run the migration's config stage first (`pgha run PLAYBOOK --until config`)")
        }
        guard let scope = Self.scope(inPatroniYAML: text) else {
            throw SandboxError(.invalidConfiguration, "\(patroniYML) names no `scope:`: it is not a patroni.yml rendered by pgha")
        }
        if let only, let unknown = only.first(where: { name in !targetMembers.contains { $0.name == name } }) {
            throw SandboxError(.invalidConfiguration, "no target member named \(unknown) (the members are \(targetMembers.map(\.name).joined(separator: ", ")))")
        }
        let lock = try await FileLock.acquire(lockFile, timeout: timeout)
        defer { lock.unlock() }
        let wanted = targetMembers.filter { only?.contains($0.name) ?? true }
        if let haproxyConfig {
            guard FileSystem.exists(haproxyConfig) else {
                throw SandboxError(.invalidConfiguration, "cannot read \(haproxyConfig)", advice: "run the migration's config stage first")
            }
            try await startHAProxy(config: haproxyConfig, progress: progress)
        }

        let running = targetMembers.filter { pidFile($0.name).livePID(marker: $0.configFile) != nil }
        var toStart = wanted
        if !running.isEmpty {
            guard running.allSatisfy({ FileSystem.readText(renderedCopy(of: $0)) == text }) else {
                throw SandboxError(
                    .invalidConfiguration,
                    "target members \(running.map(\.name).joined(separator: ", ")) run with another patroni.yml",
                    advice: "stop them first: `pgha sandbox stop-cluster --purge --base-dir \(configuration.baseDir)`")
            }
            // Some members run with this file (one crashed, say): start the others as they are;
            // they rejoin the cluster (pg_rewind or a new copy, as Patroni decides).
            toStart = wanted.filter { member in !running.contains { $0.name == member.name } }
            if toStart.isEmpty {
                return TargetStartReport(seconds: Self.seconds(clock.now - start), started: [], scope: scope, wiped: false)
            }
        } else {
            // A new cluster: empty data directories, no trace of the scope in the DCS.
            try await wipeTarget(scope: scope, postgres: postgres, progress: progress)
        }
        let passwords = try SandboxSecrets.load(configuration)
        var started: [String] = []
        for member in toStart {
            try FileSystem.makeDirectory(member.dir, mode: 0o700, owner: postgres)
            try FileSystem.makeDirectory(member.dataDir, mode: 0o700, owner: postgres)
            try FileSystem.makeDirectory(member.configFile, mode: 0o700, owner: postgres)
            try FileSystem.writeFile(renderedCopy(of: member), contents: text, mode: 0o600, owner: postgres)
            try FileSystem.writeFile(
                (member.configFile as NSString).appendingPathComponent("10-member.yml"),
                contents: SandboxRendering.targetMemberYAML(configuration, member: member, passwords: passwords),
                mode: 0o600, owner: postgres)
            progress("starting Patroni \(member.name) (\(member.host):\(member.pgPort), REST \(member.restPort)) from \(patroniYML)")
            let pid = try await Processes.launchDetached(
                patroniBinary, [member.configFile], as: postgres, environment: postgresEnvironment,
                workingDirectory: member.dir, logFile: logFile(member.name))
            try pidFile(member.name).write(pid)
            started.append(member.name)
        }

        // Wait for every REST API (Patroni answers while the copy runs).
        let observer = PatroniClusterObserver(configuration: configuration, cluster: configuration.target)
        let deadline = start.advanced(by: timeout)
        while true {
            for member in toStart {
                guard let pid = pidFile(member.name).read(), Processes.isAlive(pid) else {
                    throw SandboxError(.startFailed, "Patroni \(member.name) exited", advice: "read \(logFile(member.name))\(Self.logTail(logFile(member.name)))")
                }
            }
            if let observed = await observer.observe(), toStart.allSatisfy({ observed.answering.contains($0.name) }) { break }
            if clock.now >= deadline {
                throw SandboxError(.timeout, "the target members' REST APIs did not answer in time",
                                   advice: "read " + targetMembers.map { logFile($0.name) }.joined(separator: ", "))
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        return TargetStartReport(seconds: Self.seconds(clock.now - start), started: started, scope: scope, wiped: running.isEmpty)
    }

    /// Stops every target member (SIGTERM to Patroni, which stops its PostgreSQL; SIGKILL after
    /// `timeout`; a postmaster left behind is stopped by its data directory). `purge` also removes
    /// the data directories and the scope's keys in etcd.
    /// - Returns: the members that were running.
    @discardableResult
    public func stopTargetCluster(purge: Bool = false, timeout: Duration = .seconds(30), progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> [String] {
        let lock = FileSystem.exists(configuration.runDir) ? try await FileLock.acquire(lockFile, timeout: timeout) : nil
        defer { lock?.unlock() }
        var stopped = await stopMembers(targetMembers, timeout: timeout, progress: progress).stopped
        if let pid = await stopHAProxy() {
            progress("stopped HAProxy (pid \(pid))")
            stopped.append("HAProxy")
        }
        if purge, let postgres = postgresUser {
            let scope = targetMembers.lazy.compactMap { FileSystem.readText(self.renderedCopy(of: $0)) }.compactMap(Self.scope(inPatroniYAML:)).first
            try await wipeTarget(scope: scope ?? configuration.target.scope, postgres: postgres, progress: progress)
        }
        return stopped
    }

    /// SIGTERM to each member's Patroni, all at once; SIGKILL after `timeout`; then any postmaster
    /// still running in a member's data directory. Returns the members that ran and the PIDs that
    /// needed SIGKILL.
    func stopMembers(
        _ members: [SandboxConfiguration.Member], timeout: Duration, progress: @escaping @Sendable (String) -> Void
    ) async -> (stopped: [String], killed: [pid_t]) {
        var killed: [pid_t] = []
        var signalled: [(String, pid_t)] = []
        for member in members {
            if let pid = pidFile(member.name).livePID(marker: member.configFile) {
                progress("stopping Patroni \(member.name) (pid \(pid))")
                Processes.signal(pid, SIGTERM)
                signalled.append((member.name, pid))
            }
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        for (name, pid) in signalled {
            if !(await Processes.waitForExit(pid, timeout: max(.zero, deadline - clock.now))) {
                Processes.signal(pid, SIGKILL)
                killed.append(pid)
            }
            pidFile(name).remove()
        }
        // A killed Patroni leaves its postmaster behind: stop those by their data directory.
        for member in members {
            killed += await stopPostmaster(dataDir: member.dataDir, timeout: timeout)
        }
        return (signalled.map(\.0), killed)
    }

    /// Empties every target data directory and deletes `/service/<scope>/` in etcd.
    func wipeTarget(scope: String, postgres: OSUser, progress: @escaping @Sendable (String) -> Void) async throws {
        for member in targetMembers where FileSystem.exists(member.dataDir) {
            try FileSystem.remove(member.dataDir)
        }
        let output = try await Processes.run(
            "/usr/bin/etcdctl",
            ["--endpoints=\(configuration.etcd.clientURL)", "--dial-timeout=2s", "--command-timeout=5s", "del", "--prefix", "/service/\(scope)/"],
            environment: Processes.minimalEnvironment(home: "/", extra: ["ETCDCTL_API": "3"]), timeout: .seconds(10))
        guard output.succeeded else {
            throw SandboxError(.commandFailed, "etcdctl del --prefix /service/\(scope)/ failed: \(Self.redacted(output.stderr))")
        }
        progress("target cluster: empty data directories, scope \(scope) removed from etcd")
    }

    /// `ha/<name>/conf.d/00-patroni.yml`.
    func renderedCopy(of member: SandboxConfiguration.Member) -> String {
        (member.configFile as NSString).appendingPathComponent("00-patroni.yml")
    }

    /// The value of the top-level `scope:` of a patroni.yml (quotes removed).
    static func scope(inPatroniYAML text: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix("scope:") {
            var value = line.dropFirst("scope:".count).trimmingCharacters(in: .whitespaces)
            if let hash = value.range(of: " #") { value = String(value[..<hash.lowerBound]).trimmingCharacters(in: .whitespaces) }
            if value.count >= 2, (value.hasPrefix("'") && value.hasSuffix("'")) || (value.hasPrefix("\"") && value.hasSuffix("\"")) {
                value = String(value.dropFirst().dropLast())
            }
            return value.isEmpty ? nil : value
        }
        return nil
    }
}
