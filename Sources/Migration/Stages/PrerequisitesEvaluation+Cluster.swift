import PlainText
import Foundation
import HAPool

/// The prerequisites' checks of the Patroni cluster: REST hosts, members, leader, replicas and their lag, versions, the DCS and the pool, each a pure function of the observations.
extension PrerequisitesEvaluation {
    // MARK: - The cluster

    static func clusterChecks(_ o: PrerequisiteObservations, limits: PrerequisiteLimits) -> [CheckResult] {
        let c = o.cluster
        var results: [CheckResult] = []
        let names = memberNamesByHost(c)
        results.append(restHostsCheck(c, names: names, limits: limits))
        results.append(membersCheck(c, names: names, limits: limits))
        results.append(leaderCheck(c))
        results.append(replicasStreamingCheck(c, names: names, limits: limits))
        results.append(replicaLagCheck(c, limits: limits))
        results.append(versionCheck(c, names: names, sourceVersionNum: o.source.serverVersionNum, limits: limits))
        results.append(dcsCheck(c, names: names, observedAt: o.observedAt, limits: limits))
        results.append(poolCheck(c))
        for member in c.members {
            let place = "member \(member.name) (\(member.address))"
            if member.host == nil || member.port == nil {
                results.append(.fail("credentials.\(member.name)", observed: "/cluster gives no PostgreSQL address for \(member.name)", expected: "every configured login is accepted",
                                     advice: "check postgresql.connect_address in \(member.name)'s patroni.yml"))
                continue
            }
            var check = credentialsCheck("credentials.\(member.name)", logins: member.logins, side: "target", missingDatabaseIsFine: true, limits: limits, place: place, server: member.address)
            if check.verdict == .fail, !member.isRunning {
                check.observed = "\(member.name) is \(member.state ?? "not running"): " + check.observed
            } else if check.verdict == .fail, !member.postgresAnswers {
                check.observed = "\(member.name)'s PostgreSQL does not answer: " + check.observed
            }
            results.append(check)
        }
        return results
    }

    /// REST endpoint → member name, from `/patroni` or from the members' `api_url`.
    static func memberNamesByHost(_ c: ClusterObservation) -> [String: String] {
        var names: [String: String] = [:]
        for host in c.restHosts {
            if let name = host.status?.name {
                names[host.endpoint] = name
            } else if let member = c.members.first(where: { $0.apiEndpoint == host.endpoint }) {
                names[host.endpoint] = member.name
            }
        }
        return names
    }

    static func hostLabel(_ endpoint: String, names: [String: String]) -> String {
        names[endpoint].map { "\(endpoint) (\($0))" } ?? endpoint
    }

    static let patroniStartAdvice = "start its Patroni (`systemctl start patroni` on that host; for the sandbox `pgha sandbox up`) and wait until `patronictl list` shows it streaming"

    static func restHostsCheck(_ c: ClusterObservation, names: [String: String], limits: PrerequisiteLimits) -> CheckResult {
        let expected = "all \(c.restHosts.count) configured REST hosts answer /cluster and /patroni"
        let failing = c.restHosts.filter { !$0.answered }
        if failing.isEmpty {
            return .pass(.clusterRestHosts, observed: "\(c.restHosts.count) of \(c.restHosts.count) answer: " + c.restHosts.map { hostLabel($0.endpoint, names: names) }.joined(separator: ", "), expected: expected)
        }
        let details = failing.map { host in "\(hostLabel(host.endpoint, names: names)): \(host.clusterError ?? host.statusError ?? "?")" }
        for host in failing {
            let server = host.endpoint.split(separator: "://", maxSplits: 1).last.map(String.init) ?? host.endpoint
            if let advice = certificateAdvice(host.clusterError ?? host.statusError, server: server, side: "target", rest: true, limits: limits) {
                return .fail(.clusterRestHosts, observed: "\(c.restHosts.count - failing.count) of \(c.restHosts.count) answer; " + details.joined(separator: "; "), expected: expected,
                             advice: advice + ", then `pgha resume`")
            }
        }
        return .fail(.clusterRestHosts, observed: "\(c.restHosts.count - failing.count) of \(c.restHosts.count) answer; " + details.joined(separator: "; "), expected: expected,
                     advice: "check Patroni on each host named (`curl -s http://HOST:PORT/patroni`, its log); if it is stopped, \(patroniStartAdvice); then `pgha resume`")
    }

    static func describe(_ m: MemberObservation) -> String {
        if m.isRunning && !m.postgresAnswers {
            return "\(m.name) (\(m.role), \(m.state ?? "?") per Patroni, but its PostgreSQL does not answer)"
        }
        return "\(m.name) (\(m.role), \(m.state ?? "state unknown"))"
    }

