import TestSupport
import Foundation
import HTTPClient
import Testing

@testable import Patroni

/// A fake Patroni member: answers each path with a canned status and body.
private func fakePatroni(_ routes: [String: (Int, String)]) throws -> LoopbackServer {
    try LoopbackServer { request in
        let path = String(request.target.split(separator: "?", maxSplits: 1).first ?? "")
        guard let (status, body) = routes[request.target] ?? routes[path] else {
            return .bytes(Canned.response(status: 404, reason: "Not Found", body: []), close: true)
        }
        // Patroni speaks HTTP/1.0 and closes after each answer.
        return .bytes(Canned.response(status: status, reason: "X", body: Array(body.utf8), close: true), close: true)
    }
}

private func endpoint(_ server: LoopbackServer) -> PatroniEndpoint {
    PatroniEndpoint(host: "127.0.0.1", port: server.port)
}

private func client(_ servers: [LoopbackServer], extra: [PatroniEndpoint] = [], timeout: Duration = .seconds(1), auth: PatroniCredentials? = nil) -> PatroniClient {
    PatroniClient(configuration: PatroniClientConfiguration(endpoints: servers.map(endpoint) + extra, requestTimeout: timeout, credentials: auth, actionTimeout: .seconds(5)))
}

/// A `/cluster` document whose leader `m1` has its API at `leaderPort`.
private func clusterJSON(leaderPort: Int, leader: Bool = true) -> String {
    #"{"members": [{"name": "m1", "role": "\#(leader ? "leader" : "replica")", "state": "running", "api_url": "http://127.0.0.1:\#(leaderPort)/patroni", "host": "127.0.0.1", "port": 5432, "timeline": 1}, {"name": "m2", "role": "replica", "state": "streaming", "api_url": "http://127.0.0.1:\#(leaderPort)/patroni", "host": "127.0.0.1", "port": 5433, "timeline": 1, "lag": 0}], "scope": "t"}"#
}

@Suite("PatroniClient against fake members on loopback", .timeLimit(.minutes(1)))
struct PatroniClientTests {
    @Test("cluster() answers from a healthy member while another never answers")
    func deadMemberDoesNotDelay() async throws {
        let silent = try LoopbackServer(reply: .silence)
        defer { silent.stop() }
        let healthy = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster.json"))])
        defer { healthy.stop() }
        let patroni = client([silent, healthy], extra: [PatroniEndpoint(host: "127.0.0.1", port: try closedPort())], timeout: .seconds(60))
        let answer = try await patroni.cluster()
        #expect(answer.endpoint == endpoint(healthy))
        // Had the client waited for the silent member, its 60 s timeout would be in the failures:
        // the answer came while that request was still hanging.
        #expect(answer.failures[endpoint(silent)] == nil, "\(answer.failures)")
        #expect(answer.value.leader?.name == "m1")
        #expect(answer.value.replicas.count == 2)
        #expect(answer.failures[endpoint(healthy)] == nil)
    }

    @Test("a hung member is not sent a new request while an abandoned one still hangs")
    func hungMemberDoesNotPileUpRequests() async throws {
        let silent = try LoopbackServer(reply: .silence)
        defer { silent.stop() }
        let healthy = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster.json"))])
        defer { healthy.stop() }
        let patroni = client([silent, healthy], timeout: .seconds(60))
        for _ in 0..<50 {
            let answer = try await patroni.cluster()
            #expect(answer.endpoint == endpoint(healthy))
        }
        // An abandoned request to the silent member keeps it skipped until curl ends that
        // transfer (its next progress callback): whatever the timing, the client never has two
        // requests hanging on it. The server may see two connections at once for a moment (the
        // next request can arrive before it has noticed the old one close); piling up would show
        // as dozens.
        #expect(await silent.waitForRequests(1))
        #expect(silent.peakOpenConnections <= 2, "\(silent.peakOpenConnections) connections open at once")
        #expect(healthy.requests.count == 50)
    }

