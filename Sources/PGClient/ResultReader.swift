import CLibPQ

/// Reads values out of a libpq `PGresult` in place (PQgetvalue/PQgetlength/PQgetisnull), without
/// copying the result: shared by `PGResult` (any row) and `PGRow` (a single-row result). The
/// callers check the indexes; `reportedRow` is the row number used in conversion errors.
struct ResultReader {
    let pointer: OpaquePointer

    var rowCount: Int { Int(PQntuples(pointer)) }
    var columnCount: Int { Int(PQnfields(pointer)) }

    /// PQfname.
    func columnName(_ column: Int) -> String { String(cString: PQfname(pointer, Int32(column))) }

    /// PQfnumber, matching `name` exactly (quoted, so case matters).
    func columnIndex(_ name: String) -> Int? {
        // PQfnumber folds unquoted names to lower case; quote to compare exactly.
        let quoted = "\"" + name.replacing("\"", with: "\"\"") + "\""
        let index = Int(PQfnumber(pointer, quoted))
        return index >= 0 ? index : nil
    }

    /// PQftype.
    func columnType(_ column: Int) -> UInt32 { PQftype(pointer, Int32(column)) }

    /// PQgetisnull.
    func isNull(_ row: Int, _ column: Int) -> Bool { PQgetisnull(pointer, Int32(row), Int32(column)) != 0 }

    /// The value's bytes without copying, nil for NULL. Valid while the result is alive.
    func bytes(_ row: Int, _ column: Int) -> UnsafeBufferPointer<UInt8>? {
        let r = Int32(row)
        let c = Int32(column)
        guard PQgetisnull(pointer, r, c) == 0 else { return nil }
        let length = Int(PQgetlength(pointer, r, c))
        return PQgetvalue(pointer, r, c).withMemoryRebound(to: UInt8.self, capacity: length) {
            UnsafeBufferPointer(start: $0, count: length)
        }
    }

    func string(_ row: Int, _ column: Int) -> String? {
        guard PQgetisnull(pointer, Int32(row), Int32(column)) == 0 else { return nil }
        return String(cString: PQgetvalue(pointer, Int32(row), Int32(column)))
    }

    func int(_ row: Int, _ column: Int, reportedRow: Int) throws(PGError) -> Int64? {
        guard let bytes = bytes(row, column) else { return nil }
        guard let value = ResultReader.parseInt(bytes) else { throw conversionError("an integer", reportedRow, column) }
        return value
    }

    func bool(_ row: Int, _ column: Int, reportedRow: Int) throws(PGError) -> Bool? {
        guard let bytes = bytes(row, column) else { return nil }
        switch String(decoding: bytes, as: UTF8.self) {
        case "t", "true": return true
        case "f", "false": return false
        default: throw conversionError("a boolean", reportedRow, column)
        }
    }

    func double(_ row: Int, _ column: Int, reportedRow: Int) throws(PGError) -> Double? {
        guard let bytes = bytes(row, column) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        switch text {
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        case "NaN": return .nan
        default:
            guard let value = Double(text), value.isFinite else {
                throw conversionError("a number", reportedRow, column)
            }
            return value
        }
    }

    func lsn(_ row: Int, _ column: Int, reportedRow: Int) throws(PGError) -> LSN? {
        guard let bytes = bytes(row, column) else { return nil }
        guard let lsn = LSN(utf8: bytes) else { throw conversionError("an LSN", reportedRow, column) }
        return lsn
    }

    private func conversionError(_ expected: String, _ row: Int, _ column: Int) -> PGError {
        // The value itself is not quoted: it could be anything, including a secret.
        PGError(
            code: .unexpectedResult,
            message: "row \(row), column \(column) (\(columnName(column))) is not \(expected)",
            isConnectionLevel: false)
    }

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
