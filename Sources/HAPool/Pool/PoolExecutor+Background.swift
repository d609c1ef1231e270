import CoreMetrics
import Logging
import Patroni
import PGClient
import Synchronization

// The executor's background work: feeding the topology machine and performing its actions (REST
// refreshes, leader probes, warm-ups); the life cycle and the tick loop are PoolExecutor.swift.

extension PoolExecutor {
    func feed(_ event: (inout TopologyStateMachine) -> [TopologyAction]) {
        let actions = machine.withLock { event(&$0) }
        perform(actions)
        wakeup.signal()
    }

    func execute(_ item: Work) async {
        switch item {
        case .fetch:
            await fetchTopology()
        case .probe(let node, let delay):
            if delay > .zero {
                do { try await clock.sleep(for: delay) } catch { return }
            }
            await probeLeader(node)
        case .warmUp(let pool):
            await pool.warmUp()
        }
    }

    func fetchTopology() async {
        let started = clock.now
        do {
            let topology = try await source.fetch()
            let now = clock.now
            counters.recordRefresh(latency: now - started)
            diagnostics.recordNamedLeader(topology.leader?.address, at: now)
            let failed = diagnostics.fetchSucceeded()
            if failed > 0 { logger.notice("topology refresh works again", metadata: ["failed_refreshes": "\(failed)"]) }
            feed { $0.fetchSucceeded(topology, now: now) }
        } catch {
            // Closing the pool cancels a refresh in flight: that is no failure of the REST API.
            if Task.isCancelled { return }
            counters.topologyRefreshFailures.increment()
            // Once per streak at warning (during an outage this runs with every backoff step).
            if diagnostics.fetchFailed(error) == 1 {
                logger.warning("topology refresh failed", metadata: ["error": "\(error)"])
            } else {
                logger.debug("topology refresh failed", metadata: ["error": "\(error)"])
            }
            let jitter = random()
            feed { $0.fetchFailed(now: clock.now, jitter: jitter) }
        }
    }

    func probeLeader(_ node: NodeAddress) async {
        switch await probe(node) {
        case .writable:
            diagnostics.probeSucceeded()
            feed { $0.probeSucceeded(node, now: clock.now) }
        case .inRecovery:
            feed { $0.probeFailed(node, now: clock.now) }
        case .failed(let error):
            let permanent = Self.isPermanent(error)
            if diagnostics.probeFailed(node, error), let error {
                logger.warning("cannot check the leader", metadata: ["node": "\(node)", "error": "\(error)"])
            }
            // Wrong credentials: one attempt a second, not a login storm on the leader.
            feed { $0.probeFailed(node, now: clock.now, retryAfter: permanent ? .seconds(1) : nil) }
        }
    }

    func perform(_ actions: [TopologyAction]) {
        for action in actions {
            switch action {
            case .fetchTopology:
                workQueue.yield(.fetch)
            case .probeLeader(let node, let delay):
                workQueue.yield(.probe(node, after: delay))
            case .openPool(let node):
                for database in databases { _ = pool(for: node, database: database, create: true) }
            case .drainPool(let node):
                for database in databases { pool(for: node, database: database, create: false)?.drain() }
                logger.info("draining connections to the former leader", metadata: ["node": "\(node)"])
            case .retirePool(let node):
                let retired = pools.withLock { p in
                    databases.compactMap { p.removeValue(forKey: PoolKey(node: node, database: $0)) }
                }
                for pool in retired { pool.close() }
            case .publish(let table):
                publish(table)
            case .leaderAvailable(let node):
                logger.info("leader confirmed writable", metadata: ["node": "\(node)"])
                for database in databases {
                    if let p = pool(for: node, database: database, create: true) { workQueue.yield(.warmUp(p)) }
                }
            case .failoverCompleted(let from, let to, let unavailable):
                counters.recordFailover(unavailable: unavailable)
                diagnostics.recordFailover(PatroniHAPool.FailoverEvent(from: from, to: to, unavailableSeconds: unavailable.asSeconds))
                logger.notice("failover complete", metadata: [
                    "from": "\(from.map(\.description) ?? "-")", "to": "\(to)", "unavailable_s": "\(unavailable.asSeconds)",
                ])
            }
        }
    }

