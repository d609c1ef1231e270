import Testing
@testable import HAPool

/// The topology machine as pure values: events in, actions out, time passed in by the test.
@Suite struct TopologyStateMachineTests {
    typealias Instant = ContinuousClock.Instant
    let t0 = ContinuousClock.Instant.now
    let n1 = NodeAddress(host: "127.0.0.11", port: 15432)
    let n2 = NodeAddress(host: "127.0.0.12", port: 15432)
    let n3 = NodeAddress(host: "127.0.0.13", port: 15432)
    let settings = TopologyStateMachine.Settings(
        refreshInterval: .seconds(30), failoverPollInterval: .milliseconds(20),
        probeRetryInterval: .milliseconds(10), maxReplicaLagBytes: 1000, replicaQuarantine: .seconds(1)
    )

    func at(_ ms: Int) -> Instant { t0 + .milliseconds(ms) }

    func member(_ a: NodeAddress, _ role: MemberRole, state: String = "streaming", lag: Int64? = 0, noLB: Bool = false) -> ClusterMember {
        ClusterMember(name: "node\(a.host.last!)", address: a, role: role, state: role == .leader ? "running" : state, lagBytes: role == .leader ? nil : lag, noLoadBalance: noLB)
    }

    func topology(leader: NodeAddress?, replicas: [ClusterMember]) -> ClusterTopology {
        var members = replicas
        if let leader { members.insert(member(leader, .leader), at: 0) }
        return ClusterTopology(members: members)
    }

    /// A machine whose leader n1 is confirmed, replicas n2 and n3 readable.
    func ready() -> TopologyStateMachine {
        var m = TopologyStateMachine(settings: settings, now: at(0))
        _ = m.start(now: at(0))
        _ = m.fetchSucceeded(topology(leader: n1, replicas: [member(n2, .replica), member(n3, .replica)]), now: at(1))
        _ = m.probeSucceeded(n1, now: at(2))
        return m
    }

    @Test func startUpFetchesThenProbesTheNamedLeaderBeforeRoutingWrites() {
        var m = TopologyStateMachine(settings: settings, now: at(0))
        #expect(m.start(now: at(0)) == [.fetchTopology])
        let actions = m.fetchSucceeded(topology(leader: n1, replicas: [member(n2, .replica)]), now: at(1))
        #expect(actions.contains(.openPool(n1)) && actions.contains(.openPool(n2)))
        #expect(actions.contains(.probeLeader(n1, after: .zero)))
        #expect(m.routing.writer == nil, "no writes before the leader is confirmed out of recovery")
        #expect(m.routing.readers.map(\.address) == [n2])
        let confirmed = m.probeSucceeded(n1, now: at(3))
        #expect(m.routing.writer == n1)
        #expect(confirmed.contains(.leaderAvailable(n1)))
        #expect(!confirmed.contains { if case .failoverCompleted = $0 { true } else { false } }, "start-up is not a failover")
    }

    @Test func candidateStillInRecoveryIsProbedAgainAndNeverPublished() {
        var m = TopologyStateMachine(settings: settings, now: at(0))
        _ = m.start(now: at(0))
        _ = m.fetchSucceeded(topology(leader: n1, replicas: []), now: at(1))
        let retry = m.probeFailed(n1, now: at(5))
        #expect(retry.contains(.probeLeader(n1, after: .milliseconds(10))))
        #expect(retry.contains(.fetchTopology))
        #expect(m.routing.writer == nil)
    }

    @Test func probeRetryHonoursTheExecutorsDelay() {
        var m = TopologyStateMachine(settings: settings, now: at(0))
        _ = m.start(now: at(0))
        _ = m.fetchSucceeded(topology(leader: n1, replicas: []), now: at(1))
        // wrong credentials: the executor asks for a slow retry, not a login storm
        let actions = m.probeFailed(n1, now: at(5), retryAfter: .seconds(1))
        #expect(actions.contains(.probeLeader(n1, after: .seconds(1))))
        #expect(m.routing.writer == nil)
    }

