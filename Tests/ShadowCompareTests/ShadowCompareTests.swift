import PGClient
import ShadowCompare
import Testing

@Suite struct SQLTextTests {
    @Test func fingerprintIgnoresValuesCaseSpacingAndComments() {
        let a = SQLText("SELECT aid, abalance FROM pgbench_accounts WHERE bid = 1 AND note = 'x''y' ORDER BY aid LIMIT 10")
        let b = SQLText("select  aid,abalance -- the balances\n from PGBENCH_ACCOUNTS where bid = $1 and note = E'z\\'' /* c /* nested */ */ order by aid limit $2")
        #expect(a.normalized == "select aid, abalance from pgbench_accounts where bid = ? and note = ? order by aid limit ?")
        #expect(a.normalized == b.normalized)
        #expect(a.fingerprint == b.fingerprint)
        #expect(a.fingerprint.count == 16)
        #expect(SQLText("SELECT 1 WHERE x IN (1, 2, 3)").normalized == SQLText("SELECT 1 WHERE x IN ($1)").normalized)
        #expect(SQLText("SELECT 1").fingerprint != SQLText("SELECT 2 + 2").fingerprint)
    }

    @Test func ordersResultOnlyForTheOutermostQuery() {
        #expect(SQLText("SELECT * FROM t ORDER BY id").ordersResult)
        #expect(SQLText("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1").ordersResult)
        #expect(!SQLText("SELECT * FROM (SELECT * FROM t ORDER BY id) s").ordersResult)
        #expect(!SQLText("SELECT row_number() OVER (ORDER BY id), string_agg(x, ',' ORDER BY x) FROM t GROUP BY id").ordersResult)
        #expect(!SQLText("SELECT 'order by' FROM t").ordersResult)
        #expect(!SQLText("WITH s AS (SELECT * FROM t ORDER BY id) SELECT * FROM s").ordersResult)
        #expect(SQLText("SELECT * FROM t LIMIT 5").hasUnorderedLimit)
        #expect(!SQLText("SELECT * FROM t ORDER BY id LIMIT 5").hasUnorderedLimit)
        #expect(!SQLText("SELECT * FROM (SELECT * FROM t LIMIT 5) s ORDER BY 1").hasUnorderedLimit)
    }

    @Test func onlyStatementsThatCannotWriteAreReadOnly() {
        for sql in [
            "SELECT 1", "select * from t where name = 'delete me'", "WITH x AS (SELECT 1) SELECT * FROM x", "VALUES (1), (2)",
            "TABLE pgbench_branches", "SHOW server_version", "(SELECT 1) UNION (SELECT 2)", "SELECT $tag$ insert into $tag$",
            "SELECT \"update\" FROM t", "SELECT 1;", "SELECT CASE WHEN a THEN 1 END, comment FROM t",
        ] {
            #expect(SQLText(sql).safety == .readOnly, "\(sql)")
        }
        for sql in [
            "INSERT INTO t VALUES (1)", "UPDATE t SET a = 1", "DELETE FROM t", "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "SELECT * INTO new_table FROM t", "SELECT * FROM t FOR UPDATE", "SELECT * FROM t FOR NO KEY UPDATE", "SELECT * FROM t FOR SHARE",
            "SELECT nextval('s')", "SELECT pg_advisory_lock(1)", "SELECT pg_terminate_backend(123)", "SELECT set_config('a.b', 'c', false)",
            "SELECT 1; DELETE FROM t", "CREATE TABLE x (a int)", "EXPLAIN ANALYZE DELETE FROM t", "SET search_path = x",
            "SELECT lo_unlink(1)", "SELECT * FROM dblink('x', 'y') AS t(a int)", "SELECT pg_logical_slot_get_changes('s', NULL, NULL)",
            "SELECT pg_wal_replay_pause()", "", "-- only a comment",
        ] {
            #expect(SQLText(sql).safety != .readOnly, "\(sql)")
        }
    }
}

@Suite struct ResultComparatorTests {
    static let columns = [ResultSnapshot.Column(name: "id", typeOID: 23), ResultSnapshot.Column(name: "v", typeOID: 25)]
    func snapshot(_ rows: [[String?]], columns: [ResultSnapshot.Column] = ResultComparatorTests.columns, limit: Int = 5_000) -> ExecutionOutcome {
        .rows(ResultSnapshot(columns: columns, rows: rows, rowLimit: limit))
    }

