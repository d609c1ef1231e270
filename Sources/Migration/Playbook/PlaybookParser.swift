import Foundation
import HAPool
import PlainText
import Yams

/// A playbook read from disk, with the checksum of its bytes (the state file records it so a
/// resumed run can tell the playbook changed).
public struct LoadedPlaybook: Hashable, Sendable {
    public var playbook: Playbook
    /// The path as given.
    public var path: String
    /// SHA-256 of the file's bytes.
    public var sha256: String

    public init(playbook: Playbook, path: String, sha256: String) {
        self.playbook = playbook
        self.path = path
        self.sha256 = sha256
    }
}

/// Reads and validates playbooks.
///
/// The YAML is composed into nodes with `Yams.compose`, so every problem names its line, column and
/// key: `playbooks/x.yml:12:5: target.api_hosts: expected a list of host[:port], got a number`.
/// All problems are collected, not just the first, and each says what to write instead. Unknown
/// keys are errors, with a "did you mean" when a known key is close. A credential field must be
/// exactly `${ENV_VAR}`; a literal password is an error (and the error never repeats it). Values
/// quoted in messages are shortened and their control characters escaped; a value holding a
/// control or invisible character (a NUL, a bidirectional override) is refused.
public enum PlaybookParser {
    /// Reads, checksums and validates the playbook at `path`.
    public static func load(path: String) throws(MigrationError) -> LoadedPlaybook {
        guard let snapshot = try FileIO.read(path) else {
            throw MigrationError(.playbookInvalid, "playbook \(path) does not exist", path: path)
        }
        let playbook = try parse(bytes: Array(snapshot.contents), file: path)
        return LoadedPlaybook(playbook: playbook, path: path, sha256: try SHA256.hex(snapshot.contents))
    }

    /// Validates playbook bytes: UTF-8 (a leading byte order mark is allowed), then `parse`.
    static func parse(bytes: [UInt8], file: String) throws(MigrationError) -> Playbook {
        switch UTF8Text.decode(bytes) {
        case .success(let text):
            return try parse(text, file: file)
        case .failure(let invalid):
            let issue = MigrationError.Issue(
                file: file, line: invalid.line, column: invalid.column, key: "",
                message: "\(invalid): save the file as UTF-8"
            )
            throw MigrationError(.playbookInvalid, "playbook \(file) is not UTF-8 text", path: file, issues: [issue])
        }
    }

    /// Validates playbook text; `file` is used in messages only.
    public static func parse(_ text: String, file: String) throws(MigrationError) -> Playbook {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw MigrationError(.playbookInvalid, "playbook \(file) is not valid YAML", path: file, issues: [yamlIssue(error, file: file, text: text)])
        }
        let reader = PlaybookReader(file: file)
        let playbook = reader.playbook(root)
        guard let playbook, reader.issues.isEmpty else {
            let count = reader.issues.count
            throw MigrationError(
                .playbookInvalid, "playbook \(file) is invalid (\(count) problem\(count == 1 ? "" : "s")):",
                path: file, issues: reader.issues
            )
        }
        return playbook
    }

    static func yamlIssue(_ error: any Error, file: String, text: String) -> MigrationError.Issue {
        let diagnosis = YAMLDiagnosis(error, text: text)
        return .init(file: file, line: diagnosis.line, column: diagnosis.column, key: diagnosis.key, message: diagnosis.message)
    }
}

/// The validating walk over the composed YAML. Collects issues; returns nil values where a field
/// is invalid so that the walk continues and reports every problem at once.
final class PlaybookReader {
    let file: String
    private(set) var issues: [MigrationError.Issue] = []

    init(file: String) { self.file = file }

    static let sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    // MARK: - Schema

