/// An error from PGClient: connecting, querying, or reading a result.
///
/// `description` is safe to print and log: it holds the code, the (scrubbed) message, the SQLSTATE
/// and the server's address, never a password or a full connection string. `debugDescription`
/// adds the server's DETAIL and HINT (also scrubbed), which can quote data values.
///
/// docs/ERROR_HANDLING.md lists every code, when it happens and what a caller should do.
public struct PGError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// What went wrong, as an open set of named values (new codes can be added without breaking
    /// exhaustive switches, because there are none).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The server could not be reached or refused the session for a reason other than
        /// authentication (connection refused, DNS failure, "the database system is starting up",
        /// too many connections, TLS failure, database does not exist). Nothing was sent.
        public static let connectionFailed = Code("connectionFailed")
        /// The server rejected the credentials (wrong password, no password, no pg_hba.conf entry,
        /// unknown role; SQLSTATE 28P01 or 28000). Retrying with the same credentials will not help.
        public static let authenticationFailed = Code("authenticationFailed")
        /// The configuration is invalid: a malformed connection string or URI, an unknown libpq
        /// keyword, a bad sslmode, an unreadable certificate file. Fix the configuration.
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// A parameter value cannot be sent (for example text containing a NUL character).
        /// Nothing was sent.
        public static let invalidArgument = Code("invalidArgument")
        /// The server executed the statement and reported an error (`sqlState` says which:
        /// 23505 unique violation, 40001 serialization failure, 25006 read-only transaction...).
        /// The connection remains usable (check `transactionStatus`: inside a transaction block it
        /// is now `.inError` and needs a ROLLBACK).
        public static let queryFailed = Code("queryFailed")
        /// A deadline passed: the connect timeout, a query's `timeout` (the query was then cancelled
        /// on the server with PQcancel), or the server's `statement_timeout` (57014).
        public static let timeout = Code("timeout")
        /// The query was cancelled: the calling task was cancelled, or `cancel()` was called, or
        /// another session cancelled it (SQLSTATE 57014).
        public static let cancelled = Code("cancelled")
        /// The connection broke: the server closed it (killed, restarted, `pg_terminate_backend`,
        /// admin shutdown 57P01/57P02/57P03, idle timeouts) or the network failed. The connection
        /// is closed; open a new one.
        public static let connectionBroken = Code("connectionBroken")
        /// The connection was closed with `close()` before this call. Nothing was sent.
        public static let connectionClosed = Code("connectionClosed")
        /// The server or libpq answered with something PGClient does not handle (COPY data, an
        /// unexpected result status) or a value could not be converted to the requested type.
        public static let unexpectedResult = Code("unexpectedResult")
        /// The function exists only on a primary (for example `pg_current_wal_lsn()`), and this
        /// server is a standby in recovery (SQLSTATE 55000 "recovery is in progress").
        public static let notAvailableOnStandby = Code("notAvailableOnStandby")
    }

    /// What went wrong.
    public var code: Code
    /// The five-character SQLSTATE from PQresultErrorField(PG_DIAG_SQLSTATE), or, for connection
    /// failures (where libpq exposes no SQLSTATE), inferred from the server's message
    /// (28P01, 28000, 3D000, 53300, 57P03). nil for errors detected by the client.
    public var sqlState: String?
    /// The server's or libpq's message, with any password or connection-string credential scrubbed.
    public var message: String
    /// The server's DETAIL field (scrubbed); may quote data values.
    public var detail: String?
    /// The server's HINT field (scrubbed).
    public var hint: String?
    /// The server this happened on, as configured (may be a comma-separated host list).
    public var host: String?
    /// The server's port, as configured.
    public var port: Int?
    /// True when the statement may have reached the server and its outcome is unknown (sent, but
    /// no definite result received: timeouts, cancellations, broken connections). The caller must
    /// NOT blindly retry a write. False when the failure happened while connecting or before the
    /// statement was sent, and for definite server errors (`queryFailed`: the statement failed).
    public var statementMayHaveRun: Bool
    /// True when the connection is unusable afterwards (broken, closed, admin shutdown 57P01/57P02/
    /// 57P03, SQLSTATE class 08, or any connecting failure): discard it and open a new one.
    public var isConnectionLevel: Bool

    /// Creates an error. `isConnectionLevel` defaults to what `code` and `sqlState` imply.
    public init(
        code: Code,
        message: String,
        sqlState: String? = nil,
        detail: String? = nil,
        hint: String? = nil,
        host: String? = nil,
        port: Int? = nil,
        statementMayHaveRun: Bool = false,
        isConnectionLevel: Bool? = nil
    ) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.host = host
        self.port = port
        self.statementMayHaveRun = statementMayHaveRun
        self.isConnectionLevel = isConnectionLevel ?? PGError.impliesConnectionLevel(code: code, sqlState: sqlState)
    }

    /// "queryFailed: duplicate key value violates unique constraint "t_pkey" (SQLSTATE 23505) [db1:5432]"
    public var description: String {
        var text = "\(code): \(message)"
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        if let host {
            text += port.map { " [\(host):\($0)]" } ?? " [\(host)]"
        }
        return text
    }

    /// `description` plus DETAIL, HINT and the two flags.
    public var debugDescription: String {
        var text = "PGError(" + description
        if let detail { text += "; DETAIL: \(detail)" }
        if let hint { text += "; HINT: \(hint)" }
        text += "; statementMayHaveRun: \(statementMayHaveRun); isConnectionLevel: \(isConnectionLevel))"
        return text
    }

    /// True for SQLSTATE 40001 (serialization_failure) and 40P01 (deadlock_detected): the
    /// transaction was rolled back and may be retried as a whole.
    public var isSerializationFailure: Bool { sqlState == "40001" || sqlState == "40P01" }

    /// True for SQLSTATE 25006 (read_only_sql_transaction): a write reached a standby, or a
    /// read-only transaction; with HA this usually means "this server is no longer the primary".
    public var isReadOnlyTransaction: Bool { sqlState == "25006" }
}

