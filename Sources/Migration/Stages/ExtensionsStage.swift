import Foundation
import PGClient

/// Stage `extensions`: can every cluster member run what the application's databases use?
/// Read-only; changes nothing.
///
/// `run` reads `pg_extension` in every source database (project and shared), adds the playbook's
/// `extensions.required`, then connects to each member of `/cluster` separately — the leader and
/// every replica, directly at the host and port Patroni publishes — and reads
/// `pg_available_extensions` and `pg_available_extension_versions` there. Replicas matter: a
/// physical replica mirrors the leader's catalog but not its extension files, so a replica that
/// lacks them fails the first query touching the extension after a failover.
///
/// `gate` (the pure `ExtensionsEvaluation.evaluate`): FAIL when an extension is missing on a
/// member, the version installed on the source is not installable there, no version reaches
/// `extensions.min_versions`, or a member cannot be asked; WARN when the default versions differ.
/// One `extension.<name>` check per extension carries its row of the node × extension matrix
/// (see `ExtensionMatrix`).
public struct ExtensionsStage: CheckOnlyStage {
    public let stage = MigrationStage.extensions
    let cache = ObservationCache<ExtensionObservations>()

    static let applicationName = "pgha-extensions"

    public init() {}

    func checks(_ context: StageContext) -> [String] {
        let p = context.playbook
        let connections = StageConnections(context)
        var required = p.extensions.required.map { name in
            p.extensions.minVersions[name].map { "\(name) ≥ \($0)" } ?? name
        }.joined(separator: ", ")
        if required.isEmpty { required = "none" }
        return [
            "extensions.source: read pg_extension in " + connections.sourceDatabases.joined(separator: ", ") + " on the single node",
            "extensions.members: connect directly to every member of /cluster (leader and replicas) as " + (p.target.adminUser ?? p.target.user),
            "extension.<name>, for every extension the source uses and every required one (\(required)): available on every member, the source's installed version installable there, default versions alike (WARN otherwise)",
        ]
    }

    func observedAt(_ observations: ExtensionObservations) -> Date { observations.observedAt }

    func summary(_ observations: ExtensionObservations, _ context: StageContext) -> [String] {
        let matrix = ExtensionsEvaluation.matrix(observations, required: context.playbook.extensions.required, minVersions: context.playbook.extensions.minVersions)
        return ["extensions on every node (\(Int(observations.elapsedMs)) ms):\n" + matrix.table()]
    }

    func evaluate(_ observations: ExtensionObservations, _ context: StageContext) -> [CheckResult] {
        let e = context.playbook.extensions
        return ExtensionsEvaluation.evaluate(
            observations, required: e.required, minVersions: e.minVersions, membersDeferred: context.playbook.sync.method == .physical)
    }

    /// Reads the source's installed extensions and every member's available ones (members
    /// concurrently). Never throws: what cannot be read is recorded and fails its check.
    public func observe(_ context: StageContext) async -> ExtensionObservations {
        let started = ContinuousClock.now
        let connections = StageConnections(context)
        let observedAt = context.clock.now()
        let inspector = ClusterInspector(connections: connections)
        async let source = SourceInspector(connections: connections).installedExtensions()
        let view = await inspector.restView()
        let members = await withTaskGroup(of: (Int, MemberExtensions).self) { group in
            for (index, member) in view.members.enumerated() {
                group.addTask { (index, await self.available(on: member, inspector: inspector)) }
            }
            var results = [MemberExtensions?](repeating: nil, count: view.members.count)
            for await (index, result) in group { results[index] = result }
            return results.compactMap { $0 }
        }
        let clusterError = view.members.isEmpty
            ? view.hosts.map { "\($0.endpoint): \($0.clusterError ?? "lists no member")" }.joined(separator: "; ")
            : nil
        return ExtensionObservations(
            observedAt: observedAt, source: await source, members: members, clusterError: clusterError,
            elapsedMs: (ContinuousClock.now - started).milliseconds)
    }

    func available(on member: MemberObservation, inspector: ClusterInspector) async -> MemberExtensions {
        var result = MemberExtensions(name: member.name, role: member.role, address: member.address, available: .failed("no address"))
        guard let host = member.host, let port = member.port else {
            result.available = .failed("/cluster gives no PostgreSQL address")
            return result
        }
        let (connection, logins) = await inspector.catalogConnection(host: host, port: port)
        guard let connection else {
            result.available = .failed(logins.compactMap(\.error).first ?? "no login succeeded")
            return result
        }
        defer { connection.close() }
        let sql = """
            SELECT e.name, e.default_version, e.installed_version,
                   (SELECT string_agg(v.version, ',' ORDER BY v.version) FROM pg_available_extension_versions v WHERE v.name = e.name)
            FROM pg_available_extensions e ORDER BY e.name
            """
        switch await inspector.connections.query(connection, sql) {
        case .failure(let failure):
            result.available = .failed(failure.message)
        case .success(let r):
            var available: [String: AvailableExtension] = [:]
            for row in 0..<r.rowCount {
                guard let name = r.string(row, 0) else { continue }
                let versions = (r.string(row, 3) ?? "").split(separator: ",").map(String.init)
                available[name] = AvailableExtension(defaultVersion: r.string(row, 1), versions: versions, installedVersion: r.string(row, 2))
            }
            result.available = .observed(available)
        }
        return result
    }
}
