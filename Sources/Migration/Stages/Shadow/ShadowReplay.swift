import Foundation
import PGClient
import Patroni
import ShadowCompare
import Synchronization

/// A cluster member the replay sends statements to.
struct ShadowMember: Sendable, Hashable {
    var name: String
    var host: String
    var port: Int
}

/// The shadow stage's I/O: finds the members, runs each execution on the single node (twice) and
/// on one member, measures, and classifies. Every statement runs in a `REPEATABLE READ, READ ONLY`
/// transaction with `statement_timeout`, as the application's own role (the playbook's
/// `source.user` and `target.user`), so it sees what the application would.
final class ShadowReplay: Sendable {
    static let applicationName = "pgha-shadow"
    let connections: StageConnections
    let statementTimeout: Duration
    let lagRecheck: Duration

    init(connections: StageConnections, settings: Playbook.Shadow) {
        self.connections = connections
        self.statementTimeout = .milliseconds(Int64(settings.statementTimeoutSeconds * 1000))
        self.lagRecheck = .milliseconds(Int64(settings.lagRecheckSeconds * 1000))
    }

    /// The members `/cluster` lists (the largest view any REST host gives), with their addresses.
    func members() async throws(MigrationError) -> [ShadowMember] {
        let client: PatroniClient
        do {
            client = try connections.patroniClient()
        } catch {
            throw MigrationError(.stageFailed, "cannot reach the cluster's REST API: \(connections.describe(String(describing: error)))")
        }
        var best: PatroniCluster?
        var errors: [String] = []
        for (endpoint, result) in await client.clusterFromEach() {
            switch result {
            case .success(let cluster): if cluster.members.count > (best?.members.count ?? -1) { best = cluster }
            case .failure(let error): errors.append("\(endpoint): \(connections.describe(error.description))")
            }
        }
        guard let best else {
            throw MigrationError(.stageFailed, "no REST host of the cluster answers: " + errors.sorted().joined(separator: "; "))
        }
        let members = best.members.compactMap { m -> ShadowMember? in
            guard let host = m.host else { return nil }
            return ShadowMember(name: m.name, host: host, port: m.port ?? connections.playbook.target.port)
        }.sorted { $0.name < $1.name }
        guard !members.isEmpty else { throw MigrationError(.stageFailed, "the cluster lists no member with an address") }
        return members
    }

    // MARK: - One worker's connections

    /// One replay worker: its own connection to the single node and to each member.
    final class Session: Sendable {
        let replay: ShadowReplay
        private let cache: ConnectionCache

        init(replay: ShadowReplay) {
            self.replay = replay
            self.cache = ConnectionCache(connections: replay.connections, applicationName: ShadowReplay.applicationName)
        }

        func close() { cache.close() }

        func connection(_ key: String, _ login: StageConnections.Login) async -> Result<PGConnection, Failure> {
            await cache.connection(key: key, login: login).mapError { Failure(message: $0.message) }
        }

        func forget(_ key: String) { cache.forget(key) }

        func source() async -> Result<PGConnection, Failure> {
            await connection("source", replay.connections.sourceApplicationLogins[0])
        }

        func member(_ m: ShadowMember) async -> Result<PGConnection, Failure> {
            await connection("member:\(m.name)", replay.connections.memberApplicationLogin(host: m.host, port: m.port))
        }
    }

    struct Failure: Error, Sendable { var message: String }

    /// One run on one side.
    struct Run: Sendable {
        var outcome: ExecutionOutcome
        var latency: Duration?
        /// Single node: `pg_current_wal_insert_lsn()` inside the statement's snapshot (every commit
        /// the statement can see is at or before it). Member: `pg_last_wal_replay_lsn()` before its
        /// snapshot (everything up to it is visible).
        var lsn: LSN?
        /// The run could not happen at all (no connection…).
        var clientFailure: String?
    }

    private var timeoutMs: Int64 { Int64(statementTimeout.milliseconds) }
    /// The client-side bound of a statement: the server's statement_timeout fires first.
    private var clientTimeout: Duration { statementTimeout + .seconds(2) }

    func runOnSource(_ session: Session, _ sql: String, _ params: [String?]) async -> Run {
        let connection: PGConnection
        switch await session.source() {
        case .success(let c): connection = c
        case .failure(let f): return Run(outcome: .error(sqlState: nil, message: f.message), clientFailure: f.message)
        }
        do {
            let prelude = try await connection.query(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL statement_timeout = \(timeoutMs); SELECT pg_current_wal_insert_lsn()::text",
                timeout: clientTimeout)
            let lsn = prelude.rowCount > 0 ? prelude.string(0, 0).flatMap(LSN.init) : nil
            var run = await timed(connection, sql, params)
            run.lsn = lsn
            await finish(connection, session: session, key: "source", run: &run)
            return run
        } catch {
            session.forget("source")
            let message = connections.describe(error.description)
            return Run(outcome: .error(sqlState: error.sqlState, message: message), clientFailure: message)
        }
    }

