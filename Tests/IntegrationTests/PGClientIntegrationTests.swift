import BlockingIO
import Foundation
import PGClient
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// PGClient against a real PostgreSQL server (a primary), named by TestEnvironment.pg.
///
/// Disabled when PGHA_TEST_PG_HOST is unset (nothing to connect to); with PGHA_REQUIRE_SANDBOX=1
/// it runs anyway and every test fails on its `#require` of the configuration.
/// The wrong-password test needs password authentication (md5/scram) for the test user.
@Suite("PGClient against PostgreSQL", .enabled(if: TestEnvironment.pgEnabled), .serialized)
struct PGClientIntegrationTests {
    let clock = ContinuousClock()

    func config() throws -> PGConnectionConfig {
        try #require(TestEnvironment.pg, Comment(rawValue: TestEnvironment.pgProblem))
    }

    func connect() throws -> PGConnection {
        try PGConnection.connect(config())
    }

    /// Polls pg_stat_activity (from `observer`) until `pid` runs a statement containing `fragment`.
    func waitUntilRunning(_ pid: Int32, _ fragment: String, observer: PGConnection) async throws {
        let start = clock.now
        while clock.now - start < .seconds(5) {
            let result = try await observer.query(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE $2",
                [.int(Int64(pid)), .text("%\(fragment)%")])
            if try result.int(0, 0) == 1 { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("backend \(pid) never started running \(fragment)")
    }

    /// The state of `pid` in pg_stat_activity ("idle", "active", ...), nil when it is gone.
    func backendState(_ pid: Int32, observer: PGConnection) throws -> String? {
        let result = try observer.query("SELECT state FROM pg_stat_activity WHERE pid = $1", [.int(Int64(pid))])
        return result.rowCount == 0 ? nil : result.string(0, 0)
    }

    // MARK: - Connecting and reading values

    @Test("connects and reports the server it reached")
    func connectInfo() throws {
        let config = try config()
        let connection = try PGConnection.connect(config)
        defer { connection.close() }
        #expect(connection.isHealthy)
        #expect(connection.backendPID > 0)
        #expect(connection.serverVersion >= 150_000)
        #expect(connection.serverPort == config.port)
        #expect(!connection.serverHost.isEmpty)
        #expect(connection.transactionStatus == .idle)
        let pid = try connection.query("SELECT pg_backend_pid()").int(0, 0)
        #expect(pid == Int64(connection.backendPID))
        let name = try connection.query("SELECT current_setting('application_name')").string(0, 0)
        #expect(name == "pgha-tests")
    }

    @Test("parameters and typed results: text, integers, bool, NULL, double, bytea, LSN")
    func typedResults() throws {
        let connection = try connect()
        defer { connection.close() }
        let result = try connection.query(
            """
            SELECT $1::int4 AS i, $2::text AS t, $3::bool AS b, NULL::int AS n, $4::pg_lsn AS l,
                   $5::float8 AS d, $6::bytea AS by, $7::int8 AS big, 'Infinity'::float8 AS inf
            """,
            [.int(42), .text("héllo 'quoted' \\ \"x\""), .bool(true), .lsn(LSN(0x16_B374_D848)), .double(0.1),
             .bytes([0, 1, 0xFE]), .int(.min)])
        #expect(result.rowCount == 1)
        #expect(result.columnCount == 9)
        #expect(result.columnNames == ["i", "t", "b", "n", "l", "d", "by", "big", "inf"])
        #expect(result.commandTag == "SELECT 1")
        #expect(result.affectedRows == 1)
        #expect(try result.int(0, 0) == 42)
        #expect(result.string(0, 1) == "héllo 'quoted' \\ \"x\"")
        #expect(try result.bool(0, 2) == true)
        #expect(result.isNull(0, 3))
        #expect(try result.int(0, 3) == nil)
        #expect(result.string(0, 3) == nil)
        #expect(try result.lsn(0, 4) == LSN("16/B374D848"))
        #expect(try result.double(0, 5) == 0.1)
        #expect(result.string(0, 6) == "\\x0001fe")
        #expect(try result.int(0, 7) == .min)
        #expect(try result.double(0, 8) == .infinity)
        #expect(result.columnIndex("by") == 6)
        #expect(result.columnType(0) == 23)
        #expect(throws: PGError.self) { try result.int(0, 1) }
    }

    @Test("untyped text parameters are inferred by the server; NULL parameters")
    func parameterInference() throws {
        let connection = try connect()
        defer { connection.close() }
        let result = try connection.query(
            "SELECT $1::int + 1, $2::text IS NULL, $3::pg_lsn > '0/0', $4", [.text("41"), .null, .text("1/0"), "plain"])
        #expect(try result.int(0, 0) == 42)
        #expect(try result.bool(0, 1) == true)
        #expect(try result.bool(0, 2) == true)
        #expect(result.string(0, 3) == "plain")
        // Rows, several statements, empty query.
        let rows = try connection.query("SELECT g FROM generate_series(1, 1000) g")
        #expect(rows.rowCount == 1000)
        #expect(try rows.int(999, 0) == 1000)
        let last = try connection.query("SELECT 1; SELECT 2 AS two")
        #expect(last.columnNames == ["two"])
        let empty = try connection.query("")
        #expect(empty.rowCount == 0)
        #expect(throws: PGError.self) { try connection.query("SELECT $1", [.text("a\u{0}b")]) }
    }

    @Test("writes report affected rows; transaction status follows BEGIN / error / ROLLBACK")
    func writesAndTransactions() throws {
        let connection = try connect()
        defer { connection.close() }
        _ = try connection.query("CREATE TEMP TABLE pgclient_t (id int PRIMARY KEY, v text)")
        let insert = try connection.query("INSERT INTO pgclient_t VALUES (1, 'a'), (2, 'b'), (3, $1)", ["c"])
        #expect(insert.affectedRows == 3)
        #expect(insert.commandTag == "INSERT 0 3")
        #expect(try connection.query("UPDATE pgclient_t SET v = 'z' WHERE id > $1", [1]).affectedRows == 2)

        _ = try connection.query("BEGIN")
        #expect(connection.transactionStatus == .inTransaction)
        let error = #expect(throws: PGError.self) {
            try connection.query("INSERT INTO pgclient_t VALUES (1, 'dup')")
        }
        #expect(error?.code == .queryFailed)
        #expect(error?.sqlState == "23505")
        #expect(error?.detail?.contains("(id)=(1)") == true)
        #expect(error?.statementMayHaveRun == false)
        #expect(error?.isConnectionLevel == false)
        #expect(connection.transactionStatus == .inError)
        #expect(connection.isHealthy)
        _ = try connection.query("ROLLBACK")
        #expect(connection.transactionStatus == .idle)

        let syntax = #expect(throws: PGError.self) { try connection.query("SELEC 1") }
        #expect(syntax?.code == .queryFailed)
        #expect(syntax?.sqlState == "42601")
        #expect(try connection.query("SELECT 1").int(0, 0) == 1)
    }

    @Test("COPY is refused with .unexpectedResult and leaves the connection usable")
    func copyIsRefused() throws {
        let connection = try connect()
        defer { connection.close() }
        _ = try connection.query("CREATE TEMP TABLE pgclient_copy (x int)")
        let out = #expect(throws: PGError.self) {
            try connection.query("COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT")
        }
        #expect(out?.code == .unexpectedResult)
        #expect(try connection.query("SELECT 1").int(0, 0) == 1)
        let into = #expect(throws: PGError.self) { try connection.query("COPY pgclient_copy FROM STDIN") }
        #expect(into?.code == .unexpectedResult)
        #expect(connection.isHealthy)
        #expect(connection.transactionStatus == .idle)
        #expect(try connection.query("SELECT count(*) FROM pgclient_copy").int(0, 0) == 0)
    }

