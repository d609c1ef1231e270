public import BlockingIO
import CCurl
import Synchronization

/// A small, safe HTTP/1.1 client over libcurl's easy interface.
///
/// - The synchronous ``send(_:timeout:)`` runs `curl_easy_perform` on the caller's thread: the
///   fast path for code that already runs on a thread of its own.
/// - The `async` ``send(_:timeout:)`` runs it on ``BlockingIOPool`` so no cooperative thread ever
///   blocks; cancelling the task resumes the caller at once with ``HTTPError/Code/cancelled`` and
///   aborts the transfer from libcurl's progress callback.
///
/// Easy handles are reused through a small free list, so keep-alive connections, the DNS cache
/// and TLS sessions survive between requests. Every request sets `CURLOPT_NOSIGNAL` (libcurl must
/// not use signals in a threaded process), both timeouts, and a body cap enforced while reading.
public final class HTTPClient: Sendable {
    public let configuration: HTTPClientConfiguration
    private let pool: BlockingIOPool
    /// Idle `CURL *` handles, stored as bit patterns; owned by the list (see `IdleHandles.deinit`).
    private let idle = Mutex(IdleHandles())

    private struct IdleHandles: ~Copyable {
        var handles: [UInt] = []
        deinit {
            for bits in handles {
                if let raw = UnsafeMutableRawPointer(bitPattern: bits) { _ = CurlEasy(adopting: raw) }
            }
        }
    }

    /// - Parameters:
    ///   - configuration: timeouts, TLS, basic auth, body cap.
    ///   - pool: where the `async` variant runs its blocking transfers.
    public init(configuration: HTTPClientConfiguration = .init(), pool: BlockingIOPool = .shared) {
        _ = CurlGlobal.initialized
        self.configuration = configuration
        self.pool = pool
    }

    /// Sends `request` on the calling thread (`curl_easy_perform`) and returns the answer,
    /// whatever its status.
    ///
    /// - Parameter timeout: overrides ``HTTPClientConfiguration/totalTimeout`` for this request.
    /// - Throws: ``HTTPError`` for anything but a complete answer.
    public func send(_ request: HTTPRequest, timeout: Duration? = nil) throws(HTTPError) -> HTTPResponse {
        try perform(request, timeout: timeout, cancellation: nil).get()
    }

