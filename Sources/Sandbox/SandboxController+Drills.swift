public import Foundation

extension SandboxController {
    /// Simulates a crash of one member for failover drills: SIGKILL of its Patroni and of its
    /// postmaster (whose PID is the first line of `postmaster.pid`), so neither can clean up and
    /// the leader key must expire (~`ttl` seconds). `up()` restarts the member afterwards; it
    /// rejoins with pg_rewind. With `postmasterOnly`, Patroni lives on and sees its PostgreSQL
    /// die (its backends, orphaned, may still finish what they were doing).
    ///
    /// - Returns: the PIDs signalled.
    @discardableResult
    public func crash(member name: String, postmasterOnly: Bool = false) throws -> [pid_t] {
        guard let member = configuration.allMembers.first(where: { $0.name == name }) else {
            throw SandboxError(.invalidConfiguration, "no member named \(name) in the sandbox")
        }
        var pids: [pid_t] = []
        if !postmasterOnly, let patroni = pidFile(member.name).livePID(marker: member.configFile) { pids.append(patroni) }
        let postmasterFile = (member.dataDir as NSString).appendingPathComponent("postmaster.pid")
        if let text = try? String(contentsOfFile: postmasterFile, encoding: .utf8),
           let first = text.split(separator: "\n").first, let pid = pid_t(first.trimmingCharacters(in: .whitespaces)) {
            pids.append(pid)
        }
        for pid in pids { kill(pid, SIGKILL) }
        return pids
    }
}
