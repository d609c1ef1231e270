import Foundation
import PGClient
import PlainText
import ShadowCompare
import Synchronization

// The shadow stage's canary (a write on the single node seen on every member before replay is
// trusted) and its resume and undo.

extension ShadowStage {
    func canary(members: [ShadowMember], context: StageContext, journal: StateJournal, connections: StageConnections) async throws -> [ShadowReport.CanaryResult] {
        let p = context.playbook
        let database = p.source.databases.project
        guard let login = connections.sourceAdminLogin(database: database) else {
            return members.map { .init(member: $0.name, visibleAfterMs: nil, error: "source.admin_user is not set: the canary is written as the single node's superuser") }
        }
        let (admin, observation) = await connections.connect(login, applicationName: ShadowReplay.applicationName)
        guard let admin else {
            return members.map { .init(member: $0.name, visibleAfterMs: nil, error: "cannot log in to the single node: \(observation.error ?? "?")") }
        }
        defer { admin.close() }
        let id = try journal.beginStep(stage, name: Self.canaryStep, detail: "write a canary row on the single node (\(Self.canaryTable))",
                                       undo: .table(.init(server: "source", database: database, name: Self.canaryTable)))
        let token = UUID().uuidString
        _ = try await admin.query("CREATE TABLE IF NOT EXISTS \(Self.canaryTable) (token text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now())", timeout: .seconds(30))
        try journal.completeStep(id)
        // Every member's connection is open (and the table replayed) before the write, so the
        // time measured is the write's way to each member, not a login.
        var readers: [(ShadowMember, Result<PGConnection, ShadowReplay.Failure>)] = []
        for member in members { readers.append((member, await canaryReader(member, connections: connections))) }
        defer { for case (_, .success(let c)) in readers { c.close() } }
        let budget = Duration.milliseconds(Int64(p.shadow.lagBudgetSeconds * 1000))
        for case (_, .success(let c)) in readers {
            _ = await waitUntil(bound: budget * 2 + .seconds(5)) { (try? await c.query("SELECT to_regclass($1) IS NOT NULL", [.text(Self.canaryTable)], timeout: .seconds(5)).bool(0, 0)) == true }
        }
        _ = try await admin.query("INSERT INTO \(Self.canaryTable) (token) VALUES ($1)", [.text(token)], timeout: .seconds(30))
        let written = ContinuousClock.now
        let results = await withTaskGroup(of: ShadowReport.CanaryResult.self) { group in
            for (member, reader) in readers {
                group.addTask {
                    switch reader {
                    case .failure(let f): return .init(member: member.name, visibleAfterMs: nil, error: f.message)
                    case .success(let connection):
                        let seen = await self.waitUntil(bound: budget * 2 + .seconds(1)) {
                            ((try? await connection.query("SELECT 1 FROM \(Self.canaryTable) WHERE token = $1", [.text(token)], timeout: .seconds(5)))?.rowCount ?? 0) > 0
                        }
                        return .init(member: member.name, visibleAfterMs: seen ? (ContinuousClock.now - written).milliseconds : nil,
                                     error: seen ? nil : "not visible within \(budget * 2 + .seconds(1))")
                    }
                }
            }
            var all: [ShadowReport.CanaryResult] = []
            for await r in group { all.append(r) }
            return all.sorted { $0.member < $1.member }
        }
        _ = try await admin.query("DROP TABLE IF EXISTS \(Self.canaryTable)", timeout: .seconds(30))
        try journal.markStepUndone(id)
        return results
    }

    /// The cluster superuser's connection to `member`'s project database (the canary table is
    /// the single node superuser's; the application role cannot read it).
    func canaryReader(_ member: ShadowMember, connections: StageConnections) async -> Result<PGConnection, ShadowReplay.Failure> {
        guard var login = connections.memberAdminLogin(host: member.host, port: member.port) else {
            return .failure(.init(message: "target.admin_user is not set: the canary is read as the cluster's superuser"))
        }
        login.database = connections.targetProjectDatabase
        let (connection, observation) = await connections.connect(login, applicationName: ShadowReplay.applicationName)
        guard let connection else { return .failure(.init(message: observation.error ?? "cannot connect")) }
        return .success(connection)
    }

    /// Polls `condition` every 2 ms until it holds or `bound` passed (measuring, so real time:
    /// the canary's delay is what is measured).
    func waitUntil(bound: Duration, _ condition: () async -> Bool) async -> Bool {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < bound, !Task.isCancelled {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return false
    }

    // MARK: - Resume and undo

    /// Puts back what an interrupted run left: the capture's settings, the canary table.
    func settle(_ context: StageContext, journal: StateJournal, connections: StageConnections) async throws {
        let open = journal.steps(of: stage).filter { $0.phase == .intent || $0.phase == .done }
        guard !open.isEmpty else { return }
        guard let login = connections.sourceAdminLogin(database: context.playbook.source.databases.project) else {
            throw MigrationError(.stageFailed, "an interrupted shadow run left changes on the single node, and source.admin_user is not set to undo them")
        }
        let (admin, observation) = await connections.connect(login, applicationName: ShadowReplay.applicationName)
        guard let admin else {
            throw MigrationError(.stageFailed, "cannot log in to the single node to put back what an interrupted shadow run changed: \(observation.error ?? "?")")
        }
        defer { admin.close() }
        for step in open {
            switch step.undo {
            case .serverSettings(let saved):
                try await restoreSettings(saved.settings, connection: admin)
                context.progress("capture settings put back on the single node (" + saved.settings.map(\.name).joined(separator: ", ") + ")")
            case .table(let table):
                _ = try await admin.query("DROP TABLE IF EXISTS \(table.name)", timeout: .seconds(30))
                context.progress("canary table \(table.name) dropped on the single node")
            case .nothing, .replicationSlot, .hook, .roleLogins, .replicaIdentity, .pgbouncerPause, .createdObject, .patroniSlot, .patroniSetting, .promotion, .legacy:
                break
            }
            try journal.markStepUndone(step.id)
        }
    }
}
