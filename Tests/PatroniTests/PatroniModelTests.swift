import Foundation
import Testing

@testable import Patroni

/// Loads a file from `Fixtures/` (copied into the test bundle).
enum Fixture {
    static func bytes(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.resourceURL).appendingPathComponent("Fixtures/\(name)")
        return [UInt8](try Data(contentsOf: url))
    }

    static func text(_ name: String) throws -> String { String(decoding: try bytes(name), as: UTF8.self) }

    static let clusters = [
        "v4/cluster.json", "v4/cluster-after-switchover.json", "v4/cluster-no-leader.json",
        "v4/cluster-leader-stopping.json", "v4/cluster-replica-starting.json", "v4/cluster-sync-tags.json",
        "v4/cluster-paused.json", "v4/cluster-scheduled-switchover.json", "v3/cluster.json", "v3/cluster-master.json",
    ]
    static let nodeStatuses = [
        "v4/patroni-leader.json", "v4/patroni-replica.json", "v4/patroni-sync-standby.json",
        "v4/patroni-leader-paused.json", "v4/primary-200.json", "v4/primary-503.json",
        "v3/patroni-master.json", "v3/patroni-replica.json",
    ]
    static let histories = ["v4/history.json", "v3/history.json"]
}

@Suite("Patroni models from real and 3.x-shaped answers")
struct PatroniModelTests {
    @Test("every /cluster fixture decodes and validates", arguments: Fixture.clusters)
    func clusterFixturesDecode(name: String) throws {
        let cluster = try PatroniDecoder.cluster(try Fixture.bytes(name))
        #expect(!cluster.members.isEmpty)
        #expect(cluster.members.filter(\.isLeader).count <= 1)
    }

    @Test("4.x /cluster: one leader, two streaming replicas, LSNs and API endpoints")
    func healthyCluster() throws {
        let cluster = try PatroniDecoder.cluster(try Fixture.bytes("v4/cluster.json"))
        #expect(cluster.scope == "httpdev")
        #expect(cluster.isPaused == false)
        let leader = try #require(cluster.leader)
        #expect(leader.name == "m1")
        #expect(leader.role == .leader)
        #expect(leader.state == .running)
        #expect(leader.host == "127.0.0.1")
        #expect(leader.port == 25441)
        #expect(leader.timeline == 1)
        #expect(leader.lag == nil)
        #expect(leader.apiEndpoint == PatroniEndpoint(host: "127.0.0.1", port: 18441))
        #expect(cluster.replicas.map(\.name) == ["m2", "m3"])
        for replica in cluster.replicas {
            #expect(replica.state == .streaming)
            #expect(replica.state?.isHealthy == true)
            #expect(replica.lag == 0)
            #expect(replica.receiveLag == 0)
            #expect(replica.replayLag == 0)
            #expect(replica.replayLSN == "0/4000060")
            #expect(replica.replayLSNPosition == 67_108_960)
            #expect(replica.noLoadBalance == false)
            #expect(replica.noFailover == false)
        }
    }

    @Test("mid-failover: no leader is a valid answer; \"unknown\" lags and LSNs read as nil")
    func noLeader() throws {
        let cluster = try PatroniDecoder.cluster(try Fixture.bytes("v4/cluster-no-leader.json"))
        #expect(cluster.leader == nil)
        let stopping = try #require(cluster.member(named: "m2"))
        #expect(stopping.state == .stopping)
        #expect(stopping.lag == nil)
        #expect(stopping.receiveLag == nil)
        #expect(stopping.replayLag == nil)
        #expect(stopping.lsn == nil)
        #expect(stopping.replayLSN == nil)
        #expect(stopping.timeline == nil)
        #expect(cluster.replicas.count == 3)

        let starting = try PatroniDecoder.cluster(try Fixture.bytes("v4/cluster-replica-starting.json"))
        #expect(starting.leader?.name == "m1")
        #expect(starting.member(named: "m2")?.state == .starting)
        #expect(starting.member(named: "m2")?.state?.isHealthy == false)
    }

