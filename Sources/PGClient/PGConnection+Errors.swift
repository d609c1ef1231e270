import CLibPQ

/// From what libpq and the server said to a `PGError`: every message scrubbed of secrets, the
/// SQLSTATE classified (PGError.classifyServerError), `statementMayHaveRun` and `isConnectionLevel`
/// set as docs/ERROR_HANDLING.md describes.
extension PGConnection {
    /// The error for a statement that ended without success (every outcome but `succeeded`,
    /// `stopped` and `bodyFailed`, which the callers handle).
    func error(for outcome: QueryStateMachine.Completion.Outcome, _ run: borrowing StatementRun) -> PGError {
        switch outcome {
        case .serverError(let alive, let forceMayHaveRun):
            guard let failure = run.failure else { return internalError("a server error without its result") }
            var error = serverError(failure, run.sql, connectionAlive: alive)
            if forceMayHaveRun { error.statementMayHaveRun = true }
            return error
        case .interrupted(let why, let confirmed):
            return interruptionError(why, confirmed: confirmed, sqlState: confirmed ? "57014" : nil)
        case .connectionBroken(let mayHaveRun):
            return libpqError(run.conn, run.sql, code: .connectionBroken, mayHaveRun: mayHaveRun)
        case .sendRejected:
            return libpqError(run.conn, run.sql, code: .unexpectedResult, mayHaveRun: false)
        case .unexpectedStatus(let kind):
            return PGError(
                code: .unexpectedResult, message: "unexpected result status \(Self.statusName(kind))",
                host: serverHost, port: serverPort, statementMayHaveRun: true, isConnectionLevel: true)
        case .refused(let refusal):
            let message: String
            switch refusal {
            case .copyIn:
                message = "COPY FROM STDIN is not supported by this call (use copyIn)"
            case .copyOut:
                message = "COPY TO STDOUT is not supported by this call (use copyOut)"
            case .notCopy:
                switch run.machine.mode {
                case .copyIn: message = "copyIn needs a COPY ... FROM STDIN statement"
                case .copyOut, .collect, .rows: message = "copyOut needs a COPY ... TO STDOUT statement"
                }
            }
            return PGError(
                code: .unexpectedResult, message: message, host: serverHost, port: serverPort,
                statementMayHaveRun: true, isConnectionLevel: false)
        case .noResult:
            let alive = PQstatus(run.conn) == CONNECTION_OK
            return PGError(
                code: .unexpectedResult, message: "the server returned no result",
                host: serverHost, port: serverPort, statementMayHaveRun: true, isConnectionLevel: !alive)
        case .succeeded, .stopped, .bodyFailed:
            return internalError("no error to report for \(outcome)")
        }
    }

    /// The machine met an event that does not fit: libpq's state is unknown, so the connection is
    /// closed and the statement's outcome is unknown.
    func internalError(_ what: String) -> PGError {
        PGError(
            code: .unexpectedResult, message: "internal error in PGClient's statement engine: \(what)",
            host: serverHost, port: serverPort, statementMayHaveRun: true, isConnectionLevel: true)
    }

    /// What a COPY IN write throws when it gives up (the call's own error follows when the body
    /// returns).
    func writeError(_ outcome: QueryStateMachine.WriteOutcome, _ run: borrowing StatementRun) -> PGError {
        switch outcome {
        case .interrupted(let why):
            var error = interruptionError(why, confirmed: true, sqlState: nil)
            error.message = "the COPY was interrupted (\(why == .timeout ? "timeout" : "task cancelled")); stop writing"
            return error
        case .failed, .written:
            var error = libpqError(
                run.conn, run.sql, code: PQstatus(run.conn) == CONNECTION_OK ? .unexpectedResult : .connectionBroken,
                mayHaveRun: true)
            error.message = "the COPY data could not be sent: " + error.message
            return error
        }
    }

    func notSentBecauseCancelled() -> PGError {
        PGError(
            code: .cancelled, message: "the task was cancelled before the statement was sent",
            host: serverHost, port: serverPort, statementMayHaveRun: false, isConnectionLevel: false)
    }

    func closedError(_ reason: ConnectionHandle.ClosedReason) -> PGError {
        switch reason {
        case .open, .closedByCaller:
            return PGError(
                code: .connectionClosed, message: "the connection was closed with close(); open a new one",
                host: serverHost, port: serverPort, statementMayHaveRun: false, isConnectionLevel: true)
        case .broken(let why):
            return PGError(
                code: .connectionBroken, message: "the connection is broken (\(why)); open a new one",
                host: serverHost, port: serverPort, statementMayHaveRun: false, isConnectionLevel: true)
        }
    }

