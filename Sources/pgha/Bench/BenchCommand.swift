import ArgumentParser
import BlockingIO
import CLibPQ
import Foundation
import HAPool
import PGClient
import Patroni
import Sandbox
import Verification

/// `pgha bench`: measurements, each reported as a ratio against a baseline measured in the same
/// run. Never part of CI's pass/fail: numbers are printed, not asserted. docs/BENCHMARKS.md.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the pool against raw libpq, topology refresh latency, and failover unavailability.",
        discussion: "Uses the sandbox (pgha sandbox up). Build with -c release for meaningful numbers.",
        subcommands: [Select1.self, Refresh.self, Failover.self, RESTLoad.self, Shadow.self]
    )

    struct SandboxOptions: ParsableArguments {
        @Option(help: "Sandbox base directory.")
        var baseDir: String = ProcessInfo.processInfo.environment["PGHA_SANDBOX_DIR"] ?? Sandbox.SandboxOptions.defaultBaseDir

        func load() throws -> SandboxConfiguration { try SandboxConfiguration.load(baseDir: baseDir) }

        func poolConfig(_ sandbox: SandboxConfiguration) throws -> PatroniClusterConfig {
            PatroniClusterConfig(
                apiHosts: sandbox.cluster.members.map(\.host), apiPort: sandbox.cluster.restPort,
                database: sandbox.cluster.projectDatabase, user: sandbox.users.application,
                password: try sandbox.password(\.application), minConnections: 1, maxConnections: 4,
                healthCheckInterval: .seconds(5), failoverTimeout: .seconds(40)
            )
        }

        /// The sandbox's pool (not started) and a REST client for its members: a drill's two
        /// views of the cluster.
        func poolAndRESTClient(_ sandbox: SandboxConfiguration) throws -> (PatroniHAPool, PatroniClient) {
            let endpoints = sandbox.cluster.members.map { PatroniEndpoint(host: $0.host, port: $0.restPort) }
            let pool = try PatroniHAPool(config: try poolConfig(sandbox))
            var clientConfig = pool.config.patroniClientConfiguration(endpoints: endpoints)
            clientConfig.credentials = PatroniCredentials(user: sandbox.users.restAPI, password: try sandbox.password(\.restAPI))
            return (pool, PatroniClient(configuration: clientConfig))
        }
    }

    /// SELECT 1 on one loopback connection: raw PQexec vs PGClient vs the pool (sync and async).
    struct Select1: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "select1", abstract: "SELECT 1 throughput: raw libpq loop vs PGClient vs the pool.")
        @OptionGroup var sandbox: SandboxOptions
        @Option(help: "Seconds per measurement.") var seconds = 3.0
        @Option(help: "Rounds (each round measures every variant once, interleaved).") var rounds = 3

        func run() async throws {
            let sb = try sandbox.load()
            let config = try sandbox.poolConfig(sb)
            let pool = try PatroniHAPool(config: config)
            try await pool.start()
            guard let leader = pool.routingTable.writer else { throw CLIFailure(exitCode: 1, message: "no leader: the pool started without a writable leader", next: "pgha sandbox status").report() }
            let pgConfig = PGConnectionConfig(host: leader.host, port: leader.port, database: config.database, user: config.user, password: config.password)
            let conn = try await PGConnection.connect(pgConfig)
            let raw = try RawLibPQ(host: leader.host, port: leader.port, database: config.database, user: config.user, password: config.password ?? "")
            // Interleaved blocks of `block` queries, variants in rotating order, so that drift in
            // machine load (two cores shared with the servers) hits every variant alike.
            let blocks = max(1, Int(seconds * Double(rounds) * 20))
            let block = 500
            let sync = await BlockingIOPool.shared.run {
                interleaved(blocks: blocks, block: block, [
                    ("raw libpq PQexec", { raw.select1() }),
                    ("PGClient sync", { _ = try? conn.query("SELECT 1") }),
                    ("pool querySync", { _ = try? pool.querySync("SELECT 1") }),
                ])
            }
            let async = await interleavedAsync(blocks: blocks / 2, block: block, [
                ("raw libpq PQexec", { raw.select1() }),
                ("PGClient async", { _ = try? await conn.query("SELECT 1") }),
                ("pool query async", { _ = try? await pool.query("SELECT 1") }),
            ])
            await pool.close()
            conn.close()
            print("SELECT 1 on one loopback connection to the leader (\(blocks) interleaved blocks of \(block) per variant):")
            print("  synchronous, on a dedicated thread:")
            report(sync, baseline: "raw libpq PQexec")
            print("  async (Swift concurrency), raw libpq called from the same task as baseline:")
            report(async, baseline: "raw libpq PQexec")
        }

        func report(_ rates: [(String, Double)], baseline: String) {
            let base = rates.first { $0.0 == baseline }!.1
            for (name, value) in rates {
                print("    " + name.padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: " %9.0f /s   %.3f× raw libpq", value, value / base))
            }
        }
    }

    /// Topology refresh latency, with one dead API host in the list.
    struct Refresh: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "refresh", abstract: "Topology refresh latency p50/p99 (REST /cluster from all hosts concurrently).")
        @OptionGroup var sandbox: SandboxOptions
        @Option(help: "Refreshes to measure.") var count = 500

        func run() async throws {
            let sb = try sandbox.load()
            var config = try sandbox.poolConfig(sb)
            let hung = try HungListener()
            defer { hung.close() }
            let cases = [
                ("3 live hosts", config.apiHosts),
                ("3 live + 1 dead host (refused)", ["127.0.0.1:1"] + config.apiHosts),
                ("3 live + 1 hung host (accepts, never answers)", ["127.0.0.1:\(hung.port)"] + config.apiHosts),
            ]
            for (label, hosts) in cases {
                config.apiHosts = hosts
                let source = try PatroniTopologySource(config: config)
                var samples: [Double] = []
                for _ in 0..<count {
                    let started = ContinuousClock.now
                    _ = try await source.fetch()
                    samples.append((ContinuousClock.now - started).asSeconds * 1000)
                }
                samples.sort()
                print(String(format: "%@: p50 %.2f ms  p99 %.2f ms  max %.2f ms (%d refreshes)", label as NSString,
                             Percentile.of(samples, 0.5)!, Percentile.of(samples, 0.99)!, samples.last!, count))
            }
        }
    }

    /// Write unavailability in a switchover and after a crash, against Patroni's own promotion time.
    struct Failover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "failover", abstract: "Client write unavailability vs Patroni's promotion time (switchover, crash).")
        @OptionGroup var sandbox: SandboxOptions
        @Option(help: "switchover, crash, or both.") var kind = "both"
        @Option(help: "Repetitions of each kind.") var repeats = 3

        func run() async throws {
            let sb = try sandbox.load()
            let (pool, client) = try sandbox.poolAndRESTClient(sb)
            try await pool.start()
            let kinds = kind == "both" ? ["switchover", "crash"] : [kind]
            print("kind        trigger→REST named  REST named→1st write  (promotion + pool reaction)  max write gap  lost dup non-leader")
            for k in kinds {
                for _ in 0..<repeats {
                    try await waitHealthy(client)
                    var options = FailoverDrill.Options()
                    options.writers = 2
                    options.afterFailover = .seconds(1)
                    let trigger: FailoverDrill.Trigger = k == "crash"
                        ? .external { leader in try crash(sb, member: leader) }
                        : .switchover
                    let r = try await FailoverDrill(pool: pool, client: client, options: options).run(trigger: trigger)
                    func f(_ v: Double?) -> String { v.map { String(format: "%.3f s", $0) } ?? "-" }
                    print(k.padding(toLength: 12, withPad: " ", startingAt: 0)
                          + f(r.patroniPromotionSeconds).padding(toLength: 20, withPad: " ", startingAt: 0)
                          + f(r.firstWriteAfterLeaderNamedSeconds).padding(toLength: 22, withPad: " ", startingAt: 0)
                          + "(\(f(r.promotionAfterLeaderNamedSeconds)) + \(f(r.firstWriteAfterPromotionSeconds)))".padding(toLength: 30, withPad: " ", startingAt: 0)
                          + f(r.writeUnavailableSeconds).padding(toLength: 15, withPad: " ", startingAt: 0)
                          + "\(r.writesLost) \(r.writesDuplicated) \(r.writesOnNonLeader)")
                    if k == "crash" { _ = try await SandboxController(configuration: sb).up(timeout: .seconds(120)) }
                }
            }
            await pool.close()
        }

        func waitHealthy(_ client: PatroniClient) async throws {
            for _ in 0..<600 {
                if let c = try? await client.cluster().value, c.leader != nil, c.members.filter({ $0.state?.rawValue == "streaming" }).count == 2 { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw CLIFailure(exitCode: 1, message: "the sandbox cluster did not become healthy (a leader and two streaming replicas) within 60 s", next: "pgha sandbox status").report()
        }

        func crash(_ sb: SandboxConfiguration, member name: String) throws {
            try SandboxController(configuration: sb).crash(member: name)
        }
    }
}