    /// Running as Patroni says, and its PostgreSQL answers.
    static func isUp(_ m: MemberObservation) -> Bool { m.isRunning && m.postgresAnswers }

    /// REST hosts for which `/cluster` lists no member: their member is gone from the DCS.
    static func absentHosts(_ c: ClusterObservation, names: [String: String]) -> [String] {
        let listed = Set(c.members.map(\.name))
        let apiListed = Set(c.members.compactMap(\.apiEndpoint))
        return c.restHosts.filter { host in
            if let name = names[host.endpoint] { return !listed.contains(name) }
            return !apiListed.contains(host.endpoint)
        }.map { host in
            names[host.endpoint].map { "\($0) (REST \(host.endpoint))" } ?? "the member behind REST \(host.endpoint)"
        }
    }

    static func noClusterAnswer(_ c: ClusterObservation) -> String {
        "no REST host gave a valid /cluster answer (" + c.restHosts.map { "\($0.endpoint): \($0.clusterError ?? "answered")" }.joined(separator: "; ") + ")"
    }

    static func membersCheck(_ c: ClusterObservation, names: [String: String], limits: PrerequisiteLimits) -> CheckResult {
        let expected = "≥ \(limits.minMembers) members running"
        guard !c.members.isEmpty else {
            return .fail(.clusterMembers, observed: noClusterAnswer(c), expected: expected,
                         advice: "check that Patroni runs on the members and that target.api_hosts is right (`curl -s http://HOST:PORT/cluster`); then `pgha resume`")
        }
        let running = c.members.filter(isUp)
        let notRunning = c.members.filter { !isUp($0) }
        let absent = absentHosts(c, names: names)
        var observed = "\(running.count) of \(c.members.count) members running: " + running.map(describe).joined(separator: ", ")
        if !notRunning.isEmpty { observed += "; not running: " + notRunning.map(describe).joined(separator: ", ") }
        if !absent.isEmpty { observed += "; absent from /cluster: " + absent.joined(separator: ", ") }
        let culprits = notRunning.map(\.name) + absent
        if running.count < limits.minMembers {
            let who = culprits.isEmpty ? "more members" : culprits.joined(separator: ", ")
            return .fail(.clusterMembers, observed: observed, expected: expected,
                         advice: "bring \(who) back: \(patroniStartAdvice); then `pgha resume`")
        }
        if !culprits.isEmpty {
            return .warn(.clusterMembers, observed: observed, expected: expected,
                         advice: "\(culprits.joined(separator: ", ")) \(culprits.count == 1 ? "is" : "are") not running: the cluster has less redundancy than it should")
        }
        return .pass(.clusterMembers, observed: observed, expected: expected)
    }

    static func leaderCheck(_ c: ClusterObservation) -> CheckResult {
        let expected = "exactly one leader, confirmed not in recovery"
        var claimed: [String] = []
        for name in c.restHosts.flatMap(\.leaders) + c.members.filter(\.isLeader).map(\.name) where !claimed.contains(name) {
            claimed.append(name)
        }
        if claimed.count > 1 {
            return .fail(.clusterLeader, observed: "\(claimed.count) members claim the leader role: \(claimed.joined(separator: ", "))", expected: expected,
                         advice: "split brain or a DCS problem: stop here, check etcd and every member (`patronictl list`, the Patroni logs) until one leader remains; then `pgha resume`")
        }
        guard let name = claimed.first else {
            let observed = c.members.isEmpty ? noClusterAnswer(c) : "no leader among " + c.members.map(describe).joined(separator: ", ")
            return .fail(.clusterLeader, observed: observed, expected: expected,
                         advice: "the cluster has no leader (a failover in progress, or the DCS is down): check `patronictl list` and etcd, wait for a leader, then `pgha resume`")
        }
        let silent = c.restHosts.filter { $0.clusterError == nil && $0.leaders.isEmpty }.map(\.endpoint)
        guard let leader = c.members.first(where: { $0.name == name }) else {
            return .fail(.clusterLeader, observed: "\(name) is named leader but is not in the /cluster answer used", expected: expected,
                         advice: "the members disagree about the cluster: check `patronictl list` on each, then `pgha resume`")
        }
        switch leader.server {
        case .observed(let server)?:
            if server.inRecovery {
                return .fail(.clusterLeader, observed: "\(name) (\(leader.address)) is named leader but its PostgreSQL is still in recovery", expected: expected,
                             advice: "a failover or switchover is in progress: wait a few seconds and `pgha resume`")
            }
            let observed = "\(name) (\(leader.address)), confirmed not in recovery"
            if !silent.isEmpty {
                return .warn(.clusterLeader, observed: observed + "; but /cluster from \(silent.joined(separator: ", ")) names no leader", expected: expected,
                             advice: "those members see a different cluster state: check their connection to the DCS")
            }
            return .pass(.clusterLeader, observed: observed, expected: expected)
        case .failed(let why)?:
            return .fail(.clusterLeader, observed: "\(name) (\(leader.address)) is named leader but cannot be reached: \(why)", expected: expected,
                         advice: "check the leader's PostgreSQL and pg_hba.conf (see credentials.\(name)), then `pgha resume`")
        case nil:
            return .fail(.clusterLeader, observed: "\(name) has no PostgreSQL address in /cluster", expected: expected,
                         advice: "check postgresql.connect_address in \(name)'s patroni.yml")
        }
    }

