import Foundation
public import PGClient

/// One statement's answer as a comparable value: its columns (name and type), the row count,
/// digests of every row, and the first rows themselves (canonical text by type, see
/// `TypedValue`). Built from a `PGResult`, or by hand in tests.
public struct ResultSnapshot: Sendable, Hashable, Codable {
    public struct Column: Sendable, Hashable, Codable {
        public var name: String
        /// `pg_type.oid`. Built-in types (below 16384) are compared; user types (enums, domains…)
        /// are not, since an independently initialised cluster gives them other OIDs.
        public var typeOID: UInt32

        public init(name: String, typeOID: UInt32) {
            self.name = name
            self.typeOID = typeOID
        }
    }

    public var columns: [Column]
    public var rowCount: Int
    /// The first `rows.count` rows (at most the snapshot's limit), each value canonical by type
    /// (nil for NULL).
    public var rows: [[String?]]
    /// Order-insensitive digest of every row (a wrapping sum of row hashes).
    public var unorderedDigest: UInt64
    /// Order-sensitive digest of every row.
    public var orderedDigest: UInt64
    /// The command tag (`SELECT 3`).
    public var commandTag: String

    /// Rows kept for row-level differences when `limit` is not given.
    public static let defaultRowLimit = 5_000

    public init(columns: [Column], rows: [[String?]], commandTag: String? = nil, rowLimit: Int = ResultSnapshot.defaultRowLimit) {
        self.columns = columns
        self.rowCount = rows.count
        self.commandTag = commandTag ?? "SELECT \(rows.count)"
        var unordered: UInt64 = 0
        var ordered: UInt64 = FNV1a.offset
        var kept: [[String?]] = []
        kept.reserveCapacity(min(rows.count, rowLimit))
        for row in rows {
            let canonical = zip(row, columns).map { value, column in value.map { TypedValue.canonical($0, typeOID: column.typeOID) } }
            let h = Self.rowHash(canonical)
            unordered = unordered &+ h
            ordered = (ordered ^ h) &* FNV1a.prime
            if kept.count < rowLimit { kept.append(canonical) }
        }
        self.rows = kept
        self.unorderedDigest = unordered
        self.orderedDigest = ordered
    }

    /// Reads every row of `result` (text format).
    public init(_ result: PGResult, rowLimit: Int = ResultSnapshot.defaultRowLimit) {
        let columns = result.columnNames.enumerated().map { Column(name: $0.element, typeOID: result.columnType($0.offset)) }
        var rows: [[String?]] = []
        rows.reserveCapacity(result.rowCount)
        for r in 0..<result.rowCount {
            rows.append((0..<columns.count).map { result.string(r, $0) })
        }
        self.init(columns: columns, rows: rows, commandTag: result.commandTag, rowLimit: rowLimit)
    }

    /// Whether every row is kept (row-level differences are exact).
    public var isComplete: Bool { rows.count == rowCount }

    static func rowHash(_ row: [String?]) -> UInt64 {
        var h = FNV1a.offset
        for value in row {
            if let value {
                h = FNV1a.hash(value, seed: h)
                h = (h ^ 0x1f) &* FNV1a.prime
            } else {
                h = (h ^ 0x00) &* FNV1a.prime
                h = (h ^ 0xff) &* FNV1a.prime
            }
        }
        return h
    }

    /// A row for people: `(1, 'x', NULL)`.
    public static func describe(_ row: [String?], limit: Int = 200) -> String {
        let text = "(" + row.map { $0.map { "'\($0)'" } ?? "NULL" }.joined(separator: ", ") + ")"
        return text.count <= limit ? text : String(text.prefix(limit)) + "…"
    }
}

/// What one execution of a statement gave: rows, or an error.
public enum ExecutionOutcome: Sendable, Hashable, Codable {
    case rows(ResultSnapshot)
    /// The server's SQLSTATE (nil for a client-side failure: a broken connection, a timeout) and
    /// message.
    case error(sqlState: String?, message: String)

    public var snapshot: ResultSnapshot? {
        if case .rows(let s) = self { return s }
        return nil
    }

    /// `3 rows` or `error 42P01: relation "x" does not exist`.
    public var summary: String {
        switch self {
        case .rows(let s): return "\(s.rowCount) row\(s.rowCount == 1 ? "" : "s")"
        case .error(let state, let message): return "error \(state ?? "(client)"): \(message)"
        }
    }
}

/// Canonical text of a value by its type, so that equal values compare equal however the server
/// spelled them: integers and booleans parsed, `numeric` without trailing zeros (`1.50` = `1.5`),
/// floats rounded to what their type can tell apart (an aggregate summed in another order by
/// parallel workers differs in the last bits), `json` re-serialised with sorted keys. Everything
/// else is compared as the server wrote it (text, dates and times in the session's `DateStyle`
/// and `TimeZone`: a cluster whose settings make the application see other text is a mismatch).
public enum TypedValue {
    public static func canonical(_ text: String, typeOID: UInt32) -> String {
        switch typeOID {
        case 16: return text == "t" || text == "true" ? "t" : (text == "f" || text == "false" ? "f" : text)
        case 20, 21, 23, 26: return Int64(text).map(String.init) ?? text
        case 700: return float(text, digits: 6)
        case 701: return float(text, digits: 12)
        case 1700: return numeric(text)
        case 114, 3802: return JSONCanonical.canonical(text) ?? text
        default: return text
        }
    }

    static func float(_ text: String, digits: Int) -> String {
        guard let value = Double(text) else { return text }
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        if value == 0 { return "0" }
        return String(format: "%.\(digits)g", value)
    }

    static func numeric(_ text: String) -> String {
        var t = Substring(text)
        guard !t.isEmpty, t != "NaN", !t.contains("e"), !t.contains("E"), !t.contains("Infinity") else { return text }
        var negative = false
        if t.first == "-" { negative = true; t = t.dropFirst() } else if t.first == "+" { t = t.dropFirst() }
        var integer = t
        var fraction: Substring = ""
        if let dot = t.firstIndex(of: ".") {
            integer = t[..<dot]
            fraction = t[t.index(after: dot)...]
        }
        while integer.count > 1, integer.first == "0" { integer = integer.dropFirst() }
        if integer.isEmpty { integer = "0" }
        while fraction.last == "0" { fraction = fraction.dropLast() }
        let body = fraction.isEmpty ? String(integer) : "\(integer).\(fraction)"
        return negative && body != "0" ? "-" + body : body
    }
}

/// JSON re-serialised with sorted keys and no insignificant whitespace.
enum JSONCanonical {
    static func canonical(_ text: String) -> String? {
        guard let data = text.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
              let out = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
        else { return nil }
        return String(decoding: out, as: UTF8.self)
    }
}
