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
    private let preferred = Atomic<Int>(0)
    /// Transfers abandoned while still running, per endpoint and path (see `fetch`).
    private let abandoned = AbandonedTransfers()

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

    // MARK: - Machinery

    typealias Decode<T> = @Sendable ([UInt8], PatroniEndpoint) throws(PatroniError) -> T

    struct ActionBody: Encodable {
        var leader: String?
        var candidate: String?
        var scheduledAt: String?

        enum CodingKeys: String, CodingKey {
            case leader, candidate
            case scheduledAt = "scheduled_at"
        }
    }

    static func getRequest(_ path: String, at endpoint: PatroniEndpoint) -> HTTPRequest {
        HTTPRequest(url: endpoint.url(path), headers: ["Accept": "application/json"])
    }

    /// GET with a guard against piling up: a request abandoned after another endpoint answered
    /// first (or after a cancellation) may keep its thread until curl notices, ~1 s for a hung
    /// member. While such an abandoned transfer to an endpoint is still running, that endpoint is
    /// skipped rather than sent another request, so a hung member never accumulates threads; the
    /// other endpoints answer.
    ///
    /// `skipHanging: false` (diagnostics that want every endpoint's own answer) always sends.
    func fetch<T>(_ path: String, at endpoint: PatroniEndpoint, skipHanging: Bool = true, decode: Decode<T>) async -> Result<T, PatroniError> {
        let key = "\(endpoint.authority)\(path)"
        guard !skipHanging || !abandoned.isAbandoned(key) else {
            return .failure(PatroniError(
                code: .transport, endpoint: endpoint, path: path,
                message: "an earlier request to this host is still hanging (skipped)"))
        }
        let transfer = abandoned.begin(key)
        let response: HTTPResponse
        do {
            response = try await http.send(Self.getRequest(path, at: endpoint)) { [abandoned] in
                abandoned.ended(transfer)
            }
        } catch {
            if error.code == .cancelled { abandoned.abandon(transfer) }
            return .failure(PatroniError(error, endpoint: endpoint, path: path))
        }
        return Self.decodeResponse(response, path: path, endpoint: endpoint, decode: decode)
    }

    func fetchSync<T>(_ path: String, at endpoint: PatroniEndpoint, decode: Decode<T>) -> Result<T, PatroniError> {
        let response: HTTPResponse
        do {
            response = try http.send(Self.getRequest(path, at: endpoint))
        } catch {
            return .failure(PatroniError(error, endpoint: endpoint, path: path))
        }
        return Self.decodeResponse(response, path: path, endpoint: endpoint, decode: decode)
    }

    private static func decodeResponse<T>(_ response: HTTPResponse, path: String, endpoint: PatroniEndpoint, decode: Decode<T>) -> Result<T, PatroniError> {
        guard response.isSuccess else { return .failure(statusError(response, endpoint: endpoint, path: path)) }
        do {
            return .success(try decode(response.body, endpoint))
        } catch {
            return .failure(error)
        }
    }

    /// Every endpoint at once; returns as soon as one gives a valid answer and cancels the rest
    /// (their transfers stop in the background; the caller does not wait for them).
    func firstAnswer<T: Sendable>(path: String, decode: @escaping Decode<T>) async throws(PatroniError) -> PatroniAnswer<T> {
        let endpoints = configuration.endpoints
        guard !endpoints.isEmpty else {
            throw PatroniError(code: .invalidRequest, path: path, message: "no Patroni endpoints are configured")
        }
        let clock = ContinuousClock()
        let start = clock.now
        let outcome: Result<PatroniAnswer<T>, PatroniError> = await withTaskGroup(
            of: (PatroniEndpoint, Result<T, PatroniError>).self
        ) { group in
            for endpoint in endpoints {
                group.addTask { (endpoint, await self.fetch(path, at: endpoint, decode: decode)) }
            }
            var failures: [PatroniEndpoint: PatroniError] = [:]
            while let (endpoint, result) = await group.next() {
                switch result {
                case .success(let value):
                    group.cancelAll()
                    return .success(PatroniAnswer(endpoint: endpoint, value: value, elapsed: clock.now - start, failures: failures))
                case .failure(let error):
                    failures[endpoint] = error
                }
            }
            if Task.isCancelled {
                return .failure(PatroniError(code: .cancelled, path: path, message: "the request was cancelled"))
            }
            return .failure(Self.allFailed(path: path, endpoints: endpoints, failures: failures))
        }
        return try outcome.get()
    }

    /// Every endpoint at once, every answer kept.
    func fromEach<T: Sendable>(path: String, decode: @escaping Decode<T>) async -> [PatroniEndpoint: Result<T, PatroniError>] {
        await withTaskGroup(of: (PatroniEndpoint, Result<T, PatroniError>).self) { group in
            for endpoint in configuration.endpoints {
                group.addTask { (endpoint, await self.fetch(path, at: endpoint, skipHanging: false, decode: decode)) }
            }
            var results: [PatroniEndpoint: Result<T, PatroniError>] = [:]
            for await (endpoint, result) in group { results[endpoint] = result }
            return results
        }
    }

    /// Endpoints one after another on the caller's thread, starting with the last one that
    /// answered.
    func firstAnswerSync<T>(path: String, decode: Decode<T>) throws(PatroniError) -> PatroniAnswer<T> {
        let endpoints = configuration.endpoints
        guard !endpoints.isEmpty else {
            throw PatroniError(code: .invalidRequest, path: path, message: "no Patroni endpoints are configured")
        }
        let clock = ContinuousClock()
        let start = clock.now
        let first = min(max(0, preferred.load(ordering: .relaxed)), endpoints.count - 1)
        var failures: [PatroniEndpoint: PatroniError] = [:]
        for step in 0..<endpoints.count {
            let index = (first + step) % endpoints.count
            let endpoint = endpoints[index]
            switch fetchSync(path, at: endpoint, decode: decode) {
            case .success(let value):
                preferred.store(index, ordering: .relaxed)
                return PatroniAnswer(endpoint: endpoint, value: value, elapsed: clock.now - start, failures: failures)
            case .failure(let error):
                failures[endpoint] = error
            }
        }
        throw Self.allFailed(path: path, endpoints: endpoints, failures: failures)
    }

    /// POST `body` to `preferring` (the leader's API); if that endpoint cannot even be connected
    /// to (nothing was sent, so nothing can have happened), to `fallback` instead.
    private func post(_ path: String, body: ActionBody, preferring: PatroniEndpoint?, fallback: PatroniEndpoint) async throws(PatroniError) -> String {
        let targets = [preferring, fallback].compactMap { $0 }.reduce(into: [PatroniEndpoint]()) { if !$0.contains($1) { $0.append($1) } }
        var lastError: PatroniError?
        for target in targets {
            let request: HTTPRequest
            do {
                request = try HTTPRequest.json(.post, url: target.url(path), body: body)
            } catch {
                throw PatroniError(error, endpoint: target, path: path)
            }
            do {
                return try await action(request, path: path, endpoint: target)
            } catch {
                guard error.code == .transport, error.httpError?.isConnectFailure == true else { throw error }
                lastError = error
            }
        }
        throw lastError ?? PatroniError(code: .invalidRequest, path: path, message: "no endpoint to send the request to")
    }

    /// Sends an action with the long ``PatroniClientConfiguration/actionTimeout``; 2xx returns
    /// Patroni's text, anything else is ``PatroniError/Code/rejected``.
    private func action(_ request: HTTPRequest, path: String, endpoint: PatroniEndpoint) async throws(PatroniError) -> String {
        let response: HTTPResponse
        do {
            response = try await http.send(request, timeout: configuration.actionTimeout)
        } catch {
            throw PatroniError(error, endpoint: endpoint, path: path)
        }
        let text = response.bodyExcerpt(limit: 500)
        guard response.isSuccess else {
            throw PatroniError(
                code: .rejected, endpoint: endpoint, path: path, status: response.status,
                message: text.isEmpty ? "refused with status \(response.status)" : text)
        }
        return text
    }

    static func statusError(_ response: HTTPResponse, endpoint: PatroniEndpoint, path: String) -> PatroniError {
        let excerpt = response.bodyExcerpt(limit: 200)
        return PatroniError(
            code: .httpStatus, endpoint: endpoint, path: path, status: response.status,
            message: excerpt.isEmpty ? "unexpected status \(response.status)" : "unexpected status \(response.status): \(excerpt)")
    }

    static func allFailed(path: String, endpoints: [PatroniEndpoint], failures: [PatroniEndpoint: PatroniError]) -> PatroniError {
        let reasons = endpoints.compactMap { endpoint in
            failures[endpoint].map { "\(endpoint): \($0.code) (\($0.message))" }
        }
        return PatroniError(
            code: .allEndpointsFailed, path: path, failures: failures,
            message: "all \(endpoints.count) endpoint(s) failed: " + reasons.joined(separator: "; "))
    }

    static func summary(_ cluster: PatroniCluster) -> String {
        if cluster.members.isEmpty { return "no members" }
        return cluster.members.map { "\($0.name): \($0.role)/\($0.state?.rawValue ?? "?")" }.joined(separator: ", ")
    }

    static func iso8601(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}

/// Counts transfers that were abandoned by their caller but are still running, per key.
final class AbandonedTransfers: Sendable {
    final class Transfer: Sendable {
        let key: String
        /// (ended, abandoned)
        let state = Mutex((false, false))
        init(key: String) { self.key = key }
    }

    private let running = Mutex<[String: Int]>([:])

    func begin(_ key: String) -> Transfer { Transfer(key: key) }

    func isAbandoned(_ key: String) -> Bool { running.withLock { ($0[key] ?? 0) > 0 } }

    /// The caller gave up on `transfer`; counts it until it ends.
    func abandon(_ transfer: Transfer) {
        let count = transfer.state.withLock { state -> Bool in
            guard !state.0, !state.1 else { return false }
            state.1 = true
            return true
        }
        if count { running.withLock { $0[transfer.key, default: 0] += 1 } }
    }

    /// The transfer is over (answered, failed or timed out).
    func ended(_ transfer: Transfer) {
        let wasCounted = transfer.state.withLock { state -> Bool in
            state.0 = true
            return state.1
        }
        if wasCounted {
            running.withLock { r in
                r[transfer.key, default: 1] -= 1
                if r[transfer.key] == 0 { r[transfer.key] = nil }
            }
        }
    }
}
