public import Logging
public import PGClient

/// One of the two databases of `DualDatabasePools`, in whichever mode the pools run.
public struct DatabaseHandle: Sendable {
    enum Backend: Sendable {
        case single(SingleNodePool)
        case patroni(PatroniHAPool, database: String)
    }

    let backend: Backend
    /// `project` or `shared`.
    public let role: String
    /// Shadow mode: read-only statements are also sent to the other mode and compared (ShadowReads.swift).
    var shadow: ShadowReads?

    /// The database name.
    public var database: String {
        switch backend {
        case .single(let pool): return pool.config.database
        case .patroni(_, let database): return database
        }
    }

    /// One statement; `readOnly` may go to a replica in Patroni mode (the seed's `read_only=True`).
    public func query(_ sql: String, _ params: [PGValue] = [], readOnly: Bool = false, idempotent: Bool = false) async throws(HAError) -> PGResult {
        guard readOnly, let shadow else { return try await run(sql, params, readOnly: readOnly, idempotent: idempotent) }
        let started = ContinuousClock.now
        do {
            let result = try await run(sql, params, readOnly: readOnly, idempotent: idempotent)
            shadow.offer(sql, params, .success(result), latency: ContinuousClock.now - started)
            return result
        } catch {
            shadow.offer(sql, params, .failure(error), latency: ContinuousClock.now - started)
            throw error
        }
    }

    private func run(_ sql: String, _ params: [PGValue], readOnly: Bool, idempotent: Bool) async throws(HAError) -> PGResult {
        switch backend {
        case .single(let pool): return try await pool.query(sql, params, readOnly: readOnly, idempotent: idempotent)
        case .patroni(let pool, let database): return try await pool.query(sql, params, readOnly: readOnly, idempotent: idempotent, database: database)
        }
    }

    /// The seed's `project_cursor(read_only=)` / `shared_cursor(read_only=)`: a connection for `body`.
    public func withConnection<T: Sendable>(readOnly: Bool = false, _ body: (PGConnection) async throws -> T) async throws -> T {
        switch backend {
        case .single(let pool): return try await pool.withConnection(body)
        case .patroni(let pool, let database): return try await pool.withConnection(readOnly: readOnly, database: database, body)
        }
    }

    /// BEGIN … COMMIT with the HA pool's re-run rules (single-node mode: run once, no re-run).
    public func transaction<T: Sendable>(idempotent: Bool = false, _ body: @Sendable (PGConnection) async throws -> T) async throws -> T {
        switch backend {
        case .single(let pool):
            return try await pool.withConnection { conn in
                _ = try await conn.query("BEGIN")
                do {
                    let value = try await body(conn)
                    _ = try await conn.query("COMMIT")
                    return value
                } catch {
                    if conn.isHealthy { _ = try? await conn.query("ROLLBACK") }
                    throw error
                }
            }
        case .patroni(let pool, let database):
            return try await pool.transaction(idempotent: idempotent, database: database, body)
        }
    }
}

/// The seed's `DualDatabasePools`: a `project` and a `shared` database, in single-node mode
/// (plain pools to one server, the default) or Patroni mode (`ENABLE_PATRONI=true`: one
/// `PatroniHAPool` serving both databases through one topology tracker).
public final class DualDatabasePools: Sendable {
    public let mode: DatabaseMode
    public let project: DatabaseHandle
    /// nil when no shared database is configured.
    public let shared: DatabaseHandle?
    /// The HA pool in Patroni mode.
    public let patroniPool: PatroniHAPool?
    let singlePools: [SingleNodePool]
    /// Shadow mode: the other mode's pools, which the shadowed reads also go to.
    public let shadowPools: DualDatabasePools?
    let shadows: [ShadowReads]
    let logger: Logger

    /// - Parameter shadow: shadow mode (Scientist-style): read-only statements are also sent,
    ///   sampled and in the background, to the other mode (`config` must describe both), and the
    ///   answers compared; the application's results, errors and latency stay its own.
    public init(config: DualPoolsConfig, shadow: ShadowReadConfiguration? = nil, logger: Logger = Logger(label: "pgha.pools")) throws(ConfigurationError) {
        self.logger = logger
        var project: DatabaseHandle
        var shared: DatabaseHandle?
        mode = config.mode
        switch config.mode {
        case .patroni:
            guard let patroni = config.patroni else {
                throw ConfigurationError(.missing, key: "PATRONI_HOSTS", "Patroni mode needs the PATRONI_* variables")
            }
            let extra = config.patroniSharedDatabase.map { [$0] } ?? []
            let pool = try PatroniHAPool(config: patroni, additionalDatabases: extra, logger: logger)
            patroniPool = pool
            singlePools = []
            project = DatabaseHandle(backend: .patroni(pool, database: patroni.database), role: "project")
            shared = config.patroniSharedDatabase.map { DatabaseHandle(backend: .patroni(pool, database: $0), role: "shared") }
        case .singleNode:
            guard let projectConfig = config.project else {
                throw ConfigurationError(.missing, key: "PROJECT_DB_NAME", "single-node mode needs the PROJECT_DB_* variables")
            }
            let projectPool = SingleNodePool(config: projectConfig)
            let sharedPool = config.shared.map { SingleNodePool(config: $0) }
            patroniPool = nil
            singlePools = [projectPool] + (sharedPool.map { [$0] } ?? [])
            project = DatabaseHandle(backend: .single(projectPool), role: "project")
            shared = sharedPool.map { DatabaseHandle(backend: .single($0), role: "shared") }
        }
        (shadowPools, shadows) = try Self.attachShadow(shadow, config: config, project: &project, shared: &shared, logger: logger)
        self.project = project
        self.shared = shared
    }

    /// What a one-shot command (`pgha health`, `verify`, a migration gate) waits for a leader at
    /// most: long enough for a few REST answers and a leader check, short enough to report a broken
    /// API within seconds. An application's pool waits up to `failoverTimeout`.
    public static let oneShotStartTimeout: Duration = .seconds(3)

    /// Connects: in Patroni mode discovers the leader (waiting up to `timeout`, default
    /// `failoverTimeout`); in single-node mode opens each pool.
    public func start(timeout: Duration? = nil) async throws(HAError) {
        if let patroniPool { try await patroniPool.start(timeout: timeout) }
        for pool in singlePools { try await pool.start() }
        await startShadow()
    }

    public func close() async {
        await closeShadow()
        await patroniPool?.close()
        for pool in singlePools { pool.close() }
    }
}