extension PGError {
    /// Whether a code/SQLSTATE pair means the connection can no longer be used.
    static func impliesConnectionLevel(code: Code, sqlState: String?) -> Bool {
        if code == .connectionFailed || code == .authenticationFailed || code == .connectionBroken
            || code == .connectionClosed || code == .invalidConfiguration
        {
            return true
        }
        return isConnectionLevelSQLState(sqlState)
    }

    /// SQLSTATEs after which the server has ended (or will end) the session: class 08
    /// (connection exception), 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03
    /// cannot_connect_now, 57P05 idle_session_timeout, 25P03 idle_in_transaction_session_timeout.
    static func isConnectionLevelSQLState(_ sqlState: String?) -> Bool {
        guard let sqlState else { return false }
        if sqlState.hasPrefix("08") { return true }
        switch sqlState {
        case "57P01", "57P02", "57P03", "57P05", "25P03": return true
        default: return false
        }
    }

    /// The code for a server error result (PGRES_FATAL_ERROR) given its SQLSTATE and message.
    ///
    /// - `connectionAlive`: PQstatus(conn) == CONNECTION_OK after the error. When false the
    ///   connection is gone whatever the SQLSTATE says.
    static func classifyServerError(sqlState: String?, message: String, connectionAlive: Bool) -> Code {
        if !connectionAlive || isConnectionLevelSQLState(sqlState) { return .connectionBroken }
        switch sqlState {
        case "57014":
            return message.contains("statement timeout") ? .timeout : .cancelled
        case "55000" where message.contains("recovery is in progress"):
            return .notAvailableOnStandby
        case "28P01", "28000":
            return .authenticationFailed
        case nil:
            // Client-side errors (libpq generated, no SQLSTATE) on a live connection.
            return .unexpectedResult
        default:
            return .queryFailed
        }
    }

    /// Classifies a connection failure from PQerrorMessage (libpq exposes no SQLSTATE there).
    /// Returns the code and, where the message identifies it, the server's SQLSTATE.
    static func classifyConnectFailure(message: String) -> (code: Code, sqlState: String?) {
        let lower = message.lowercased()
        func has(_ fragment: String) -> Bool { lower.contains(fragment) }
        if has("password authentication failed") { return (.authenticationFailed, "28P01") }
        if has("no password supplied") || has("password is required") || has("fe_sendauth") {
            return (.authenticationFailed, nil)
        }
        if has("no pg_hba.conf entry") || has("pg_hba.conf rejects") {
            return (.authenticationFailed, "28000")
        }
        if has("role \"") && has("does not exist") { return (.authenticationFailed, "28000") }
        if has("authentication failed") || has("authentication method") && has("not supported") {
            return (.authenticationFailed, "28000")
        }
        if has("database \"") && has("does not exist") { return (.connectionFailed, "3D000") }
        if has("too many connections") || has("remaining connection slots are reserved") {
            return (.connectionFailed, "53300")
        }
        if has("the database system is starting up") || has("the database system is shutting down")
            || has("the database system is in recovery mode")
            || has("the database system is not yet accepting connections")
            || has("the database system is not accepting connections")
        {
            return (.connectionFailed, "57P03")
        }
        if has("invalid connection option") || has("invalid sslmode value")
            || has("invalid target_session_attrs value") || has("invalid port number")
            || has("invalid integer value") || has("could not match")
            || has("could not parse network address") || has("invalid ") && has(" value: ")
            || has("root certificate file") || has("could not open certificate file")
            || has("could not load private key file") || has("certificate present, but not private key")
            || has("private key file") && has("has group or world access")
        {
            return (.invalidConfiguration, nil)
        }
        return (.connectionFailed, nil)
    }
}