    /// Sends `request` on ``BlockingIOPool`` and returns the answer, whatever its status.
    ///
    /// Cancellation of the calling task resumes it immediately with ``HTTPError/Code/cancelled``;
    /// the transfer itself stops at libcurl's next progress callback.
    ///
    /// `whenTransferEnds` runs when the transfer is really over, which after a cancellation can be
    /// later than this call's return (curl notices at its next progress callback, within ~1 s).
    public func send(
        _ request: HTTPRequest, timeout: Duration? = nil, whenTransferEnds: (@Sendable () -> Void)? = nil
    ) async throws(HTTPError) -> HTTPResponse {
        let pending = PendingTransfer()
        let cancelled = HTTPError(code: .cancelled, url: request.url, message: "the request was cancelled")
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<HTTPResponse, HTTPError>, Never>) in
                guard pending.install(continuation) else {
                    continuation.resume(returning: .failure(cancelled))
                    whenTransferEnds?()
                    return
                }
                pool.submit { [self] in
                    pending.finish(perform(request, timeout: timeout, cancellation: pending.flag))
                    whenTransferEnds?()
                }
            }
        } onCancel: {
            pending.cancel(with: cancelled)
        }
        return try result.get()
    }

    /// Like ``send(_:timeout:)`` (synchronous), but a status outside 200–299 throws
    /// ``HTTPError/Code/httpStatus`` carrying the status and a short excerpt of the body.
    public func sendExpectingSuccess(_ request: HTTPRequest, timeout: Duration? = nil) throws(HTTPError) -> HTTPResponse {
        let response = try send(request, timeout: timeout)
        do { return try Self.expectSuccess(response, url: request.url) } catch { throw redacting(error) }
    }

    /// Like ``send(_:timeout:)`` (`async`), but a status outside 200–299 throws
    /// ``HTTPError/Code/httpStatus`` carrying the status and a short excerpt of the body.
    public func sendExpectingSuccess(_ request: HTTPRequest, timeout: Duration? = nil) async throws(HTTPError) -> HTTPResponse {
        let response = try await send(request, timeout: timeout)
        do { return try Self.expectSuccess(response, url: request.url) } catch { throw redacting(error) }
    }

    /// Returns `response` when it is 2xx, otherwise throws ``HTTPError/Code/httpStatus``.
    public static func expectSuccess(_ response: HTTPResponse, url: String) throws(HTTPError) -> HTTPResponse {
        guard response.isSuccess else {
            let excerpt = response.bodyExcerpt()
            throw HTTPError(
                code: .httpStatus, url: url, status: response.status,
                message: excerpt.isEmpty ? "status \(response.status)" : "status \(response.status): \(excerpt)")
        }
        return response
    }

    /// Number of idle handles kept for reuse (for statistics and tests).
    public var idleHandleCount: Int { idle.withLock { $0.handles.count } }

    // MARK: - Internals

    func perform(_ request: HTTPRequest, timeout: Duration?, cancellation: CancellationFlag?) -> Result<HTTPResponse, HTTPError> {
        if let problem = Self.validate(request) { return .failure(problem) }
        let bits: UInt? = idle.withLock { $0.handles.popLast() }
        let handle: CurlEasy
        if let bits, let raw = UnsafeMutableRawPointer(bitPattern: bits) {
            handle = CurlEasy(adopting: raw)
        } else if let fresh = CurlEasy() {
            handle = fresh
        } else {
            return .failure(HTTPError(code: .transport, url: request.url, message: "curl_easy_init failed (out of memory)"))
        }
        let result = handle.perform(request, configuration: configuration, timeout: timeout, cancellation: cancellation)
        checkIn(handle)
        return result
    }

    private func checkIn(_ handle: consuming CurlEasy) {
        let keep = configuration.maxIdleHandles
        let bits = UInt(bitPattern: handle.relinquish())
        let surplus: UInt? = idle.withLock { list in
            guard list.handles.count < keep else { return bits }
            list.handles.append(bits)
            return nil
        }
        if let surplus, let raw = UnsafeMutableRawPointer(bitPattern: surplus) {
            _ = CurlEasy(adopting: raw)  // freed here, outside the lock
        }
    }

    /// Rejects what must never reach libcurl: credentials in the URL, CR/LF in headers.
    static func validate(_ request: HTTPRequest) -> HTTPError? {
        if HTTPError.hasCredentials(request.url) {
            return HTTPError(
                code: .invalidRequest, url: request.url,
                message: "credentials in the URL are not allowed; configure HTTPBasicAuth instead")
        }
        if request.url.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 || $0 == 0x20 }) {
            return HTTPError(code: .invalidRequest, url: "<invalid URL>", message: "the URL contains spaces or control characters")
        }
        for field in request.headers {
            let badName = field.name.isEmpty || field.name.utf8.contains { $0 <= 0x20 || $0 == UInt8(ascii: ":") || $0 >= 0x7F }
            let badValue = field.value.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }
            if badName || badValue {
                return HTTPError(
                    code: .invalidRequest, url: request.url,
                    message: "header \(badName ? "name" : "value") of '\(badName ? "?" : field.name)' contains forbidden characters")
            }
        }
        return nil
    }
}

/// Hands one transfer's result to exactly one waiter, whichever comes first: the transfer's end
/// or the task's cancellation.
private final class PendingTransfer: Sendable {
    typealias Outcome = Result<HTTPResponse, HTTPError>
    let flag = CancellationFlag()
    private let state = Mutex(State.idle)

    private enum State {
        case idle
        case waiting(CheckedContinuation<Outcome, Never>)
        case cancelledEarly
        case done
    }

    /// Stores the continuation; `false` when the task was cancelled before it got here.
    func install(_ continuation: CheckedContinuation<Outcome, Never>) -> Bool {
        state.withLock { s in
            switch s {
            case .idle:
                s = .waiting(continuation)
                return true
            case .cancelledEarly, .waiting, .done:
                return false
            }
        }
    }

    func finish(_ outcome: Outcome) {
        take()?.resume(returning: outcome)
    }

    func cancel(with error: HTTPError) {
        flag.raise()
        let waiter: CheckedContinuation<Outcome, Never>? = state.withLock { s in
            switch s {
            case .idle:
                s = .cancelledEarly
                return nil
            case .waiting(let continuation):
                s = .done
                return continuation
            case .cancelledEarly, .done:
                return nil
            }
        }
        waiter?.resume(returning: .failure(error))
    }

    private func take() -> CheckedContinuation<Outcome, Never>? {
        state.withLock { s in
            switch s {
            case .waiting(let continuation):
                s = .done
                return continuation
            case .idle, .cancelledEarly, .done:
                return nil
            }
        }
    }
}