    @Test func unorderedStatementsCompareAsMultisets() {
        let a = snapshot([["1", "a"], ["2", "b"], ["2", "b"]])
        let b = snapshot([["2", "b"], ["1", "a"], ["2", "b"]])
        #expect(ResultComparator.difference(a, b, ordered: false) == nil)
        let c = snapshot([["2", "b"], ["1", "a"], ["1", "a"]])
        let d = try! #require(ResultComparator.difference(a, c, ordered: false, left: "single node", right: "ha2"))
        #expect(d.kind == .rows)
        #expect(d.onlyLeft == [["2", "b"]])
        #expect(d.onlyRight == [["1", "a"]])
        #expect(d.summary.contains("1 only on single node: ('2', 'b')"), "\(d.summary)")
        #expect(d.summary.contains("1 only on ha2: ('1', 'a')"), "\(d.summary)")
    }

    @Test func orderedStatementsCompareInOrder() {
        let a = snapshot([["1", "a"], ["2", "b"]])
        let b = snapshot([["2", "b"], ["1", "a"]])
        let d = try! #require(ResultComparator.difference(a, b, ordered: true))
        #expect(d.kind == .order)
        #expect(d.firstDifferingRow == 0)
        #expect(ResultComparator.difference(a, a, ordered: true) == nil)
    }

    @Test func valuesCompareByType() {
        let numeric = [ResultSnapshot.Column(name: "n", typeOID: 1700), ResultSnapshot.Column(name: "f", typeOID: 701), ResultSnapshot.Column(name: "j", typeOID: 114)]
        let a = snapshot([["1.50", "0.30000000000000004", "{\"b\": 1, \"a\": [1, 2]}"]], columns: numeric)
        let b = snapshot([["1.5", "0.3", "{\"a\":[1,2],\"b\":1}"]], columns: numeric)
        #expect(ResultComparator.difference(a, b, ordered: false) == nil)
        let c = snapshot([["1.51", "0.3", "{\"a\":[1,2],\"b\":1}"]], columns: numeric)
        #expect(ResultComparator.difference(a, c, ordered: false) != nil)
        // Text is text: no normalisation.
        #expect(ResultComparator.difference(snapshot([["1", "a "]]), snapshot([["1", "a"]]), ordered: false) != nil)
        // NULL is not the empty string.
        #expect(ResultComparator.difference(snapshot([["1", nil]]), snapshot([["1", ""]]), ordered: false) != nil)
        #expect(TypedValue.canonical("-0.000", typeOID: 1700) == "0")
        #expect(TypedValue.canonical("007", typeOID: 23) == "7")
    }

    @Test func columnsAndTypesMatter() {
        let other = [ResultSnapshot.Column(name: "id", typeOID: 20), ResultSnapshot.Column(name: "v", typeOID: 25)]
        let d = ResultComparator.difference(snapshot([["1", "a"]]), snapshot([["1", "a"]], columns: other), ordered: false)
        #expect(d?.kind == .columns)
        // User types (OID ≥ 16384) differ between independent clusters: not compared.
        let userA = [ResultSnapshot.Column(name: "mood", typeOID: 16390)], userB = [ResultSnapshot.Column(name: "mood", typeOID: 17001)]
        #expect(ResultComparator.difference(snapshot([["happy"]], columns: userA), snapshot([["happy"]], columns: userB), ordered: false) == nil)
    }

    @Test func errorsOnOneSideAreDifferencesAndTheSameErrorIsNot() {
        let rows = snapshot([["1", "a"]])
        let missing = ExecutionOutcome.error(sqlState: "42P01", message: "relation \"x\" does not exist")
        #expect(ResultComparator.difference(rows, missing, ordered: false)?.kind == .error)
        #expect(ResultComparator.difference(missing, rows, ordered: false)?.kind == .error)
        #expect(ResultComparator.difference(missing, missing, ordered: false) == nil)
        let timeout = ExecutionOutcome.error(sqlState: "57014", message: "canceling statement due to statement timeout")
        #expect(ResultComparator.difference(missing, timeout, ordered: false)?.kind == .error)
        let client = ExecutionOutcome.error(sqlState: nil, message: "connection broken")
        #expect(ResultComparator.difference(client, client, ordered: false) != nil, "client-side failures are never the same answer")
    }

