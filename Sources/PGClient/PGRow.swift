/// One row of a streamed result (`PGConnection.forEachRow`), read in place from libpq's
/// single-row `PGresult`: nothing is copied until you ask for a value.
///
/// A row lives only while the body it is passed to runs (its result is freed right after). It is
/// `~Copyable` and passed `borrowing`, so it cannot be stored or escape the body; take the values
/// you need. Accessors take zero-based column indexes; an index out of range traps.
public struct PGRow: ~Copyable {
    private let reader: ResultReader
    /// The row's zero-based position in the stream (used in conversion errors, too).
    public let index: Int

    init(result: OpaquePointer, index: Int) {
        self.reader = ResultReader(pointer: result)
        self.index = index
    }

    /// Number of columns (PQnfields).
    public var columnCount: Int { reader.columnCount }

    /// Column names in order (PQfname).
    public var columnNames: [String] { (0..<columnCount).map { reader.columnName($0) } }

    /// The name of a column (PQfname).
    public func columnName(_ column: Int) -> String {
        check(column)
        return reader.columnName(column)
    }

    /// The index of the column called `name` (matched exactly, as a quoted identifier), or nil.
    public func columnIndex(_ name: String) -> Int? { reader.columnIndex(name) }

    /// The type OID of a column (PQftype).
    public func columnType(_ column: Int) -> UInt32 {
        check(column)
        return reader.columnType(column)
    }

    /// Whether the value is SQL NULL.
    public func isNull(_ column: Int) -> Bool {
        check(column)
        return reader.isNull(0, column)
    }

    /// The value as text, nil for NULL.
    public func string(_ column: Int) -> String? {
        check(column)
        return reader.string(0, column)
    }

    /// The value of an integer column, nil for NULL; `.unexpectedResult` when it is not an Int64.
    public func int(_ column: Int) throws(PGError) -> Int64? {
        check(column)
        return try reader.int(0, column, reportedRow: index)
    }

    /// The value of a bool column, nil for NULL.
    public func bool(_ column: Int) throws(PGError) -> Bool? {
        check(column)
        return try reader.bool(0, column, reportedRow: index)
    }

    /// The value of a float4/float8/numeric/integer column, nil for NULL.
    public func double(_ column: Int) throws(PGError) -> Double? {
        check(column)
        return try reader.double(0, column, reportedRow: index)
    }

    /// The value of a pg_lsn column, nil for NULL.
    public func lsn(_ column: Int) throws(PGError) -> LSN? {
        check(column)
        return try reader.lsn(0, column, reportedRow: index)
    }

    /// Calls `body` with the value's text bytes in place (nil for NULL), without copying them: for
    /// hashing or comparing rows. The buffer is valid only inside `body`.
    public func withUnsafeBytes<Result, Failure: Error>(
        _ column: Int, _ body: (UnsafeRawBufferPointer?) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        check(column)
        return try body(reader.bytes(0, column).map { UnsafeRawBufferPointer($0) })
    }

    private func check(_ column: Int) {
        precondition(column >= 0 && column < columnCount, "PGRow: column \(column) out of range 0..<\(columnCount)")
    }
}

/// What a stream's body wants after a row or a chunk of COPY data.
public enum PGStreamStep: Sendable, Hashable {
    /// The next row or chunk, if any.
    case next
    /// No more: the rest of the statement is cancelled on the server (inside a transaction block:
    /// read and discarded, so that the transaction survives) and the call returns.
    case stop
}
