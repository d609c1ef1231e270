import BlockingIO
import CLibPQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opening a connection: PQconnectStartParams, then PQconnectPoll driven by poll() until the
/// connect deadline.
extension PGConnection {
    /// Opens a connection on the caller's thread: PQconnectStartParams, then PQconnectPoll driven by
    /// `poll()` until `config.connectTimeout` (for the whole attempt, every host of a list).
    ///
    /// Throws `.connectionFailed` (refused, unreachable, server starting up, too many connections,
    /// TLS...), `.authenticationFailed` (28P01/28000), `.invalidConfiguration`, or `.timeout`.
    /// None of them ran a statement (`statementMayHaveRun` false) and all are connection-level.
    ///
    /// Host names are resolved by libpq inside PQconnectPoll with a blocking getaddrinfo(), which
    /// the deadline cannot interrupt; use IP addresses where that matters.
    public static func connect(_ config: PGConnectionConfig) throws(PGError) -> PGConnection {
        let deadline = Deadline.after(config.connectTimeout)
        let conn = try startConnecting(config)
        var connection = ConnectionHandle(conn)
        try pollUntilConnected(conn, config: config, deadline: deadline)

        guard PQsetnonblocking(conn, 1) == 0 else {
            let message = lastErrorMessage(conn)
            connection.finish()
            throw PGError(
                code: .connectionFailed, message: "PQsetnonblocking failed: " + message,
                host: config.host, port: config.port)
        }
        guard let cancel = PQgetCancel(conn) else {
            connection.finish()
            throw PGError(
                code: .connectionFailed, message: "PQgetCancel failed (out of memory?)",
                host: config.host, port: config.port)
        }
        var fds: [Int32] = [-1, -1]
        guard pgha_wake_create(&fds) == 0 else {
            let reason = String(cString: strerror(errno))
            PQfreeCancel(cancel)
            connection.finish()
            throw PGError(
                code: .connectionFailed, message: "could not create a wake-up descriptor: " + reason,
                host: config.host, port: config.port)
        }
        let info = ServerInfo(
            pid: PQbackendPID(conn),
            version: Int(PQserverVersion(conn)),
            host: PQhost(conn).map { String(cString: $0) } ?? config.host,
            port: PQport(conn).flatMap { Int(String(cString: $0)) } ?? config.port)
        return PGConnection(
            config: config, conn: consume connection, cancel: CancelHandle(cancel), info: info, wake: (fds[0], fds[1]))
    }

    /// Opens a connection on `BlockingIOPool.shared` (same behaviour as the synchronous variant).
    /// A task cancelled before the attempt starts gets `.cancelled`; once started, the attempt is
    /// bounded by `config.connectTimeout`.
    public static func connect(_ config: PGConnectionConfig) async throws(PGError) -> PGConnection {
        if Task.isCancelled {
            throw PGError(
                code: .cancelled, message: "the task was cancelled before connecting",
                host: config.host, port: config.port, isConnectionLevel: true)
        }
        let outcome: Result<PGConnection, PGError> = await BlockingIOPool.shared.run {
            Result { () throws(PGError) -> PGConnection in try PGConnection.connect(config) }
        }
        return try outcome.get()
    }

    /// PQconnectStartParams with the config's keyword/value arrays (dbname not expanded).
    private static func startConnecting(_ config: PGConnectionConfig) throws(PGError) -> sending OpaquePointer {
        let parameters = config.libpqParameters()
        let keywords = parameters.map { strdup($0.0) }
        defer { keywords.forEach { free($0) } }
        let values = parameters.map { strdup($0.1) }
        defer { values.forEach { free($0) } }
        let keywordArray: [UnsafePointer<CChar>?] = keywords.map { $0.map { UnsafePointer($0) } } + [nil]
        let valueArray: [UnsafePointer<CChar>?] = values.map { $0.map { UnsafePointer($0) } } + [nil]
        guard let conn = PQconnectStartParams(keywordArray, valueArray, 0) else {
            throw PGError(
                code: .connectionFailed, message: "PQconnectStartParams failed (out of memory)",
                host: config.host, port: config.port)
        }
        pgha_silence_notices(conn)
        if PQstatus(conn) == CONNECTION_BAD {
            let error = connectError(conn, config: config)
            PQfinish(conn)
            throw error
        }
        return conn
    }

    /// Drives PQconnectPoll until CONNECTION_OK, failure or the deadline. The caller owns `conn`.
    private static func pollUntilConnected(
        _ conn: OpaquePointer, config: PGConnectionConfig, deadline: Deadline
    ) throws(PGError) {
        var status = PGRES_POLLING_WRITING  // libpq: behave as if the last poll asked for writing
        while true {
            if status == PGRES_POLLING_OK { return }
            if status == PGRES_POLLING_FAILED { throw connectError(conn, config: config) }
            let events = Int16(status == PGRES_POLLING_READING ? POLLIN : POLLOUT)
            var ready = false
            while !ready {
                guard let milliseconds = deadline.remainingMilliseconds(now: monotonicNow()) else {
                    throw PGError(
                        code: .timeout,
                        message: "could not connect within \(config.connectTimeout) (connect timeout)",
                        host: config.host, port: config.port, isConnectionLevel: true)
                }
                let rc = pgha_wait(PQsocket(conn), events, -1, milliseconds)
                if rc > 0 {
                    ready = true
                } else if rc < 0 && errno != EINTR {
                    let reason = String(cString: strerror(errno))
                    throw PGError(
                        code: .connectionFailed, message: "poll() failed while connecting: " + reason,
                        host: config.host, port: config.port)
                }
            }
            status = PQconnectPoll(conn)
        }
    }

    private static func connectError(_ conn: OpaquePointer, config: PGConnectionConfig) -> PGError {
        let message = Redaction.scrub(lastErrorMessage(conn), secrets: config.secrets)
        let (code, sqlState) = PGError.classifyConnectFailure(message: message)
        return PGError(code: code, message: message, sqlState: sqlState, host: config.host, port: config.port)
    }
}
