import Foundation
import PGClient
import Patroni
import PlainText
import Synchronization

/// The data compare (`pgha compare`): every table of every migrated database on the single node
/// and on the cluster's leader, by primary-key ranges digested server-side on both sides at once,
/// differing ranges read again (the data may be moving), then bisected down to the rows.
/// Read-only: it never writes on either side. Memory stays bounded whatever the table sizes: a
/// digest is one row, a first pass holds one key per `chunkRows` rows, and rows are fetched only
/// for ranges of at most `fetchRows`.
public struct DataCompare: Sendable {
    public struct Options: Sendable, Hashable {
        public var limits: CompareModel.Limits
        /// Tables compared at once (each with its own connection per side).
        public var jobs: Int
        /// Pause before a differing range is read again.
        public var recheckDelay: Duration
        /// Bound of each statement.
        public var statementTimeout: Duration
        /// Only these tables (`schema.name`), when not empty.
        public var tables: [String]
        /// The target member to read (its name); nil: the cluster's leader (or standby leader).
        public var member: String?
        /// Tables (`database.schema.name`) not to compare again: found identical by an earlier,
        /// interrupted run (`LogicalSync`'s verification resumes this way).
        public var skip: Set<String> = []

        public init(limits: CompareModel.Limits = .init(), jobs: Int = 2, recheckDelay: Duration = .seconds(1),
                    statementTimeout: Duration = .seconds(300), tables: [String] = [], member: String? = nil) {
            self.limits = limits
            self.jobs = max(jobs, 1)
            self.recheckDelay = recheckDelay
            self.statementTimeout = statementTimeout
            self.tables = tables
            self.member = member
        }
    }

    let connections: StageConnections
    let options: Options

    public init(playbook: Playbook, environment: any EnvironmentProviding, redactor: SecretRedactor, options: Options) {
        self.connections = StageConnections(playbook: playbook, environment: environment, redactor: redactor)
        self.options = options
    }

    static let applicationName = "pgha-compare"

    /// Compares every database; `progress` gets one line per table. Throws `.stageFailed` when a
    /// side cannot be reached or read (the message says which and why).
    ///
    /// `compared` is called once per table as soon as its comparison is finished (from any of the
    /// jobs), so that a caller can record it; what it throws stops the compare.
    public func run(progress: @escaping @Sendable (String) -> Void = { _ in },
                    compared: @escaping @Sendable (CompareReport.Table) throws(MigrationError) -> Void = { _ in }) async throws(MigrationError) -> CompareReport {
        let started = ContinuousClock.now
        let target = try await targetMember()
        progress("comparing the single node \(connections.playbook.source.host):\(connections.playbook.source.port) with \(target.name) (\(target.host):\(target.port))")
        let cache = ConnectionCache(connections: connections, applicationName: Self.applicationName,
                                    onOpen: "SET statement_timeout = \(options.statementTimeout.milliseconds.rounded())")
        defer { cache.close() }
        var report = CompareReport(target: "\(target.name) (\(target.host):\(target.port))")
        let s = connections.playbook.source.databases
        let t = connections.playbook.target.databases
        var databases = [(s.project, t.project)]
        if let shared = s.shared { databases.append((shared, t.shared ?? shared)) }
        for (sourceDB, targetDB) in databases {
            let side = Sides(compare: self, cache: cache, sourceDatabase: sourceDB, targetDatabase: targetDB, target: target)
            report.tables += try await side.compareDatabase(progress: progress, compared: compared)
        }
        report.elapsedSeconds = (ContinuousClock.now - started).asSeconds
        return report
    }

    /// The member read on the cluster's side.
    func targetMember() async throws(MigrationError) -> (name: String, host: String, port: Int) {
        let client: PatroniClient
        do { client = try connections.patroniClient() } catch {
            throw MigrationError(.stageFailed, "the compare reads the cluster's leader, found through the REST API: \(connections.describe(String(describing: error)))")
        }
        let cluster: PatroniCluster
        do { cluster = try await client.cluster().value } catch {
            throw MigrationError(.stageFailed, "no Patroni REST API host answered: \(connections.describe(error.description))")
        }
        let chosen = options.member.map { name in cluster.members.first { $0.name == name } } ?? cluster.leader
        guard let member = chosen, let host = member.host, let port = member.port else {
            if let name = options.member {
                throw MigrationError(.stageFailed, "member \(name) is not in the cluster (members: \(cluster.members.map(\.name).joined(separator: ", ")))")
            }
            throw MigrationError(.stageFailed, "the cluster has no leader to compare with (members: \(cluster.members.map { "\($0.name) \($0.role.rawValue)" }.joined(separator: ", ")))")
        }
        return (member.name, host, port)
    }
}