    func runOnMember(_ session: Session, _ member: ShadowMember, _ sql: String, _ params: [String?]) async -> Run {
        let key = "member:\(member.name)"
        let connection: PGConnection
        switch await session.member(member) {
        case .success(let c): connection = c
        case .failure(let f): return Run(outcome: .error(sqlState: nil, message: f.message), clientFailure: f.message)
        }
        do {
            let replayed = try await connection.query("SELECT pg_last_wal_replay_lsn()::text", timeout: clientTimeout)
            let lsn = replayed.string(0, 0).flatMap(LSN.init)
            _ = try await connection.query(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL statement_timeout = \(timeoutMs)", timeout: clientTimeout)
            var run = await timed(connection, sql, params)
            run.lsn = lsn
            await finish(connection, session: session, key: key, run: &run)
            return run
        } catch {
            session.forget(key)
            let message = "\(member.name): " + connections.describe(error.description)
            return Run(outcome: .error(sqlState: error.sqlState, message: message), clientFailure: message)
        }
    }

    private func timed(_ connection: PGConnection, _ sql: String, _ params: [String?]) async -> Run {
        let values = params.map { $0.map(PGValue.text) ?? .null }
        let started = ContinuousClock.now
        do {
            let result = try await connection.query(sql, values, timeout: clientTimeout)
            let latency = ContinuousClock.now - started
            return Run(outcome: .rows(ResultSnapshot(result)), latency: latency)
        } catch {
            let latency = ContinuousClock.now - started
            // A server error is an answer (compared); a client-side one (broken connection, the
            // client's timeout) is not, on the single node's side.
            let message = connections.describe(error.message)
            return Run(outcome: .error(sqlState: error.sqlState, message: message), latency: error.sqlState == nil ? nil : latency,
                       clientFailure: error.sqlState == nil ? message : nil)
        }
    }

    private func finish(_ connection: PGConnection, session: Session, key: String, run: inout Run) async {
        do {
            _ = try await connection.query(run.outcome.snapshot == nil ? "ROLLBACK" : "COMMIT", timeout: clientTimeout)
        } catch {
            session.forget(key)
        }
        if !connection.isHealthy { session.forget(key) }
    }

    /// Waits (bounded by `lag_recheck`) until `member` has replayed `lsn`; true when it has.
    func waitForReplay(_ session: Session, _ member: ShadowMember, to lsn: LSN, context: StageContext) async throws(MigrationError) -> Bool {
        let deadline = ContinuousClock.now + lagRecheck
        while ContinuousClock.now < deadline {
            guard case .success(let connection) = await session.member(member) else { return false }
            if let r = try? await connection.query("SELECT pg_last_wal_replay_lsn()::text", timeout: clientTimeout),
               let replayed = r.string(0, 0).flatMap(LSN.init), replayed >= lsn {
                return true
            }
            try await context.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// One execution: the single node's primary run and the member's run at the same time, then
    /// the single node's secondary run; classified; a lagging difference is run once more after
    /// the member caught up (bounded by `shadow.lag_recheck`).
    func execute(_ statement: ShadowStatement, params: [String?], on member: ShadowMember, session: Session, context: StageContext, index: Int) async throws(MigrationError) -> ShadowExecution {
        var first = await triple(statement, params: params, member: member, session: session)
        if let aborted = first.aborted {
            return ShadowExecution(statement: index, member: member.name, params: params, classification: nil, aborted: aborted)
        }
        var rechecked = false
        if case .lag? = first.classification, let lsn = first.sourceLSN {
            if try await waitForReplay(session, member, to: lsn, context: context) {
                let second = await triple(statement, params: params, member: member, session: session)
                if second.aborted == nil {
                    first.classification = ShadowClassification.afterRecheck(first: first.classification!, recheck: second.classification)
                    rechecked = true
                }
            }
        }
        return ShadowExecution(
            statement: index, member: member.name, params: params, classification: first.classification, bothFailed: first.bothFailed,
            sourceLatency: first.sourceLatency, memberLatency: first.memberLatency, memberBehind: first.behind, rechecked: rechecked)
    }

    private struct Triple {
        var classification: ShadowClassification?
        var aborted: String?
        var bothFailed = false
        var behind = false
        var sourceLSN: LSN?
        var sourceLatency: Duration?
        var memberLatency: Duration?
    }

    private func triple(_ statement: ShadowStatement, params: [String?], member: ShadowMember, session: Session) async -> Triple {
        async let primaryRun = runOnSource(session, statement.sql, params)
        async let candidateRun = runOnMember(session, member, statement.sql, params)
        let (primary, candidate) = await (primaryRun, candidateRun)
        if let failure = primary.clientFailure { return Triple(aborted: "single node: " + failure) }
        let secondary = await runOnSource(session, statement.sql, params)
        if let failure = secondary.clientFailure { return Triple(aborted: "single node: " + failure) }
        // Behind: the member's replayed position is before what the single node's snapshot could see
        // (unknown positions count as behind).
        let behind: Bool = {
            guard let source = primary.lsn, let replayed = candidate.lsn else { return true }
            return replayed < source
        }()
        let classification = ShadowClassification.classify(
            primary: primary.outcome, secondary: secondary.outcome, candidate: candidate.outcome, ordered: statement.ordered,
            candidateBehind: behind, sourceName: "single node", candidateName: member.name)
        var bothFailed = false
        if case .match = classification, primary.outcome.snapshot == nil { bothFailed = true }
        return Triple(classification: classification, bothFailed: bothFailed, behind: behind, sourceLSN: primary.lsn,
                      sourceLatency: primary.latency, memberLatency: candidate.latency)
    }
}
