import Testing
@testable import Migration

/// The data compare's decisions, SQL and row diff, without a server.
@Suite("Data compare: the model")
struct CompareModelTests {
    let keyed = CompareModel.Table(schema: "public", name: "orders", keyColumns: ["id"], keyTypes: ["bigint"])
    let composite = CompareModel.Table(schema: "app", name: "Line Items", keyColumns: ["order_id", "\"No\""], keyTypes: ["integer", "smallint"])
    let keyless = CompareModel.Table(schema: "public", name: "log", keyColumns: [], keyTypes: [])
    let limits = CompareModel.Limits(chunkRows: 1000, fetchRows: 100, rechecks: 2)

    func digest(_ rows: Int64, _ sum: String) -> CompareModel.Digest { .init(rows: rows, sum: sum) }

    @Test("equal digests end the range; a difference is read again, then narrowed by size, or not at all without a key")
    func steps() {
        #expect(CompareModel.step(table: keyed, source: digest(10, "5"), target: digest(10, "5"), reads: 1, limits: limits) == .equal)
        #expect(CompareModel.step(table: keyed, source: digest(10, "5"), target: digest(10, "6"), reads: 1, limits: limits) == .recheck(attempt: 1))
        #expect(CompareModel.step(table: keyed, source: digest(10, "5"), target: digest(10, "6"), reads: 2, limits: limits) == .recheck(attempt: 2))
        #expect(CompareModel.step(table: keyed, source: digest(10, "5"), target: digest(10, "6"), reads: 3, limits: limits) == .fetchRows)
        #expect(CompareModel.step(table: keyed, source: digest(100, "5"), target: digest(99, "6"), reads: 3, limits: limits) == .fetchRows)
        #expect(CompareModel.step(table: keyed, source: digest(100, "5"), target: digest(101, "6"), reads: 3, limits: limits) == .bisect)
        #expect(CompareModel.step(table: keyed, source: digest(0, "0"), target: digest(5000, "6"), reads: 3, limits: limits) == .bisect)
        #expect(CompareModel.step(table: keyless, source: digest(5, "1"), target: digest(5, "2"), reads: 3, limits: limits) == .differs)
        // Same count, different sum: a changed row is a difference too.
        #expect(CompareModel.step(table: keyed, source: digest(7, "123"), target: digest(7, "124"), reads: 9, limits: limits) != .equal)
    }

    @Test("the row diff names rows missing on the target, only on the target, and changed")
    func rowDifferences() {
        let source: [(CompareModel.Key, String)] = [(["1"], "a"), (["2"], "b"), (["3"], "c"), (["4"], "d")]
        let target: [(CompareModel.Key, String)] = [(["1"], "a"), (["3"], "X"), (["4"], "d"), (["9"], "z")]
        let found = CompareModel.rowDifferences(source: source, target: target)
        #expect(found == [.init(kind: .missingOnTarget, key: ["2"]), .init(kind: .differs, key: ["3"]), .init(kind: .onlyOnTarget, key: ["9"])])
        #expect(CompareModel.rowDifferences(source: source, target: source).isEmpty)
        #expect(CompareModel.rowDifferences(source: [], target: []).isEmpty)
    }

    @Test("a diff that deletes everything and adds it back is not what the row diff says")
    func rowDifferencesAreMinimal() {
        let rows: [(CompareModel.Key, String)] = (1...200).map { ([String($0)], "h\($0)") }
        var changed = rows
        changed[57].1 = "other"
        let found = CompareModel.rowDifferences(source: rows, target: changed)
        #expect(found == [.init(kind: .differs, key: ["58"])])
    }

    @Test("first-pass ranges cover every key exactly once; a split keeps the bounds")
    func ranges() {
        let r = CompareModel.ranges(boundaries: [["100"], ["200"]])
        #expect(r == [.init(lower: nil, upper: ["100"]), .init(lower: ["100"], upper: ["200"]), .init(lower: ["200"], upper: nil)])
        #expect(CompareModel.ranges(boundaries: []) == [.all])
        let halves = CompareModel.split(.init(lower: ["100"], upper: ["200"]), at: ["150"])
        #expect(halves == [.init(lower: ["100"], upper: ["150"]), .init(lower: ["150"], upper: ["200"])])
        #expect(r[1].description == "100 < key ≤ 200" && r[0].description == "key ≤ 100" && r[2].description == "key > 200")
    }

    @Test("range predicates bind the bounds as parameters cast to the key's types, row-wise for composite keys")
    func predicates() {
        let single = CompareModel.Statements(keyed).predicate(.init(lower: ["10"], upper: ["20"]))
        #expect(single.sql == "id > $1::bigint AND id <= $2::bigint" && single.parameters == ["10", "20"])
        let pair = CompareModel.Statements(composite).predicate(.init(lower: ["1", "2"], upper: nil))
        #expect(pair.sql == "(order_id, \"No\") > ($1::integer, $2::smallint)" && pair.parameters == ["1", "2"])
        #expect(CompareModel.Statements(keyed).predicate(.all).sql == "true")
        #expect(CompareModel.Statements(keyless).predicate(.init(lower: ["1"])).sql == "true")
        let digest = CompareModel.Statements(composite).digest(.init(upper: ["5", "1"]))
        #expect(digest.sql.contains("FROM ONLY \"app\".\"Line Items\" AS t WHERE (order_id, \"No\") <= ($1::integer, $2::smallint)"))
        #expect(digest.sql.contains("sum(hash_record_extended(t, 0))") && digest.parameters == ["5", "1"])
        var printed = composite
        printed.rowHash = .text
        #expect(CompareModel.Statements(printed).digest(.all).sql.contains("md5(t::text)"))
        #expect(CompareModel.Statements(printed).rows(.all).sql.contains("(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint)::text"))
        #expect(CompareModel.Statements(keyed).boundaries(every: 1000).contains("pgha_rn % 1000 = 0"))
        // Ordered by the columns, not by their text (a bare name in ORDER BY is the output column id::text).
        #expect(CompareModel.Statements(keyed).keyAt(offset: 42, in: .all).sql.hasSuffix("ORDER BY t.id OFFSET 42 LIMIT 1"))
        #expect(CompareModel.Statements(composite).rows(.all).sql.hasSuffix("ORDER BY t.order_id, t.\"No\""))
        #expect(CompareModel.Statements(keyed).boundaries(every: 10).hasSuffix("ORDER BY pgha_rn"))
    }

    @Test("limits stay usable whatever they are given")
    func limitsClamp() {
        let l = CompareModel.Limits(chunkRows: 0, fetchRows: 0, rechecks: -3, maxReportedRows: -1)
        #expect(l.chunkRows == 2 && l.fetchRows >= 2 && l.rechecks == 0 && l.maxReportedRows == 0)
    }
}