/// One database's two sides.
private struct Sides: Sendable {
    let compare: DataCompare
    let cache: ConnectionCache
    let sourceDatabase: String
    let targetDatabase: String
    let target: (name: String, host: String, port: Int)

    var connections: StageConnections { compare.connections }
    var limits: CompareModel.Limits { compare.options.limits }

    func source(job: Int) async throws(MigrationError) -> PGConnection {
        let login = connections.sourceAdminLogin(database: sourceDatabase)
            ?? connections.sourceApplicationLogins.first { $0.database == sourceDatabase }
            ?? connections.sourceApplicationLogins[0]
        return try await open(key: "source/\(sourceDatabase)/\(job)", login: login)
    }

    func target(job: Int) async throws(MigrationError) -> PGConnection {
        var login = connections.memberAdminLogin(host: target.host, port: target.port) ?? connections.memberApplicationLogin(host: target.host, port: target.port)
        login.database = targetDatabase
        return try await open(key: "target/\(targetDatabase)/\(job)", login: login)
    }

    private func open(key: String, login: StageConnections.Login) async throws(MigrationError) -> PGConnection {
        switch await cache.connection(key: key, login: login) {
        case .success(let c): return c
        case .failure(let failure): throw MigrationError(.stageFailed, failure.message)
        }
    }

    func query(_ connection: PGConnection, _ sql: String, _ parameters: [String] = [], side: String) async throws(MigrationError) -> PGResult {
        do {
            return try await connection.query(sql, parameters.map { .text($0) }, timeout: compare.options.statementTimeout + .seconds(5))
        } catch {
            if error.code == .cancelled { throw MigrationError(.interrupted, "interrupted while comparing") }
            throw MigrationError(.stageFailed, "\(side): \(connections.describe(error.description))")
        }
    }

    /// `query` as a value, for `async let` (which loses the typed error).
    func result(_ connection: PGConnection, _ sql: String, _ parameters: [String], side: String) async -> Result<PGResult, MigrationError> {
        do throws(MigrationError) { return .success(try await query(connection, sql, parameters, side: side)) } catch { return .failure(error) }
    }

    /// The same statement on both sides at once.
    func both(_ sql: String, _ parameters: [String], job: Int) async throws(MigrationError) -> (PGResult, PGResult) {
        let s = try await source(job: job)
        let t = try await target(job: job)
        async let onSource = result(s, sql, parameters, side: "the single node")
        async let onTarget = result(t, sql, parameters, side: target.name)
        let (a, b) = await (onSource, onTarget)
        return (try a.get(), try b.get())
    }

    /// The database's tables with their keys.
    func tables(_ connection: PGConnection, side: String) async throws(MigrationError) -> [CompareModel.Table] {
        let list = try await query(connection, CompareModel.Statements.tables, side: side)
        let keys = try await query(connection, CompareModel.Statements.keyColumns, side: side)
        var columns: [String: [(String, String)]] = [:]
        for row in 0..<keys.rowCount {
            columns[keys.string(row, 0) ?? "", default: []].append((keys.string(row, 2) ?? "", keys.string(row, 3) ?? ""))
        }
        return (0..<list.rowCount).map { row in
            let key = columns[list.string(row, 0) ?? ""] ?? []
            return CompareModel.Table(schema: list.string(row, 1) ?? "", name: list.string(row, 2) ?? "",
                                      keyColumns: key.map(\.0), keyTypes: key.map(\.1), bytes: (try? list.int(row, 3)) .flatMap { $0 } ?? 0)
        }
    }

