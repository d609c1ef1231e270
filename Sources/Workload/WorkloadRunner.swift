import Foundation
public import PGClient
import HAPool
import Synchronization

/// An application in miniature, for rehearsals: writers inserting rows with unique `(writer, seq)`
/// at a steady rate and readers reading, through the application's real way in — a plain
/// connection (to PgBouncer, say) or the seed's `DualDatabasePools` from a `.env` file that is read
/// again on `reload()` (what a restart after the cutover's hook does). Each client reconnects after
/// an error; a write whose outcome is unknown is never re-run.
public final class WorkloadRunner: Sendable {
    public enum WayIn: Sendable {
        /// libpq to one address (PgBouncer in front of the database).
        case direct(PGConnectionConfig)
        /// `DualDatabasePools` configured from this `.env` (single-node or Patroni mode), the
        /// project database.
        case envFile(String)
    }

    public struct Options: Sendable {
        public var writers: Int
        public var readers: Int
        /// Writes per second in all.
        public var rate: Double
        public var table: String

        public init(writers: Int = 4, readers: Int = 2, rate: Double = 200, table: String = "pgha_workload") {
            self.writers = writers
            self.readers = readers
            self.rate = rate
            self.table = table
        }
    }

    let wayIn: WayIn
    let options: Options
    private let ledger = Mutex(WorkloadLedger())
    private let stats = Mutex(Stats())
    private let stopFlag = Atomic<Bool>(false)
    private let generation = Atomic<Int>(0)
    private let pools = Mutex<DualDatabasePools?>(nil)

    struct Stats {
        var errors: [String: Int] = [:]
        var reads = 0
        var longest: Double = 0
        var longestAt: Date?
    }

    public init(wayIn: WayIn, options: Options) {
        self.wayIn = wayIn
        self.options = options
        self.runID = String(UUID().uuidString.prefix(8)).lowercased()
    }

    /// This run's rows carry it: an earlier run's rows in the same table are not judged.
    public let runID: String

    /// Creates the table (idempotent; a table of an earlier version gains the `run` column).
    public func prepare() async throws {
        try await execute("CREATE TABLE IF NOT EXISTS \(options.table) (id bigserial PRIMARY KEY, run text NOT NULL DEFAULT '', writer int NOT NULL, seq bigint NOT NULL, written_at timestamptz NOT NULL DEFAULT now())")
        try await execute("ALTER TABLE \(options.table) ADD COLUMN IF NOT EXISTS run text NOT NULL DEFAULT ''")
    }

