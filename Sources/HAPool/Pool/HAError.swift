public import PGClient

/// An error from the HA pool. `description` never contains a password or a DSN.
public struct HAError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }

        /// No leader was confirmed writable within the failover timeout.
        public static let noLeader = Code(raw: "no_leader")
        /// `readOnly` was requested, no replica qualifies, and the fallback is `.fail`.
        public static let noReplicaAvailable = Code(raw: "no_replica_available")
        /// A statement was sent and the connection failed before its result arrived (for example
        /// during COMMIT): it may or may not have taken effect. Never retried automatically;
        /// check, then re-run only if it did not happen.
        public static let outcomeUnknown = Code(raw: "outcome_unknown")
        /// The server rejected the statement (a SQL error); `underlying` has SQLSTATE and message.
        public static let queryFailed = Code(raw: "query_failed")
        /// Connecting failed and retrying did not help within the failover timeout.
        public static let connectionFailed = Code(raw: "connection_failed")
        /// Every per-node pool slot is busy and none came free in time.
        public static let poolExhausted = Code(raw: "pool_exhausted")
        /// The pool has been closed.
        public static let closed = Code(raw: "closed")
        /// The Patroni REST API could not be read from any configured host.
        public static let topologyUnavailable = Code(raw: "topology_unavailable")
        /// The operation was cancelled.
        public static let cancelled = Code(raw: "cancelled")
    }

    public var code: Code
    public var message: String
    /// The node concerned, if one was.
    public var node: NodeAddress?
    /// The libpq error behind it, if any.
    public var underlying: PGError?
    /// How many attempts were made.
    public var attempts: Int
    /// For `.topologyUnavailable`: the last cause per Patroni REST host ("host:port" → cause).
    public var restFailures: [String: String] = [:]
    /// A certificate problem behind this error (it does not heal by waiting), with the server.
    public var certificate: (server: String, problem: CertificateProblem, advice: String)?

    public init(_ code: Code, _ message: String, node: NodeAddress? = nil, underlying: PGError? = nil, attempts: Int = 1) {
        self.code = code
        self.message = message
        self.node = node
        self.underlying = underlying
        self.attempts = attempts
    }

    public var description: String {
        var text = "\(code): \(message)"
        if let node { text += " [\(node)]" }
        if let underlying { text += " (\(underlying))" }
        if !restFailures.isEmpty {
            text += "; " + restFailures.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; ")
        }
        return text
    }

    /// The SQLSTATE of the underlying server error, if any.
    public var sqlState: String? { underlying?.sqlState }
}
