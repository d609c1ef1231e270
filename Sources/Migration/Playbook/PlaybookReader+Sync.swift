import Yams

/// The `sync:` section and `target.members`.
extension PlaybookReader {
    func members(_ node: Node?, apiPort: Int) -> [Playbook.Member]? {
        guard let node else { return [] }
        guard let items = sequence(node, path: "target.members", what: "a list of members ({name, host[, api_port]})") else { return nil }
        var members: [Playbook.Member] = []
        var valid = true
        for (i, item) in items.enumerated() {
            guard let m = mapping(item, path: "target.members[\(i)]", allowed: ["name", "host", "api_port"], required: ["name", "host"]) else {
                valid = false
                continue
            }
            guard let name = string(m, "name"), let host = hostName(m, "host") else {
                valid = false
                continue
            }
            if !Self.isMemberName(name) {
                issue(m["name"], "target.members[\(i)].name", "\"\(name)\" is not a valid Patroni member name: use letters, digits, ., _ and -")
                valid = false
            }
            if members.contains(where: { $0.name == name }) {
                issue(m["name"], "target.members[\(i)].name", "\"\(name)\" is listed twice: member names must be unique, rename one")
                valid = false
            }
            members.append(Playbook.Member(name: name, host: host, apiPort: int(m, "api_port", range: 1...65535) ?? apiPort))
        }
        if items.isEmpty {
            issue(node, "target.members", "expected at least one member")
            return nil
        }
        return valid ? members : nil
    }

    func sync(_ node: Node?, thresholds: Playbook.Thresholds?, scope: String?) -> Playbook.Sync? {
        let lag = thresholds?.maxLagBytes ?? Playbook.Thresholds().maxLagBytes
        let d = Playbook.Sync(caughtUpLagBytes: lag)
        guard let node else { return d }
        guard let m = mapping(node, path: "sync", allowed: [
            "method", "slot", "max_wal_retention", "caught_up_lag", "cluster_timeout", "stall_timeout",
            "start_cluster", "stop_cluster", "hook_timeout", "publisher", "publication", "synchronous_mode", "role_passwords",
            "defer_indexes", "initial_copy", "copy_jobs",
        ], required: []) else { return nil }
        let rolePasswords = m["role_passwords"] == nil ? d.rolePasswords
            : choice(m, "role_passwords", Playbook.Sync.RolePasswords.allCases.map(\.rawValue)).flatMap(Playbook.Sync.RolePasswords.init(rawValue:))
        guard let rolePasswords else { return nil }
        let initialCopy = m["initial_copy"] == nil ? d.initialCopy
            : choice(m, "initial_copy", Playbook.Sync.InitialCopy.allCases.map(\.rawValue)).flatMap(Playbook.Sync.InitialCopy.init(rawValue:))
        guard let initialCopy else { return nil }
        if m["synchronous_mode"] != nil, choice(m, "synchronous_mode", ["true", "false"]) == nil { return nil }
        if m["defer_indexes"] != nil, choice(m, "defer_indexes", ["true", "false"]) == nil { return nil }
        var publisherUser: String?
        var publisherPassword: EnvironmentReference?
        if let p = m["publisher"] {
            guard let pm = mapping(p, path: "sync.publisher", allowed: ["user", "password"], required: ["user", "password"]),
                  let user = string(pm, "user"), let password = credential(pm, "password") else { return nil }
            publisherUser = user
            publisherPassword = password
        }
        var publication = d.publication
        if m["publication"] != nil {
            guard let name = string(m, "publication"), Self.isSlotName(name) else {
                issue(m["publication"], "sync.publication", "use lower-case letters, digits and _ (at most 63)")
                return nil
            }
            publication = name
        }
        let method = choice(m, "method", Playbook.Sync.Method.allCases.map(\.rawValue)).flatMap(Playbook.Sync.Method.init(rawValue:))
        var slot = d.slot
        if m["slot"] != nil {
            guard let name = string(m, "slot") else { return nil }
            guard Self.isSlotName(name) else {
                issue(m["slot"], "sync.slot", "\"\(name)\" is not a replication slot name: use lower-case letters, digits and _ (at most 63)")
                return nil
            }
            slot = name
        }
        let start = m["start_cluster"] == nil ? nil : string(m, "start_cluster")
        let stop = m["stop_cluster"] == nil ? nil : string(m, "stop_cluster")
        if m["start_cluster"] != nil, start == nil { return nil }
        if m["stop_cluster"] != nil, stop == nil { return nil }
        return Playbook.Sync(
            method: method ?? d.method, slot: slot,
            maxWALRetentionBytes: bytes(m, "max_wal_retention") ?? d.maxWALRetentionBytes,
            caughtUpLagBytes: bytes(m, "caught_up_lag") ?? d.caughtUpLagBytes,
            clusterTimeoutSeconds: duration(m, "cluster_timeout") ?? d.clusterTimeoutSeconds,
            stallTimeoutSeconds: duration(m, "stall_timeout") ?? d.stallTimeoutSeconds,
            startCluster: start, stopCluster: stop,
            hookTimeoutSeconds: duration(m, "hook_timeout") ?? d.hookTimeoutSeconds,
            publisherUser: publisherUser, publisherPassword: publisherPassword, publication: publication,
            synchronousMode: m["synchronous_mode"] == nil ? d.synchronousMode : choice(m, "synchronous_mode", ["true", "false"]) == "true",
            rolePasswords: rolePasswords,
            deferIndexes: m["defer_indexes"] == nil ? d.deferIndexes : choice(m, "defer_indexes", ["true", "false"]) == "true",
            initialCopy: initialCopy, copyJobs: int(m, "copy_jobs", range: 1...64) ?? d.copyJobs)
    }

    /// `target.patroni_dcs: {ttl, loop_wait, retry_timeout}`, held to what Patroni accepts.
    func dcsTimings(_ node: Node?) -> Playbook.DCSTimings? {
        let d = Playbook.DCSTimings()
        guard let node else { return d }
        guard let m = mapping(node, path: "target.patroni_dcs", allowed: ["ttl", "loop_wait", "retry_timeout"], required: []) else { return nil }
        let t = Playbook.DCSTimings(
            ttl: int(m, "ttl", range: 20...3600) ?? d.ttl, loopWait: int(m, "loop_wait", range: 1...3600) ?? d.loopWait,
            retryTimeout: int(m, "retry_timeout", range: 3...3600) ?? d.retryTimeout)
        if t.loopWait + 2 * t.retryTimeout > t.ttl {
            issue(m.node, "target.patroni_dcs", "Patroni needs loop_wait + 2 * retry_timeout <= ttl (got \(t.loopWait) + 2 * \(t.retryTimeout) > \(t.ttl)): raise ttl or lower the others")
            return nil
        }
        return t
    }

    /// PostgreSQL's rule for slot names.
    static func isSlotName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 63
            && name.unicodeScalars.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("0"..."9").contains($0) }
    }

    static func isMemberName(_ name: String) -> Bool {
        !name.isEmpty && name.unicodeScalars.allSatisfy { "._-".unicodeScalars.contains($0) || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }
}
