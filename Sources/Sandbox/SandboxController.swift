import Foundation
import PlainText
#if canImport(Glibc)
import Glibc
#endif

/// Starts, stops and inspects the sandbox described by a `SandboxConfiguration`.
///
/// Every server runs as the `postgres` OS user, detached in its own session, with a PID file in
/// `run/` and a log in `logs/`. `up`, `down` and `status` are idempotent.
public struct SandboxController: Sendable {
    public let configuration: SandboxConfiguration
    let observer: any ClusterObserver

    /// A controller for `configuration` that watches the cluster through Patroni's REST API.
    public init(configuration: SandboxConfiguration) {
        self.init(configuration: configuration, observer: PatroniClusterObserver(configuration: configuration))
    }

    init(configuration: SandboxConfiguration, observer: any ClusterObserver) {
        self.configuration = configuration
        self.observer = observer
    }

    // MARK: Paths

    var postgresUser: OSUser? { OSUser.lookup("postgres") }
    func logFile(_ name: String) -> String { (configuration.logsDir as NSString).appendingPathComponent("\(name).log") }
    func pidFile(_ name: String) -> Processes.PIDFile {
        .init(path: (configuration.runDir as NSString).appendingPathComponent("\(name).pid"))
    }
    func binary(_ name: String) -> String { (configuration.postgresBinDir as NSString).appendingPathComponent(name) }
    /// Held by `up` and `down` for their whole run.
    var lockFile: String { (configuration.runDir as NSString).appendingPathComponent("sandbox.lock") }
    var patroniBinary: String { (configuration.patroniVenv as NSString).appendingPathComponent("bin/patroni") }
    var postgresEnvironment: [String: String] {
        Processes.minimalEnvironment(home: postgresUser?.home ?? "/var/lib/postgresql", binDir: configuration.postgresBinDir)
    }

    // MARK: up

    /// What `up` did.
    public struct UpReport: Sendable {
        /// Wall-clock seconds from the call to a healthy cluster.
        public var seconds: Double
        /// Components that were started by this call (the others were already running).
        public var started: [String]
        /// The final status.
        public var status: SandboxStatus
    }

    /// Brings the whole sandbox up and waits until the single node answers, etcd is healthy and the
    /// cluster has a leader and two streaming replicas.
    ///
    /// A sandbox left by a migration's cutover (`spentReason`) is rebuilt from nothing with
    /// `rebuildIfSpent` (`down(purge: true)` first), refused otherwise.
    ///
    /// - Throws: `.missingPrerequisite`, `.spent`, `.startFailed` (with the log file to read),
    ///   `.timeout` naming what did not come up.
    public func up(
        timeout: Duration = .seconds(90), rebuildIfSpent: Bool = false, progress: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> UpReport {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: timeout)
        try SandboxPrerequisites.check(configuration)
        if let reason = spentReason() {
            guard rebuildIfSpent else {
                throw SandboxError(
                    .spent, "the sandbox in \(configuration.baseDir) was left by a migration: \(reason)",
                    advice: "rebuild it from nothing (its data is the rehearsal's) with `pgha sandbox up --rebuild-if-spent`, or `pgha sandbox down --purge` and `pgha sandbox up`")
            }
            progress("the sandbox was left by a migration (\(reason)): rebuilding it from nothing")
            _ = try await down(purge: true, progress: progress)
        }
        guard let postgres = postgresUser else {
            throw SandboxError(.missingPrerequisite, "OS user postgres not found", advice: SandboxPrerequisites.installEverything)
        }
        // Directories: the base and logs/run are root's; server directories belong to postgres.
        try FileSystem.makeDirectory(configuration.baseDir, mode: 0o755)
        try FileSystem.makeDirectory(configuration.logsDir, mode: 0o755)
        try FileSystem.makeDirectory(configuration.runDir, mode: 0o755)
        let lock = try await FileLock.acquire(lockFile, timeout: timeout)
        defer { lock.unlock() }
        try checkNotRunningWithOtherSettings()
        try FileSystem.makeDirectory(configuration.single.dataDir, mode: 0o700, owner: postgres)
        try FileSystem.makeDirectory(configuration.etcd.dataDir, mode: 0o700, owner: postgres)
        for member in configuration.cluster.members {
            try FileSystem.makeDirectory(member.dir, mode: 0o700, owner: postgres)
        }
        let passwords = try SandboxSecrets.ensure(configuration)
        if configuration.tls != nil {
            let created = try await SandboxTLS.ensure(configuration, postgres: postgres)
            if !created.isEmpty { progress("created TLS material in \(configuration.tls?.directory ?? "")") }
        }
        try FileSystem.writeFile(
            SandboxConfiguration.fileURL(baseDir: configuration.baseDir), contents: try configuration.encodedJSON(),
            mode: 0o644)

        // The single node and the cluster come up side by side; the first failure cancels the other.
        let started = try await withThrowingTaskGroup(of: [String].self) { group in
            group.addTask {
                try await bringUpSingleNode(postgres: postgres, passwords: passwords, deadline: deadline, progress: progress)
            }
            group.addTask {
                try await bringUpCluster(postgres: postgres, passwords: passwords, deadline: deadline, progress: progress)
            }
            var all: [String] = []
            for try await part in group { all += part }
            return all
        }
        let status = await status()
        return UpReport(seconds: Self.seconds(clock.now - start), started: started, status: status)
    }

