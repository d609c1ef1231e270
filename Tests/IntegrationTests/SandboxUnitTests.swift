import PlainText
import Foundation
import Testing

@testable import Sandbox

/// Pure parts of the Sandbox module: no server, no network.
@Suite("Sandbox (unit)")
struct SandboxUnitTests {
    static let passwords = Passwords(
        superuser: "Su'perSecret1", replication: "ReplSecret22", rewind: "RewindSecret333",
        application: "AppSecret4444", restAPI: "ApiSecret55555")

    static func configuration(baseDir: String = "/tmp/pgha-unit", tls: Bool = false) throws -> SandboxConfiguration {
        try SandboxOptions(baseDir: baseDir, tls: tls).makeConfiguration()
    }

    // MARK: Configuration

    @Test func defaultsGiveTheDocumentedAddressesAndPorts() throws {
        let config = try Self.configuration()
        #expect(config.single.host == "127.0.0.10")
        #expect(config.single.port == 15432)
        #expect(config.cluster.members.map(\.name) == ["node1", "node2", "node3"])
        #expect(config.cluster.members.map(\.host) == ["127.0.0.11", "127.0.0.12", "127.0.0.13"])
        #expect(config.cluster.members.allSatisfy { $0.pgPort == 15432 && $0.restPort == 8008 })
        #expect(config.etcd.clientURL == "http://127.0.0.1:12379")
        #expect(config.etcd.peerURL == "http://127.0.0.1:12380")
        #expect(config.cluster.members[0].dataDir == "/tmp/pgha-unit/node1/data")
        #expect(config.cluster.members[0].socketDir == "/tmp/pgha-unit/node1")
        #expect(config.single.socketDir == "/tmp/pgha-unit/single")
        #expect(config.secrets.application == "/tmp/pgha-unit/secrets/app.password")
        #expect(config.single.projectDatabase == "distributed_postgres_cluster")
        #expect(config.single.sharedDatabase == "shared_knowledge")
        #expect(config.users.application == "dpg_cluster")
        #expect(config.patroniHostPorts == ["127.0.0.11:8008", "127.0.0.12:8008", "127.0.0.13:8008"])
        #expect(config.tls == nil)
    }

    @Test func optionsMoveAddressesAndPorts() throws {
        let config = try SandboxOptions(
            baseDir: "/srv/sb/", firstAddress: "127.0.1.20", pgPort: 25432, restPort: 9008, etcdPort: 22379
        ).makeConfiguration()
        #expect(config.baseDir == "/srv/sb")
        #expect(config.single.host == "127.0.1.20")
        #expect(config.cluster.members.map(\.host) == ["127.0.1.21", "127.0.1.22", "127.0.1.23"])
        #expect(config.cluster.members[2].apiURL == "http://127.0.1.23:9008")
        #expect(config.etcd.peerPort == 22380)
    }

    @Test(arguments: ["10.0.0.1", "127.0.0.253", "127.0.0", "127.0.0.01", "localhost"])
    func rejectsUnusableFirstAddresses(_ address: String) {
        #expect(throws: SandboxError.self) { try SandboxOptions(firstAddress: address).makeConfiguration() }
    }

    @Test func rejectsRelativeBaseDirAndSamePorts() {
        #expect(throws: SandboxError.self) { try SandboxOptions(baseDir: "tmp/x").makeConfiguration() }
        #expect(throws: SandboxError.self) { try SandboxOptions(pgPort: 8008, restPort: 8008).makeConfiguration() }
        let long = "/tmp/" + String(repeating: "d", count: 100)
        #expect(throws: SandboxError.self) { try SandboxOptions(baseDir: long).makeConfiguration() }
    }

    @Test func baseDirResolution() {
        #expect(SandboxOptions.resolveBaseDir(option: "/a", environment: ["PGHA_SANDBOX_DIR": "/b"]) == "/a")
        #expect(SandboxOptions.resolveBaseDir(option: nil, environment: ["PGHA_SANDBOX_DIR": "/b"]) == "/b")
        #expect(SandboxOptions.resolveBaseDir(option: nil, environment: [:]) == "/tmp/pgha-sandbox")
        #expect(SandboxOptions.resolvePatroniVenv(environment: ["PGHA_PATRONI_VENV": "/v"]) == "/v")
        #expect(SandboxOptions.resolvePatroniVenv(environment: [:]) == "/opt/pgha/patroni-venv")
    }

