import Foundation
public import HAPool
import PGClient
public import Patroni
import Synchronization

/// `pgha verify --failover-drill`: a write and read workload runs through the pool while the
/// leader changes; afterwards every acknowledged write is looked up on the new leader.
///
/// Reported: writes acknowledged, lost (acknowledged but absent), duplicated (present twice),
/// on a non-leader (acknowledged by a server that was not the leader of the timeline it wrote
/// on, per Patroni's `/history`), outcome unknown (never re-run), the longest time without an
/// acknowledged write, and how long after Patroni's REST API first named the new leader the first
/// write on it was acknowledged.
public struct FailoverDrill: Sendable {
    public enum Trigger: Sendable {
        /// `POST /switchover` through the REST API.
        case switchover
        /// The caller changes the leader (e.g. kills it); the closure gets the current leader's name.
        case external(@Sendable (String) async throws -> Void)
    }

    public struct Options: Sendable {
        public var writers = 4
        public var readers = 2
        /// Workload before the trigger.
        public var warmUp: Duration = .seconds(1)
        /// Workload after the new leader is confirmed.
        public var afterFailover: Duration = .seconds(2)
        /// Give up waiting for a new leader after this long.
        public var timeout: Duration = .seconds(60)
        /// Pause between a writer's writes (zero: as fast as possible).
        public var writeInterval: Duration = .milliseconds(2)
        public var table = "pgha_drill"
        /// Write through this address (HAProxy's primary listener) with plain connections instead
        /// of the pool: a broken connection is opened again there; a write interrupted after it
        /// was sent counts as outcome unknown, never re-run.
        public var via: NodeAddress?
        public init() {}
    }

    public struct Report: Sendable, Codable {
        public var trigger: String
        public var oldLeader: String?
        public var newLeader: String?
        public var writesAcknowledged = 0
        public var writesLost = 0
        public var writesDuplicated = 0
        public var writesOnNonLeader = 0
        public var writesOutcomeUnknown = 0
        /// Of those, how many turned out applied (found on the new leader): what a blind re-run
        /// would have duplicated.
        public var writesOutcomeUnknownApplied = 0
        public var writesFailed = 0
        public var reads = 0
        public var readsFailed = 0
        /// Longest gap between two acknowledged writes (seconds).
        public var writeUnavailableSeconds: Double?
        /// From the trigger to the REST API first naming the new leader (Patroni's own promotion time).
        public var patroniPromotionSeconds: Double?
        /// From the REST API first naming the new leader to the first write acknowledged by it.
        public var firstWriteAfterLeaderNamedSeconds: Double?
        /// From the new leader's PostgreSQL first seen out of recovery (5 ms polling) to the first
        /// write acknowledged by it: the pool's own reaction time.
        public var firstWriteAfterPromotionSeconds: Double?
        /// From the REST API naming the new leader to its PostgreSQL leaving recovery (Patroni's
        /// promotion; no client may write before it).
        public var promotionAfterLeaderNamedSeconds: Double?
        /// Failovers the pool counted.
        public var poolFailovers = 0
        public var errors: [String] = []

        /// Zero lost, zero duplicated, zero on a non-leader, and the leader changed.
        public var passed: Bool {
            writesLost == 0 && writesDuplicated == 0 && writesOnNonLeader == 0 && newLeader != nil && newLeader != oldLeader
                && writesAcknowledged > 0
        }

        public func json() -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            var copy = self
            copy.errors = Array(errors.prefix(20))
            struct Envelope: Encodable { let report: Report; let passed: Bool }
            return (try? encoder.encode(Envelope(report: copy, passed: passed))).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
        }

