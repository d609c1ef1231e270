import Yams

/// The `cutover:` and `complete:` sections.
extension PlaybookReader {
    func cutover(_ node: Node?, haproxy: Playbook.HAProxy?, replicationUser: String?) -> Playbook.Cutover? {
        let d = Playbook.Cutover(wayBackUser: replicationUser ?? "replicator")
        guard let node else { return d }
        guard let m = mapping(node, path: "cutover", allowed: [
            "method", "timeout", "pause_timeout", "pgbouncer", "switch_application", "switch_back", "application_env",
            "application_wait", "hook_timeout", "way_back", "sequence_margin",
        ], required: []) else { return nil }
        let method = choice(m, "method", Playbook.Cutover.Method.allCases.map(\.rawValue)).flatMap(Playbook.Cutover.Method.init(rawValue:)) ?? d.method
        var pgbouncer: Playbook.Cutover.PgBouncer?
        if let p = m["pgbouncer"] {
            guard let b = mapping(p, path: "cutover.pgbouncer", allowed: ["admin_host", "admin_port", "admin_user", "admin_password", "ini_file", "target"], required: ["admin_host", "ini_file"]) else { return nil }
            let primary = haproxy.map { Playbook.HostPort(host: $0.bindAddress == "*" ? "127.0.0.1" : $0.bindAddress, port: $0.primaryPort) }
            var target = primary
            if let t = b["target"] {
                guard let text = t.scalar?.string, let hp = Self.parseHostPort(text, defaultPort: 5432) else {
                    issue(t, "cutover.pgbouncer.target", "expected host:port (where PgBouncer's databases point after cutover, e.g. HAProxy's primary port)")
                    return nil
                }
                target = hp
            }
            guard let host = hostName(b, "admin_host"), let ini = path(b, "ini_file"), let target else { return nil }
            pgbouncer = .init(
                adminHost: host, adminPort: int(b, "admin_port", range: 1...65535) ?? 6432, adminUser: optionalString(b, "admin_user") ?? "pgbouncer",
                adminPassword: optionalCredential(b, "admin_password"), iniFile: ini, target: target)
        }
        var wayBackUser = d.wayBackUser
        var wayBackPassword: EnvironmentReference?
        var wayBackName = d.wayBackName
        if let w = m["way_back"] {
            guard let wb = mapping(w, path: "cutover.way_back", allowed: ["user", "password", "name"], required: ["password"]) else { return nil }
            wayBackUser = optionalString(wb, "user") ?? wayBackUser
            wayBackPassword = credential(wb, "password")
            if wb["name"] != nil {
                guard let name = string(wb, "name"), Self.isSlotName(name), name.count <= 40 else {
                    issue(wb["name"], "cutover.way_back.name", "use lower-case letters, digits and _ (at most 40: a database suffix is added)")
                    return nil
                }
                wayBackName = name
            }
            if wayBackPassword == nil { return nil }
        }
        let c = Playbook.Cutover(
            method: method, pgbouncer: pgbouncer,
            switchApplication: m["switch_application"] == nil ? nil : string(m, "switch_application"),
            switchBack: m["switch_back"] == nil ? nil : string(m, "switch_back"),
            applicationEnv: m["application_env"] == nil ? nil : path(m, "application_env"),
            timeoutSeconds: duration(m, "timeout") ?? d.timeoutSeconds,
            pauseTimeoutSeconds: duration(m, "pause_timeout") ?? d.pauseTimeoutSeconds,
            applicationWaitSeconds: duration(m, "application_wait") ?? d.applicationWaitSeconds,
            hookTimeoutSeconds: duration(m, "hook_timeout") ?? d.hookTimeoutSeconds,
            wayBackUser: wayBackUser, wayBackPassword: wayBackPassword, wayBackName: wayBackName,
            sequenceMargin: m["sequence_margin"] == nil ? d.sequenceMargin : Int64(int(m, "sequence_margin", range: 0...1_000_000_000) ?? Int(d.sequenceMargin)))
        switch method {
        case .pgbouncer where c.pgbouncer == nil:
            issue(m.node, "cutover.pgbouncer", "method pgbouncer needs a pgbouncer: section (admin_host, ini_file); add it, or use method: hook")
            return nil
        case .hook where c.switchApplication == nil:
            issue(m.node, "cutover.switch_application", "method hook needs switch_application: the command that deploys the Patroni .env and restarts the application; add it")
            return nil
        default:
            return c
        }
    }

    func complete(_ node: Node?) -> Playbook.Complete? {
        let d = Playbook.Complete()
        guard let node else { return d }
        guard let m = mapping(node, path: "complete", allowed: ["after", "stop_source", "hook_timeout"], required: []) else { return nil }
        var after = d.afterSeconds
        if let n = m["after"] {
            if n.scalar?.string == "0" { after = 0 } else { after = duration(m, "after") ?? d.afterSeconds }
        }
        return Playbook.Complete(
            afterSeconds: after, stopSource: m["stop_source"] == nil ? nil : string(m, "stop_source"),
            hookTimeoutSeconds: duration(m, "hook_timeout") ?? d.hookTimeoutSeconds)
    }
}
