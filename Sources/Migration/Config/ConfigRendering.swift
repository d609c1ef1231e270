import Foundation
import Mustache

/// The four Mustache templates the config stage renders: `app.env`, `config.yaml`, `haproxy.cfg`,
/// `patroni.yml` (files `templates/<name>.mustache`).
///
/// pgha carries a built-in copy of templates/ (so the binary works on its own); `load(directory:)`
/// reads an operator's edited copy instead. Rendering uses swift-mustache (`MustacheTemplate`);
/// every template starts with `{{% CONTENT_TYPE: TEXT}}` so nothing is HTML-escaped.
public struct TemplateSet: Sendable {
    /// The template names, in rendering order.
    public static let names = ["app.env", "config.yaml", "haproxy.cfg", "patroni.yml"]

    /// Where the templates came from: "built-in" or a directory.
    public let origin: String
    let templates: [String: MustacheTemplate]

    /// The templates compiled into pgha (identical to the repository's templates/).
    public static func builtin() throws(MigrationError) -> TemplateSet {
        try TemplateSet(origin: "built-in", texts: BuiltinTemplates.all)
    }

    /// Reads `<directory>/<name>.mustache` for every name; all four must exist.
    public static func load(directory: String) throws(MigrationError) -> TemplateSet {
        var texts: [String: String] = [:]
        for name in names {
            let path = directory + "/" + name + ".mustache"
            guard let snapshot = try FileIO.read(path) else {
                throw MigrationError(.templateInvalid, "template \(path) does not exist", path: path)
            }
            guard let text = String(data: snapshot.contents, encoding: .utf8) else {
                throw MigrationError(.templateInvalid, "template \(path) is not UTF-8 text", path: path)
            }
            texts[name] = text
        }
        return try TemplateSet(origin: directory, texts: texts)
    }

    init(origin: String, texts: [String: String]) throws(MigrationError) {
        var templates: [String: MustacheTemplate] = [:]
        for name in Self.names {
            guard let text = texts[name] else {
                throw MigrationError(.templateInvalid, "template \(name) is missing from \(origin)")
            }
            do {
                templates[name] = try MustacheTemplate(string: text)
            } catch let error as MustacheTemplate.ParserError {
                throw MigrationError(
                    .templateInvalid,
                    "template \(name).mustache (\(origin)) line \(error.context.lineNumber), column \(error.context.columnNumber): \(error.error)"
                )
            } catch {
                throw MigrationError(.templateInvalid, "template \(name).mustache (\(origin)): \(error)")
            }
        }
        self.origin = origin
        self.templates = templates
    }

    /// Renders template `name` with `context` (dictionaries, arrays, strings, numbers, booleans).
    func render(_ name: String, _ context: [String: Any]) -> String {
        guard let template = templates[name] else { preconditionFailure("unknown template \(name)") }
        return template.render(context)
    }
}

/// One file the config stage generates.
public struct RenderedFile: Hashable, Sendable {
    /// The playbook's output key: `env_file`, `env_single_node_file`, `config_yaml`, `haproxy_cfg`, `patroni_yml`.
    public var key: String
    /// Absolute path.
    public var path: String
    public var contents: String
    /// 0600 when the file holds a secret, 0644 otherwise.
    public var mode: UInt16
    /// True for the `.env` files, which hold resolved passwords (the application needs them).
    public var holdsSecrets: Bool

    public init(key: String, path: String, contents: String, mode: UInt16, holdsSecrets: Bool) {
        self.key = key
        self.path = path
        self.contents = contents
        self.mode = mode
        self.holdsSecrets = holdsSecrets
    }
}

/// Turns a playbook into the contents of the generated files. Pure apart from reading the
/// environment for the `${VAR}` credentials.
public struct ConfigRenderer: Sendable {
    public var playbook: Playbook
    public var templates: TemplateSet
    /// Relative output paths are resolved against this directory.
    public var workingDirectory: String