    @Test func switchoverSeenInRESTDrainsOldLeaderAndConfirmsNewOne() {
        var m = ready()
        let actions = m.fetchSucceeded(topology(leader: n2, replicas: [member(n3, .replica)]), now: at(1000))
        #expect(actions.contains(.drainPool(n1)))
        #expect(actions.contains(.probeLeader(n2, after: .zero)))
        #expect(actions.contains(.retirePool(n1)), "n1 no longer listed")
        #expect(m.routing.writer == nil)
        let done = m.probeSucceeded(n2, now: at(1080))
        #expect(m.routing.writer == n2)
        #expect(done.contains(.failoverCompleted(from: n1, to: n2, unavailable: .milliseconds(80))))
    }

    @Test func connectionFailureOnLeaderStopsWritesAtOnceAndPollsFast() {
        var m = ready()
        let actions = m.connectionFailed(n1, now: at(500))
        #expect(actions.contains(.drainPool(n1)))
        #expect(actions.contains(.fetchTopology))
        #expect(m.routing.writer == nil)
        #expect(m.isFailingOver)
        // while failing over, the fetch cadence is the fast one
        _ = m.fetchFailed(now: at(505))
        #expect(m.nextTick(now: at(510)) == .milliseconds(10))
        #expect(m.tick(now: at(520)) == [.fetchTopology])
    }

    @Test func restStillNamingTheLostLeaderNeedsAFreshConfirmation() {
        var m = ready()
        _ = m.connectionFailed(n1, now: at(500))
        let actions = m.fetchSucceeded(topology(leader: n1, replicas: [member(n2, .replica)]), now: at(520))
        #expect(actions.contains(.probeLeader(n1, after: .zero)))
        #expect(m.routing.writer == nil)
        _ = m.probeSucceeded(n1, now: at(530))
        #expect(m.routing.writer == n1)
    }

