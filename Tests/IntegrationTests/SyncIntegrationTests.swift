import Foundation
import Migration
import PGClient
import Patroni
import Sandbox
import Synchronization
import Testing

/// The physical sync on the sandbox, through the real `pgha` binary and its hooks: the target
/// cluster (ha1–ha3) is started by `sync.start_cluster` from the patroni.yml the config stage
/// renders, as a standby cluster of the single node. Every test ends with `pgha rollback`, which
/// stops the target cluster (`sync.stop_cluster --purge`) and drops the slot.
@Suite("Physical sync on the sandbox", .serialized, .enabled(if: SandboxFixture.enabled))
struct SyncIntegrationTests {
    let fixture: SandboxFixture
    let cli: CLIHarness

    init() throws {
        fixture = try SandboxFixture.load()
        cli = try CLIHarness.make()
    }

    var sandbox: SandboxConfiguration { fixture.sandbox }

    /// A physical playbook for this sandbox's addresses (playbooks/sandbox.yml hard-codes the default ones).
    func playbook(slot: String = "pgha_it", startHook: Bool = true, walLimit: String = "1GB", target: SandboxConfiguration.Cluster? = nil, stall: String = "2m") -> String {
        let cluster = target ?? sandbox.target
        let members = cluster.members.map { "    - {name: \($0.name), host: \($0.host)}" }.joined(separator: "\n")
        return """
            version: 1
            name: physical sync test
            source:
              host: \(sandbox.single.host)
              port: \(sandbox.single.port)
              user: \(sandbox.users.application)
              password: ${PROJECT_DB_PASSWORD}
              admin_user: \(sandbox.users.superuser)
              sslmode: disable
              databases: {project: \(sandbox.single.projectDatabase), shared: \(sandbox.single.sharedDatabase)}
              shared_password: ${SHARED_DB_PASSWORD}
            target:
              scope: \(cluster.scope)
              members:
            \(members)
              api_port: \(cluster.restPort)
              api_user: \(sandbox.users.restAPI)
              api_password: ${PATRONI_API_PASSWORD}
              port: \(sandbox.single.port)
              user: \(sandbox.users.application)
              password: ${PATRONI_PASSWORD}
              admin_user: \(sandbox.users.superuser)
              replication_user: \(sandbox.users.replication)
              sslmode: disable
              etcd_hosts: [\(sandbox.etcd.host):\(sandbox.etcd.clientPort)]
              patroni_dcs: {ttl: 20, loop_wait: 1, retry_timeout: 5}
            extensions:
              required: [pg_trgm]
            thresholds:
              min_members: 3
              max_lag_bytes: 1MB
              connect_timeout: 3s
            outputs:
              env_file: out/app.env
              env_single_node_file: out/app.single-node.env
              config_yaml: out/config.yaml
              haproxy_cfg: out/haproxy.cfg
              patroni_yml: out/patroni.yml
            sync:
              method: physical
              slot: \(slot)
              max_wal_retention: \(walLimit)
              caught_up_lag: 1MB
              cluster_timeout: 3m
              stall_timeout: \(stall)
            \(startHook ? "  start_cluster: '\"$PGHA_BIN\" sandbox start-cluster --patroni-yml \"$PGHA_PATRONI_YML\"'" : "")
              stop_cluster: '"$PGHA_BIN" sandbox stop-cluster --purge'
              hook_timeout: 2m
            on_failure: stop

            """
    }

    func workspace(_ text: String) throws -> Workspace {
        let work = try Workspace(cli)
        // Another suite (the shadow or cutover tests) may have left the target cluster running.
        _ = cli.run(["sandbox", "stop-cluster", "--purge"], in: work, timeout: 120)
        try text.write(toFile: work.path + "/sandbox.yml", atomically: true, encoding: .utf8)
        return work
    }