    @Test("a multi-host list skips an unreachable host and reports the server reached")
    func multiHost() throws {
        var config = try config()
        config.host = "127.0.0.1,\(config.host)"
        config.ports = [1, config.port]
        let connection = try PGConnection.connect(config)
        defer { connection.close() }
        #expect(connection.serverPort == config.ports?.last)
        #expect(try connection.query("SELECT 1").int(0, 0) == 1)
    }

    @Test("server NOTICEs are not printed and do not disturb results")
    func notices() throws {
        let connection = try connect()
        defer { connection.close() }
        // Capture this process's stderr while the notices arrive (libpq's default prints them there).
        var pipeFDs: [Int32] = [-1, -1]
        try #require(pipe(&pipeFDs) == 0)
        let savedStderr = dup(2)
        dup2(pipeFDs[1], 2)
        let result = Result { () throws(PGError) -> PGResult in
            try connection.query(
                "DO $$BEGIN RAISE NOTICE 'pgclient notice'; RAISE WARNING 'pgclient warning'; END$$; SELECT 5")
        }
        dup2(savedStderr, 2)
        _ = closeFD(savedStderr)
        _ = closeFD(pipeFDs[1])
        var captured = [UInt8](repeating: 0, count: 4096)
        let count = read(pipeFDs[0], &captured, captured.count)
        _ = closeFD(pipeFDs[0])
        let printed = String(decoding: captured.prefix(max(count, 0)), as: UTF8.self)
        #expect(!printed.contains("pgclient"), "libpq printed: \(printed)")
        #expect(try result.get().int(0, 0) == 5)
    }