    @Test("clusterFromEach asks every member, even one with a hanging abandoned request")
    func fromEachDoesNotSkip() async throws {
        let silent = try LoopbackServer(reply: .silence)
        defer { silent.stop() }
        let healthy = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster.json"))])
        defer { healthy.stop() }
        let patroni = client([silent, healthy], timeout: .milliseconds(500))
        _ = try await patroni.cluster()        // abandons the request to the silent member
        let each = await patroni.clusterFromEach()
        guard case .failure(let error) = each[endpoint(silent)] else {
            Issue.record("the silent member cannot have answered")
            return
        }
        #expect(!error.message.contains("skipped"), "diagnostics must ask every member: \(error.message)")
        #expect(silent.requests.count >= 2 || error.httpError?.code == .timeout)
        #expect((try? each[endpoint(healthy)]?.get()) != nil)
    }

    @Test("when every member fails, the error lists each one's reason")
    func allFail() async throws {
        let broken = try fakePatroni(["/cluster": (500, "boom")])
        defer { broken.stop() }
        let garbage = try fakePatroni(["/cluster": (200, #"{"members": [{"name": "m1", "ro"#)])
        defer { garbage.stop() }
        let twoLeaders = try fakePatroni(["/cluster": (200, #"{"members": [{"name": "a", "role": "leader"}, {"name": "b", "role": "leader"}]}"#)])
        defer { twoLeaders.stop() }
        let refused = PatroniEndpoint(host: "127.0.0.1", port: try closedPort())
        let patroni = client([broken, garbage, twoLeaders], extra: [refused])
        let error = await #expect(throws: PatroniError.self) { try await patroni.cluster() }
        #expect(error?.code == .allEndpointsFailed)
        #expect(error?.failures.count == 4)
        #expect(error?.failures[endpoint(broken)]?.code == .httpStatus)
        #expect(error?.failures[endpoint(broken)]?.status == 500)
        #expect(error?.failures[endpoint(garbage)]?.code == .malformedAnswer)
        #expect(error?.failures[endpoint(twoLeaders)]?.code == .inconsistentTopology)
        #expect(error?.failures[endpoint(twoLeaders)]?.members == ["a", "b"])
        #expect(error?.failures[refused]?.code == .transport)
        #expect(error?.failures[refused]?.httpError?.code == .connectionRefused)
        #expect(error?.message.contains("\(refused)") == true)
        #expect(error?.message.contains("inconsistentTopology") == true)
    }

    @Test("an inconsistent answer loses to a consistent one")
    func consistentWins() async throws {
        let twoLeaders = try fakePatroni(["/cluster": (200, #"{"members": [{"name": "a", "role": "leader"}, {"name": "b", "role": "master"}]}"#)])
        defer { twoLeaders.stop() }
        let good = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster-sync-tags.json"))])
        defer { good.stop() }
        let answer = try await client([twoLeaders, good]).cluster()
        #expect(answer.endpoint == endpoint(good))
    }

    @Test("no leader is an answer, not an error")
    func noLeaderIsAnAnswer() async throws {
        let member = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster-no-leader.json"))])
        defer { member.stop() }
        let answer = try await client([member]).cluster()
        #expect(answer.value.leader == nil)
    }

    @Test("clusterFromEach keeps every member's own view")
    func fromEach() async throws {
        let a = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster.json"))])
        defer { a.stop() }
        let b = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster-after-switchover.json"))])
        defer { b.stop() }
        let refused = PatroniEndpoint(host: "127.0.0.1", port: try closedPort())
        let views = await client([a, b], extra: [refused]).clusterFromEach()
        #expect(views.count == 3)
        #expect(try views[endpoint(a)]?.get().leader?.name == "m1")
        #expect(try views[endpoint(b)]?.get().leader?.name == "m2")
        guard case .failure(let error)? = views[refused] else {
            Issue.record("the refused endpoint should have failed")
            return
        }
        #expect(error.code == .transport)
    }

    @Test("clusterSync tries members in turn and starts with the last one that answered")
    func sync() throws {
        let broken = try fakePatroni(["/cluster": (503, "")])
        defer { broken.stop() }
        let good = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster.json"))])
        defer { good.stop() }
        let patroni = client([broken, good])
        let first = try patroni.clusterSync()
        #expect(first.endpoint == endpoint(good))
        #expect(first.failures[endpoint(broken)]?.status == 503)
        let second = try patroni.clusterSync()
        #expect(second.failures.isEmpty)
        #expect(broken.requests.count == 1)
        #expect(good.requests.count == 2)
    }

    @Test("no endpoints is an invalid request")
    func noEndpoints() async {
        let patroni = PatroniClient(configuration: PatroniClientConfiguration(endpoints: []))
        let error = await #expect(throws: PatroniError.self) { try await patroni.cluster() }
        #expect(error?.code == .invalidRequest)
        #expect(throws: PatroniError.self) { try patroni.clusterSync() }
    }

    @Test("cancelling cluster() returns at once with .cancelled")
    func cancellation() async throws {
        let silent = try LoopbackServer(reply: .silence)
        defer { silent.stop() }
        let patroni = client([silent], timeout: .seconds(60))
        let task = Task { () async throws(PatroniError) -> PatroniAnswer<PatroniCluster> in try await patroni.cluster() }
        #expect(await silent.waitForRequests(1, within: .seconds(20)))
        task.cancel()
        // .cancelled, not the 60 s .timeout: the cancellation ended it.
        let result = await task.result
        guard case .failure(let error) = result else {
            Issue.record("expected a failure")
            return
        }
        #expect((error as? PatroniError)?.code == .cancelled)
    }

    @Test("/patroni, /history and /config")
    func otherReads() async throws {
        let member = try fakePatroni([
            "/patroni": (200, try Fixture.text("v4/patroni-replica.json")),
            "/history": (200, try Fixture.text("v4/history.json")),
            "/config": (200, try Fixture.text("v4/config.json")),
        ])
        defer { member.stop() }
        let patroni = client([member])
        #expect(try await patroni.patroni(at: endpoint(member)).role == .replica)
        #expect(try await patroni.history().count == 2)
        #expect(try await patroni.config()["loop_wait"]?.intValue == 1)
    }

    @Test("health checks: 200 and 503 are answers, other statuses errors")
    func health() async throws {
        let member = try fakePatroni([
            "/primary": (503, try Fixture.text("v4/primary-503.json")),
            "/replica?lag=1024": (200, try Fixture.text("v4/patroni-replica.json")),
            "/liveness": (200, ""),
            "/readiness": (503, "not json"),
        ])
        defer { member.stop() }
        let patroni = client([member])
        let at = endpoint(member)
        let primary = try await patroni.health(.primary, at: at)
        #expect(primary.status == 503)
        #expect(!primary.isPassing)
        #expect(primary.body?.role == .replica)
        let replica = try await patroni.health(.replica(maxLagBytes: 1024), at: at)
        #expect(replica.isPassing)
        #expect(replica.body?.xlog?.paused == false)
        let liveness = try await patroni.health(.liveness, at: at)
        #expect(liveness.isPassing)
        #expect(liveness.body == nil)
        #expect(liveness.bodyProblem == nil)
        let readiness = try await patroni.health(.readiness, at: at)
        #expect(!readiness.isPassing)
        #expect(readiness.bodyProblem?.contains("not valid JSON") == true)
        let error = await #expect(throws: PatroniError.self) { try await patroni.health(.health, at: at) }
        #expect(error?.code == .httpStatus)
        #expect(error?.status == 404)
    }

    @Test("switchover posts leader and candidate to the leader's API, with basic auth")
    func switchover() async throws {
        let leaderAPI = try fakePatroni(["/switchover": (200, try Fixture.text("v4/switchover-200.txt"))])
        defer { leaderAPI.stop() }
        let replicaAPI = try fakePatroni(["/cluster": (200, clusterJSON(leaderPort: leaderAPI.port))])
        defer { replicaAPI.stop() }
        let patroni = client([replicaAPI], auth: PatroniCredentials(user: "admin", password: "pw-secret"))
        let message = try await patroni.switchover(leader: nil, candidate: "m2")
        #expect(message == #"Successfully switched over to "m2""#)
        let post = try #require(leaderAPI.requests.first)
        #expect(post.method == "POST")
        #expect(post.target == "/switchover")
        #expect(post.header("Authorization") == "Basic " + Data("admin:pw-secret".utf8).base64EncodedString())
        let body = try JSONDecoder().decode([String: String].self, from: Data(post.body))
        #expect(body == ["leader": "m1", "candidate": "m2"])
    }

    @Test("a scheduled switchover sends scheduled_at in ISO 8601")
    func scheduledSwitchover() async throws {
        let leaderAPI = try fakePatroni(["/switchover": (202, "Switchover scheduled")])
        defer { leaderAPI.stop() }
        let replicaAPI = try fakePatroni(["/cluster": (200, clusterJSON(leaderPort: leaderAPI.port))])
        defer { replicaAPI.stop() }
        let when = Date(timeIntervalSince1970: 1_893_456_000)  // 2030-01-01T00:00:00Z
        let message = try await client([replicaAPI]).switchover(leader: "m1", candidate: nil, scheduledAt: when)
        #expect(message == "Switchover scheduled")
        let body = try JSONDecoder().decode([String: String].self, from: Data(try #require(leaderAPI.requests.first).body))
        #expect(body == ["leader": "m1", "scheduled_at": "2030-01-01T00:00:00Z"])
    }

    @Test("Patroni's refusal is .rejected with its own text", arguments: [
        (412, "v4/switchover-412.txt", "candidate does not exists"),
        (400, "v4/switchover-400-paused.txt", "Switchover is possible only to a specific candidate in a paused state"),
        (400, "v4/failover-400.html", "Error response"),
        (503, "", "refused with status 503"),
    ])
    func rejected(status: Int, fixture: String, expected: String) async throws {
        let body = fixture.isEmpty ? "" : try Fixture.text(fixture)
        let leaderAPI = try fakePatroni(["/switchover": (status, body)])
        defer { leaderAPI.stop() }
        let replicaAPI = try fakePatroni(["/cluster": (200, clusterJSON(leaderPort: leaderAPI.port))])
        defer { replicaAPI.stop() }
        let error = await #expect(throws: PatroniError.self) { try await client([replicaAPI]).switchover(leader: nil, candidate: "nosuch") }
        #expect(error?.code == .rejected)
        #expect(error?.status == status)
        #expect(error?.endpoint == endpoint(leaderAPI))
        #expect(error?.message.hasPrefix(expected) == true, "\(error?.message ?? "")")
    }

    @Test("no leader: switchover fails with .noLeader and posts nothing")
    func switchoverWithoutLeader() async throws {
        let member = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster-no-leader.json"))])
        defer { member.stop() }
        let error = await #expect(throws: PatroniError.self) { try await client([member]).switchover(leader: nil, candidate: "m1") }
        #expect(error?.code == .noLeader)
        #expect(member.requests.map(\.method) == ["GET"])
    }

    @Test("an unreachable leader API falls back to the member that answered /cluster")
    func fallback() async throws {
        let deadPort = try closedPort()
        let member = try fakePatroni([
            "/cluster": (200, clusterJSON(leaderPort: deadPort)),
            "/failover": (200, #"Successfully failed over to "m2""#),
        ])
        defer { member.stop() }
        let message = try await client([member]).failover(candidate: "m2")
        #expect(message == #"Successfully failed over to "m2""#)
        let post = try #require(member.requests.last)
        #expect(post.target == "/failover")
        #expect(try JSONDecoder().decode([String: String].self, from: Data(post.body)) == ["candidate": "m2"])
    }

    @Test("empty names are refused before anything is sent")
    func emptyNames() async throws {
        let member = try fakePatroni(["/cluster": (200, try Fixture.text("v4/cluster.json"))])
        defer { member.stop() }
        let patroni = client([member])
        let a = await #expect(throws: PatroniError.self) { try await patroni.failover(candidate: " ") }
        #expect(a?.code == .invalidRequest)
        let b = await #expect(throws: PatroniError.self) { try await patroni.switchover(leader: "", candidate: nil) }
        #expect(b?.code == .invalidRequest)
        #expect(member.requests.isEmpty)
    }

    @Test("an answer over the size cap is a transport error naming the cap")
    func bodyCap() async throws {
        let big = #"{"members": [], "scope": ""# + String(repeating: "x", count: 100_000) + #""}"#
        let member = try fakePatroni(["/cluster": (200, big)])
        defer { member.stop() }
        let patroni = PatroniClient(configuration: .init(endpoints: [endpoint(member)], maxBodyBytes: 10_000))
        let error = await #expect(throws: PatroniError.self) { try await patroni.cluster() }
        let failure = try #require(error?.failures[endpoint(member)])
        #expect(failure.code == .transport)
        #expect(failure.httpError?.code == .bodyTooLarge)
    }
}

/// A TCP port on 127.0.0.1 where nothing listens.
func closedPort() throws -> Int {
    let server = try LoopbackServer(reply: .hangUp)
    let port = server.port
    server.stop()
    return port
}
