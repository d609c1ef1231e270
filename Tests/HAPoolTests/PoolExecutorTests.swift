import HAPoolTesting
import Logging
import MetricsTestKit
#if ServiceLifecycle
import ServiceLifecycle
import ServiceLifecycleTestKit
#endif
import Patroni
import PGClient
import Synchronization
import Testing
@testable import HAPool

/// The executor with a fake topology source, fake connections and the fake clock: no server, no
/// sleeps. Time moves only when a test advances the clock.
@Suite struct PoolExecutorTests {
    let n1 = NodeAddress(host: "10.0.0.1", port: 5432)
    let n2 = NodeAddress(host: "10.0.0.2", port: 5432)
    let cluster = FakeCluster()
    let clock = FakeClock()

    func topology(leader: NodeAddress?, replicas: [NodeAddress]) -> ClusterTopology {
        var members = replicas.map { ClusterMember(name: "r\($0.host)", address: $0, role: .replica, state: "streaming", lagBytes: 0) }
        if let leader { members.insert(ClusterMember(name: "l\(leader.host)", address: leader, role: .leader, state: "running"), at: 0) }
        return ClusterTopology(members: members)
    }

    func executor(
        failoverTimeout: Duration = .seconds(600), maxConnections: Int = 4, metrics: TestMetrics = TestMetrics()
    ) -> PoolExecutor<FakeConnectionFactory> {
        let config = PatroniClusterConfig(
            apiHosts: ["api1"], database: "app", user: "app", password: nil, minConnections: 0,
            maxConnections: maxConnections, failoverTimeout: failoverTimeout
        )
        return PoolExecutor(
            config: config, databases: ["app"], source: FakeTopologySource(cluster: cluster),
            factory: FakeConnectionFactory(cluster: cluster), clock: clock, random: { 0.5 },
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), metrics: metrics
        )
    }

    /// Advances the fake clock in small steps until `done` holds (or the step budget runs out).
    func drive(step: Duration = .milliseconds(5), maxSteps: Int = 200_000, until done: () -> Bool) async {
        for _ in 0..<maxSteps {
            if done() { return }
            clock.advance(by: step)
            await Task.yield()
        }
    }

    @Test func startConfirmsTheLeaderAndRoutesWritesAndReads() async throws {
        cluster.answer(topology(leader: n1, replicas: [n2]))
        let pool = executor()
        try await pool.start()
        #expect(pool.route.withLock { $0.table.writer } == n1)
        try await pool.execute(readOnly: false, idempotent: false, database: nil) { conn async throws(PGError) in try await conn.run("INSERT") }
        try await pool.execute(readOnly: true, idempotent: false, database: nil) { conn async throws(PGError) in try await conn.run("SELECT") }
        #expect(cluster.statements.map(\.node) == [n1, n2])
        #expect(pool.counters.snapshot.writes == 1)
        #expect(pool.counters.snapshot.reads == 1)
        await pool.close()
    }

    @Test func aCandidateInRecoveryIsCheckedAgainOnlyWhenTheClockSaysSo() async throws {
        cluster.answer(topology(leader: n1, replicas: []))
        cluster.set(n1, .init(inRecovery: true))
        let pool = executor()
        let run = Task { await pool.run() }
        // The tick loop and the probe's 5 ms pause sleep on the clock.
        await clock.waitForSleepers(2)
        #expect(pool.route.withLock { $0.table.writer } == nil)
        cluster.set(n1, .init(inRecovery: false))
        for _ in 0..<100 { await Task.yield() }
        #expect(pool.route.withLock { $0.table.writer } == nil, "no probe before the pause ends")
        await drive { pool.route.withLock { $0.table.writer } != nil }
        #expect(pool.route.withLock { $0.table.writer } == n1)
        pool.beginClose()
        await run.value
    }

    @Test func aWriteIsRetriedOnTheNewLeaderWhenTheOldOneRefusesConnections() async throws {
        cluster.answer(topology(leader: n1, replicas: [n2]))
        let pool = executor()
        try await pool.start()
        // n1 dies; the REST API names n2.
        cluster.set(n1, .init(reachable: false))
        cluster.answer(topology(leader: n2, replicas: []))
        let done = Mutex(false)
        let write = Task {
            defer { done.withLock { $0 = true } }
            try await pool.execute(readOnly: false, idempotent: false, database: nil) { conn async throws(PGError) in try await conn.run("INSERT") }
        }
        await drive { done.withLock { $0 } }
        try await write.value
        #expect(cluster.statements.map(\.node) == [n2])
        #expect(pool.counters.snapshot.retries >= 1)
        #expect(pool.diagnostics.failovers.map(\.to) == [n2])
        await pool.close()
    }

    @Test func aStatementWhoseOutcomeIsUnknownIsNotReRun() async throws {
        cluster.answer(topology(leader: n1, replicas: []))
        let pool = executor()
        try await pool.start()
        let lost = PGError(code: .connectionBroken, message: "server closed the connection", statementMayHaveRun: true)
        cluster.failNextStatement(on: n1, with: lost)
        await #expect(throws: HAError.self) {
            try await pool.execute(readOnly: false, idempotent: false, database: nil) { conn async throws(PGError) in try await conn.run("INSERT") }
        }
        #expect(cluster.statements.isEmpty)
        #expect(pool.counters.snapshot.outcomeUnknown == 1)
        // Declared idempotent, the same failure is re-run on the re-confirmed leader.
        cluster.failNextStatement(on: n1, with: lost)
        try await pool.execute(readOnly: false, idempotent: true, database: nil) { conn async throws(PGError) in try await conn.run("UPSERT") }
        #expect(cluster.statements.map(\.sql) == ["UPSERT"])
        await pool.close()
    }

    @Test func theSyncPathSharesTheRetryDecisions() async throws {
        cluster.answer(topology(leader: n1, replicas: []))
        let pool = executor()
        try await pool.start()
        cluster.failNextStatement(on: n1, with: PGError(code: .queryFailed, message: "read-only", sqlState: "25006"))
        // 25006: the server refused the write, nothing was applied: retried (once the leader is re-confirmed).
        let done = Mutex(false)
        let write = Task.detached {
            defer { done.withLock { $0 = true } }
            try pool.executeSync(readOnly: false, idempotent: false, database: nil) { conn throws(PGError) in try conn.runSync("INSERT") }
        }
        await drive { done.withLock { $0 } }
        try await write.value
        #expect(cluster.statements.map(\.sql) == ["INSERT"])
        let lost = PGError(code: .connectionBroken, message: "gone", statementMayHaveRun: true)
        cluster.failNextStatement(on: n1, with: lost)
        let failure = Mutex<HAError?>(nil)
        await drive { pool.route.withLock { $0.table.writer } != nil }
        do {
            try pool.executeSync(readOnly: false, idempotent: false, database: nil) { conn throws(PGError) in try conn.runSync("INSERT 2") }
        } catch {
            failure.withLock { $0 = error }
        }
        #expect(failure.withLock { $0?.code } == .outcomeUnknown)
        await pool.close()
    }

    @Test func withoutAnyRESTAnswerTheRequestFailsAtTheDeadlineWithTheCausePerHost() async throws {
        let endpoint = PatroniEndpoint(host: "api1", port: 8008)
        let cause = PatroniError(code: .malformedAnswer, endpoint: endpoint, path: "/cluster", message: "not valid JSON")
        cluster.answer(failing: PatroniError(code: .allEndpointsFailed, path: "/cluster", failures: [endpoint: cause], message: "every endpoint failed"))
        let pool = executor(failoverTimeout: .seconds(2))
        let failure = Mutex<HAError?>(nil)
        let start = Task {
            do throws(HAError) { try await pool.start() } catch { failure.withLock { $0 = error } }
        }
        await drive(step: .milliseconds(20)) { failure.withLock { $0 } != nil }
        await start.value
        let error = try #require(failure.withLock { $0 })
        #expect(error.code == .topologyUnavailable)
        #expect(error.restFailures["api1:8008"]?.contains("not valid JSON") == true)
        #expect(error.description.contains("malformedAnswer"))
        await pool.close()
    }

    @Test func aFailingRESTAPIIsAskedWithGrowingPausesOnTheInjectedClock() async throws {
        cluster.answer(failing: PatroniError(code: .allEndpointsFailed, message: "connection refused"))
        let pool = executor()
        let run = Task { await pool.run() }
        let start = clock.now
        await drive(step: .milliseconds(5)) { clock.now - start >= .seconds(30) }
        let fetches = cluster.fetches
        // random() is 0.5: pauses of 15, 30, … 960 ms, then 1.5 s: about 27 in 30 s (the 20 ms
        // poll asked 1,500 times).
        #expect(fetches >= 10 && fetches <= 40, "\(fetches)")
        #expect(pool.machine.withLock { $0.consecutiveFetchFailures } == fetches)
        pool.beginClose()
        await run.value
    }

    @Test func aRefusedLoginEndsStartAtOnce() async throws {
        cluster.answer(topology(leader: n1, replicas: []))
        cluster.set(n1, .init(refusesLogin: true))
        let pool = executor()
        let failure = Mutex<HAError?>(nil)
        let start = Task {
            do throws(HAError) { try await pool.start() } catch { failure.withLock { $0 = error } }
        }
        await drive { failure.withLock { $0 } != nil }
        await start.value
        let error = try #require(failure.withLock { $0 })
        #expect(error.code == .connectionFailed)
        #expect(error.underlying?.code == .authenticationFailed)
        // One probe at start, then one a second: not a login storm.
        #expect(cluster.connects(to: n1) <= 3)
        await pool.close()
    }

    @Test func closeEndsRunAndFailsWaitingRequests() async throws {
        let pool = executor()  // the REST API never answers
        let run = Task { await pool.run() }
        let outcome = Mutex<HAError?>(nil)
        let done = Mutex(false)
        let write = Task {
            defer { done.withLock { $0 = true } }
            do throws(HAError) {
                try await pool.execute(readOnly: false, idempotent: false, database: nil) { conn async throws(PGError) in try await conn.run("INSERT") }
            } catch { outcome.withLock { $0 = error } }
        }
        await clock.waitForSleepers(2)  // the tick loop and the writer's wait for a leader
        await pool.close()
        await run.value
        await write.value
        #expect(outcome.withLock { $0?.code } == .closed)
        #expect(clock.sleeperCount == 0, "nothing of the pool sleeps after run() returned")
    }

    /// A start cancelled before it waits for the leader (SIGTERM during the prerequisites' pool
    /// check) used to register its waiter after the cancellation handler had run: nobody resumed
    /// it, `start()` never returned and pgha hung with every thread idle.
    @Test func aStartCancelledBeforeItWaitsEndsInsteadOfWaitingForever() async throws {
        let pool = executor(failoverTimeout: .seconds(5))  // the REST API never answers
        let finished = Mutex(false)
        let outcome = Mutex<HAError?>(nil)
        let start = Task {
            defer { finished.withLock { $0 = true } }
            do throws(HAError) { try await pool.start() } catch { outcome.withLock { $0 = error } }
        }
        start.cancel()
        await drive(step: .milliseconds(50), maxSteps: 2_000) { finished.withLock { $0 } }
        let ended = finished.withLock { $0 }
        await pool.close()  // releases a waiter left behind, so that this test ends either way
        await start.value
        #expect(ended, "start() returned on its own after the cancellation")
        #expect(outcome.withLock { $0?.code } == .cancelled)
    }

    @Test func cancellingRunClosesThePool() async throws {
        cluster.answer(topology(leader: n1, replicas: []))
        let pool = executor()
        let run = Task { await pool.run() }
        try await pool.waitUntilReady(timeout: .seconds(10))
        run.cancel()
        await run.value
        await #expect(throws: HAError.self) {
            try await pool.execute(readOnly: false, idempotent: false, database: nil) { conn async throws(PGError) in try await conn.run("INSERT") }
        }
        #expect(cluster.closedConnections >= 1, "the probe's connection was closed")
    }

    @Test func aCheckoutWaitingForABusyPoolHonoursCancellationAndTheClock() async throws {
        cluster.answer(topology(leader: n1, replicas: []))
        let pool = executor(failoverTimeout: .seconds(5), maxConnections: 1)
        try await pool.start()
        var loop = pool.newLoop()
        let held = try await pool.acquire(readOnly: false, database: nil, loop: &loop)

        let cancelled = Task {
            var loop = pool.newLoop()
            do throws(HAError) {
                _ = try await pool.acquire(readOnly: false, database: nil, loop: &loop)
                return HAError.Code.noLeader
            } catch { return error.code }
        }
        await clock.waitForSleepers(2)  // the tick loop and the waiter's timer
        cancelled.cancel()
        #expect(await cancelled.value == .cancelled)

        let timedOut = Task {
            var loop = pool.newLoop()
            do throws(HAError) {
                _ = try await pool.acquire(readOnly: false, database: nil, loop: &loop)
                return HAError.Code.noLeader
            } catch { return error.code }
        }
        await clock.waitForSleepers(2)
        clock.advance(by: .seconds(6))
        #expect(await timedOut.value == .poolExhausted)
        held.pool.checkin(held.connection)
        await pool.close()
    }

    @Test func theCountersGoThroughSwiftMetrics() async throws {
        cluster.answer(topology(leader: n1, replicas: [n2]))
        let metrics = TestMetrics()
        let pool = executor(metrics: metrics)
        try await pool.start()
        try await pool.execute(readOnly: false, idempotent: false, database: nil) { conn async throws(PGError) in try await conn.run("INSERT") }
        try await pool.execute(readOnly: true, idempotent: false, database: nil) { conn async throws(PGError) in try await conn.run("SELECT") }
        #expect(try metrics.expectCounter("pgha_writes_total").totalValue == 1)
        #expect(try metrics.expectCounter("pgha_reads_total").totalValue == 1)
        #expect(try metrics.expectCounter("pgha_topology_refreshes_total").totalValue == Int64(pool.counters.snapshot.topologyRefreshes))
        #expect(try metrics.expectTimer("pgha_topology_refresh_seconds").values.count >= 1)
        await pool.close()
    }

    #if ServiceLifecycle
    @Test func theServiceLeavesOnGracefulShutdown() async throws {
        // PatroniHAPool as a swift-service-lifecycle Service: graceful shutdown closes it and run() returns.
        let pool = try PatroniHAPool(
            config: PatroniClusterConfig(apiHosts: ["api1"], database: "app", user: "app", password: nil, minConnections: 0),
            source: FakeTopologySource(cluster: cluster), clock: clock,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), metrics: TestMetrics()
        )
        await testGracefulShutdown { trigger in
            let run = Task { try await (pool as any Service).run() }
            await clock.waitForSleepers(1)  // the tick loop is running
            trigger.triggerGracefulShutdown()
            try? await run.value
        }
        #expect(clock.sleeperCount == 0)
        await #expect(throws: HAError.self) { _ = try await pool.acquire() }
    }
    #endif
}
