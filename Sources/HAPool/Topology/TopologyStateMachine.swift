/// The routing decision of one moment: where writes go and which replicas serve reads.
/// Published by `TopologyStateMachine` after every change; the pool's hot path reads only this.
public struct RoutingTable: Hashable, Sendable {
    /// The confirmed, writable leader; nil while none is (writes wait).
    public var writer: NodeAddress?
    /// Replicas that may serve `readOnly` requests, in round-robin order.
    public var readers: [ClusterMember]
    /// Increases with every published table.
    public var generation: Int

    public init(writer: NodeAddress?, readers: [ClusterMember], generation: Int) {
        self.writer = writer
        self.readers = readers
        self.generation = generation
    }
}

/// What the executor must do after an event. The machine does no I/O of its own.
public enum TopologyAction: Hashable, Sendable {
    /// Ask the Patroni REST API for `/cluster` (all hosts concurrently).
    case fetchTopology
    /// Connect to `node` and check `pg_is_in_recovery() = false`, after `delay`.
    case probeLeader(NodeAddress, after: Duration)
    /// Make sure a connection pool exists for `node`.
    case openPool(NodeAddress)
    /// Never hand out connections to `node` for writing again; close them as they come back.
    /// (The demoted leader keeps its pool only after it is confirmed a replica by a new fetch.)
    case drainPool(NodeAddress)
    /// The member is gone from the cluster: close its pool.
    case retirePool(NodeAddress)
    /// Replace the routing table used by the hot path.
    case publish(RoutingTable)
    /// A leader is confirmed: wake waiting writers.
    case leaderAvailable(NodeAddress)
    /// The leader changed; `unavailable` is how long writes had no confirmed leader.
    case failoverCompleted(from: NodeAddress?, to: NodeAddress, unavailable: Duration)
}

/// Tracks who leads the cluster, which replicas qualify for reads, and what changed.
///
/// A pure state machine (postgres-nio `PoolStateMachine` style): every event returns the actions
/// to perform; time comes in with the events; no I/O, no clock. The executor (`PatroniHAPool`)
/// performs the actions and feeds results back.
///
/// Safety rule it enforces: a node becomes the `writer` only when the REST API names it leader
/// *and* a connection to it has confirmed `pg_is_in_recovery() = false` (Patroni names a new
/// leader up to ~0.45 s before it leaves recovery). A connection failure on the writer removes it
/// at once; it comes back only through the same confirmation.
public struct TopologyStateMachine: Sendable {
    public struct Settings: Hashable, Sendable {
        /// Periodic refresh while all is well (PATRONI_HEALTH_CHECK_INTERVAL).
        public var refreshInterval: Duration
        /// Refresh cadence while no leader is confirmed.
        public var failoverPollInterval: Duration
        /// Delay between leader probes while the candidate is still in recovery.
        public var probeRetryInterval: Duration
        /// Replicas further behind than this leave the read rotation.
        public var maxReplicaLagBytes: Int64
        /// A replica whose connection failed stays out of the rotation this long (or until a fetch after it).
        public var replicaQuarantine: Duration
        /// The pause after the first failed fetch (no REST host gave a usable answer); it doubles
        /// with every further failure up to `fetchBackoffMax`, each pause spread over its upper
        /// half by the jitter the executor passes in.
        public var fetchBackoffInitial: Duration
        public var fetchBackoffMax: Duration

        public init(
            refreshInterval: Duration = .seconds(30), failoverPollInterval: Duration = .milliseconds(20),
            probeRetryInterval: Duration = .milliseconds(5), maxReplicaLagBytes: Int64 = 1 << 20,
            replicaQuarantine: Duration = .seconds(1), fetchBackoffInitial: Duration = .milliseconds(20),
            fetchBackoffMax: Duration = .seconds(2)
        ) {
            self.refreshInterval = refreshInterval
            self.failoverPollInterval = failoverPollInterval
            self.probeRetryInterval = probeRetryInterval
            self.maxReplicaLagBytes = maxReplicaLagBytes
            self.replicaQuarantine = replicaQuarantine
            self.fetchBackoffInitial = fetchBackoffInitial
            self.fetchBackoffMax = fetchBackoffMax
        }