    /// Runs until `stop()`.
    public func run() async {
        let started = Date()
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<options.writers { group.addTask { await self.writer(w) } }
            for r in 0..<options.readers { group.addTask { await self.reader(r) } }
        }
        _ = started
    }

    public func stop() { stopFlag.store(true, ordering: .sequentiallyConsistent) }

    /// Reads the `.env` again (a restart of the application): the next statements use it.
    public func reload() {
        generation.add(1, ordering: .sequentiallyConsistent)
    }

    // MARK: - Clients

    private var stopped: Bool { stopFlag.load(ordering: .relaxed) }

    private func writer(_ w: Int) async {
        let interval = Double(options.writers) / max(0.1, options.rate)
        var seq: Int64 = 0
        var connection: PGConnection?
        var next = Date()
        while !stopped {
            let now = Date()
            if next > now { try? await Task.sleep(for: .seconds(next.timeIntervalSince(now))) }
            next = max(next.addingTimeInterval(interval), Date().addingTimeInterval(-1))
            seq += 1
            let key = WorkloadLedger.Key(writer: w, seq: seq)
            let sent = Date()
            let outcome: WorkloadLedger.Outcome
            do {
                try await insert(key, connection: &connection)
                outcome = .acknowledged
            } catch let error as PGError {
                outcome = error.statementMayHaveRun ? .unknown : .failed
                noteError(error)
                connection = nil
            } catch {
                outcome = .unknown
                noteError(error)
                connection = nil
            }
            ledger.withLock { $0.record(key, outcome) }
            let took = Date().timeIntervalSince(sent)
            stats.withLock { s in
                if took > s.longest { s.longest = took; s.longestAt = sent }
            }
            if outcome != .acknowledged { try? await Task.sleep(for: .milliseconds(50)) }
        }
        connection?.close()
    }

    private func reader(_ r: Int) async {
        var connection: PGConnection?
        while !stopped {
            do {
                try await read(r, connection: &connection)
                stats.withLock { $0.reads += 1 }
            } catch {
                noteError(error)
                connection = nil
                try? await Task.sleep(for: .milliseconds(50))
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        connection?.close()
    }

    private func noteError(_ error: any Error) {
        let text: String
        if let e = error as? PGError { text = "\(e.code)" + (e.sqlState.map { " \($0)" } ?? "") } else { text = "\(type(of: error))" }
        stats.withLock { $0.errors[text, default: 0] += 1 }
    }

    // MARK: - Statements through the way in

    private func insert(_ key: WorkloadLedger.Key, connection: inout PGConnection?) async throws {
        let sql = "INSERT INTO \(options.table) (run, writer, seq) VALUES ($1, $2, $3)"
        let params: [PGValue] = [.text(runID), .int(Int64(key.writer)), .int(key.seq)]
        switch wayIn {
        case .direct(let config):
            let c = try await connected(&connection, config)
            _ = try await c.query(sql, params, timeout: .seconds(120))
        case .envFile:
            _ = try await currentPools().project.query(sql, params)
        }
    }

    private func read(_ r: Int, connection: inout PGConnection?) async throws {
        let sql = "SELECT count(*) FROM \(options.table) WHERE writer = $1 AND run = '\(runID)'"
        switch wayIn {
        case .direct(let config):
            let c = try await connected(&connection, config)
            _ = try await c.query(sql, [.int(Int64(r))], timeout: .seconds(120))
        case .envFile:
            _ = try await currentPools().project.query(sql, [.int(Int64(r))], readOnly: true, idempotent: true)
        }
    }

    private func execute(_ sql: String) async throws {
        var connection: PGConnection?
        defer { connection?.close() }
        switch wayIn {
        case .direct(let config): _ = try await connected(&connection, config).query(sql, timeout: .seconds(60))
        case .envFile: _ = try await currentPools().project.query(sql, idempotent: true)
        }
    }

    private func connected(_ connection: inout PGConnection?, _ config: PGConnectionConfig) async throws -> PGConnection {
        if let c = connection, c.isHealthy { return c }
        let c = try await PGConnection.connect(config)
        connection = c
        return c
    }

    /// The pools of the current `.env` generation (rebuilt after `reload()`).
    private func currentPools() async throws -> DualDatabasePools {
        guard case .envFile(let path) = wayIn else { preconditionFailure("not the env-file way in") }
        let wanted = generation.load(ordering: .sequentiallyConsistent)
        if let pools = pools.withLock({ $0 }), loadedGeneration.load(ordering: .sequentiallyConsistent) == wanted { return pools }
        let environment = try EnvironmentConfiguration.load(dotEnvPath: path, processEnvironment: [:])
        let fresh = try DualDatabasePools(config: try environment.dualPools())
        try await fresh.start()
        let old = pools.withLock { p -> DualDatabasePools? in
            defer { p = fresh }
            return p
        }
        loadedGeneration.store(wanted, ordering: .sequentiallyConsistent)
        if let old { await old.close() }
        return fresh
    }

    private let loadedGeneration = Atomic<Int>(-1)

    // MARK: - The judgement

    /// Reads every `(writer, seq)` through the way in (the final primary) and judges the run.
    public func report(seconds: Double) async throws -> WorkloadReport {
        var rows: [WorkloadLedger.Key: Int] = [:]
        var checkedOn = "?"
        let sql = "SELECT writer, seq, count(*) FROM \(options.table) WHERE run = '\(runID)' GROUP BY writer, seq"
        let result: PGResult
        let whereSQL = "SELECT coalesce(host(inet_server_addr()), 'local') || ':' || coalesce(inet_server_port()::text, '?')"
        switch wayIn {
        case .direct(let config):
            let c = try await PGConnection.connect(config)
            defer { c.close() }
            result = try await c.query(sql, timeout: .seconds(300))
            checkedOn = (try await c.query(whereSQL)).string(0, 0) ?? "?"
        case .envFile:
            let p = try await currentPools()
            result = try await p.project.query(sql, idempotent: true)
            checkedOn = (try await p.project.query(whereSQL, idempotent: true)).string(0, 0) ?? "?"
            await p.close()
        }
        for row in 0..<result.rowCount {
            let key = WorkloadLedger.Key(writer: Int(try result.int(row, 0) ?? -1), seq: try result.int(row, 1) ?? -1)
            rows[key] = Int(try result.int(row, 2) ?? 0)
        }
        let l = ledger.withLock { $0 }
        let s = stats.withLock { $0 }
        let judged = l.judge(rows: rows)
        let acknowledged = l.acknowledged
        return WorkloadReport(
            writers: options.writers, readers: options.readers, seconds: seconds, acknowledged: acknowledged,
            missing: judged.missing.count, duplicated: judged.duplicated.count, outcomeUnknown: judged.unknown,
            outcomeUnknownApplied: judged.unknownApplied, errors: s.errors.values.reduce(0, +), errorKinds: s.errors, reads: s.reads,
            longestWriteSeconds: s.longest, longestWriteAt: s.longestAt, writesPerSecond: seconds > 0 ? Double(acknowledged) / seconds : 0,
            checkedOn: checkedOn, missingExamples: judged.missing.prefix(10).map(\.description),
            duplicatedExamples: judged.duplicated.prefix(10).map(\.description))
    }
}