    static func replicasStreamingCheck(_ c: ClusterObservation, names: [String: String], limits: PrerequisiteLimits) -> CheckResult {
        let wanted = max(0, limits.minMembers - 1)
        let expected = "every replica streaming, ≥ \(wanted)"
        guard !c.members.isEmpty else {
            return .fail(.clusterReplicasStreaming, observed: noClusterAnswer(c), expected: expected,
                         advice: "check that Patroni runs on the members (`curl -s http://HOST:PORT/cluster`); then `pgha resume`")
        }
        let others = c.members.filter { !$0.isLeader }
        let streaming = others.filter { $0.state == "streaming" && $0.postgresAnswers }
        let notStreaming = others.filter { !($0.state == "streaming" && $0.postgresAnswers) }
        let absent = absentHosts(c, names: names)
        var observed = "\(streaming.count) of \(others.count) replicas streaming" + (streaming.isEmpty ? "" : ": " + streaming.map(\.name).joined(separator: ", "))
        if !notStreaming.isEmpty { observed += "; not streaming: " + notStreaming.map(describe).joined(separator: ", ") }
        if !absent.isEmpty { observed += "; absent from /cluster: " + absent.joined(separator: ", ") }
        let culprits = notStreaming.map(\.name) + absent
        if !culprits.isEmpty || streaming.count < wanted {
            let who = culprits.isEmpty ? "more replicas" : culprits.joined(separator: ", ")
            return .fail(.clusterReplicasStreaming, observed: observed, expected: expected,
                         advice: "\(who) must stream from the leader: \(patroniStartAdvice); a member that streams no more may need `patronictl reinit`; then `pgha resume`")
        }
        return .pass(.clusterReplicasStreaming, observed: observed, expected: expected)
    }

    static func replicaLagCheck(_ c: ClusterObservation, limits: PrerequisiteLimits) -> CheckResult {
        let expected = "≤ \(formatBytes(limits.maxLagBytes)) on every streaming replica"
        let streaming = c.members.filter { !$0.isLeader && $0.state == "streaming" && $0.postgresAnswers }
        guard !streaming.isEmpty else {
            return .warn(.clusterReplicaLag, observed: "no streaming replica to measure", expected: expected, advice: "see cluster.replicas_streaming")
        }
        let parts = streaming.map { m in "\(m.name) \(m.lagBytes.map(formatBytes) ?? "unknown")" }
        let over = streaming.filter { ($0.lagBytes ?? 0) > limits.maxLagBytes }
        if !over.isEmpty {
            return .fail(.clusterReplicaLag, observed: parts.joined(separator: ", "), expected: expected,
                         advice: "\(over.map(\.name).joined(separator: ", ")) \(over.count == 1 ? "is" : "are") too far behind the leader: check its disk, network and load (`patronictl list` shows the lag), wait for it to catch up, then `pgha resume`")
        }
        if streaming.contains(where: { $0.lagBytes == nil }) {
            return .warn(.clusterReplicaLag, observed: parts.joined(separator: ", "), expected: expected,
                         advice: "Patroni reports an unknown lag: check the replica with `patronictl list`")
        }
        return .pass(.clusterReplicaLag, observed: parts.joined(separator: ", "), expected: expected)
    }