        /// The pause after `failures` consecutive failed fetches, `jitter` in `0..<1`: the capped
        /// exponential delay `d`, spread over `[d/2, d]` ("equal jitter", so a hundred pools that
        /// lost the API at the same moment do not come back in step).
        public func fetchBackoff(afterFailures failures: Int, jitter: Double) -> Duration {
            let exponent = min(max(failures, 1) - 1, 30)
            let capped = min(fetchBackoffMax, fetchBackoffInitial * (1 << exponent))
            return capped / 2 + capped / 2 * min(max(jitter, 0), 1)
        }
    }

    public typealias Instant = ContinuousClock.Instant

    /// The leader as far as writes are concerned.
    public enum LeaderState: Hashable, Sendable {
        /// No topology seen yet.
        /// Can transition to: `.confirming`, `.leaderless`, `.closed`.
        case discovering(since: Instant)
        /// The REST API names `candidate`; waiting for it to leave recovery. `unavailableSince` is
        /// when writes last had a confirmed leader (nil at start-up).
        /// Can transition to: `.ready`, `.confirming` (another candidate), `.leaderless`, `.closed`.
        case confirming(candidate: NodeAddress, previous: NodeAddress?, unavailableSince: Instant?)
        /// `leader` is confirmed writable.
        /// Can transition to: `.confirming` (REST names another leader), `.leaderless`, `.closed`.
        case ready(leader: NodeAddress)
        /// The leader was lost (connection failure, or REST names none).
        /// Can transition to: `.confirming`, `.closed`.
        case leaderless(previous: NodeAddress?, since: Instant)
        /// The pool is closed; every event is ignored.
        /// Can transition to: nothing.
        case closed
    }

    public private(set) var leaderState: LeaderState
    public private(set) var topology: ClusterTopology?
    public private(set) var routing: RoutingTable
    public let settings: Settings

    private var lastFetchStarted: Instant?
    private var lastFetchCompleted: Instant?
    private var fetchInFlight = false
    private var fetchAgain = false
    private var probeInFlight: NodeAddress?
    private var quarantined: [NodeAddress: Instant] = [:]
    private var pools: Set<NodeAddress> = []
    /// Consecutive failed fetches (all REST hosts failed).
    public private(set) var consecutiveFetchFailures = 0
    /// After a failed fetch: no fetch before this instant (backoff); nil after a usable answer.
    public private(set) var backoffUntil: Instant?
    /// A fetch was requested during the backoff: it is made when the backoff ends.
    private var fetchDeferred = false

    public init(settings: Settings, now: Instant) {
        self.settings = settings
        self.leaderState = .discovering(since: now)
        self.routing = RoutingTable(writer: nil, readers: [], generation: 0)
    }

    /// True while writes have no confirmed leader.
    public var isFailingOver: Bool {
        switch leaderState {
        case .ready, .closed: return false
        case .discovering, .confirming, .leaderless: return true
        }
    }

    // MARK: - Events

    /// Start-up: fetch the topology at once.
    public mutating func start(now: Instant) -> [TopologyAction] {
        requestFetch(now: now)
    }

    /// Time passed. Returns a fetch when one is due (periodic, or fast while failing over).
    public mutating func tick(now: Instant) -> [TopologyAction] {
        if case .closed = leaderState { return [] }
        var actions: [TopologyAction] = []
        let before = quarantined.count
        quarantined = quarantined.filter { $0.value > now }
        if quarantined.count != before { actions += republish() }
        if isDue(now: now) { actions += requestFetch(now: now) }
        return actions
    }

    /// How long until the next `tick` has something to do.
    public func nextTick(now: Instant) -> Duration {
        if case .closed = leaderState { return settings.refreshInterval }
        var wait = max(.zero, nextFetchDue(now: now) - now)
        for until in quarantined.values { wait = min(wait, max(.zero, until - now)) }
        return wait
    }

