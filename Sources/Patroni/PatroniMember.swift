/// One member of `GET /cluster`.
///
/// Only `name` is required; every other field is optional and read tolerantly: a value of the
/// wrong type, or Patroni's `"unknown"` for a lag or an LSN, becomes `nil` instead of failing the
/// whole answer. Unknown fields are ignored; unknown roles and states are kept verbatim.
public struct PatroniMember: Sendable, Codable, Hashable {
    /// The member's name, unique in the cluster (Patroni's `name` setting).
    public var name: String
    /// `leader`, `replica`, `sync_standby`, … (``PatroniRole/unknown`` when absent or unreadable).
    public var role: PatroniRole
    /// `running`, `streaming`, `stopped`, …
    public var state: PatroniMemberState?
    /// The member's REST API URL, e.g. `http://10.0.0.1:8008/patroni` (`api_url`).
    public var apiURL: String?
    /// PostgreSQL host and port clients should use (`postgresql.connect_address`).
    public var host: String?
    public var port: Int?
    public var timeline: Int?
    /// Bytes behind the leader's last known position (`lag`); `nil` when Patroni says `"unknown"`.
    public var lag: Int64?
    /// Current WAL position as Patroni formats it (`"0/4000060"`); `nil` when `"unknown"`.
    public var lsn: String?
    public var receiveLSN: String?
    public var replayLSN: String?
    /// Bytes of WAL received but behind the leader (`receive_lag`).
    public var receiveLag: Int64?
    /// Bytes of WAL not yet replayed relative to the leader (`replay_lag`).
    public var replayLag: Int64?
    /// PostgreSQL waits for a restart to apply settings (`pending_restart`).
    public var pendingRestart: Bool?
    /// Which settings wait for the restart, old and new values (`pending_restart_reason`, 4.x).
    public var pendingRestartReason: JSONValue?
    /// A scheduled restart, as Patroni describes it (`scheduled_restart`).
    public var scheduledRestart: JSONValue?
    /// The member's tags (`nofailover`, `noloadbalance`, `clonefrom`, `nosync`, custom ones).
    public var tags: [String: JSONValue]

    public init(
        name: String, role: PatroniRole, state: PatroniMemberState? = nil, apiURL: String? = nil,
        host: String? = nil, port: Int? = nil, timeline: Int? = nil, lag: Int64? = nil, lsn: String? = nil,
        receiveLSN: String? = nil, replayLSN: String? = nil, receiveLag: Int64? = nil, replayLag: Int64? = nil,
        pendingRestart: Bool? = nil, tags: [String: JSONValue] = [:]
    ) {
        self.name = name
        self.role = role
        self.state = state
        self.apiURL = apiURL
        self.host = host
        self.port = port
        self.timeline = timeline
        self.lag = lag
        self.lsn = lsn
        self.receiveLSN = receiveLSN
        self.replayLSN = replayLSN
        self.receiveLag = receiveLag
        self.replayLag = replayLag
        self.pendingRestart = pendingRestart
        self.tags = tags
    }

