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

    @Test func connectionFailureOnLeaderStopsWritesAtOnceAndRefetches() {
        var m = ready()
        let actions = m.connectionFailed(n1, now: at(500))
        #expect(actions.contains(.drainPool(n1)))
        #expect(actions.contains(.fetchTopology))
        #expect(m.routing.writer == nil)
        #expect(m.isFailingOver)
        // a failed fetch pauses the first backoff step (20 ms at jitter 1) before the next one
        _ = m.fetchFailed(now: at(505), jitter: 1)
        #expect(m.nextTick(now: at(510)) == .milliseconds(15))
        #expect(m.tick(now: at(520)) == [])
        #expect(m.tick(now: at(525)) == [.fetchTopology])
    }

    @Test func backoffDoublesWithEqualJitterUpToTheCap() {
        let s = TopologyStateMachine.Settings()
        #expect(s.fetchBackoff(afterFailures: 1, jitter: 0) == .milliseconds(10))
        #expect(s.fetchBackoff(afterFailures: 1, jitter: 1) == .milliseconds(20))
        #expect(s.fetchBackoff(afterFailures: 3, jitter: 0) == .milliseconds(40))
        #expect(s.fetchBackoff(afterFailures: 3, jitter: 0.5) == .milliseconds(60))
        #expect(s.fetchBackoff(afterFailures: 8, jitter: 1) == .seconds(2))
        #expect(s.fetchBackoff(afterFailures: 200, jitter: 0) == .seconds(1))
    }

    /// Fetches the machine asks for in `span` when every answer fails (`failing`) or when every
    /// answer is usable but names no leader (an election in progress).
    func fetches(in span: Duration, failing: Bool, jitter: Double) -> Int {
        var m = TopologyStateMachine(settings: TopologyStateMachine.Settings(), now: at(0))
        var now = at(0)
        var count = 0
        var pending = m.start(now: now).contains(.fetchTopology)
        while now < at(0) + span {
            if pending {
                count += 1
                pending = false
                // the answer takes 1 ms
                now = now + .milliseconds(1)
                if failing {
                    _ = m.fetchFailed(now: now, jitter: jitter)
                } else {
                    _ = m.fetchSucceeded(topology(leader: nil, replicas: [member(n2, .replica)]), now: now)
                }
            }
            now = now + max(m.nextTick(now: now), .milliseconds(1))
            pending = m.tick(now: now).contains(.fetchTopology)
        }
        return count
    }

    @Test func aFailingAPIIsPolledAboutOnceASecondAnElectionEvery20ms() {
        let failing = fetches(in: .seconds(30), failing: true, jitter: 0.5)
        // 7 growing pauses (15 ms … 0.96 s), then one every 1.5 s on average
        #expect(failing >= 15 && failing <= 30, "\(failing)")
        #expect(fetches(in: .seconds(30), failing: true, jitter: 0) <= 40)
        #expect(fetches(in: .seconds(30), failing: true, jitter: 1) >= 12)
        let election = fetches(in: .seconds(30), failing: false, jitter: 0.5)
        #expect(election > 1000, "a healthy API that reports no leader yet keeps the fast cadence (\(election))")
    }

    @Test func requestsDuringABackoffAreDeferredNotDropped() {
        var m = ready()
        _ = m.refreshRequested(now: at(10))
        _ = m.fetchFailed(now: at(20), jitter: 1)  // no fetch before 40 ms
        #expect(m.refreshRequested(now: at(25)) == [])
        #expect(!m.connectionFailed(n2, now: at(26)).contains(.fetchTopology))
        // the leader is still confirmed (ready), yet the deferred request is served when the pause ends
        #expect(m.nextTick(now: at(30)) == .milliseconds(10))
        #expect(m.tick(now: at(40)) == [.fetchTopology])
    }

    @Test func aUsableAnswerEndsTheBackoff() {
        var m = TopologyStateMachine(settings: settings, now: at(0))
        _ = m.start(now: at(0))
        _ = m.fetchFailed(now: at(1), jitter: 1)
        _ = m.tick(now: at(21))
        _ = m.fetchFailed(now: at(22), jitter: 1)  // second failure: 40 ms
        #expect(m.backoffUntil == at(62))
        #expect(m.tick(now: at(61)) == [])
        #expect(m.tick(now: at(62)) == [.fetchTopology])
        _ = m.fetchSucceeded(topology(leader: nil, replicas: []), now: at(63))
        #expect(m.backoffUntil == nil)
        #expect(m.consecutiveFetchFailures == 0)
        #expect(m.nextTick(now: at(63)) == .milliseconds(19))
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
        #expect(m.fetchFailed(now: at(20), jitter: 0.5) == [])
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
