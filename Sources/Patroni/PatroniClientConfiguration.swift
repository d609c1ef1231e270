public import HTTPClient

/// Where the Patroni REST API is and how to talk to it.
public struct PatroniClientConfiguration: Sendable {
    /// The members' REST API endpoints. Reads ask all of them; duplicates are ignored.
    public var endpoints: [PatroniEndpoint]
    /// Timeouts (per endpoint), TLS and basic auth (Patroni requires it for POST/PATCH/DELETE
    /// when `restapi.authentication` is set).
    public var http: HTTPClientConfiguration
    /// Total timeout of actions that Patroni performs before answering: `POST /switchover`
    /// and `/failover` wait up to ~20 s for the new leader.
    public var actionTimeout: Duration

    /// Largest answer accepted (``HTTPClientConfiguration/maxBodyBytes``).
    public var maxBodyBytes: Int {
        get { http.maxBodyBytes }
        set { http.maxBodyBytes = newValue }
    }

    /// Short timeouts suited to polling `/cluster` on a LAN: 250 ms to connect, 1 s in total.
    /// A member busy in a leader election can take over 0.5 s; the other members answer meanwhile.
    public static var defaultHTTP: HTTPClientConfiguration {
        HTTPClientConfiguration(connectTimeout: .milliseconds(250), totalTimeout: .seconds(1), maxBodyBytes: 4 << 20)
    }

    public init(endpoints: [PatroniEndpoint], http: HTTPClientConfiguration = Self.defaultHTTP, actionTimeout: Duration = .seconds(40)) {
        var unique: [PatroniEndpoint] = []
        for endpoint in endpoints where !unique.contains(endpoint) { unique.append(endpoint) }
        self.endpoints = unique
        self.http = http
        self.actionTimeout = actionTimeout
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
