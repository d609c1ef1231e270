public import Foundation
import HTTPClient
import Synchronization

/// A client for Patroni's REST API across several members.
///
/// Reads (`/cluster`, `/history`, `/config`) go to every endpoint at once, each with the short
/// per-endpoint timeout of ``PatroniClientConfiguration/http``, and the first valid answer wins:
/// a dead or slow member never delays the answer beyond the fastest healthy one. Actions
/// (`/switchover`, `/failover`) go to the leader's own API, found through `/cluster`.
public final class PatroniClient: Sendable {
    public let configuration: PatroniClientConfiguration
    let http: HTTPClient
    /// Index of the endpoint that answered last, tried first by the synchronous reads.
    let preferred = Atomic<Int>(0)
    /// Transfers abandoned while still running, per endpoint and path (see `fetch`).
    let abandoned = AbandonedTransfers()

    public init(configuration: PatroniClientConfiguration) {
        self.configuration = configuration
        self.http = HTTPClient(configuration: configuration.http)
    }

    public var endpoints: [PatroniEndpoint] { configuration.endpoints }

    // MARK: - Reads

    /// `GET /cluster` from every endpoint concurrently; the first valid answer.
    ///
    /// "Valid" means decoded and checked (``PatroniCluster/validate(endpoint:)``): an endpoint
    /// whose answer names two leaders, or a member without a name, counts as failed. A cluster
    /// without a leader is a valid answer (`leader == nil`).
    ///
    /// - Throws: ``PatroniError/Code/allEndpointsFailed`` with each endpoint's reason;
    ///   ``PatroniError/Code/cancelled``; ``PatroniError/Code/invalidRequest`` without endpoints.
    public func cluster() async throws(PatroniError) -> PatroniAnswer<PatroniCluster> {
        try await firstAnswer(path: "/cluster") { bytes, endpoint throws(PatroniError) in
            try PatroniDecoder.cluster(bytes, endpoint: endpoint)
        }
    }

    /// `GET /cluster` from every endpoint, each with its own result: for diagnostics and for
    /// spotting members that disagree (split brain, a member cut off from the DCS).
    public func clusterFromEach() async -> [PatroniEndpoint: Result<PatroniCluster, PatroniError>] {
        await fromEach(path: "/cluster") { bytes, endpoint throws(PatroniError) in
            try PatroniDecoder.cluster(bytes, endpoint: endpoint)
        }
    }

    /// `GET /cluster` on the caller's thread: endpoints one after another (the one that answered
    /// last first), each with the short per-endpoint timeout; the first valid answer.
    public func clusterSync() throws(PatroniError) -> PatroniAnswer<PatroniCluster> {
        try firstAnswerSync(path: "/cluster") { bytes, endpoint throws(PatroniError) in
            try PatroniDecoder.cluster(bytes, endpoint: endpoint)
        }
    }

    /// `GET /patroni` from one endpoint: that member's view of itself.
    public func patroni(at endpoint: PatroniEndpoint) async throws(PatroniError) -> PatroniNodeStatus {
        try await fetch("/patroni", at: endpoint) { bytes, endpoint throws(PatroniError) in
            try PatroniDecoder.nodeStatus(bytes, endpoint: endpoint)
        }.get()
    }

    /// `GET /history` (first valid answer): the cluster's timeline switches, oldest first.
    public func history() async throws(PatroniError) -> [PatroniHistoryEntry] {
        try await firstAnswer(path: "/history") { bytes, endpoint throws(PatroniError) in
            try PatroniDecoder.history(bytes, endpoint: endpoint)
        }.value
    }

    /// `GET /config` (first valid answer): the dynamic configuration stored in the DCS.
    public func config() async throws(PatroniError) -> JSONValue {
        try await firstAnswer(path: "/config") { bytes, endpoint throws(PatroniError) in
            try PatroniDecoder.config(bytes, endpoint: endpoint)
        }.value
    }

