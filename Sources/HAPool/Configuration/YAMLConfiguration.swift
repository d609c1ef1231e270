public import Foundation
import PlainText
import Yams

/// The seed's YAML block (`.claude-flow/config.yaml`):
///
/// ```yaml
/// memory:
///   postgresql:
///     mode: patroni-ha          # or single-node
///     patroni:
///       enabled: true
///       apiHosts: [node1, node2, node3]
///       apiPort: 8008
///       database: distributed_postgres_cluster
///       sharedDatabase: shared_knowledge
///       user: dpg_cluster
///       password: ${PATRONI_PASSWORD}
///       minConnections: 2
///       maxConnections: 20
///       healthCheckInterval: 30
///       failoverTimeout: 30
/// ```
///
/// Each key maps onto its environment variable (`apiHosts` → `PATRONI_HOSTS`, …) and is validated by
/// `EnvironmentConfiguration`, so both sources accept exactly the same values; errors name the file,
/// the line and column, and the YAML key, and never quote the file's text. `${VAR}` references are
/// expanded from the environment; a password written literally in the file is accepted but
/// discouraged (docs/POOL.md).
public enum YAMLConfiguration {
    static let patroniKeys: [String: String] = [
        "apiHosts": "PATRONI_HOSTS", "apiPort": "PATRONI_PORT", "database": "PATRONI_DB",
        "sharedDatabase": "PATRONI_SHARED_DB", "user": "PATRONI_USER", "password": "PATRONI_PASSWORD",
        "minConnections": "PATRONI_MIN_CONNECTIONS", "maxConnections": "PATRONI_MAX_CONNECTIONS",
        "healthCheckInterval": "PATRONI_HEALTH_CHECK_INTERVAL", "failoverTimeout": "PATRONI_FAILOVER_TIMEOUT",
        "sslmode": "PATRONI_SSLMODE", "sslrootcert": "PATRONI_SSLROOTCERT", "sslcert": "PATRONI_SSLCERT",
        "sslkey": "PATRONI_SSLKEY", "apiUser": "PATRONI_API_USER", "apiPassword": "PATRONI_API_PASSWORD",
        "apiScheme": "PATRONI_API_SCHEME", "apiCaFile": "PATRONI_API_CAFILE", "apiCertFile": "PATRONI_API_CERTFILE", "apiKeyFile": "PATRONI_API_KEYFILE",
        "maxReplicaLag": "PATRONI_MAX_REPLICA_LAG", "replicaFallback": "PATRONI_REPLICA_FALLBACK",
        "maxRetries": "PATRONI_MAX_RETRIES",
    ]
    static let singleNodeKeys: [String: String] = [
        "host": "HOST", "port": "PORT", "database": "NAME", "user": "USER", "password": "PASSWORD",
        "minConnections": "MIN_CONNECTIONS", "maxConnections": "MAX_CONNECTIONS", "sslmode": "SSLMODE",
        "sslrootcert": "SSLROOTCERT", "sslcert": "SSLCERT", "sslkey": "SSLKEY",
    ]

    /// Parses the YAML text and returns the pools configuration; `file` names the text in errors.
    public static func dualPools(
        yaml: String, environment: [String: String] = ProcessInfo.processInfo.environment, file: String = "config.yaml"
    ) throws(ConfigurationError) -> DualPoolsConfig {
        let (variables, places) = try variables(yaml: yaml, environment: environment, file: file)
        do {
            return try EnvironmentConfiguration(variables).dualPools()
        } catch {
            // Name the YAML key, and where it is (or, for a missing key, the block it belongs in).
            let place = places[error.key] ?? places[missingKeyBlock(of: error.key)] ?? places["<block>"]
            var renamed = error.located(file: file, line: place?.line, column: place?.column)
            renamed.key = places[error.key]?.key ?? yamlKey(of: error.key) ?? error.key
            throw renamed
        }
    }

