/// `GET /patroni`, and the body of the health endpoints (`/primary`, `/replica`, `/read-only`,
/// `/health`, …): one member's own view of itself. Every field is optional and read tolerantly.
public struct PatroniNodeStatus: Sendable, Codable, Hashable {
    public var state: PatroniMemberState?
    /// `primary` (4.x) or `master` (3.x), `replica`, `standby_leader`, `demoted`, `uninitialized`.
    public var role: PatroniRole?
    /// PostgreSQL's `server_version_num`, e.g. 150018.
    public var serverVersion: Int?
    public var timeline: Int?
    public var postmasterStartTime: String?
    public var xlog: XLog?
    public var patroni: Info?
    /// Epoch seconds when Patroni last reached the DCS (`dcs_last_seen`).
    public var dcsLastSeen: Int64?
    public var pendingRestart: Bool?
    public var pendingRestartReason: JSONValue?
    /// `pg_control`'s system identifier: equal on every member of one cluster.
    public var databaseSystemIdentifier: String?
    /// Replication connections served by this member (a primary's `pg_stat_replication`).
    public var replication: [ReplicationConnection]?
    /// `streaming` or `in archive recovery` on a replica.
    public var replicationState: String?
    public var syncStandby: Bool?
    public var quorumStandby: Bool?
    /// Maintenance mode.
    public var pause: Bool?
    /// No member holds the leader lock.
    public var clusterUnlocked: Bool?
    public var failsafeModeIsActive: Bool?
    /// `pg_stat_wal_receiver.latest_end_lsn` as a byte position (replicas).
    public var latestEndLSN: Int64?
    public var tags: [String: JSONValue]?

    /// The `xlog` object: a primary reports `location`; a replica `received_location`,
    /// `replayed_location`, `replayed_timestamp`, `paused`. Positions are bytes.
    public struct XLog: Sendable, Codable, Hashable {
        public var location: Int64?
        public var receivedLocation: Int64?
        public var replayedLocation: Int64?
        public var replayedTimestamp: String?
        public var paused: Bool?

        public init(location: Int64? = nil, receivedLocation: Int64? = nil, replayedLocation: Int64? = nil, replayedTimestamp: String? = nil, paused: Bool? = nil) {
            self.location = location
            self.receivedLocation = receivedLocation
            self.replayedLocation = replayedLocation
            self.replayedTimestamp = replayedTimestamp
            self.paused = paused
        }

        enum CodingKeys: String, CodingKey {
            case location, paused
            case receivedLocation = "received_location"
            case replayedLocation = "replayed_location"
            case replayedTimestamp = "replayed_timestamp"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            location = c.lenientInt64(.location)
            receivedLocation = c.lenientInt64(.receivedLocation)
            replayedLocation = c.lenientInt64(.replayedLocation)
            replayedTimestamp = c.lenientString(.replayedTimestamp)
            paused = c.lenientBool(.paused)
        }
    }

    /// The `patroni` object: Patroni's version, the cluster's scope, the member's name (3.x
    /// and newer).
    public struct Info: Sendable, Codable, Hashable {
        public var version: String?
        public var scope: String?
        public var name: String?

        public init(version: String? = nil, scope: String? = nil, name: String? = nil) {
            self.version = version
            self.scope = scope
            self.name = name
        }

        enum CodingKeys: String, CodingKey { case version, scope, name }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            version = c.lenientString(.version)
            scope = c.lenientString(.scope)
            name = c.lenientString(.name)
        }

