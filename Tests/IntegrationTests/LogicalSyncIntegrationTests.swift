import Foundation
import Migration
import PGClient
import Sandbox
import Testing

/// The logical method's sync on the sandbox: the single node copied into new databases on the
/// independent cluster node1-node3 (playbooks/sandbox-logical.yml, its own names), rows written
/// afterwards arriving, `pgha compare` identical, DDL on the single node during sync stopping the
/// stage with the column named, and the rollback leaving nothing behind on either side.
@Suite(.enabled(if: SandboxFixture.enabled), .serialized)
struct LogicalSyncIntegrationTests {
    let cli: CLIHarness
    let sandbox: SandboxConfiguration
    let cutover: CutoverIntegrationTests

    init() throws {
        cli = try CLIHarness.make()
        sandbox = try SandboxFixture.load().sandbox
        cutover = try CutoverIntegrationTests()
    }

    /// playbooks/sandbox-logical.yml with names of its own (slot, publication, target databases).
    func workspace() throws -> Workspace {
        let work = try Workspace(cli)
        var text = try String(contentsOfFile: CLIHarness.repository + "/playbooks/sandbox-logical.yml", encoding: .utf8)
        for (old, new) in [
            ("slot: pgha_sync", "slot: pgha_lt\n  publication: pgha_lt"),
            ("project: ha_distributed_postgres_cluster", "project: lt_project"),
            ("shared: ha_shared_knowledge", "shared: lt_shared"),
            ("on_failure: rollback", "on_failure: stop"),
        ] {
            guard text.contains(old) else { throw HarnessError("sandbox-logical.yml lacks \(old)") }
            text = text.replacingOccurrences(of: old, with: new)
        }
        try text.write(toFile: work.path + "/logical.yml", atomically: true, encoding: .utf8)
        return work
    }

    func leader(database: String) throws -> PGConnection {
        for m in sandbox.cluster.members {
            if let c = try? PGConnection.connect(PGConnectionConfig(host: m.host, port: m.pgPort, database: database, user: sandbox.users.superuser,
                                                                   password: try sandbox.password(\.superuser), connectTimeout: .seconds(3))),
               (try? c.query("SELECT NOT pg_is_in_recovery()").bool(0, 0)) == true { return c }
        }
        throw HarnessError("no writable leader with database \(database)")
    }

    /// Nothing of the sync left: no database on the cluster, no publication or slot on the single node.
    func expectClean() throws {
        let postgres = try leader(database: "postgres")
        #expect(try postgres.query("SELECT count(*) FROM pg_database WHERE datname IN ('lt_project', 'lt_shared')").int(0, 0) == 0)
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        #expect(try source.query("SELECT count(*) FROM pg_publication WHERE pubname = 'pgha_lt'").int(0, 0) == 0)
        #expect(try source.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgha_lt%'").int(0, 0) == 0)
    }

    @Test("sync copies both databases, then follows the single node; compare finds them identical; rollback removes everything")
    func syncFollowCompareRollback() throws {
        let work = try workspace()
        defer {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
            work.remove()
        }
        let run = cli.run(["run", "logical.yml", "--state-dir", work.stateDir], in: work, timeout: 300)
        #expect(run.exitCode == 5 && run.stdout.contains("gate sync: PASS"), "\(run)")
        #expect(run.stdout.contains("Stopped before stage 'shadow'"), "\(run)")
        let state = try StateStore(directory: work.stateDir).load()
        #expect(state.stage(.sync).status == .passed)

        // Copied, then followed: a row written on the single node arrives on the cluster.
        let cluster = try leader(database: "lt_project")
        #expect(try cluster.query("SELECT count(*) FROM pgbench_accounts").int(0, 0) == 100_000)
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        let title = "logical-\(UUID().uuidString)"
        _ = try source.query("INSERT INTO tasks (project_id, title) SELECT min(id), $1 FROM projects", [.text(title)])
        defer { _ = try? source.query("DELETE FROM tasks WHERE title = $1", [.text(title)]) }
        var arrived = false
        for _ in 0..<100 where !arrived {
            arrived = try cluster.query("SELECT count(*) FROM tasks WHERE title = $1", [.text(title)]).int(0, 0) == 1
            if !arrived { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(arrived, "a row written on the single node reached the cluster within 5 s")

        let compare = cli.run(["compare", "logical.yml"], in: work, timeout: 120)
        #expect(compare.exitCode == 0 && compare.stdout.contains("identical: every table agrees"), "\(compare)")
        cutover.expectNoSecrets(under: work.stateDir)

        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(rollback.exitCode == 0, "\(rollback)")
        try expectClean()
    }

    @Test("DDL on the single node during sync stops the stage, naming the column; resume after the same DDL on the cluster continues")
    func ddlDuringSyncStops() throws {
        let work = try workspace()
        let source = try cutover.superuser(sandbox.single.host, sandbox.single.port)
        defer {
            _ = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
            _ = try? source.query("ALTER TABLE projects DROP COLUMN IF EXISTS pgha_lt_note")
            work.remove()
        }
        // Interrupted once the subscriptions exist (SIGKILL), the DDL made, then resumed.
        let first = try cli.start(["run", "logical.yml", "--state-dir", work.stateDir], in: work)
        #expect(first.waitForOutput("subscription pgha_lt_shared_knowledge on the cluster", timeout: 120), "\(first.stdout)")
        first.signal(SIGKILL)
        _ = first.wait(timeout: 30)
        _ = try source.query("ALTER TABLE projects ADD COLUMN pgha_lt_note text")
        let resumed = cli.run(["resume", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(resumed.exitCode == 3, "\(resumed)")
        #expect(resumed.stdout.contains("the single node's schema changed during sync"), "\(resumed)")
        #expect(resumed.stdout.contains("public.projects.pgha_lt_note text only on the single node"), "\(resumed)")
        // The same DDL on the cluster: the copy goes on.
        _ = try leader(database: "lt_project").query("ALTER TABLE projects ADD COLUMN pgha_lt_note text")
        let again = cli.run(["resume", "--state-dir", work.stateDir], in: work, timeout: 300)
        #expect(again.exitCode == 5 && again.stdout.contains("gate sync: PASS"), "\(again)")
        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work, timeout: 120)
        #expect(rollback.exitCode == 0, "\(rollback)")
        try expectClean()
    }
}
