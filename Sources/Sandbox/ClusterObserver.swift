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

/// Asks the running cluster who is who. The real one (`PatroniClusterObserver`) uses the Patroni
/// module's client; tests can inject a fake.
protocol ClusterObserver: Sendable {
    /// The members of the cluster view, or nil when no member's REST API answered.
    func members() async -> [ObservedMember]?
}