    @Test("sync standby role and tags")
    func syncAndTags() throws {
        let cluster = try PatroniDecoder.cluster(try Fixture.bytes("v4/cluster-sync-tags.json"))
        let sync = try #require(cluster.member(named: "m2"))
        #expect(sync.role == .syncStandby)
        #expect(sync.isReplica)
        #expect(!sync.isLeader)
        let tagged = try #require(cluster.member(named: "m3"))
        #expect(tagged.noLoadBalance)
        #expect(tagged.noFailover)
        #expect(!tagged.noSync)
        #expect(tagged.tags["zone"] == .string("eu-1"))
        #expect(tagged.tags["replicatefrom"]?.stringValue == "m1")
        #expect(cluster.replicas.count == 2)
    }

    @Test("pause and pending restart")
    func paused() throws {
        let cluster = try PatroniDecoder.cluster(try Fixture.bytes("v4/cluster-paused.json"))
        #expect(cluster.isPaused)
        #expect(cluster.members.allSatisfy { $0.pendingRestart == true })
        #expect(cluster.leader?.pendingRestartReason?["max_connections"]?["new_value"] == .string("60"))
        let status = try PatroniDecoder.nodeStatus(try Fixture.bytes("v4/patroni-leader-paused.json"))
        #expect(status.pause == true)
        #expect(status.pendingRestart == true)
    }

    @Test("a scheduled switchover is reported")
    func scheduled() throws {
        let cluster = try PatroniDecoder.cluster(try Fixture.bytes("v4/cluster-scheduled-switchover.json"))
        #expect(cluster.scheduledSwitchover == PatroniScheduledSwitchover(at: "2030-01-01T00:00:00+00:00", from: "m1", to: "m2"))
    }

    @Test("4.x /patroni on leader, replica, sync standby")
    func nodeStatus() throws {
        let leader = try PatroniDecoder.nodeStatus(try Fixture.bytes("v4/patroni-leader.json"))
        #expect(leader.state == .running)
        #expect(leader.role == .primary)
        #expect(leader.isPrimary)
        #expect(leader.role?.isLeader == true)
        #expect(leader.serverVersion == 150_018)
        #expect(leader.timeline == 1)
        #expect(leader.xlog?.location == 67_108_960)
        #expect(leader.walPosition == 67_108_960)
        #expect(leader.replication?.map(\.applicationName) == ["m2", "m3"])
        #expect(leader.replication?.first?.syncState == "async")
        #expect(leader.patroni == PatroniNodeStatus.Info(version: "4.1.5", scope: "httpdev", name: "m1"))
        #expect(leader.patroni?.majorVersion == 4)
        #expect(leader.memberName == "m1")
        #expect(leader.dcsLastSeen == 1_795_713_964)
        #expect(leader.databaseSystemIdentifier == "7712532663883665977")

        let replica = try PatroniDecoder.nodeStatus(try Fixture.bytes("v4/patroni-replica.json"))
        #expect(replica.role == .replica)
        #expect(!replica.isPrimary)
        #expect(replica.xlog?.receivedLocation == 67_108_960)
        #expect(replica.xlog?.replayedLocation == 67_108_960)
        #expect(replica.xlog?.replayedTimestamp == nil)
        #expect(replica.xlog?.paused == false)
        #expect(replica.replicationState == "streaming")
        #expect(replica.syncStandby == nil)

        let sync = try PatroniDecoder.nodeStatus(try Fixture.bytes("v4/patroni-sync-standby.json"))
        #expect(sync.syncStandby == true)
        #expect(sync.xlog?.replayedTimestamp == "2026-11-26 17:27:06.828962+00:00")
    }

    @Test("3.x /patroni: role master is the primary; no member name")
    func legacyNodeStatus() throws {
        let master = try PatroniDecoder.nodeStatus(try Fixture.bytes("v3/patroni-master.json"))
        #expect(master.role == .master)
        #expect(master.isPrimary)
        #expect(master.role?.isLeader == true)
        #expect(master.clusterUnlocked == false)
        #expect(master.memberName == nil)
        #expect(master.patroni?.majorVersion == 3)
        #expect(master.replication?.first?.syncState == "sync")
        let replica = try PatroniDecoder.nodeStatus(try Fixture.bytes("v3/patroni-replica.json"))
        #expect(replica.walPosition == 25_624_640)
        #expect(replica.syncStandby == true)
    }