    public init(playbook: Playbook, templates: TemplateSet, workingDirectory: String) {
        self.playbook = playbook
        self.templates = templates
        self.workingDirectory = workingDirectory
    }

    /// The absolute path of an output path from the playbook.
    public func absolutePath(_ path: String) -> String {
        Self.absolutePath(path, in: workingDirectory)
    }

    /// `path` made absolute against `workingDirectory` (the first run's, for a resumed migration).
    public static func absolutePath(_ path: String, in workingDirectory: String) -> String {
        let joined = path.hasPrefix("/") ? path : workingDirectory + "/" + path
        return (joined as NSString).standardizingPath
    }

    /// Renders every output.
    /// - Parameter placeholdersForMissingSecrets: for a dry run: an unset `${VAR}` renders as
    ///   `<unset: ${VAR}>` instead of throwing.
    /// - Throws: `.environmentVariableMissing` naming the variable and key (never a value).
    public func render(environment: some EnvironmentProviding, placeholdersForMissingSecrets: Bool = false) throws(MigrationError) -> [RenderedFile] {
        func secret(_ reference: EnvironmentReference, _ key: String) throws(MigrationError) -> String {
            if placeholdersForMissingSecrets, (environment.value(of: reference.variable) ?? "").isEmpty {
                return "<unset: \(reference)>"
            }
            return try reference.resolve(in: environment, key: key)
        }
        let p = playbook
        let source = p.source
        let target = p.target

        // Values for .env files, quoted for the .env syntax.
        let env = EnvFileSyntax.quote
        var project: [String: Any] = [
            "host": env(source.host), "port": String(source.port), "name": env(source.databases.project),
            "user": env(source.user), "password": env(try secret(source.password, "source.password")),
            "max_connections": String(p.application.projectMaxConnections),
        ]
        // The single node's TLS, for both of its databases.
        var sourceTLS: [String: Any] = [:]
        if let v = source.sslmode { sourceTLS["sslmode"] = env(v) }
        if let v = source.sslrootcert { sourceTLS["sslrootcert"] = env(v) }
        if let v = source.sslcert { sourceTLS["sslcert"] = env(v) }
        if let v = source.sslkey { sourceTLS["sslkey"] = env(v) }
        project.merge(sourceTLS) { _, new in new }
        var shared: [String: Any]?
        if let sharedName = source.databases.shared {
            var s: [String: Any] = [
                "host": env(source.host), "port": String(source.port), "name": env(sharedName),
                "user": env(source.sharedUser ?? source.user),
                "password": env(try secret(source.sharedPassword ?? source.password, source.sharedPassword == nil ? "source.password" : "source.shared_password")),
                "max_connections": String(p.application.sharedMaxConnections),
            ]
            s.merge(sourceTLS) { _, new in new }
            shared = s
        }
        let hostList = target.apiHosts.map { $0.port == target.apiPort ? Self.bracketed($0.host) : $0.description }
        var patroni: [String: Any] = [
            "hosts": env(hostList.joined(separator: ",")), "api_port": String(target.apiPort),
            "database": env(target.databases.project), "user": env(target.user),
            "password": env(try secret(target.password, "target.password")),
            "min_connections": String(p.application.minConnections), "max_connections": String(p.application.maxConnections),
            "health_check_interval": String(p.application.healthCheckIntervalSeconds),
            "failover_timeout": String(p.application.failoverTimeoutSeconds),
            "max_replica_lag": String(p.thresholds.maxLagBytes),
        ]
        if target.apiScheme == "https" { patroni["api_scheme"] = "https" }
        if let v = target.apiCAFile { patroni["api_cafile"] = env(v) }
        if let cert = target.apiCertFile, let key = target.apiKeyFile {
            patroni["api_certfile"] = env(cert)
            patroni["api_keyfile"] = env(key)
        }
        if let user = target.apiUser, let password = target.apiPassword {
            patroni["api_user"] = env(user)
            patroni["api_password"] = env(try secret(password, "target.api_password"))
        }
        if let v = target.databases.shared { patroni["shared_database"] = env(v) }
        if let v = target.sslmode { patroni["sslmode"] = env(v) }
        if let v = target.sslrootcert { patroni["sslrootcert"] = env(v) }
        if let v = target.sslcert { patroni["sslcert"] = env(v) }
        if let v = target.sslkey { patroni["sslkey"] = env(v) }

        // Values for YAML, quoted for YAML.
        let yamlScalar = YAMLSyntax.scalar
        var yaml: [String: Any] = [
            "api_hosts": hostList.map(yamlScalar), "api_port": String(target.apiPort),
            "database": yamlScalar(target.databases.project), "user": yamlScalar(target.user),
            "min_connections": String(p.application.minConnections), "max_connections": String(p.application.maxConnections),
            "health_check_interval": String(p.application.healthCheckIntervalSeconds),
            "failover_timeout": String(p.application.failoverTimeoutSeconds),
        ]
        if let v = target.databases.shared { yaml["shared_database"] = yamlScalar(v) }
        if let v = target.apiUser, target.apiPassword != nil { yaml["api_user"] = yamlScalar(v) }
        if target.apiScheme == "https" { yaml["api_scheme"] = "https" }
        if let v = target.apiCAFile { yaml["api_cafile"] = yamlScalar(v) }
        if let cert = target.apiCertFile, let key = target.apiKeyFile {
            yaml["api_certfile"] = yamlScalar(cert)
            yaml["api_keyfile"] = yamlScalar(key)
        }
        if let v = target.sslmode { yaml["sslmode"] = yamlScalar(v) }
        if let v = target.sslrootcert { yaml["sslrootcert"] = yamlScalar(v) }
        if let v = target.sslcert { yaml["sslcert"] = yamlScalar(v) }
        if let v = target.sslkey { yaml["sslkey"] = yamlScalar(v) }

        // Members, for haproxy.cfg and patroni.yml.
        let members: [[String: Any]] = target.members.map { m in
            var member: [String: Any] = [
                "name": Self.oneLine(m.name), "host": Self.bracketed(m.host), "pg_port": String(target.port), "api_port": String(m.apiPort),
            ]
            if target.apiScheme == "https" {
                member["check_ssl"] = ["verify": target.apiCAFile.map { "required ca-file \($0)" } ?? "none"]
            }
            return member
        }
        var haproxy: [String: Any] = [
            "scope": Self.oneLine(target.scope), "bind_address": p.haproxy.bindAddress,
            "primary_port": String(p.haproxy.primaryPort), "replica_port": String(p.haproxy.replicaPort),
            "members": members,
        ]
        if p.haproxy.statsPort != 0 { haproxy["stats_port"] = String(p.haproxy.statsPort) }
        var patroniYML: [String: Any] = [
            "scope": yamlScalar(target.scope), "members": members, "api_port": String(target.apiPort),
            "pg_port": String(target.port), "max_lag_bytes": String(p.thresholds.maxLagBytes),
            "has_etcd": !target.etcdHosts.isEmpty, "etcd_hosts": target.etcdHosts.map { yamlScalar($0.description) },
            "superuser": yamlScalar(target.adminUser ?? "postgres"), "replication_user": yamlScalar(target.replicationUser),
            "ttl": String(target.dcs.ttl), "loop_wait": String(target.dcs.loopWait), "retry_timeout": String(target.dcs.retryTimeout),
        ]
        if let v = target.apiUser { patroniYML["api_user"] = yamlScalar(v) }
        if let tls = target.memberTLS {
            var t: [String: Any] = [
                "certfile": yamlScalar(tls.certFile), "keyfile": yamlScalar(tls.keyFile),
                "verify_client": tls.verifyClient.rawValue,
            ]
            if let ca = tls.caFile { t["cafile"] = yamlScalar(ca) }
            // The members' replication connections (to each other, and the standby cluster's to
            // the single node) verify as pgha does the single node, against member_tls.cafile.
            if let mode = source.sslmode {
                t["replication_sslmode"] = yamlScalar(mode)
                if mode.hasPrefix("verify"), let ca = tls.caFile { t["replication_sslrootcert"] = yamlScalar(ca) }
            }
            patroniYML["tls"] = t
        }
        if p.sync.method == .physical {
            patroniYML["standby"] = [
                "source_host": yamlScalar(source.host), "source_port": String(source.port), "slot": yamlScalar(p.sync.slot),
            ]
        }

        var base: [String: Any] = [
            "playbook_name": Self.oneLine(p.name), "project": project, "patroni": patroni, "yaml": yaml,
            "haproxy": haproxy, "patroni_yml": patroniYML,
        ]
        if let shared { base["shared"] = shared }

        func variant(patroniMode: Bool) -> [String: Any] {
            var context = base
            context["patroni_mode"] = patroniMode
            context["enable_patroni"] = patroniMode ? "true" : "false"
            context["variant"] = patroniMode ? "Patroni" : "single-node"
            return context
        }
        let o = p.outputs
        return [
            RenderedFile(key: "env_single_node_file", path: absolutePath(o.envSingleNodeFile),
                         contents: templates.render("app.env", variant(patroniMode: false)), mode: 0o600, holdsSecrets: true),
            RenderedFile(key: "env_file", path: absolutePath(o.envFile),
                         contents: templates.render("app.env", variant(patroniMode: true)), mode: 0o600, holdsSecrets: true),
            RenderedFile(key: "config_yaml", path: absolutePath(o.configYAML),
                         contents: templates.render("config.yaml", base), mode: 0o644, holdsSecrets: false),
            RenderedFile(key: "haproxy_cfg", path: absolutePath(o.haproxyCfg),
                         contents: templates.render("haproxy.cfg", base), mode: 0o644, holdsSecrets: false),
            RenderedFile(key: "patroni_yml", path: absolutePath(o.patroniYML),
                         contents: templates.render("patroni.yml", base), mode: 0o644, holdsSecrets: false),
        ]
    }

