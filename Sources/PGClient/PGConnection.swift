import BlockingIO
import CLibPQ
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The transaction state of a connection (PQtransactionStatus).
public enum PGTransactionStatus: Sendable, Hashable {
    /// Idle, not in a transaction block (PQTRANS_IDLE).
    case idle
    /// A command is in progress (PQTRANS_ACTIVE); also reported while another thread's query holds
    /// the connection.
    case active
    /// Idle inside a valid transaction block (PQTRANS_INTRANS).
    case inTransaction
    /// Idle inside a failed transaction block (PQTRANS_INERROR): only ROLLBACK is accepted.
    case inError
    /// The connection is bad or closed (PQTRANS_UNKNOWN).
    case unknown
}

/// One libpq connection.
///
/// The `PGconn` lives in a `~Copyable` owner inside a `Mutex`, so the class is `Sendable` by
/// construction: queries on one connection are serialised, and `close()` cannot free the handle
/// while a query uses it. `cancel()` uses a separate, thread-safe `PGcancel` handle (PQgetCancel)
/// and works while a query holds the connection.
///
/// Everything is non-blocking underneath: PQconnectStartParams/PQconnectPoll and
/// PQsendQuery(Params)/PQflush/PQconsumeInput/PQisBusy/PQgetResult driven by `poll()` with a
/// deadline. The synchronous methods run on the caller's thread (the fast path: no thread hop, no
/// allocation beyond the result). The `async` methods run the same code on
/// `BlockingIOPool.shared`, and cancelling the calling task cancels the query on the server.
/// Swift picks the `async` overload inside async code; to take the synchronous fast path from
/// there, call it from a synchronous function or closure (on a thread that may block).
///
/// **Timeouts and cancellation.** When a query's `timeout` passes or its task is cancelled, the
/// query is cancelled on the server (PQcancel) and its end is read, both within
/// `config.cancelGracePeriod` (default 1 s). If the server confirms in time, the error
/// (`.timeout` / `.cancelled`) is thrown and the connection stays usable (inside a transaction
/// block it is then `.inError` and needs a ROLLBACK). If not, the connection is closed and the
/// error has `isConnectionLevel = true`. If the statement finished anyway before the cancel hit, its
/// result is returned. Either way the cancel request has completed before the call returns, so it
/// can never hit a later statement on this connection.
///
/// **Broken connections.** When the server goes away (killed, restarted, `pg_terminate_backend`),
/// the next statement fails with `.connectionBroken` (`isConnectionLevel` true), the connection
/// is closed, `isHealthy` becomes false and later calls fail fast with the same code.
public final class PGConnection: Sendable {
    /// The configuration this connection was opened with (its description is redacted).
    public let config: PGConnectionConfig
    /// The server process serving this connection (PQbackendPID).
    public let backendPID: Int32
    /// The server version as an integer, e.g. 150018 for 15.18 (PQserverVersion).
    public let serverVersion: Int
    /// The host actually connected to (PQhost): with a multi-host list, the one chosen.
    public let serverHost: String
    /// The port actually connected to (PQport).
    public let serverPort: Int

    private let handle: Mutex<ConnectionHandle>
    private let canceller: CancelHandle
    private let healthy: Atomic<Bool>
    /// Token of the async query whose task was cancelled (0: none).
    private let cancelTarget: Atomic<UInt64>
    private let lastToken: Atomic<UInt64>
    /// The wake-up channel that interrupts an async query's poll() when its task is cancelled.
    private let wakeRead: Int32
    private let wakeWrite: Int32

    private init(
        config: PGConnectionConfig, conn: consuming sending ConnectionHandle, cancel: CancelHandle,
        info: ServerInfo, wake: (Int32, Int32)
    ) {
        self.config = config
        self.backendPID = info.pid
        self.serverVersion = info.version
        self.serverHost = info.host
        self.serverPort = info.port
        self.handle = Mutex(conn)
        self.canceller = cancel
        self.healthy = Atomic(true)
        self.cancelTarget = Atomic(0)
        self.lastToken = Atomic(0)
        self.wakeRead = wake.0
        self.wakeWrite = wake.1
    }

