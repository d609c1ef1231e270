import Patroni
import PGClient
import Synchronization

/// What the pool remembers for its errors, its logs and drills: the last cause per REST host, the
/// last failed leader check, when each leader was first named, the failovers it went through.
final class PoolDiagnostics: Sendable {
    private struct State {
        var failovers: [PatroniHAPool.FailoverEvent] = []
        var namedLeaders: [(NodeAddress, ContinuousClock.Instant)] = []
        /// The last failed leader check (node, libpq's error), cleared by a successful one.
        var lastProbeError: (NodeAddress, PGError?)?
        /// Consecutive refreshes where no REST host gave a usable answer.
        var refreshFailureStreak = 0
        /// The last failure of each REST host ("host:port" → cause), from the last failed refresh.
        var lastRESTFailures: [String: String] = [:]
    }

    private let state = Mutex(State())

    var lastProbeError: (NodeAddress, PGError)? {
        state.withLock { s in
            guard let (node, error) = s.lastProbeError, let error else { return nil }
            return (node, error)
        }
    }

    var lastRESTFailures: [String: String] { state.withLock { $0.lastRESTFailures } }

    var failovers: [PatroniHAPool.FailoverEvent] { state.withLock { $0.failovers } }

    var namedLeaders: [(node: NodeAddress, at: ContinuousClock.Instant)] {
        state.withLock { $0.namedLeaders.map { (node: $0.0, at: $0.1) } }
    }

    /// Returns how many refreshes had failed in a row before this one.
    func fetchSucceeded() -> Int {
        state.withLock { s in
            defer {
                s.refreshFailureStreak = 0
                s.lastRESTFailures = [:]
            }
            return s.refreshFailureStreak
        }
    }

    /// Records why a refresh failed, per host; returns the length of the failure streak.
    func fetchFailed(_ error: any Error) -> Int {
        let causes = Self.causes(of: error)
        return state.withLock { s in
            s.refreshFailureStreak += 1
            s.lastRESTFailures = causes
            return s.refreshFailureStreak
        }
    }

    /// Per host, what went wrong ("host:port" → "code: message"). A `PatroniError` that is not
    /// per-endpoint is filed under its endpoint, or "*".
    static func causes(of error: any Error) -> [String: String] {
        guard let patroni = error as? PatroniError else { return ["*": "\(error)"] }
        if !patroni.failures.isEmpty {
            var result: [String: String] = [:]
            for (endpoint, failure) in patroni.failures { result["\(endpoint)"] = "\(failure.code): \(failure.message)" }
            return result
        }
        return [patroni.endpoint.map { "\($0)" } ?? "*": "\(patroni.code): \(patroni.message)"]
    }

    func probeSucceeded() {
        state.withLock { $0.lastProbeError = nil }
    }

    /// Returns true for the first failure of a streak (log it once).
    func probeFailed(_ node: NodeAddress, _ error: PGError?) -> Bool {
        state.withLock { s in
            defer { s.lastProbeError = error.map { (node, $0) } }
            return s.lastProbeError == nil
        }
    }

    func recordNamedLeader(_ leader: NodeAddress?, at now: ContinuousClock.Instant) {
        guard let leader else { return }
        state.withLock { s in
            if s.namedLeaders.last?.0 != leader {
                s.namedLeaders.append((leader, now))
                if s.namedLeaders.count > 64 { s.namedLeaders.removeFirst(s.namedLeaders.count - 64) }
            }
        }
    }

    func recordFailover(_ event: PatroniHAPool.FailoverEvent) {
        state.withLock { $0.failovers.append(event) }
    }
}