    enum CodingKeys: String, CodingKey {
        case name, role, state, host, port, timeline, lag, lsn, tags
        case apiURL = "api_url"
        case receiveLSN = "receive_lsn"
        case replayLSN = "replay_lsn"
        case receiveLag = "receive_lag"
        case replayLag = "replay_lag"
        case pendingRestart = "pending_restart"
        case pendingRestartReason = "pending_restart_reason"
        case scheduledRestart = "scheduled_restart"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        role = c.lenientString(.role).map(PatroniRole.init(rawValue:)) ?? .unknown
        state = c.lenientString(.state).map(PatroniMemberState.init(rawValue:))
        apiURL = c.lenientString(.apiURL)
        host = c.lenientString(.host)
        port = c.lenientInt(.port)
        timeline = c.lenientInt(.timeline)
        lag = c.lenientInt64(.lag)
        lsn = c.lenientLSN(.lsn)
        receiveLSN = c.lenientLSN(.receiveLSN)
        replayLSN = c.lenientLSN(.replayLSN)
        receiveLag = c.lenientInt64(.receiveLag)
        replayLag = c.lenientInt64(.replayLag)
        pendingRestart = c.lenientBool(.pendingRestart)
        pendingRestartReason = c.lenientJSON(.pendingRestartReason)
        scheduledRestart = c.lenientJSON(.scheduledRestart)
        tags = c.lenientJSON(.tags)?.objectValue ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(role, forKey: .role)
        try c.encodeIfPresent(state, forKey: .state)
        try c.encodeIfPresent(apiURL, forKey: .apiURL)
        try c.encodeIfPresent(host, forKey: .host)
        try c.encodeIfPresent(port, forKey: .port)
        try c.encodeIfPresent(timeline, forKey: .timeline)
        try c.encodeIfPresent(lag, forKey: .lag)
        try c.encodeIfPresent(lsn, forKey: .lsn)
        try c.encodeIfPresent(receiveLSN, forKey: .receiveLSN)
        try c.encodeIfPresent(replayLSN, forKey: .replayLSN)
        try c.encodeIfPresent(receiveLag, forKey: .receiveLag)
        try c.encodeIfPresent(replayLag, forKey: .replayLag)
        try c.encodeIfPresent(pendingRestart, forKey: .pendingRestart)
        try c.encodeIfPresent(pendingRestartReason, forKey: .pendingRestartReason)
        try c.encodeIfPresent(scheduledRestart, forKey: .scheduledRestart)
        if !tags.isEmpty { try c.encode(tags, forKey: .tags) }
    }

    /// Holds the leader lock (see ``PatroniRole/isLeader``).
    public var isLeader: Bool { role.isLeader }

    /// A standby of the leader: `replica`, `sync_standby` or `quorum_standby`.
    public var isReplica: Bool { role.isReplica }

    /// The `noloadbalance` tag is truthy: load balancers must not send reads here.
    public var noLoadBalance: Bool { tags["noloadbalance"]?.isTruthy ?? false }

    /// Never promoted: the `nofailover` tag is truthy, or `failover_priority` is 0 (Patroni ≥ 3.2).
    public var noFailover: Bool {
        if tags["nofailover"]?.isTruthy ?? false { return true }
        if let priority = tags["failover_priority"]?.intValue { return priority <= 0 }
        return false
    }

    /// The `nosync` tag is truthy: never chosen as synchronous standby.
    public var noSync: Bool { tags["nosync"]?.isTruthy ?? false }

    /// The REST API endpoint from `api_url`, if it parses.
    public var apiEndpoint: PatroniEndpoint? { apiURL.flatMap { PatroniEndpoint(parsing: $0) } }

    /// ``lsn`` as a byte position (`"0/4000060"` → 67108960).
    public var lsnPosition: UInt64? { lsn.flatMap(PatroniLSN.parse) }
    /// ``receiveLSN`` as a byte position.
    public var receiveLSNPosition: UInt64? { receiveLSN.flatMap(PatroniLSN.parse) }
    /// ``replayLSN`` as a byte position.
    public var replayLSNPosition: UInt64? { replayLSN.flatMap(PatroniLSN.parse) }
}

/// PostgreSQL's textual LSN (`"16/B374D848"`: high and low 32 bits in hex).
public enum PatroniLSN {
    /// Parses `"X/Y"` into a byte position; `nil` for anything else (including `"unknown"`).
    public static func parse(_ text: String) -> UInt64? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...8).contains(parts[0].count), (1...8).contains(parts[1].count),
            let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16)
        else { return nil }
        return high << 32 | low
    }

    /// Formats a byte position the way PostgreSQL does (`67108960` → `"0/4000060"`).
    public static func format(_ position: UInt64) -> String {
        String(position >> 32, radix: 16, uppercase: true) + "/" + String(position & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }
}