    func compareDatabase(progress: @escaping @Sendable (String) -> Void,
                         compared: @escaping @Sendable (CompareReport.Table) throws(MigrationError) -> Void) async throws(MigrationError) -> [CompareReport.Table] {
        let sourceTables = try await tables(try await source(job: 0), side: "the single node (\(sourceDatabase))")
        let targetTables = try await tables(try await target(job: 0), side: "\(target.name) (\(targetDatabase))")
        let wanted = Set(compare.options.tables)
        func selected(_ t: CompareModel.Table) -> Bool { wanted.isEmpty || wanted.contains(t.displayName) }
        let onTarget = Dictionary(targetTables.map { ($0.displayName, $0) }, uniquingKeysWith: { a, _ in a })
        let onSource = Set(sourceTables.map(\.displayName))
        var results: [CompareReport.Table] = []
        var work: [(CompareModel.Table, Int64)] = []
        for table in sourceTables where selected(table) {
            if compare.options.skip.contains(sourceDatabase + "." + table.displayName) {
                progress("\(sourceDatabase) \(table.displayName): identical (compared before the interruption)")
                continue
            }
            guard let other = onTarget[table.displayName] else {
                results.append(.init(database: sourceDatabase, table: table.displayName, status: .missingOnTarget))
                progress("\(sourceDatabase) \(table.displayName): missing on the cluster")
                continue
            }
            if other.keyColumns != table.keyColumns || other.keyTypes != table.keyTypes {
                results.append(.init(database: sourceDatabase, table: table.displayName, status: .schemaDiffers,
                                     note: "primary key (\(table.keyColumns.joined(separator: ", "))) on the single node, (\(other.keyColumns.joined(separator: ", "))) on the cluster"))
                progress("\(sourceDatabase) \(table.displayName): its primary key differs")
                continue
            }
            work.append((table, table.bytes + other.bytes))
        }
        for table in targetTables where selected(table) && !onSource.contains(table.displayName) {
            results.append(.init(database: sourceDatabase, table: table.displayName, status: .onlyOnTarget))
            progress("\(sourceDatabase) \(table.displayName): only on the cluster")
        }
        // The largest first, shared among the jobs.
        let queue = TableQueue(work.sorted { $0.1 > $1.1 })
        let jobs = min(compare.options.jobs, max(work.count, 1))
        let parts = await withTaskGroup(of: Result<[CompareReport.Table], MigrationError>.self) { group in
            for job in 0..<jobs {
                group.addTask {
                    var done: [CompareReport.Table] = []
                    while let (table, bytes) = queue.next() {
                        if Task.isCancelled { return .failure(MigrationError(.interrupted, "interrupted while comparing")) }
                        do throws(MigrationError) {
                            var result = try await compareTable(table, job: job)
                            result.bytes = bytes
                            progress("\(sourceDatabase) \(result.table): \(result.summary)")
                            try compared(result)
                            done.append(result)
                        } catch {
                            // The other jobs stop at their next table.
                            queue.drain()
                            return .failure(error)
                        }
                    }
                    return .success(done)
                }
            }
            var all: [Result<[CompareReport.Table], MigrationError>] = []
            for await part in group { all.append(part) }
            return all
        }
        var compared: [CompareReport.Table] = []
        for part in parts { compared += try part.get() }
        return (results + compared).sorted { $0.table < $1.table }
    }

    func digest(_ statements: CompareModel.Statements, _ range: CompareModel.KeyRange, job: Int) async throws(MigrationError) -> (CompareModel.Digest, CompareModel.Digest) {
        let (sql, parameters) = statements.digest(range)
        let (a, b) = try await both(sql, parameters, job: job)
        return (Self.digest(a), Self.digest(b))
    }

    /// Whether `probe` runs: false only for 42883 (no such hash function); another failure is
    /// left to the compare itself.
    func hashes(_ connection: PGConnection, _ probe: String) async -> Bool {
        do {
            _ = try await connection.query(probe, timeout: compare.options.statementTimeout)
            return true
        } catch {
            return error.sqlState != "42883"
        }
    }

    static func digest(_ r: PGResult) -> CompareModel.Digest {
        CompareModel.Digest(rows: ((try? r.int(0, 0)) ?? nil) ?? 0, sum: r.string(0, 1) ?? "0")
    }

    static func keys(_ r: PGResult, columns: Int) -> [CompareModel.Key] {
        (0..<r.rowCount).map { row in (0..<columns).map { r.string(row, $0) ?? "" } }
    }