    @Test func noLeaderInRESTMeansNoWrites() {
        var m = ready()
        let actions = m.fetchSucceeded(topology(leader: nil, replicas: [member(n2, .replica)]), now: at(100))
        #expect(actions.contains(.drainPool(n1)))
        #expect(m.routing.writer == nil)
        if case .leaderless(let previous, _) = m.leaderState { #expect(previous == n1) } else { Issue.record("\(m.leaderState)") }
    }

    @Test func twoLeadersAreNoLeader() {
        let t = ClusterTopology(members: [member(n1, .leader), member(n2, .leader)])
        #expect(t.leader == nil)
    }

    @Test func replicaSelectionHonoursLagStateAndNoLoadBalance() {
        var m = TopologyStateMachine(settings: settings, now: at(0))
        _ = m.start(now: at(0))
        let n4 = NodeAddress(host: "127.0.0.14", port: 15432)
        let n5 = NodeAddress(host: "127.0.0.15", port: 15432)
        _ = m.fetchSucceeded(topology(leader: n1, replicas: [
            member(n2, .replica, lag: 10),
            member(n3, .replica, lag: 5000),          // too far behind
            member(n4, .replica, noLB: true),         // tagged noloadbalance
            member(n5, .replica, state: "stopped"),   // not running
            ClusterMember(name: "nolag", address: NodeAddress(host: "127.0.0.16", port: 1), role: .replica, state: "streaming", lagBytes: nil),
        ]), now: at(1))
        #expect(m.routing.readers.map(\.address) == [n2])
    }

    @Test func failedReplicaIsQuarantinedThenReturns() {
        var m = ready()
        #expect(m.routing.readers.map(\.address) == [n2, n3])
        let actions = m.connectionFailed(n2, now: at(100))
        #expect(actions.contains(.fetchTopology))
        #expect(m.routing.readers.map(\.address) == [n3])
        // a fetch that still shows it streaming lets it back
        _ = m.fetchSucceeded(topology(leader: n1, replicas: [member(n2, .replica), member(n3, .replica)]), now: at(110))
        #expect(m.routing.readers.map(\.address) == [n2, n3])
        // without a fetch, the quarantine ends after its time
        _ = m.connectionFailed(n3, now: at(200))
        #expect(m.routing.readers.map(\.address) == [n2])
        let later = m.tick(now: at(1300))
        #expect(later.contains { if case .publish = $0 { true } else { false } })
        #expect(m.routing.readers.map(\.address) == [n2, n3])
    }

    @Test func pausedReplayShowsAsLagAndLeavesRotation() {
        var m = ready()
        _ = m.fetchSucceeded(topology(leader: n1, replicas: [member(n2, .replica, lag: 2_000_000), member(n3, .replica)]), now: at(100))
        #expect(m.routing.readers.map(\.address) == [n3])
        _ = m.fetchSucceeded(topology(leader: n1, replicas: [member(n2, .replica, lag: 0), member(n3, .replica)]), now: at(200))
        #expect(m.routing.readers.map(\.address) == [n2, n3])
    }

    @Test func concurrentFetchRequestsCoalesce() {
        var m = ready()
        #expect(m.refreshRequested(now: at(10)) == [.fetchTopology])
        #expect(m.refreshRequested(now: at(11)) == [])
        #expect(m.tick(now: at(40_000)) == [], "no second fetch while one is in flight")
        let after = m.fetchSucceeded(topology(leader: n1, replicas: [member(n2, .replica), member(n3, .replica)]), now: at(12))
        #expect(after.contains(.fetchTopology), "the request made during the fetch is honoured afterwards")
    }

    @Test func periodicRefreshWhenStable() {
        var m = ready()
        #expect(m.tick(now: at(10_000)) == [])
        #expect(m.nextTick(now: at(10_000)) == .seconds(20))
        #expect(m.tick(now: at(30_001)) == [.fetchTopology])
    }

    @Test func fetchFailureKeepsRoutingAndCounts() {
        var m = ready()
        _ = m.refreshRequested(now: at(10))
        #expect(m.fetchFailed(now: at(20)) == [])
        #expect(m.routing.writer == n1)
        #expect(m.consecutiveFetchFailures == 1)
    }

    @Test func candidateChangesWhileConfirming() {
        var m = ready()
        _ = m.fetchSucceeded(topology(leader: n2, replicas: []), now: at(100))
        let actions = m.fetchSucceeded(topology(leader: n3, replicas: []), now: at(120))
        #expect(actions.contains(.probeLeader(n3, after: .zero)))
        #expect(m.probeSucceeded(n2, now: at(130)) == [], "a stale probe of the previous candidate changes nothing")
        #expect(m.routing.writer == nil)
        let done = m.probeSucceeded(n3, now: at(140))
        #expect(done.contains(.failoverCompleted(from: n1, to: n3, unavailable: .milliseconds(40))))
    }

    @Test func closedMachineIgnoresEverything() {
        var m = ready()
        let retire = m.close()
        #expect(Set(retire) == [.retirePool(n1), .retirePool(n2), .retirePool(n3)])
        #expect(m.tick(now: at(100_000)) == [])
        #expect(m.refreshRequested(now: at(1)) == [])
        #expect(m.connectionFailed(n1, now: at(1)) == [])
        #expect(m.probeSucceeded(n1, now: at(1)) == [])
        #expect(m.fetchSucceeded(topology(leader: n2, replicas: []), now: at(1)) == [])
    }

    @Test func writerIsNeverAReader() {
        var m = TopologyStateMachine(settings: settings, now: at(0))
        _ = m.start(now: at(0))
        // REST lists n1 as leader and, inconsistently, nothing else; readers exclude the writer
        _ = m.fetchSucceeded(topology(leader: n1, replicas: [member(n2, .replica)]), now: at(1))
        _ = m.probeSucceeded(n1, now: at(2))
        #expect(!m.routing.readers.contains { $0.address == n1 })
    }
}
