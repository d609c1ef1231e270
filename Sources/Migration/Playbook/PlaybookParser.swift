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
        let port = int(m, "port", range: 1...65535) ?? 5432
        let user = string(m, "user")
        let password = credential(m, "password")
        let adminUser = optionalString(m, "admin_user")
        let adminPassword = optionalCredential(m, "admin_password")
        let sslmode = choice(m, "sslmode", Self.sslModes)
        let sslrootcert = optionalString(m, "sslrootcert")
        let sslcert = optionalString(m, "sslcert")
        let sslkey = optionalString(m, "sslkey")
        keyPair(m, cert: "sslcert", key: "sslkey", path: "source")
        let databases = self.databases(m["databases"], path: "source.databases", requireProject: true)
        let sharedUser = optionalString(m, "shared_user")
        let sharedPassword = optionalCredential(m, "shared_password")
        guard let host, let user, let password, let databases else { return nil }
        return Playbook.Source(
            host: host, port: port, user: user, password: password, adminUser: adminUser,
            adminPassword: adminPassword, sslmode: sslmode, sslrootcert: sslrootcert, sslcert: sslcert, sslkey: sslkey,
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
        let port = int(m, "port", range: 1...65535) ?? 5432
        let user = string(m, "user")
        let password = credential(m, "password")
        let adminUser = optionalString(m, "admin_user")
        let adminPassword = optionalCredential(m, "admin_password")
        let sslmode = choice(m, "sslmode", Self.sslModes)
        let sslrootcert = optionalString(m, "sslrootcert")
        let sslcert = optionalString(m, "sslcert")
        let sslkey = optionalString(m, "sslkey")
        keyPair(m, cert: "sslcert", key: "sslkey", path: "target")
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
        guard let apiHosts, let user, let password, let databases, let etcdHosts, let members, let dcs else { return nil }
        return Playbook.Target(
            scope: scope, apiHosts: apiHosts, apiPort: apiPort, apiScheme: apiScheme, apiCAFile: apiCAFile,
            apiCertFile: apiCertFile, apiKeyFile: apiKeyFile, apiUser: apiUser, apiPassword: apiPassword, port: port, user: user, password: password,
            adminUser: adminUser, adminPassword: adminPassword, sslmode: sslmode, sslrootcert: sslrootcert,
            sslcert: sslcert, sslkey: sslkey, databases: databases, etcdHosts: etcdHosts, members: members,
            replicationUser: replicationUser, dcs: dcs, memberTLS: memberTLS
        )
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

    // MARK: - Typed fields

    /// A mapping node with its key path.
    struct Fields {
        let node: Node
        let path: String
        let mapping: Node.Mapping

        subscript(key: String) -> Node? { mapping[key] }

        func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    }

    func mapping(_ node: Node?, path: String, allowed: [String], required: [String]) -> Fields? {
        guard let node else {
            // A required section that is absent was reported, with its place, by its parent.
            let name = path.split(separator: ".").last.map(String.init) ?? path
            if !issues.contains(where: { $0.message.hasPrefix("missing required key '\(name)'") }) {
                issue(nil, path, "is missing: add it (docs/PLAYBOOKS.md)")
            }
            return nil
        }
        guard let mapping = node.mapping else {
            issue(node, path, "expected a mapping, got \(kind(of: node))")
            return nil
        }
        let fields = Fields(node: node, path: path, mapping: mapping)
        for key in mapping.keys {
            guard let name = key.string, key.scalar != nil else {
                issue(key, path, "keys must be plain names, got \(kind(of: key)): write the key as a word")
                continue
            }
            if !allowed.contains(name) {
                let hint = Self.closest(to: name, in: allowed).map { " (did you mean '\($0)'?)" }
                    ?? " (known keys: \(allowed.joined(separator: ", ")))"
                issue(key, fields.keyPath(name), "unknown key" + hint)
            }
        }
        for key in required where mapping[key] == nil {
            issue(node, path, "missing required key '\(key)': add \(key): under \(path.isEmpty ? "the top level" : path) (docs/PLAYBOOKS.md)")
        }
        return fields
    }

    func sequence(_ node: Node, path: String, what: String) -> [Node]? {
        guard let sequence = node.sequence else {
            issue(node, path, "expected \(what), got \(kind(of: node))")
            return nil
        }
        return Array(sequence)
    }

    /// A non-empty string from a scalar (numbers are accepted as their text, e.g. a version `2.0`).
    func scalarString(_ node: Node, path: String, what: String) -> String? {
        guard let scalar = node.scalar, node.null == nil else {
            issue(node, path, "expected \(what), got \(kind(of: node))")
            return nil
        }
        let text = scalar.string.trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty else {
            issue(node, path, "expected \(what), got an empty string")
            return nil
        }
        if let hidden = UTF8Text.firstHiddenCharacter(in: text) {
            issue(node, path, "the value contains the control or invisible character \(hidden): remove it (an editor may not show it)")
            return nil
        }
        return text
    }

    func string(_ m: Fields, _ key: String) -> String? {
        guard let node = m[key] else { return nil }
        guard node.scalar != nil, node.string != nil, node.null == nil, node.bool == nil || node.scalar?.style != .plain else {
            issue(node, m.keyPath(key), "expected a string, got \(kind(of: node))")
            return nil
        }
        return scalarString(node, path: m.keyPath(key), what: "a string")
    }

    func optionalString(_ m: Fields, _ key: String) -> String? {
        m[key] == nil ? nil : string(m, key)
    }

    func identifier(_ m: Fields, _ key: String) -> String? {
        guard let value = string(m, key) else { return nil }
        guard !value.contains(where: { $0.isWhitespace || $0 == "/" || $0 == "\"" || $0 == "'" }) else {
            issue(m[key], m.keyPath(key), "expected a database name without spaces, slashes or quotes, got \(UTF8Text.quoted(value))")
            return nil
        }
        guard value.utf8.count <= 63 else {
            issue(m[key], m.keyPath(key), "expected a database name of at most 63 bytes (PostgreSQL's limit), got \(value.utf8.count) bytes")
            return nil
        }
        return value
    }

    func path(_ m: Fields, _ key: String) -> String? {
        guard m[key] != nil, let value = string(m, key) else { return nil }
        if value.hasSuffix("/") {
            issue(m[key], m.keyPath(key), "expected a file path, got a directory (\(UTF8Text.quoted(value)))")
            return nil
        }
        return value
    }

    func hostName(_ m: Fields, _ key: String) -> String? {
        guard let value = string(m, key) else { return nil }
        guard Self.isHostName(value) else {
            issue(m[key], m.keyPath(key), "expected a host name or an IP address (no spaces, /, @, ?, # or quotes), got \(UTF8Text.quoted(value))")
            return nil
        }
        return value
    }

    func int(_ m: Fields, _ key: String, range: ClosedRange<Int>) -> Int? {
        guard let node = m[key] else { return nil }
        guard let scalar = node.scalar, let value = Int(scalar.string.trimmingCharacters(in: .whitespaces)) else {
            issue(node, m.keyPath(key), "expected a whole number, got \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            let bounds = range.upperBound == Int.max ? "at least \(range.lowerBound)" : "between \(range.lowerBound) and \(range.upperBound)"
            issue(node, m.keyPath(key), "expected a whole number \(bounds), got \(value)")
            return nil
        }
        return value
    }

    func choice(_ m: Fields, _ key: String, _ values: [String]) -> String? {
        guard let node = m[key] else { return nil }
        guard let text = node.scalar?.string, node.null == nil, values.contains(text) else {
            let got = node.scalar.map { UTF8Text.quoted($0.string) } ?? kind(of: node)
            issue(node, m.keyPath(key), "expected one of \(values.joined(separator: ", ")), got \(got)")
            return nil
        }
        return text
    }

    /// Seconds from `300`, `300s`, `250ms`, `5m`, `1h`.
    func duration(_ m: Fields, _ key: String) -> Double? {
        guard let node = m[key] else { return nil }
        guard let text = node.scalar?.string, let seconds = Self.parseDuration(text), seconds > 0 else {
            issue(node, m.keyPath(key), "expected a duration such as 300s, 250ms, 5m or 1h, got \(describe(node))")
            return nil
        }
        return seconds
    }

    func wholeSeconds(_ m: Fields, _ key: String) -> Int? {
        guard let seconds = duration(m, key) else { return nil }
        guard seconds >= 1, seconds == seconds.rounded() else {
            issue(m[key], m.keyPath(key), "expected whole seconds (the application reads seconds), got \(seconds)s")
            return nil
        }
        return Int(seconds)
    }

    /// Bytes from `1048576`, `512kB`, `16MB`, `1GB` (base 1024, as PostgreSQL).
    func bytes(_ m: Fields, _ key: String) -> Int64? {
        guard let node = m[key] else { return nil }
        guard let text = node.scalar?.string, let value = parseBytes(text) else {
            issue(node, m.keyPath(key), "expected a size in bytes such as 1048576, 512kB or 16MB, got \(describe(node))")
            return nil
        }
        return value
    }

    func credential(_ m: Fields, _ key: String) -> EnvironmentReference? {
        guard let node = m[key] else { return nil }
        let path = m.keyPath(key)
        guard let scalar = node.scalar, node.null == nil else {
            issue(node, path, "expected an environment variable reference such as ${PATRONI_PASSWORD}, got \(kind(of: node))")
            return nil
        }
        if let reference = EnvironmentReference(parsing: scalar.string.trimmingCharacters(in: .whitespaces)) {
            return reference
        }
        if scalar.string.contains("${") || scalar.string.contains("$") {
            issue(node, path, "expected exactly one ${ENV_VAR} reference (letters, digits and _), e.g. ${PATRONI_PASSWORD}")
        } else {
            issue(node, path, "a literal password is not allowed in a playbook; write ${ENV_VAR} and export the variable (the value is not repeated here)")
        }
        return nil
    }

    func optionalCredential(_ m: Fields, _ key: String) -> EnvironmentReference? {
        m[key] == nil ? nil : credential(m, key)
    }

    func hostPortList(_ m: Fields, _ key: String, defaultPort: Int, requireNonEmpty: Bool) -> [Playbook.HostPort]? {
        guard let node = m[key] else { return nil }
        let path = m.keyPath(key)
        guard let items = node.sequence else {
            issue(node, path, "expected a list of host[:port], got \(kind(of: node))")
            return nil
        }
        if requireNonEmpty && items.isEmpty {
            issue(node, path, "expected at least one host[:port]")
            return nil
        }
        var result: [Playbook.HostPort] = []
        var valid = true
        for (i, item) in items.enumerated() {
            guard let text = item.scalar?.string, item.null == nil, let hp = Self.parseHostPort(text, defaultPort: defaultPort) else {
                issue(item, "\(path)[\(i)]", "expected host or host:port, got \(describe(item))")
                valid = false
                continue
            }
            if result.contains(hp) {
                issue(item, "\(path)[\(i)]", "\(hp) is listed twice: remove this one")
                valid = false
            }
            result.append(hp)
        }
        return valid ? result : nil
    }

    // MARK: - Helpers

    func issue(_ node: Node?, _ key: String, _ message: String) {
        let mark = node?.mark
        issues.append(.init(file: file, line: mark?.line, column: mark?.column, key: UTF8Text.escaped(key), message: message))
    }

    func kind(of node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if scalar.style == .plain || scalar.style == .any {
                if node.null != nil { return "nothing (null)" }
                if node.bool != nil { return "a boolean" }
                if node.int != nil || node.float != nil { return "a number" }
            }
            return scalar.string.isEmpty ? "an empty string" : "a string"
        }
    }

    /// The node's kind, and for a short scalar its text.
    func describe(_ node: Node) -> String {
        if let scalar = node.scalar, node.null == nil {
            return "\(kind(of: node)) (\(UTF8Text.quoted(scalar.string, limit: 40)))"
        }
        return kind(of: node)
    }

    func isExtensionName(_ name: String) -> Bool {
        !name.isEmpty && name.unicodeScalars.allSatisfy { $0 == "_" || $0 == "-" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }

    static func isHostName(_ text: String) -> Bool {
        guard text.utf8.count <= 253, !text.unicodeScalars.contains(where: UTF8Text.isHidden) else { return false }
        return !text.isEmpty && text != "*" ? !text.contains(where: { $0.isWhitespace || "/@?#\"'".contains($0) }) : text == "*"
    }

    static func parseHostPort(_ raw: String, defaultPort: Int) -> Playbook.HostPort? {
        let text = raw.trimmingCharacters(in: .whitespaces)
        var host = text
        var port = defaultPort
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { return nil }
                port = p
            }
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            host = String(text[..<colon])
            guard let p = Int(text[text.index(after: colon)...]) else { return nil }
            port = p
        }
        guard !host.isEmpty, host != "*", isHostName(host), (1...65535).contains(port) else { return nil }
        return Playbook.HostPort(host: host, port: port)
    }

    static func parseDuration(_ raw: String) -> Double? {
        let text = raw.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value.isFinite, value >= 0 else { return nil }
            return value * factor
        }
        guard let value = Double(text), value.isFinite, value >= 0 else { return nil }
        return value
    }

    /// The known key closest to `word` by edit distance, if close enough to be a typo.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let limit = max(1, min(3, word.count / 3))
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0)) }.filter { $0.1 <= limit }
        return scored.min { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }?.0
    }

    /// Levenshtein distance.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