/// A switchover waiting for its time (`scheduled_switchover` in `/cluster`).
public struct PatroniScheduledSwitchover: Sendable, Codable, Hashable {
    /// When, as Patroni wrote it (ISO 8601 with offset).
    public var at: String?
    /// The leader to demote.
    public var from: String?
    /// The member to promote, if one was named.
    public var to: String?

    public init(at: String? = nil, from: String? = nil, to: String? = nil) {
        self.at = at
        self.from = from
        self.to = to
    }

    enum CodingKeys: String, CodingKey { case at, from, to }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        at = c.lenientString(.at)
        from = c.lenientString(.from)
        to = c.lenientString(.to)
    }
}

/// `GET /cluster`: the cluster as the answering member sees it in the DCS.
///
/// `leader == nil` is a legitimate state (mid-failover, or every member down), not an error.
public struct PatroniCluster: Sendable, Codable, Hashable {
    public var members: [PatroniMember]
    /// The cluster's name (`scope`).
    public var scope: String?
    /// Maintenance mode: Patroni does not fail over (`pause`).
    public var pause: Bool?
    public var scheduledSwitchover: PatroniScheduledSwitchover?

    public init(members: [PatroniMember], scope: String? = nil, pause: Bool? = nil, scheduledSwitchover: PatroniScheduledSwitchover? = nil) {
        self.members = members
        self.scope = scope
        self.pause = pause
        self.scheduledSwitchover = scheduledSwitchover
    }

    enum CodingKeys: String, CodingKey {
        case members, scope, pause
        case scheduledSwitchover = "scheduled_switchover"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        members = try c.decode([PatroniMember].self, forKey: .members)
        scope = c.lenientString(.scope)
        pause = c.lenientBool(.pause)
        scheduledSwitchover = try? c.decodeIfPresent(PatroniScheduledSwitchover.self, forKey: .scheduledSwitchover)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(members, forKey: .members)
        try c.encodeIfPresent(scope, forKey: .scope)
        try c.encodeIfPresent(pause, forKey: .pause)
        try c.encodeIfPresent(scheduledSwitchover, forKey: .scheduledSwitchover)
    }

    /// The member holding the leader lock, if any (``PatroniRole/isLeader``).
    public var leader: PatroniMember? { members.first { $0.role.isLeader } }

    /// Standbys of the leader (`replica`, `sync_standby`, `quorum_standby`), in Patroni's order.
    public var replicas: [PatroniMember] { members.filter(\.isReplica) }

    /// Whether maintenance mode is on.
    public var isPaused: Bool { pause ?? false }

    public func member(named name: String) -> PatroniMember? { members.first { $0.name == name } }

    /// Checks what decoding alone cannot: every member has a non-empty, unique name, and at most
    /// one member holds the leader lock.
    ///
    /// - Throws: ``PatroniError/Code/malformedAnswer`` for names,
    ///   ``PatroniError/Code/inconsistentTopology`` (naming the leaders) for two or more leaders.
    public func validate(endpoint: PatroniEndpoint? = nil) throws(PatroniError) {
        var seen = Set<String>()
        for (index, member) in members.enumerated() {
            if member.name.trimmingWhitespace().isEmpty {
                throw PatroniError(
                    code: .malformedAnswer, endpoint: endpoint, path: "/cluster", field: "members[\(index)].name",
                    message: "members[\(index)].name: empty (a member without a name cannot be addressed)")
            }
            if !seen.insert(member.name).inserted {
                throw PatroniError(
                    code: .malformedAnswer, endpoint: endpoint, path: "/cluster", field: "members[\(index)].name",
                    message: "members[\(index)].name: \"\(member.name)\" appears more than once")
            }
        }
        let leaders = members.filter(\.isLeader).map(\.name)
        if leaders.count > 1 {
            throw PatroniError(
                code: .inconsistentTopology, endpoint: endpoint, path: "/cluster", members: leaders,
                message: "\(leaders.count) members claim the leader role: \(leaders.joined(separator: ", "))")
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let first = s.first, first.isWhitespace { s.removeFirst() }
        while let last = s.last, last.isWhitespace { s.removeLast() }
        return String(s)
    }
}
