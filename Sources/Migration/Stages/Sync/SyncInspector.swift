import Foundation
import PGClient
import Patroni
import Synchronization

/// Observes the single node and the standby cluster for the sync stage, keeping its connections
/// open between looks (one to the single node, one per member, reopened when they break). Reads
/// only; the slot is created by the stage itself.
final class SyncInspector: Sendable {
    let connections: StageConnections
    let slot: String
    private let cache: ConnectionCache
    static let applicationName = "pgha-sync"

    init(connections: StageConnections, slot: String) {
        self.connections = connections
        self.slot = slot
        self.cache = ConnectionCache(connections: connections, applicationName: Self.applicationName)
    }

    func close() { cache.close() }

    /// The single node's admin connection (the playbook's `source.admin_user`, required: slots,
    /// `pg_stat_progress_basebackup` and `pg_control_system()` need a superuser).
    func sourceConnection() async throws(MigrationError) -> PGConnection {
        guard let login = connections.sourceAdminLogin(database: connections.playbook.source.databases.project) else {
            throw MigrationError(.stageFailed, "the sync stage needs source.admin_user (a superuser on the single node) to create its replication slot and watch the copy")
        }
        return try await connection(key: "source", login: login)
    }

    private func connection(key: String, login: StageConnections.Login) async throws(MigrationError) -> PGConnection {
        switch await cache.connection(key: key, login: login) {
        case .success(let connection): return connection
        case .failure(let failure): throw MigrationError(.stageFailed, failure.message)
        }
    }

    private func forget(_ key: String) { cache.forget(key) }

    /// One look at everything.
    func observe(at now: Date) async -> SyncObservation {
        async let source = observeSource()
        let (members, restError) = await observeCluster()
        return SyncObservation(at: now, source: await source, members: members, restError: restError)
    }

    func observeSource() async -> Probe<SourceSync> {
        let sql = """
            SELECT (SELECT system_identifier::text FROM pg_control_system()), pg_current_wal_lsn()::text,
                   s.active, s.active_pid, s.restart_lsn::text,
                   CASE WHEN s.restart_lsn IS NULL THEN 0 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::int8 END,
                   b.phase, b.backup_streamed, b.backup_total
            FROM (SELECT 1) AS one
            LEFT JOIN pg_replication_slots s ON s.slot_name = $1
            LEFT JOIN LATERAL (SELECT phase, backup_streamed, backup_total FROM pg_stat_progress_basebackup ORDER BY pid LIMIT 1) b ON true
            """
        do {
            let connection = try await sourceConnection()
            let r = try await connection.query(sql, [.text(slot)], timeout: connections.connectTimeout * 4)
            guard let id = r.string(0, 0), let current = r.string(0, 1).flatMap(LSN.init) else {
                return .failed("pg_control_system() or pg_current_wal_lsn() gave nothing (is the single node in recovery?)")
            }
            var slotState: SlotState?
            if let active = try r.bool(0, 2) {
                slotState = SlotState(
                    active: active, activePID: try r.int(0, 3).map(Int.init), restartLSN: r.string(0, 4).flatMap(LSN.init),
                    retainedBytes: try r.int(0, 5) ?? 0)
            }
            var backup: BasebackupProgress?
            if let phase = r.string(0, 6) {
                backup = BasebackupProgress(phase: phase, streamedBytes: try r.int(0, 7) ?? 0, totalBytes: try r.int(0, 8))
            }
            return .observed(SourceSync(systemIdentifier: id, currentLSN: current, slot: slotState, basebackup: backup))
        } catch let error as MigrationError {
            return .failed(connections.describe(error.message))
        } catch {
            forget("source")
            return .failed(connections.describe(String(describing: error)))
        }
    }

    /// `/cluster` from every REST host (the standby leader's own answer preferred), then each
    /// member's PostgreSQL directly.
    func observeCluster() async -> ([SyncMember], String?) {
        let client: PatroniClient
        do {
            client = try connections.patroniClient()
        } catch {
            return ([], connections.describe(String(describing: error)))
        }
        var valid: [PatroniCluster] = []
        var errors: [String] = []
        for (endpoint, result) in await client.clusterFromEach().sorted(by: { $0.key.description < $1.key.description }) {
            switch result {
            case .success(let cluster): valid.append(cluster)
            case .failure(let error): errors.append("\(endpoint): \(connections.describe(error.description))")
            }
        }
        guard let view = valid.max(by: { $0.members.count < $1.members.count }) else {
            return ([], errors.joined(separator: "; "))
        }
        let members = await withTaskGroup(of: (Int, SyncMember).self) { group in
            for (index, member) in view.members.enumerated() {
                group.addTask { (index, await self.observe(member)) }
            }
            var result = [SyncMember?](repeating: nil, count: view.members.count)
            for await (index, member) in group { result[index] = member }
            return result.compactMap { $0 }
        }
        return (members, nil)
    }

    private func observe(_ member: PatroniMember) async -> SyncMember {
        var result = SyncMember(
            name: member.name, role: member.role.rawValue, state: member.state?.rawValue,
            address: member.host.map { "\($0):\(member.port ?? 5432)" }, timeline: member.timeline, server: nil)
        guard let host = member.host, let port = member.port else { return result }
        guard let login = connections.memberAdminLogin(host: host, port: port) else {
            result.server = .failed("target.admin_user is not set: the sync stage reads each member's system identifier as the superuser")
            return result
        }
        let key = "member:\(member.name)"
        let sql = """
            SELECT (SELECT system_identifier::text FROM pg_control_system()), pg_last_wal_replay_lsn()::text,
                   pg_last_wal_receive_lsn()::text, pg_is_in_recovery()
            """
        do {
            let connection = try await connection(key: key, login: login)
            let r = try await connection.query(sql, timeout: connections.connectTimeout * 2)
            result.server = .observed(MemberSync(
                systemIdentifier: r.string(0, 0) ?? "?", replayLSN: r.string(0, 1).flatMap(LSN.init),
                receiveLSN: r.string(0, 2).flatMap(LSN.init), inRecovery: try r.bool(0, 3) ?? true))
        } catch let error as MigrationError {
            result.server = .failed(error.message)
        } catch {
            forget(key)
            result.server = .failed(connections.describe(String(describing: error)))
        }
        return result
    }
}