    func playbook(_ root: Node?) -> Playbook? {
        guard let root else {
            issues.append(.init(
                file: file, line: 1, column: 1, key: "",
                message: "the playbook is empty: write at least version, name, source and target (docs/PLAYBOOKS.md)"
            ))
            return nil
        }
        guard let top = mapping(root, path: "", allowed: [
            "version", "name", "source", "target", "extensions", "thresholds", "application", "haproxy", "outputs", "sync", "shadow", "cutover", "complete", "on_failure",
        ], required: ["version", "name", "source", "target"]) else { return nil }

        let version = int(top, "version", range: 1...Int.max)
        if let version, version > Playbook.currentVersion {
            issue(top["version"], "version", "this pgha reads playbook version \(Playbook.currentVersion); got \(version): use the newer pgha it was written for, or write version: \(Playbook.currentVersion)")
        }
        let name = string(top, "name")
        let source = self.source(top["source"])
        let target = self.target(top["target"], sourceDatabases: source?.databases)
        let extensions = self.extensions(top["extensions"])
        let thresholds = self.thresholds(top["thresholds"])
        let application = self.application(top["application"])
        let haproxy = self.haproxy(top["haproxy"])
        let outputs = self.outputs(top["outputs"])
        let sync = self.sync(top["sync"], thresholds: thresholds, scope: target?.scope)
        let cutover = self.cutover(top["cutover"], haproxy: haproxy, replicationUser: target?.replicationUser)
        let complete = self.complete(top["complete"])
        let shadow = self.shadow(top["shadow"])
        let onFailure: Playbook.OnFailure = choice(top, "on_failure", Playbook.OnFailure.allCases.map(\.rawValue)).flatMap(Playbook.OnFailure.init(rawValue:)) ?? .stop

        if let target, let thresholds, thresholds.minMembers > target.apiHosts.count, !target.apiHosts.isEmpty {
            // Without thresholds.min_members the default applies: point at api_hosts instead.
            if let written = top["thresholds"]?["min_members"] {
                issue(written, "thresholds.min_members",
                      "requires \(thresholds.minMembers) members but target.api_hosts lists \(target.apiHosts.count): list every member's API in target.api_hosts, or lower min_members")
            } else {
                issue(top["target"]?["api_hosts"], "target.api_hosts",
                      "lists \(target.apiHosts.count) members but thresholds.min_members is \(thresholds.minMembers) by default: list every member's API here, or set a lower thresholds.min_members")
            }
        }
        guard let version, let name, let source, let target, let extensions, let thresholds, let application,
              let haproxy, let outputs, let sync, let cutover, let complete, let shadow else { return nil }
        return Playbook(
            version: version, name: name, source: source, target: target, extensions: extensions,
            thresholds: thresholds, application: application, haproxy: haproxy, outputs: outputs, sync: sync, cutover: cutover, complete: complete, shadow: shadow, onFailure: onFailure
        )
    }

    private func source(_ node: Node?) -> Playbook.Source? {
        guard let m = mapping(node, path: "source", allowed: [
            "host", "port", "user", "password", "admin_user", "admin_password", "sslmode", "sslrootcert", "sslcert", "sslkey",
            "databases", "shared_user", "shared_password",
        ], required: ["host", "user", "password", "databases"]) else { return nil }
        let host = hostName(m, "host")
        let c = connection(m, path: "source")
        let databases = self.databases(m["databases"], path: "source.databases", requireProject: true)
        let sharedUser = optionalString(m, "shared_user")
        let sharedPassword = optionalCredential(m, "shared_password")
        guard let host, let user = c.user, let password = c.password, let databases else { return nil }
        return Playbook.Source(
            host: host, port: c.port, user: user, password: password, adminUser: c.adminUser,
            adminPassword: c.adminPassword, sslmode: c.sslmode, sslrootcert: c.sslrootcert, sslcert: c.sslcert, sslkey: c.sslkey,
            databases: databases, sharedUser: sharedUser, sharedPassword: sharedPassword
        )
    }

