import Foundation
public import HAPool
import PGClient
import Patroni

/// The seed's verification suite (`scripts/test_patroni_connection.py`), made stricter, plus
/// pgha's additions. Every check looks at the connection that actually served it.
///
/// 1. `pool_initialization` — the pools start and (Patroni mode) a leader is confirmed writable.
/// 2. `health_check` — leader and replicas as the pool sees them.
/// 3. `write_to_primary` — an INSERT lands on a server that is not in recovery and is the leader.
/// 4. `read_from_replica` — a `readOnly` query is served by a server in recovery.
/// 5. `read_write_split` — a row written on the leader becomes visible on a replica, read there.
/// 6. `replica_lag` — every replica within the lag threshold (WARN otherwise).
/// 7. `rest_api_hosts` — every configured REST API host answers `/cluster`.
/// 8. `shared_database` — the shared database answers (when configured).
public struct SeedVerification: Sendable {
    public let pools: DualDatabasePools
    /// Table the write checks use, created if missing in the project database.
    public var table = "pgha_verify"
    /// How long a written row may take to appear on a replica.
    public var replicationWait: Duration = .seconds(5)
    /// How long pool initialization may wait for a leader (nil: `failoverTimeout`). One-shot
    /// commands pass `DualDatabasePools.oneShotStartTimeout` so a broken REST API is reported
    /// within seconds.
    public var startTimeout: Duration?

    public init(pools: DualDatabasePools) {
        self.pools = pools
    }

    /// Runs every check in order; a failed `pool_initialization` turns the rest into SKIP.
    public func run() async -> VerificationReport {
        await runReportingStart().report
    }

    /// `run()`, plus the error that stopped the pools from starting, if any (for exit codes).
    public func runReportingStart() async -> (report: VerificationReport, startError: HAError?) {
        let startedAt = Date()
        var results: [CheckResult] = []
        let started = ContinuousClock.now
        let startError: HAError?
        do { try await pools.start(timeout: startTimeout); startError = nil } catch { startError = error }
        var initResult = poolInitialization(startError)
        initResult.durationMs = (ContinuousClock.now - started).asSeconds * 1000
        results.append(initResult)
        guard startError == nil else {
            for name in ["health_check", "write_to_primary", "read_from_replica", "read_write_split", "replica_lag", "rest_api_hosts"] {
                results.append(CheckResult(name: name, verdict: .skip, observed: "pool initialization failed"))
            }
            return (VerificationReport(checks: results, startedAt: startedAt, mode: pools.mode.rawValue), startError)
        }
        results += await CheckRunner.run(checks)
        return (VerificationReport(checks: results, startedAt: startedAt, mode: pools.mode.rawValue), nil)
    }

    var checks: [Check] {
        [
            Check(name: "health_check") { await healthCheck() },
            Check(name: "write_to_primary") { await writeToPrimary() },
            Check(name: "read_from_replica") { await readFromReplica() },
            Check(name: "read_write_split") { await readWriteSplit() },
            Check(name: "replica_lag") { await replicaLag() },
            Check(name: "rest_api_hosts") { await restAPIHosts() },
            Check(name: "shared_database") { await sharedDatabase() },
        ]
    }

    func poolInitialization(_ error: HAError?) -> CheckResult {
        guard let error else {
            if let pool = pools.patroniPool {
                let writer = pool.routingTable.writer.map(\.description) ?? "-"
                return CheckResult(name: "pool_initialization", verdict: .pass, observed: "Patroni mode, leader \(writer) confirmed writable")
            }
            return CheckResult(name: "pool_initialization", verdict: .pass, observed: "single-node mode, project database answers")
        }
        let advice = error.certificate.map(\.advice) ?? (error.underlying?.code == .authenticationFailed
            ? "the login was refused: check PATRONI_USER/PATRONI_PASSWORD (PROJECT_DB_* in single-node mode) and pg_hba.conf"
            : "check PATRONI_HOSTS/PATRONI_PORT (curl http://HOST:PORT/cluster), credentials, pg_hba.conf; then run `pgha health`")
        return CheckResult(
            name: "pool_initialization", verdict: .fail, observed: error.description,
            expected: "pools connect and a leader is confirmed", advice: advice
        )
    }

