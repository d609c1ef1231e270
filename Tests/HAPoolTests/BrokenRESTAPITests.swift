import Foundation
import HAPoolTesting
import MetricsTestKit
import Logging
import Synchronization
import TestSupport
import Testing
@testable import HAPool

/// The pool's executor with the real REST client and libpq against a loopback "Patroni" that
/// answers `/cluster` badly: start-up must end with the host's real cause when the one-shot timeout
/// is up, and the pool must back off instead of asking 50 times a second. Time is a `FakeClock`,
/// moved from one deadline to the next only when the pool's real I/O has ended, so what is
/// asserted (requests per second of pool time, when start-up ends) does not depend on how busy
/// the machine is.
@Suite struct BrokenRESTAPITests {
    static let leaderless = #"{"members":[{"name":"n1","role":"replica","state":"streaming","host":"127.0.0.1","port":1,"api_url":"http://127.0.0.1:1/patroni","lag":0}]}"#

    enum Body: String, CaseIterable, Sendable {
        case truncated, html, empty, wrongTypes, nulls, twoLeaders, deeplyNested, nonUTF8, huge, http500
        case unreachableLeader

        var reply: [UInt8] {
            switch self {
            case .truncated: return Canned.json(#"{"members":[{"name":"n1","role":"lea"#)
            case .html: return Canned.response(headers: [("Content-Type", "text/html")], body: Array("<html><body>502 Bad Gateway</body></html>".utf8))
            case .empty: return Canned.json("")
            case .wrongTypes: return Canned.json(#"{"members":"n1"}"#)
            case .nulls: return Canned.json(#"{"members":null}"#)
            case .twoLeaders:
                return Canned.json(#"{"members":[{"name":"a","role":"leader","state":"running","host":"127.0.0.1","port":1},{"name":"b","role":"leader","state":"running","host":"127.0.0.1","port":2}]}"#)
            case .deeplyNested: return Canned.json(String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))
            case .nonUTF8: return Canned.response(headers: [("Content-Type", "application/json")], body: [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x7D])
            case .huge: return Canned.json(#"{"members":[],"x":""# + String(repeating: "a", count: 32 << 20) + #""}"#)
            case .http500: return Canned.json(#"{"error":"boom"}"#, status: 500)
            case .unreachableLeader:
                // A valid answer naming a leader nobody can connect to (port 1 refuses).
                return Canned.json(#"{"members":[{"name":"n1","role":"leader","state":"running","host":"127.0.0.1","port":1,"api_url":"http://127.0.0.1:1/patroni","timeline":1}]}"#)
            }
        }
    }

    struct Harness {
        let clock = FakeClock()
        let io = InFlightIO()
        let pool: PoolExecutor<TrackedConnectionFactory<LibPQConnectionFactory>>

        init(port: Int, useTLS: Bool = false) throws {
            let config = PatroniClusterConfig(
                apiHosts: ["127.0.0.1:\(port)"], api: RESTAPISettings(useTLS: useTLS), database: "app", user: "app", password: nil,
                minConnections: 0, failoverTimeout: .seconds(30), connectTimeout: .milliseconds(500)
            )
            pool = PoolExecutor(
                config: config, databases: ["app"], source: TrackedTopologySource(try PatroniTopologySource(config: config), io: io),
                factory: TrackedConnectionFactory(LibPQConnectionFactory(), io: io), clock: clock, random: { 0.5 },
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), metrics: TestMetrics()
            )
        }

        /// Starts the pool with `timeout` and drives the fake clock until start-up ends; returns
        /// its failure and the pool time it took.
        func start(timeout: Duration) async -> (failure: HAError?, took: Duration) {
            let ended = Mutex<Duration?>(nil)
            let begin = clock.now
            let started = Task { () -> HAError? in
                defer { ended.withLock { $0 = clock.now - begin } }
                do throws(HAError) { try await pool.start(timeout: timeout) } catch { return error }
                return nil
            }
            // Asleep between steps: start-up's wait for a leader and the pool's tick loop.
            await clock.drive(io: io, sleepers: 2, limit: timeout + .seconds(60)) { ended.withLock { $0 != nil } }
            let failure = await started.value
            return (failure, ended.withLock { $0 } ?? .zero)
        }
    }

    @Test(arguments: Body.allCases)
    func startUpReportsTheHostsRealCauseWithinTheOneShotTimeout(_ body: Body) async throws {
        let reply = body.reply
        let server = try LoopbackServer { _ in .bytes(reply, close: false) }
        defer { server.stop() }
        let harness = try Harness(port: server.port)
        let (failure, took) = await harness.start(timeout: DualDatabasePools.oneShotStartTimeout)
        await harness.pool.close()
        let error = try #require(failure, "\(body): a broken API must not yield a leader")
        // At the timeout, not before it (a usable answer could still come) and not after it.
        let timeout = DualDatabasePools.oneShotStartTimeout
        #expect(took >= timeout && took < timeout + .milliseconds(100), "\(body): \(took)")
        switch body {
        case .unreachableLeader:
            #expect(error.code == .noLeader, "\(error)")
            #expect(error.underlying != nil, "\(error)")
        default:
            #expect(error.code == .topologyUnavailable, "\(error)")
            let cause = try #require(error.restFailures["127.0.0.1:\(server.port)"], "\(body): \(error)")
            #expect(!cause.isEmpty)
            #expect(error.description.contains("127.0.0.1:\(server.port)"))
        }
        // Backoff: 20 ms doubling to 2 s with ±jitter, so 6–10 fetches in 3 s of pool time, not
        // ~150 at the 20 ms poll.
        let requests = server.requests.count
        if body != .unreachableLeader {
            #expect((4...12).contains(requests), "\(body): \(requests) requests in \(took)")
        }
    }

    @Test func aHealthyAPIReportingAnElectionIsStillPolledFast() async throws {
        let reply = Canned.json(Self.leaderless)
        let server = try LoopbackServer { _ in .bytes(reply, close: false) }
        defer { server.stop() }
        let harness = try Harness(port: server.port)
        let (failure, took) = await harness.start(timeout: .seconds(5))
        await harness.pool.close()
        #expect(failure?.code == .noLeader || failure?.code == .topologyUnavailable, "\(String(describing: failure))")
        #expect(took >= .seconds(5) && took < .seconds(5) + .milliseconds(100), "\(took)")
        // Usable answers without a leader keep the 20 ms cadence: ≈250 in 5 s of pool time (the
        // backoff would send about 10). The cadence itself is decided by TopologyStateMachine and
        // tested there (`aFailingAPIIsPolledAboutOnceASecondAnElectionEvery20ms`); this shows the
        // executor and the real client keep it.
        #expect((200...260).contains(server.requests.count), "\(server.requests.count) /cluster requests in 5 s")
    }
}