    /// Someone needs fresh data now (a stale routing table, an operator's request).
    public mutating func refreshRequested(now: Instant) -> [TopologyAction] {
        if case .closed = leaderState { return [] }
        return requestFetch(now: now)
    }

    /// A `/cluster` answer arrived.
    public mutating func fetchSucceeded(_ observed: ClusterTopology, now: Instant) -> [TopologyAction] {
        fetchInFlight = false
        if case .closed = leaderState { return [] }
        consecutiveFetchFailures = 0
        backoffUntil = nil
        fetchDeferred = false
        lastFetchCompleted = now
        topology = observed
        var actions: [TopologyAction] = []

        // Pools follow membership.
        let addresses = observed.addresses
        for address in addresses.subtracting(pools).sorted() { actions.append(.openPool(address)) }
        for address in pools.subtracting(addresses).sorted() { actions.append(.retirePool(address)) }
        pools = addresses
        // A fresh answer that shows a quarantined replica running lets it back in.
        for member in observed.members where member.isRunning {
            if let address = member.address, member.role == .replica { quarantined[address] = nil }
        }

        let named = observed.leader?.address
        switch leaderState {
        case .closed:
            preconditionFailure("handled above")
        case .discovering:
            if let named {
                leaderState = .confirming(candidate: named, previous: nil, unavailableSince: nil)
                actions += startProbe(named, after: .zero)
            }
        case .ready(let leader):
            if let named, named != leader {
                leaderState = .confirming(candidate: named, previous: leader, unavailableSince: now)
                actions.append(.drainPool(leader))
                actions += startProbe(named, after: .zero)
            } else if named == nil {
                leaderState = .leaderless(previous: leader, since: now)
                actions.append(.drainPool(leader))
            }
        case .confirming(let candidate, let previous, let since):
            if let named, named != candidate {
                leaderState = .confirming(candidate: named, previous: previous, unavailableSince: since)
                actions += startProbe(named, after: .zero)
            } else if named == nil {
                leaderState = .leaderless(previous: previous, since: since ?? now)
            } else if probeInFlight == nil {
                actions += startProbe(candidate, after: .zero)
            }
        case .leaderless(let previous, let since):
            if let named {
                leaderState = .confirming(candidate: named, previous: previous, unavailableSince: since)
                actions += startProbe(named, after: .zero)
            }
        }
        actions += republish()
        if fetchAgain {
            fetchAgain = false
            actions += requestFetch(now: now)
        }
        return actions
    }

    /// Every REST host failed (or answered garbage). Routing keeps what it has: PostgreSQL may be
    /// fine while the API is not; connection failures still move the leader out.
    ///
    /// The next fetch waits `settings.fetchBackoff(afterFailures:jitter:)` (`jitter` in `0..<1`
    /// from the executor's random source): a failing API is not polled every 20 ms. Requests
    /// that arrive meanwhile (connection failures, probe failures, an operator's refresh) are
    /// served when the pause ends. Only a usable answer that shows an election in progress keeps
    /// the fast `failoverPollInterval`.
    public mutating func fetchFailed(now: Instant, jitter: Double) -> [TopologyAction] {
        fetchInFlight = false
        if case .closed = leaderState { return [] }
        consecutiveFetchFailures += 1
        backoffUntil = now + settings.fetchBackoff(afterFailures: consecutiveFetchFailures, jitter: jitter)
        if fetchAgain {
            fetchAgain = false
            fetchDeferred = true
        }
        return []
    }

    /// The probe confirmed `node` is out of recovery and takes writes.
    public mutating func probeSucceeded(_ node: NodeAddress, now: Instant) -> [TopologyAction] {
        if probeInFlight == node { probeInFlight = nil }
        switch leaderState {
        case .closed, .discovering, .ready, .leaderless:
            return []
        case .confirming(let candidate, let previous, let since):
            guard candidate == node else { return [] }
            leaderState = .ready(leader: node)
            var actions = republish()
            actions.append(.leaderAvailable(node))
            if let since, previous != node {
                actions.append(.failoverCompleted(from: previous, to: node, unavailable: now - since))
            }
            return actions
        }
    }