    deinit {
        pgha_wake_close(wakeRead, wakeWrite)
    }

    /// The libpq library version, e.g. 150018 (PQlibVersion).
    public static var libpqVersion: Int { Int(PQlibVersion()) }

    // MARK: - Connecting

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
                guard let milliseconds = deadline.remainingMilliseconds() else {
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

    /// PQerrorMessage without the trailing newline.
    private static func lastErrorMessage(_ conn: OpaquePointer) -> String {
        guard let text = PQerrorMessage(conn) else { return "unknown libpq error" }
        let message = String(cString: text).trimmingTrailingNewlines()
        return message.isEmpty ? "unknown libpq error" : message
    }

    // MARK: - Queries

    /// Runs `sql` on the caller's thread and returns its result: PQsendQuery (no parameters) or
    /// PQsendQueryParams (text parameters with type OIDs), then PQflush/poll/PQconsumeInput/
    /// PQisBusy/PQgetResult until libpq has no more results.
    ///
    /// Without parameters `sql` may hold several statements; the last result is returned, the first
    /// error thrown (`statementMayHaveRun` then describes the failing statement: earlier ones in
    /// the same string may have committed). `sql` must not contain a NUL character.
    ///
    /// With `timeout`, the query is cancelled on the server when it passes and `.timeout` is thrown
    /// (see the type's documentation). `COPY` is not supported.
    public func query(_ sql: String, _ params: [PGValue] = [], timeout: Duration? = nil) throws(PGError) -> PGResult {
        try execute(sql, params, timeout: timeout, token: 0)
    }

    /// Runs `sql` on `BlockingIOPool.shared`. Cancelling the calling task cancels the statement on
    /// the server (PQcancel) and throws `.cancelled`, unless it had already finished.
    public func query(
        _ sql: String, _ params: [PGValue] = [], timeout: Duration? = nil
    ) async throws(PGError) -> PGResult {
        let token = lastToken.add(1, ordering: .relaxed).newValue
        if Task.isCancelled { throw notSentBecauseCancelled() }
        let outcome: Result<PGResult, PGError> = await withTaskCancellationHandler {
            await BlockingIOPool.shared.run {
                Result { () throws(PGError) -> PGResult in
                    try self.execute(sql, params, timeout: timeout, token: token)
                }
            }
        } onCancel: {
            self.requestCancel(token)
        }
        return try outcome.get()
    }

    /// Asks the server to cancel whatever this connection is running (PQcancel with the handle
    /// from PQgetCancel). Callable from any thread, also while a query holds the connection; the
    /// running query then fails with `.cancelled`. Blocks until the server has received the request
    /// (a short TCP exchange). Returns false when the request could not be delivered.
    ///
    /// Like every libpq cancel, a request that arrives after the statement ended may hit the next
    /// statement on this connection; prefer query timeouts or task cancellation, which avoid that.
    @discardableResult
    public func cancel() -> Bool {
        canceller.send()
    }

    /// Closes the connection (PQfinish). Idempotent. Waits for a running query to finish first
    /// (call `cancel()` before to speed that up). Later queries fail with `.connectionClosed`.
    public func close() {
        healthy.store(false, ordering: .relaxed)
        handle.withLock { $0.close(.closedByCaller) }
    }

    /// True while the connection is open, PQstatus was CONNECTION_OK after the last operation, and
    /// no connection-level error has been seen. Does not touch the network (see `probe()`).
    public var isHealthy: Bool { healthy.load(ordering: .relaxed) }

    /// PQtransactionStatus. `.active` while a query runs, `.unknown` once closed or broken.
    public var transactionStatus: PGTransactionStatus {
        let status: PGTransactionStatus? = handle.withLockIfAvailable { connection in
            guard let conn = connection.conn else { return .unknown }
            let raw = PQtransactionStatus(conn)
            if raw == PQTRANS_IDLE { return .idle }
            if raw == PQTRANS_ACTIVE { return .active }
            if raw == PQTRANS_INTRANS { return .inTransaction }
            if raw == PQTRANS_INERROR { return .inError }
            return .unknown
        }
        return status ?? .active
    }

    /// A cheap local liveness check of an idle connection (no round trip): polls the socket without
    /// waiting and, if the server sent something (the FATAL of `pg_terminate_backend`, an admin
    /// shutdown, EOF), reads it (PQconsumeInput). Returns false, and closes the connection, when it
    /// turned out broken. Returns true while a query runs. Use it before reusing a pooled connection
    /// for a write, so that a server-side close is detected before anything is sent.
    public func probe() -> Bool {
        let alive: Bool? = handle.withLockIfAvailable { connection in
            guard let conn = connection.conn else { return false }
            let socket = PQsocket(conn)
            guard socket >= 0 else {
                connection.close(.broken("the connection has no socket"))
                return false
            }
            if pgha_wait(socket, Int16(POLLIN), -1, 0) > 0 {
                if PQconsumeInput(conn) == 0 || PQstatus(conn) != CONNECTION_OK {
                    let message = Redaction.scrub(PGConnection.lastErrorMessage(conn), secrets: config.secrets)
                    connection.close(.broken(message))
                    return false
                }
            }
            return true
        }
        guard let alive else { return true }
        if !alive { healthy.store(false, ordering: .relaxed) }
        return alive
    }

    // MARK: - The engine

    /// Runs one statement under the connection lock. `token` is non-zero for async queries: their
    /// poll() also watches the wake-up channel, and `requestCancel(token)` interrupts them.
    private func execute(_ sql: String, _ params: [PGValue], timeout: Duration?, token: UInt64) throws(PGError)
        -> PGResult
    {
        let (outcome, closed): (Outcome, Bool) = handle.withLock { connection in
            guard let conn = connection.conn else {
                return (.failure(closedError(connection.reason), close: false), false)
            }
            if token != 0 && cancelTarget.load(ordering: .acquiring) == token {
                return (.failure(notSentBecauseCancelled(), close: false), false)
            }
            let deadline = timeout.map { Deadline.after($0) } ?? .none
            let outcome = run(conn, sql, params, deadline: deadline, token: token)
            // Close a connection that is unusable now, also after a success (e.g. a FATAL that
            // arrived with the last result), so that `isHealthy` tells the truth at once.
            var reason: String?
            if case .failure(let error, let close) = outcome, close || error.isConnectionLevel {
                reason = error.message
            } else if PQstatus(conn) != CONNECTION_OK {
                reason = Redaction.scrub(PGConnection.lastErrorMessage(conn), secrets: config.secrets)
            }
            guard let reason else { return (outcome, false) }
            connection.close(.broken(reason))
            return (outcome, true)
        }
        if closed { healthy.store(false, ordering: .relaxed) }
        switch outcome {
        case .success(let result):
            return result
        case .failure(let error, _):
            throw error
        }
    }

    private enum Outcome: Sendable {
        case success(PGResult)
        /// `close`: the connection must be closed (broken, or a cancel was not confirmed).
        case failure(PGError, close: Bool)
    }

    private enum Interruption {
        case timeout, taskCancelled
    }

    /// Sends the statement and collects its results. Runs with the connection lock held.
    private func run(
        _ conn: OpaquePointer, _ sql: String, _ params: [PGValue], deadline: Deadline, token: UInt64
    ) -> Outcome {
        // 1. Send.
        let sent: Int32
        if params.isEmpty {
            sent = PQsendQuery(conn, sql)
        } else {
            switch PGConnection.sendWithParameters(conn, sql, params) {
            case .success(let value): sent = value
            case .failure(let error): return .failure(annotate(error), close: false)
            }
        }
        if sent == 0 {
            let broken = PQstatus(conn) != CONNECTION_OK
            return .failure(
                libpqError(conn, sql, code: broken ? .connectionBroken : .unexpectedResult, mayHaveRun: false),
                close: broken)
        }

        // 2. Flush and read until PQgetResult returns NULL, waiting with poll().
        var waiter = Waiter(
            socket: PQsocket(conn), wakeFD: token != 0 ? wakeRead : -1, deadline: deadline)
        var interruption: Interruption?
        var cancelDone: DispatchSemaphore?
        var kept: OpaquePointer?
        var failure: OpaquePointer?
        var unsupported: String?
        var connectionLost = false
        defer {
            if let kept { PQclear(kept) }
            if let failure { PQclear(failure) }
        }

        /// Waits for `events`; returns false when the wait is over for good (second deadline).
        func wait(_ events: Int16) -> Bool {
            while true {
                switch waiter.wait(events) {
                case .ready:
                    return true
                case .woken:
                    pgha_wake_drain(wakeRead)
                    if interruption == nil && cancelTarget.load(ordering: .acquiring) == token {
                        interrupt(.taskCancelled)
                    }
                case .deadlinePassed:
                    guard interruption == nil else { return false }
                    interrupt(.timeout)
                }
            }
        }
        func interrupt(_ reason: Interruption) {
            interruption = reason
            cancelDone = startCancelRequest()
            waiter.wakeFD = -1
            waiter.deadline = Deadline.after(config.cancelGracePeriod)
        }

        // When PQconsumeInput fails because the server closed the connection, libpq has marked it
        // CONNECTION_BAD and dropped the socket: PQisBusy is then false and PQgetResult returns the
        // error (with the server's last message, e.g. 57P01, if one arrived) without waiting.
        var flushed = false
        readLoop: while true {
            if !flushed {
                let rc = PQflush(conn)
                if rc == 0 {
                    flushed = true
                } else if rc < 0 {
                    guard PQstatus(conn) == CONNECTION_BAD else {
                        connectionLost = true
                        break readLoop
                    }
                    flushed = true
                } else {
                    guard wait(Int16(POLLIN | POLLOUT)) else { break readLoop }
                    if PQconsumeInput(conn) == 0 {
                        guard PQstatus(conn) == CONNECTION_BAD else {
                            connectionLost = true
                            break readLoop
                        }
                        flushed = true
                    } else {
                        continue readLoop
                    }
                }
            }
            while PQisBusy(conn) != 0 {
                guard wait(Int16(POLLIN)) else { break readLoop }
                if PQconsumeInput(conn) == 0 {
                    guard PQstatus(conn) == CONNECTION_BAD else {
                        connectionLost = true
                        break readLoop
                    }
                    break
                }
            }
            // Never blocks here (see above).
            guard let result = PQgetResult(conn) else {
                return finish(
                    conn, sql, kept: &kept, failure: &failure, unsupported: unsupported,
                    interruption: interruption, cancelDone: cancelDone, waiter: waiter)
            }
            let status = PQresultStatus(result)
            if status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK || status == PGRES_EMPTY_QUERY {
                if let kept { PQclear(kept) }
                kept = result
            } else if status == PGRES_FATAL_ERROR {
                if failure == nil { failure = result } else { PQclear(result) }
            } else if status == PGRES_COPY_IN {
                PQclear(result)
                unsupported = unsupported ?? "COPY FROM STDIN"
                // End the COPY with an error (the server then fails the statement with 57014).
                while true {
                    let rc = PQputCopyEnd(conn, "COPY FROM STDIN is not supported by pgha's PGClient")
                    if rc != 0 { break }  // 1: queued; -1: failed (PQgetResult reports it)
                    guard wait(Int16(POLLOUT)) else { break readLoop }
                }
                flushed = false
            } else if status == PGRES_COPY_OUT {
                PQclear(result)
                unsupported = unsupported ?? "COPY TO STDOUT"
                copyDrain: while true {
                    var buffer: UnsafeMutablePointer<CChar>?
                    let rc = PQgetCopyData(conn, &buffer, 1)
                    if let buffer { PQfreemem(buffer) }
                    if rc > 0 { continue }
                    if rc == 0 {
                        guard wait(Int16(POLLIN)) else { break readLoop }
                        if PQconsumeInput(conn) == 0 { break copyDrain }  // PQgetResult reports it
                        continue
                    }
                    break copyDrain  // -1: done, -2: error (reported by the next PQgetResult)
                }
            } else {
                // PGRES_COPY_BOTH (replication), PGRES_BAD_RESPONSE, PGRES_NONFATAL_ERROR, pipeline
                // states: nothing sensible can follow on this connection.
                let name = String(cString: PQresStatus(status))
                PQclear(result)
                return .failure(
                    PGError(
                        code: .unexpectedResult, message: "unexpected result status \(name)",
                        host: serverHost, port: serverPort, statementMayHaveRun: true, isConnectionLevel: true),
                    close: true)
            }
        }

        // Left the loop without reaching the end of the results.
        if connectionLost || PQstatus(conn) == CONNECTION_BAD {
            if let failure, PGConnection.field(failure, "C") != nil {
                // The server said why (e.g. 57P01 admin shutdown) before the connection ended.
                var error = serverError(failure, sql, connectionAlive: false)
                error.statementMayHaveRun = true
                return .failure(error, close: true)
            }
            return .failure(libpqError(conn, sql, code: .connectionBroken, mayHaveRun: true), close: true)
        }
        // The grace period after a cancel passed without the server confirming.
        return .failure(interruptionError(interruption ?? .timeout, confirmed: false, sqlState: nil), close: true)
    }

    /// The end of a statement's results was reached (PQgetResult returned NULL).
    private func finish(
        _ conn: OpaquePointer, _ sql: String, kept: inout OpaquePointer?, failure: inout OpaquePointer?,
        unsupported: String?, interruption: Interruption?, cancelDone: DispatchSemaphore?, waiter: Waiter
    ) -> Outcome {
        let alive = PQstatus(conn) == CONNECTION_OK
        if let interruption {
            // Make sure our cancel request is over before anyone can send another statement.
            let confirmed = cancelDone?.wait(timeout: waiter.deadline.dispatchTime) == .success
            let cancelledByServer = failure.map { PGConnection.field($0, "C") == "57014" } ?? false
            if !confirmed || !alive {
                var error = interruptionError(interruption, confirmed: false, sqlState: nil)
                if !alive, let failure { error = serverError(failure, sql, connectionAlive: false) }
                error.statementMayHaveRun = true
                return .failure(error, close: true)
            }
            if cancelledByServer || (failure == nil && kept == nil) {
                return .failure(interruptionError(interruption, confirmed: true, sqlState: "57014"), close: false)
            }
            // Otherwise the statement ended on its own (success or another error): report that.
        }
        if let unsupported, alive {
            // Checked before `failure`: refusing COPY FROM STDIN makes the server report 57014.
            return .failure(
                PGError(
                    code: .unexpectedResult, message: "\(unsupported) is not supported by PGClient",
                    host: serverHost, port: serverPort, statementMayHaveRun: true, isConnectionLevel: false),
                close: false)
        }
        if let failure {
            let error = serverError(failure, sql, connectionAlive: alive)
            return .failure(error, close: !alive)
        }
        guard let result = kept else {
            return .failure(
                PGError(
                    code: .unexpectedResult, message: "the server returned no result",
                    host: serverHost, port: serverPort, statementMayHaveRun: true, isConnectionLevel: !alive),
                close: !alive)
        }
        kept = nil
        return .success(PGResult(owning: result))
    }

    // MARK: - Cancellation

    /// Called from a cancelled task's cancellation handler (any thread): marks the query and wakes
    /// its poll(); the query's own thread then sends PQcancel and reads the end of the statement.
    private func requestCancel(_ token: UInt64) {
        cancelTarget.store(token, ordering: .releasing)
        pgha_wake_signal(wakeWrite)
    }

    /// Sends PQcancel from a pool thread so that an unreachable server cannot block the query's
    /// thread beyond the grace period; the semaphore is signalled when the request is over.
    private func startCancelRequest() -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        let canceller = self.canceller
        BlockingIOPool.shared.submit {
            _ = canceller.send()
            done.signal()
        }
        return done
    }