    /// Whatever a test left: its migration rolled back (the target cluster stopped and emptied, the
    /// slot dropped), or the target cluster stopped and emptied directly.
    func cleanUp(_ work: Workspace) {
        if FileManager.default.fileExists(atPath: work.stateDir + "/state.json") {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 180)
        }
        _ = cli.run(["sandbox", "stop-cluster", "--purge"], in: work, timeout: 120)
        // A slot a failed test left would make the next test "use the existing slot".
        _ = try? source("postgres").query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'pgha_it%' AND NOT active")
        work.remove()
    }

    func superuser(_ host: String, _ port: Int, database: String) throws -> PGConnection {
        try PGConnection.connect(PGConnectionConfig(
            host: host, port: port, database: database, user: sandbox.users.superuser,
            password: try sandbox.password(\.superuser), connectTimeout: .seconds(3)))
    }

    func source(_ database: String? = nil) throws -> PGConnection {
        try superuser(sandbox.single.host, sandbox.single.port, database: database ?? sandbox.single.projectDatabase)
    }

    /// Rolls the migration back (stopping the target cluster, dropping the slot) and checks it.
    func rollBack(_ work: Workspace, slot: String = "pgha_it") throws {
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 180)
        #expect(rollback.exitCode == 0, "\(rollback)")
        let r = try source().query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", [.text(slot)])
        #expect(try r.int(0, 0) == 0, "the slot survived the rollback")
        #expect(sandbox.target.members.allSatisfy { member in
            (try? String(contentsOfFile: sandbox.runDir + "/\(member.name).pid", encoding: .utf8)) == nil
        }, "target members still have PID files")
    }

    /// Per table of both databases: row count and an order-independent checksum of the rows.
    static let tableDigestSQL = """
        SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1
        """

    func digests(_ connection: PGConnection) throws -> [String: String] {
        var result: [String: String] = [:]
        let tables = try connection.query(Self.tableDigestSQL)
        for row in 0..<tables.rowCount {
            guard let table = tables.string(row, 0) else { continue }
            let d = try connection.query("SELECT count(*)::text || ':' || coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '-') FROM \(table) t")
            result[table] = d.string(0, 0)
        }
        let lo = try connection.query("SELECT count(*) FROM pg_largeobject_metadata")
        result["large objects"] = lo.string(0, 0)
        return result
    }

    /// Waits until `member` has replayed the single node's current position, then compares every
    /// table of both databases with the single node.
    /// Every sequence's last value.
    func sequences(_ connection: PGConnection) throws -> [String: Int64] {
        let r = try connection.query("SELECT schemaname || '.' || sequencename, coalesce(last_value, 0) FROM pg_sequences")
        var result: [String: Int64] = [:]
        for row in 0..<r.rowCount { result[r.string(row, 0) ?? "?"] = try r.int(row, 1) ?? 0 }
        return result
    }

    func expectSameData(on member: SandboxConfiguration.Member) async throws {
        let target = try await source().query("SELECT pg_current_wal_lsn()::text").string(0, 0).flatMap(LSN.init)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let replayed = try? await superuser(member.host, member.pgPort, database: "postgres").query("SELECT pg_last_wal_replay_lsn()::text").string(0, 0).flatMap(LSN.init)
            if let replayed, let target, replayed >= target { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        for database in [sandbox.single.projectDatabase, sandbox.single.sharedDatabase] {
            let sourceConnection = try source(database)
            let memberConnection = try superuser(member.host, member.pgPort, database: database)
            let expected = try digests(sourceConnection)
            let actual = try digests(memberConnection)
            #expect(actual == expected, "\(member.name)/\(database) differs from the single node")
            // WAL logs sequences ahead (32 values): a member may show more, never less.
            let ahead = try sequences(memberConnection)
            for (name, value) in try sequences(sourceConnection) {
                #expect((ahead[name] ?? -1) >= value, "\(member.name): sequence \(name) at \(ahead[name] ?? -1) < \(value) on the single node")
            }
        }
    }

    /// Inserts rows into `sync_probe` on the single node until stopped; returns how many.
    final class Writer: Sendable {
        let count = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        func run(_ connection: PGConnection) async {
            while !stop.load(ordering: .relaxed) {
                if (try? await connection.query("INSERT INTO sync_probe (note) VALUES ('during sync')")) != nil {
                    count.add(1, ordering: .relaxed)
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    func prepareProbeTable() throws {
        _ = try source().query("CREATE TABLE IF NOT EXISTS sync_probe (id bigserial PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
    }

    @Test("a run goes through sync: the cluster follows the single node, rows written during and after the copy reach every member, every table matches")
    func runThroughSync() async throws {
        try prepareProbeTable()
        let work = try workspace(playbook())
        defer { cleanUp(work) }
        let writer = Writer()
        let writing = Task { await writer.run(try! self.source()) }
        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 300)
        writer.stop.store(true, ordering: .relaxed)
        await writing.value
        #expect(run.exitCode == 0, "\(run)")
        #expect(run.stdout.contains("Stopped after stage 'sync'"))
        // The copy's bar shows when a look lands during it (15 MB may be copied between two looks);
        // the lag gauges always show.
        #expect(run.stdout.contains("replay lag"), "\(run)")
        #expect(writer.count.load(ordering: .relaxed) > 50, "the writer did not write during the sync")

        let status = cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work)
        let report = try CLIHarness.decodeReport(status.stdout)
        let sync = try #require(report.stages.first { $0.stage == .sync })
        #expect(sync.status == .passed)
        #expect(sync.gate.first { $0.name == "sync.replay_lag" }?.verdict == .pass)
        #expect(sync.gate.first { $0.name == "sync.system_identifier" }?.verdict == .pass)
        #expect(sync.waiting == nil)

        // After the copy: more rows, then every member has every row, the sequence and the large object.
        _ = try await source().query("INSERT INTO sync_probe (note) SELECT 'after sync' FROM generate_series(1, 500)")
        _ = try await source().query("SELECT nextval('ticket_number_seq')")
        for member in sandbox.target.members {
            try await expectSameData(on: member)
        }
        for secret in cli.secrets {
            #expect(!run.stdout.contains(secret) && !status.stdout.contains(secret))
        }
        try rollBack(work)
    }

    @Test("SIGKILL of the standby leader during sync: another member takes over, the stage finishes, and no row is lost", .timeLimit(.minutes(6)))
    func standbyLeaderKilled() async throws {
        try prepareProbeTable()
        // The operator starts two members first: the stage waits for the third, and the crash
        // happens while it waits, with rows arriving all the time.
        let work = try workspace(playbook(startHook: false, stall: "3m"))
        defer { cleanUp(work) }
        let writer = Writer()
        let writing = Task { await writer.run(try! self.source()) }
        let process = try cli.start(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work)
        #expect(process.waitForOutput("waiting for the standby cluster to appear", timeout: 120), "\(process.stdout)")
        let patroniYML = work.path + "/out/patroni.yml"
        let controller = SandboxController(configuration: sandbox)
        let (first, second, third) = (sandbox.target.members[0].name, sandbox.target.members[1].name, sandbox.target.members[2].name)
        _ = try await controller.startTargetCluster(patroniYML: patroniYML, only: [first, second], timeout: .seconds(60))
        // Both stream (the second copied from the standby leader): kill the standby leader.
        var victim: String?
        let deadline = ContinuousClock.now + .seconds(120)
        while victim == nil, ContinuousClock.now < deadline {
            let members = await targetMembers()
            if members.count == 2, members.allSatisfy({ $0.state?.rawValue == "streaming" }), let leader = members.first(where: { $0.role == .standbyLeader }) {
                try controller.crash(member: leader.name)
                victim = leader.name
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let killed = try #require(victim, "the two members did not both stream")
        #expect(process.process.isRunning, "the stage ended before the crash")
        // The other member takes over once the leader key expires (ttl 20 s) and follows the single node.
        let survivor = killed == first ? second : first
        var tookOver = false
        let takeover = ContinuousClock.now + .seconds(90)
        while !tookOver, ContinuousClock.now < takeover {
            tookOver = await targetMembers().contains { $0.name == survivor && $0.role == .standbyLeader && $0.state?.rawValue == "streaming" }
            if !tookOver { try await Task.sleep(for: .milliseconds(250)) }
        }
        #expect(tookOver, "\(survivor) did not become the standby leader")
        // The operator brings the crashed member back and starts the third: the stage finishes.
        _ = try await controller.startTargetCluster(patroniYML: patroniYML, only: [killed, third], timeout: .seconds(60))
        let result = process.wait(timeout: 240)
        writer.stop.store(true, ordering: .relaxed)
        await writing.value
        #expect(result.exitCode == 0, "\(result)")
        #expect(writer.count.load(ordering: .relaxed) > 100)
        _ = try await source().query("INSERT INTO sync_probe (note) SELECT 'after the crash' FROM generate_series(1, 100)")
        for member in sandbox.target.members {
            try await expectSameData(on: member)
        }
        try rollBack(work)
    }

    func targetMembers() async -> [PatroniMember] {
        let endpoints = sandbox.target.members.map { PatroniEndpoint(host: $0.host, port: $0.restPort) }
        let client = PatroniClient(configuration: PatroniClientConfiguration(endpoints: endpoints))
        var best: [PatroniMember] = []
        for (_, result) in await client.clusterFromEach() {
            if case .success(let cluster) = result, cluster.members.count > best.count { best = cluster.members }
        }
        return best
    }

    @Test("Ctrl-C while sync waits for the cluster: the wait shows in pgha status, the state is saved, and pgha resume finishes once the members run")
    func interruptedWait() async throws {
        let work = try workspace(playbook(startHook: false))
        defer { cleanUp(work) }
        let process = try cli.start(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work)
        #expect(process.waitForOutput("waiting for the standby cluster to appear", timeout: 120), "\(process.stdout)")
        let waiting = cli.run(["status", "--state-dir", work.stateDir], in: work)
        #expect(waiting.stdout.contains("sync WAITING since"), "\(waiting)")
        let json = try CLIHarness.decodeReport(cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work).stdout)
        #expect(json.stages.first { $0.stage == .sync }?.waiting?.what.contains("the standby cluster to appear") == true)
        process.signal(SIGINT)
        let interrupted = process.wait(timeout: 30)
        #expect(interrupted.exitCode == 130, "\(interrupted)")
        let state = try StateStore(directory: work.stateDir).load()
        #expect(state.stage(.sync).status == .running)
        #expect(state.steps.contains { $0.name == "create-slot:pgha_it" && $0.phase == .done })

        // The operator starts the members, then resumes.
        let start = cli.run(["sandbox", "start-cluster", "--patroni-yml", work.path + "/out/patroni.yml"], in: work, timeout: 120)
        #expect(start.exitCode == 0, "\(start)")
        let resume = cli.run(["resume", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 300)
        #expect(resume.exitCode == 0, "\(resume)")
        let after = try StateStore(directory: work.stateDir).load()
        #expect(after.stage(.sync).status == .passed)
        #expect(after.steps.filter { $0.name == "create-slot:pgha_it" }.count == 1, "the slot step was repeated")
        try rollBack(work)
    }

    @Test("a cluster of another system is refused before anything changes: the independent cluster has a writable leader")
    func otherSystemRefused() throws {
        let work = try workspace(playbook(target: sandbox.cluster))
        defer { cleanUp(work) }
        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(run.exitCode == 3, "\(run)")
        #expect(run.stdout.contains("cluster.standby"))
        #expect(run.stdout.contains("is a writable leader: this cluster was initialised on its own"))
        #expect(run.stdout.contains("new scope and empty data directories"))
        let r = try source().query("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgha_it'")
        #expect(try r.int(0, 0) == 0)
    }

    @Test("the WAL limit stops the stage when the slot holds back more than sync.max_wal_retention; rollback frees it")
    func walLimit() async throws {
        try prepareProbeTable()
        let work = try workspace(playbook(slot: "pgha_it_wal", startHook: false, walLimit: "4MB"))
        defer { cleanUp(work) }
        // A new slot reserves WAL from the last checkpoint's redo point: make that now.
        _ = try await source().query("CHECKPOINT")
        let process = try cli.start(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work)
        #expect(process.waitForOutput("waiting for the standby cluster to appear", timeout: 120), "\(process.stdout)")
        // Nobody streams from the slot; the single node writes 6 MB of WAL.
        _ = try await source().query("INSERT INTO sync_probe (note) SELECT repeat('x', 1000) FROM generate_series(1, 6000)")
        _ = try await source().query("SELECT pg_switch_wal()")
        let result = process.wait(timeout: 60)
        #expect(result.exitCode == 3, "\(result)")
        #expect(result.stdout.contains("holds back") && result.stdout.contains("more than sync.max_wal_retention (4.0 MB)"), "\(result)")
        #expect(result.stdout.contains("nothing streams from the slot"))
        try rollBack(work, slot: "pgha_it_wal")
        _ = try await source().query("DELETE FROM sync_probe WHERE note = repeat('x', 1000)")
    }
}
