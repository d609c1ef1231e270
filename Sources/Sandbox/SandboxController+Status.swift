import Foundation
import PlainText
#if canImport(Glibc)
import Glibc
#endif

/// What the sandbox is doing now: each server's status from its PID file and a probe, the cluster as Patroni sees it, and the psql helpers the probes and set-up use.
extension SandboxController {
    // MARK: status

    /// Asks every component and judges the whole. Never throws: what cannot be reached is "down".
    public func status() async -> SandboxStatus {
        async let singleInfo = singleNodeInfo()
        async let etcdUp = etcdHealthy()
        async let observed = observer.observe()
        let targetRuns = configuration.target.members.contains { pidFile($0.name).livePID(marker: $0.configFile) != nil }
        async let targetObserved: ObservedCluster? = targetRuns
            ? PatroniClusterObserver(configuration: configuration, cluster: configuration.target).observe() : nil
        async let pgbouncerUp = pgbouncerAnswers()
        let (single, etcdHealthy, view, targetView, bouncer) = await (singleInfo, etcdUp, observed, targetObserved, pgbouncerUp)
        let members = memberStatuses(configuration.cluster.members, view: view)
        let target = targetRuns ? memberStatuses(configuration.target.members, view: targetView) : []
        return SandboxStatus(
            baseDir: configuration.baseDir,
            singleNode: .init(
                address: "\(configuration.single.host):\(configuration.single.port)", up: single != nil,
                version: single?.version, walLevel: single?.walLevel),
            etcd: .init(endpoint: configuration.etcd.clientURL, healthy: etcdHealthy),
            members: members, targetMembers: target,
            wayIn: .init(
                pgbouncer: "\(configuration.pgbouncer.host):\(configuration.pgbouncer.port)", pgbouncerUp: bouncer,
                pgbouncerTarget: Self.pgbouncerTarget(FileSystem.readText(configuration.pgbouncer.configFile)),
                haproxyRunning: pidFile("haproxy").read().map(Processes.isAlive) ?? false))
    }

    func pgbouncerAnswers() async -> Bool {
        let b = configuration.pgbouncer
        guard let output = try? await Processes.run(
            binary("pg_isready"), ["-h", b.host, "-p", String(b.port), "-t", "1"], environment: postgresEnvironment, timeout: .seconds(5))
        else { return false }
        return output.succeeded
    }

    /// `host:port` of the first `[databases]` entry of a pgbouncer.ini.
    static func pgbouncerTarget(_ ini: String?) -> String? {
        guard let ini else { return nil }
        var inDatabases = false
        for line in ini.split(separator: "\n") {
            let l = line.trimmingCharacters(in: .whitespaces)
            if l.hasPrefix("[") { inDatabases = l == "[databases]"; continue }
            guard inDatabases, !l.hasPrefix(";"), !l.hasPrefix("#"), let eq = l.firstIndex(of: "=") else { continue }
            let fields = l[l.index(after: eq)...].split(separator: " ").map(String.init)
            let value = { (key: String) in fields.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) } }
            return "\(value("host") ?? "?"):\(value("port") ?? "5432")"
        }
        return nil
    }

    func memberStatuses(_ configured: [SandboxConfiguration.Member], view: ObservedCluster?) -> [SandboxStatus.MemberStatus] {
        let cluster = view?.members
        return configured.map { member in
            let running = pidFile(member.name).read().map { Processes.isAlive($0) && Processes.commandLine($0).contains(where: { $0.contains(member.configFile) }) } ?? false
            let seen = cluster?.first { $0.name == member.name }
            return SandboxStatus.MemberStatus(
                name: member.name, address: "\(member.host):\(member.pgPort)", apiURL: member.apiURL,
                processRunning: running, apiAnswering: view?.answering.contains(member.name) ?? false,
                inCluster: seen != nil, role: seen?.role, state: seen?.state,
                lagBytes: seen?.lagBytes, timeline: seen?.timeline)
        }
    }

    // MARK: Probes

    func singleNodeAcceptsConnections() async -> Bool {
        let single = configuration.single
        guard let output = try? await Processes.run(
            binary("pg_isready"), ["-h", single.socketDir, "-p", String(single.port), "-t", "1"],
            environment: postgresEnvironment, timeout: .seconds(5))
        else { return false }
        return output.succeeded
    }

    func singleNodeInfo() async -> (version: String, walLevel: String)? {
        let single = configuration.single
        guard FileSystem.exists((single.dataDir as NSString).appendingPathComponent("PG_VERSION")),
              let rows = try? await psqlQuery(
                  socketDir: single.socketDir, port: single.port, database: "postgres",
                  "SELECT current_setting('server_version') || '|' || current_setting('wal_level')"),
              let row = rows.first
        else { return nil }
        let parts = row.split(separator: "|", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        return (parts[0], parts[1])
    }

    func etcdHealthy() async -> Bool {
        guard let output = try? await Processes.run(
            "/usr/bin/etcdctl",
            ["--endpoints=\(configuration.etcd.clientURL)", "--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health"],
            environment: Processes.minimalEnvironment(home: "/", extra: ["ETCDCTL_API": "3"]), timeout: .seconds(5))
        else { return false }
        return output.succeeded
    }

    // MARK: psql

    /// Runs one query with the real psql as the postgres OS user over the unix socket (peer auth);
    /// returns the rows (unaligned, tuples only).
    func psqlQuery(socketDir: String, port: Int, database: String, _ sql: String) async throws -> [String] {
        guard let postgres = postgresUser else { throw SandboxError(.missingPrerequisite, "OS user postgres not found") }
        let output = try await Processes.run(
            binary("psql"),
            ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", socketDir, "-p", String(port),
             "-U", configuration.users.superuser, "-d", database, "-c", sql],
            as: postgres, environment: postgresEnvironment, workingDirectory: socketDir, timeout: .seconds(30))
        guard output.succeeded else {
            throw SandboxError(.commandFailed, "psql query failed: \(Self.redacted(output.stderr))")
        }
        return output.stdout.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    /// Runs a script given on stdin (so passwords never appear in a command line).
    func psqlScript(socketDir: String, port: Int, database: String, _ script: String, what: String) async throws {
        guard let postgres = postgresUser else { throw SandboxError(.missingPrerequisite, "OS user postgres not found") }
        let output = try await Processes.run(
            binary("psql"),
            ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", socketDir, "-p", String(port),
             "-U", configuration.users.superuser, "-d", database, "-f", "-"],
            as: postgres, environment: postgresEnvironment, workingDirectory: socketDir, input: script,
            timeout: .seconds(60))
        guard output.succeeded else {
            throw SandboxError(.commandFailed, "\(what) failed: \(Self.redacted(output.stderr))")
        }
    }
}