        public func text() -> String {
            func s(_ v: Double?) -> String { v.map { String(format: "%.3f s", $0) } ?? "-" }
            return """
            Failover drill (\(trigger)): \(oldLeader ?? "?") → \(newLeader ?? "?")
              writes acknowledged      \(writesAcknowledged)
              writes lost              \(writesLost)
              writes duplicated        \(writesDuplicated)
              writes on a non-leader   \(writesOnNonLeader)
              outcome unknown          \(writesOutcomeUnknown) (never re-run; \(writesOutcomeUnknownApplied) of them had been applied)
              writes failed            \(writesFailed)
              reads (failed)           \(reads) (\(readsFailed))
              write unavailability     \(s(writeUnavailableSeconds))
              Patroni promotion        \(s(patroniPromotionSeconds)) (trigger → REST names new leader)
              first write on new leader \(s(firstWriteAfterLeaderNamedSeconds)) after REST named it
                of which: promotion     \(s(promotionAfterLeaderNamedSeconds)) (REST named it → it left recovery)
                          pool reaction \(s(firstWriteAfterPromotionSeconds)) (left recovery → first write)
            \(passed ? "PASS" : "FAIL"): \(writesLost) lost, \(writesDuplicated) duplicated, \(writesOnNonLeader) on a non-leader
            """
        }
    }

    struct Ack: Sendable {
        let requestID: String
        let host: String
        let port: Int
        let timeline: Int
        let at: ContinuousClock.Instant
    }

    struct Shared: ~Copyable {
        var acks: [Ack] = []
        var unknown = 0
        var unknownIDs: [String] = []
        var failed = 0
        var reads = 0
        var readsFailed = 0
        var errors: [String] = []
        /// Leader names in the order the REST API first named them, with the time.
        var named: [(String, ContinuousClock.Instant)] = []
        var members: [String: NodeAddress] = [:]
        /// When each server was first seen out of recovery after the trigger.
        var leftRecovery: [NodeAddress: ContinuousClock.Instant] = [:]
        var triggered = false
    }

    /// Shared between the workload tasks.
    final class DrillBox: Sendable {
        let shared = Mutex(Shared())
        let stop = Atomic<Bool>(false)
    }

    public let pool: PatroniHAPool
    public let client: PatroniClient
    public var options: Options

    public init(pool: PatroniHAPool, client: PatroniClient, options: Options = Options()) {
        self.pool = pool
        self.client = client
        self.options = options
    }

    public func run(trigger: Trigger) async throws -> Report {
        let runID = UUID().uuidString.prefix(8).lowercased()
        let table = options.table
        _ = try await pool.query(
            "CREATE TABLE IF NOT EXISTS \(table) (seq bigserial PRIMARY KEY, run_id text NOT NULL, request_id text NOT NULL, written_at timestamptz NOT NULL DEFAULT clock_timestamp())",
            idempotent: true
        )
        let box = DrillBox()
        let initial = try await client.cluster().value
        guard let oldLeader = initial.leader?.name else { throw HAError(.noLeader, "the cluster has no leader to fail over from") }
        box.shared.withLock { s in
            s.named.append((oldLeader, .now))
            s.members.merge(Self.addresses(of: initial)) { _, new in new }
        }
        var report = Report(trigger: { if case .switchover = trigger { "switchover" } else { "external" } }())
        report.oldLeader = oldLeader
        let failoversBefore = pool.statistics().failovers
        let startedAt = ContinuousClock.now

        try await withThrowingTaskGroup(of: Void.self) { group in
            // REST monitor: when did the API first name each leader?
            group.addTask {
                while !box.stop.load(ordering: .relaxed) {
                    if let answer = try? await client.cluster(), let leader = answer.value.leader?.name {
                        let now = ContinuousClock.now
                        box.shared.withLock { s in
                            if s.named.last?.0 != leader { s.named.append((leader, now)) }
                            s.members.merge(Self.addresses(of: answer.value)) { _, new in new }
                        }
                    }
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            // Recovery monitor: a direct connection to every member, asking pg_is_in_recovery()
            // every 5 ms, to tell when the new leader's PostgreSQL really took writes.
            let addresses = Array(Self.addresses(of: initial).values)
            for address in addresses {
                group.addTask {
                    var config = PGConnectionConfig(host: address.host, port: address.port, database: pool.config.database, user: pool.config.user, password: pool.config.password)
                    config.connectTimeout = .milliseconds(500)
                    var conn: PGConnection?
                    while !box.stop.load(ordering: .relaxed) {
                        do {
                            if conn == nil || conn?.isHealthy == false { conn = try await PGConnection.connect(config) }
                            let inRecovery = try await conn!.query("SELECT pg_is_in_recovery()", timeout: .milliseconds(500)).bool(0, 0) ?? true
                            let now = ContinuousClock.now
                            if !inRecovery {
                                box.shared.withLock { s in
                                    if s.triggered && s.leftRecovery[address] == nil { s.leftRecovery[address] = now }
                                }
                            }
                        } catch {
                            conn?.close()
                            conn = nil
                        }
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                    conn?.close()
                }
            }
            for writer in 0..<options.writers {
                group.addTask {
                    var seq = 0
                    var direct: PGConnection?
                    defer { direct?.close() }
                    while !box.stop.load(ordering: .relaxed) {
                        seq += 1
                        let requestID = "\(runID)-\(writer)-\(seq)"
                        let insert = "INSERT INTO \(table) (run_id, request_id) VALUES ($1, $2) RETURNING host(inet_server_addr()), inet_server_port(), ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
                        if let via = options.via {
                            await Self.writeVia(via, insert, requestID: requestID, runID: String(runID), pool: pool, box: box, connection: &direct)
                            if options.writeInterval > .zero { try? await Task.sleep(for: options.writeInterval) }
                            continue
                        }
                        do {
                            let r = try await pool.query(insert, [.text(String(runID)), .text(requestID)])
                            let ack = Ack(requestID: requestID, host: r.string(0, 0) ?? "?", port: Int(try r.int(0, 1) ?? 0), timeline: Int(try r.int(0, 2) ?? 0), at: .now)
                            box.shared.withLock { $0.acks.append(ack) }
                        } catch let error as HAError where error.code == .outcomeUnknown {
                            box.shared.withLock { $0.unknown += 1; $0.unknownIDs.append(requestID); $0.errors.append(error.description) }
                        } catch {
                            box.shared.withLock { $0.failed += 1; $0.errors.append("\(error)") }
                        }
                        if options.writeInterval > .zero { try? await Task.sleep(for: options.writeInterval) }
                    }
                }
            }
            for _ in 0..<options.readers {
                group.addTask {
                    while !box.stop.load(ordering: .relaxed) {
                        do {
                            _ = try await pool.query("SELECT count(*) FROM \(table) WHERE run_id = $1", [.text(String(runID))], readOnly: true)
                            box.shared.withLock { $0.reads += 1 }
                        } catch {
                            box.shared.withLock { $0.readsFailed += 1 }
                        }
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                }
            }
            group.addTask {
                defer { box.stop.store(true, ordering: .relaxed) }
                try await Task.sleep(for: options.warmUp)
                let triggeredAt = ContinuousClock.now
                box.shared.withLock { $0.triggered = true }
                switch trigger {
                case .switchover: _ = try await client.switchover(leader: oldLeader, candidate: nil)
                case .external(let act): try await act(oldLeader)
                }
                box.shared.withLock { $0.named.append(("trigger", triggeredAt)) }
                let deadline = ContinuousClock.now + options.timeout
                while ContinuousClock.now < deadline {
                    if let writer = pool.routingTable.writer, box.shared.withLock({ $0.members[oldLeader] }) != writer { break }
                    try await Task.sleep(for: .milliseconds(10))
                }
                try await Task.sleep(for: options.afterFailover)
            }
            try await group.waitForAll()
        }

        // Analysis.
        let (acks, named, members, unknown, failed, reads, readsFailed, errors, leftRecovery) = box.shared.withLock { s in
            (s.acks, s.named, s.members, s.unknown, s.failed, s.reads, s.readsFailed, s.errors, s.leftRecovery)
        }
        report.writesAcknowledged = acks.count
        report.writesOutcomeUnknown = unknown
        report.writesFailed = failed
        report.reads = reads
        report.readsFailed = readsFailed
        report.errors = errors
        report.poolFailovers = pool.statistics().failovers - failoversBefore

        let triggerAt = named.first { $0.0 == "trigger" }?.1
        let newLeader = named.last { $0.0 != "trigger" && $0.0 != oldLeader }
        report.newLeader = newLeader?.0 ?? named.last { $0.0 != "trigger" }?.0
        if let triggerAt, let newLeader { report.patroniPromotionSeconds = (newLeader.1 - triggerAt).asSeconds }
        if let newLeader, let address = members[newLeader.0] {
            // "The REST API named the new leader" = the first time any client here learned it:
            // the drill's own 5 ms monitor or the pool's topology refresh, whichever was first.
            let since = triggerAt ?? startedAt
            let poolSaw = pool.leaderFirstNamed.last { entry in entry.node == address && entry.at >= since }?.at
            let namedAt = [newLeader.1, poolSaw].compactMap { $0 }.min()!
            let first = acks.filter { ack in ack.host == address.host && ack.port == address.port && ack.at >= since }.map(\.at).min()
            if let first { report.firstWriteAfterLeaderNamedSeconds = (first - namedAt).asSeconds }
            if let first, let promoted = leftRecovery[address] {
                report.firstWriteAfterPromotionSeconds = (first - promoted).asSeconds
                report.promotionAfterLeaderNamedSeconds = (promoted - namedAt).asSeconds
            }
        }
        let times = acks.map(\.at).sorted()
        if times.count > 1 {
            report.writeUnavailableSeconds = zip(times, times.dropFirst()).map { ($1 - $0).asSeconds }.max()
        }

        // Which acknowledged writes are on the final leader, and how often?
        let counts = try await pool.query(
            "SELECT request_id, count(*) FROM \(table) WHERE run_id = $1 GROUP BY request_id", [.text(String(runID))], idempotent: true
        )
        var present: [String: Int64] = [:]
        for row in 0..<counts.rowCount { present[counts.string(row, 0) ?? ""] = try counts.int(row, 1) ?? 0 }
        report.writesLost = acks.filter { present[$0.requestID] == nil }.count
        report.writesDuplicated = present.values.filter { $0 > 1 }.count
        let unknownIDs = box.shared.withLock { $0.unknownIDs }
        report.writesOutcomeUnknownApplied = unknownIDs.filter { present[$0] != nil }.count

        // Leader of each timeline from /history: a row [tl, lsn, reason, ts, new_leader] means
        // new_leader led timeline tl + 1. The timeline the drill started on was led by oldLeader.
        var leaderOfTimeline: [Int: String] = [:]
        if let history = try? await client.history() {
            for entry in history { if let leader = entry.newLeader { leaderOfTimeline[entry.timeline + 1] = leader } }
        }
        let startTimeline = acks.first?.timeline ?? 0
        if leaderOfTimeline[startTimeline] == nil { leaderOfTimeline[startTimeline] = oldLeader }
        report.writesOnNonLeader = acks.filter { ack in
            guard let leader = leaderOfTimeline[ack.timeline], let address = members[leader] else { return false }
            return address.host != ack.host || address.port != ack.port
        }.count
        return report
    }

    /// One write through `via` on a connection of its own (opened again after a failure). An error
    /// the server answered (SQLSTATE) means not applied; a connection lost with the write in
    /// flight means the outcome is unknown (it is looked up afterwards, never re-run).
    static func writeVia(_ via: NodeAddress, _ sql: String, requestID: String, runID: String, pool: PatroniHAPool, box: DrillBox, connection: inout PGConnection?) async {
        if connection == nil || connection?.isHealthy == false {
            connection?.close()
            connection = nil
            var config = PGConnectionConfig(host: via.host, port: via.port, database: pool.config.database, user: pool.config.user, password: pool.config.password)
            config.connectTimeout = .milliseconds(500)
            do {
                connection = try await PGConnection.connect(config)
            } catch {
                box.shared.withLock { $0.failed += 1; $0.errors.append("connect via \(via.host):\(via.port): \(error)") }
                try? await Task.sleep(for: .milliseconds(5))
                return
            }
        }
        guard let c = connection else { return }
        do {
            let r = try await c.query(sql, [.text(runID), .text(requestID)], timeout: .seconds(5))
            let ack = Ack(requestID: requestID, host: r.string(0, 0) ?? "?", port: Int(((try? r.int(0, 1)) ?? nil) ?? 0), timeline: Int(((try? r.int(0, 2)) ?? nil) ?? 0), at: .now)
            box.shared.withLock { $0.acks.append(ack) }
        } catch {
            c.close()
            connection = nil
            if error.sqlState != nil {
                box.shared.withLock { $0.failed += 1; $0.errors.append("\(error)") }
            } else {
                box.shared.withLock { $0.unknown += 1; $0.unknownIDs.append(requestID); $0.errors.append("\(error)") }
            }
        }
    }

    /// Each member's PostgreSQL address, by member name.
    static func addresses(of cluster: PatroniCluster) -> [String: NodeAddress] {
        var result: [String: NodeAddress] = [:]
        for member in cluster.members {
            if let host = member.host, let port = member.port { result[member.name] = NodeAddress(host: host, port: port) }
        }
        return result
    }
}
