import Foundation
import Patroni
import Testing
import Verification

@Suite("A standby cluster as pgha health and pgha verify see it")
struct StandbyClusterTests {
    func member(_ name: String, _ role: PatroniRole, _ state: PatroniMemberState) -> PatroniMember {
        PatroniMember(name: name, role: role, state: state, host: "127.0.0.1", port: 5432)
    }

    @Test("a standby leader and no leader is a standby cluster; it follows when every member streams")
    func recognised() throws {
        let cluster = PatroniCluster(members: [member("ha1", .standbyLeader, .streaming), member("ha2", .replica, .streaming), member("ha3", .replica, .streaming)])
        let standby = try #require(StandbyCluster.of(cluster))
        #expect(standby.standbyLeader == "ha1")
        #expect(standby.following)
        #expect(standby.summary.contains("standby leader ha1") && standby.summary.contains("no writable leader until it is promoted"))
        let report = standby.verificationReport(startedAt: Date(timeIntervalSince1970: 0), mode: "patroni")
        #expect(report.checks.first?.name == "pool_initialization" && report.checks.first?.verdict == .warn)
        #expect(report.checks.dropFirst().allSatisfy { $0.verdict == .skip })
        #expect(report.failed == 0)
    }

    @Test("a member that does not stream makes it a failure; a cluster with a leader is not a standby cluster")
    func notFollowingOrNotStandby() throws {
        let lagging = PatroniCluster(members: [member("ha1", .standbyLeader, .streaming), member("ha2", .replica, .stopped)])
        let standby = try #require(StandbyCluster.of(lagging))
        #expect(!standby.following)
        #expect(standby.verificationReport(startedAt: Date(), mode: "patroni").failed == 1)
        #expect(StandbyCluster.of(PatroniCluster(members: [member("n1", .leader, .running), member("n2", .replica, .streaming)])) == nil)
        #expect(StandbyCluster.of(PatroniCluster(members: [member("n1", .replica, .streaming)])) == nil)
        #expect(StandbyCluster.of(PatroniCluster(members: [])) == nil)
    }
}