    @Test func largeResultsCompareByDigestBeyondTheKeptRows() {
        let many = (0..<100).map { [String($0), "v\($0)"] as [String?] }
        var changed = many
        changed[90] = ["90", "changed"]
        let a = snapshot(many, limit: 10), b = snapshot(many.reversed(), limit: 10), c = snapshot(changed, limit: 10)
        #expect(ResultComparator.difference(a, b, ordered: false) == nil)
        let d = try! #require(ResultComparator.difference(a, c, ordered: false))
        #expect(d.summary.contains("first 10 rows"), "\(d.summary)")
    }
}

@Suite struct ShadowClassificationTests {
    let one = ExecutionOutcome.rows(ResultSnapshot(columns: [.init(name: "n", typeOID: 23)], rows: [["1"]]))
    let two = ExecutionOutcome.rows(ResultSnapshot(columns: [.init(name: "n", typeOID: 23)], rows: [["2"]]))
    let three = ExecutionOutcome.rows(ResultSnapshot(columns: [.init(name: "n", typeOID: 23)], rows: [["3"]]))

    @Test func diffyClassification() {
        #expect(ShadowClassification.classify(primary: one, secondary: one, candidate: one, ordered: false, candidateBehind: false) == .match)
        // The single node disagrees with itself: noise, whatever the candidate says.
        #expect(ShadowClassification.classify(primary: one, secondary: two, candidate: three, ordered: false, candidateBehind: false).name == "noise")
        #expect(ShadowClassification.classify(primary: one, secondary: two, candidate: one, ordered: false, candidateBehind: true).name == "noise")
        // Deterministic on the single node, different on the member.
        #expect(ShadowClassification.classify(primary: one, secondary: one, candidate: two, ordered: false, candidateBehind: false).name == "mismatch")
        #expect(ShadowClassification.classify(primary: one, secondary: one, candidate: two, ordered: false, candidateBehind: true).name == "lag")
        // Being behind does not matter when the answer is the same.
        #expect(ShadowClassification.classify(primary: one, secondary: one, candidate: one, ordered: false, candidateBehind: true) == .match)
        let failed = ExecutionOutcome.error(sqlState: "57014", message: "statement timeout")
        #expect(ShadowClassification.classify(primary: one, secondary: one, candidate: failed, ordered: false, candidateBehind: false).name == "mismatch")
    }

    @Test func lagIsRecheckedOnce() {
        let d = ResultDifference(kind: .rows, summary: "x")
        #expect(ShadowClassification.afterRecheck(first: .lag(d), recheck: .match) == .lag(d))
        #expect(ShadowClassification.afterRecheck(first: .lag(d), recheck: nil) == .lag(d))
        #expect(ShadowClassification.afterRecheck(first: .lag(d), recheck: .mismatch(d)) == .mismatch(d))
        #expect(ShadowClassification.afterRecheck(first: .lag(d), recheck: .noise(d)) == .noise(d))
        #expect(ShadowClassification.afterRecheck(first: .mismatch(d), recheck: .match) == .mismatch(d))
    }
}

@Suite struct LatencyHistogramTests {
    @Test func percentilesFromTheHistogram() {
        var h = LatencyHistogram()
        for micros in 1...1000 { h.record(microseconds: UInt64(micros)) }
        #expect(h.count == 1000)
        let s = h.summary
        #expect(abs(s.p50Ms - 0.5) < 0.01)
        #expect(abs(s.p99Ms - 0.99) < 0.01)
        #expect(abs(s.maxMs - 1.0) < 0.01)
        var other = LatencyHistogram()
        other.record(.milliseconds(250))
        h.add(other)
        #expect(h.count == 1001)
        #expect(abs(h.summary.maxMs - 250) < 0.5)
        #expect(LatencyHistogram().summary.count == 0)
        #expect(LatencySummary.format(0.5) == "0.50")
        #expect(LatencySummary.format(12.34) == "12.3")
    }
}
