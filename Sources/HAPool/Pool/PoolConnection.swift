public import PGClient

/// A server connection as the pool needs it. `PGConnection` is the real one; the executor's unit
/// tests use fakes (Tests/HAPoolTesting), so routing, retries and the life cycle are tested
/// without a server.
public protocol PoolConnection: AnyObject, Sendable {
    /// False once the connection is known broken (it is then closed instead of reused).
    var isHealthy: Bool { get }
    /// True when no transaction is open (only such a connection goes back to the idle list).
    var isIdle: Bool { get }
    /// A local check (no round trip) that the server has not closed an idle connection.
    func probe() -> Bool
    func close()
    /// `SELECT pg_is_in_recovery()`: the leader check.
    func isInRecovery() async throws(PGError) -> Bool
}

/// Opens connections for the pool (postgres-nio's `ConnectionFactory`). The sync variant runs on
/// the caller's thread (the sync path), the async one off the cooperative pool.
public protocol PoolConnectionFactory<Connection>: Sendable {
    associatedtype Connection: PoolConnection
    func connect(_ config: PGConnectionConfig) throws(PGError) -> Connection
    func connect(_ config: PGConnectionConfig) async throws(PGError) -> Connection
}

extension PGConnection: PoolConnection {
    public var isIdle: Bool { transactionStatus == .idle }
}

/// The real factory: libpq through PGClient.
public struct LibPQConnectionFactory: PoolConnectionFactory {
    public init() {}

    public func connect(_ config: PGConnectionConfig) throws(PGError) -> PGConnection {
        try PGConnection.connect(config)
    }

    public func connect(_ config: PGConnectionConfig) async throws(PGError) -> PGConnection {
        try await PGConnection.connect(config)
    }
}
