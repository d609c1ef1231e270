/// Decides, while `sandbox up` waits for the cluster, which replica has failed to start its
/// PostgreSQL for long enough to be rebuilt from the leader.
///
/// A member restarted from a data directory its PostgreSQL can no longer start from (a bad value
/// in `postgresql.auto.conf`, a data directory left damaged by a crash drill of an interrupted run)
/// stays in Patroni's state `start failed` forever: Patroni starts it again every loop and it fails
/// again. A replica's data is a copy of the leader's, so `up` rebuilds it (Patroni takes a new base
/// backup into an empty data directory) instead of waiting out its timeout. Only a replica, only
/// while a leader runs, and at most once per member per `up`.
///
/// Pure: time is the caller's (elapsed since `up` began), so tests drive it without a clock.
struct StartFailureWatch: Sendable, Equatable {
    /// How long a replica must have kept failing (Patroni starts it again every loop, 1 s in the
    /// sandbox, and each attempt shows as `starting` then `start failed`) before it is rebuilt.
    var patience: Duration = .seconds(8)
    /// How many separate failed attempts must have been seen in that time.
    var attempts = 2

    /// A member failing to start: since when, how many failed attempts seen, and whether the last
    /// look saw it in `start failed`.
    struct Failing: Sendable, Equatable {
        var since: Duration
        var attempts: Int
        var inFailedState: Bool
    }
    private(set) var failing: [String: Failing] = [:]
    /// Members already rebuilt by this `up`.
    private(set) var rebuilt: Set<String> = []

    /// Takes one look at the cluster (at `now`, elapsed since `up` began) and returns the members to
    /// rebuild now, in the cluster view's order; each is returned once. A member is failing from its
    /// first `start failed` until it is seen `streaming` or `running`.
    mutating func observe(_ members: [ObservedMember], at now: Duration) -> [String] {
        let leaderRunning = members.contains { $0.role == "leader" && $0.state == "running" }
        var due: [String] = []
        for member in members {
            if member.role == "leader" || member.state == "streaming" || member.state == "running" {
                failing[member.name] = nil
                continue
            }
            let failed = member.state == "start failed"
            guard var entry = failing[member.name] else {
                if failed { failing[member.name] = Failing(since: now, attempts: 1, inFailedState: true) }
                continue
            }
            if failed, !entry.inFailedState { entry.attempts += 1 }
            entry.inFailedState = failed
            failing[member.name] = entry
            if leaderRunning, !rebuilt.contains(member.name), entry.attempts >= attempts, now - entry.since >= patience {
                due.append(member.name)
            }
        }
        for name in due {
            rebuilt.insert(name)
            failing[name] = nil
        }
        return due
    }
}
