import CCurl
import Foundation
import Synchronization

/// `curl_global_init(CURL_GLOBAL_ALL)`, run exactly once per process: a `static let` is
/// initialised under `swift_once`, so concurrent first uses are safe.
enum CurlGlobal {
    static let initialized: CURLcode = pgha_curl_global_init_all()
}

/// Set from any thread to ask a running transfer to stop; read by the progress callback.
final class CancellationFlag: Sendable {
    private let raised = Atomic<Bool>(false)
    func raise() { raised.store(true, ordering: .releasing) }
    var isRaised: Bool { raised.load(ordering: .acquiring) }
}

/// Owns one libcurl easy handle (`CURL *`); `deinit` calls `curl_easy_cleanup`.
///
/// A handle keeps its live connections, DNS cache and TLS session cache between transfers, which
/// is why ``HTTPClient`` hands handles back to a free list instead of freeing them.
struct CurlEasy: ~Copyable {
    let raw: UnsafeMutableRawPointer

    /// `curl_easy_init`; `nil` when libcurl is out of memory.
    init?() {
        guard let raw = curl_easy_init() else { return nil }
        self.raw = raw
    }

    /// Takes ownership of a handle previously given up with ``relinquish()``.
    init(adopting raw: UnsafeMutableRawPointer) { self.raw = raw }

    deinit { curl_easy_cleanup(raw) }

    /// Gives up ownership without freeing the handle (to park it on a free list).
    consuming func relinquish() -> UnsafeMutableRawPointer {
        let raw = self.raw
        discard self
        return raw
    }
}

/// What the C callbacks of one transfer share with `perform`. Created, used and dropped on the
/// thread that runs `curl_easy_perform`; libcurl calls the callbacks on that same thread. It is
/// handed to libcurl as an unretained opaque pointer that lives for the duration of the call.
final class TransferState {
    var body: [UInt8] = []
    var headers = HTTPHeaders()
    var sawStatusLine = false
    var exceededCap = false
    var abortedForCancellation = false
    let maxBodyBytes: Int
    let cancellation: CancellationFlag?

    init(maxBodyBytes: Int, cancellation: CancellationFlag?) {
        self.maxBodyBytes = maxBodyBytes
        self.cancellation = cancellation
    }
}

/// `CURLOPT_WRITEFUNCTION`: appends to the body; returns a short count (which aborts the
/// transfer with `CURLE_WRITE_ERROR`) when the body would exceed the cap.
private let writeCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userdata in
    guard let userdata else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    let (n, overflow) = size.multipliedReportingOverflow(by: count)
    if overflow { return 0 }
    if n > state.maxBodyBytes - state.body.count {
        state.exceededCap = true
        return 0
    }
    if n > 0, let data {
        data.withMemoryRebound(to: UInt8.self, capacity: n) {
            state.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n))
        }
    }
    return n
}

/// `CURLOPT_HEADERFUNCTION`: one call per header line, status lines included.
private let headerCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userdata in
    guard let userdata else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    let n = size &* count
    guard n > 0, let data else { return n }
    let line = data.withMemoryRebound(to: UInt8.self, capacity: n) {
        String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self)
    }
    if line.hasPrefix("HTTP/") {
        // A new response starts (e.g. after `100 Continue`): keep only the final one's headers.
        state.sawStatusLine = true
        state.headers = HTTPHeaders()
    } else if let colon = line.firstIndex(of: ":") {
        let name = line[..<colon].trimmingCharacters(in: .whitespaces)
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
        if !name.isEmpty { state.headers.add(name: name, value: value) }
    }
    return n
}