    func interruptionError(_ interruption: QueryStateMachine.Interruption, confirmed: Bool, sqlState: String?)
        -> PGError
    {
        var message: String
        let code: PGError.Code
        switch interruption {
        case .timeout:
            code = .timeout
            message = "the statement did not finish within its timeout and was cancelled"
        case .taskCancelled:
            code = .cancelled
            message = "the task was cancelled; the statement was cancelled on the server"
        }
        if !confirmed {
            message += ", but the server did not confirm within \(config.cancelGracePeriod); the connection was closed"
        }
        return PGError(
            code: code, message: message, sqlState: sqlState, host: serverHost, port: serverPort,
            statementMayHaveRun: true, isConnectionLevel: !confirmed)
    }

    /// An error from a PGRES_FATAL_ERROR result (PQresultErrorField).
    func serverError(_ result: OpaquePointer, _ sql: String, connectionAlive: Bool) -> PGError {
        let sqlState = PGConnection.field(result, "C")
        var message = PGConnection.field(result, "M")
        if message == nil, let text = PQresultErrorMessage(result) {
            message = String(cString: text).trimmingTrailingNewlines()
        }
        let raw = message ?? "unknown server error"
        let code = PGError.classifyServerError(sqlState: sqlState, message: raw, connectionAlive: connectionAlive)
        let mentions = Redaction.mentionsPassword(sql)
        let secrets = config.secrets
        let mayHaveRun: Bool
        if code == .queryFailed || code == .notAvailableOnStandby || code == .authenticationFailed {
            mayHaveRun = false
        } else {
            mayHaveRun = true
        }
        return PGError(
            code: code,
            message: Redaction.scrub(raw, secrets: secrets, sqlMentionsPassword: mentions),
            sqlState: sqlState,
            detail: Redaction.scrubOptional(
                PGConnection.field(result, "D"), secrets: secrets, sqlMentionsPassword: mentions),
            hint: Redaction.scrubOptional(
                PGConnection.field(result, "H"), secrets: secrets, sqlMentionsPassword: mentions),
            host: serverHost, port: serverPort,
            statementMayHaveRun: mayHaveRun,
            isConnectionLevel: !connectionAlive || PGError.isConnectionLevelSQLState(sqlState))
    }

    /// An error from PQerrorMessage (client side, no SQLSTATE).
    func libpqError(_ conn: OpaquePointer, _ sql: String, code: PGError.Code, mayHaveRun: Bool) -> PGError {
        PGError(
            code: code,
            message: Redaction.scrub(
                PGConnection.lastErrorMessage(conn), secrets: config.secrets,
                sqlMentionsPassword: Redaction.mentionsPassword(sql)),
            host: serverHost, port: serverPort,
            statementMayHaveRun: mayHaveRun,
            isConnectionLevel: code == .connectionBroken || PQstatus(conn) != CONNECTION_OK)
    }

    /// `error` with this connection's server address.
    func annotate(_ error: PGError) -> PGError {
        var error = error
        error.host = serverHost
        error.port = serverPort
        return error
    }

    /// PQresultErrorField for a PG_DIAG_* code given as its letter ("C" SQLSTATE, "M" message...).
    static func field(_ result: OpaquePointer, _ code: Unicode.Scalar) -> String? {
        guard let text = PQresultErrorField(result, Int32(code.value)) else { return nil }
        return String(cString: text)
    }

    /// PQerrorMessage without the trailing newline.
    static func lastErrorMessage(_ conn: OpaquePointer) -> String {
        guard let text = PQerrorMessage(conn) else { return "unknown libpq error" }
        let message = String(cString: text).trimmingTrailingNewlines()
        return message.isEmpty ? "unknown libpq error" : message
    }

    /// PQresStatus of a result kind the machine refused.
    private static func statusName(_ kind: QueryStateMachine.ResultKind) -> String {
        let status: ExecStatusType
        switch kind {
        case .tuples: status = PGRES_TUPLES_OK
        case .command: status = PGRES_COMMAND_OK
        case .emptyQuery: status = PGRES_EMPTY_QUERY
        case .singleRow: status = PGRES_SINGLE_TUPLE
        case .error: status = PGRES_FATAL_ERROR
        case .copyIn: status = PGRES_COPY_IN
        case .copyOut: status = PGRES_COPY_OUT
        case .other(let raw): status = ExecStatusType(rawValue: raw)
        }
        return String(cString: PQresStatus(status))
    }
}