/// Runs each variant in `blocks` rounds of `block` calls, rotating which goes first; returns
/// calls per second per variant, in the given order.
func interleaved(blocks: Int, block: Int, _ variants: [(String, () -> Void)]) -> [(String, Double)] {
    var spent = [Duration](repeating: .zero, count: variants.count)
    for round in 0..<blocks {
        for offset in 0..<variants.count {
            let index = (round + offset) % variants.count
            let start = ContinuousClock.now
            for _ in 0..<block { variants[index].1() }
            spent[index] += ContinuousClock.now - start
        }
    }
    return variants.indices.map { (variants[$0].0, Double(blocks * block) / spent[$0].asSeconds) }
}

func interleavedAsync(blocks: Int, block: Int, _ variants: [(String, () async -> Void)]) async -> [(String, Double)] {
    var spent = [Duration](repeating: .zero, count: variants.count)
    for round in 0..<blocks {
        for offset in 0..<variants.count {
            let index = (round + offset) % variants.count
            let start = ContinuousClock.now
            for _ in 0..<block { await variants[index].1() }
            spent[index] += ContinuousClock.now - start
        }
    }
    return variants.indices.map { (variants[$0].0, Double(blocks * block) / spent[$0].asSeconds) }
}


/// The baseline: libpq with nothing around it (PQconnectdb, PQexec, PQclear).
/// Used from one thread at a time (the benchmark's), hence the unchecked conformance.
final class RawLibPQ: @unchecked Sendable {
    let conn: OpaquePointer

    init(host: String, port: Int, database: String, user: String, password: String) throws {
        let conninfo = "host=\(host) port=\(port) dbname=\(database) user=\(user) password='\(password.replacingOccurrences(of: "'", with: "\\'"))'"
        guard let c = PQconnectdb(conninfo), PQstatus(c) == CONNECTION_OK else { throw CLIFailure(exitCode: 1, message: "the raw libpq connection (the baseline) failed", next: "pgha sandbox status").report() }
        conn = c
    }

    func select1() {
        PQclear(PQexec(conn, "SELECT 1"))
    }

    deinit { PQfinish(conn) }
}

/// A TCP listener that never accepts: connections complete in the kernel's backlog and requests
/// are never answered (a member stuck in an election, a half-dead host).
final class HungListener: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard bound == 0, listen(fd, 64) == 0 else { throw CLIFailure(exitCode: 1, message: "cannot listen on 127.0.0.1 (the bench's fake REST server)", next: nil).report() }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}
