import ArgumentParser
import Foundation
import HAPool
import PGClient
import Sandbox
import ShadowCompare

extension BenchCommand {
    /// The shadow mode's cost on the application's read latency: `DualDatabasePools` in
    /// single-node mode without shadow and with shadow (every read also sent to the sandbox's
    /// cluster and compared), interleaved in the same run; p50/p99 of the application's reads.
    struct Shadow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "shadow", abstract: "Read latency p50/p99 of DualDatabasePools with and without shadow mode (same run, interleaved).")
        @OptionGroup var sandbox: SandboxOptions
        @Option(help: "Reads per variant.") var reads = 20_000
        @Option(help: "Reads per interleaved block.") var block = 500
        @Option(help: "Shadow sampling percentage.") var sample = 100.0
        @Option(help: "Shadow queue capacity.") var queue = 256

        func run() async throws {
            let sb = try sandbox.load()
            let single = SingleNodeConfig(
                host: sb.single.host, port: sb.single.port, database: sb.single.projectDatabase, user: sb.users.application,
                password: try sb.password(\.application), minConnections: 1, maxConnections: 4)
            let config = DualPoolsConfig(mode: .singleNode, project: single, patroni: try sandbox.poolConfig(sb))
            let plain = try DualDatabasePools(config: config)
            // A second pool without shadow: the A/A control, so the noise between two identical
            // variants is seen beside the difference shadow mode makes.
            let control = try DualDatabasePools(config: config)
            let shadowed = try DualDatabasePools(config: config, shadow: ShadowReadConfiguration(samplePercent: sample, queueCapacity: queue, workers: 1))
            try await plain.start()
            try await control.start()
            try await shadowed.start()
            // Ten rows that both sides answer alike (the sandbox's cluster has no pgbench tables).
            let sql = "SELECT n, n * 2 AS doubled, md5(n::text) FROM generate_series($1::int, $1::int + 9) AS n"
            var histograms = [LatencyHistogram(), LatencyHistogram(), LatencyHistogram()]
            let handles = [plain.project, shadowed.project, control.project]
            // Warm-up, then interleaved blocks in rotating order.
            for handle in handles { for i in 0..<200 { _ = try? await handle.query(sql, [.int(Int64(i % 1000 + 1))], readOnly: true) } }
            let blocks = max(1, reads / block)
            let started = ContinuousClock.now
            for round in 0..<blocks {
                for offset in 0..<3 {
                    let v = (round + offset) % 3
                    for i in 0..<block {
                        let t = ContinuousClock.now
                        _ = try? await handles[v].query(sql, [.int(Int64((round * block + i) % 100_000 + 1))], readOnly: true)
                        histograms[v].record(ContinuousClock.now - t)
                    }
                }
            }
            let seconds = (ContinuousClock.now - started).asSeconds
            await shadowed.close()
            await plain.close()
            await control.close()
            let stats = shadowed.shadowStatistics ?? ShadowReadStatistics()
            let base = histograms[0].summary, with = histograms[1].summary, same = histograms[2].summary
            print("DualDatabasePools (single-node mode) reads, \(blocks) interleaved blocks of \(block) per variant, \(String(format: "%.1f", seconds)) s:")
            for (name, s) in [("without shadow", base), ("without (A/A control)", same), ("with shadow \(sample)%", with)] {
                print("  " + name.padding(toLength: 22, withPad: " ", startingAt: 0)
                      + String(format: "  p50 %.3f ms (%.2f×)  p99 %.3f ms (%.2f×)  n=%d", s.p50Ms, s.p50Ms / base.p50Ms, s.p99Ms, s.p99Ms / base.p99Ms, s.count))
            }
            print("  shadow: offered \(stats.offered), compared \(stats.compared) (matched \(stats.matched), mismatched \(stats.mismatched)), dropped \(stats.dropped) (queue \(queue)), sampled out \(stats.sampledOut), unavailable \(stats.shadowUnavailable)")
            print("  shadow side latency (the cluster's replicas): \(stats.shadowLatency.text)")
        }
    }
}