    /// `[v6]` for an IPv6 address, the host otherwise.
    static func bracketed(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }

    /// Text safe inside a one-line comment.
    static func oneLine(_ text: String) -> String {
        text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
    }
}

/// Quoting for `.env` values, matching what python-dotenv and HAPool's `DotEnv` read back.
public enum EnvFileSyntax {
    /// A value as written after `KEY=`: bare when it has only safe characters, in single quotes
    /// (literal) when it has no `'` or newline, else in double quotes with `\\`, `\"`, `\n`, `\t`
    /// escaped.
    public static func quote(_ value: String) -> String {
        let safe = value.unicodeScalars.allSatisfy { scalar in
            ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                || "_.,:/@%+-=".unicodeScalars.contains(scalar)
        }
        if !value.isEmpty && safe { return value }
        if !value.contains("'") && !value.contains("\n") && !value.contains("\r") { return "'" + value + "'" }
        var out = "\""
        for character in value {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default: out.append(character)
            }
        }
        return out + "\""
    }
}

/// Quoting for YAML scalars.
public enum YAMLSyntax {
    private static let reserved: Set<String> = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ]

    /// Plain when unambiguous (letters, digits, `_`, `-`, `.`, not a number, boolean or null),
    /// double-quoted with JSON-style escapes otherwise.
    public static func scalar(_ value: String) -> String {
        let plainCharacters = value.unicodeScalars.allSatisfy { s in
            ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s) || s == "_" || s == "-" || s == "."
        }
        // Digits, dots, signs and underscores only: some YAML 1.1 resolvers read "127.0.0.1" as a float.
        let looksNumeric = value.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || "._+-".unicodeScalars.contains($0) }
            || Double(value) != nil || value.lowercased().hasPrefix("0x") || value.hasPrefix(".")
        let startsOK = value.first.map { $0.isLetter || $0.isNumber } ?? false
        if !value.isEmpty, plainCharacters, startsOK, !looksNumeric, !reserved.contains(value.lowercased()) {
            return value
        }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 {
                    out += "\\x" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
