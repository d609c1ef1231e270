import PGClient
import Synchronization

/// Connections a long stage keeps open between looks, by key (`source`, `host:port/db`), each
/// opened through `StageConnections` (credentials resolved, errors redacted) and opened again when
/// it broke. The sync inspector, each shadow replay worker and the cutover use one each.
final class ConnectionCache: Sendable {
    let connections: StageConnections
    let applicationName: String
    /// A statement every new connection runs first (the cutover's sessions lift the read-only
    /// default for themselves).
    let onOpen: String?
    private let open = Mutex<[String: PGConnection]>([:])

    init(connections: StageConnections, applicationName: String, onOpen: String? = nil) {
        self.connections = connections
        self.applicationName = applicationName
        self.onOpen = onOpen
    }

    deinit { close() }

    /// Closes every connection (the cache stays usable: the next request opens a new one).
    func close() {
        let all = open.withLock { o -> [PGConnection] in
            defer { o = [:] }
            return Array(o.values)
        }
        for connection in all { connection.close() }
    }

    /// The open connection for `key` if it is healthy, else a new one for `login`; nil and the
    /// redacted reason when the login fails.
    func connection(key: String, login: StageConnections.Login) async -> Result<PGConnection, LoginFailure> {
        if let existing = open.withLock({ $0[key] }), existing.isHealthy { return .success(existing) }
        let (connection, observation) = await connections.connect(login, applicationName: applicationName)
        guard let connection else {
            return .failure(LoginFailure(message: "cannot log in to \(login.host):\(login.port) as \(login.user): \(observation.error ?? "?")"))
        }
        if let onOpen {
            do {
                _ = try await connection.query(onOpen, timeout: connections.connectTimeout * 4)
            } catch {
                connection.close()
                return .failure(LoginFailure(message: "\(login.host):\(login.port): `\(onOpen)` failed: \(connections.describe(error.description))"))
            }
        }
        let previous = open.withLock { o -> PGConnection? in
            defer { o[key] = connection }
            return o[key]
        }
        previous?.close()
        return .success(connection)
    }

    /// Closes and drops the connection for `key` (after an error on it).
    func forget(_ key: String) {
        open.withLock { $0.removeValue(forKey: key) }?.close()
    }

    struct LoginFailure: Error {
        let message: String
    }
}
