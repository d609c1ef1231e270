import Foundation
import HAPool
import PGClient
import Sandbox
import ShadowCompare
import Testing

/// `DualDatabasePools` shadow mode against the sandbox: single-node mode (the single node) whose
/// reads are also sent to Patroni mode (the sandbox's cluster) and compared.
@Suite(.enabled(if: SandboxFixture.enabled), .serialized)
struct ShadowReadsIntegrationTests {
    func config(_ fixture: SandboxFixture, maxConnections: Int = 4) throws -> DualPoolsConfig {
        let sb = fixture.sandbox
        let single = SingleNodeConfig(
            host: sb.single.host, port: sb.single.port, database: sb.single.projectDatabase, user: sb.users.application,
            password: try sb.password(\.application), minConnections: 1, maxConnections: maxConnections)
        return DualPoolsConfig(mode: .singleNode, project: single, patroni: try fixture.poolConfig())
    }

    func rows(_ r: PGResult) -> [[String?]] { (0..<r.rowCount).map { row in (0..<r.columnCount).map { r.string(row, $0) } } }

    @Test func theApplicationsResultsAndErrorsStayItsOwnAndDifferencesAreCounted() async throws {
        let fixture = try SandboxFixture.load()
        try await fixture.waitForHealthyCluster()
        let plain = try DualDatabasePools(config: config(fixture))
        let shadowed = try DualDatabasePools(config: config(fixture), shadow: ShadowReadConfiguration(samplePercent: 100, queueCapacity: 1000))
        try await plain.start()
        try await shadowed.start()

        let same = "SELECT n, md5(n::text) FROM generate_series(1, $1::int) AS n"
        let whereAmI = "SELECT inet_server_addr()::text, current_setting('cluster_name')"
        for i in 1...5 {
            let a = try await plain.project.query(same, [.int(Int64(i))], readOnly: true)
            let b = try await shadowed.project.query(same, [.int(Int64(i))], readOnly: true)
            #expect(rows(a) == rows(b) && a.columnNames == b.columnNames)
        }
        // The single node's own answer, although the shadow (a cluster member) answers otherwise.
        let mine = try await shadowed.project.query(whereAmI, readOnly: true)
        #expect(rows(mine) == rows(try await plain.project.query(whereAmI, readOnly: true)))
        #expect(mine.string(0, 0)?.hasPrefix(fixture.sandbox.single.host) == true, "\(rows(mine))")
        // Errors: the same error as without shadow mode.
        var plainError: HAError?, shadowedError: HAError?
        do { _ = try await plain.project.query("SELECT * FROM shadow_no_such_table", readOnly: true) } catch { plainError = error }
        do { _ = try await shadowed.project.query("SELECT * FROM shadow_no_such_table", readOnly: true) } catch { shadowedError = error }
        #expect(plainError?.code == shadowedError?.code && plainError?.sqlState == "42P01" && shadowedError?.sqlState == "42P01")
        // Writes and side effects are not shadowed.
        _ = try await shadowed.project.query("SELECT pg_advisory_unlock_all()", readOnly: true)
        _ = try await shadowed.project.query("SELECT 1")

        await shadowed.close()  // lets the queued shadow reads finish
        await plain.close()
        let s = try #require(shadowed.shadowStatistics)
        #expect(s.offered == 8, "5 + 1 + 1 + 1 read-only statements (the write-mode one is not offered)")
        #expect(s.dropped == 0 && s.sampledOut == 0 && s.shadowUnavailable == 0)
        #expect(s.matched == 5, "\(s)")
        #expect(s.mismatched == 1 && s.recentMismatches.first?.statement.contains("inet_server_addr") == true, "\(s.recentMismatches)")
        #expect(s.failedBoth == 1)
        #expect(s.skippedNotReadOnly == 1)
        #expect(s.compared == 7)
        #expect(s.primaryLatency.count == 7 && s.shadowLatency.count == 7)
        #expect(s.prometheusText().contains("pgha_shadow_reads_total{result=\"mismatched\"} 1"))
        #expect(plain.shadowStatistics == nil)
    }

    @Test func theQueueIsBoundedAndTheApplicationNeverWaitsForTheShadow() async throws {
        let fixture = try SandboxFixture.load()
        try await fixture.waitForHealthyCluster()
        let shadowed = try DualDatabasePools(config: config(fixture, maxConnections: 32), shadow: ShadowReadConfiguration(samplePercent: 100, queueCapacity: 2, workers: 1))
        try await shadowed.start()
        // 30 reads of 50 ms at once: the application's take ~50 ms together; the shadow, one at a
        // time, would need 1.5 s for all of them.
        let results = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<30 {
                group.addTask { (try? await shadowed.project.query("SELECT pg_sleep(0.05), 1 AS one", readOnly: true))?.string(0, 1) == "1" }
            }
            var ok = 0
            for await r in group where r { ok += 1 }
            return ok
        }
        let rightAfter = try #require(shadowed.shadowStatistics)
        #expect(results == 30, "every application read succeeded")
        #expect(rightAfter.offered == 30)
        #expect(rightAfter.compared < 30, "the application did not wait for its shadows (\(rightAfter.compared) compared when it was done)")
        await shadowed.close()
        let s = try #require(shadowed.shadowStatistics)
        #expect(s.dropped >= 20, "a queue of 2 behind one busy worker drops most of 30 offers at once: \(s.dropped) dropped")
        #expect(s.compared + s.dropped == 30, "every offer was either compared or dropped and counted: \(s)")
        #expect(s.mismatched == 0)
        // Sampling: 10% of 100 offers, evenly spread.
        let sampled = try DualDatabasePools(config: config(fixture), shadow: ShadowReadConfiguration(samplePercent: 10, queueCapacity: 100))
        try await sampled.start()
        for _ in 0..<100 { _ = try await sampled.project.query("SELECT 1", readOnly: true) }
        await sampled.close()
        let t = try #require(sampled.shadowStatistics)
        #expect(t.offered == 100 && t.sampledOut == 90 && t.compared == 10 && t.matched == 10, "\(t)")
    }
}
