import Foundation
import HAPool
import PGClient
import Patroni

/// Read-only look at the Patroni cluster: every configured REST host's `/cluster` and `/patroni`
/// (each asked separately, so a dead host is seen as such), `/config` for the DCS timings, then a
/// direct connection to every member's PostgreSQL (host and port from `/cluster`) with the
/// application's and the superuser's credentials, and finally the application's HA pool started
/// against the cluster. Nothing is ever written.
struct ClusterInspector: Sendable {
    let connections: StageConnections

    static let applicationName = "pgha-prerequisites"

    /// What the REST API said.
    struct RESTView: Sendable {
        var hosts: [RESTHostObservation]
        /// Members of the chosen `/cluster` answer, without connection facts yet.
        var members: [MemberObservation]
        var membersFrom: String?
        var ttlSeconds: Int?
    }

    func observe() async -> ClusterObservation {
        let started = ContinuousClock.now
        let view = await restView()
        let members = await withTaskGroup(of: (Int, MemberObservation).self) { group in
            for (index, member) in view.members.enumerated() {
                group.addTask { (index, await self.probe(member)) }
            }
            var probed = view.members
            for await (index, member) in group { probed[index] = member }
            return probed
        }
        // The HA pool connects to the project database; on a cluster where it does not exist yet
        // (before the sync stage), to `postgres`.
        let applicationLogins = members.flatMap(\.logins).filter { $0.purpose == "application" }
        let databaseMissing = !applicationLogins.isEmpty && applicationLogins.allSatisfy(\.databaseMissing)
        let pool = await poolCheck(database: databaseMissing ? "postgres" : nil)
        return ClusterObservation(
            restHosts: view.hosts, members: members, membersFrom: view.membersFrom, ttlSeconds: view.ttlSeconds,
            pool: pool, elapsedMs: (ContinuousClock.now - started).milliseconds)
    }

    // MARK: - REST

    func restView() async -> RESTView {
        let endpoints = connections.apiEndpoints
        let client: PatroniClient
        do {
            client = try connections.patroniClient()
        } catch {
            let reason = connections.describe(String(describing: error))
            return RESTView(hosts: endpoints.map { RESTHostObservation(endpoint: $0.description, clusterError: reason, statusError: reason) }, members: [])
        }
        async let clusters = client.clusterFromEach()
        async let config: JSONValue? = try? client.config()
        // The child tasks return a small class, not a tuple with a typed-throws `Result` made in
        // a `do throws(…)` inside the closure: that shape crashed release builds (Swift 6.3.1,
        // swift_retain on a freed PatroniEndpoint when the group collected the result).
        let statuses = await withTaskGroup(of: StatusAnswer.self) { group in
            for endpoint in endpoints {
                group.addTask { await StatusAnswer.fetch(endpoint, client: client) }
            }
            var results: [PatroniEndpoint: Result<PatroniNodeStatus, PatroniError>] = [:]
            for await answer in group { results[answer.endpoint] = answer.result }
            return results
        }
        let answers = await clusters

        var hosts: [RESTHostObservation] = []
        var valid: [(PatroniEndpoint, PatroniCluster)] = []
        for endpoint in endpoints {
            var host = RESTHostObservation(endpoint: endpoint.description)
            switch answers[endpoint] {
            case .success(let cluster)?:
                host.leaders = cluster.members.filter(\.isLeader).map(\.name)
                host.memberNames = cluster.members.map(\.name)
                valid.append((endpoint, cluster))
            case .failure(let error)?:
                host.clusterError = connections.describe(error.description)
                if error.code == .inconsistentTopology { host.leaders = error.members }
            case nil:
                host.clusterError = "no answer"
            }
            switch statuses[endpoint] {
            case .success(let status)?:
                host.status = NodeStatusObservation(
                    name: status.memberName, role: status.role?.rawValue, state: status.state?.rawValue,
                    serverVersion: status.serverVersion, dcsLastSeen: status.dcsLastSeen, pause: status.pause ?? false,
                    clusterUnlocked: status.clusterUnlocked ?? false, failsafeActive: status.failsafeModeIsActive ?? false)
            case .failure(let error)?:
                host.statusError = connections.describe(error.description)
            case nil:
                host.statusError = "no answer"
            }
            hosts.append(host)
        }

        // The leader's own answer is the freshest; otherwise the first valid one.
        let chosen = valid.first(where: { endpoint, cluster in
            guard let leader = cluster.leader, case .success(let status)? = statuses[endpoint] else { return false }
            return status.memberName == leader.name
        }) ?? valid.first
        let members = chosen?.1.members.map { member in
            MemberObservation(
                name: member.name, role: member.role.rawValue, isLeader: member.isLeader, isReplica: member.isReplica,
                state: member.state?.rawValue, host: member.host, port: member.port,
                lagBytes: member.isReplica ? member.lag : nil, apiEndpoint: member.apiEndpoint?.description)
        } ?? []
        let ttl = (await config)?["ttl"]?.intValue.map(Int.init)
        return RESTView(hosts: hosts, members: members, membersFrom: chosen?.0.description, ttlSeconds: ttl)
    }

