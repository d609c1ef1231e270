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
/// deadline. A statement's lifecycle is decided by `QueryStateMachine` (a pure value) and carried
/// out by `StatementRun`. Besides `query`, results can be streamed without holding them in memory:
/// `forEachRow` (single-row mode), `copyOut` and `copyIn` (PGConnection+Streaming.swift). The
/// synchronous methods run on the caller's thread (the fast path: no thread hop, no
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

    let handle: Mutex<ConnectionHandle>
    /// The right to use the connection, held for a whole statement (and by `close`). A semaphore,
    /// not the mutex, because the async fast path takes it on a cooperative thread and the pool
    /// thread it hands a running statement to gives it back. `handle`'s mutex is taken inside it
    /// for each part of the statement.
    let lease = DispatchSemaphore(value: 1)
    let canceller: CancelHandle
    let healthy: Atomic<Bool>
    /// Token of the async statement whose task was cancelled (0: none).
    let cancelTarget: Atomic<UInt64>
    let lastToken: Atomic<UInt64>
    /// The wake-up channel that interrupts an async statement's poll() when its task is cancelled.
    let wakeRead: Int32
    let wakeWrite: Int32

    init(
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

    // MARK: - State

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
        lease.wait()
        defer { lease.signal() }
        handle.withLock { $0.close(.closedByCaller) }
    }

    /// True while the connection is open, PQstatus was CONNECTION_OK after the last operation, and
    /// no connection-level error has been seen. Does not touch the network (see `probe()`).
    public var isHealthy: Bool { healthy.load(ordering: .relaxed) }

    /// PQtransactionStatus. `.active` while a query runs, `.unknown` once closed or broken.
    public var transactionStatus: PGTransactionStatus {
        guard lease.wait(timeout: .now()) == .success else { return .active }
        defer { lease.signal() }
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
        guard lease.wait(timeout: .now()) == .success else { return true }
        defer { lease.signal() }
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
}
