import Foundation
import PlainText
#if canImport(Glibc)
import Glibc
#endif

/// Stopping the sandbox: every server by its PID file, last started first, each bounded; with purge, its directories too.
extension SandboxController {
    // MARK: down

    /// What `down` did.
    public struct DownReport: Sendable {
        public var seconds: Double
        /// Components that were running and got stopped.
        public var stopped: [String]
        /// PIDs that needed SIGKILL.
        public var killed: [Int32]
        public var purged: Bool
    }

    /// Stops the Patroni members of both clusters (SIGTERM; each stops its PostgreSQL), then etcd, then the single
    /// node (`pg_ctl stop -m fast`); SIGKILLs what is left after `timeout`, then proves with a /proc
    /// scan that no process uses the base directory. `purge` deletes the base directory.
    public func down(purge: Bool = false, timeout: Duration = .seconds(30), progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> DownReport {
        let clock = ContinuousClock()
        let start = clock.now
        var stopped: [String] = []
        var killed: [Int32] = []
        var lock: FileLock?
        if FileSystem.exists(configuration.runDir) {
            lock = try await FileLock.acquire(lockFile, timeout: timeout)
        }
        defer { lock?.unlock() }

        // Patroni members of both clusters, all at once.
        let members = await stopMembers(configuration.allMembers, timeout: timeout, progress: progress)
        stopped += members.stopped
        killed += members.killed

        // etcd.
        let etcdPID = pidFile("etcd")
        if let pid = etcdPID.livePID(marker: configuration.etcd.dataDir) {
            progress("stopping etcd (pid \(pid))")
            Processes.signal(pid, SIGTERM)
            if !(await Processes.waitForExit(pid, timeout: timeout)) {
                Processes.signal(pid, SIGKILL)
                killed.append(pid)
            }
            stopped.append("etcd")
        }
        etcdPID.remove()

        // The application's way in, then the single node.
        let pgbouncerPID = pidFile("pgbouncer")
        if let pid = pgbouncerPID.livePID(marker: configuration.pgbouncer.configFile) {
            progress("stopping PgBouncer (pid \(pid))")
            Processes.signal(pid, SIGTERM)
            if !(await Processes.waitForExit(pid, timeout: .seconds(10))) {
                Processes.signal(pid, SIGKILL)
                killed.append(pid)
            }
            stopped.append("PgBouncer")
        }
        pgbouncerPID.remove()
        if let pid = await stopHAProxy() { stopped.append("HAProxy (pid \(pid))") }

        // The single node.
        let singlePID = pidFile("single")
        if let pid = singlePID.livePID(marker: configuration.single.dataDir) {
            progress("stopping single node (pid \(pid))")
            if let postgres = postgresUser {
                _ = try? await Processes.run(
                    binary("pg_ctl"), ["stop", "-D", configuration.single.dataDir, "-m", "fast", "-w", "-t", "20"],
                    as: postgres, environment: postgresEnvironment, workingDirectory: configuration.single.dataDir,
                    timeout: timeout)
            }
            if !(await Processes.waitForExit(pid, timeout: .seconds(5))) {
                Processes.signal(pid, SIGKILL)
                killed.append(pid)
            }
            stopped.append("single node")
        }
        singlePID.remove()
        killed += await stopPostmaster(dataDir: configuration.single.dataDir, timeout: timeout)

        // Whatever still uses the base directory: SIGKILL, then prove that nothing is left.
        func scan() -> [ScannedProcess] {
            guard let postgres = postgresUser else { return [] }
            return Processes.processes(using: configuration.baseDir, owner: postgres)
        }
        var leftovers = scan()
        if !leftovers.isEmpty {
            for process in leftovers {
                Processes.signal(process.pid, SIGKILL)
                killed.append(process.pid)
            }
            for process in leftovers { _ = await Processes.waitForExit(process.pid, timeout: .seconds(5)) }
            leftovers = scan()
        }
        guard leftovers.isEmpty else {
            let list = leftovers.map { "\($0.pid) \($0.commandLine.joined(separator: " "))" }.joined(separator: "; ")
            throw SandboxError(.stopFailed, "processes still use \(configuration.baseDir) after SIGKILL: \(list)")
        }
        if purge {
            progress("removing \(configuration.baseDir)")
            try FileSystem.remove(configuration.baseDir)
        }
        return DownReport(seconds: Self.seconds(clock.now - start), stopped: stopped, killed: killed, purged: purge)
    }

    /// Stops a postmaster still running in `dataDir` (its `postmaster.pid`): SIGINT (fast
    /// shutdown), then SIGKILL after `timeout`. Returns the PIDs that needed SIGKILL.
    func stopPostmaster(dataDir: String, timeout: Duration) async -> [Int32] {
        let path = (dataDir as NSString).appendingPathComponent("postmaster.pid")
        guard let text = FileSystem.readText(path),
              let first = text.split(separator: "\n").first, let pid = pid_t(first),
              Processes.isAlive(pid),
              Processes.commandLine(pid).contains(where: { $0.contains(dataDir) })
        else { return [] }
        Processes.signal(pid, SIGINT)
        if await Processes.waitForExit(pid, timeout: timeout) { return [] }
        Processes.signal(pid, SIGKILL)
        return [pid]
    }
}
