import CLibPQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The result of a successful statement: rows of text values (libpq's text format), plus the
/// command tag. Owns the libpq `PGresult` and frees it with PQclear when released.
///
/// Thread safety (why `@unchecked Sendable` is sound here): libpq documents that "PGresult
/// objects are normally read-only after creation, and so can be passed around freely between
/// threads" (libpq manual, "Behavior in Threaded Programs"). This class never mutates the
/// PGresult after it is handed over (no PQsetvalue / PQsetResultAttrs outside the testing
/// factory, which completes before the object is shared), the pointer is a `let`, and PQclear runs
/// only in `deinit`, when no other reference exists. Every accessor is a pure read.
///
/// Accessors take zero-based row and column indexes; an index out of range is a programming
/// error and traps, like an array subscript.
public final class PGResult: @unchecked Sendable {
    private let pointer: OpaquePointer

    /// Takes ownership of `pointer` (freed with PQclear in deinit).
    init(owning pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit { PQclear(pointer) }

    /// Number of rows (PQntuples).
    public var rowCount: Int { Int(PQntuples(pointer)) }

    /// Number of columns (PQnfields).
    public var columnCount: Int { Int(PQnfields(pointer)) }

    /// Column names in order (PQfname).
    public var columnNames: [String] {
        (0..<columnCount).map { String(cString: PQfname(pointer, Int32($0))) }
    }

    /// The index of the column called `name` (PQfnumber; the name is matched as a quoted
    /// identifier would be, so case matters), or nil.
    public func columnIndex(_ name: String) -> Int? {
        // PQfnumber folds unquoted names to lower case; quote to compare exactly.
        let quoted = "\"" + name.replacing("\"", with: "\"\"") + "\""
        let index = Int(PQfnumber(pointer, quoted))
        return index >= 0 ? index : nil
    }

    /// The type OID of a column (PQftype), e.g. 23 for int4, 25 for text, 3220 for pg_lsn.
    public func columnType(_ column: Int) -> UInt32 {
        checkColumn(column)
        return PQftype(pointer, Int32(column))
    }

    /// The command tag, e.g. "SELECT 1", "INSERT 0 3", "CREATE TABLE" (PQcmdStatus).
    public var commandTag: String { String(cString: PQcmdStatus(pointer)) }

    /// Rows affected by INSERT/UPDATE/DELETE/MERGE/SELECT/MOVE/FETCH/COPY (PQcmdTuples); nil for
    /// other commands.
    public var affectedRows: Int? {
        guard let text = PQcmdTuples(pointer), text.pointee != 0 else { return nil }
        return Int(String(cString: text))
    }

    /// Whether the value is SQL NULL (PQgetisnull).
    public func isNull(_ row: Int, _ column: Int) -> Bool {
        checkIndex(row, column)
        return PQgetisnull(pointer, Int32(row), Int32(column)) != 0
    }

    /// The value as text (PQgetvalue), nil for NULL.
    public func string(_ row: Int, _ column: Int) -> String? {
        checkIndex(row, column)
        guard PQgetisnull(pointer, Int32(row), Int32(column)) == 0 else { return nil }
        return String(cString: PQgetvalue(pointer, Int32(row), Int32(column)))
    }

    /// The value of an integer column (int2, int4, int8, oid, or text holding a decimal integer),
    /// nil for NULL. Throws `.unexpectedResult` when the text is not an integer in Int64's range.
    public func int(_ row: Int, _ column: Int) throws(PGError) -> Int64? {
        guard let bytes = valueBytes(row, column) else { return nil }
        guard let value = PGResult.parseInt(bytes) else { throw conversionError("an integer", row, column) }
        return value
    }

    /// The value of a bool column ("t"/"f", also "true"/"false"), nil for NULL.
    public func bool(_ row: Int, _ column: Int) throws(PGError) -> Bool? {
        guard let bytes = valueBytes(row, column) else { return nil }
        switch String(decoding: bytes, as: UTF8.self) {
        case "t", "true": return true
        case "f", "false": return false
        default: throw conversionError("a boolean", row, column)
        }
    }

    /// The value of a float4/float8/numeric/integer column, nil for NULL ("Infinity", "-Infinity",
    /// "NaN" included).
    public func double(_ row: Int, _ column: Int) throws(PGError) -> Double? {
        guard let bytes = valueBytes(row, column) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        switch text {
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        case "NaN": return .nan
        default:
            guard let value = Double(text), value.isFinite else { throw conversionError("a number", row, column) }
            return value
        }
    }

    /// The value of a pg_lsn column ("16/B374D848"), nil for NULL.
    public func lsn(_ row: Int, _ column: Int) throws(PGError) -> LSN? {
        guard let bytes = valueBytes(row, column) else { return nil }
        guard let lsn = LSN(utf8: bytes) else { throw conversionError("an LSN", row, column) }
        return lsn
    }

    // MARK: - Helpers

    private func checkIndex(_ row: Int, _ column: Int) {
        precondition(row >= 0 && row < rowCount, "PGResult: row \(row) out of range 0..<\(rowCount)")
        checkColumn(column)
    }

    private func checkColumn(_ column: Int) {
        precondition(
            column >= 0 && column < columnCount, "PGResult: column \(column) out of range 0..<\(columnCount)")
    }

    /// The value's bytes (PQgetvalue + PQgetlength) without copying, nil for NULL. Valid while
    /// `self` is alive.
    private func valueBytes(_ row: Int, _ column: Int) -> UnsafeBufferPointer<UInt8>? {
        checkIndex(row, column)
        let r = Int32(row)
        let c = Int32(column)
        guard PQgetisnull(pointer, r, c) == 0 else { return nil }
        let length = Int(PQgetlength(pointer, r, c))
        return PQgetvalue(pointer, r, c).withMemoryRebound(to: UInt8.self, capacity: length) {
            UnsafeBufferPointer(start: $0, count: length)
        }
    }

    private func conversionError(_ expected: String, _ row: Int, _ column: Int) -> PGError {
        // The value itself is not quoted: it could be anything, including a secret.
        PGError(
            code: .unexpectedResult,
            message: "row \(row), column \(column) (\(columnName(column))) is not \(expected)",
            isConnectionLevel: false)
    }

    private func columnName(_ column: Int) -> String { String(cString: PQfname(pointer, Int32(column))) }

    /// Decimal Int64 with an optional sign; nil on anything else or overflow.
    static func parseInt(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        var index = 0
        var negative = false
        if let first = bytes.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            index = 1
        }
        guard index < bytes.count else { return nil }
        var value: Int64 = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let digit = Int64(byte - UInt8(ascii: "0"))
            // Accumulate negatively so Int64.min parses.
            let (shifted, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = shifted.subtractingReportingOverflow(digit)
            guard !o1, !o2 else { return nil }
            value = next
            index += 1
        }
        if negative { return value }
        return value == .min ? nil : -value
    }
}

extension PGResult {
    /// A result built in memory (PQmakeEmptyPGresult + PQsetResultAttrs + PQsetvalue), for tests
    /// of code that reads results. Every column is reported as text (OID 25).
    static func makeForTesting(columns: [String], rows: [[String?]]) -> PGResult {
        guard let result = PQmakeEmptyPGresult(nil, PGRES_TUPLES_OK) else {
            preconditionFailure("PQmakeEmptyPGresult: out of memory")
        }
        let names = columns.map { strdup($0) }
        defer { names.forEach { free($0) } }
        var attributes = names.map { name in
            PGresAttDesc(
                name: name, tableid: 0, columnid: 0, format: 0, typid: PGValue.TypeOID.text, typlen: -1,
                atttypmod: -1)
        }
        guard PQsetResultAttrs(result, Int32(columns.count), &attributes) != 0 else {
            preconditionFailure("PQsetResultAttrs failed")
        }
        for (r, row) in rows.enumerated() {
            for (c, value) in row.enumerated() {
                let ok: Int32
                if let value {
                    var bytes = Array(value.utf8CString)
                    ok = PQsetvalue(result, Int32(r), Int32(c), &bytes, Int32(bytes.count - 1))
                } else {
                    ok = PQsetvalue(result, Int32(r), Int32(c), nil, -1)
                }
                precondition(ok != 0, "PQsetvalue failed")
            }
        }
        return PGResult(owning: result)
    }
}