    func pool(for node: NodeAddress, database: String, create: Bool) -> Pool? {
        pools.withLock { p in
            let key = PoolKey(node: node, database: database)
            if let existing = p[key] { return existing }
            guard create else { return nil }
            let created = Pool(
                node: node, template: connectionTemplate(database: database), minConnections: config.minConnections,
                maxConnections: config.maxConnections, idleCheckAfter: config.idleCheckAfter, factory: factory, clock: clock
            )
            p[key] = created
            return created
        }
    }

    enum ProbeResult {
        case writable
        case inRecovery
        case failed(PGError?)
    }

    /// Connects to `node` and checks it is out of recovery. The connection then serves writes.
    func probe(_ node: NodeAddress) async -> ProbeResult {
        guard let pool = pool(for: node, database: config.database, create: true) else { return .failed(nil) }
        pool.reopen()
        let conn: Connection
        do {
            conn = try await pool.checkout(timeout: config.connectTimeout)
        } catch {
            return .failed(error.underlying)
        }
        defer { pool.checkin(conn) }
        do {
            return try await conn.isInRecovery() ? .inRecovery : .writable
        } catch {
            return .failed(error)
        }
    }

    /// Wrong credentials or a broken configuration: probing again soon cannot help.
    static func isPermanent(_ error: PGError?) -> Bool {
        guard let error else { return false }
        return error.code == .authenticationFailed || error.code == .invalidConfiguration
            || CertificateProblem(message: error.message) != nil
    }

    /// The certificate problem of the REST hosts' last failures: of the first one with one, or
    /// (`everyHost`) only when every configured host failed that way.
    func restCertificate(everyHost: Bool) -> (server: String, problem: CertificateProblem, advice: String)? {
        let failures = diagnostics.lastRESTFailures.sorted { $0.key < $1.key }
        let problems = failures.compactMap { host, cause in CertificateProblem(message: cause).map { (host, $0) } }
        if everyHost, problems.isEmpty || problems.count < config.apiHosts.count || problems.count < failures.count { return nil }
        guard let (endpoint, problem) = problems.first else { return nil }
        // "https://host:port" → "host:port", as openssl s_client takes it.
        let host = endpoint.split(separator: "://", maxSplits: 1).last.map(String.init) ?? endpoint
        let advice = problem.advice(server: host, caSetting: "PATRONI_API_CAFILE", caFile: config.api.caFile,
                                    certSetting: "PATRONI_API_CERTFILE", postgres: false)
        return (host, problem, advice)
    }

    /// The certificate problem of a failed login to a member's PostgreSQL, if it is one.
    func postgresCertificate(_ node: NodeAddress, _ error: PGError?) -> (server: String, problem: CertificateProblem, advice: String)? {
        guard let error, let problem = CertificateProblem(message: error.message) else { return nil }
        let advice = problem.advice(server: node.description, caSetting: "PATRONI_SSLROOTCERT", caFile: config.tls.sslRootCert,
                                    certSetting: "PATRONI_SSLCERT", postgres: true)
        return (node.description, problem, advice)
    }

    func connectionTemplate(database: String) -> PGConnectionConfig {
        var c = PGConnectionConfig(host: "", port: 5432, database: database, user: config.user, password: config.password)
        config.tls.apply(to: &c)
        c.connectTimeout = config.connectTimeout
        c.applicationName = config.applicationName
        return c
    }

    /// Usage of every per-node pool.
    func poolUsage() -> [String: [NodePoolUsage]] {
        let all = pools.withLock { $0 }
        var result: [String: [NodePoolUsage]] = [:]
        for (key, pool) in all { result[key.database, default: []].append(pool.usage) }
        for key in result.keys { result[key]?.sort { $0.node < $1.node } }
        return result
    }
}