    /// Reads the file at `path` (UTF-8; a leading byte order mark is allowed).
    public static func dualPools(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> DualPoolsConfig {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigurationError(
                .unreadableFile, key: "", "cannot read the file (\(error.localizedDescription)): check that it exists and is readable",
                file: path
            )
        }
        return try dualPools(bytes: Array(data), environment: environment, file: path)
    }

    /// Parses the bytes of a YAML file.
    static func dualPools(bytes: [UInt8], environment: [String: String], file: String) throws(ConfigurationError) -> DualPoolsConfig {
        switch UTF8Text.decode(bytes) {
        case .success(let text):
            return try dualPools(yaml: text, environment: environment, file: file)
        case .failure(let invalid):
            throw ConfigurationError(.unreadableFile, key: "", "\(invalid): save the file as UTF-8", file: file, line: invalid.line, column: invalid.column)
        }
    }

    /// Where a variable was written: its YAML key and the position of its value.
    struct Place: Hashable {
        var key: String
        var line: Int?
        var column: Int?
    }

    static let base = "memory.postgresql"

    /// The YAML key of an environment variable, e.g. `PATRONI_PORT` → `memory.postgresql.patroni.apiPort`.
    static func yamlKey(of variable: String) -> String? {
        if let key = patroniKeys.first(where: { $0.value == variable })?.key { return "\(base).patroni.\(key)" }
        for (prefix, section) in [("PROJECT_DB_", "project"), ("SHARED_DB_", "shared")] where variable.hasPrefix(prefix) {
            let rest = String(variable.dropFirst(prefix.count))
            if let key = singleNodeKeys.first(where: { $0.value == rest })?.key { return "\(base).\(section).\(key)" }
        }
        return nil
    }

    /// The pseudo-variable under which the block that should hold `variable` is recorded.
    static func missingKeyBlock(of variable: String) -> String {
        if variable.hasPrefix("PROJECT_DB_") { return "<project>" }
        if variable.hasPrefix("SHARED_DB_") { return "<shared>" }
        if variable.hasPrefix("PATRONI_") { return "<patroni>" }
        return "<block>"
    }

    /// The environment-variable view of the YAML block, and for each variable where it was written.
    static func variables(yaml: String, environment: [String: String], file: String) throws(ConfigurationError) -> ([String: String], [String: Place]) {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            // Never the error's own description: it quotes the offending line, which may hold a password.
            let diagnosis = YAMLDiagnosis(error, text: yaml)
            throw ConfigurationError(.unreadableFile, key: diagnosis.key, diagnosis.message, file: file, line: diagnosis.line, column: diagnosis.column)
        }
        func place(_ node: Node?) -> (line: Int?, column: Int?) { (node?.mark?.line, node?.mark?.column) }
        func failure(_ code: ConfigurationError.Code, _ key: String, _ message: String, at node: Node?) -> ConfigurationError {
            let (line, column) = place(node)
            return ConfigurationError(code, key: UTF8Text.escaped(key), message, file: file, line: line ?? 1, column: column ?? 1)
        }
        guard let block = root?["memory"]?["postgresql"], block.mapping != nil else {
            throw failure(.missing, base, "block not found: add memory: / postgresql: with mode and patroni (docs/POOL.md)", at: root?["memory"] ?? root)
        }
        var variables: [String: String] = [:]
        var places: [String: Place] = ["<block>": Place(key: base, line: place(block).line, column: place(block).column)]

        func expand(_ text: String, key: String, at node: Node) throws(ConfigurationError) -> String {
            do {
                return try YAMLConfiguration.expand(text, key: key, environment: environment)
            } catch {
                throw error.located(file: file, line: place(node).line, column: place(node).column)
            }
        }

        func scalar(_ node: Node, key: String) throws(ConfigurationError) -> String {
            if let seq = node.sequence {
                var items: [String] = []
                for item in seq {
                    guard let s = item.scalar?.string else {
                        throw failure(.invalidValue, key, "expected a list of plain values, got an item that is a \(item.mapping != nil ? "mapping" : "list"): write each item as a plain value", at: item)
                    }
                    items.append(try expand(s, key: key, at: item))
                }
                return items.joined(separator: ",")
            }
            guard let s = node.scalar?.string else {
                throw failure(.invalidValue, key, "expected a plain value, got a \(node.mapping != nil ? "mapping" : "list"): write the value on the key's line", at: node)
            }
            return try expand(s, key: key, at: node)
        }

