import CLibPQ

// The owners of libpq's C handles. Each handle has exactly one owner, which frees it.

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

/// What PQbackendPID, PQserverVersion, PQhost and PQport said once connected.
struct ServerInfo {
    var pid: Int32
    var version: Int
    var host: String
    var port: Int
}
