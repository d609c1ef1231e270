import PlainText

/// What `pgha sandbox status` reports. Encoded as JSON with stable snake_case keys:
///
/// ```json
/// { "base_dir": "...", "healthy": true, "leader": "node1", "streaming_replicas": 2,
///   "single_node": {...}, "etcd": {...}, "members": [...], "problems": [] }
/// ```
public struct SandboxStatus: Codable, Sendable, Equatable {
    /// The sandbox's base directory.
    public var baseDir: String
    /// Single node up, etcd healthy, every member's Patroni running, one leader and every other
    /// member streaming.
    public var healthy: Bool
    /// Name of the Patroni leader, if there is one.
    public var leader: String?
    /// How many members are replicas in state `streaming`.
    public var streamingReplicas: Int
    public var singleNode: SingleNodeStatus
    public var etcd: EtcdStatus
    public var members: [MemberStatus]
    /// The physical rehearsal's target cluster (`pgha sandbox start-cluster`), when any of it runs;
    /// not part of `healthy` (the migration's sync stage judges it).
    public var targetMembers: [MemberStatus]
    /// PgBouncer (the application's way in) and HAProxy (started with the target cluster).
    public var wayIn: WayInStatus
    /// Human-readable reasons why the sandbox is not healthy (empty when it is).
    public var problems: [String]

    enum CodingKeys: String, CodingKey {
        case baseDir = "base_dir", healthy, leader, streamingReplicas = "streaming_replicas"
        case singleNode = "single_node", etcd, members, targetMembers = "target_members", wayIn = "way_in", problems
    }

    /// PgBouncer and HAProxy.
    public struct WayInStatus: Codable, Sendable, Equatable {
        /// `host:port`.
        public var pgbouncer: String
        public var pgbouncerUp: Bool
        /// Where PgBouncer's databases point (`host:port` from its ini), when readable.
        public var pgbouncerTarget: String?
        public var haproxyRunning: Bool

        enum CodingKeys: String, CodingKey {
            case pgbouncer, pgbouncerUp = "pgbouncer_up", pgbouncerTarget = "pgbouncer_target", haproxyRunning = "haproxy_running"
        }

        public init(pgbouncer: String, pgbouncerUp: Bool, pgbouncerTarget: String? = nil, haproxyRunning: Bool = false) {
            self.pgbouncer = pgbouncer
            self.pgbouncerUp = pgbouncerUp
            self.pgbouncerTarget = pgbouncerTarget
            self.haproxyRunning = haproxyRunning
        }
    }

    /// The single PostgreSQL server.
    public struct SingleNodeStatus: Codable, Sendable, Equatable {
        /// `host:port`.
        public var address: String
        public var up: Bool
        /// `server_version` when up, e.g. "15.18 (Debian 15.18-0+deb12u1)".
        public var version: String?
        public var walLevel: String?

        enum CodingKeys: String, CodingKey { case address, up, version, walLevel = "wal_level" }

        public init(address: String, up: Bool, version: String? = nil, walLevel: String? = nil) {
            self.address = address
            self.up = up
            self.version = version
            self.walLevel = walLevel
        }
    }

    /// The etcd server.
    public struct EtcdStatus: Codable, Sendable, Equatable {
        /// Client URL.
        public var endpoint: String
        public var healthy: Bool

        public init(endpoint: String, healthy: Bool) {
            self.endpoint = endpoint
            self.healthy = healthy
        }
    }

    /// One Patroni member as its cluster view (`GET /cluster`) describes it.
    public struct MemberStatus: Codable, Sendable, Equatable {
        public var name: String
        /// PostgreSQL `host:port`.
        public var address: String
        public var apiURL: String
        /// Whether the Patroni process (from its PID file) is alive.
        public var processRunning: Bool
        /// Whether the member's REST API answered `GET /cluster`.
        public var apiAnswering: Bool
        /// Whether the member appears in the cluster view.
        public var inCluster: Bool
        /// `leader`, `replica`, `sync_standby`… as Patroni reports it.
        public var role: String?
        /// `running`, `streaming`, `starting`… as Patroni reports it.
        public var state: String?
        /// Replication lag in bytes (replicas only).
        public var lagBytes: Int64?
        public var timeline: Int?

        enum CodingKeys: String, CodingKey {
            case name, address, apiURL = "api_url", processRunning = "process_running", apiAnswering = "api_answering"
            case inCluster = "in_cluster", role, state, lagBytes = "lag_bytes", timeline
        }

        public init(
            name: String, address: String, apiURL: String, processRunning: Bool, apiAnswering: Bool,
            inCluster: Bool, role: String? = nil, state: String? = nil, lagBytes: Int64? = nil, timeline: Int? = nil
        ) {
            self.name = name
            self.address = address
            self.apiURL = apiURL
            self.processRunning = processRunning
            self.apiAnswering = apiAnswering
            self.inCluster = inCluster
            self.role = role
            self.state = state
            self.lagBytes = lagBytes
            self.timeline = timeline
        }

        var isLeader: Bool { role == "leader" || role == "standby_leader" }
        var isStreamingReplica: Bool { !isLeader && state == "streaming" }
    }