    @Test("a password literal in failing SQL never reaches the error text")
    func passwordInSQLIsScrubbed() throws {
        let connection = try connect()
        defer { connection.close() }
        let error = #expect(throws: PGError.self) {
            try connection.query("ALTER ROLE nobody_here PASSWORD 'hunter2-secret")
        }
        #expect(error?.sqlState == "42601")
        let text = "\(error.map { String(reflecting: $0) } ?? "")"
        #expect(!text.contains("hunter2"))
    }

    // MARK: - Connection failures

    @Test("a wrong password gives .authenticationFailed quickly, without the password in the error")
    func wrongPassword() throws {
        var config = try config()
        config.password = "wrong-\(UInt32.random(in: 1000...9999))-pw"
        let start = clock.now
        let error = #expect(throws: PGError.self) { try PGConnection.connect(config) }
        #expect(clock.now - start < .seconds(2))
        #expect(error?.code == .authenticationFailed)
        #expect(error?.sqlState == "28P01")
        #expect(error?.isConnectionLevel == true)
        #expect(error?.statementMayHaveRun == false)
        let text = error.map { "\($0) \(String(reflecting: $0))" } ?? ""
        #expect(!text.contains(config.password!))
    }

    @Test("a database that does not exist is a connection failure with SQLSTATE 3D000")
    func missingDatabase() throws {
        var config = try config()
        config.database = "pgha_no_such_db"
        let error = #expect(throws: PGError.self) { try PGConnection.connect(config) }
        #expect(error?.code == .connectionFailed)
        #expect(error?.sqlState == "3D000")
    }

    @Test("async connect and queries, serialised on one connection")
    func asyncQueries() async throws {
        let connection = try await PGConnection.connect(config())
        defer { connection.close() }
        let sums = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<20 {
                group.addTask { try await connection.query("SELECT $1::int8 * 2", [.int(Int64(i))]).int(0, 0) ?? -1 }
            }
            return try await group.reduce(0, +)
        }
        #expect(sums == 380)
    }

    @Test("async fast path and hand-off: short statements, statements that outlast the spin, several statements in one string, all on one connection from concurrent tasks; sync callers interleaved")
    func asyncFastPathAndHandOff() async throws {
        let connection = try await PGConnection.connect(config())
        defer { connection.close() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<4 {
                group.addTask {
                    for i in 0..<50 {
                        let n = Int64(task * 1000 + i)
                        switch i % 4 {
                        case 0:  // answered within the spin: read on the task's thread
                            #expect(try await connection.query("SELECT $1::int8", [.int(n)]).int(0, 0) == n)
                        case 1:  // outlasts the spin: handed to a pool thread
                            #expect(try await connection.query("SELECT $1::int8 FROM pg_sleep(0.002)", [.int(n)]).int(0, 0) == n)
                        case 2:  // two results, the second after a pause: the first is kept across the hand-off
                            #expect(try await connection.query("SELECT 1; SELECT \(n)::int8 FROM pg_sleep(0.002)").int(0, 0) == n)
                        default:  // the synchronous variant on a pool thread, between them
                            let value = try await BlockingIOPool.shared.run { try connection.query("SELECT \(n)::int8").int(0, 0) }
                            #expect(value == n)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        // A timeout that passes after the hand-off still cancels on the server, and the connection stays usable.
        await #expect(throws: PGError.self) { _ = try await connection.query("SELECT pg_sleep(5)", timeout: .milliseconds(100)) }
        #expect(try await connection.query("SELECT 7").int(0, 0) == 7)
        #expect(connection.transactionStatus == .idle)
    }

    @Test("the sync path's spin: answers within it, statements that outlast it, two results, and a timeout shorter than the spin")
    func syncSpinBeforeWaiting() throws {
        let connection = try connect()
        defer { connection.close() }
        for i in 0..<40 {
            let n = Int64(i)
            switch i % 3 {
            case 0: #expect(try connection.query("SELECT $1::int8", [.int(n)]).int(0, 0) == n)
            case 1: #expect(try connection.query("SELECT $1::int8 FROM pg_sleep(0.002)", [.int(n)]).int(0, 0) == n)
            default: #expect(try connection.query("SELECT 1; SELECT \(n)::int8 FROM pg_sleep(0.001)").int(0, 0) == n)
            }
        }
        // A deadline that passes while spinning ends the spin: the statement is cancelled on the
        // server as after a blocking wait, and the connection stays usable.
        #expect(throws: PGError.self) { _ = try connection.query("SELECT pg_sleep(5)", timeout: .microseconds(20)) }
        #expect(try connection.query("SELECT 8").int(0, 0) == 8)
        #expect(connection.transactionStatus == .idle)
    }

    // MARK: - Timeouts and cancellation

    @Test("a query timeout cancels the statement on the server; the connection stays usable")
    func queryTimeout() throws {
        let connection = try connect()
        defer { connection.close() }
        let observer = try connect()
        defer { observer.close() }
        let start = clock.now
        let error = #expect(throws: PGError.self) {
            try connection.query("SELECT pg_sleep(5)", timeout: .milliseconds(300))
        }
        let elapsed = clock.now - start
        #expect(error?.code == .timeout)
        #expect(error?.statementMayHaveRun == true)
        #expect(error?.isConnectionLevel == false)
        #expect(elapsed >= .milliseconds(300))
        #expect(elapsed < .seconds(1))
        #expect(connection.isHealthy)
        #expect(connection.transactionStatus == .idle)
        #expect(try backendState(connection.backendPID, observer: observer) == "idle")
        #expect(try connection.query("SELECT 7").int(0, 0) == 7)
        // A statement that finishes in time is unaffected by its timeout.
        #expect(try connection.query("SELECT 8", timeout: .seconds(5)).int(0, 0) == 8)
    }

    @Test("the async variant honours the timeout too")
    func asyncQueryTimeout() async throws {
        let connection = try connect()
        defer { connection.close() }
        let start = clock.now
        await #expect(throws: PGError.self) {
            _ = try await connection.query("SELECT pg_sleep(5)", timeout: .milliseconds(300))
        }
        #expect(clock.now - start < .seconds(1))
        #expect(try await connection.query("SELECT 1").int(0, 0) == 1)
    }

    @Test("cancelling the task cancels the server query")
    func taskCancellation() async throws {
        let connection = try connect()
        defer { connection.close() }
        let observer = try connect()
        defer { observer.close() }
        let task = Task { try await connection.query("SELECT pg_sleep(10) AS cancel_me") }
        try await waitUntilRunning(connection.backendPID, "cancel_me", observer: observer)
        let start = clock.now
        task.cancel()
        let outcome = await task.result
        #expect(clock.now - start < .seconds(1))
        guard case .failure(let failure) = outcome, let error = failure as? PGError else {
            Issue.record("expected a PGError, got \(outcome)")
            return
        }
        #expect(error.code == .cancelled)
        #expect(error.sqlState == "57014")
        #expect(error.statementMayHaveRun == true)
        #expect(error.isConnectionLevel == false)
        #expect(try backendState(connection.backendPID, observer: observer) == "idle")
        #expect(try await connection.query("SELECT 2").int(0, 0) == 2)
    }

    @Test("cancel() from another thread cancels a synchronous query")
    func explicitCancel() async throws {
        let connection = try connect()
        defer { connection.close() }
        let observer = try connect()
        defer { observer.close() }
        // A synchronous closure, so that the synchronous `query` runs (on a pool thread).
        let sleep: @Sendable () -> PGError? = {
            do {
                _ = try connection.query("SELECT pg_sleep(10) AS cancel_me_too")
                return nil
            } catch {
                return error as? PGError
            }
        }
        let running = Task.detached { sleep() }
        try await waitUntilRunning(connection.backendPID, "cancel_me_too", observer: observer)
        #expect(connection.cancel())
        let error = await running.value
        #expect(error?.code == .cancelled)
        #expect(error?.sqlState == "57014")
        #expect(connection.isHealthy)
        #expect(try await connection.query("SELECT 3").int(0, 0) == 3)
    }

    // MARK: - Broken and closed connections

    @Test("pg_terminate_backend of our backend makes the next query fail at connection level")
    func terminatedBackend() throws {
        let connection = try connect()
        let admin = try connect()
        defer { admin.close() }
        let terminated = try admin.query(
            "SELECT pg_terminate_backend($1::int, 5000)", [.int(Int64(connection.backendPID))])
        #expect(try terminated.bool(0, 0) == true)

        let start = clock.now
        let error = #expect(throws: PGError.self) { try connection.query("SELECT 1") }
        #expect(clock.now - start < .seconds(1))
        #expect(error?.code == .connectionBroken)
        #expect(error?.sqlState == "57P01")  // the server's FATAL, read before the EOF
        #expect(error?.isConnectionLevel == true)
        #expect(!connection.isHealthy)
        #expect(connection.transactionStatus == .unknown)
        // Later calls fail fast, before sending anything.
        let again = #expect(throws: PGError.self) { try connection.query("SELECT 1") }
        #expect(again?.code == .connectionBroken)
        #expect(again?.statementMayHaveRun == false)
    }

    @Test("probe() notices a terminated backend before anything is sent")
    func probeDetectsTermination() throws {
        let connection = try connect()
        let admin = try connect()
        defer { admin.close() }
        #expect(connection.probe())
        _ = try admin.query("SELECT pg_terminate_backend($1::int, 5000)", [.int(Int64(connection.backendPID))])
        // The FATAL message and EOF may take a moment to arrive after the backend exits.
        let start = clock.now
        var alive = true
        while alive && clock.now - start < .seconds(2) {
            alive = connection.probe()
            if alive { usleep(5_000) }
        }
        #expect(!alive)
        #expect(!connection.isHealthy)
        let error = #expect(throws: PGError.self) { try connection.query("SELECT 1") }
        #expect(error?.statementMayHaveRun == false)
        #expect(error?.isConnectionLevel == true)
    }

    @Test("a closed connection fails fast with .connectionClosed")
    func closedConnection() async throws {
        let connection = try connect()
        connection.close()
        connection.close()
        #expect(!connection.isHealthy)
        #expect(connection.transactionStatus == .unknown)
        let error = #expect(throws: PGError.self) { try connection.query("SELECT 1") }
        #expect(error?.code == .connectionClosed)
        #expect(error?.statementMayHaveRun == false)
        await #expect(throws: PGError.self) { _ = try await connection.query("SELECT 1") }
    }

    // MARK: - Streaming: rows, COPY OUT, COPY IN

    /// This process's resident set size (/proc/self/statm), in bytes.
    func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test("200,000 rows stream with bounded memory; count and checksum match the server's aggregate")
    func streamManyRows() throws {
        let connection = try connect()
        defer { connection.close() }
        let rows = "SELECT g, repeat(md5(g::text), 4) AS payload FROM generate_series(1, 200000) g"
        let expected = try connection.query(
            """
            SELECT count(*), sum(g), sum(g::int8 * ascii(substr(payload, (g % length(payload)) + 1, 1)))
            FROM (\(rows)) s
            """)
        let before = residentBytes()
        var peak = before
        var count: Int64 = 0
        var sum: Int64 = 0
        var checksum: Int64 = 0
        let delivered = try connection.forEachRow(rows) { row in
            let g = try row.int(0) ?? 0
            count += 1
            sum += g
            checksum += row.withUnsafeBytes(1) { bytes in
                guard let bytes, !bytes.isEmpty else { return 0 }
                return g * Int64(bytes[Int(g) % bytes.count])
            }
            if row.index % 10_000 == 0 { peak = max(peak, residentBytes()) }
            return .next
        }
        #expect(delivered == 200_000)
        #expect(count == (try expected.int(0, 0)))
        #expect(sum == (try expected.int(0, 1)))
        #expect(checksum == (try expected.int(0, 2)))
        // The whole result is ~30 MB of text (more as a PGresult); streamed, memory stays flat.
        #expect(peak - before < 16 << 20, "resident set grew by \((peak - before) >> 20) MiB")
        #expect(try connection.query("SELECT 1").int(0, 0) == 1)
    }

    @Test("a streamed row reads typed values in place")
    func streamedRowValues() throws {
        let connection = try connect()
        defer { connection.close() }
        var seen: [String] = []
        let count = try connection.forEachRow(
            "SELECT g AS n, g % 2 = 0 AS even, NULLIF(g, 2) AS maybe, $1::pg_lsn AS l, g / 4.0 AS q, 'r' || g AS t "
                + "FROM generate_series(1, 3) g", [.text("16/B374D848")]
        ) { row in
            #expect(row.columnCount == 6)
            #expect(row.columnNames == ["n", "even", "maybe", "l", "q", "t"])
            #expect(row.columnIndex("q") == 4)
            #expect(row.columnType(0) == 23)
            let n = try row.int(0)
            let even = try row.bool(1)
            let lsn = try row.lsn(3)
            let quarter = try row.double(4)
            #expect(n == Int64(row.index + 1))
            #expect(even == (row.index % 2 == 1))
            #expect(row.isNull(2) == (row.index == 1))
            #expect(lsn == LSN(0x16_B374_D848))
            #expect(quarter == Double(row.index + 1) / 4)
            var conversionFailed = false
            do { _ = try row.int(5) } catch { conversionFailed = (error as? PGError)?.code == .unexpectedResult }
            #expect(conversionFailed)
            seen.append(row.string(5) ?? "-")
            return .next
        }
        #expect(count == 3)
        #expect(seen == ["r1", "r2", "r3"])
        // A statement without rows, and a server error part-way: the rows before it were delivered.
        #expect(try connection.forEachRow("SELECT 1 WHERE false") { _ in .next } == 0)
        var before = 0
        let error = #expect(throws: PGError.self) {
            try connection.forEachRow("SELECT 10 / (5 - g) FROM generate_series(1, 9) g") { _ in
                before += 1
                return .next
            }
        }
        #expect(error?.sqlState == "22012")
        #expect(before == 4)
        #expect(try connection.query("SELECT 1").int(0, 0) == 1)
    }

    @Test("stopping a stream early cancels the rest on the server; the connection answers at once")
    func streamStopsEarly() throws {
        let connection = try connect()
        defer { connection.close() }
        let observer = try connect()
        defer { observer.close() }
        let start = clock.now
        let count = try connection.forEachRow("SELECT generate_series(1, 1000000000) AS endless") { row in
            row.index < 9 ? .next : .stop
        }
        #expect(count == 10)
        #expect(clock.now - start < .seconds(2))
        #expect(connection.isHealthy)
        #expect(connection.transactionStatus == .idle)
        #expect(try backendState(connection.backendPID, observer: observer) == "idle")
        #expect(try connection.query("SELECT 5").int(0, 0) == 5)
        // A body that throws ends the stream the same way; its own error comes back unchanged.
        struct Enough: Error {}
        #expect(throws: Enough.self) {
            try connection.forEachRow("SELECT generate_series(1, 1000000000)") { _ in throw Enough() }
        }
        #expect(try connection.query("SELECT 6").int(0, 0) == 6)
    }

    @Test("stopping early inside a transaction drains the rest: the transaction survives")
    func streamStopsInsideTransaction() throws {
        let connection = try connect()
        defer { connection.close() }
        _ = try connection.query("BEGIN")
        let count = try connection.forEachRow("SELECT generate_series(1, 50000)") { row in
            row.index < 9 ? .next : .stop
        }
        #expect(count == 10)
        #expect(connection.transactionStatus == .inTransaction)
        #expect(try connection.query("SELECT 7").int(0, 0) == 7)
        _ = try connection.query("COMMIT")
        #expect(connection.transactionStatus == .idle)
    }

    @Test("a timeout in the middle of a stream cancels it on the server; the connection stays usable")
    func streamTimeout() throws {
        let connection = try connect()
        defer { connection.close() }
        let observer = try connect()
        defer { observer.close() }
        var rows = 0
        let start = clock.now
        let error = #expect(throws: PGError.self) {
            try connection.forEachRow("SELECT generate_series(1, 1000000000)", timeout: .milliseconds(300)) { _ in
                rows += 1
                return .next
            }
        }
        let elapsed = clock.now - start
        #expect(error?.code == .timeout)
        #expect(error?.statementMayHaveRun == true)
        #expect(error?.isConnectionLevel == false)
        #expect(rows > 0)
        #expect(elapsed >= .milliseconds(300))
        #expect(elapsed < .milliseconds(1500))
        #expect(connection.isHealthy)
        #expect(try backendState(connection.backendPID, observer: observer) == "idle")
        #expect(try connection.query("SELECT 8").int(0, 0) == 8)
        // A slow body over buffered rows: the deadline is checked after every row.
        var slow = 0
        let slowStart = clock.now
        let slowError = #expect(throws: PGError.self) {
            try connection.forEachRow("SELECT generate_series(1, 100000)", timeout: .milliseconds(200)) { _ in
                slow += 1
                usleep(2_000)
                return .next
            }
        }
        #expect(slowError?.code == .timeout)
        #expect(clock.now - slowStart < .milliseconds(1200))
        #expect(slow < 1_000)
        #expect(try connection.query("SELECT 9").int(0, 0) == 9)
    }

    @Test("cancelling the task of an async stream cancels it on the server")
    func streamTaskCancellation() async throws {
        let connection = try connect()
        defer { connection.close() }
        let observer = try connect()
        defer { observer.close() }
        let seen = Atomic<Int>(0)
        let task = Task {
            try await connection.forEachRow("SELECT generate_series(1, 1000000000)") { _ in
                seen.add(1, ordering: .relaxed)
                return .next
            }
        }
        let deadline = clock.now + .seconds(5)
        while seen.load(ordering: .relaxed) < 1_000 && clock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(seen.load(ordering: .relaxed) >= 1_000)
        let start = clock.now
        task.cancel()
        let outcome = await task.result
        #expect(clock.now - start < .seconds(1))
        guard case .failure(let failure) = outcome, let error = failure as? PGError else {
            Issue.record("expected a PGError, got \(outcome)")
            return
        }
        #expect(error.code == .cancelled)
        #expect(error.sqlState == "57014")
        #expect(error.statementMayHaveRun == true)
        #expect(error.isConnectionLevel == false)
        #expect(try backendState(connection.backendPID, observer: observer) == "idle")
        #expect(try await connection.query("SELECT 10").int(0, 0) == 10)
    }

    @Test("COPY OUT of a table equals the server's own text, chunk by chunk")
    func copyOut() throws {
        let connection = try connect()
        defer { connection.close() }
        _ = try connection.query(
            """
            CREATE TEMP TABLE pgclient_copy_out AS
            SELECT g AS id, CASE WHEN g % 7 = 0 THEN NULL WHEN g % 5 = 0 THEN E'tab\\there \\\\ slash' ELSE 'name ' || g END AS name
            FROM generate_series(1, 1000) g
            """)
        let expected = try connection.query(
            """
            SELECT string_agg(id || E'\\t' || coalesce(replace(replace(name, '\\', '\\\\'), E'\\t', '\\t'), '\\N') || E'\\n', ''
                              ORDER BY id)
            FROM pgclient_copy_out
            """
        ).string(0, 0)
        var text: [UInt8] = []
        let rows = try connection.copyOut("COPY (SELECT * FROM pgclient_copy_out ORDER BY id) TO STDOUT") { chunk in
            text += chunk
            return .next
        }
        #expect(rows == 1000)
        #expect(String(decoding: text, as: UTF8.self) == expected)
        // A statement that is no COPY is refused and leaves the connection usable.
        let refused = #expect(throws: PGError.self) { try connection.copyOut("SELECT 1") { _ in .next } }
        #expect(refused?.code == .unexpectedResult)
        #expect(try connection.query("SELECT 11").int(0, 0) == 11)
    }

    @Test("the async COPY variants")
    func asyncCopy() async throws {
        let connection = try connect()
        defer { connection.close() }
        _ = try await connection.query("CREATE TEMP TABLE pgclient_copy_async (id int, name text)")
        let copied = try await connection.copyIn(
            "COPY pgclient_copy_async FROM STDIN", from: (1...300).map { "\($0)\tn\($0)\n" })
        #expect(copied == 300)
        let written = try await connection.copyIn("COPY pgclient_copy_async FROM STDIN") { writer in
            try writer.write("301\tlast\n")
        }
        #expect(written == 1)
        let lines = Atomic<Int>(0)
        let rows = try await connection.copyOut("COPY pgclient_copy_async TO STDOUT") { chunk in
            lines.add(chunk.last == UInt8(ascii: "\n") ? 1 : 0, ordering: .relaxed)
            return .next
        }
        #expect(rows == 301)
        #expect(lines.load(ordering: .relaxed) == 301)
    }

    @Test("COPY IN of N rows, from a sequence and from a writer; then the count")
    func copyIn() throws {
        let connection = try connect()
        defer { connection.close() }
        _ = try connection.query("CREATE TEMP TABLE pgclient_copy_in (id int, name text)")
        let copied = try connection.copyIn(
            "COPY pgclient_copy_in FROM STDIN", from: (1...5_000).map { "\($0)\tname \($0)\n" })
        #expect(copied == 5_000)
        // 50,000 more rows in 64 KiB chunks that split rows anywhere.
        var data: [UInt8] = []
        for id in 5_001...55_000 { data += Array("\(id)\t\\N\n".utf8) }
        let written = try connection.copyIn("COPY pgclient_copy_in FROM STDIN") { writer in
            var offset = 0
            while offset < data.count {
                let end = min(offset + 65_536, data.count)
                try writer.write(Array(data[offset..<end]))
                offset = end
            }
        }
        #expect(written == 50_000)
        let check = try connection.query("SELECT count(*), sum(id), count(name) FROM pgclient_copy_in")
        #expect(try check.int(0, 0) == 55_000)
        #expect(try check.int(0, 1) == 55_000 * 55_001 / 2)
        #expect(try check.int(0, 2) == 5_000)
        #expect(connection.transactionStatus == .idle)
    }

    @Test("COPY OUT of one connection piped into COPY IN of another (the sync stage's shape)")
    func copyPipe() throws {
        let source = try connect()
        defer { source.close() }
        let target = try connect()
        defer { target.close() }
        _ = try target.query("CREATE TEMP TABLE pgclient_copy_pipe (id int, name text)")
        let query = "SELECT g, 'n' || g FROM generate_series(1, 20000) g"
        var sent = 0
        let copied = try target.copyIn("COPY pgclient_copy_pipe FROM STDIN") { writer in
            sent = try source.copyOut("COPY (\(query)) TO STDOUT") { line in
                try writer.write(line)
                return .next
            }
        }
        #expect(sent == 20_000)
        #expect(copied == 20_000)
        let check = try target.query("SELECT count(*), sum(id), count(DISTINCT name) FROM pgclient_copy_pipe")
        #expect(try check.int(0, 0) == 20_000)
        #expect(try check.int(0, 1) == 20_000 * 20_001 / 2)
        #expect(try check.int(0, 2) == 20_000)
    }

    @Test("COPY IN with a bad row: PGError 22P02, nothing kept, the connection usable")
    func copyInBadRow() throws {
        let connection = try connect()
        defer { connection.close() }
        _ = try connection.query("CREATE TEMP TABLE pgclient_copy_bad (id int, name text)")
        let error = #expect(throws: PGError.self) {
            try connection.copyIn("COPY pgclient_copy_bad FROM STDIN", from: ["1\ta\n", "2\tb\n", "three\tc\n", "4\td\n"])
        }
        #expect(error?.code == .queryFailed)
        #expect(error?.sqlState == "22P02")
        #expect(error?.isConnectionLevel == false)
        #expect(connection.isHealthy)
        #expect(connection.transactionStatus == .idle)
        #expect(try connection.query("SELECT count(*) FROM pgclient_copy_bad").int(0, 0) == 0)
        // A body that throws: CopyFail, nothing kept, its own error rethrown.
        struct Abandon: Error {}
        #expect(throws: Abandon.self) {
            try connection.copyIn("COPY pgclient_copy_bad FROM STDIN") { writer in
                try writer.write("1\ta\n")
                throw Abandon()
            }
        }
        #expect(try connection.query("SELECT count(*) FROM pgclient_copy_bad").int(0, 0) == 0)
        // copyIn with a statement that is no COPY FROM STDIN.
        let refused = #expect(throws: PGError.self) { try connection.copyIn("SELECT 1") { _ in } }
        #expect(refused?.code == .unexpectedResult)
        #expect(try connection.query("SELECT 12").int(0, 0) == 12)
    }

    @Test("a COPY IN blocked on a lock times out, is cancelled and leaves the connection usable")
    func copyInTimeout() throws {
        let connection = try connect()
        defer { connection.close() }
        let locker = try connect()
        defer { locker.close() }
        let table = "pgclient_copy_locked_\(UInt32.random(in: 1...999_999))"
        _ = try connection.query("CREATE TABLE \(table) (id int, pad text)")
        defer { _ = try? connection.query("DROP TABLE \(table)") }
        _ = try locker.query("BEGIN; LOCK TABLE \(table) IN ACCESS EXCLUSIVE MODE")
        let line = Array("1\t\(String(repeating: "x", count: 1000))\n".utf8)
        var writes = 0
        let start = clock.now
        let error = #expect(throws: PGError.self) {
            try connection.copyIn("COPY \(table) FROM STDIN", timeout: .milliseconds(400)) { writer in
                for _ in 0..<20_000 {
                    try writer.write(line)
                    writes += 1
                }
            }
        }
        #expect(error?.code == .timeout)
        #expect(error?.isConnectionLevel == false)
        #expect(clock.now - start < .seconds(2))
        _ = try locker.query("ROLLBACK")
        #expect(connection.isHealthy)
        #expect(try connection.query("SELECT count(*) FROM \(table)").int(0, 0) == 0)
    }

    // MARK: - Replication helpers

    @Test("isInRecovery, currentWALLSN and replayLSN on a primary")
    func walHelpers() throws {
        let connection = try connect()
        defer { connection.close() }
        #expect(try connection.isInRecovery() == false)
        let before = try connection.currentWALLSN()
        #expect(before > LSN.invalid)
        _ = try connection.query("CREATE TEMP TABLE pgclient_wal (x int); INSERT INTO pgclient_wal VALUES (1)")
        let after = try connection.currentWALLSN()
        #expect(after > before)
        #expect(before.distance(to: after) > 0)
        #expect(try connection.replayLSN() == nil)
        #expect(try connection.receiveLSN() == nil)
    }

    @Test("the server's statement_timeout is reported as .timeout (57014)")
    func serverStatementTimeout() throws {
        let connection = try connect()
        defer { connection.close() }
        _ = try connection.query("SET statement_timeout = '100ms'")
        let error = #expect(throws: PGError.self) { try connection.query("SELECT pg_sleep(2)") }
        #expect(error?.code == .timeout)
        #expect(error?.sqlState == "57014")
        #expect(error?.statementMayHaveRun == true)
        #expect(error?.isConnectionLevel == false)
        #expect(try connection.query("SELECT 1").int(0, 0) == 1)
    }

    @Test("the async helpers")
    func asyncWALHelpers() async throws {
        let connection = try connect()
        defer { connection.close() }
        #expect(try await connection.isInRecovery() == false)
        #expect(try await connection.currentWALLSN() > LSN.invalid)
        #expect(try await connection.replayLSN() == nil)
    }
}

