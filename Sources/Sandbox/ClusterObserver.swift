/// One member as a Patroni cluster view (`GET /cluster`) describes it.
struct ObservedMember: Sendable, Equatable {
    var name: String
    var role: String
    var state: String?
    var host: String?
    var port: Int?
    var timeline: Int?
    var lagBytes: Int64?
}

/// What the members' REST APIs said.
struct ObservedCluster: Sendable, Equatable {
    /// The cluster view (from the leader's own API when it answered, else from any member's).
    var members: [ObservedMember]
    /// Names of the members whose REST API answered `GET /cluster`.
    var answering: Set<String>
}

/// Asks the running cluster who is who. The real one (`PatroniClusterObserver`) uses the Patroni
/// module's client; tests can inject a fake.
protocol ClusterObserver: Sendable {
    /// The cluster view, or nil when no member's REST API answered.
    func observe() async -> ObservedCluster?
}