        /// The major version (`"4.1.5"` → 4).
        public var majorVersion: Int? { version.flatMap { $0.split(separator: ".").first.flatMap { Int($0) } } }
    }

    /// One row of the primary's `replication` list.
    public struct ReplicationConnection: Sendable, Codable, Hashable {
        public var usename: String?
        /// The standby's `application_name`, which Patroni sets to the member name.
        public var applicationName: String?
        public var clientAddr: String?
        /// `streaming`, `catchup`, `startup`, …
        public var state: String?
        /// `async`, `sync`, `potential`, `quorum`.
        public var syncState: String?
        public var syncPriority: Int?

        public init(usename: String? = nil, applicationName: String? = nil, clientAddr: String? = nil, state: String? = nil, syncState: String? = nil, syncPriority: Int? = nil) {
            self.usename = usename
            self.applicationName = applicationName
            self.clientAddr = clientAddr
            self.state = state
            self.syncState = syncState
            self.syncPriority = syncPriority
        }

        enum CodingKeys: String, CodingKey {
            case usename, state
            case applicationName = "application_name"
            case clientAddr = "client_addr"
            case syncState = "sync_state"
            case syncPriority = "sync_priority"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            usename = c.lenientString(.usename)
            applicationName = c.lenientString(.applicationName)
            clientAddr = c.lenientString(.clientAddr)
            state = c.lenientString(.state)
            syncState = c.lenientString(.syncState)
            syncPriority = c.lenientInt(.syncPriority)
        }
    }

    public init(state: PatroniMemberState? = nil, role: PatroniRole? = nil, timeline: Int? = nil, patroni: Info? = nil) {
        self.state = state
        self.role = role
        self.timeline = timeline
        self.patroni = patroni
    }

    enum CodingKeys: String, CodingKey {
        case state, role, timeline, xlog, patroni, replication, pause, tags
        case serverVersion = "server_version"
        case postmasterStartTime = "postmaster_start_time"
        case dcsLastSeen = "dcs_last_seen"
        case pendingRestart = "pending_restart"
        case pendingRestartReason = "pending_restart_reason"
        case databaseSystemIdentifier = "database_system_identifier"
        case replicationState = "replication_state"
        case syncStandby = "sync_standby"
        case quorumStandby = "quorum_standby"
        case clusterUnlocked = "cluster_unlocked"
        case failsafeModeIsActive = "failsafe_mode_is_active"
        case latestEndLSN = "latest_end_lsn"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        state = c.lenientString(.state).map(PatroniMemberState.init(rawValue:))
        role = c.lenientString(.role).map(PatroniRole.init(rawValue:))
        serverVersion = c.lenientInt(.serverVersion)
        timeline = c.lenientInt(.timeline)
        postmasterStartTime = c.lenientString(.postmasterStartTime)
        xlog = try? c.decodeIfPresent(XLog.self, forKey: .xlog)
        patroni = try? c.decodeIfPresent(Info.self, forKey: .patroni)
        dcsLastSeen = c.lenientInt64(.dcsLastSeen)
        pendingRestart = c.lenientBool(.pendingRestart)
        pendingRestartReason = c.lenientJSON(.pendingRestartReason)
        // Numbers in Patroni's JSON, but a string is tolerated.
        databaseSystemIdentifier = c.lenientString(.databaseSystemIdentifier) ?? c.lenientInt64(.databaseSystemIdentifier).map(String.init)
        replication = try? c.decodeIfPresent([ReplicationConnection].self, forKey: .replication)
        replicationState = c.lenientString(.replicationState)
        syncStandby = c.lenientBool(.syncStandby)
        quorumStandby = c.lenientBool(.quorumStandby)
        pause = c.lenientBool(.pause)
        clusterUnlocked = c.lenientBool(.clusterUnlocked)
        failsafeModeIsActive = c.lenientBool(.failsafeModeIsActive)
        latestEndLSN = c.lenientInt64(.latestEndLSN)
        tags = c.lenientJSON(.tags)?.objectValue
    }

    /// Runs as the primary (`primary` or legacy `master`).
    public var isPrimary: Bool { role == .primary || role == .master }

    /// The member's name, from the `patroni` object (Patroni 3.x and newer).
    public var memberName: String? { patroni?.name }

    /// The WAL position the member has: `location` on a primary, otherwise the larger of
    /// received and replayed.
    public var walPosition: Int64? {
        if let location = xlog?.location { return location }
        let positions = [xlog?.receivedLocation, xlog?.replayedLocation].compactMap { $0 }
        return positions.max()
    }
}

/// One row of `GET /history`: a timeline switch. Patroni sends rows as JSON arrays
/// `[timeline, lsn, reason, timestamp, new_leader]`; older versions send 3 or 4 elements.
public struct PatroniHistoryEntry: Sendable, Codable, Hashable {
    /// The timeline that ended.
    public var timeline: Int
    /// Where it ended, in bytes.
    public var lsn: Int64
    public var reason: String
    /// When the new timeline started (ISO 8601), Patroni ≥ 1.6.
    public var timestamp: String?
    /// The member promoted, Patroni ≥ 2.0.
    public var newLeader: String?

    public init(timeline: Int, lsn: Int64, reason: String, timestamp: String? = nil, newLeader: String? = nil) {
        self.timeline = timeline
        self.lsn = lsn
        self.reason = reason
        self.timestamp = timestamp
        self.newLeader = newLeader
    }

    /// Reads the row through ``JSONValue`` so that every failure names its element:
    /// `JSONDecoder` reports a number of the wrong kind (1.5 for an integer) without a path.
    public init(from decoder: any Decoder) throws {
        let row = try decoder.singleValueContainer().decode(JSONValue.self)
        func fail(_ index: Int?, _ expected: String) -> DecodingError {
            let path = decoder.codingPath + (index.map { [IndexKey($0)] } ?? [])
            return DecodingError.typeMismatch(
                JSONValue.self, .init(codingPath: path, debugDescription: "expected \(expected)"))
        }
        guard let elements = row.arrayValue else { throw fail(nil, "an array [timeline, lsn, reason, timestamp, new_leader]") }
        guard elements.count >= 3 else {
            throw DecodingError.valueNotFound(
                JSONValue.self,
                .init(codingPath: decoder.codingPath + [IndexKey(elements.count)], debugDescription: "a row needs at least 3 elements"))
        }
        guard case .int(let tl) = elements[0], let timeline = Int(exactly: tl) else { throw fail(0, "an integer") }
        guard case .int(let lsn) = elements[1] else { throw fail(1, "an integer") }
        guard case .string(let reason) = elements[2] else { throw fail(2, "a string") }
        self.timeline = timeline
        self.lsn = lsn
        self.reason = reason
        // Optional trailing elements: anything but a string (null included) reads as nil.
        timestamp = elements.count > 3 ? elements[3].stringValue : nil
        newLeader = elements.count > 4 ? elements[4].stringValue : nil
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.unkeyedContainer()
        try c.encode(timeline)
        try c.encode(lsn)
        try c.encode(reason)
        if timestamp != nil || newLeader != nil { try c.encode(timestamp) }
        if let newLeader { try c.encode(newLeader) }
    }

    /// ``lsn`` formatted like PostgreSQL (`"0/4000188"`).
    public var lsnText: String { PatroniLSN.format(UInt64(clamping: lsn)) }
}

/// A coding key for an array position.
struct IndexKey: CodingKey {
    let intValue: Int?
    let stringValue: String
    init(_ index: Int) {
        intValue = index
        stringValue = "Index \(index)"
    }
    init?(intValue: Int) { self.init(intValue) }
    init?(stringValue: String) { nil }
}
