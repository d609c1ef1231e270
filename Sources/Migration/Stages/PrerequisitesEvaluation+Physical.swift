import PlainText

/// The prerequisites of the physical method (`sync.method: physical`).
///
/// The single node must let the standby cluster copy and follow it: `source.replication_role`,
/// `source.hba_replication`, `source.config_file`, `source.slot`. The cluster does not exist yet
/// in the normal order of work (it is started from the config stage's patroni.yml during sync), so
/// the cluster checks are SKIP with the reason while no REST host answers; a cluster that answers
/// must be a standby cluster (`cluster.standby`: no writable leader), whose standby leader is in
/// recovery by design.
extension PrerequisitesEvaluation {
    static let orderOfWork = "docs/MIGRATION_TO_HA.md, \"The physical method: order of work\""

    static func physicalSourceChecks(_ s: SourceObservation, limits: PrerequisiteLimits) -> [CheckResult] {
        guard let probe = s.physical else { return [] }
        let facts: PhysicalSourceFacts
        switch probe {
        case .failed(let why):
            let advice = "fix the source logins (source.admin_user should be a superuser), then `pgha resume`"
            return PrerequisiteCheck.sourcePhysical.map {
                .fail($0, observed: "could not look: \(why)", expected: "readable", advice: advice)
            }
        case .observed(let f):
            facts = f
        }
        return [
            replicationRoleCheck(facts, limits: limits), hbaReplicationCheck(facts, limits: limits),
            configFileCheck(facts), slotCheck(facts, limits: limits),
        ]
    }

    static func replicationRoleCheck(_ f: PhysicalSourceFacts, limits: PrerequisiteLimits) -> CheckResult {
        let user = limits.replicationUser
        let expected = "role \(user) exists with LOGIN and REPLICATION"
        let create = "`CREATE ROLE \(user) LOGIN REPLICATION PASSWORD '…'` on the single node (the members read the password from PATRONI_REPLICATION_PASSWORD)"
        guard let role = f.replicationRole else {
            return .fail(.sourceReplicationRole, observed: "no role \(user) on the single node", expected: expected,
                         advice: "the standby cluster streams from the single node as \(user) (target.replication_user): \(create); then `pgha resume`")
        }
        guard role.canLogin, role.replication || role.superuser else {
            let missing = [role.canLogin ? nil : "LOGIN", role.replication || role.superuser ? nil : "REPLICATION"].compactMap { $0 }
            return .fail(.sourceReplicationRole, observed: "\(user) lacks \(missing.joined(separator: " and "))", expected: expected,
                         advice: "`ALTER ROLE \(user) \(missing.joined(separator: " "))` on the single node; then `pgha resume`")
        }
        return .pass(.sourceReplicationRole, observed: "\(user): LOGIN, \(role.superuser ? "SUPERUSER" : "REPLICATION")", expected: expected)
    }

    static func hbaReplicationCheck(_ f: PhysicalSourceFacts, limits: PrerequisiteLimits) -> CheckResult {
        let user = limits.replicationUser
        let expected = "pg_hba.conf lets \(user) connect for replication from every member"
        let rules: [PhysicalSourceFacts.HBARule]
        switch f.hbaRules {
        case .failed(let why):
            return .warn(.sourceHbaReplication, observed: "pg_hba_file_rules not readable: \(why)", expected: expected,
                         advice: "set source.admin_user to a superuser so pgha can check, or make sure pg_hba.conf on the single node has `host replication \(user) <member address>/32 scram-sha-256` for each member")
        case .observed(let r):
            rules = r
        }
        var allowed: [String] = []
        var refused: [String] = []
        var unsure: [String] = []
        for member in limits.members {
            // The first line that matches decides; `reject` refuses.
            var verdict: PhysicalSourceFacts.HBARule.Match = .no
            var decidingLine: PhysicalSourceFacts.HBARule?
            for rule in rules {
                let match = rule.matchesReplication(user: user, from: member.host)
                if match == .no { continue }
                verdict = match
                decidingLine = rule
                break
            }
            let label = "\(member.name) (\(member.host))"
            switch verdict {
            case .yes where decidingLine?.method == "reject": refused.append("\(label): line \(decidingLine?.line ?? 0) rejects")
            case .yes: allowed.append("\(label): line \(decidingLine?.line ?? 0)")
            case .unknown: unsure.append("\(label): line \(decidingLine?.line ?? 0) may match (host name, samenet or a group)")
            case .no: refused.append("\(label): no line matches")
            }
        }
        let line = "host replication \(user) <member address>/32 scram-sha-256"
        if !refused.isEmpty {
            return .fail(.sourceHbaReplication, observed: refused.joined(separator: "; "), expected: expected,
                         advice: "add `\(line)` to the single node's pg_hba.conf for each member named, `SELECT pg_reload_conf()`; then `pgha resume`")
        }
        if !unsure.isEmpty {
            return .warn(.sourceHbaReplication, observed: (allowed + unsure).joined(separator: "; "), expected: expected,
                         advice: "pgha cannot decide these lines; make sure they admit the members, or add `\(line)`")
        }
        return .pass(.sourceHbaReplication, observed: allowed.isEmpty ? "no members named" : allowed.joined(separator: "; "), expected: expected)
    }