/// `CURLOPT_XFERINFOFUNCTION`: returning non-zero aborts with `CURLE_ABORTED_BY_CALLBACK`.
/// libcurl calls it at least about once a second, more often while data flows.
private let progressCallback: @convention(c) (UnsafeMutableRawPointer?, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> Int32 = {
    userdata, _, _, _, _ in
    guard let userdata else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(userdata).takeUnretainedValue()
    if state.cancellation?.isRaised == true {
        state.abortedForCancellation = true
        return 1
    }
    return 0
}

extension CurlEasy {
    /// Runs one request on this handle with `curl_easy_perform`, on the calling thread.
    ///
    /// The handle is `curl_easy_reset` afterwards (which keeps its connection and DNS caches), so
    /// no option can point at memory that no longer exists once this returns.
    func perform(
        _ request: HTTPRequest, configuration: HTTPClientConfiguration, timeout: Duration?,
        cancellation: CancellationFlag?
    ) -> Result<HTTPResponse, HTTPError> {
        let h = raw
        defer { curl_easy_reset(h) }
        let state = TransferState(maxBodyBytes: max(0, configuration.maxBodyBytes), cancellation: cancellation)
        let clock = ContinuousClock()
        let start = clock.now

        // Header list; freed right after the transfer.
        var list: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(list) }
        func append(_ line: String) -> Bool {
            guard let grown = curl_slist_append(list, line) else { return false }
            list = grown
            return true
        }
        for field in request.headers {
            guard append("\(field.name): \(field.value)") else { return .failure(outOfMemory(request)) }
        }
        // No `Expect: 100-continue` round trip before a body.
        guard append("Expect:") else { return .failure(outOfMemory(request)) }

        let statePointer = Unmanaged.passUnretained(state).toOpaque()
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(CURL_ERROR_SIZE) + 1) { errorBuffer in
            errorBuffer.initialize(repeating: 0)
            var code = CURLE_OK
            func set(_ result: CURLcode) { if code == CURLE_OK { code = result } }

            set(pgha_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, errorBuffer.baseAddress))
            set(pgha_curl_setopt_string(h, CURLOPT_URL, request.url))
            set(pgha_curl_setopt_string(h, CURLOPT_PROTOCOLS_STR, "http,https"))
            set(pgha_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
            set(pgha_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, configuration.connectTimeout.curlMilliseconds))
            set(pgha_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, (timeout ?? configuration.totalTimeout).curlMilliseconds))
            set(pgha_curl_setopt_string(h, CURLOPT_USERAGENT, configuration.userAgent))
            set(pgha_curl_setopt_off(h, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(max(0, configuration.maxBodyBytes))))
            set(pgha_curl_setopt_slist(h, CURLOPT_HTTPHEADER, list))
            set(pgha_curl_setopt_write_callback(h, writeCallback))
            set(pgha_curl_setopt_pointer(h, CURLOPT_WRITEDATA, statePointer))
            set(pgha_curl_setopt_header_callback(h, headerCallback))
            set(pgha_curl_setopt_pointer(h, CURLOPT_HEADERDATA, statePointer))
            if cancellation != nil {
                set(pgha_curl_setopt_xferinfo_callback(h, progressCallback))
                set(pgha_curl_setopt_pointer(h, CURLOPT_XFERINFODATA, statePointer))
                set(pgha_curl_setopt_long(h, CURLOPT_NOPROGRESS, 0))
            }
            if let auth = configuration.basicAuth {
                set(pgha_curl_setopt_long(h, CURLOPT_HTTPAUTH, pgha_curl_auth_basic()))
                set(pgha_curl_setopt_string(h, CURLOPT_USERNAME, auth.user))
                set(pgha_curl_setopt_string(h, CURLOPT_PASSWORD, auth.password))
            }
            if let tls = configuration.tls {
                if let ca = tls.caFile { set(pgha_curl_setopt_string(h, CURLOPT_CAINFO, ca)) }
                if let cert = tls.certFile { set(pgha_curl_setopt_string(h, CURLOPT_SSLCERT, cert)) }
                if let key = tls.keyFile { set(pgha_curl_setopt_string(h, CURLOPT_SSLKEY, key)) }
                set(pgha_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, tls.verifyPeer ? 1 : 0))
                set(pgha_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, tls.verifyHost ? 2 : 0))
            }
            switch request.method {
            case .get:
                set(pgha_curl_setopt_long(h, CURLOPT_HTTPGET, 1))
            case .post:
                set(pgha_curl_setopt_long(h, CURLOPT_POST, 1))
            case .patch, .put, .delete:
                set(pgha_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, request.method.rawValue))
            }
            if let body = request.body, !body.isEmpty {
                // COPYPOSTFIELDS copies the bytes, so nothing has to outlive this scope.
                set(pgha_curl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
                set(body.withUnsafeBytes { bytes in
                    pgha_curl_setopt_pointer(h, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress))
                })
            } else if request.body != nil || request.method == .post || request.method == .put || request.method == .patch {
                set(pgha_curl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, 0))
                set(pgha_curl_setopt_string(h, CURLOPT_COPYPOSTFIELDS, ""))
            }
            guard code == CURLE_OK else {
                return .failure(HTTPError(
                    code: .invalidRequest, url: request.url,
                    message: "libcurl refused an option: \(String(cString: curl_easy_strerror(code)))",
                    curlCode: Int(code.rawValue)))
            }

            if cancellation?.isRaised == true {
                return .failure(HTTPError(code: .cancelled, url: request.url, message: "the request was cancelled before it started"))
            }
            let result = curl_easy_perform(h)
            let elapsed = clock.now - start
            // The buffer dies with this scope: detach it before anything else can write there.
            _ = pgha_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, nil)

            var status = 0
            var responseCode = 0
            if pgha_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &responseCode) == CURLE_OK { status = responseCode }

            if result == CURLE_OK {
                return .success(HTTPResponse(status: status, headers: state.headers, body: state.body, elapsed: elapsed))
            }
            let detail = String(cString: errorBuffer.baseAddress!)
            return .failure(HTTPClient.mapError(
                result, state: state, request: request, status: status == 0 ? nil : status, detail: detail,
                configuration: configuration, elapsed: elapsed))
        }
    }

    private func outOfMemory(_ request: HTTPRequest) -> HTTPError {
        HTTPError(code: .transport, url: request.url, message: "out of memory building the header list")
    }
}