    @Test func configurationRoundTripsThroughSandboxJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pgha-unit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try Self.configuration(baseDir: dir, tls: true)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try config.encodedJSON().write(toFile: SandboxConfiguration.fileURL(baseDir: dir), atomically: true, encoding: .utf8)
        #expect(try SandboxConfiguration.load(baseDir: dir) == config)
        #expect(config.tls?.serverCertificates.keys.sorted() == ["ha", "node1", "node2", "node3", "single"])
    }

    @Test func everyServerCertificateIsForItsServersAddresses() throws {
        let config = try Self.configuration(tls: true)
        let hosts = SandboxTLS.serverHosts(config)
        #expect(Set(hosts.keys) == Set(config.tls?.serverCertificates.keys.map { $0 } ?? []))
        #expect(hosts["single"] == [config.single.host])
        for member in config.cluster.members { #expect(hosts[member.name] == [member.host], "\(member.name)") }
        // One certificate for the whole target cluster: its patroni.yml names one path for every member.
        #expect(hosts["ha"] == config.target.members.map(\.host))
        #expect(SandboxTLS.serverExtensions(ips: ["127.0.0.14", "127.0.0.15"])
            .contains("subjectAltName = IP:127.0.0.14, IP:127.0.0.15, IP:127.0.0.1, DNS:localhost\n"))
        let member = try #require(config.target.members.first)
        #expect(!SandboxRendering.targetMemberYAML(config, member: member, passwords: Self.passwords).contains("ssl"))
    }

    @Test func loadingAMissingSandboxSaysNotSetUp() {
        #expect {
            try SandboxConfiguration.load(baseDir: "/nonexistent/pgha-\(UUID().uuidString)")
        } throws: { ($0 as? SandboxError)?.code == .notSetUp }
    }

    // MARK: Secrets

    @Test func generatedPasswordsAreLongRandomAndAlphanumeric() throws {
        let first = try SandboxSecrets.generatePassword()
        let second = try SandboxSecrets.generatePassword()
        #expect(first.count == 32)
        #expect(first != second)
        #expect(first.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
    }

    @Test func secretsAreCreatedOnceWithMode0600AndNeverInSandboxJSON() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pgha-unit-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try Self.configuration(baseDir: dir)
        let first = try SandboxSecrets.ensure(config)
        let second = try SandboxSecrets.ensure(config)
        #expect(first == second)
        for path in [config.secrets.application, config.secrets.restAPI, config.secrets.pgpass] {
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(path)")
        }
        let dirMode = try FileManager.default.attributesOfItem(atPath: config.secrets.directory)[.posixPermissions] as? Int
        #expect(dirMode == 0o700)
        let json = try config.encodedJSON()
        for password in [first.superuser, first.replication, first.rewind, first.application, first.restAPI] {
            #expect(!json.contains(password))
        }
        let pgpass = try String(contentsOfFile: config.secrets.pgpass, encoding: .utf8)
        #expect(pgpass.contains("127.0.0.10:15432:*:dpg_cluster:\(first.application)"))
        #expect(pgpass.contains("127.0.0.13:15432:*:postgres:\(first.superuser)"))
        #expect("\(first)" == "Passwords(<redacted>)")
    }

    // MARK: Rendering

    @Test func patroniYAMLCarriesTheClusterSettings() throws {
        let config = try Self.configuration()
        let member = config.cluster.members[1]
        let yaml = SandboxRendering.patroniYAML(config, member: member, passwords: Self.passwords)
        for line in [
            "scope: 'pgha-sandbox'",
            "name: 'node2'",
            "  listen: '127.0.0.12:8008'",
            "    username: 'pgha_api'",
            "    password: 'ApiSecret55555'",
            "etcd3:",
            "  hosts: '127.0.0.1:12379'",
            "    ttl: 20",
            "    loop_wait: 1",
            "    retry_timeout: 5",
            "    maximum_lag_on_failover: 1048576",
            "      use_pg_rewind: true",
            "      use_slots: true",
            "        wal_level: logical",
            "        wal_log_hints: 'on'",
            "        hot_standby: 'on'",
            "        max_wal_senders: 10",
            "        max_replication_slots: 10",
            "        shared_buffers: 32MB",
            "  listen: '127.0.0.12:15432'",
            "  data_dir: '/tmp/pgha-unit/node2/data'",
            "  bin_dir: '/usr/lib/postgresql/15/bin'",
            "      username: 'replicator'",
            "      username: 'rewind_user'",
            "      password: 'Su''perSecret1'",
            "    - local all all peer",
            "    - host replication replicator 127.0.0.0/8 md5",
            "    - host all all 127.0.0.0/8 md5",
            "    unix_socket_directories: '/tmp/pgha-unit/node2'",
            "    - checkpoint: 'fast'",
        ] {
            #expect(yaml.split(separator: "\n").contains(Substring(line)), "missing line: \(line)")
        }
        #expect(!yaml.contains("certfile"))
        #expect(!yaml.contains("ssl:"))
    }

    @Test func patroniYAMLWithTLSNamesTheCertificates() throws {
        let config = try Self.configuration(tls: true)
        let yaml = SandboxRendering.patroniYAML(config, member: config.cluster.members[0], passwords: Self.passwords)
        #expect(yaml.contains("  certfile: '/tmp/pgha-unit/tls/node1.crt'"))
        #expect(yaml.contains("  keyfile: '/tmp/pgha-unit/tls/node1.key'"))
        #expect(yaml.contains("  cafile: '/tmp/pgha-unit/tls/ca.crt'"))
        #expect(yaml.contains("    ssl: 'on'"))
        #expect(yaml.contains("    ssl_cert_file: '/tmp/pgha-unit/tls/node1.crt'"))
        #expect(config.cluster.members[0].apiURL == "https://127.0.0.11:8008")
    }

    @Test func singleNodeSettingsAndSQL() throws {
        let config = try Self.configuration()
        let settings = SandboxRendering.singleNodeSettings(config)
        #expect(settings.contains("listen_addresses = '127.0.0.10'"))
        #expect(settings.contains("wal_level = logical"))
        #expect(settings.contains("max_replication_slots = 10"))
        #expect(settings.contains("shared_buffers = 32MB"))
        #expect(settings.contains("unix_socket_directories = '/tmp/pgha-unit/single'"))
        #expect(!settings.contains("ssl = on"))
        let hba = SandboxRendering.singleNodeHBA(config)
        #expect(hba.contains("local all all peer"))
        #expect(hba.contains("host all all 127.0.0.0/8 md5"))
        let sql = SandboxRendering.singleNodeRolesSQL(config, Self.passwords)
        #expect(sql.contains("ALTER ROLE \"postgres\" PASSWORD 'Su''perSecret1';"))
        #expect(sql.contains("CREATE DATABASE \"distributed_postgres_cluster\" OWNER \"dpg_cluster\""))
        #expect(sql.contains("CREATE DATABASE \"shared_knowledge\" OWNER \"dpg_cluster\""))
        let leaderSQL = SandboxRendering.applicationRoleAndDatabasesSQL(config, Self.passwords, superuserPassword: nil)
        #expect(!leaderSQL.contains("Su''perSecret1"))
        #expect(leaderSQL.contains("ALTER ROLE \"dpg_cluster\" LOGIN PASSWORD 'AppSecret4444';"))
        #expect(SandboxRendering.projectSampleSQL(config).contains("PRIMARY KEY"))
        #expect(SandboxRendering.sharedSampleSQL(config).contains("CREATE SEQUENCE"))
    }

    @Test func etcdArgumentsAreLoopbackOnly() throws {
        let arguments = SandboxRendering.etcdArguments(try Self.configuration())
        let pairs = Dictionary(uniqueKeysWithValues: stride(from: 0, to: arguments.count - 1, by: 2).map { (arguments[$0], arguments[$0 + 1]) })
        #expect(pairs["--listen-client-urls"] == "http://127.0.0.1:12379")
        #expect(pairs["--listen-peer-urls"] == "http://127.0.0.1:12380")
        #expect(pairs["--data-dir"] == "/tmp/pgha-unit/etcd/data")
    }

    // MARK: env

    @Test func envNamesPasswordFilesNeverPasswords() throws {
        let config = try Self.configuration()
        let environment = SandboxEnvironment(config)
        let values = Dictionary(uniqueKeysWithValues: environment.variables.map { ($0.name, $0.value) })
        for name in ["PATRONI_PASSWORD", "PATRONI_API_PASSWORD", "PROJECT_DB_PASSWORD", "SHARED_DB_PASSWORD"] {
            guard case .contentsOf = values[name] else {
                Issue.record("\(name) must be read from a file")
                continue
            }
        }
        #expect(values["PATRONI_HOSTS"] == .literal("127.0.0.11,127.0.0.12,127.0.0.13"))
        #expect(values["PATRONI_PORT"] == .literal("8008"))
        #expect(values["PATRONI_SHARED_DB"] == .literal("shared_knowledge"))
        #expect(values["PATRONI_SSLMODE"] == .literal("disable"))
        #expect(values["PGHA_TEST_PATRONI_HOSTS"] == .literal("127.0.0.11:8008,127.0.0.12:8008,127.0.0.13:8008"))
        #expect(values["PGHA_TEST_PG_PASSWORD_FILE"] == .literal("/tmp/pgha-unit/secrets/app.password"))
        let lines = environment.exportLines()
        #expect(lines.contains("export PATRONI_PASSWORD=\"$(cat '/tmp/pgha-unit/secrets/app.password')\"\n"))
        #expect(lines.contains("export ENABLE_PATRONI=true\n"))
        for password in [Self.passwords.application, Self.passwords.restAPI, Self.passwords.superuser] {
            #expect(!lines.contains(password))
        }
    }

    @Test func envQuotesAwkwardPaths() throws {
        let config = try Self.configuration(baseDir: "/tmp/it's a $dir")
        let lines = SandboxEnvironment(config).exportLines()
        #expect(lines.contains("export PGHA_SANDBOX_DIR='/tmp/it'\\''s a $dir'\n"))
        #expect(lines.contains("export PATRONI_PASSWORD=\"$(cat '/tmp/it'\\''s a $dir/secrets/app.password')\"\n"))
        #expect(SandboxEnvironment.shellQuoted("") == "''")
    }

    @Test func envEvaluatesInAShell() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pgha unit '\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try Self.configuration(baseDir: dir)
        let passwords = try SandboxSecrets.ensure(config)
        let script = SandboxEnvironment(config).exportLines()
            + "printf '%s|%s|%s' \"$PGHA_SANDBOX_DIR\" \"$PATRONI_PASSWORD\" \"$PATRONI_API_PASSWORD\"\n"
        let output = try await Processes.run("/bin/sh", ["-c", script], environment: ["PATH": "/usr/bin:/bin"])
        #expect(output.succeeded)
        #expect(output.stdout == "\((dir as NSString).standardizingPath)|\(passwords.application)|\(passwords.restAPI)")
    }

    // MARK: Status

    static func member(
        _ name: String, role: String?, state: String?, running: Bool = true, answering: Bool = true, lag: Int64? = 0
    ) -> SandboxStatus.MemberStatus {
        .init(
            name: name, address: "127.0.0.1:15432", apiURL: "http://127.0.0.1:8008", processRunning: running,
            apiAnswering: running && answering, inCluster: role != nil, role: role, state: state, lagBytes: role == nil || role == "leader" ? nil : lag,
            timeline: role == nil ? nil : 1)
    }

    static let single = SandboxStatus.SingleNodeStatus(address: "127.0.0.10:15432", up: true, version: "15.18", walLevel: "logical")
    static let etcd = SandboxStatus.EtcdStatus(endpoint: "http://127.0.0.1:12379", healthy: true)

    @Test func healthyNeedsALeaderAndTwoStreamingReplicas() {
        let healthy = SandboxStatus(
            baseDir: "/b", singleNode: Self.single, etcd: Self.etcd,
            members: [
                Self.member("node1", role: "leader", state: "running"),
                Self.member("node2", role: "replica", state: "streaming"),
                Self.member("node3", role: "sync_standby", state: "streaming"),
            ])
        #expect(healthy.healthy)
        #expect(healthy.leader == "node1")
        #expect(healthy.streamingReplicas == 2)
        #expect(healthy.exitStatus == .healthy)
        #expect(healthy.problems.isEmpty)

        let catchingUp = SandboxStatus(
            baseDir: "/b", singleNode: Self.single, etcd: Self.etcd,
            members: [
                Self.member("node1", role: "leader", state: "running"),
                Self.member("node2", role: "replica", state: "creating replica"),
                Self.member("node3", role: nil, state: nil, running: false),
            ])
        #expect(!catchingUp.healthy)
        #expect(catchingUp.exitStatus == .degraded)
        #expect(catchingUp.streamingReplicas == 0)
        #expect(catchingUp.problems == ["node2: replica, state creating replica", "node3: Patroni is not running"])

        let patroniKilled = SandboxStatus(
            baseDir: "/b", singleNode: Self.single, etcd: Self.etcd,
            members: [
                Self.member("node1", role: "leader", state: "running"),
                Self.member("node2", role: "replica", state: "streaming", running: false),
                Self.member("node3", role: "replica", state: "streaming"),
            ])
        #expect(!patroniKilled.healthy)
        #expect(patroniKilled.problems == ["node2: Patroni is not running"])
        #expect(patroniKilled.renderTable().contains("streaming (Patroni down)"))

        let apiSilent = SandboxStatus(
            baseDir: "/b", singleNode: Self.single, etcd: Self.etcd,
            members: [
                Self.member("node1", role: "leader", state: "running", answering: false),
                Self.member("node2", role: "replica", state: "streaming"),
                Self.member("node3", role: "replica", state: "streaming"),
            ])
        #expect(apiSilent.problems == ["node1: its REST API (http://127.0.0.1:8008) does not answer"])
        #expect(apiSilent.exitStatus == .degraded)

        let down = SandboxStatus(
            baseDir: "/b", singleNode: .init(address: "127.0.0.10:15432", up: false),
            etcd: .init(endpoint: "http://127.0.0.1:12379", healthy: false),
            members: [Self.member("node1", role: nil, state: nil, running: false)])
        #expect(down.exitStatus == .down)
        #expect(down.leader == nil)

        let twoLeaders = SandboxStatus(
            baseDir: "/b", singleNode: Self.single, etcd: Self.etcd,
            members: [Self.member("a", role: "leader", state: "running"), Self.member("b", role: "leader", state: "running")])
        #expect(twoLeaders.leader == nil)
        #expect(!twoLeaders.healthy)
    }

    @Test func statusJSONHasStableKeys() throws {
        let status = SandboxStatus(
            baseDir: "/b", singleNode: Self.single, etcd: Self.etcd,
            members: [Self.member("node1", role: "leader", state: "running")])
        let data = try JSONEncoder().encode(status)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == ["base_dir", "healthy", "leader", "streaming_replicas", "single_node", "etcd", "members", "target_members", "way_in", "problems"])
        #expect(object["leader"] as? String == "node1")
        #expect(object["streaming_replicas"] as? Int == 0)
        let member = try #require((object["members"] as? [[String: Any]])?.first)
        #expect(Set(member.keys).isSuperset(of: ["name", "address", "api_url", "role", "state", "timeline", "process_running", "api_answering", "in_cluster"]))
        let single = try #require(object["single_node"] as? [String: Any])
        #expect(single["wal_level"] as? String == "logical")
        #expect(try JSONDecoder().decode(SandboxStatus.self, from: data) == status)
    }

    @Test func tableRendering() {
        let table = TextTable(header: ["A", "LONGER"], rows: [["xyz", "1"], ["", ""]]).render()
        #expect(table == "A    LONGER\n---  ------\nxyz  1\n")
        let status = SandboxStatus(
            baseDir: "/b", singleNode: Self.single, etcd: Self.etcd,
            members: [
                Self.member("node1", role: "leader", state: "running"),
                Self.member("node2", role: "replica", state: "streaming", lag: 3 * 1024 * 1024 + 512 * 1024),
                Self.member("node3", role: nil, state: nil, running: false),
            ])
        let text = status.renderTable()
        #expect(text.contains("node1   127.0.0.1:15432  leader   running            1\n"))
        #expect(text.contains("node2   127.0.0.1:15432  replica  streaming  3.5 MB  1\n"))
        #expect(text.contains("node3   127.0.0.1:15432  -        stopped    -       -\n"))
        #expect(text.contains("single node  127.0.0.10:15432        up       PostgreSQL 15.18, wal_level=logical\n"))
        #expect(text.contains("problem: node3: Patroni is not running\n"))
        #expect(formatBytes(0) == "0 B")
        #expect(formatBytes(2048) == "2.0 kB")
    }

    // MARK: Controller

    /// A cluster view that never changes (the controller's pure parts need no server).
    struct FixedObserver: ClusterObserver {
        var cluster: ObservedCluster?
        func observe() async -> ObservedCluster? { cluster }
    }

    @Test func timeoutNamesWhatDidNotComeUpAndTheLogs() throws {
        let config = try Self.configuration()
        let controller = SandboxController(configuration: config, observer: FixedObserver(cluster: nil))
        let members = [
            ObservedMember(name: "node1", role: "leader", state: "running"),
            ObservedMember(name: "node2", role: "replica", state: "creating replica"),
        ]
        let error = controller.clusterTimeoutError(members, answering: ["node1", "node2"], applicationReady: true)
        #expect(error.code == .timeout)
        #expect(error.message.contains("the REST API of node3 (http://127.0.0.13:8008) does not answer"))
        #expect(error.message.contains("node2 is replica, state creating replica, not streaming"))
        #expect(error.message.contains("node3 is not in the cluster"))
        #expect(!error.message.contains("node1 is"))
        #expect(error.advice == "read /tmp/pgha-unit/logs/node3.log, /tmp/pgha-unit/logs/node2.log")

        let noLeader = controller.clusterTimeoutError([], answering: [], applicationReady: false)
        #expect(noLeader.message.contains("no leader was elected"))
        #expect(noLeader.advice?.contains("/tmp/pgha-unit/logs/node1.log") == true)
    }

    // MARK: A replica that cannot start

    static func view(_ node2: String?, leader: String = "running") -> [ObservedMember] {
        [ObservedMember(name: "node1", role: "leader", state: leader)]
            + (node2.map { [ObservedMember(name: "node2", role: "replica", state: $0)] } ?? [])
    }

    @Test func aReplicaFailingToStartAgainAndAgainIsRebuiltOnceAfterThePatience() {
        var watch = StartFailureWatch()
        // Patroni's cycle: starting, start failed, starting, start failed... (seen every 250 ms)
        let states = ["starting", "start failed", "start failed", "starting", "start failed", "starting"]
        var due: [(Int, [String])] = []
        for tick in 0..<60 {
            let now = Duration.milliseconds(250 * tick)
            let names = watch.observe(Self.view(states[tick % states.count]), at: now)
            if !names.isEmpty { due.append((tick, names)) }
        }
        // First failure at tick 1 (0.25 s); 8 s later is tick 33.
        #expect(due.count == 1)
        #expect(due.first?.0 == 33)
        #expect(due.first?.1 == ["node2"])
        #expect(watch.rebuilt == ["node2"])
    }

    @Test func oneFailedStartOrAReplicaThatRecoversIsLeftAlone() {
        var single = StartFailureWatch()
        // One failed attempt, then still starting for a long time: not yet "again and again".
        #expect(single.observe(Self.view("start failed"), at: .zero).isEmpty)
        for second in 1...30 {
            #expect(single.observe(Self.view("starting"), at: .seconds(second)).isEmpty)
        }
        // Failing, then streaming: the count starts again from nothing.
        var recovering = StartFailureWatch()
        _ = recovering.observe(Self.view("start failed"), at: .zero)
        _ = recovering.observe(Self.view("starting"), at: .seconds(2))
        _ = recovering.observe(Self.view("start failed"), at: .seconds(4))
        #expect(recovering.observe(Self.view("streaming"), at: .seconds(6)).isEmpty)
        #expect(recovering.failing.isEmpty)
        _ = recovering.observe(Self.view("start failed"), at: .seconds(7))
        _ = recovering.observe(Self.view("starting"), at: .seconds(9))
        #expect(recovering.observe(Self.view("start failed"), at: .seconds(14)).isEmpty, "7 s of failing, not 8")
        #expect(recovering.observe(Self.view("start failed"), at: .seconds(15)) == ["node2"])
    }

    @Test func noRebuildWithoutARunningLeaderAndNeverTheLeader() {
        var watch = StartFailureWatch()
        let noLeader = [
            ObservedMember(name: "node1", role: "replica", state: "start failed"),
            ObservedMember(name: "node2", role: "replica", state: "start failed"),
        ]
        for second in 0...20 {
            let states = second % 2 == 0 ? noLeader : noLeader.map { var m = $0; m.state = "starting"; return m }
            #expect(watch.observe(states, at: .seconds(second)).isEmpty)
        }
        // A leader that is not running yet (its own start failing) is never rebuilt, nor anyone else.
        var starting = StartFailureWatch()
        for second in 0...20 {
            let node2 = second % 2 == 0 ? "start failed" : "starting"
            #expect(starting.observe(Self.view(node2, leader: "start failed"), at: .seconds(second)).isEmpty)
        }
        // Once the leader runs, the replica that kept failing is due at once.
        #expect(starting.observe(Self.view("start failed"), at: .seconds(21)) == ["node2"])
    }

    @Test func lastFatalFindsWhatStoppedPostgreSQLWithoutPasswords() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pgha-fatal-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("node2.log").path
        try """
            2026-12-04 21:01:30.504 UTC [1] FATAL:  configuration file "/x/postgresql.auto.conf" contains errors
            2026-12-04 21:01:32,539 ERROR: postmaster is not running
            """.write(toFile: log, atomically: true, encoding: .utf8)
        #expect(SandboxController.lastFatal(log) == "configuration file \"/x/postgresql.auto.conf\" contains errors")
        try "x FATAL:  password authentication failed for user \"app\"\n".write(toFile: log, atomically: true, encoding: .utf8)
        #expect(SandboxController.lastFatal(log) == "[line redacted]")
        #expect(SandboxController.lastFatal(dir.appendingPathComponent("missing.log").path) == nil)
    }

    // MARK: Helpers

    @Test func redactionDropsPasswordLines() {
        let text = "ERROR: syntax error\nLINE 1: ALTER ROLE x PASSWORD 'secret'\nHINT: fine"
        #expect(SandboxController.redacted(text) == "ERROR: syntax error\n[line redacted]\nHINT: fine")
    }

    @Test func ipv4Arithmetic() {
        #expect(IPv4("127.0.0.10")?.adding(3).description == "127.0.0.13")
        #expect(IPv4("256.0.0.1") == nil)
        #expect(IPv4("1.2.3") == nil)
    }

    @Test func runCapturesOutputAndExitStatus() async throws {
        let output = try await Processes.run(
            "/bin/sh", ["-c", "read line; echo \"out:$line\"; echo err >&2; exit 3"],
            environment: ["PATH": "/usr/bin:/bin"], input: "hello\n")
        #expect(output.status == 3)
        #expect(output.stdout == "out:hello\n")
        #expect(output.stderr == "err\n")
        #expect(!output.timedOut)
    }

    @Test func runStopsACommandThatOutlivesItsTimeout() async throws {
        // 30 s of sleep against a 200 ms timeout: only the timer can end it this soon, with SIGTERM.
        let slow = try await Processes.run("/bin/sleep", ["30"], environment: ["PATH": "/usr/bin:/bin"], timeout: .milliseconds(200))
        #expect(slow.timedOut)
        #expect(!slow.succeeded)
        let quick = try await Processes.run("/bin/true", [], environment: ["PATH": "/usr/bin:/bin"], timeout: .seconds(30))
        #expect(!quick.timedOut && quick.succeeded)
    }

    @Test func prerequisitesNameTheInstallCommand() throws {
        var options = SandboxOptions(baseDir: "/tmp/pgha-unit")
        options.patroniVenv = "/nonexistent/venv"
        options.postgresBinDir = "/nonexistent/bin"
        let missing = SandboxPrerequisites.missing(for: try options.makeConfiguration())
        #expect(missing.contains { $0.what == "/nonexistent/venv/bin/patroni" && $0.install.contains("pip install 'patroni[etcd]'") })
        #expect(missing.contains { $0.what == "/nonexistent/bin/initdb" && $0.install.contains("postgresql-15") })
    }

    // MARK: A sandbox spent by a migration

    @Test func aCutoversFreezeInPostgresqlAutoConfMakesTheSandboxSpent() throws {
        // As ALTER SYSTEM writes it; the last assignment wins, a comment or another setting does not count.
        let header = "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n"
        #expect(SandboxController.freezesWrites(autoConf: header + "default_transaction_read_only = 'on'\n"))
        #expect(SandboxController.freezesWrites(autoConf: header + "work_mem = '8MB'\nDEFAULT_TRANSACTION_READ_ONLY='true'\n"))
        #expect(!SandboxController.freezesWrites(autoConf: header))
        #expect(!SandboxController.freezesWrites(autoConf: header + "# default_transaction_read_only = 'on'\n"))
        #expect(!SandboxController.freezesWrites(autoConf: header + "default_transaction_read_only = 'off'\n"))
        #expect(!SandboxController.freezesWrites(autoConf: header + "default_transaction_read_only = 'on'\ndefault_transaction_read_only = 'off'\n"))
        #expect(!SandboxController.freezesWrites(autoConf: header + "default_transaction_isolation = 'on'\n"))

        let base = FileManager.default.temporaryDirectory.appendingPathComponent("pgha-spent-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let controller = SandboxController(configuration: try Self.configuration(baseDir: base))
        #expect(controller.spentReason() == nil)  // no single node at all
        let dataDir = controller.configuration.single.dataDir
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let autoConf = dataDir + "/postgresql.auto.conf"
        try (header + "default_transaction_read_only = 'off'\n").write(toFile: autoConf, atomically: true, encoding: .utf8)
        #expect(controller.spentReason() == nil)
        try (header + "default_transaction_read_only = 'on'\n").write(toFile: autoConf, atomically: true, encoding: .utf8)
        let reason = try #require(controller.spentReason())
        #expect(reason.contains(autoConf))
    }

    // MARK: SQL quoting (PlainText, shared with the cutover)

    @Test func sqlQuotingKeepsPlainNamesBareAndQuotesTheRest() {
        #expect(SQLQuoting.identifier("pgha_way_back") == "pgha_way_back")
        #expect(SQLQuoting.identifier("_x1") == "_x1")
        #expect(SQLQuoting.identifier("Mixed") == "\"Mixed\"")
        #expect(SQLQuoting.identifier("1st") == "\"1st\"")
        #expect(SQLQuoting.identifier("a b") == "\"a b\"")
        #expect(SQLQuoting.identifier("é") == "\"é\"")
        #expect(SQLQuoting.identifier("we\"ird") == "\"we\"\"ird\"")
        #expect(SQLQuoting.identifier("") == "\"\"")
        #expect(SQLQuoting.quotedIdentifier("dpg_cluster") == "\"dpg_cluster\"")
        #expect(SQLQuoting.literal("it's") == "'it''s'")
        #expect(SQLQuoting.literal("") == "''")
    }
}