/// Connection failures that need no PostgreSQL server (loopback sockets only): always enabled.
@Suite("PGClient connection failures without a server")
struct PGClientConnectFailureTests {
    let clock = ContinuousClock()

    @Test("an unreachable port gives .connectionFailed quickly")
    func unreachablePort() throws {
        let config = PGConnectionConfig(
            host: "127.0.0.1", port: 1, database: "db", user: "u", password: "not-sent-anywhere")
        let start = clock.now
        let error = #expect(throws: PGError.self) { try PGConnection.connect(config) }
        #expect(clock.now - start < .seconds(2))
        #expect(error?.code == .connectionFailed)
        #expect(error?.isConnectionLevel == true)
        #expect(error?.statementMayHaveRun == false)
        #expect(error?.port == 1)
        #expect(error.map { !"\($0)".contains("not-sent-anywhere") } == true)
    }

    @Test("a server that accepts TCP but never answers hits our connect deadline")
    func silentServer() throws {
        let listener = try PGSilentListener()
        defer { listener.close() }
        let config = PGConnectionConfig(
            host: "127.0.0.1", port: listener.port, database: "db", user: "u", sslMode: .disable,
            connectTimeout: .milliseconds(400))
        let start = clock.now
        let error = #expect(throws: PGError.self) { try PGConnection.connect(config) }
        let elapsed = clock.now - start
        #expect(error?.code == .timeout)
        #expect(error?.isConnectionLevel == true)
        #expect(elapsed >= .milliseconds(400))
        #expect(elapsed < .seconds(1))
    }