    /// Exit codes of `pgha sandbox status` (and of `up` when it times out).
    public enum ExitStatus: Int32, Sendable {
        /// Everything is up: single node, etcd, a leader and two streaming replicas.
        case healthy = 0
        /// The command itself failed (bad option, unreadable file).
        case error = 1
        /// Nothing is running, or the sandbox was never set up in this base directory.
        case down = 2
        /// Some parts run, but not all (no leader, a replica not streaming, etcd or single node down).
        case degraded = 3
    }

    /// Builds the report and judges it. Pure: `members` come from the Patroni cluster view merged
    /// with the PID-file check; nothing is asked here.
    public init(
        baseDir: String, singleNode: SingleNodeStatus, etcd: EtcdStatus, members: [MemberStatus], targetMembers: [MemberStatus] = [],
        wayIn: WayInStatus = WayInStatus(pgbouncer: "?", pgbouncerUp: true)
    ) {
        self.targetMembers = targetMembers
        self.wayIn = wayIn
        self.baseDir = baseDir
        self.singleNode = singleNode
        self.etcd = etcd
        self.members = members
        let leaders = members.filter(\.isLeader)
        leader = leaders.count == 1 ? leaders[0].name : nil
        streamingReplicas = members.filter(\.isStreamingReplica).count
        var problems: [String] = []
        if !singleNode.up { problems.append("single node \(singleNode.address) is down") }
        if !etcd.healthy { problems.append("etcd \(etcd.endpoint) is not healthy") }
        if !wayIn.pgbouncerUp { problems.append("PgBouncer \(wayIn.pgbouncer) does not answer") }
        if leaders.isEmpty {
            problems.append("the Patroni cluster has no leader")
        } else if leaders.count > 1 {
            problems.append("the Patroni cluster has \(leaders.count) leaders: \(leaders.map(\.name).joined(separator: ", "))")
        }
        for member in members {
            if !member.processRunning {
                // The cluster view may still list it until its member key expires (ttl).
                problems.append("\(member.name): Patroni is not running")
            } else if !member.apiAnswering {
                problems.append("\(member.name): its REST API (\(member.apiURL)) does not answer")
            } else if !member.inCluster {
                problems.append("\(member.name): not in the cluster view")
            } else if !member.isLeader && !member.isStreamingReplica {
                problems.append("\(member.name): \(member.role ?? "no role"), state \(member.state ?? "unknown")")
            }
        }
        self.problems = problems
        healthy = problems.isEmpty && !members.isEmpty
    }

    /// 0 healthy, 2 down (nothing answers), 3 degraded.
    public var exitStatus: ExitStatus {
        if healthy { return .healthy }
        let anythingUp = singleNode.up || etcd.healthy || members.contains { $0.processRunning || $0.inCluster }
        return anythingUp ? .degraded : .down
    }

    /// The table `pgha sandbox status` prints.
    public func renderTable() -> String {
        var lines: [String] = []
        lines.append("sandbox \(baseDir): \(healthy ? "healthy" : "NOT healthy")")
        lines.append("")
        lines.append(TextTable(
            header: ["COMPONENT", "ADDRESS", "STATUS", "DETAIL"],
            rows: [
                [
                    "single node", singleNode.address, singleNode.up ? "up" : "down",
                    [singleNode.version.map { "PostgreSQL \($0)" }, singleNode.walLevel.map { "wal_level=\($0)" }]
                        .compactMap { $0 }.joined(separator: ", "),
                ],
                ["etcd", etcd.endpoint, etcd.healthy ? "healthy" : "unhealthy", ""],
                ["PgBouncer", wayIn.pgbouncer, wayIn.pgbouncerUp ? "up" : "down", wayIn.pgbouncerTarget.map { "databases at \($0)" } ?? ""],
                ["HAProxy", "", wayIn.haproxyRunning ? "running" : "stopped", wayIn.haproxyRunning ? "started with the target cluster" : ""],
            ]
        ).render())
        lines.append("")
        lines.append(Self.memberTable(members))
        lines.append("")
        lines.append("leader: \(leader ?? "none"), streaming replicas: \(streamingReplicas)")
        if !targetMembers.isEmpty {
            lines.append("")
            lines.append("target cluster (started from the migration's patroni.yml by `pgha sandbox start-cluster`):")
            lines.append(Self.memberTable(targetMembers))
        }
        for problem in problems { lines.append("problem: \(problem)") }
        return lines.joined(separator: "\n") + "\n"
    }

    static func memberTable(_ members: [MemberStatus]) -> String {
        TextTable(
            header: ["MEMBER", "HOST:PORT", "ROLE", "STATE", "LAG", "TL"],
            rows: members.map { member in
                [
                    member.name, member.address,
                    member.role ?? (member.processRunning ? "?" : "-"),
                    member.state.map { member.processRunning ? $0 : "\($0) (Patroni down)" }
                        ?? (member.processRunning ? "not in cluster" : "stopped"),
                    member.lagBytes.map(formatBytes) ?? (member.isLeader ? "" : "-"),
                    member.timeline.map(String.init) ?? "-",
                ]
            }
        ).render()
    }

}
