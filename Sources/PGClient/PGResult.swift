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

    private var reader: ResultReader { ResultReader(pointer: pointer) }

    /// Number of rows (PQntuples).
    public var rowCount: Int { Int(PQntuples(pointer)) }

    /// Number of columns (PQnfields).
    public var columnCount: Int { Int(PQnfields(pointer)) }

    /// Column names in order (PQfname).
    public var columnNames: [String] {
        (0..<columnCount).map { reader.columnName($0) }
    }

    /// The index of the column called `name` (PQfnumber; the name is matched as a quoted
    /// identifier would be, so case matters), or nil.
    public func columnIndex(_ name: String) -> Int? {
        reader.columnIndex(name)
    }

    /// The type OID of a column (PQftype), e.g. 23 for int4, 25 for text, 3220 for pg_lsn.
    public func columnType(_ column: Int) -> UInt32 {
        checkColumn(column)
        return reader.columnType(column)
    }

    /// The command tag, e.g. "SELECT 1", "INSERT 0 3", "CREATE TABLE" (PQcmdStatus).
    public var commandTag: String { String(cString: PQcmdStatus(pointer)) }

    /// Rows affected by INSERT/UPDATE/DELETE/MERGE/SELECT/MOVE/FETCH/COPY (PQcmdTuples); nil for
    /// other commands.
    public var affectedRows: Int? { PGResult.affectedRows(pointer) }

    /// Whether the value is SQL NULL (PQgetisnull).
    public func isNull(_ row: Int, _ column: Int) -> Bool {
        checkIndex(row, column)
        return reader.isNull(row, column)
    }

    /// The value as text (PQgetvalue), nil for NULL.
    public func string(_ row: Int, _ column: Int) -> String? {
        checkIndex(row, column)
        return reader.string(row, column)
    }

    /// The value of an integer column (int2, int4, int8, oid, or text holding a decimal integer),
    /// nil for NULL. Throws `.unexpectedResult` when the text is not an integer in Int64's range.
    public func int(_ row: Int, _ column: Int) throws(PGError) -> Int64? {
        checkIndex(row, column)
        return try reader.int(row, column, reportedRow: row)
    }

    /// The value of a bool column ("t"/"f", also "true"/"false"), nil for NULL.
    public func bool(_ row: Int, _ column: Int) throws(PGError) -> Bool? {
        checkIndex(row, column)
        return try reader.bool(row, column, reportedRow: row)
    }

    /// The value of a float4/float8/numeric/integer column, nil for NULL ("Infinity", "-Infinity",
    /// "NaN" included).
    public func double(_ row: Int, _ column: Int) throws(PGError) -> Double? {
        checkIndex(row, column)
        return try reader.double(row, column, reportedRow: row)
    }

    /// The value of a pg_lsn column ("16/B374D848"), nil for NULL.
    public func lsn(_ row: Int, _ column: Int) throws(PGError) -> LSN? {
        checkIndex(row, column)
        return try reader.lsn(row, column, reportedRow: row)
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

    /// PQcmdTuples of a result as a number; nil when empty.
    static func affectedRows(_ pointer: OpaquePointer) -> Int? {
        guard let text = PQcmdTuples(pointer), text.pointee != 0 else { return nil }
        return Int(String(cString: text))
    }

    /// Decimal Int64 with an optional sign; nil on anything else or overflow.
    static func parseInt(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        ResultReader.parseInt(bytes)
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
