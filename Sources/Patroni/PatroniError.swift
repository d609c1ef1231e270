package import HTTPClient

/// Why a Patroni REST call gave no usable answer.
///
/// `description` is safe to log: it carries no credentials (``HTTPError`` strips them, and the
/// basic-auth password is never part of a message).
public struct PatroniError: Error, Sendable, CustomStringConvertible {
    /// A stable, documented error category.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        private init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The HTTP exchange failed (refused, timeout, TLS, body too large, cut short…);
        /// the message says what (inside this package, `httpError` holds the HTTP layer's error).
        public static let transport = Code("transport")
        /// Patroni answered a read with an unexpected status (e.g. 401, 404, 500);
        /// ``PatroniError/status`` holds it.
        public static let httpStatus = Code("httpStatus")
        /// The answer could not be used: not JSON, truncated, a field of the wrong type, the
        /// `members` array missing, a member without a name or with a duplicated name.
        /// ``PatroniError/field`` names the field (`members[1].name`) and the message says why.
        public static let malformedAnswer = Code("malformedAnswer")
        /// The answer contradicts itself, e.g. two members claim the leader role;
        /// ``PatroniError/members`` names them.
        public static let inconsistentTopology = Code("inconsistentTopology")
        /// An operation needs a leader and the cluster has none (e.g. a switchover mid-failover).
        public static let noLeader = Code("noLeader")
        /// Every endpoint failed; ``PatroniError/failures`` says why, per endpoint.
        public static let allEndpointsFailed = Code("allEndpointsFailed")
        /// Patroni refused an action (switchover, failover…) with a 4xx/5xx; the message is
        /// Patroni's own text (e.g. `candidate does not exists`), ``PatroniError/status`` the code.
        public static let rejected = Code("rejected")
        /// A configured endpoint could not be parsed (bad scheme, port, host, or credentials in it).
        public static let invalidEndpoint = Code("invalidEndpoint")
        /// The call itself is unusable: no endpoints configured, an empty candidate name…
        public static let invalidRequest = Code("invalidRequest")
        /// The calling task was cancelled.
        public static let cancelled = Code("cancelled")
    }

    public var code: Code
    /// The endpoint that gave this answer, when one did.
    public var endpoint: PatroniEndpoint?
    /// The REST path asked for (`/cluster`, `/switchover`…).
    public var path: String?
    /// The HTTP status, for ``Code/httpStatus`` and ``Code/rejected``.
    public var status: Int?
    /// The offending field for ``Code/malformedAnswer`` (`members[1].name`, `(document)`).
    public var field: String?
    /// Member names involved, for ``Code/inconsistentTopology``.
    public var members: [String]
    /// The transport failure, for ``Code/transport``: visible inside this package only, so that
    /// Patroni's public API carries no type of the HTTP layer (its `message` says what happened).
    package var httpError: HTTPError?
    /// Why each endpoint failed, for ``Code/allEndpointsFailed``.
    public var failures: [PatroniEndpoint: PatroniError]
    /// A human-readable explanation, free of credentials.
    public var message: String

    public init(
        code: Code, endpoint: PatroniEndpoint? = nil, path: String? = nil, status: Int? = nil, field: String? = nil,
        members: [String] = [], failures: [PatroniEndpoint: PatroniError] = [:], message: String
    ) {
        self.init(code: code, endpoint: endpoint, path: path, status: status, field: field, members: members, httpError: nil,
                  failures: failures, message: message)
    }

    package init(
        code: Code, endpoint: PatroniEndpoint?, path: String?, status: Int?, field: String?,
        members: [String], httpError: HTTPError?, failures: [PatroniEndpoint: PatroniError], message: String
    ) {
        self.code = code
        self.endpoint = endpoint
        self.path = path
        self.status = status
        self.field = field
        self.members = members
        self.httpError = httpError
        self.failures = failures
        self.message = message
    }

    /// Wraps a transport failure (``HTTPError/Code/cancelled`` becomes ``Code/cancelled``).
    package init(_ httpError: HTTPError, endpoint: PatroniEndpoint?, path: String?) {
        let code: Code = httpError.code == .cancelled ? .cancelled : .transport
        self.init(
            code: code, endpoint: endpoint, path: path, status: httpError.status, field: nil, members: [], httpError: httpError,
            failures: [:], message: "\(httpError.code): \(httpError.message)")
    }

    public var description: String {
        var text = "Patroni \(code)"
        switch (endpoint, path) {
        case (let endpoint?, let path?): text += " from \(endpoint)\(path)"
        case (let endpoint?, nil): text += " from \(endpoint)"
        case (nil, let path?): text += " for \(path)"
        case (nil, nil): break
        }
        if let status, code != .transport { text += " (status \(status))" }
        text += ": \(message)"
        return text
    }
}