    @Test("3.x /cluster: legacy master role leads; string tags are truthy")
    func legacyCluster() throws {
        let v3 = try PatroniDecoder.cluster(try Fixture.bytes("v3/cluster.json"))
        #expect(v3.leader?.name == "postgresql0")
        #expect(v3.scheduledSwitchover?.to == "postgresql1")
        let tagged = try #require(v3.member(named: "postgresql2"))
        #expect(tagged.noFailover)
        #expect(tagged.noLoadBalance)
        #expect(tagged.lag == 1_048_576)
        #expect(v3.member(named: "postgresql0")?.tags["clonefrom"] == .bool(true))

        let master = try PatroniDecoder.cluster(try Fixture.bytes("v3/cluster-master.json"))
        let leader = try #require(master.leader)
        #expect(leader.role == .master)
        #expect(leader.apiEndpoint == PatroniEndpoint(host: "10.0.0.1", port: 8008, useTLS: true))
        #expect(master.member(named: "pg-b")?.lag == nil)
        #expect(master.pause == false)
    }

    @Test("/history rows of 3, 4 and 5 elements")
    func history() throws {
        let v4 = try PatroniDecoder.history(try Fixture.bytes("v4/history.json"))
        #expect(v4.count == 2)
        #expect(v4[0] == PatroniHistoryEntry(timeline: 1, lsn: 67_109_256, reason: "no recovery target specified", timestamp: "2026-11-26T17:26:15.074406+00:00", newLeader: "m2"))
        #expect(v4[1].newLeader == "m1")
        #expect(v4[0].lsnText == "0/4000188")

        let v3 = try PatroniDecoder.history(try Fixture.bytes("v3/history.json"))
        #expect(v3.map(\.timeline) == [1, 2, 3])
        #expect(v3[0].timestamp == nil)
        #expect(v3[0].newLeader == nil)
        #expect(v3[1].timestamp == "2023-02-20T16:57:57+01:00")
        #expect(v3[1].newLeader == nil)
        #expect(v3[2].newLeader == "postgresql0")
        #expect(try PatroniDecoder.history(Array("[]".utf8)).isEmpty)
    }

    @Test("/config is a JSON object")
    func config() throws {
        let config = try PatroniDecoder.config(try Fixture.bytes("v4/config-sync.json"))
        #expect(config["ttl"]?.intValue == 20)
        #expect(config["synchronous_mode"] == .bool(true))
        #expect(config["postgresql"]?["parameters"]?["wal_log_hints"] == .string("on"))
        let error = #expect(throws: PatroniError.self) { try PatroniDecoder.config(Array("[1]".utf8)) }
        #expect(error?.code == .malformedAnswer)
    }

    @Test("unknown roles and states are kept, not fatal")
    func unknownValues() throws {
        let json = #"{"members": [{"name": "a", "role": "witness", "state": "dreaming"}, {"name": "b"}]}"#
        let cluster = try PatroniDecoder.cluster(Array(json.utf8))
        #expect(cluster.members[0].role == PatroniRole(rawValue: "witness"))
        #expect(cluster.members[0].state?.rawValue == "dreaming")
        #expect(cluster.members[0].state?.isHealthy == false)
        #expect(!cluster.members[0].isReplica && !cluster.members[0].isLeader)
        #expect(cluster.members[1].role == .unknown)
        #expect(cluster.leader == nil)
    }

    @Test("models survive an encode/decode round trip", arguments: Fixture.clusters)
    func roundTrip(name: String) throws {
        let cluster = try PatroniDecoder.cluster(try Fixture.bytes(name))
        let again = try PatroniDecoder.cluster([UInt8](try JSONEncoder().encode(cluster)))
        #expect(again == cluster)
    }

    @Test("history entries encode back to Patroni's array form")
    func historyRoundTrip() throws {
        let entries = try PatroniDecoder.history(try Fixture.bytes("v3/history.json"))
        let again = try PatroniDecoder.history([UInt8](try JSONEncoder().encode(entries)))
        #expect(again == entries)
    }

    @Test("LSN text and positions")
    func lsn() {
        #expect(PatroniLSN.parse("0/4000060") == 0x4000060)
        #expect(PatroniLSN.parse("16/B374D848") == 0x16_B374_D848)
        #expect(PatroniLSN.parse("unknown") == nil)
        #expect(PatroniLSN.parse("1/") == nil)
        #expect(PatroniLSN.parse("123456789/0") == nil)
        #expect(PatroniLSN.format(0x16_B374_D848) == "16/B374D848")
    }