    /// Why this sandbox cannot serve another rehearsal as it is, or nil: a migration's cutover froze
    /// the single node (`ALTER SYSTEM SET default_transaction_read_only = on`, kept in its
    /// postgresql.auto.conf, by design: the application's writes belong to the cluster now).
    func spentReason() -> String? {
        let autoConf = (configuration.single.dataDir as NSString).appendingPathComponent("postgresql.auto.conf")
        guard let text = FileSystem.readText(autoConf), Self.freezesWrites(autoConf: text) else { return nil }
        return "its single node is frozen (default_transaction_read_only = on in \(autoConf))"
    }

    /// Whether a postgresql.auto.conf (as ALTER SYSTEM writes it) sets
    /// `default_transaction_read_only` on; the last assignment wins, as in PostgreSQL.
    static func freezesWrites(autoConf: String) -> Bool {
        var on = false
        for line in autoConf.split(whereSeparator: \.isNewline) {
            let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let parts = code.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, parts[0].lowercased() == "default_transaction_read_only" else { continue }
            let value = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "'")).lowercased()
            on = ["on", "true", "yes", "1", "t", "y"].contains(value)
        }
        return on
    }

    /// Refuses to start when servers run from this base dir with a different `sandbox.json`.
    func checkNotRunningWithOtherSettings() throws {
        guard let existing = try? SandboxConfiguration.load(baseDir: configuration.baseDir),
              existing != configuration, let postgres = postgresUser,
              !Processes.processes(using: configuration.baseDir, owner: postgres).isEmpty
        else { return }
        throw SandboxError(
            .invalidConfiguration,
            "the sandbox in \(configuration.baseDir) is running with other settings",
            advice: "stop it first with `pgha sandbox down --base-dir \(configuration.baseDir)`")
    }

    /// initdb (first time), configuration files, start, roles and databases, sample data.
    func bringUpSingleNode(
        postgres: OSUser, passwords: Passwords, deadline: ContinuousClock.Instant, progress: @escaping @Sendable (String) -> Void
    ) async throws -> [String] {
        let single = configuration.single
        let pidFile = pidFile("single")
        var started: [String] = []
        if pidFile.livePID(marker: single.dataDir) == nil {
            let versionFile = (single.dataDir as NSString).appendingPathComponent("PG_VERSION")
            if !FileSystem.exists(versionFile) {
                try emptyDirectory(single.dataDir)
                progress("initdb \(single.dataDir)")
                let output = try await Processes.run(
                    binary("initdb"),
                    [
                        "-D", single.dataDir, "-U", configuration.users.superuser, "--auth-local=peer",
                        "--auth-host=md5", "--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums",
                    ],
                    as: postgres, environment: postgresEnvironment, workingDirectory: single.dataDir,
                    timeout: .seconds(120))
                guard output.succeeded else {
                    throw SandboxError(.commandFailed, "initdb failed: \(Self.redacted(output.stderr))")
                }
            }
            let confPath = (single.dataDir as NSString).appendingPathComponent("postgresql.conf")
            let include = "include_if_exists = 'pgha_sandbox.conf'"
            if let conf = FileSystem.readText(confPath), !conf.contains(include) {
                try FileSystem.writeFile(confPath, contents: conf + "\n" + include + "\n", mode: 0o600, owner: postgres)
            }
            try FileSystem.writeFile(
                (single.dataDir as NSString).appendingPathComponent("pgha_sandbox.conf"),
                contents: SandboxRendering.singleNodeSettings(configuration), mode: 0o600, owner: postgres)
            try FileSystem.writeFile(
                (single.dataDir as NSString).appendingPathComponent("pg_hba.conf"),
                contents: SandboxRendering.singleNodeHBA(configuration), mode: 0o600, owner: postgres)
            progress("starting single node \(single.host):\(single.port)")
            let pid = try await Processes.launchDetached(
                binary("postgres"), ["-D", single.dataDir], as: postgres, environment: postgresEnvironment,
                workingDirectory: single.dataDir, logFile: logFile("single"))
            try pidFile.write(pid)
            started.append("single node")
        }
        try await waitUntil(deadline: deadline, what: "single node \(single.host):\(single.port)", log: logFile("single")) {
            guard let pid = pidFile.read(), Processes.isAlive(pid) else { throw DiedError() }
            return await singleNodeAcceptsConnections()
        }
        // Roles and databases (idempotent); sample data only into databases created just now.
        let existing = try await psqlQuery(
            socketDir: single.socketDir, port: single.port, database: "postgres",
            "SELECT datname FROM pg_database WHERE datname IN (\(SQLQuoting.literal(single.projectDatabase)), \(SQLQuoting.literal(single.sharedDatabase)))"
        )
        try await psqlScript(
            socketDir: single.socketDir, port: single.port, database: "postgres",
            SandboxRendering.singleNodeRolesSQL(configuration, passwords), what: "single node: roles and databases")
        if !existing.contains(single.projectDatabase) {
            try await psqlScript(
                socketDir: single.socketDir, port: single.port, database: single.projectDatabase,
                SandboxRendering.projectSampleSQL(configuration), what: "single node: sample data in \(single.projectDatabase)")
            try await loadPgbench(postgres: postgres)
            progress("single node: created \(single.projectDatabase) with sample data and pgbench tables (scale \(single.pgbenchScale))")
        }
        if !existing.contains(single.sharedDatabase) {
            try await psqlScript(
                socketDir: single.socketDir, port: single.port, database: single.sharedDatabase,
                SandboxRendering.sharedSampleSQL(configuration), what: "single node: sample data in \(single.sharedDatabase)")
            progress("single node: created \(single.sharedDatabase) with sample data")
        }
        started += try await bringUpPgBouncer(postgres: postgres, passwords: passwords, deadline: deadline, progress: progress)
        return started
    }

    /// `pgbench -i` into the project database (as the superuser, over the socket), then the tables
    /// are given to the application role.
    func loadPgbench(postgres: OSUser) async throws {
        let single = configuration.single
        let output = try await Processes.run(
            binary("pgbench"),
            ["-i", "-q", "-s", String(single.pgbenchScale), "-h", single.socketDir, "-p", String(single.port),
             "-U", configuration.users.superuser, single.projectDatabase],
            as: postgres, environment: postgresEnvironment, workingDirectory: single.socketDir, timeout: .seconds(1800))
        guard output.succeeded else {
            throw SandboxError(.commandFailed, "pgbench -i failed: \(Self.redacted(output.stderr))")
        }
        try await psqlScript(
            socketDir: single.socketDir, port: single.port, database: single.projectDatabase,
            SandboxRendering.pgbenchOwnershipSQL(configuration), what: "single node: pgbench tables to \(configuration.users.application)")
    }

    /// etcd, then the three Patroni members; waits for a leader (creates the application role and
    /// databases on it) and two streaming replicas.
    func bringUpCluster(
        postgres: OSUser, passwords: Passwords, deadline: ContinuousClock.Instant, progress: @escaping @Sendable (String) -> Void
    ) async throws -> [String] {
        var started: [String] = []
        let etcd = configuration.etcd
        let etcdPID = pidFile("etcd")
        if etcdPID.livePID(marker: etcd.dataDir) == nil {
            progress("starting etcd \(etcd.clientURL)")
            let pid = try await Processes.launchDetached(
                "/usr/bin/etcd", SandboxRendering.etcdArguments(configuration), as: postgres,
                environment: Processes.minimalEnvironment(home: etcd.dataDir), workingDirectory: etcd.dataDir,
                logFile: logFile("etcd"))
            try etcdPID.write(pid)
            started.append("etcd")
        }
        try await waitUntil(deadline: deadline, what: "etcd \(etcd.clientURL)", log: logFile("etcd")) {
            guard let pid = etcdPID.read(), Processes.isAlive(pid) else { throw DiedError() }
            return await etcdHealthy()
        }

        for member in configuration.cluster.members {
            guard pidFile(member.name).livePID(marker: member.configFile) == nil else { continue }
            progress("starting Patroni \(member.name) (\(member.host):\(member.pgPort), REST \(member.restPort))")
            try await launchPatroni(member, postgres: postgres, passwords: passwords)
            started.append(member.name)
        }

        var startFailures = StartFailureWatch()
        var applicationReady = false
        var lastMembers: [ObservedMember] = []
        var lastAnswering: Set<String> = []
        var lastApplicationError: String?
        let clock = ContinuousClock()
        let started0 = clock.now
        while true {
            for member in configuration.cluster.members {
                guard let pid = pidFile(member.name).read(), Processes.isAlive(pid) else {
                    throw SandboxError(
                        .startFailed, "Patroni \(member.name) exited",
                        advice: "read \(logFile(member.name))\(Self.logTail(logFile(member.name)))")
                }
            }
            if let observed = await observer.observe() {
                let members = observed.members
                lastMembers = members
                lastAnswering = observed.answering
                let leaders = members.filter { $0.role == "leader" }
                if !applicationReady, leaders.count == 1,
                   let leader = configuration.cluster.members.first(where: { $0.name == leaders[0].name }) {
                    lastApplicationError = await createApplicationObjects(on: leader, passwords: passwords)
                    applicationReady = lastApplicationError == nil
                    if applicationReady { progress("leader \(leader.name): role \(configuration.users.application) and databases ready") }
                }
                for name in startFailures.observe(members, at: clock.now - started0) {
                    guard let member = configuration.cluster.members.first(where: { $0.name == name }) else { continue }
                    progress(
                        "\(name) cannot start its PostgreSQL (Patroni: start failed, again and again for \(startFailures.patience.components.seconds) s)"
                            + (Self.lastFatal(logFile(name)).map { "; its log says: \($0)" } ?? ""))
                    progress("\(name): rebuilding its data directory from the leader (a replica's data is a copy of the leader's)")
                    try await rebuildReplica(member, postgres: postgres, passwords: passwords)
                }
                let streaming = members.filter { $0.role != "leader" && $0.state == "streaming" }.count
                if applicationReady, leaders.count == 1, streaming == configuration.cluster.members.count - 1,
                   observed.answering.count == configuration.cluster.members.count {
                    return started
                }
            }
            if clock.now >= deadline {
                throw clusterTimeoutError(
                    lastMembers, answering: lastAnswering, applicationReady: applicationReady,
                    applicationError: lastApplicationError)
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Writes a member's `patroni.yml` (mode 0600: it holds passwords) and starts its Patroni.
    func launchPatroni(_ member: SandboxConfiguration.Member, postgres: OSUser, passwords: Passwords) async throws {
        try FileSystem.writeFile(
            member.configFile,
            contents: SandboxRendering.patroniYAML(configuration, member: member, passwords: passwords),
            mode: 0o600, owner: postgres)
        let pid = try await Processes.launchDetached(
            patroniBinary, [member.configFile], as: postgres, environment: postgresEnvironment,
            workingDirectory: member.dir, logFile: logFile(member.name))
        try pidFile(member.name).write(pid)
    }

    /// Stops a replica's Patroni (and any postmaster left in its data directory), empties the data
    /// directory and starts Patroni again: it finds no data and takes a base backup from the leader.
    func rebuildReplica(_ member: SandboxConfiguration.Member, postgres: OSUser, passwords: Passwords) async throws {
        if let pid = pidFile(member.name).livePID(marker: member.configFile) {
            Processes.signal(pid, SIGTERM)
            if !(await Processes.waitForExit(pid, timeout: .seconds(10))) {
                Processes.signal(pid, SIGKILL)
                _ = await Processes.waitForExit(pid, timeout: .seconds(5))
            }
        }
        _ = await stopPostmaster(dataDir: member.dataDir, timeout: .seconds(10))
        try emptyDirectory(member.dataDir)
        try await launchPatroni(member, postgres: postgres, passwords: passwords)
    }

    /// The last `FATAL:` message of a log (what stopped a PostgreSQL from starting), redacted.
    static func lastFatal(_ path: String) -> String? {
        guard let text = FileSystem.readText(path),
              let line = text.split(separator: "\n").last(where: { $0.contains("FATAL:") }),
              let range = line.range(of: "FATAL:")
        else { return nil }
        return redacted(line[range.upperBound...].trimmingCharacters(in: .whitespaces))
    }

    /// Creates the application role and both databases on the leader. Returns nil on success, else
    /// why not (the leader may still be leaving recovery for a moment; the caller retries).
    func createApplicationObjects(on leader: SandboxConfiguration.Member, passwords: Passwords) async -> String? {
        do {
            try await psqlScript(
                socketDir: leader.socketDir, port: leader.pgPort, database: "postgres",
                SandboxRendering.applicationRoleAndDatabasesSQL(configuration, passwords, superuserPassword: nil),
                what: "leader \(leader.name): application role and databases")
            return nil
        } catch let error as SandboxError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    func clusterTimeoutError(
        _ members: [ObservedMember], answering: Set<String>, applicationReady: Bool, applicationError: String? = nil
    ) -> SandboxError {
        var missing: [String] = []
        var logs: [String] = []
        let leaders = members.filter { $0.role == "leader" }
        if leaders.isEmpty {
            missing.append("no leader was elected")
            logs = configuration.cluster.members.map { logFile($0.name) }
        } else if !applicationReady {
            missing.append(
                "role \(configuration.users.application) could not be created on leader \(leaders[0].name)"
                    + (applicationError.map { " (\($0))" } ?? ""))
            logs.append(logFile(leaders[0].name))
        }
        for member in configuration.cluster.members where !answering.contains(member.name) {
            missing.append("the REST API of \(member.name) (\(member.apiURL)) does not answer")
            logs.append(logFile(member.name))
        }
        for member in configuration.cluster.members where !leaders.contains(where: { $0.name == member.name }) {
            if let seen = members.first(where: { $0.name == member.name }) {
                if seen.state != "streaming" {
                    missing.append(
                        "\(member.name) is \(seen.role), state \(seen.state ?? "unknown"), not streaming"
                            + (Self.lastFatal(logFile(member.name)).map { " (its log's last FATAL: \($0))" } ?? ""))
                    logs.append(logFile(member.name))
                }
            } else {
                missing.append("\(member.name) is not in the cluster")
                logs.append(logFile(member.name))
            }
        }
        let unique = logs.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        return SandboxError(
            .timeout, "the Patroni cluster did not come up in time: " + missing.joined(separator: "; "),
            advice: "read " + unique.joined(separator: ", "))
    }
}