    /// The probe failed: `node` is unreachable or still in recovery. Try again after
    /// `retryAfter` (default: `probeRetryInterval`, short, because a new leader leaves recovery
    /// within a fraction of a second; the executor passes a long one when retrying cannot help
    /// soon, e.g. wrong credentials), and refresh the topology in case the REST API changed its mind.
    public mutating func probeFailed(_ node: NodeAddress, now: Instant, retryAfter: Duration? = nil) -> [TopologyAction] {
        if probeInFlight == node { probeInFlight = nil }
        switch leaderState {
        case .closed, .discovering, .ready, .leaderless:
            return []
        case .confirming(let candidate, _, _):
            guard candidate == node else { return [] }
            return startProbe(node, after: retryAfter ?? settings.probeRetryInterval) + requestFetch(now: now)
        }
    }

    /// A connection to `node` failed at the connection level (refused, reset, admin shutdown,
    /// read-only transaction on what we thought was the leader).
    public mutating func connectionFailed(_ node: NodeAddress, now: Instant) -> [TopologyAction] {
        switch leaderState {
        case .closed:
            return []
        case .ready(let leader) where leader == node:
            leaderState = .leaderless(previous: leader, since: now)
            return [.drainPool(node)] + republish() + requestFetch(now: now)
        case .confirming(let candidate, let previous, let since) where candidate == node:
            leaderState = .leaderless(previous: previous, since: since ?? now)
            return republish() + requestFetch(now: now)
        case .ready, .confirming, .discovering, .leaderless:
            guard topology?.replicas.contains(where: { $0.address == node }) == true else {
                return requestFetch(now: now)
            }
            quarantined[node] = now + settings.replicaQuarantine
            return republish() + requestFetch(now: now)
        }
    }

    /// The pool is closing.
    public mutating func close() -> [TopologyAction] {
        leaderState = .closed
        let retire = pools.sorted().map(TopologyAction.retirePool)
        pools = []
        return retire
    }

    // MARK: - Helpers

    private func isDue(now: Instant) -> Bool {
        guard !fetchInFlight else { return false }
        return now >= nextFetchDue(now: now)
    }

    /// When the next fetch is due: the periodic interval (fast while failing over), or after a
    /// failed fetch the end of the backoff (while failing over or when a fetch was requested
    /// meanwhile; otherwise the later of the backoff and the periodic interval).
    private func nextFetchDue(now: Instant) -> Instant {
        guard let last = lastFetchStarted else { return now }
        if let until = backoffUntil {
            if isFailingOver || fetchDeferred { return until }
            return max(until, last + settings.refreshInterval)
        }
        return last + (isFailingOver ? settings.failoverPollInterval : settings.refreshInterval)
    }

    private mutating func requestFetch(now: Instant) -> [TopologyAction] {
        if fetchInFlight {
            fetchAgain = true
            return []
        }
        if let until = backoffUntil, now < until {
            fetchDeferred = true
            return []
        }
        fetchInFlight = true
        fetchDeferred = false
        lastFetchStarted = now
        return [.fetchTopology]
    }

    private mutating func startProbe(_ node: NodeAddress, after delay: Duration) -> [TopologyAction] {
        guard probeInFlight != node else { return [] }
        probeInFlight = node
        return [.probeLeader(node, after: delay)]
    }

    /// Recomputes the routing table; returns `.publish` only when it changed.
    private mutating func republish() -> [TopologyAction] {
        let writer: NodeAddress?
        switch leaderState {
        case .ready(let leader): writer = leader
        case .discovering, .confirming, .leaderless, .closed: writer = nil
        }
        var readers = topology?.readableReplicas(
            maxLagBytes: settings.maxReplicaLagBytes, excluding: Set(quarantined.keys)
        ) ?? []
        // The old leader may still be listed as a replica-to-be; never read from the writer's
        // predecessor until REST shows it running as a replica (handled by role), nor from the writer.
        readers.removeAll { $0.address == writer }
        guard writer != routing.writer || readers != routing.readers else { return [] }
        routing = RoutingTable(writer: writer, readers: readers, generation: routing.generation + 1)
        return [.publish(routing)]
    }
}