extension HTTPClient {
    /// Maps a failed `curl_easy_perform` to an ``HTTPError``.
    static func mapError(
        _ result: CURLcode, state: TransferState, request: HTTPRequest, status: Int?, detail: String,
        configuration: HTTPClientConfiguration, elapsed: Duration
    ) -> HTTPError {
        let curlText = detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail
        var message = curlText
        let code: HTTPError.Code
        switch result {
        case CURLE_COULDNT_CONNECT:
            code = .connectionRefused
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            code = .couldNotResolve
        case CURLE_OPERATION_TIMEDOUT:
            code = .timeout
            let limit = (state.sawStatusLine ? "total" : "connect or total")
            message = "\(curlText) (\(limit) timeout)"
        case CURLE_SSL_CONNECT_ERROR, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED,
            CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_PEER_FAILED_VERIFICATION,
            CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_SHUTDOWN_FAILED,
            CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
            CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CLIENTCERT, CURLE_USE_SSL_FAILED:
            code = .tls
        case CURLE_WRITE_ERROR where state.exceededCap, CURLE_FILESIZE_EXCEEDED:
            code = .bodyTooLarge
            message = "the response body exceeded the limit of \(configuration.maxBodyBytes) bytes"
        case CURLE_ABORTED_BY_CALLBACK:
            code = .cancelled
            message = "the request was cancelled"
        case CURLE_PARTIAL_FILE, CURLE_BAD_CONTENT_ENCODING:
            code = .unreadableBody
        case CURLE_RECV_ERROR where state.sawStatusLine:
            code = .unreadableBody
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_BAD_FUNCTION_ARGUMENT:
            code = .invalidRequest
        default:
            code = .transport
        }
        message = Self.redact(message, configuration: configuration)
        return HTTPError(code: code, url: request.url, status: status, message: message, curlCode: Int(result.rawValue))
    }
}

extension HTTPClient {
    /// `error` with the configured password (should a server echo it) removed from its message.
    func redacting(_ error: HTTPError) -> HTTPError {
        var error = error
        error.message = Self.redact(error.message, configuration: configuration)
        return error
    }

    static func redact(_ text: String, configuration: HTTPClientConfiguration) -> String {
        guard let password = configuration.basicAuth?.password, !password.isEmpty else { return text }
        return text.replacingOccurrences(of: password, with: "<redacted>")
    }
}