    @Test("a server that never answers a query: timeout, unconfirmed cancel, connection closed")
    func hungServer() throws {
        let server = try PGFakeServer(mode: .silent)
        defer { server.stop() }
        let connection = try PGConnection.connect(server.config(grace: .milliseconds(300)))
        #expect(connection.serverVersion == 150_000)
        let start = clock.now
        let error = #expect(throws: PGError.self) {
            try connection.query("SELECT pg_sleep(5)", timeout: .milliseconds(300))
        }
        let elapsed = clock.now - start
        // 300 ms timeout + 300 ms grace: the cancel request hangs (the fake server never closes it).
        #expect(elapsed >= .milliseconds(600))
        #expect(elapsed < .milliseconds(1500))
        #expect(error?.code == .timeout)
        #expect(error?.statementMayHaveRun == true)
        #expect(error?.isConnectionLevel == true)
        #expect(!connection.isHealthy)
        let next = #expect(throws: PGError.self) { try connection.query("SELECT 1") }
        #expect(next?.code == .connectionBroken)
        #expect(next?.statementMayHaveRun == false)
    }

    @Test("task cancellation against a server that never answers closes the connection")
    func hungServerTaskCancellation() async throws {
        let server = try PGFakeServer(mode: .silent)
        defer { server.stop() }
        let connection = try await PGConnection.connect(server.config(grace: .milliseconds(200)))
        let task = Task { try await connection.query("SELECT 1") }
        try await server.waitForQuery()
        let start = clock.now
        task.cancel()
        let outcome = await task.result
        #expect(clock.now - start < .seconds(1))
        guard case .failure(let failure) = outcome, let error = failure as? PGError else {
            Issue.record("expected a PGError, got \(outcome)")
            return
        }
        #expect(error.code == .cancelled)
        #expect(error.isConnectionLevel)
        #expect(!connection.isHealthy)
    }

    @Test("a server that drops the connection mid-statement: .connectionBroken, may have run")
    func droppedMidStatement() throws {
        let server = try PGFakeServer(mode: .closeOnQuery)
        defer { server.stop() }
        let connection = try PGConnection.connect(server.config(grace: .seconds(1)))
        let error = #expect(throws: PGError.self) { try connection.query("UPDATE t SET x = 1") }
        #expect(error?.code == .connectionBroken)
        #expect(error?.statementMayHaveRun == true)
        #expect(error?.isConnectionLevel == true)
        #expect(!connection.isHealthy)
    }

    @Test("an unknown libpq keyword is .invalidConfiguration")
    func unknownKeyword() throws {
        let config = PGConnectionConfig(
            host: "127.0.0.1", port: 1, database: "db", user: "u", extra: ["no_such_option": "1"])
        let error = #expect(throws: PGError.self) { try PGConnection.connect(config) }
        #expect(error?.code == .invalidConfiguration)
    }
}