    private func target(_ node: Node?, sourceDatabases: Playbook.Databases?) -> Playbook.Target? {
        guard let m = mapping(node, path: "target", allowed: [
            "scope", "api_hosts", "api_port", "api_scheme", "api_cafile", "api_cert", "api_key", "api_user", "api_password",
            "port", "user", "password", "admin_user", "admin_password", "sslmode", "sslrootcert", "sslcert", "sslkey",
            "databases", "etcd_hosts", "members", "replication_user", "patroni_dcs", "member_tls",
        ], required: ["user", "password"]) else { return nil }
        let scope = optionalString(m, "scope") ?? "pgha"
        let apiPort = int(m, "api_port", range: 1...65535) ?? 8008
        let members = m["members"] == nil ? [] : self.members(m["members"], apiPort: apiPort)
        let apiHosts: [Playbook.HostPort]?
        if m["api_hosts"] != nil {
            apiHosts = hostPortList(m, "api_hosts", defaultPort: apiPort, requireNonEmpty: true)
        } else if let members, !members.isEmpty {
            apiHosts = members.map { Playbook.HostPort(host: $0.host, port: $0.apiPort) }
        } else {
            if members != nil { issue(m.node, "target", "missing required key 'api_hosts': add api_hosts: (or members:) under target (docs/PLAYBOOKS.md)") }
            apiHosts = nil
        }
        if let members, let apiHosts, !members.isEmpty, m["api_hosts"] != nil,
           Set(members.map { Playbook.HostPort(host: $0.host, port: $0.apiPort) }) != Set(apiHosts) {
            issue(m["api_hosts"], "target.api_hosts", "lists other hosts than target.members: remove api_hosts to use the members' addresses")
        }
        let replicationUser = optionalString(m, "replication_user") ?? "replicator"
        let dcs = self.dcsTimings(m["patroni_dcs"])
        let apiScheme = choice(m, "api_scheme", ["http", "https"]) ?? "http"
        let apiCAFile = optionalString(m, "api_cafile")
        let apiCertFile = optionalString(m, "api_cert")
        let apiKeyFile = optionalString(m, "api_key")
        keyPair(m, cert: "api_cert", key: "api_key", path: "target")
        if apiScheme == "http" {
            for key in ["api_cafile", "api_cert", "api_key"] where m[key] != nil {
                issue(m[key], "target.\(key)", "is set but target.api_scheme is http: write api_scheme: https (the REST API's TLS), or remove it")
            }
        }
        let memberTLS = m["member_tls"] == nil ? nil : self.memberTLS(m["member_tls"])
        let apiUser = optionalString(m, "api_user")
        let apiPassword = optionalCredential(m, "api_password")
        let c = connection(m, path: "target")
        let databases: Playbook.Databases?
        if m["databases"] != nil {
            databases = self.databases(m["databases"], path: "target.databases", requireProject: true)
        } else {
            databases = sourceDatabases
        }
        let etcdHosts = m["etcd_hosts"] == nil ? [] : hostPortList(m, "etcd_hosts", defaultPort: 2379, requireNonEmpty: false)
        if apiUser != nil, apiPassword == nil {
            issue(m["api_user"], "target.api_user", "is set but target.api_password is not (write api_password: ${ENV_VAR})")
        }
        if m["member_tls"] != nil, memberTLS == nil { return nil }
        guard let apiHosts, let user = c.user, let password = c.password, let databases, let etcdHosts, let members, let dcs else { return nil }
        return Playbook.Target(
            scope: scope, apiHosts: apiHosts, apiPort: apiPort, apiScheme: apiScheme, apiCAFile: apiCAFile,
            apiCertFile: apiCertFile, apiKeyFile: apiKeyFile, apiUser: apiUser, apiPassword: apiPassword, port: c.port, user: user,
            password: password, adminUser: c.adminUser, adminPassword: c.adminPassword, sslmode: c.sslmode, sslrootcert: c.sslrootcert,
            sslcert: c.sslcert, sslkey: c.sslkey, databases: databases, etcdHosts: etcdHosts, members: members,
            replicationUser: replicationUser, dcs: dcs, memberTLS: memberTLS
        )
    }

    /// The fields a source and a target share: the port, the logins and the TLS files.
    private struct Connection {
        var port: Int
        var user: String?
        var password: EnvironmentReference?
        var adminUser: String?
        var adminPassword: EnvironmentReference?
        var sslmode: String?
        var sslrootcert, sslcert, sslkey: String?
    }

    private func connection(_ m: Fields, path: String) -> Connection {
        let connection = Connection(
            port: int(m, "port", range: 1...65535) ?? 5432, user: string(m, "user"), password: credential(m, "password"),
            adminUser: optionalString(m, "admin_user"), adminPassword: optionalCredential(m, "admin_password"),
            sslmode: choice(m, "sslmode", Self.sslModes), sslrootcert: optionalString(m, "sslrootcert"),
            sslcert: optionalString(m, "sslcert"), sslkey: optionalString(m, "sslkey"))
        keyPair(m, cert: "sslcert", key: "sslkey", path: path)
        return connection
    }

