public import Foundation
public import Patroni

/// A Patroni **standby cluster** as `/cluster` shows it (the physical method's target between sync
/// and cutover): a standby leader in recovery by design, following a server outside the cluster,
/// and no writable leader until it is promoted. `pgha health` and `pgha verify` say so instead of
/// reporting "no leader" as a failure.
public struct StandbyCluster: Sendable, Hashable {
    public struct Member: Sendable, Hashable {
        public var name: String
        public var role: String
        public var state: String
    }

    public var standbyLeader: String
    public var members: [Member]

    /// The standby view of `cluster`, or nil when it is not a standby cluster (it has a leader, or
    /// no standby leader).
    public static func of(_ cluster: PatroniCluster) -> StandbyCluster? {
        guard !cluster.members.contains(where: { $0.role == .leader || $0.role == .primary || $0.role == .master }),
              let leader = cluster.members.first(where: { $0.role == .standbyLeader })
        else { return nil }
        return StandbyCluster(
            standbyLeader: leader.name,
            members: cluster.members.map { Member(name: $0.name, role: $0.role.rawValue, state: $0.state?.rawValue ?? "unknown") })
    }

    /// Every member follows: the standby leader streams (or runs) and every other member streams.
    public var following: Bool {
        members.allSatisfy { $0.state == "streaming" || ($0.name == standbyLeader && $0.state == "running") }
    }

    public var summary: String {
        "standby leader \(standbyLeader) (" + members.map { "\($0.name) \($0.role) \($0.state)" }.joined(separator: ", ")
            + "); no writable leader until it is promoted (the cutover promotes it)"
    }

    /// The seed's checks against a standby cluster: `pool_initialization` says what the cluster is
    /// (WARN while it follows, FAIL when a member does not), the checks that need a writable leader
    /// are SKIP with the reason.
    public func verificationReport(startedAt: Date, mode: String) -> VerificationReport {
        var checks = [following
            ? CheckResult.warn("pool_initialization", observed: "a standby cluster: " + summary, expected: "a writable leader",
                               advice: "expected before cutover: a standby cluster only follows; run `pgha verify` again after the cutover")
            : CheckResult.fail("pool_initialization", observed: "a standby cluster: " + summary, expected: "every member following",
                               advice: "a member of the standby cluster does not stream: look at its Patroni log, then `pgha health`")]
        for name in ["health_check", "write_to_primary", "read_from_replica", "read_write_split", "replica_lag", "rest_api_hosts"] {
            checks.append(CheckResult(name: name, verdict: .skip, observed: "standby cluster: needs a writable leader"))
        }
        return VerificationReport(checks: checks, startedAt: startedAt, mode: mode)
    }
}
