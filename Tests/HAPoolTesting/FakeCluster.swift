public import HAPool
public import Patroni
public import PGClient
import Synchronization

/// The world the fakes share: which nodes accept connections, which are in recovery, which
/// statements fail, and what the REST API answers. Tests change it between steps.
public final class FakeCluster: Sendable {
    public struct Node: Sendable {
        public var reachable = true
        public var inRecovery = false
        public var refusesLogin = false
        public init(reachable: Bool = true, inRecovery: Bool = false, refusesLogin: Bool = false) {
            self.reachable = reachable
            self.inRecovery = inRecovery
            self.refusesLogin = refusesLogin
        }
    }

    private struct State {
        var nodes: [NodeAddress: Node] = [:]
        var answer: Result<ClusterTopology, PatroniError>?
        var fetches = 0
        var connects: [NodeAddress: Int] = [:]
        var statements: [(node: NodeAddress, sql: String)] = []
        /// Errors the next statements on a node throw, in order.
        var failures: [NodeAddress: [PGError]] = [:]
        var closed = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func set(_ address: NodeAddress, _ node: Node) { state.withLock { $0.nodes[address] = node } }
    public func node(_ address: NodeAddress) -> Node { state.withLock { $0.nodes[address] ?? Node() } }

    /// What `/cluster` answers from now on (nil: every host fails).
    public func answer(_ topology: ClusterTopology) { state.withLock { $0.answer = .success(topology) } }
    public func answer(failing error: PatroniError) { state.withLock { $0.answer = .failure(error) } }

    /// The next statement on `node` fails with `error`.
    public func failNextStatement(on node: NodeAddress, with error: PGError) {
        state.withLock { $0.failures[node, default: []].append(error) }
    }

    public var fetches: Int { state.withLock { $0.fetches } }
    public func connects(to node: NodeAddress) -> Int { state.withLock { $0.connects[node] ?? 0 } }
    public var statements: [(node: NodeAddress, sql: String)] { state.withLock { $0.statements } }
    public var closedConnections: Int { state.withLock { $0.closed } }

    func fetch() throws(PatroniError) -> ClusterTopology {
        let answer = state.withLock { s -> Result<ClusterTopology, PatroniError>? in
            s.fetches += 1
            return s.answer
        }
        guard let answer else { throw PatroniError(code: .allEndpointsFailed, message: "no answer configured") }
        return try answer.get()
    }

    func connect(_ config: PGConnectionConfig) throws(PGError) -> FakeConnection {
        let address = NodeAddress(host: config.host, port: config.port)
        let node = state.withLock { s -> Node in
            s.connects[address, default: 0] += 1
            return s.nodes[address] ?? Node()
        }
        guard node.reachable else {
            throw PGError(code: .connectionFailed, message: "connection refused", host: address.host, port: address.port)
        }
        guard !node.refusesLogin else {
            throw PGError(code: .authenticationFailed, message: "password authentication failed", host: address.host, port: address.port)
        }
        return FakeConnection(node: address, cluster: self)
    }

    /// Runs a statement on `node`: a scripted failure, or a broken connection when the node is down.
    func run(_ sql: String, on node: NodeAddress) throws(PGError) {
        let (failure, reachable) = state.withLock { s -> (PGError?, Bool) in
            if var list = s.failures[node], !list.isEmpty {
                let first = list.removeFirst()
                s.failures[node] = list
                return (first, true)
            }
            let reachable = s.nodes[node]?.reachable ?? true
            if reachable { s.statements.append((node, sql)) }
            return (nil, reachable)
        }
        if let failure { throw failure }
        if !reachable {
            throw PGError(code: .connectionBroken, message: "server closed the connection", statementMayHaveRun: false)
        }
    }

    func connectionClosed() { state.withLock { $0.closed += 1 } }
}

/// A connection to a node of a `FakeCluster`.
public final class FakeConnection: PoolConnection {
    public let node: NodeAddress
    let cluster: FakeCluster
    private let healthy = Atomic(true)

    init(node: NodeAddress, cluster: FakeCluster) {
        self.node = node
        self.cluster = cluster
    }

    public var isHealthy: Bool { healthy.load(ordering: .relaxed) }
    public var isIdle: Bool { true }
    public func probe() -> Bool { isHealthy && cluster.node(node).reachable }

    public func close() {
        if healthy.exchange(false, ordering: .relaxed) { cluster.connectionClosed() }
    }

    public func isInRecovery() async throws(PGError) -> Bool {
        let state = cluster.node(node)
        guard state.reachable else {
            healthy.store(false, ordering: .relaxed)
            throw PGError(code: .connectionBroken, message: "server closed the connection")
        }
        return state.inRecovery
    }

    /// A statement: recorded on the node, or the scripted failure (a connection-level failure
    /// marks the connection broken, as libpq does).
    public func runSync(_ sql: String) throws(PGError) {
        do {
            try cluster.run(sql, on: node)
        } catch {
            if error.isConnectionLevel { healthy.store(false, ordering: .relaxed) }
            throw error
        }
    }

    public func run(_ sql: String) async throws(PGError) {
        try runSync(sql)
    }
}

public struct FakeConnectionFactory: PoolConnectionFactory {
    public let cluster: FakeCluster
    public init(cluster: FakeCluster) { self.cluster = cluster }
    public func connect(_ config: PGConnectionConfig) throws(PGError) -> FakeConnection { try cluster.connect(config) }
    public func connect(_ config: PGConnectionConfig) async throws(PGError) -> FakeConnection { try cluster.connect(config) }
}

/// `/cluster` as the fake cluster answers it.
public struct FakeTopologySource: TopologySource {
    public let cluster: FakeCluster
    public init(cluster: FakeCluster) { self.cluster = cluster }
    public func fetch() async throws -> ClusterTopology { try cluster.fetch() }
}
