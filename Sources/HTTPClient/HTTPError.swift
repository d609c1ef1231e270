/// Why an HTTP exchange failed.
///
/// `description` is safe to log: the URL has any user-info removed, and the configured password
/// is never part of a message. Codes are static members so new ones can be added without breaking
/// callers that switch over the ones they care about.
public struct HTTPError: Error, Sendable, CustomStringConvertible, Hashable {
    /// A stable, documented error category.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        private init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The server refused the TCP connection or could not be reached
        /// (`CURLE_COULDNT_CONNECT`). Safe to retry elsewhere: nothing was sent.
        public static let connectionRefused = Code("connectionRefused")
        /// The host name did not resolve (`CURLE_COULDNT_RESOLVE_HOST`).
        public static let couldNotResolve = Code("couldNotResolve")
        /// The connect timeout or the total timeout ran out (`CURLE_OPERATION_TIMEDOUT`).
        /// The request may or may not have reached the server.
        public static let timeout = Code("timeout")
        /// The TLS handshake failed: certificate not trusted, host name mismatch, unreadable
        /// CA/cert/key file, or a client certificate the server refused (`CURLE_SSL_*`,
        /// `CURLE_PEER_FAILED_VERIFICATION`).
        public static let tls = Code("tls")
        /// The server answered with a status the caller did not accept (only raised by
        /// ``HTTPClient/sendExpectingSuccess(_:timeout:)``; `send` returns any status).
        public static let httpStatus = Code("httpStatus")
        /// The body was longer than ``HTTPClientConfiguration/maxBodyBytes``; the transfer was
        /// aborted (`CURLE_WRITE_ERROR` from our write callback, or `CURLE_FILESIZE_EXCEEDED`).
        public static let bodyTooLarge = Code("bodyTooLarge")
        /// The response started but could not be read to its end: the connection closed or reset
        /// mid-body (`CURLE_PARTIAL_FILE`, `CURLE_RECV_ERROR` after the headers) or the content
        /// encoding was bad (`CURLE_BAD_CONTENT_ENCODING`).
        public static let unreadableBody = Code("unreadableBody")
        /// The calling task was cancelled; the transfer was aborted from the progress callback
        /// (`CURLE_ABORTED_BY_CALLBACK`).
        public static let cancelled = Code("cancelled")
        /// The request itself is unusable: a malformed URL, an unsupported scheme, credentials in
        /// the URL, a header containing CR/LF, a body that could not be encoded, an unusable
        /// option (`CURLE_URL_MALFORMAT`, `CURLE_UNSUPPORTED_PROTOCOL`, `CURLE_BAD_FUNCTION_ARGUMENT`).
        public static let invalidRequest = Code("invalidRequest")
        /// Any other transport failure: the server closed the connection without an answer
        /// (`CURLE_GOT_NOTHING`), a send/receive error before the response, an unintelligible
        /// reply (`CURLE_WEIRD_SERVER_REPLY`), out of memory, …
        public static let transport = Code("transport")
    }

    public var code: Code
    /// The request URL with any `user:password@` removed.
    public var url: String
    /// The HTTP status, when the server answered (``Code/httpStatus`` and some body errors).
    public var status: Int?
    /// A human-readable explanation, free of credentials.
    public var message: String
    /// libcurl's `CURLcode`, when the error came from libcurl.
    public var curlCode: Int?

    public init(code: Code, url: String, status: Int? = nil, message: String, curlCode: Int? = nil) {
        self.code = code
        self.url = HTTPError.redactingCredentials(in: url)
        self.status = status
        self.message = message
        self.curlCode = curlCode
    }

    public var description: String {
        var text = "HTTP \(code) for \(url)"
        if let status { text += " (status \(status))" }
        text += ": \(message)"
        if let curlCode { text += " [curl \(curlCode)]" }
        return text
    }

    /// Whether retrying the same request against another server is safe and sensible: nothing
    /// reached the server, or the server could not be reached in time.
    public var isConnectFailure: Bool {
        code == .connectionRefused || code == .couldNotResolve
    }

    /// `url` with the user-info part (`user:password@`) of its authority removed.
    public static func redactingCredentials(in url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let authorityStart = schemeEnd.upperBound
        let rest = url[authorityStart...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return url }
        return String(url[..<authorityStart]) + String(url[url.index(after: at)...])
    }

    /// Whether `url` carries a user-info part.
    static func hasCredentials(_ url: String) -> Bool {
        redactingCredentials(in: url) != url
    }
}
