import ArgumentParser
import Foundation
import HAPool
import Logging
import Patroni
import Synchronization
import Verification

extension BenchCommand {
    /// REST requests per second that one pool sends to Patroni: while the API answers garbage or
    /// refuses (an outage), while it answers but names no leader (an election: the fast poll, the
    /// baseline of the same run), and during a real switchover on the sandbox.
    struct RESTLoad: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rest-load",
            abstract: "REST /cluster requests per second per pool: outage (backoff) vs election (fast poll) vs switchover."
        )
        @OptionGroup var sandbox: SandboxOptions
        @Option(help: "Seconds each outage case lasts.") var seconds = 30.0
        @Flag(help: "Skip the switchover case (no sandbox needed).") var noSwitchover = false

        static let election = #"{"members":[{"name":"n1","role":"replica","state":"streaming","host":"127.0.0.1","port":1,"api_url":"http://127.0.0.1:1/patroni","lag":0}]}"#

        func run() async throws {
            let span = Duration.milliseconds(Int64(seconds * 1000))
            print(String(format: "one pool, one REST host, %.0f s per case (budget: ≤ 1 request/s per host during an outage):", seconds))
            let election = try await measure(body: Array(Self.election.utf8), span: span)
            print(String(format: "  election (usable answer, no leader)   %6.1f requests/s   1.000× (the 20 ms fast poll)", election))
            for (label, body) in [
                ("outage: truncated JSON", Array(#"{"members":[{"name":"n1","ro"#.utf8)),
                ("outage: HTML error page", Array("<html>502 Bad Gateway</html>".utf8)),
            ] {
                let rate = try await measure(body: body, span: span)
                print("  " + label.padding(toLength: 38, withPad: " ", startingAt: 0) + String(format: "%6.2f requests/s   %.3f× election", rate, rate / election))
            }
            let refused = try await measureRefused(span: span)
            print("  " + "outage: connection refused".padding(toLength: 38, withPad: " ", startingAt: 0) + String(format: "%6.2f requests/s   %.3f× election", refused, refused / election))
            if !noSwitchover { try await switchover() }
        }

        func quietPool(hosts: [String]) throws -> PatroniHAPool {
            let config = PatroniClusterConfig(
                apiHosts: hosts, database: "app", user: "app", password: nil, minConnections: 0,
                failoverTimeout: .seconds(3600), connectTimeout: .milliseconds(200)
            )
            return try PatroniHAPool(config: config, logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
        }

        /// Requests per second a canned-answer server receives from one pool in `span`.
        func measure(body: [UInt8], span: Duration) async throws -> Double {
            let server = try CannedHTTPServer(body: body)
            defer { server.stop() }
            let pool = try quietPool(hosts: ["127.0.0.1:\(server.port)"])
            let started = ContinuousClock.now
            try? await pool.start(timeout: span)
            let elapsed = ContinuousClock.now - started
            await pool.close()
            return Double(server.requests) / elapsed.asSeconds
        }

        /// A host that refuses connections: the pool's failed refreshes per second (one request each).
        func measureRefused(span: Duration) async throws -> Double {
            let pool = try quietPool(hosts: ["127.0.0.1:1"])
            let started = ContinuousClock.now
            try? await pool.start(timeout: span)
            let elapsed = ContinuousClock.now - started
            let failed = pool.statistics().topologyRefreshFailures
            await pool.close()
            return Double(failed) / elapsed.asSeconds
        }

        /// A switchover drill on the sandbox: the pool's refreshes per second from the request
        /// until a second after the new leader is confirmed, and the drill's reaction figures.
        func switchover() async throws {
            let sb = try sandbox.load()
            let (pool, client) = try sandbox.poolAndRESTClient(sb)
            try await pool.start()
            var options = FailoverDrill.Options()
            options.writers = 2
            options.afterFailover = .seconds(1)
            let before = pool.statistics()
            let started = ContinuousClock.now
            let r = try await FailoverDrill(pool: pool, client: client, options: options).run(trigger: .switchover)
            let elapsed = (ContinuousClock.now - started).asSeconds
            let after = pool.statistics()
            await pool.close()
            let fetches = Double(after.topologyRefreshes + after.topologyRefreshFailures - before.topologyRefreshes - before.topologyRefreshFailures)
            func f(_ v: Double?) -> String { v.map { String(format: "%.3f s", $0) } ?? "-" }
            print(String(format: "  switchover on the sandbox (%.1f s drill): %.1f refreshes/s, each asking %d hosts at once (≤ %.1f requests/s in all, ≤ %.1f per host)",
                         elapsed, fetches / elapsed, client.endpoints.count, fetches * Double(client.endpoints.count) / elapsed, fetches / elapsed))
            print("    REST named→1st write \(f(r.firstWriteAfterLeaderNamedSeconds)) (promotion \(f(r.promotionAfterLeaderNamedSeconds)) + pool \(f(r.firstWriteAfterPromotionSeconds))), lost \(r.writesLost), duplicated \(r.writesDuplicated), on a non-leader \(r.writesOnNonLeader)")
        }
    }
}

/// A one-thread HTTP server on 127.0.0.1 that answers every request with the same body (status
/// 200, `Connection: close`) and counts the requests.
final class CannedHTTPServer: Sendable {
    let port: Int
    private let fd: Int32
    private let count = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)

    init(body: [UInt8]) throws {
        let listener = try HungListener()
        fd = listener.fd
        port = listener.port
        let reply = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body
        let thread = Thread { [self] in serve(reply) }
        thread.start()
    }

    private func serve(_ reply: [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !stopping.load(ordering: .relaxed) {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { continue }
            var seen: [UInt8] = []
            while !seen.suffix(4).elementsEqual([13, 10, 13, 10]) {
                let n = read(client, &buffer, buffer.count)
                if n <= 0 { break }
                seen += buffer[0..<n]
            }
            count.add(1, ordering: .relaxed)
            _ = reply.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
            _ = Glibc.close(client)
        }
    }

    var requests: Int { count.load(ordering: .relaxed) }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        shutdown(fd, Int32(SHUT_RDWR))
        _ = Glibc.close(fd)
    }
}