    // MARK: - Members

    /// Connects to one member directly as the application and as the superuser; reads its version
    /// and whether it is in recovery.
    func probe(_ member: MemberObservation) async -> MemberObservation {
        var member = member
        guard let host = member.host, let port = member.port else { return member }
        let (connection, logins) = await catalogConnection(host: host, port: port)
        member.logins = logins
        guard let connection else {
            member.server = .failed(logins.compactMap(\.error).first ?? "no login succeeded")
            return member
        }
        defer { connection.close() }
        switch await connections.query(connection, "SELECT pg_is_in_recovery()") {
        case .success(let r):
            member.server = .observed(MemberServer(serverVersionNum: connection.serverVersion, inRecovery: (try? r.bool(0, 0)) ?? true))
        case .failure(let f):
            member.server = .failed(f.message)
        }
        return member
    }

    /// Logs in to a member as the application (its project database) and, when configured, as the
    /// superuser (`postgres`); returns the connection best suited to catalog queries (the
    /// superuser's, else the application's) and every login's outcome.
    func catalogConnection(host: String, port: Int) async -> (PGConnection?, [LoginObservation]) {
        var logins: [LoginObservation] = []
        var best: PGConnection?
        let application = connections.memberApplicationLogin(host: host, port: port)
        var (appConnection, appObservation) = await connections.connect(application, applicationName: Self.applicationName)
        if appObservation.databaseMissing {
            // Before the sync stage the project database may not exist on the cluster yet: the
            // credentials were accepted; use `postgres` for the catalog.
            var fallback = application
            fallback.database = "postgres"
            let (connection, observation) = await connections.connect(fallback, applicationName: Self.applicationName)
            appConnection = connection
            if observation.error != nil { appObservation.error = (appObservation.error ?? "") + "; on postgres: " + (observation.error ?? "") }
        }
        logins.append(appObservation)
        if let admin = connections.memberAdminLogin(host: host, port: port) {
            let (connection, observation) = await connections.connect(admin, applicationName: Self.applicationName)
            logins.append(observation)
            if let connection {
                best = connection
                appConnection?.close()
                appConnection = nil
            }
        }
        return (best ?? appConnection, logins)
    }

    // MARK: - The HA pool

    /// Starts the application's HA pool against the cluster (leader confirmed writable by
    /// `pg_is_in_recovery() = false`, replicas in the read rotation), reports what it routes to,
    /// and closes it. The pool runs no statement but that probe.
    func poolCheck(database: String?) async -> Probe<String> {
        let config = connections.poolConfiguration(database: database)
        let pool: PatroniHAPool
        do {
            pool = try PatroniHAPool(config: config)
        } catch {
            return .failed(connections.describe(String(describing: error)))
        }
        do {
            try await pool.start()
        } catch {
            await pool.close()
            return .failed(connections.describe(error.description))
        }
        let table = pool.routingTable
        await pool.close()
        let writer = table.writer.map(\.description) ?? "none"
        let readers = table.readers.compactMap { $0.address?.description }
        let readText = readers.isEmpty ? "no replica in the read rotation" : "reads to " + readers.joined(separator: ", ")
        return .observed("writes to \(writer) (confirmed not in recovery), \(readText); database \(config.database)")
    }
}

/// One `/patroni` answer, as a child task's result.
final class StatusAnswer: Sendable {
    let endpoint: PatroniEndpoint
    let result: Result<PatroniNodeStatus, PatroniError>

    init(endpoint: PatroniEndpoint, result: Result<PatroniNodeStatus, PatroniError>) {
        self.endpoint = endpoint
        self.result = result
    }

    static func fetch(_ endpoint: PatroniEndpoint, client: PatroniClient) async -> StatusAnswer {
        let result: Result<PatroniNodeStatus, PatroniError>
        do {
            result = .success(try await client.patroni(at: endpoint))
        } catch {
            result = .failure(error)
        }
        return StatusAnswer(endpoint: endpoint, result: result)
    }
}