    // MARK: - Errors

    private func notSentBecauseCancelled() -> PGError {
        PGError(
            code: .cancelled, message: "the task was cancelled before the statement was sent",
            host: serverHost, port: serverPort, statementMayHaveRun: false, isConnectionLevel: false)
    }

    private func closedError(_ reason: ConnectionHandle.ClosedReason) -> PGError {
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

    private func interruptionError(_ interruption: Interruption, confirmed: Bool, sqlState: String?) -> PGError {
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
    private func serverError(_ result: OpaquePointer, _ sql: String, connectionAlive: Bool) -> PGError {
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
    private func libpqError(_ conn: OpaquePointer, _ sql: String, code: PGError.Code, mayHaveRun: Bool) -> PGError {
        PGError(
            code: code,
            message: Redaction.scrub(
                PGConnection.lastErrorMessage(conn), secrets: config.secrets,
                sqlMentionsPassword: Redaction.mentionsPassword(sql)),
            host: serverHost, port: serverPort,
            statementMayHaveRun: mayHaveRun,
            isConnectionLevel: code == .connectionBroken || PQstatus(conn) != CONNECTION_OK)
    }

    private func annotate(_ error: PGError) -> PGError {
        var error = error
        error.host = serverHost
        error.port = serverPort
        return error
    }

    /// PQresultErrorField for a PG_DIAG_* code given as its letter ("C" SQLSTATE, "M" message...).
    private static func field(_ result: OpaquePointer, _ code: Unicode.Scalar) -> String? {
        guard let text = PQresultErrorField(result, Int32(code.value)) else { return nil }
        return String(cString: text)
    }

    // MARK: - Parameters

    /// PQsendQueryParams with every value in text format and its type OID. The values are laid out
    /// in one temporary buffer (on the stack when small), NUL-terminated.
    private static func sendWithParameters(
        _ conn: OpaquePointer, _ sql: String, _ params: [PGValue]
    ) -> Result<Int32, PGError> {
        guard params.count <= 65535 else {
            return .failure(
                PGError(
                    code: .invalidArgument, message: "too many parameters (\(params.count), at most 65535)",
                    isConnectionLevel: false))
        }
        let texts = params.map(\.textRepresentation)
        var total = 0
        for (index, text) in texts.enumerated() {
            guard let text else { continue }
            if case .text = params[index], text.utf8.contains(0) {
                return .failure(
                    PGError(
                        code: .invalidArgument,
                        message: "parameter $\(index + 1) contains a NUL character, which PostgreSQL text cannot hold",
                        isConnectionLevel: false))
            }
            total += text.utf8.count + 1
        }
        let count = params.count
        return .success(
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(total, 1)) { bytes in
                withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: count) { values in
                    withUnsafeTemporaryAllocation(of: Oid.self, capacity: count) { types in
                        var offset = 0
                        for index in 0..<count {
                            types.initializeElement(at: index, to: params[index].typeOID)
                            guard let text = texts[index] else {
                                values.initializeElement(at: index, to: nil)
                                continue
                            }
                            let start = bytes.baseAddress! + offset
                            var written = 0
                            let copied: Void? = text.utf8.withContiguousStorageIfAvailable { utf8 in
                                UnsafeMutableRawPointer(start).copyMemory(
                                    from: utf8.baseAddress!, byteCount: utf8.count)
                                written = utf8.count
                            }
                            if copied == nil {
                                for byte in text.utf8 {
                                    start[written] = CChar(bitPattern: byte)
                                    written += 1
                                }
                            }
                            start[written] = 0
                            values.initializeElement(at: index, to: UnsafePointer(start))
                            offset += written + 1
                        }
                        return PQsendQueryParams(
                            conn, sql, Int32(count), types.baseAddress, values.baseAddress, nil, nil, 0)
                    }
                }
            })
    }
}

// MARK: - Helpers (SQL functions)

extension PGConnection {
    /// `SELECT pg_is_in_recovery()`: true on a standby.
    public func isInRecovery() throws(PGError) -> Bool {
        try Self.singleBool(query("SELECT pg_is_in_recovery()"), "pg_is_in_recovery()")
    }