    func healthCheck() async -> CheckResult {
        let report = await pools.healthCheck()
        if let cluster = report.haCluster {
            guard let primary = cluster.primary else {
                return CheckResult(name: "health_check", verdict: .fail, observed: "no confirmed leader (\(cluster.error ?? "none named"))",
                                   expected: "one leader", advice: "run `patronictl list` / `pgha health`; etcd must be healthy")
            }
            let running = cluster.replicas.filter { $0.state == "streaming" || $0.state == "running" }
            let observed = "leader \(primary.name) (\(primary.host ?? "?"):\(primary.port ?? 0)), \(running.count)/\(cluster.replicas.count) replicas running"
            if running.isEmpty {
                return CheckResult(name: "health_check", verdict: .warn, observed: observed, expected: "≥ 1 replica streaming",
                                   advice: "no replica is running: reads fall back to the leader and a failover has no candidate")
            }
            return CheckResult(name: "health_check", verdict: .pass, observed: observed)
        }
        let dbs = [report.project, report.shared].compactMap { $0 }
        let bad = dbs.filter { $0.status != "healthy" }
        if bad.isEmpty {
            return CheckResult(name: "health_check", verdict: .pass, observed: dbs.map { "\($0.role) \($0.status)" }.joined(separator: ", "))
        }
        return CheckResult(name: "health_check", verdict: .fail, observed: bad.map { "\($0.role): \($0.error ?? $0.status)" }.joined(separator: "; "),
                           advice: "check the PROJECT_DB_*/SHARED_DB_* variables and that the server runs")
    }

    private func ensureTable() async throws(HAError) {
        _ = try await pools.project.query(
            "CREATE TABLE IF NOT EXISTS \(table) (id bigserial PRIMARY KEY, token text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())",
            idempotent: true
        )
    }

    struct ServerFacts: Sendable {
        let host: String
        let port: Int
        let inRecovery: Bool
    }

    /// Writes a token and reports where it landed (on the same connection).
    private func write(token: String) async throws -> ServerFacts {
        try await ensureTable()
        return try await pools.project.withConnection(readOnly: false) { conn in
            let r = try await conn.query(
                "INSERT INTO \(table) (token) VALUES ($1) RETURNING pg_is_in_recovery()", [.text(token)]
            )
            return ServerFacts(host: conn.serverHost, port: conn.serverPort, inRecovery: try r.bool(0, 0) ?? true)
        }
    }

    func writeToPrimary() async -> CheckResult {
        let token = "write-\(UUID().uuidString)"
        do {
            let facts = try await write(token: token)
            let leader = pools.patroniPool?.routingTable.writer
            let onLeader = leader.map { $0.host == facts.host && $0.port == facts.port } ?? true
            let observed = "INSERT served by \(facts.host):\(facts.port), in recovery: \(facts.inRecovery)"
            if facts.inRecovery || !onLeader {
                return CheckResult(name: "write_to_primary", verdict: .fail, observed: observed, expected: "the leader, not in recovery",
                                   advice: "routing sent a write to a non-leader: report this with `pgha health --json`")
            }
            return CheckResult(name: "write_to_primary", verdict: .pass, observed: observed)
        } catch {
            return CheckResult(name: "write_to_primary", verdict: .fail, observed: "\(error)", expected: "the INSERT succeeds on the leader",
                               advice: "the application role needs CREATE on the database (for table \(table)) and INSERT on it")
        }
    }

    func readFromReplica() async -> CheckResult {
        guard pools.mode == .patroni else {
            return CheckResult(name: "read_from_replica", verdict: .skip, observed: "single-node mode has no replicas")
        }
        do {
            let facts = try await pools.project.withConnection(readOnly: true) { conn in
                let r = try await conn.query("SELECT pg_is_in_recovery()")
                return ServerFacts(host: conn.serverHost, port: conn.serverPort, inRecovery: try r.bool(0, 0) ?? false)
            }
            let observed = "readOnly query served by \(facts.host):\(facts.port), in recovery: \(facts.inRecovery)"
            if !facts.inRecovery {
                return CheckResult(name: "read_from_replica", verdict: .fail, observed: observed, expected: "a replica (in recovery)",
                                   advice: "no replica qualified (lag, noloadbalance, stopped): see `pgha health`")
            }
            return CheckResult(name: "read_from_replica", verdict: .pass, observed: observed)
        } catch {
            return CheckResult(name: "read_from_replica", verdict: .fail, observed: "\(error)", advice: "see `pgha health`")
        }
    }

