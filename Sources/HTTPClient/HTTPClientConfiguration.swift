/// TLS settings, applied with `CURLOPT_CAINFO`, `CURLOPT_SSLCERT`, `CURLOPT_SSLKEY`,
/// `CURLOPT_SSL_VERIFYPEER` and `CURLOPT_SSL_VERIFYHOST`.
public struct HTTPTLSOptions: Sendable, Hashable {
    /// PEM file of the certificate authorities to trust (`CURLOPT_CAINFO`); `nil` uses the
    /// system's store.
    public var caFile: String?
    /// PEM client certificate for mutual TLS (`CURLOPT_SSLCERT`).
    public var certFile: String?
    /// PEM private key of `certFile` (`CURLOPT_SSLKEY`).
    public var keyFile: String?
    /// Verify the server's certificate chain (`CURLOPT_SSL_VERIFYPEER`). Turn off only in tests.
    public var verifyPeer: Bool = true
    /// Verify that the certificate names the host (`CURLOPT_SSL_VERIFYHOST` = 2).
    public var verifyHost: Bool = true

    public init(
        caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil,
        verifyPeer: Bool = true, verifyHost: Bool = true
    ) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.verifyPeer = verifyPeer
        self.verifyHost = verifyHost
    }
}

/// HTTP basic authentication (`CURLOPT_HTTPAUTH` = `CURLAUTH_BASIC`, `CURLOPT_USERNAME`,
/// `CURLOPT_PASSWORD`). The credentials never go into a URL, and `description` hides the password.
public struct HTTPBasicAuth: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var user: String
    public var password: String

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    public var description: String { "\(user):<redacted>" }
    public var debugDescription: String { description }
}

/// Settings shared by every request of one ``HTTPClient``.
public struct HTTPClientConfiguration: Sendable {
    /// Longest time to establish the TCP (and TLS) connection (`CURLOPT_CONNECTTIMEOUT_MS`).
    public var connectTimeout: Duration = .milliseconds(500)
    /// Longest time for the whole exchange, connect included (`CURLOPT_TIMEOUT_MS`); a
    /// per-request `timeout` overrides it.
    public var totalTimeout: Duration = .seconds(2)
    /// TLS options; `nil` uses libcurl's defaults (system CA store, full verification).
    public var tls: HTTPTLSOptions?
    /// Basic-auth credentials sent with every request.
    public var basicAuth: HTTPBasicAuth?
    /// Largest response body accepted; a longer one aborts the transfer with
    /// ``HTTPError/Code/bodyTooLarge``.
    public var maxBodyBytes: Int = 4 << 20
    /// `User-Agent` header.
    public var userAgent = "pgha"
    /// How many idle curl handles (with their live connections) the client keeps for reuse.
    public var maxIdleHandles = 8

    public init(
        connectTimeout: Duration = .milliseconds(500), totalTimeout: Duration = .seconds(2),
        tls: HTTPTLSOptions? = nil, basicAuth: HTTPBasicAuth? = nil, maxBodyBytes: Int = 4 << 20,
        userAgent: String = "pgha", maxIdleHandles: Int = 8
    ) {
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.tls = tls
        self.basicAuth = basicAuth
        self.maxBodyBytes = maxBodyBytes
        self.userAgent = userAgent
        self.maxIdleHandles = maxIdleHandles
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so that a positive duration never becomes 0 ("no timeout"
    /// for libcurl), clamped to what a C `long` holds.
    var curlMilliseconds: Int {
        let (seconds, attoseconds) = components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 1 }
        let millisFromAtto = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return Int.max }
        let (total, overflow2) = product.addingReportingOverflow(millisFromAtto)
        return overflow2 ? Int(Int64.max) : Int(total)
    }
}
