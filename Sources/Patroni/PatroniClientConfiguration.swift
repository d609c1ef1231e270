import HTTPClient

/// TLS to the REST API (Patroni's `restapi.certfile`, `restapi.cafile`, `restapi.verify_client`).
public struct PatroniTLS: Sendable, Hashable {
    /// CA bundle that signed the members' certificates; nil: the system's.
    public var caFile: String?
    /// Client certificate and key, for `restapi.verify_client: required`.
    public var certFile: String?
    public var keyFile: String?
    /// Verify the member's certificate chain and its name (on by default: turn off only in a test).
    public var verifyPeer: Bool
    public var verifyHost: Bool

    public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, verifyPeer: Bool = true, verifyHost: Bool = true) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.verifyPeer = verifyPeer
        self.verifyHost = verifyHost
    }
}

/// Basic auth for the REST API (`restapi.authentication`: Patroni requires it for POST, PATCH and
/// DELETE when set). Its description never shows the password.
public struct PatroniCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var user: String
    public var password: String

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }

    public var description: String { "\(user):<redacted>" }
    public var debugDescription: String { description }
}

/// Where the Patroni REST API is and how to talk to it, in Patroni's terms (the HTTP client
/// underneath is this module's business: no caller builds its settings).
public struct PatroniClientConfiguration: Sendable {
    /// The members' REST API endpoints. Reads ask all of them; duplicates are ignored.
    public var endpoints: [PatroniEndpoint]
    /// Per endpoint: to connect, and for the whole request. The defaults suit polling `/cluster`
    /// on a LAN: 250 ms and 1 s (a member busy in a leader election can take over 0.5 s; the other
    /// members answer meanwhile).
    public var connectTimeout: Duration
    public var requestTimeout: Duration
    /// TLS (with `https` endpoints), basic auth.
    public var tls: PatroniTLS?
    public var credentials: PatroniCredentials?
    /// Largest answer accepted; a larger one fails that endpoint as malformed.
    public var maxBodyBytes: Int
    /// Total timeout of actions that Patroni performs before answering: `POST /switchover`
    /// and `/failover` wait up to ~20 s for the new leader.
    public var actionTimeout: Duration

    public init(
        endpoints: [PatroniEndpoint], connectTimeout: Duration = .milliseconds(250), requestTimeout: Duration = .seconds(1),
        tls: PatroniTLS? = nil, credentials: PatroniCredentials? = nil, maxBodyBytes: Int = 4 << 20, actionTimeout: Duration = .seconds(40)
    ) {
        var unique: [PatroniEndpoint] = []
        for endpoint in endpoints where !unique.contains(endpoint) { unique.append(endpoint) }
        self.endpoints = unique
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.tls = tls
        self.credentials = credentials
        self.maxBodyBytes = maxBodyBytes
        self.actionTimeout = actionTimeout
    }

    /// The HTTP client's settings for reads (actions widen the total timeout).
    var http: HTTPClientConfiguration {
        var http = HTTPClientConfiguration(connectTimeout: connectTimeout, totalTimeout: requestTimeout, maxBodyBytes: maxBodyBytes)
        http.tls = tls.map { HTTPTLSOptions(caFile: $0.caFile, certFile: $0.certFile, keyFile: $0.keyFile, verifyPeer: $0.verifyPeer, verifyHost: $0.verifyHost) }
        http.basicAuth = credentials.map { HTTPBasicAuth(user: $0.user, password: $0.password) }
        return http
    }
}

/// A read answered by one endpoint.
public struct PatroniAnswer<Value: Sendable>: Sendable {
    /// The endpoint whose answer this is.
    public var endpoint: PatroniEndpoint
    public var value: Value
    /// From the call's start to this answer.
    public var elapsed: Duration
    /// Endpoints that had already failed when this answer arrived, and why. Endpoints still
    /// running at that moment are not listed.
    public var failures: [PatroniEndpoint: PatroniError]

    public init(endpoint: PatroniEndpoint, value: Value, elapsed: Duration, failures: [PatroniEndpoint: PatroniError] = [:]) {
        self.endpoint = endpoint
        self.value = value
        self.elapsed = elapsed
        self.failures = failures
    }
}

/// Patroni's health-check endpoints. Each answers 200 when the check passes and 503 when it does
/// not, with the member's ``PatroniNodeStatus`` as body (`/liveness` and `/readiness` send none).
public enum PatroniHealthCheck: Sendable, Hashable {
    /// `GET /primary`: PostgreSQL runs as primary and holds the leader lock.
    case primary
    /// `GET /replica` (with `?lag=N` when a maximum lag is given): a running replica without
    /// `noloadbalance`, within the lag.
    case replica(maxLagBytes: Int64?)
    /// `GET /read-only`: primary or replica.
    case readOnly
    /// `GET /health`: PostgreSQL is up.
    case health
    /// `GET /liveness`: Patroni's heartbeat loop runs.
    case liveness
    /// `GET /readiness`: the member is the leader, or a replica that is streaming and caught up.
    case readiness

    /// The request path, query included.
    public var path: String {
        switch self {
        case .primary: return "/primary"
        case .replica(let maxLag?): return "/replica?lag=\(max(0, maxLag))"
        case .replica(nil): return "/replica"
        case .readOnly: return "/read-only"
        case .health: return "/health"
        case .liveness: return "/liveness"
        case .readiness: return "/readiness"
        }
    }
}

/// The result of a health check: 200 (passing) and 503 (failing) are both answers.
public struct PatroniHealthAnswer: Sendable {
    public var endpoint: PatroniEndpoint
    public var check: PatroniHealthCheck
    /// 200 or 503.
    public var status: Int
    /// The member's status, when the body had one and it could be read.
    public var body: PatroniNodeStatus?
    /// Why a non-empty body could not be read (the status still counts).
    public var bodyProblem: String?
    public var elapsed: Duration

    /// The check passed (status 200).
    public var isPassing: Bool { status == 200 }

    public init(endpoint: PatroniEndpoint, check: PatroniHealthCheck, status: Int, body: PatroniNodeStatus?, bodyProblem: String? = nil, elapsed: Duration) {
        self.endpoint = endpoint
        self.check = check
        self.status = status
        self.body = body
        self.bodyProblem = bodyProblem
        self.elapsed = elapsed
    }
}