    /// A certificate without its key (or the reverse) is refused: libpq and libcurl would
    /// otherwise fail at the first connection with a less helpful message.
    private func keyPair(_ m: Fields, cert: String, key: String, path: String) {
        if m[cert] != nil, m[key] == nil {
            issue(m[cert], "\(path).\(cert)", "is set but \(path).\(key) is not: name the certificate's private key too")
        } else if m[key] != nil, m[cert] == nil {
            issue(m[key], "\(path).\(key)", "is set but \(path).\(cert) is not: name the certificate too")
        }
    }

    private func memberTLS(_ node: Node?) -> Playbook.MemberTLS? {
        guard let m = mapping(node, path: "target.member_tls", allowed: ["certfile", "keyfile", "cafile", "verify_client"],
                              required: ["certfile", "keyfile"]) else { return nil }
        let certFile = string(m, "certfile")
        let keyFile = string(m, "keyfile")
        let caFile = optionalString(m, "cafile")
        let verify = choice(m, "verify_client", Playbook.MemberTLS.VerifyClient.allCases.map(\.rawValue))
            .flatMap(Playbook.MemberTLS.VerifyClient.init(rawValue:))
        if verify != nil, verify != Playbook.MemberTLS.VerifyClient.none, caFile == nil {
            issue(m["verify_client"], "target.member_tls.verify_client", "needs target.member_tls.cafile: the CA that signs the clients' certificates")
        }
        guard let certFile, let keyFile else { return nil }
        return Playbook.MemberTLS(certFile: certFile, keyFile: keyFile, caFile: caFile, verifyClient: verify)
    }

    private func databases(_ node: Node?, path: String, requireProject: Bool) -> Playbook.Databases? {
        guard let m = mapping(node, path: path, allowed: ["project", "shared"], required: requireProject ? ["project"] : []) else { return nil }
        let project = identifier(m, "project")
        let shared = m["shared"] == nil ? nil : identifier(m, "shared")
        guard let project else { return nil }
        return Playbook.Databases(project: project, shared: shared)
    }

    private func extensions(_ node: Node?) -> Playbook.Extensions? {
        guard let node else { return Playbook.Extensions() }
        guard let m = mapping(node, path: "extensions", allowed: ["required", "min_versions"], required: []) else { return nil }
        var required: [String] = []
        if let list = m["required"] {
            guard let items = sequence(list, path: "extensions.required", what: "a list of extension names") else { return nil }
            for (i, item) in items.enumerated() {
                guard let name = scalarString(item, path: "extensions.required[\(i)]", what: "an extension name") else { continue }
                if !isExtensionName(name) {
                    issue(item, "extensions.required[\(i)]", "expected an extension name (letters, digits, _ and -), got \(UTF8Text.quoted(name))")
                } else if required.contains(name) {
                    issue(item, "extensions.required[\(i)]", "\(UTF8Text.quoted(name)) is listed twice: remove this one")
                } else {
                    required.append(name)
                }
            }
        }
        var minVersions: [String: String] = [:]
        if let versions = m["min_versions"] {
            guard let vm = versions.mapping else {
                issue(versions, "extensions.min_versions", "expected a mapping of extension name to version, got \(kind(of: versions))")
                return nil
            }
            for (key, value) in vm {
                let name = key.string ?? ""
                guard let version = scalarString(value, path: "extensions.min_versions.\(name)", what: "a version such as \"2.0\"") else { continue }
                if !isExtensionName(name) {
                    issue(key, "extensions.min_versions.\(name)", "expected an extension name (letters, digits, _ and -) as the key, got \(UTF8Text.quoted(name))")
                } else if !required.contains(name) {
                    issue(key, "extensions.min_versions.\(name)", "is not listed in extensions.required: add it there, or remove it here")
                }
                minVersions[name] = version
            }
        }
        return Playbook.Extensions(required: required, minVersions: minVersions)
    }

    private func thresholds(_ node: Node?) -> Playbook.Thresholds? {
        let defaults = Playbook.Thresholds()
        guard let node else { return defaults }
        guard let m = mapping(node, path: "thresholds", allowed: [
            "min_members", "max_lag_bytes", "max_transaction_age", "min_server_version", "connect_timeout",
        ], required: []) else { return nil }
        return Playbook.Thresholds(
            minMembers: int(m, "min_members", range: 1...100) ?? defaults.minMembers,
            maxLagBytes: bytes(m, "max_lag_bytes") ?? defaults.maxLagBytes,
            maxTransactionAgeSeconds: duration(m, "max_transaction_age") ?? defaults.maxTransactionAgeSeconds,
            minServerVersion: int(m, "min_server_version", range: 9...99) ?? defaults.minServerVersion,
            connectTimeoutSeconds: duration(m, "connect_timeout") ?? defaults.connectTimeoutSeconds
        )
    }

