public import Patroni

/// Where topology observations come from. The real one asks Patroni's REST API; tests use fakes.
public protocol TopologySource: Sendable {
    /// One observation of the cluster. Throws when no API host gave a valid answer.
    func fetch() async throws -> ClusterTopology
}

/// Asks every configured Patroni REST API host for `/cluster` concurrently and takes the first
/// valid answer, so one slow or dead host never stalls routing.
public struct PatroniTopologySource: TopologySource {
    public let client: PatroniClient

    public init(client: PatroniClient) {
        self.client = client
    }

    /// Builds the client from the pool configuration (API hosts, port, TLS, auth, timeouts).
    public init(config: PatroniClusterConfig) throws(ConfigurationError) {
        var endpoints: [PatroniEndpoint] = []
        for host in config.apiHosts {
            guard let endpoint = PatroniEndpoint(parsing: host, defaultPort: config.apiPort, defaultTLS: config.api.useTLS) else {
                throw ConfigurationError(.invalidValue, key: "PATRONI_HOSTS", "cannot read \"\(host)\" as host, host:port or http(s)://host:port")
            }
            endpoints.append(endpoint)
        }
        self.client = PatroniClient(configuration: config.patroniClientConfiguration(endpoints: endpoints))
    }

    public func fetch() async throws -> ClusterTopology {
        let answer = try await client.cluster()
        return ClusterTopology(answer.value)
    }
}

extension PatroniClusterConfig {
    /// The REST client settings derived from this configuration.
    public func patroniClientConfiguration(endpoints: [PatroniEndpoint]) -> PatroniClientConfiguration {
        let tls = api.useTLS || api.caFile != nil || api.certFile != nil
            ? PatroniTLS(caFile: api.caFile, certFile: api.certFile, keyFile: api.keyFile) : nil
        let credentials = api.user.flatMap { user in api.password.map { PatroniCredentials(user: user, password: $0) } }
        return PatroniClientConfiguration(
            endpoints: endpoints, connectTimeout: api.connectTimeout, requestTimeout: api.requestTimeout, tls: tls, credentials: credentials)
    }
}

extension ClusterTopology {
    /// Reduces a Patroni `/cluster` answer to what routing needs.
    public init(_ cluster: PatroniCluster) {
        self.init(members: cluster.members.map(ClusterMember.init))
    }
}

extension ClusterMember {
    public init(_ member: PatroniMember) {
        let role: MemberRole
        if member.role.isLeader {
            role = .leader
        } else if member.isReplica {
            role = .replica
        } else {
            role = .other(member.role.rawValue)
        }
        var address: NodeAddress?
        if let host = member.host, let port = member.port { address = NodeAddress(host: host, port: port) }
        // Reads care about replay: a replica whose replay is paused keeps receiving WAL (lag 0)
        // while its replay lag grows.
        let lags = [member.lag, member.replayLag].compactMap { $0 }
        self.init(
            name: member.name,
            address: address,
            role: role,
            state: member.state?.rawValue ?? "unknown",
            lagBytes: lags.max(),
            replayLSN: member.replayLSNPosition,
            timeline: member.timeline,
            noLoadBalance: member.noLoadBalance
        )
    }
}