    /// A health check on one endpoint. 200 and 503 are both answers; the body is decoded when
    /// there is one (a body that cannot be read leaves ``PatroniHealthAnswer/body`` nil and says
    /// why in ``PatroniHealthAnswer/bodyProblem``).
    ///
    /// - Throws: ``PatroniError/Code/transport``, or ``PatroniError/Code/httpStatus`` for any
    ///   other status.
    public func health(_ check: PatroniHealthCheck, at endpoint: PatroniEndpoint) async throws(PatroniError) -> PatroniHealthAnswer {
        let path = check.path
        let response: HTTPResponse
        do {
            response = try await http.send(Self.getRequest(path, at: endpoint))
        } catch {
            throw PatroniError(error, endpoint: endpoint, path: path)
        }
        guard response.status == 200 || response.status == 503 else {
            throw Self.statusError(response, endpoint: endpoint, path: path)
        }
        var body: PatroniNodeStatus?
        var problem: String?
        if response.body.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) {
            do {
                body = try PatroniDecoder.nodeStatus(response.body, path: path, endpoint: endpoint)
            } catch {
                problem = error.message
            }
        }
        return PatroniHealthAnswer(
            endpoint: endpoint, check: check, status: response.status, body: body, bodyProblem: problem,
            elapsed: response.elapsed)
    }

    // MARK: - Actions

    /// `POST /switchover` to the leader's REST API (found via ``cluster()``).
    ///
    /// - Parameters:
    ///   - leader: the member to demote; `nil` means the current leader. Patroni refuses the
    ///     request when this is not the leader.
    ///   - candidate: the member to promote; `nil` lets Patroni choose (not allowed in pause).
    ///   - scheduledAt: run it later instead of now (Patroni answers 202 at once).
    /// - Returns: Patroni's message, e.g. `Successfully switched over to "m2"`.
    /// - Throws: ``PatroniError/Code/noLeader`` when the cluster has no leader;
    ///   ``PatroniError/Code/rejected`` with Patroni's text for a 4xx/5xx answer;
    ///   ``PatroniError/Code/transport`` when the leader's API cannot be reached.
    public func switchover(leader: String?, candidate: String?, scheduledAt: Date? = nil) async throws(PatroniError) -> String {
        if let leader, leader.trimmingWhitespace().isEmpty {
            throw PatroniError(code: .invalidRequest, path: "/switchover", message: "the leader name is empty")
        }
        if let candidate, candidate.trimmingWhitespace().isEmpty {
            throw PatroniError(code: .invalidRequest, path: "/switchover", message: "the candidate name is empty")
        }
        let answer = try await cluster()
        guard let current = answer.value.leader else {
            throw PatroniError(
                code: .noLeader, endpoint: answer.endpoint, path: "/switchover",
                message: "the cluster has no leader to switch over from (\(Self.summary(answer.value)))")
        }
        let body = ActionBody(leader: leader ?? current.name, candidate: candidate, scheduledAt: scheduledAt.map(Self.iso8601))
        return try await post("/switchover", body: body, preferring: current.apiEndpoint, fallback: answer.endpoint)
    }

    /// `POST /failover` promoting `candidate` (works without a leader; Patroni turns it into a
    /// switchover when there is one). Sent to the leader's API, or the candidate's when there
    /// is no leader.
    ///
    /// - Returns: Patroni's message, e.g. `Successfully failed over to "m3"`.
    /// - Throws: ``PatroniError/Code/rejected`` with Patroni's text for a 4xx/5xx answer.
    public func failover(candidate: String) async throws(PatroniError) -> String {
        guard !candidate.trimmingWhitespace().isEmpty else {
            throw PatroniError(code: .invalidRequest, path: "/failover", message: "the candidate name is empty")
        }
        let answer = try await cluster()
        let target = answer.value.leader?.apiEndpoint ?? answer.value.member(named: candidate)?.apiEndpoint
        return try await post("/failover", body: ActionBody(candidate: candidate), preferring: target, fallback: answer.endpoint)
    }

    /// `PATCH /config`: merges `patch` into the dynamic configuration in the DCS (a `null` value
    /// deletes a key: `{"standby_cluster": null}` promotes a standby cluster). Sent to `preferring`
    /// (the member that acts at once, e.g. the standby leader) when given, else to the leader, else
    /// to any member that answers; another endpoint is tried only when one cannot be reached.
    /// - Returns: the configuration Patroni stored.
    /// - Throws: ``PatroniError/Code/rejected`` with Patroni's text for a 4xx/5xx answer.
    @discardableResult
    public func patchConfig(_ patch: JSONValue, preferring: PatroniEndpoint? = nil) async throws(PatroniError) -> JSONValue {
        var targets: [PatroniEndpoint] = preferring.map { [$0] } ?? []
        if let answer = try? await cluster() {
            if let leader = answer.value.leader?.apiEndpoint { targets.append(leader) }
            targets.append(answer.endpoint)
        }
        targets += configuration.endpoints
        targets = targets.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
        var lastError: PatroniError?
        for target in targets {
            let request: HTTPRequest
            do {
                request = try HTTPRequest.json(.patch, url: target.url("/config"), body: patch)
            } catch {
                throw PatroniError(error, endpoint: target, path: "/config")
            }
            do {
                let text = try await action(request, path: "/config", endpoint: target)
                return (try? PatroniDecoder.config(Array(text.utf8), endpoint: target)) ?? .object([:])
            } catch {
                guard error.code == .transport, error.httpError?.isConnectFailure == true else { throw error }
                lastError = error
            }
        }
        throw lastError ?? PatroniError(code: .invalidRequest, path: "/config", message: "no endpoint to send the request to")
    }

    /// `DELETE /switchover`: cancels a scheduled switchover. Returns Patroni's message.
    public func cancelScheduledSwitchover() async throws(PatroniError) -> String {
        let answer = try await cluster()
        let target = answer.value.leader?.apiEndpoint ?? answer.endpoint
        let request = HTTPRequest(method: .delete, url: target.url("/switchover"))
        return try await action(request, path: "/switchover", endpoint: target)
    }
}
