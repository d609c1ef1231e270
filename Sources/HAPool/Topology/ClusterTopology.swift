/// Where a PostgreSQL server listens.
public struct NodeAddress: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public static func < (lhs: NodeAddress, rhs: NodeAddress) -> Bool {
        (lhs.host, lhs.port) < (rhs.host, rhs.port)
    }
}

/// A member's role as routing cares about it.
public enum MemberRole: Hashable, Sendable, Codable {
    /// The Patroni leader (`leader`, `master`, `primary`): the only node that takes writes.
    case leader
    /// A physical replica (`replica`, `sync_standby`, `quorum_standby`).
    case replica
    /// Anything else (`standby_leader` of a standby cluster, unknown roles): never routed to.
    case other(String)
}

/// One cluster member, as the pool sees it: a Patroni `/cluster` member reduced to what routing needs.
public struct ClusterMember: Hashable, Sendable, Codable {
    public var name: String
    /// nil when Patroni did not report host and port (the member cannot be routed to).
    public var address: NodeAddress?
    public var role: MemberRole
    /// Patroni's state string: `running`, `streaming`, `stopped`, `starting`, …
    public var state: String
    /// Bytes behind the leader as far as replay is concerned (max of Patroni's lag and replay lag); nil if unknown.
    public var lagBytes: Int64?
    /// The LSN this replica has replayed (for read-your-writes); nil if unknown.
    public var replayLSN: UInt64?
    public var timeline: Int?
    /// Tagged `noloadbalance`: never receives read traffic.
    public var noLoadBalance: Bool

    public init(
        name: String, address: NodeAddress?, role: MemberRole, state: String, lagBytes: Int64? = nil,
        replayLSN: UInt64? = nil, timeline: Int? = nil, noLoadBalance: Bool = false
    ) {
        self.name = name
        self.address = address
        self.role = role
        self.state = state
        self.lagBytes = lagBytes
        self.replayLSN = replayLSN
        self.timeline = timeline
        self.noLoadBalance = noLoadBalance
    }

    /// A running PostgreSQL (Patroni states `running` and `streaming`).
    public var isRunning: Bool { state == "running" || state == "streaming" }
}

/// A cluster as observed at one moment.
public struct ClusterTopology: Hashable, Sendable, Codable {
    public var members: [ClusterMember]

    public init(members: [ClusterMember]) {
        self.members = members
    }

    /// The member holding the leader role, if exactly one does and it is running.
    public var leader: ClusterMember? {
        let leaders = members.filter { $0.role == .leader }
        guard leaders.count == 1, let leader = leaders.first, leader.isRunning, leader.address != nil else { return nil }
        return leader
    }

    public var replicas: [ClusterMember] { members.filter { $0.role == .replica } }

    /// Replicas that may serve reads: running, lag known and ≤ `maxLagBytes`, not `noloadbalance`,
    /// with an address, and not in `excluded` (recently failed connections).
    public func readableReplicas(maxLagBytes: Int64, excluding excluded: Set<NodeAddress> = []) -> [ClusterMember] {
        replicas.filter { member in
            guard let address = member.address, !excluded.contains(address) else { return false }
            guard member.isRunning, !member.noLoadBalance, let lag = member.lagBytes else { return false }
            return lag <= maxLagBytes
        }
        .sorted { ($0.address ?? NodeAddress(host: "", port: 0)) < ($1.address ?? NodeAddress(host: "", port: 0)) }
    }

    /// Every routable address.
    public var addresses: Set<NodeAddress> { Set(members.compactMap(\.address)) }
}
