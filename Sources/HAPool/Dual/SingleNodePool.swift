public import PGClient

/// A plain pool to one server (single-node mode). Connection failures before a statement is sent
/// are retried with the seed's backoff; a statement whose outcome is unknown is never re-run.
public final class SingleNodePool: Sendable {
    public let config: SingleNodeConfig
    let pool: NodePool<LibPQConnectionFactory>
    let retry: RetryPolicy
    let counters = StatisticsCounters()

    public init(config: SingleNodeConfig, retry: RetryPolicy = RetryPolicy()) {
        self.config = config
        self.retry = retry
        var template = PGConnectionConfig(host: config.host, port: config.port, database: config.database, user: config.user, password: config.password)
        config.tls.apply(to: &template)
        template.connectTimeout = config.connectTimeout
        template.applicationName = config.applicationName
        self.pool = NodePool(node: NodeAddress(host: config.host, port: config.port), template: template, minConnections: config.minConnections, maxConnections: config.maxConnections, factory: LibPQConnectionFactory(), clock: SystemPoolClock())
    }

    public var node: NodeAddress { pool.node }

    /// Opens `minConnections` and checks the server answers.
    public func start() async throws(HAError) {
        let conn = try await acquire()
        pool.checkin(conn)
        await pool.warmUp()
    }

    public func close() { pool.close() }

    func acquire() async throws(HAError) -> PGConnection {
        var attempt = 0
        while true {
            do {
                return try await pool.checkout(timeout: .seconds(30))
            } catch {
                attempt += 1
                let auth = error.underlying?.code == .authenticationFailed
                guard !auth, error.code == .connectionFailed, attempt <= retry.maxRetries else {
                    counters.errors.increment()
                    throw error
                }
                counters.retries.increment()
                do { try await Task.sleep(for: retry.delay(beforeRetry: attempt, random: .random(in: 0..<1))) } catch {
                    throw HAError(.cancelled, "cancelled while waiting to retry")
                }
            }
        }
    }

    public func query(_ sql: String, _ params: [PGValue] = [], readOnly: Bool = false, idempotent: Bool = false) async throws(HAError) -> PGResult {
        var attempt = 0
        while true {
            attempt += 1
            let conn = try await acquire()
            do {
                let result = try await conn.query(sql, params)
                pool.checkin(conn)
                counters.countStatement(readOnly: readOnly)
                return result
            } catch {
                pool.checkin(conn)
                let (decision, _) = FailureClassifier.classify(error, rerunIsSafe: idempotent)
                counters.errors.increment()
                switch decision {
                case .retry where attempt <= retry.maxRetries:
                    counters.retries.increment()
                    continue
                case .retry, .fail:
                    throw HAError(error.isConnectionLevel ? .connectionFailed : .queryFailed, "statement failed", node: node, underlying: error, attempts: attempt)
                case .outcomeUnknown:
                    counters.outcomeUnknown.increment()
                    throw HAError(.outcomeUnknown, "the connection failed after the statement was sent; it may or may not have been applied", node: node, underlying: error, attempts: attempt)
                }
            }
        }
    }

    public func withConnection<T: Sendable>(_ body: (PGConnection) async throws -> T) async throws -> T {
        let conn = try await acquire()
        defer { pool.checkin(conn) }
        return try await body(conn)
    }

    public func statistics() -> PoolStatistics { counters.snapshot }
    public var usage: NodePoolUsage { pool.usage }
}