    /// `SELECT pg_is_in_recovery()` on `BlockingIOPool.shared`.
    public func isInRecovery() async throws(PGError) -> Bool {
        try Self.singleBool(await query("SELECT pg_is_in_recovery()"), "pg_is_in_recovery()")
    }

    /// `SELECT pg_current_wal_lsn()`: the primary's current write position. On a standby this
    /// throws `.notAvailableOnStandby` (use `replayLSN()` / `receiveLSN()` there).
    public func currentWALLSN() throws(PGError) -> LSN {
        do {
            return try Self.requiredLSN(query("SELECT pg_current_wal_lsn()"), "pg_current_wal_lsn()")
        } catch {
            throw Self.explainStandby(error)
        }
    }

    /// `SELECT pg_current_wal_lsn()` on `BlockingIOPool.shared`.
    public func currentWALLSN() async throws(PGError) -> LSN {
        do {
            return try Self.requiredLSN(await query("SELECT pg_current_wal_lsn()"), "pg_current_wal_lsn()")
        } catch {
            throw Self.explainStandby(error)
        }
    }

    /// `SELECT pg_last_wal_replay_lsn()`: the last WAL position replayed by a standby; nil on a
    /// server that has not been in recovery since it started (a primary).
    public func replayLSN() throws(PGError) -> LSN? {
        try query("SELECT pg_last_wal_replay_lsn()").lsn(0, 0)
    }

