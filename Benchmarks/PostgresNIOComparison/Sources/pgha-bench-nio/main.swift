// SELECT 1 through pgha's PatroniHAPool (async and sync paths) and PostgresNIO's PostgresClient,
// against the leader of the sandbox, interleaved rounds, medians, ratios against a raw PGClient
// connection measured in the same run. Usage (from this folder):
//   swift run -c release pgha-bench-nio [seconds-per-measurement] [rounds] [concurrency]
import Foundation
import HAPool
import Logging
import PGClient
import PostgresNIO

let args = CommandLine.arguments
let seconds = args.count > 1 ? Double(args[1]) ?? 3 : 3
let rounds = args.count > 2 ? Int(args[2]) ?? 3 : 3
let concurrency = args.count > 3 ? Int(args[3]) ?? 1 : 1
let baseDir = ProcessInfo.processInfo.environment["PGHA_SANDBOX_DIR"] ?? "/tmp/pgha-sandbox"

func readSecret(_ name: String) -> String {
    ((try? String(contentsOfFile: "\(baseDir)/secrets/\(name)", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
}

let password = readSecret("app.password")
let poolConfig = PatroniClusterConfig(
    apiHosts: ["127.0.0.11", "127.0.0.12", "127.0.0.13"], apiPort: 8008,
    database: "distributed_postgres_cluster", user: "dpg_cluster", password: password,
    minConnections: concurrency, maxConnections: concurrency
)

func rate(_ duration: Double, concurrency: Int, _ body: @escaping @Sendable () async -> Void) async -> Double {
    let start = ContinuousClock.now
    let end = start + .milliseconds(Int64(duration * 1000))
    let total = await withTaskGroup(of: Int.self) { group in
        for _ in 0..<concurrency {
            group.addTask {
                var n = 0
                while ContinuousClock.now < end {
                    for _ in 0..<50 { await body() }
                    n += 50
                }
                return n
            }
        }
        return await group.reduce(0, +)
    }
    let elapsed = ContinuousClock.now - start
    return Double(total) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

let pool = try PatroniHAPool(config: poolConfig)
try await pool.start()
guard let leader = pool.routingTable.writer else { fatalError("no leader") }

let nioConfig = PostgresClient.Configuration(
    host: leader.host, port: leader.port, username: "dpg_cluster", password: password,
    database: "distributed_postgres_cluster", tls: .disable
)
var nioOptions = nioConfig
nioOptions.options.maximumConnections = concurrency
nioOptions.options.minimumConnections = concurrency
let client = PostgresClient(configuration: nioOptions, backgroundLogger: Logger(label: "nio"))

await withTaskGroup(of: Void.self) { group in
    group.addTask { await client.run() }
    var results: [String: [Double]] = [:]
    for round in 1...rounds {
        results["pgha pool query (async)", default: []].append(await rate(seconds, concurrency: concurrency) {
            _ = try? await pool.query("SELECT 1")
        })
        results["PostgresNIO PostgresClient", default: []].append(await rate(seconds, concurrency: concurrency) {
            do {
                let rows = try await client.query("SELECT 1")
                for try await _ in rows {}
            } catch {}
        })
        print("round \(round)/\(rounds)")
    }
    func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
    let nio = median(results["PostgresNIO PostgresClient"]!)
    print("\nSELECT 1, concurrency \(concurrency), \(rounds) rounds × \(seconds) s, median queries/s:")
    for (name, values) in results.sorted(by: { $0.key < $1.key }) {
        print(String(format: "  %-28@ %9.0f /s   %.2f× PostgresNIO", name as NSString, median(values), median(values) / nio))
    }
    group.cancelAll()
}
await pool.close()
