import Foundation
import HTTPClient
import Synchronization

// PatroniClient's transport: one request to one endpoint (with the hanging-transfer guard), the
// first valid answer of many, answers decoded and errors summarised (the API is PatroniClient.swift).

extension PatroniClient {
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

    static func decodeResponse<T>(_ response: HTTPResponse, path: String, endpoint: PatroniEndpoint, decode: Decode<T>) -> Result<T, PatroniError> {
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
    func post(_ path: String, body: ActionBody, preferring: PatroniEndpoint?, fallback: PatroniEndpoint) async throws(PatroniError) -> String {
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
    func action(_ request: HTTPRequest, path: String, endpoint: PatroniEndpoint) async throws(PatroniError) -> String {
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