    @Test("role and state predicates")
    func predicates() {
        for role in [PatroniRole.leader, .master, .primary, .standbyLeader] { #expect(role.isLeader) }
        for role in [PatroniRole.replica, .syncStandby, .quorumStandby] { #expect(role.isReplica && !role.isLeader) }
        #expect(!PatroniRole.standbyLeader.isWritableLeader)
        #expect(PatroniRole.master.isWritableLeader)
        #expect(PatroniRole(rawValue: "quorum_standby") == .quorumStandby)
        #expect(PatroniMemberState.crashed.isFailed)
        #expect(PatroniMemberState(rawValue: "initializing new cluster") == .initializingNewCluster)
        #expect(PatroniMemberState(rawValue: "creating replica") == .creatingReplica)
        #expect(JSONValue.string("On").isTruthy)
        #expect(!JSONValue.string("off").isTruthy)
        #expect(JSONValue.int(1).isTruthy)
        #expect(!JSONValue.null.isTruthy)
    }
}

@Suite("Validation of /cluster answers")
struct PatroniValidationTests {
    private func decode(_ json: String) throws(PatroniError) -> PatroniCluster {
        try PatroniDecoder.cluster(Array(json.utf8))
    }

    @Test("two leaders are an inconsistent topology naming both")
    func twoLeaders() {
        let error = #expect(throws: PatroniError.self) {
            try decode(#"{"members": [{"name": "a", "role": "leader"}, {"name": "b", "role": "replica"}, {"name": "c", "role": "master"}]}"#)
        }
        #expect(error?.code == .inconsistentTopology)
        #expect(error?.members == ["a", "c"])
        #expect(error?.message.contains("a, c") == true)
    }

    @Test("a leader and a standby leader are two leaders too")
    func leaderAndStandbyLeader() {
        let error = #expect(throws: PatroniError.self) {
            try decode(#"{"members": [{"name": "a", "role": "leader"}, {"name": "b", "role": "standby_leader"}]}"#)
        }
        #expect(error?.code == .inconsistentTopology)
    }

    @Test("a member without a name is malformed, and the error says which", arguments: [
        (#"{"members": [{"name": "a"}, {"role": "replica"}]}"#, "members[1].name"),
        (#"{"members": [{"name": "a"}, {"name": null}]}"#, "members[1].name"),
        (#"{"members": [{"name": 7}]}"#, "members[0].name"),
        (#"{"members": [{"name": "  "}]}"#, "members[0].name"),
        (#"{"members": [{"name": "a"}, {"name": "a"}]}"#, "members[1].name"),
        (#"{"members": [{"name": "a"}, 5]}"#, "members[1]"),
        (#"{"scope": "x"}"#, "members"),
        (#"{"members": {"a": 1}}"#, "members"),
        (#"{"members": null}"#, "members"),
        (#"[]"#, "(document)"),
        (#""#, "(document)"),
        (#"{"members": [{"na"#, "(document)"),
    ])
    func malformed(json: String, field: String) {
        let error = #expect(throws: PatroniError.self) { try decode(json) }
        #expect(error?.code == .malformedAnswer)
        #expect(error?.field == field)
        #expect(error?.message.hasPrefix(field) == true)
    }

    @Test("malformed messages say why: wrong type, missing, not JSON")
    func reasons() {
        let wrongType = #expect(throws: PatroniError.self) { try decode(#"{"members": [{"name": 7}]}"#) }
        #expect(wrongType?.message == "members[0].name: wrong type (expected a string)")
        let missing = #expect(throws: PatroniError.self) { try decode(#"{"scope": "x"}"#) }
        #expect(missing?.message == "members: missing")
        let truncated = #expect(throws: PatroniError.self) { try decode(#"{"members": [{"name": "m1", "ro"#) }
        #expect(truncated?.message.contains("not valid JSON") == true)
    }

    @Test("no members at all is valid: no leader, no replicas")
    func empty() throws {
        let cluster = try decode(#"{"members": []}"#)
        #expect(cluster.leader == nil)
        #expect(cluster.replicas.isEmpty)
    }
}
