import HTTPClient
import Patroni

/// Watches the sandbox cluster through the Patroni module's REST client (`GET /cluster` from
/// every member at once; the first valid answer wins). With `--tls`, the REST API is https and
/// the sandbox CA is trusted.
struct PatroniClusterObserver: ClusterObserver {
    let client: PatroniClient

    init(configuration: SandboxConfiguration) {
        let useTLS = configuration.tls != nil
        let endpoints = configuration.cluster.members.map {
            PatroniEndpoint(host: $0.host, port: $0.restPort, useTLS: useTLS)
        }
        var http = PatroniClientConfiguration.defaultHTTP
        if let tls = configuration.tls {
            http.tls = HTTPTLSOptions(caFile: tls.caCertificate)
        }
        client = PatroniClient(configuration: PatroniClientConfiguration(endpoints: endpoints, http: http))
    }

    func members() async -> [ObservedMember]? {
        guard let answer = try? await client.cluster() else { return nil }
        return answer.value.members.map { member in
            ObservedMember(
                name: member.name, role: member.role.rawValue, state: member.state?.rawValue,
                host: member.host, port: member.port, timeline: member.timeline, lagBytes: member.lag)
        }
    }
}
