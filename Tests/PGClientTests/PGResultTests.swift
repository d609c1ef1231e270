import Testing

@testable import PGClient

/// Results built in memory with PQmakeEmptyPGresult/PQsetvalue: the accessors without a server.
@Suite("PGResult accessors")
struct PGResultTests {
    let result = PGResult.makeForTesting(
        columns: ["i", "b", "l", "d", "t", "Mixed"],
        rows: [
            ["42", "t", "16/B374D848", "0.5", "hello", "x"],
            [nil, "f", "0/0", "Infinity", "", nil],
            ["-9223372036854775808", "true", "FFFFFFFF/FFFFFFFF", "-Infinity", "ünï", nil],
            ["9223372036854775808", "maybe", "bad", "NaN", "1e3", nil],
        ])

    @Test("shape and names")
    func shape() {
        #expect(result.rowCount == 4)
        #expect(result.columnCount == 6)
        #expect(result.columnNames == ["i", "b", "l", "d", "t", "Mixed"])
        #expect(result.columnIndex("Mixed") == 5)
        #expect(result.columnIndex("mixed") == nil)
        #expect(result.columnIndex("nope") == nil)
        #expect(result.columnType(0) == PGValue.TypeOID.text)
    }

    @Test("typed values and NULL")
    func values() throws {
        #expect(try result.int(0, 0) == 42)
        #expect(try result.int(1, 0) == nil)
        #expect(result.isNull(1, 0))
        #expect(!result.isNull(1, 4))
        #expect(result.string(1, 4) == "")
        #expect(try result.int(2, 0) == .min)
        #expect(try result.bool(0, 1) == true)
        #expect(try result.bool(1, 1) == false)
        #expect(try result.bool(2, 1) == true)
        #expect(try result.lsn(0, 2) == LSN(0x16_B374_D848))
        #expect(try result.lsn(1, 2) == LSN.invalid)
        #expect(try result.lsn(2, 2) == LSN(.max))
        #expect(try result.double(0, 3) == 0.5)
        #expect(try result.double(1, 3) == .infinity)
        #expect(try result.double(2, 3) == -.infinity)
        #expect(try result.double(3, 3)?.isNaN == true)
        #expect(try result.double(3, 4) == 1000)
        #expect(result.string(2, 4) == "ünï")
        #expect(result.string(0, 5) == "x")
    }

    @Test("conversion failures are .unexpectedResult and do not quote the value")
    func conversionFailures() {
        let overflow = #expect(throws: PGError.self) { try result.int(3, 0) }
        #expect(overflow?.code == .unexpectedResult)
        #expect(overflow?.message.contains("9223372036854775808") == false)
        #expect(overflow?.message.contains("column 0 (i)") == true)
        #expect(throws: PGError.self) { try result.bool(3, 1) }
        #expect(throws: PGError.self) { try result.lsn(3, 2) }
        #expect(throws: PGError.self) { try result.int(0, 4) }
        #expect(throws: PGError.self) { try result.double(0, 4) }
    }

    @Test("integer parsing edge cases")
    func parseInt() {
        func parse(_ text: String) -> Int64? {
            var copy = text
            return copy.withUTF8 { PGResult.parseInt($0) }
        }
        #expect(parse("0") == 0)
        #expect(parse("+7") == 7)
        #expect(parse("-0") == 0)
        #expect(parse("9223372036854775807") == .max)
        #expect(parse("-9223372036854775809") == nil)
        #expect(parse("") == nil)
        #expect(parse("-") == nil)
        #expect(parse("1.0") == nil)
        #expect(parse(" 1") == nil)
    }

    @Test("an empty command result")
    func commandResult() {
        let empty = PGResult.makeForTesting(columns: [], rows: [])
        #expect(empty.rowCount == 0)
        #expect(empty.columnNames.isEmpty)
        #expect(empty.affectedRows == nil)
        #expect(empty.commandTag == "")
    }
}
