import Foundation
import PGClient
import Patroni
import Sandbox
import Synchronization
import Testing

/// The sandbox that `scripts/test` started (`pgha sandbox up`), found through
/// PGHA_TEST_SANDBOX_DIR. Disabled when that is unset; with PGHA_REQUIRE_SANDBOX=1 it runs anyway
/// and fails on the `#require` of the directory.
@Suite(
    "Sandbox against the running sandbox",
    .enabled(if: ProcessInfo.processInfo.environment["PGHA_TEST_SANDBOX_DIR"] != nil || TestEnvironment.required),
    .serialized)
struct SandboxIntegrationTests {
    func configuration() throws -> SandboxConfiguration {
        let dir = try #require(
            ProcessInfo.processInfo.environment["PGHA_TEST_SANDBOX_DIR"],
            "PGHA_TEST_SANDBOX_DIR is not set: run `eval \"$(pgha sandbox env)\"` after `pgha sandbox up`")
        return try SandboxConfiguration.load(baseDir: dir)
    }

    @Test("sandbox.json loads and agrees with the environment")
    func loadsConfiguration() throws {
        let config = try configuration()
        #expect(config.cluster.members.count == 3)
        #expect(config.single.projectDatabase == "distributed_postgres_cluster")
        if let hosts = ProcessInfo.processInfo.environment["PGHA_TEST_PATRONI_HOSTS"] {
            #expect(hosts == config.patroniHostPorts.joined(separator: ","))
        }
        // The password files exist and are private.
        for path in [config.secrets.application, config.secrets.restAPI, config.secrets.superuser] {
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(path)")
        }
        // sandbox.json carries no password.
        let json = try String(contentsOfFile: SandboxConfiguration.fileURL(baseDir: config.baseDir), encoding: .utf8)
        #expect(!json.contains(try config.password(\.application)))
        #expect(!json.contains(try config.password(\.restAPI)))
    }

    @Test("status: single node up, etcd healthy, one leader and two streaming replicas")
    func statusIsHealthy() async throws {
        let config = try configuration()
        let status = await SandboxController(configuration: config).status()
        #expect(status.healthy, "problems: \(status.problems)")
        #expect(status.leader != nil)
        #expect(status.streamingReplicas == 2)
        #expect(status.singleNode.up)
        #expect(status.singleNode.walLevel == "logical")
        #expect(status.etcd.healthy)
        #expect(status.exitStatus == .healthy)
    }

    @Test("the Patroni REST API agrees: one leader, two replicas streaming")
    func clusterViewFromPatroni() async throws {
        let config = try configuration()
        let endpoints = config.cluster.members.map { PatroniEndpoint(host: $0.host, port: $0.restPort, useTLS: config.tls != nil) }
        let client = PatroniClient(configuration: PatroniClientConfiguration(endpoints: endpoints))
        let cluster = try await client.cluster().value
        #expect(cluster.members.filter { $0.role.isLeader }.count == 1)
        #expect(cluster.members.filter { $0.role.isReplica && $0.state == .streaming }.count == 2)
        #expect(Set(cluster.members.map(\.name)) == ["node1", "node2", "node3"])
    }

    @Test("the single node answers the application role with wal_level=logical and sample data")
    func singleNodeThroughPGClient() async throws {
        let config = try configuration()
        let connection = try await PGConnection.connect(PGConnectionConfig(
            host: config.single.host, port: config.single.port, database: config.single.projectDatabase,
            user: config.users.application, password: try config.password(\.application),
            connectTimeout: .seconds(5), applicationName: "pgha-sandbox-tests"))
        defer { connection.close() }
        let walLevel = try await connection.query("SHOW wal_level")
        #expect(walLevel.string(0, 0) == "logical")
        let owner = try await connection.query(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        #expect(owner.string(0, 0) == "dpg_cluster")
        let tables = try await connection.query(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = 'dpg_cluster'")
        #expect(try tables.int(0, 0) ?? 0 >= 2)
    }

    @Test("the cluster leader has the application role and both databases")
    func leaderHasApplicationObjects() async throws {
        let config = try configuration()
        let status = await SandboxController(configuration: config).status()
        let leaderName = try #require(status.leader)
        let leader = try #require(config.cluster.members.first { $0.name == leaderName })
        for database in [config.cluster.projectDatabase, config.cluster.sharedDatabase] {
            let connection = try await PGConnection.connect(PGConnectionConfig(
                host: leader.host, port: leader.pgPort, database: database, user: config.users.application,
                password: try config.password(\.application), connectTimeout: .seconds(5)))
            defer { connection.close() }
            #expect(try await connection.isInRecovery() == false)
        }
    }

    @Test("up rebuilds a replica whose PostgreSQL cannot start any more (a bad postgresql.auto.conf) from the leader")
    func upRebuildsAReplicaThatCannotStart() async throws {
        let config = try configuration()
        let controller = SandboxController(configuration: config)
        let before = await controller.status()
        let leader = try #require(before.leader)
        let replica = try #require(config.cluster.members.first { $0.name != leader })
        // Stop its Patroni (SIGTERM: Patroni stops its PostgreSQL first), then break the data directory.
        let pidPath = (config.runDir as NSString).appendingPathComponent("\(replica.name).pid")
        let pidText = try String(contentsOfFile: pidPath, encoding: .utf8)
        let pid = try #require(pid_t(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(pid, SIGTERM) == 0)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        while kill(pid, 0) == 0, clock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(kill(pid, 0) != 0, "Patroni \(replica.name) did not stop")
        let autoConf = (replica.dataDir as NSString).appendingPathComponent("postgresql.auto.conf")
        let handle = try #require(FileHandle(forWritingAtPath: autoConf))
        handle.seekToEndOfFile()
        handle.write(Data("work_mem = 'not a size'\n".utf8))
        try handle.close()

        let messages = Mutex<[String]>([])
        let report = try await controller.up(timeout: .seconds(120)) { line in messages.withLock { $0.append(line) } }
        let said = messages.withLock { $0 }
        #expect(report.started == [replica.name])
        #expect(said.contains { $0.contains("\(replica.name) cannot start its PostgreSQL") && $0.contains("postgresql.auto.conf") })
        #expect(said.contains { $0.hasPrefix("\(replica.name): rebuilding its data directory from the leader") })
        #expect(report.status.healthy, "problems: \(report.status.problems)")
        #expect(report.status.streamingReplicas == 2)
        let rebuilt = try String(contentsOfFile: autoConf, encoding: .utf8)
        #expect(!rebuilt.contains("not a size"))
    }
}