    /// `SELECT pg_last_wal_replay_lsn()` on `BlockingIOPool.shared`.
    public func replayLSN() async throws(PGError) -> LSN? {
        try await query("SELECT pg_last_wal_replay_lsn()").lsn(0, 0)
    }

    /// `SELECT pg_last_wal_receive_lsn()`: the last WAL position a standby received and flushed;
    /// nil on a primary.
    public func receiveLSN() throws(PGError) -> LSN? {
        try query("SELECT pg_last_wal_receive_lsn()").lsn(0, 0)
    }

    private static func singleBool(_ result: PGResult, _ what: String) throws(PGError) -> Bool {
        guard result.rowCount == 1, result.columnCount == 1, let value = try result.bool(0, 0) else {
            throw PGError(code: .unexpectedResult, message: "\(what) returned no value", isConnectionLevel: false)
        }
        return value
    }

    private static func requiredLSN(_ result: PGResult, _ what: String) throws(PGError) -> LSN {
        guard result.rowCount == 1, result.columnCount == 1, let value = try result.lsn(0, 0) else {
            throw PGError(code: .unexpectedResult, message: "\(what) returned no value", isConnectionLevel: false)
        }
        return value
    }

    private static func explainStandby(_ error: PGError) -> PGError {
        guard error.code == .notAvailableOnStandby else { return error }
        var explained = error
        explained.message =
            "pg_current_wal_lsn() is not available on a standby (the server is in recovery): "
            + "ask the primary, or use replayLSN()/receiveLSN() here (server said: \(error.message))"
        return explained
    }
}

// MARK: - Owned C handles

/// Owns a PGconn; PQfinish when closed or dropped.
struct ConnectionHandle: ~Copyable {
    enum ClosedReason {
        case open
        case closedByCaller
        case broken(String)
    }