    func compareTable(_ table: CompareModel.Table, job: Int) async throws(MigrationError) -> CompareReport.Table {
        let started = ContinuousClock.now
        var table = table
        // hash_record_extended where every column type can be hashed so, else the row's text.
        let probe = CompareModel.Statements(table).probe
        let (s, t) = (try await source(job: job), try await target(job: job))
        let onSource = await hashes(s, probe)
        let onTarget = await hashes(t, probe)
        if !onSource || !onTarget { table.rowHash = .text }
        let statements = CompareModel.Statements(table)
        var result = CompareReport.Table(database: sourceDatabase, table: table.displayName, status: .identical)
        result.rowHash = table.rowHash
        var ranges: [(CompareModel.KeyRange, Int)] = []
        if table.hasKey {
            let bounds = try await query(try await source(job: job), statements.boundaries(every: limits.chunkRows), side: "the single node")
            ranges = CompareModel.ranges(boundaries: Self.keys(bounds, columns: table.keyColumns.count)).map { ($0, 0) }
        } else {
            ranges = [(.all, 0)]
            result.note = "no primary key: compared whole, not narrowed down to rows"
        }
        result.ranges = ranges.count
        // (range, reads so far, whether it is a first-pass range: its final digests are the counts)
        var queue: [(range: CompareModel.KeyRange, reads: Int, top: Bool)] = ranges.reversed().map { ($0.0, 0, true) }
        func differing(_ range: CompareModel.KeyRange) {
            result.differingRanges += 1
            if result.rangeExamples.count < limits.maxReportedRows { result.rangeExamples.append(range.description) }
        }
        while let (range, reads, top) = queue.popLast() {
            let (a, b) = try await digest(statements, range, job: job)
            let step = CompareModel.step(table: table, source: a, target: b, reads: reads + 1, limits: limits)
            if top, step != .recheck(attempt: reads + 1) {
                result.sourceRows += a.rows
                result.targetRows += b.rows
            }
            switch step {
            case .equal:
                if reads > 0 && top { result.converged += 1 }
            case .recheck(let attempt):
                try? await Task.sleep(for: compare.options.recheckDelay)
                if Task.isCancelled { throw MigrationError(.interrupted, "interrupted while comparing") }
                queue.append((range, attempt, top))
            case .differs:
                differing(range)
            case .fetchRows:
                differing(range)
                let (sql, parameters) = statements.rows(range)
                let (rs, rt) = try await both(sql, parameters, job: job)
                let n = table.keyColumns.count
                let pairs = { (r: PGResult) in (0..<r.rowCount).map { row in ((0..<n).map { r.string(row, $0) ?? "" }, r.string(row, n) ?? "") } }
                let differences = CompareModel.rowDifferences(source: pairs(rs), target: pairs(rt))
                result.rowDifferences += differences.count
                result.rows += differences.prefix(max(0, limits.maxReportedRows - result.rows.count))
            case .bisect:
                // Split at the middle row of the side with more rows in the range.
                let onSourceSide = a.rows >= b.rows
                let (sql, parameters) = statements.keyAt(offset: max(a.rows, b.rows) / 2, in: range)
                let connection = onSourceSide ? try await source(job: job) : try await target(job: job)
                let r = try await query(connection, sql, parameters, side: onSourceSide ? "the single node" : target.name)
                guard let middle = Self.keys(r, columns: table.keyColumns.count).first else {
                    differing(range)
                    continue
                }
                // The halves are new reads of data already read again: no further rechecks.
                for half in CompareModel.split(range, at: middle).reversed() { queue.append((half, limits.rechecks + 1, false)) }
            }
        }
        if result.differingRanges > 0 || result.rowDifferences > 0 { result.status = .different }
        result.seconds = (ContinuousClock.now - started).asSeconds
        return result
    }
}

/// The tables still to compare, shared by the jobs.
private final class TableQueue: Sendable {
    private let items: Mutex<[(CompareModel.Table, Int64)]>

    init(_ items: [(CompareModel.Table, Int64)]) { self.items = Mutex(items) }

    func next() -> (CompareModel.Table, Int64)? { items.withLock { $0.isEmpty ? nil : $0.removeFirst() } }

    func drain() { items.withLock { $0.removeAll() } }
}
