import Patroni

/// Watches the sandbox cluster through the Patroni module's REST client: `GET /cluster` from
/// every member at once (`clusterFromEach`), so that a member whose REST API is down shows even
/// while the others still list it. With `--tls` the REST API is https and the sandbox CA is trusted.
struct PatroniClusterObserver: ClusterObserver {
    let client: PatroniClient
    /// Member name per endpoint.
    let names: [PatroniEndpoint: String]

    /// Watches `cluster` (default: the independent cluster).
    init(configuration: SandboxConfiguration, cluster: SandboxConfiguration.Cluster? = nil) {
        let useTLS = configuration.tls != nil
        var names: [PatroniEndpoint: String] = [:]
        let endpoints = (cluster ?? configuration.cluster).members.map { member in
            let endpoint = PatroniEndpoint(host: member.host, port: member.restPort, useTLS: useTLS)
            names[endpoint] = member.name
            return endpoint
        }
        self.names = names
        client = PatroniClient(configuration: PatroniClientConfiguration(
            endpoints: endpoints, tls: configuration.tls.map { PatroniTLS(caFile: $0.caCertificate) }))
    }

    func observe() async -> ObservedCluster? {
        var views: [String: PatroniCluster] = [:]
        for (endpoint, result) in await client.clusterFromEach() {
            if case .success(let cluster) = result, let name = names[endpoint] { views[name] = cluster }
        }
        guard !views.isEmpty else { return nil }
        // Prefer the view of a member that calls itself leader; else the first by name.
        let leaderView = views.first { name, view in view.members.contains { $0.name == name && $0.role.isLeader } }
        guard let view = leaderView?.value ?? views.sorted(by: { $0.key < $1.key }).first?.value else { return nil }
        let members = view.members.map { member in
            ObservedMember(
                name: member.name, role: member.role.rawValue, state: member.state?.rawValue,
                host: member.host, port: member.port, timeline: member.timeline, lagBytes: member.lag)
        }
        return ObservedCluster(members: members, answering: Set(views.keys))
    }
}