    private(set) var conn: OpaquePointer?
    private(set) var reason = ClosedReason.open

    init(_ conn: OpaquePointer) { self.conn = conn }

    /// PQfinish now (without recording a reason; used while connecting).
    mutating func finish() {
        if let conn { PQfinish(conn) }
        conn = nil
    }

    /// PQfinish and remember why. A second close keeps the first reason.
    mutating func close(_ why: ClosedReason) {
        guard let conn else { return }
        PQfinish(conn)
        self.conn = nil
        reason = why
    }

    deinit {
        if let conn { PQfinish(conn) }
    }
}

/// Owns a PGcancel (PQgetCancel); PQfreeCancel in deinit.
///
/// Why `@unchecked Sendable` is sound: the pointer is a `let`, and the only operation is PQcancel,
/// which libpq documents as safe from any thread: "The PGcancel object is read-only as far as
/// PQcancel is concerned, so it can also be invoked from a thread that is separate from the one
/// manipulating the PGconn object" (libpq manual, "Canceling Queries in Progress"). The error
/// buffer is a per-call temporary. PQfreeCancel runs only in deinit, when no reference is left.
final class CancelHandle: @unchecked Sendable {
    private let cancel: OpaquePointer

    init(_ cancel: OpaquePointer) { self.cancel = cancel }