    private func application(_ node: Node?) -> Playbook.Application? {
        let d = Playbook.Application()
        guard let node else { return d }
        guard let m = mapping(node, path: "application", allowed: [
            "min_connections", "max_connections", "health_check_interval", "failover_timeout",
            "project_max_connections", "shared_max_connections",
        ], required: []) else { return nil }
        let app = Playbook.Application(
            minConnections: int(m, "min_connections", range: 0...10_000) ?? d.minConnections,
            maxConnections: int(m, "max_connections", range: 1...10_000) ?? d.maxConnections,
            healthCheckIntervalSeconds: wholeSeconds(m, "health_check_interval") ?? d.healthCheckIntervalSeconds,
            failoverTimeoutSeconds: wholeSeconds(m, "failover_timeout") ?? d.failoverTimeoutSeconds,
            projectMaxConnections: int(m, "project_max_connections", range: 1...10_000) ?? d.projectMaxConnections,
            sharedMaxConnections: int(m, "shared_max_connections", range: 1...10_000) ?? d.sharedMaxConnections
        )
        if app.minConnections > app.maxConnections {
            issue(m["min_connections"], "application.min_connections", "is larger than application.max_connections (\(app.minConnections) > \(app.maxConnections)): lower min_connections or raise max_connections")
        }
        return app
    }

    private func haproxy(_ node: Node?) -> Playbook.HAProxy? {
        let d = Playbook.HAProxy()
        guard let node else { return d }
        guard let m = mapping(node, path: "haproxy", allowed: ["bind_address", "primary_port", "replica_port", "stats_port"], required: []) else { return nil }
        let h = Playbook.HAProxy(
            bindAddress: (m["bind_address"] == nil ? nil : hostName(m, "bind_address")) ?? d.bindAddress,
            primaryPort: int(m, "primary_port", range: 1...65535) ?? d.primaryPort,
            replicaPort: int(m, "replica_port", range: 1...65535) ?? d.replicaPort,
            statsPort: int(m, "stats_port", range: 0...65535) ?? d.statsPort
        )
        if h.primaryPort == h.replicaPort || (h.statsPort != 0 && (h.statsPort == h.primaryPort || h.statsPort == h.replicaPort)) {
            issue(m.node, "haproxy", "primary_port, replica_port and stats_port must differ: choose three different ports (stats_port 0 turns the stats page off)")
        }
        return h
    }

    private func outputs(_ node: Node?) -> Playbook.Outputs? {
        let d = Playbook.Outputs()
        guard let node else { return d }
        let keys = ["env_file", "env_single_node_file", "config_yaml", "haproxy_cfg", "patroni_yml"]
        guard let m = mapping(node, path: "outputs", allowed: keys, required: []) else { return nil }
        let o = Playbook.Outputs(
            envFile: path(m, "env_file") ?? d.envFile,
            envSingleNodeFile: path(m, "env_single_node_file") ?? d.envSingleNodeFile,
            configYAML: path(m, "config_yaml") ?? d.configYAML,
            haproxyCfg: path(m, "haproxy_cfg") ?? d.haproxyCfg,
            patroniYML: path(m, "patroni_yml") ?? d.patroniYML
        )
        let all = [o.envFile, o.envSingleNodeFile, o.configYAML, o.haproxyCfg, o.patroniYML]
        for (i, key) in keys.enumerated() where all[..<i].contains(all[i]) {
            issue(m[key] ?? m.node, "outputs.\(key)", "\(UTF8Text.quoted(all[i])) is already used by another output: choose a file of its own")
        }
        return o
    }

    // MARK: - Helpers

    func issue(_ node: Node?, _ key: String, _ message: String) {
        let mark = node?.mark
        issues.append(.init(file: file, line: mark?.line, column: mark?.column, key: UTF8Text.escaped(key), message: message))
    }
}
