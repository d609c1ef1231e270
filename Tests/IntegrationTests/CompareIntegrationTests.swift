import Foundation
import Migration
import PGClient
import Sandbox
import Testing

/// `pgha compare` on the sandbox: the single node against the standby cluster the physical sync
/// made (identical), then, after the cutover, with differences planted on the single node (a row
/// changed, one deleted, one added; a composite key) — each found down to its row, exit 1.
@Suite(.enabled(if: SandboxFixture.enabled), .serialized)
struct CompareIntegrationTests {
    let cli: CLIHarness
    let cutover: CutoverIntegrationTests

    init() throws {
        cli = try CLIHarness.make()
        cutover = try CutoverIntegrationTests()
    }

    @Test("identical after sync; after cutover, planted differences are named row by row")
    func identicalThenPlantedDifferences() throws {
        let work = try cutover.workspace()
        // A table whose json column has no extended hash function: compared by the rows' text.
        let single = try cutover.superuser(cutover.sandbox.single.host, cutover.sandbox.single.port)
        _ = try single.query("CREATE TABLE IF NOT EXISTS pgha_compare_json (id int PRIMARY KEY, doc json)")
        _ = try single.query("INSERT INTO pgha_compare_json SELECT g, json_build_object('n', g) FROM generate_series(1, 50) g ON CONFLICT DO NOTHING")
        defer {
            cutover.restore(work)
            _ = try? cutover.superuser(cutover.sandbox.single.host, cutover.sandbox.single.port).query("DROP TABLE IF EXISTS pgha_compare_json")
        }
        let sync = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "sync"], in: work, timeout: 300)
        #expect(sync.exitCode == 0, "\(sync)")

        // The standby cluster follows the single node: every table identical.
        let same = cli.run(["compare", "sandbox.yml", "--json", "--chunk-rows", "20000"], in: work, timeout: 300)
        #expect(same.exitCode == 0, "\(same)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(same.stdout.utf8)) as? [String: Any], "\(same)")
        #expect(document["identical"] as? Bool == true, "\(same.stdout)")
        let report = try #require(document["report"] as? [String: Any])
        let tables = try #require(report["tables"] as? [[String: Any]])
        let accounts = try #require(tables.first { $0["table"] as? String == "public.pgbench_accounts" }, "\(tables)")
        #expect(accounts["sourceRows"] as? Int == 100_000 && accounts["targetRows"] as? Int == 100_000 && accounts["ranges"] as? Int == 6, "\(accounts)")
        #expect(tables.contains { $0["table"] as? String == "public.item_tags" && $0["status"] as? String == "identical" }, "\(tables)")
        #expect(accounts["rowHash"] as? String == "record", "\(accounts)")
        #expect(tables.contains { $0["table"] as? String == "public.pgha_compare_json" && $0["rowHash"] as? String == "text" && $0["status"] as? String == "identical" }, "\(tables)")
        print("[compare] \(tables.count) tables identical in \(report["elapsedSeconds"] ?? "?") s, \(document["mebibytesPerSecond"] ?? "?") MiB/s")

        // Resumable: a first run records what it found identical, a second with the same file
        // compares nothing again (as after an interruption).
        let resumeFile = work.path + "/compare.resume"
        let first = cli.run(["compare", "sandbox.yml", "--table", "public.pgbench_accounts", "--table", "public.item_tags", "--resume-file", resumeFile], in: work, timeout: 300)
        #expect(first.exitCode == 0, "\(first)")
        let recorded = Set((try String(contentsOfFile: resumeFile, encoding: .utf8)).split(separator: "\n").map(String.init))
        #expect(recorded == ["\(cutover.sandbox.single.projectDatabase).public.pgbench_accounts", "\(cutover.sandbox.single.sharedDatabase).public.item_tags"], "\(recorded)")
        #expect(try FileManager.default.attributesOfItem(atPath: resumeFile)[.posixPermissions] as? Int == 0o600)
        let again = cli.run(["compare", "sandbox.yml", "--resume-file", resumeFile], in: work, timeout: 300)
        #expect(again.exitCode == 0, "\(again)")
        #expect(again.stdout.contains("2 table(s) listed in \(resumeFile) as identical are not compared again"), "\(again.stdout)")
        #expect(again.stdout.contains("public.pgbench_accounts: identical (compared before the interruption)"), "\(again.stdout)")
        #expect(again.stdout.contains("public.pgbench_branches: identical ("), "\(again.stdout)")
        let unusable = cli.run(["compare", "sandbox.yml", "--resume-file", work.path + "/no/such/dir/file"], in: work, timeout: 60)
        #expect(unusable.exitCode == 2 && unusable.stderr.contains("cannot use --resume-file"), "\(unusable)")

        // After the cutover the single node no longer follows physically: plant differences there
        // (pgha's own session may write on the frozen single node).
        let run = cli.run(["resume", "--state-dir", work.stateDir, "--until", "cutover"], in: work, timeout: 300)
        #expect(run.exitCode == 0, "\(run)")
        // Undone below whatever happens: the sandbox's data set is shared by every test.
        let project = try cutover.superuser(cutover.sandbox.single.host, cutover.sandbox.single.port)
        let shared = try cutover.superuser(cutover.sandbox.single.host, cutover.sandbox.single.port, database: cutover.sandbox.single.sharedDatabase)
        _ = try project.query("CREATE TEMPORARY TABLE planted_away AS SELECT * FROM pgbench_accounts WHERE aid = 777")
        defer {
            _ = try? project.query("UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid = 4242")
            _ = try? project.query("INSERT INTO pgbench_accounts SELECT * FROM planted_away ON CONFLICT DO NOTHING")
            _ = try? project.query("DELETE FROM pgbench_accounts WHERE aid = 100001")
            _ = try? shared.query("INSERT INTO item_tags (item_id, tag) VALUES (3, 'odd') ON CONFLICT DO NOTHING")
        }
        _ = try project.query("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 4242")
        _ = try project.query("DELETE FROM pgbench_accounts WHERE aid = 777")
        _ = try project.query("INSERT INTO pgbench_accounts (aid, bid, abalance, filler) VALUES (100001, 1, 0, 'planted')")
        _ = try shared.query("DELETE FROM item_tags WHERE item_id = 3 AND tag = 'odd'")
        _ = try project.query("UPDATE pgha_compare_json SET doc = '{\"n\": 2, \"planted\": true}' WHERE id = 2")

        let started = Date()
        let differ = cli.run(["compare", "sandbox.yml", "--rechecks", "1", "--recheck-delay", "0.2"], in: work, timeout: 300)
        #expect(differ.exitCode == 1, "\(differ)")
        for fragment in [
            "public.pgbench_accounts: DIFFERENT: 100000 rows on the single node, 100000 on the cluster; 3 rows differ:",
            "differs 4242", "only on target 777", "missing on target 100001",
            "public.item_tags: DIFFERENT", "only on target (3, odd)",
            "public.pgha_compare_json: DIFFERENT", "1 row differs: differs 2",
            "public.pgbench_branches: identical", "DIFFERENT: 3 tables differ",
        ] {
            #expect(differ.stdout.contains(fragment), "missing \(fragment)\n\(differ.stdout)")
        }
        print("[compare] planted differences found in \(Date().timeIntervalSince(started)) s")
        for secret in cli.secrets { #expect(!differ.stdout.contains(secret) && !differ.stderr.contains(secret)) }

        // Bad input: an unknown member is named with the members there are.
        let unknown = cli.run(["compare", "sandbox.yml", "--member", "nobody"], in: work, timeout: 60)
        #expect(unknown.exitCode == 3 && unknown.stderr.contains("member nobody is not in the cluster (members: ha"), "\(unknown)")
    }
}