    /// PQcancel: connects to the server and sends the cancel request; true when it was delivered.
    func send() -> Bool {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            PQcancel(cancel, buffer.baseAddress, 256) == 1
        }
    }

    deinit { PQfreeCancel(cancel) }
}

struct ServerInfo {
    var pid: Int32
    var version: Int
    var host: String
    var port: Int
}

// MARK: - Deadlines and waiting

/// A monotonic deadline in nanoseconds (clock_gettime(CLOCK_MONOTONIC)); `.none` never passes.
struct Deadline {
    var nanoseconds: UInt64  // 0: none

    static let none = Deadline(nanoseconds: 0)

    static func after(_ duration: Duration) -> Deadline {
        let span = UInt64(clamping: max(duration.nanoseconds, 0))
        return Deadline(nanoseconds: max(1, pgha_monotonic_ns() &+ span))
    }

    /// Milliseconds to wait in poll() (rounded up; -1 = forever), or nil when passed.
    @inline(__always)
    func remainingMilliseconds() -> Int32? {
        if nanoseconds == 0 { return -1 }
        let now = pgha_monotonic_ns()
        guard now < nanoseconds else { return nil }
        return Int32(clamping: (nanoseconds - now + 999_999) / 1_000_000)
    }

    var dispatchTime: DispatchTime {
        if nanoseconds == 0 { return .distantFuture }
        let now = pgha_monotonic_ns()
        return now >= nanoseconds ? .now() : .now() + .nanoseconds(Int(clamping: nanoseconds - now))
    }
}

/// poll() on the connection's socket (and the wake-up channel of an async query) until a deadline.
struct Waiter {
    enum Outcome { case ready, woken, deadlinePassed }

    let socket: Int32
    var wakeFD: Int32
    var deadline: Deadline

    @inline(__always)
    mutating func wait(_ events: Int16) -> Outcome {
        while true {
            guard let milliseconds = deadline.remainingMilliseconds() else { return .deadlinePassed }
            let rc = pgha_wait(socket, events, wakeFD, milliseconds)
            if rc > 0 { return rc & Int32(PGHA_WAIT_SOCKET) != 0 ? .ready : .woken }
            if rc == 0 { continue }  // poll's own timeout: recheck the deadline (ms rounding)
            if errno == EINTR { continue }
            return .ready  // unexpected poll() failure: let libpq find out what is wrong
        }
    }
}