    static func versionCheck(_ c: ClusterObservation, names: [String: String], sourceVersionNum: Int?, limits: PrerequisiteLimits) -> CheckResult {
        let sourceMajor = sourceVersionNum.map(majorVersion)
        let floor = max(limits.minServerVersion, sourceMajor ?? 0)
        let expected = "major ≥ \(floor) on every member (thresholds.min_server_version \(limits.minServerVersion)" + (sourceMajor.map { ", the single node's \($0)" } ?? "") + ")"
        guard !c.members.isEmpty else {
            return .fail(.clusterVersion, observed: noClusterAnswer(c), expected: expected, advice: "see cluster.members")
        }
        var statusVersion: [String: Int] = [:]
        for host in c.restHosts { if let name = host.status?.name, let v = host.status?.serverVersion { statusVersion[name] = v } }
        var parts: [String] = []
        var old: [String] = []
        var unknown: [String] = []
        for member in c.members {
            guard let num = member.server?.value?.serverVersionNum ?? statusVersion[member.name] else {
                parts.append("\(member.name) unknown")
                unknown.append(member.name)
                continue
            }
            parts.append("\(member.name) \(versionText(num))")
            if majorVersion(num) < floor { old.append(member.name) }
        }
        var observed = parts.joined(separator: ", ")
        if let sourceVersionNum { observed += "; single node \(versionText(sourceVersionNum))" }
        if !old.isEmpty {
            return .fail(.clusterVersion, observed: observed, expected: expected,
                         advice: "\(old.joined(separator: ", ")) run\(old.count == 1 ? "s" : "") an older major version than the single node or the threshold: the cluster must run the same or a newer PostgreSQL major version; upgrade it before migrating")
        }
        if !unknown.isEmpty {
            return .warn(.clusterVersion, observed: observed, expected: expected,
                         advice: "the version of \(unknown.joined(separator: ", ")) could not be read (see the checks above)")
        }
        return .pass(.clusterVersion, observed: observed, expected: expected)
    }

    static func dcsCheck(_ c: ClusterObservation, names: [String: String], observedAt: Date, limits: PrerequisiteLimits) -> CheckResult {
        let staleAfter = c.ttlSeconds ?? limits.defaultDCSStaleSeconds
        let expected = "every member reached the DCS within \(staleAfter) s (ttl); leader lock held; not paused; failsafe inactive"
        let answering = c.restHosts.compactMap { host in host.status.map { (hostLabel(host.endpoint, names: names), $0) } }
        guard !answering.isEmpty else {
            return .fail(.clusterDcs, observed: "no member answered /patroni", expected: expected, advice: "see cluster.rest_hosts")
        }
        var problems: [String] = []
        var warnings: [String] = []
        var ages: [Int] = []
        for (label, status) in answering {
            if let seen = status.dcsLastSeen {
                let age = max(0, Int((observedAt.timeIntervalSince1970 - Double(seen)).rounded()))
                ages.append(age)
                if age > staleAfter { problems.append("\(label) last reached the DCS \(age) s ago") }
            } else {
                warnings.append("\(label) reports no dcs_last_seen")
            }
            if status.clusterUnlocked { problems.append("\(label) sees no leader lock (cluster_unlocked)") }
            if status.pause { problems.append("\(label) is in maintenance mode (pause)") }
            if status.failsafeActive { problems.append("\(label) runs in failsafe mode (the DCS is unreachable)") }
        }
        let summary = "\(answering.count) member\(answering.count == 1 ? "" : "s") answered; DCS last seen " + (ages.max().map { "≤ \($0) s ago" } ?? "unknown")
        if !problems.isEmpty {
            let paused = problems.contains { $0.contains("(pause)") }
            return .fail(.clusterDcs, observed: problems.joined(separator: "; "), expected: expected,
                         advice: paused
                            ? "maintenance mode stops Patroni from failing over: end it with `patronictl resume` once the maintenance is over; then `pgha resume`"
                            : "check etcd (`etcdctl endpoint health`) and each named member's connection to it (its Patroni log); then `pgha resume`")
        }
        if !warnings.isEmpty {
            return .warn(.clusterDcs, observed: summary + "; " + warnings.joined(separator: "; "), expected: expected,
                         advice: "an older Patroni does not report dcs_last_seen: check etcd with `etcdctl endpoint health`")
        }
        return .pass(.clusterDcs, observed: summary + "; leader lock held, not paused", expected: expected)
    }

    static func poolCheck(_ c: ClusterObservation) -> CheckResult {
        let expected = "the application's HA pool starts and confirms a writable leader"
        switch c.pool {
        case .observed(let summary):
            return .pass(.clusterPool, observed: summary, expected: expected)
        case .failed(let why):
            return .fail(.clusterPool, observed: why, expected: expected,
                         advice: "the HA pool the application will use cannot start: check the target.* settings and credentials, and `pgha health` with the Patroni .env; then `pgha resume`")
        }
    }
}