    /// A row written on the leader, then read back on a replica through the pool's read-your-writes
    /// session (`HASession`, policy `.wait(replicationWait)`): the session waits until a replica has
    /// replayed the write's LSN before reading there, so the check never depends on timing (a
    /// replica that has not replayed the table or the row yet is waited for, not counted as a
    /// failure). If no replica catches up within the bound the session reads on the leader, and the
    /// check fails naming it.
    func readWriteSplit() async -> CheckResult {
        guard pools.mode == .patroni, let pool = pools.patroniPool else {
            return CheckResult(name: "read_write_split", verdict: .skip, observed: "single-node mode has no replicas")
        }
        let token = "split-\(UUID().uuidString)"
        let database = pools.project.database
        let session = HASession(pool: pool, policy: .wait(replicationWait))
        let whereServed = "host(inet_server_addr()), inet_server_port(), pg_is_in_recovery()"
        do {
            try await ensureTable()
            let started = ContinuousClock.now
            let w = try await session.query(
                "INSERT INTO \(table) (token) VALUES ($1) RETURNING \(whereServed)", [.text(token)], database: database)
            let r = try await session.query(
                "SELECT (SELECT count(*) FROM \(table) WHERE token = $1), \(whereServed)", [.text(token)],
                readOnly: true, database: database)
            let ms = Int((ContinuousClock.now - started).asSeconds * 1000)
            _ = try? await pools.project.query("DELETE FROM \(table) WHERE token = $1", [.text(token)], idempotent: true)
            let written = "\(w.string(0, 0) ?? "?"):\(try w.int(0, 1) ?? 0)"
            let read = "\(r.string(0, 1) ?? "?"):\(try r.int(0, 2) ?? 0)"
            let found = (try r.int(0, 0) ?? 0) == 1
            let readInRecovery = try r.bool(0, 3) ?? false
            let observed = "written on \(written), read on \(read) (in recovery: \(readInRecovery)) after \(ms) ms, row found: \(found)"
            let split = found && readInRecovery && read != written
            return CheckResult(
                name: "read_write_split", verdict: split ? .pass : .fail, observed: observed,
                expected: "the write on the leader, the read on a replica that has replayed it",
                advice: split ? nil : (found
                    ? "no replica replayed the write within \(replicationWait), so the read went to the leader: check replay lag in `pgha health`"
                    : "the row written through the session was not visible where it was read: report this with `pgha health --json`"))
        } catch {
            return CheckResult(name: "read_write_split", verdict: .fail, observed: "\(error)")
        }
    }

    func replicaLag() async -> CheckResult {
        guard let pool = pools.patroniPool else {
            return CheckResult(name: "replica_lag", verdict: .skip, observed: "single-node mode has no replicas")
        }
        let replicas = pool.topology?.replicas ?? []
        let limit = pool.config.maxReplicaLagBytes
        let lagging = replicas.filter { ($0.lagBytes ?? Int64.max) > limit }
        let observed = replicas.map { "\($0.name) \($0.lagBytes.map { "\($0) B" } ?? "unknown")" }.joined(separator: ", ")
        if replicas.isEmpty {
            return CheckResult(name: "replica_lag", verdict: .warn, observed: "no replicas", expected: "≥ 1 replica")
        }
        if lagging.isEmpty {
            return CheckResult(name: "replica_lag", verdict: .pass, observed: observed, expected: "≤ \(limit) B")
        }
        return CheckResult(name: "replica_lag", verdict: .warn, observed: observed, expected: "≤ \(limit) B",
                           advice: "\(lagging.map(\.name).joined(separator: ", ")) out of the read rotation until it catches up")
    }

    func restAPIHosts() async -> CheckResult {
        guard let client = pools.patroniPool?.patroniClient else {
            return CheckResult(name: "rest_api_hosts", verdict: .skip, observed: "single-node mode")
        }
        let answers = await client.clusterFromEach()
        let failed = answers.filter { if case .failure = $0.value { true } else { false } }
        let observed = "\(answers.count - failed.count)/\(answers.count) REST API hosts answer /cluster"
        if failed.isEmpty { return CheckResult(name: "rest_api_hosts", verdict: .pass, observed: observed) }
        let reasons = failed.sorted { $0.key.description < $1.key.description }.map { endpoint, result -> String in
            if case .failure(let e) = result { return "\(endpoint): \(e.code)" }
            return "\(endpoint)"
        }
        return CheckResult(name: "rest_api_hosts", verdict: failed.count == answers.count ? .fail : .warn,
                           observed: observed + " (" + reasons.joined(separator: "; ") + ")",
                           advice: "check each host with curl http://HOST:PORT/cluster; a firewall must allow the REST port")
    }

    func sharedDatabase() async -> CheckResult {
        guard let shared = pools.shared else {
            return CheckResult(name: "shared_database", verdict: .skip, observed: "no shared database configured")
        }
        do {
            let r = try await shared.query("SELECT current_database()", readOnly: false)
            return CheckResult(name: "shared_database", verdict: .pass, observed: "\(r.string(0, 0) ?? "?") answers")
        } catch {
            return CheckResult(name: "shared_database", verdict: .fail, observed: "\(error)", advice: "check PATRONI_SHARED_DB / SHARED_DB_* and grants")
        }
    }
}