private func closeFD(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.close(fd)
    #else
    Darwin.close(fd)
    #endif
}

/// A TCP listener on 127.0.0.1 that never accepts: the kernel completes the handshake, then the
/// client waits forever for the server's first message.
private struct PGSilentListener {
    let fd: Int32
    let port: Int

    struct Failure: Error {}

    init() throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw Failure() }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw Failure() }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw Failure() }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = closeFD(fd) }
}

/// A minimal PostgreSQL wire-protocol server on 127.0.0.1 for failure tests: it completes the
/// startup (trust authentication), then either never answers a query (`.silent`, also ignoring
/// cancel requests without closing them, like an unresponsive host) or closes the connection
/// when a query arrives (`.closeOnQuery`).
private final class PGFakeServer: Sendable {
    enum Mode: Sendable { case silent, closeOnQuery }

    let listener: PGSilentListener
    let mode: Mode
    private let sockets = Mutex<[Int32]>([])
    private let queries = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)

    init(mode: Mode) throws {
        listener = try PGSilentListener()
        self.mode = mode
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    func config(grace: Duration) -> PGConnectionConfig {
        PGConnectionConfig(
            host: "127.0.0.1", port: listener.port, database: "db", user: "u", sslMode: .disable,
            connectTimeout: .seconds(2), cancelGracePeriod: grace)
    }

    /// Waits (up to 5 s) until a query message has arrived.
    func waitForQuery() async throws {
        for _ in 0..<500 where queries.load(ordering: .acquiring) == 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func stop() {
        stopped.store(true, ordering: .releasing)
        // Wakes the accept loop, which then closes the listener itself (so its descriptor number
        // cannot be reused while the loop might still call accept on it).
        _ = shutdown(listener.fd, Int32(SHUT_RDWR))
        // Under the lock: a socket closed by `serve` is removed first, so a reused descriptor
        // number is never shut down here.
        sockets.withLock { open in
            for fd in open { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    private func acceptLoop() {
        defer { listener.close() }
        while !stopped.load(ordering: .acquiring) {
            let fd = accept(listener.fd, nil, nil)
            guard fd >= 0 else { return }
            sockets.withLock { $0.append(fd) }
            let thread = Thread { [self] in serve(fd) }
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer {
            sockets.withLock { open in
                open.removeAll { $0 == fd }
                _ = closeFD(fd)
            }
        }
        guard let length = readInt32(fd), length >= 8, let body = readBytes(fd, Int(length) - 4) else { return }
        let code = body.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        if code == 80_877_102 {  // CancelRequest: hold the connection open, never act on it
            while readBytes(fd, 1) != nil {}
            return
        }
        var reply: [UInt8] = []
        func message(_ type: Character, _ payload: [UInt8]) {
            reply.append(UInt8(ascii: type.unicodeScalars.first!))
            reply += int32(payload.count + 4) + payload
        }
        message("R", int32(0))  // AuthenticationOk
        message("S", Array("server_version".utf8) + [0] + Array("15.0".utf8) + [0])
        message("S", Array("client_encoding".utf8) + [0] + Array("UTF8".utf8) + [0])
        message("K", int32(4242) + int32(777))
        message("Z", [UInt8(ascii: "I")])
        guard writeAll(fd, reply) else { return }
        while let type = readBytes(fd, 1), let length = readInt32(fd), readBytes(fd, Int(length) - 4) != nil {
            if type[0] == UInt8(ascii: "X") { return }
            queries.add(1, ordering: .releasing)
            if mode == .closeOnQuery { return }
        }
    }

    private func int32(_ value: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    private func readInt32(_ fd: Int32) -> Int32? {
        guard let bytes = readBytes(fd, 4) else { return nil }
        return bytes.reduce(0) { $0 << 8 | Int32($1) }
    }

    private func readBytes(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, count - done) }
            if n <= 0 { return nil }
            done += n
        }
        return buffer
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) == $0.count }
    }
}

/// The helpers on a streaming standby (enabled by PGHA_TEST_PG_STANDBY_PORT; see TestEnvironment).
@Suite("PGClient on a standby", .enabled(if: TestEnvironment.pgStandby != nil))
struct PGClientStandbyTests {
    @Test("isInRecovery, replayLSN, receiveLSN; currentWALLSN and writes are refused")
    func standbyHelpers() throws {
        let config = try #require(TestEnvironment.pgStandby)
        let standby = try PGConnection.connect(config)
        defer { standby.close() }
        #expect(try standby.isInRecovery())
        #expect(try standby.replayLSN() != nil)
        #expect(try standby.receiveLSN() != nil)
        let error = #expect(throws: PGError.self) { try standby.currentWALLSN() }
        #expect(error?.code == .notAvailableOnStandby)
        #expect(error?.sqlState == "55000")
        #expect(error?.message.contains("standby") == true)
        #expect(error?.isConnectionLevel == false)
        let write = #expect(throws: PGError.self) { try standby.query("CREATE TABLE pgclient_nope (x int)") }
        #expect(write?.code == .queryFailed)
        #expect(write?.isReadOnlyTransaction == true)
        #expect(standby.isHealthy)
    }

    @Test("a multi-host list with target_session_attrs=read-write reaches the primary")
    func targetSessionAttrs() throws {
        var config = try #require(TestEnvironment.pgStandby)
        let primary = try #require(TestEnvironment.pg)
        config.host = "\(config.host),\(primary.host)"
        config.ports = [config.port, primary.port]
        config.targetSessionAttrs = .readWrite
        let connection = try PGConnection.connect(config)
        defer { connection.close() }
        #expect(connection.serverPort == primary.port)
        #expect(try connection.isInRecovery() == false)
    }
}