    static func configFileCheck(_ f: PhysicalSourceFacts) -> CheckResult {
        let expected = "postgresql.conf inside the data directory"
        let dir = f.dataDirectory.hasSuffix("/") ? f.dataDirectory : f.dataDirectory + "/"
        if f.configFile.hasPrefix(dir) {
            return .pass(.sourceConfigFile, observed: f.configFile, expected: expected)
        }
        return .fail(.sourceConfigFile, observed: "\(f.configFile) (outside \(f.dataDirectory))", expected: expected,
                     advice: "Patroni fails after the basebackup when the copied data directory has no postgresql.conf (Debian keeps it in /etc): create an empty one, `install -o postgres -g postgres -m 600 /dev/null \(dir)postgresql.conf` (the server keeps using \(f.configFile)); then `pgha resume`")
    }

    static func slotCheck(_ f: PhysicalSourceFacts, limits: PrerequisiteLimits) -> CheckResult {
        let expected = "slot \(limits.slot) absent (sync creates it) or an unused physical slot"
        guard let slot = f.slot else {
            return .pass(.sourceSlot, observed: "\(limits.slot) does not exist yet: the sync stage creates it", expected: expected)
        }
        if slot.type != "physical" {
            return .fail(.sourceSlot, observed: "\(slot.name) exists and is a \(slot.type) slot", expected: expected,
                         advice: "choose another sync.slot, or drop it if nothing needs it (`SELECT pg_drop_replication_slot('\(slot.name)')`)")
        }
        if slot.active {
            return .warn(.sourceSlot, observed: "\(slot.name) exists and is in use", expected: expected,
                         advice: "something streams from it already (a standby cluster started early?): sync checks that it is this migration's cluster")
        }
        return .pass(.sourceSlot, observed: "\(slot.name) exists (physical, unused): sync uses it and leaves it in place on rollback, as pgha did not create it", expected: expected)
    }

    /// Whether any configured REST host answered with a cluster.
    static func clusterAnswers(_ c: ClusterObservation) -> Bool {
        !c.members.isEmpty || c.restHosts.contains { $0.clusterError == nil }
    }

    static func physicalClusterChecks(_ o: PrerequisiteObservations, limits: PrerequisiteLimits) -> [CheckResult] {
        let c = o.cluster
        guard clusterAnswers(c) else {
            let why = "the physical method's cluster does not exist yet: it is started from the config stage's patroni.yml during sync, which waits for it and checks it (\(orderOfWork))"
            return PrerequisiteCheck.clusterPhysical.map {
                CheckResult(name: $0.name, verdict: .skip, observed: why)
            }
        }
        let writable = c.members.filter { $0.role == "leader" || $0.role == "master" || $0.role == "primary" }
        var results: [CheckResult] = []
        let names = memberNamesByHost(c)
        results.append(restHostsCheck(c, names: names, limits: limits))
        if !writable.isEmpty {
            results.append(.fail(.clusterStandby, observed: "\(writable.map(\.name).joined(separator: ", ")) is a writable leader: this cluster was initialised on its own", expected: "a new cluster, or a standby cluster of the single node",
                                 advice: "the physical method needs a cluster that Patroni bootstraps as a standby of the single node from the config stage's patroni.yml: stop this one, and start the members with a new scope and empty data directories (\(orderOfWork)); or use sync.method: logical to copy into it"))
        } else {
            let standbyLeader = c.members.first { $0.role == "standby_leader" }
            results.append(.pass(.clusterStandby, observed: standbyLeader.map { "standby cluster, standby leader \($0.name) (in recovery by design)" } ?? "no leader yet (the cluster is starting)",
                                 expected: "a new cluster, or a standby cluster of the single node"))
        }
        results.append(membersCheck(c, names: names, limits: limits))
        results.append(versionCheck(c, names: names, sourceVersionNum: o.source.serverVersionNum, limits: limits))
        return results
    }
}