        func copy(_ section: String, keys: [String: String], prefix: String) throws(ConfigurationError) {
            let path = "\(base).\(section)"
            guard let node = block[section] else { return }
            guard let mapping = node.mapping else {
                throw failure(.invalidValue, path, "expected a mapping of keys (\(keys.keys.sorted().prefix(3).joined(separator: ", "))…), got \(kind(of: node))", at: node)
            }
            places["<\(section)>"] = Place(key: path, line: place(node).line, column: place(node).column)
            for (k, v) in mapping {
                guard let name = k.string, k.scalar != nil else {
                    throw failure(.invalidValue, path, "keys must be plain names, got \(kind(of: k)): write the key as a word", at: k)
                }
                if name == "enabled" {
                    guard v.bool != nil else {
                        throw failure(.invalidValue, "\(path).enabled", "expected true or false, got \(kind(of: v))", at: v)
                    }
                    continue
                }
                guard let variable = keys[name] else {
                    throw failure(.invalidValue, "\(path).\(name)", "unknown key (known: \(keys.keys.sorted().joined(separator: ", ")))", at: k)
                }
                variables[prefix + variable] = try scalar(v, key: "\(path).\(name)")
                places[prefix + variable] = Place(key: UTF8Text.escaped("\(path).\(name)"), line: place(v).line, column: place(v).column)
            }
        }

        let modeNode = block["mode"]
        if let modeNode, modeNode.scalar == nil || modeNode.null != nil {
            throw failure(.invalidValue, "\(base).mode", "expected single-node or patroni-ha, got \(kind(of: modeNode))", at: modeNode)
        }
        let enabled = block["patroni"]?["enabled"]?.bool
        switch modeNode?.string {
        case "patroni-ha", "patroni": variables["ENABLE_PATRONI"] = "true"
        case "single-node", nil: variables["ENABLE_PATRONI"] = (enabled == true) ? "true" : "false"
        case let other?:
            throw failure(.invalidValue, "\(base).mode", "expected single-node or patroni-ha, got \(UTF8Text.quoted(other))", at: modeNode)
        }
        places["ENABLE_PATRONI"] = Place(key: "\(base).mode", line: place(modeNode ?? block).line, column: place(modeNode ?? block).column)
        try copy("patroni", keys: patroniKeys, prefix: "")
        try copy("project", keys: singleNodeKeys, prefix: "PROJECT_DB_")
        try copy("shared", keys: singleNodeKeys, prefix: "SHARED_DB_")
        return (variables, places)
    }

    static func kind(of node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar: return node.null != nil ? "nothing (null)" : "a value"
        }
    }

    /// Expands `${VAR}` and `${VAR:-default}`; an unset variable without default is an error.
    static func expand(_ text: String, key: String, environment: [String: String]) throws(ConfigurationError) -> String {
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw ConfigurationError(.invalidValue, key: key, "unterminated ${ reference: close it with }")
            }
            let reference = rest[start.upperBound..<end]
            let parts = reference.split(separator: ":-", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let name = parts.first ?? ""
            guard let head = name.unicodeScalars.first, head == "_" || (head.isASCII && head.properties.isAlphabetic),
                  name.unicodeScalars.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }) else {
                throw ConfigurationError(.invalidValue, key: key, "\(UTF8Text.quoted("${" + reference + "}", limit: 40)) is not a variable reference: write ${NAME} or ${NAME:-default} (letters, digits and _)")
            }
            if let value = environment[name], !value.isEmpty {
                out += value
            } else if parts.count == 2 {
                out += parts[1]
            } else {
                throw ConfigurationError(.missing, key: key, "references ${\(name)}, which is not set: export \(name), or write ${\(name):-default}")
            }
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }
}
