public import Foundation
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
/// `EnvironmentConfiguration`, so both sources accept exactly the same values; errors name the YAML
/// key. `${VAR}` references are expanded from the environment; a password written literally in the
/// file is accepted but discouraged (docs/POOL.md).
public enum YAMLConfiguration {
    static let patroniKeys: [String: String] = [
        "apiHosts": "PATRONI_HOSTS", "apiPort": "PATRONI_PORT", "database": "PATRONI_DB",
        "sharedDatabase": "PATRONI_SHARED_DB", "user": "PATRONI_USER", "password": "PATRONI_PASSWORD",
        "minConnections": "PATRONI_MIN_CONNECTIONS", "maxConnections": "PATRONI_MAX_CONNECTIONS",
        "healthCheckInterval": "PATRONI_HEALTH_CHECK_INTERVAL", "failoverTimeout": "PATRONI_FAILOVER_TIMEOUT",
        "sslmode": "PATRONI_SSLMODE", "sslrootcert": "PATRONI_SSLROOTCERT", "sslcert": "PATRONI_SSLCERT",
        "sslkey": "PATRONI_SSLKEY", "apiUser": "PATRONI_API_USER", "apiPassword": "PATRONI_API_PASSWORD",
        "apiCaFile": "PATRONI_API_CAFILE", "apiCertFile": "PATRONI_API_CERTFILE", "apiKeyFile": "PATRONI_API_KEYFILE",
        "maxReplicaLag": "PATRONI_MAX_REPLICA_LAG", "replicaFallback": "PATRONI_REPLICA_FALLBACK",
        "maxRetries": "PATRONI_MAX_RETRIES",
    ]
    static let singleNodeKeys: [String: String] = [
        "host": "HOST", "port": "PORT", "database": "NAME", "user": "USER", "password": "PASSWORD",
        "minConnections": "MIN_CONNECTIONS", "maxConnections": "MAX_CONNECTIONS", "sslmode": "SSLMODE",
        "sslrootcert": "SSLROOTCERT", "sslcert": "SSLCERT", "sslkey": "SSLKEY",
    ]

    /// Parses the YAML text and returns the pools configuration.
    public static func dualPools(yaml: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> DualPoolsConfig {
        let (variables, keyOfVariable) = try variables(yaml: yaml, environment: environment)
        do {
            return try EnvironmentConfiguration(variables).dualPools()
        } catch {
            var renamed = error
            renamed.key = keyOfVariable[error.key] ?? error.key
            throw renamed
        }
    }

    /// Reads the file at `path`.
    public static func dualPools(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> DualPoolsConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigurationError(.unreadableFile, key: path, "cannot read the file (\(error.localizedDescription))")
        }
        return try dualPools(yaml: text, environment: environment)
    }

    /// The environment-variable view of the YAML block, and for each variable its YAML key.
    static func variables(yaml: String, environment: [String: String]) throws(ConfigurationError) -> ([String: String], [String: String]) {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw ConfigurationError(.unreadableFile, key: "yaml", "not valid YAML (\(error))")
        }
        let base = "memory.postgresql"
        guard let block = root?["memory"]?["postgresql"], block.mapping != nil else {
            throw ConfigurationError(.missing, key: base, "block not found")
        }
        var variables: [String: String] = [:]
        var keyOf: [String: String] = [:]

        func scalar(_ node: Node, key: String) throws(ConfigurationError) -> String {
            if let seq = node.sequence {
                var items: [String] = []
                for item in seq {
                    guard let s = item.scalar?.string else {
                        throw ConfigurationError(.invalidValue, key: key, "expected a list of plain values")
                    }
                    items.append(s)
                }
                return items.joined(separator: ",")
            }
            guard let s = node.scalar?.string else {
                throw ConfigurationError(.invalidValue, key: key, "expected a plain value, got a \(node.mapping != nil ? "mapping" : "list")")
            }
            return try expand(s, key: key, environment: environment)
        }

        func copy(_ mapping: Node?, path: String, keys: [String: String], prefix: String) throws(ConfigurationError) {
            guard let mapping = mapping?.mapping else { return }
            for (k, v) in mapping {
                guard let name = k.string else { continue }
                if name == "enabled" { continue }
                guard let variable = keys[name] else {
                    throw ConfigurationError(.invalidValue, key: "\(path).\(name)", "unknown key (known: \(keys.keys.sorted().joined(separator: ", ")))")
                }
                variables[prefix + variable] = try scalar(v, key: "\(path).\(name)")
                keyOf[prefix + variable] = "\(path).\(name)"
            }
        }

        let modeText = block["mode"]?.string
        let enabled = block["patroni"]?["enabled"]?.bool
        switch modeText {
        case "patroni-ha", "patroni": variables["ENABLE_PATRONI"] = "true"
        case "single-node", nil: variables["ENABLE_PATRONI"] = (enabled == true) ? "true" : "false"
        case let other?:
            throw ConfigurationError(.invalidValue, key: "\(base).mode", "expected single-node or patroni-ha, got \"\(other)\"")
        }
        keyOf["ENABLE_PATRONI"] = "\(base).mode"
        try copy(block["patroni"], path: "\(base).patroni", keys: patroniKeys, prefix: "")
        try copy(block["project"], path: "\(base).project", keys: singleNodeKeys, prefix: "PROJECT_DB_")
        try copy(block["shared"], path: "\(base).shared", keys: singleNodeKeys, prefix: "SHARED_DB_")
        return (variables, keyOf)
    }

    /// Expands `${VAR}` and `${VAR:-default}`; an unset variable without default is an error.
    static func expand(_ text: String, key: String, environment: [String: String]) throws(ConfigurationError) -> String {
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw ConfigurationError(.invalidValue, key: key, "unterminated ${ reference")
            }
            let reference = rest[start.upperBound..<end]
            let parts = reference.split(separator: ":-", maxSplits: 1).map(String.init)
            let name = parts.first ?? ""
            if let value = environment[name], !value.isEmpty {
                out += value
            } else if parts.count == 2 {
                out += parts[1]
            } else {
                throw ConfigurationError(.missing, key: key, "references ${\(name)}, which is not set")
            }
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }
}
