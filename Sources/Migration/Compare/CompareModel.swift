import PlainText

/// The data compare's pure parts: the tables and their keys, key ranges, the SQL that digests a
/// range on a server, the decision what to do with a range whose digests differ, and the row diff.
/// `DataCompare` is the thin executor that runs the SQL on both sides.
///
/// A range's digest is its row count and the sum of a 64-bit hash of every row (`RowHash`), summed
/// as numeric: computed by the server, order-independent, one row back whatever the range's size.
/// Two sides agree on a range when both numbers do. Rows hash alike when the table has the same
/// columns in the same order with the same types on both sides (true for the physical method; the
/// logical method restores the source's schema).
public enum CompareModel {
    /// A table with its primary key (empty: none), as `pg_catalog` describes it.
    public struct Table: Sendable, Hashable, Codable {
        public var schema: String
        public var name: String
        /// The primary key's columns, in key order, each as a quoted identifier.
        public var keyColumns: [String]
        /// Their types (`format_type`), to bind a range's bounds back.
        public var keyTypes: [String]
        /// `pg_relation_size` on the source, for throughput and ordering.
        public var bytes: Int64
        /// How a row is hashed.
        public var rowHash: RowHash = .record

        public init(schema: String, name: String, keyColumns: [String], keyTypes: [String], bytes: Int64 = 0) {
            self.schema = schema
            self.name = name
            self.keyColumns = keyColumns
            self.keyTypes = keyTypes
            self.bytes = bytes
        }

        /// `schema.name`, both quoted.
        public var qualified: String { SQLQuoting.quotedIdentifier(schema) + "." + SQLQuoting.quotedIdentifier(name) }
        /// For people: `schema.name` unquoted.
        public var displayName: String { "\(schema).\(name)" }
        public var hasKey: Bool { !keyColumns.isEmpty }
    }

    /// How a row is hashed on the server.
    public enum RowHash: String, Sendable, Hashable, Codable {
        /// `hash_record_extended(t, 0)`: the row's values hashed by their types' own 64-bit hash
        /// functions (the ones hash partitioning relies on, stable across servers and versions),
        /// without printing the row: about twice as fast as `md5(t::text)` here. Fails (42883)
        /// for a table with a column type that has no extended hash function (json, point…).
        case record
        /// `md5(t::text)`, its first 16 hex digits as a 64-bit number: any column type.
        case text

        /// The SQL of a row's 64-bit hash (bigint), for the row alias `t`.
        var sql: String {
            switch self {
            case .record: return "hash_record_extended(t, 0)"
            case .text: return "('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint"
            }
        }
    }

    /// A primary key value, each column as text (what `column::text` gives).
    public typealias Key = [String]

    /// The rows with `lower < key ≤ upper` (an absent bound is unbounded).
    public struct KeyRange: Sendable, Hashable, Codable, CustomStringConvertible {
        public var lower: Key?
        public var upper: Key?

        public init(lower: Key? = nil, upper: Key? = nil) {
            self.lower = lower
            self.upper = upper
        }

        public static let all = KeyRange()

        public var description: String {
            func show(_ key: Key?) -> String { key.map { $0.count == 1 ? $0[0] : "(" + $0.joined(separator: ", ") + ")" } ?? "" }
            switch (lower, upper) {
            case (nil, nil): return "all rows"
            case (nil, _?): return "key ≤ \(show(upper))"
            case (_?, nil): return "key > \(show(lower))"
            case (_?, _?): return "\(show(lower)) < key ≤ \(show(upper))"
            }
        }
    }

    /// A range's digest on one side.
    public struct Digest: Sendable, Hashable {
        public var rows: Int64
        /// The sum of the rows' hashes, as the server printed it (numeric).
        public var sum: String

        public init(rows: Int64, sum: String) {
            self.rows = rows
            self.sum = sum
        }
    }

    /// One row that is not the same on both sides.
    public struct RowDifference: Sendable, Hashable, Codable {
        public enum Kind: String, Sendable, Hashable, Codable {
            case missingOnTarget = "missing on target"
            case onlyOnTarget = "only on target"
            case differs
        }

        public var kind: Kind
        public var key: Key

        public init(kind: Kind, key: Key) {
            self.kind = kind
            self.key = key
        }
    }

    /// What to do with a range.
    public enum Step: Sendable, Hashable {
        /// Both sides agree.
        case equal
        /// Read the range again after a pause (the data may be moving: a standby replaying, a
        /// subscription applying); `attempt` counts from 1.
        case recheck(attempt: Int)
        /// Small enough: fetch every row's key and hash from both sides and diff them.
        case fetchRows
        /// Split it at the source's middle row and digest both halves.
        case bisect
        /// Differs, and cannot be narrowed (the table has no primary key).
        case differs
    }

    /// The limits of the search.
    public struct Limits: Sendable, Hashable {
        /// Rows per range of the first pass.
        public var chunkRows: Int
        /// A differing range with at most this many rows is fetched row by row.
        public var fetchRows: Int
        /// How often a differing range is read again before it counts as different.
        public var rechecks: Int
        /// Row differences kept per table (the count is exact).
        public var maxReportedRows: Int

        public init(chunkRows: Int = 20_000, fetchRows: Int = 500, rechecks: Int = 2, maxReportedRows: Int = 20) {
            self.chunkRows = max(chunkRows, 2)
            // At least 2: a bisected range of n ≥ 3 rows then always has halves smaller than n.
            self.fetchRows = max(fetchRows, 2)
            self.rechecks = max(rechecks, 0)
            self.maxReportedRows = max(maxReportedRows, 0)
        }
    }

    /// The next step for a range whose digests are `source` and `target`, read `reads` times so far.
    public static func step(table: Table, source: Digest, target: Digest, reads: Int, limits: Limits) -> Step {
        if source == target { return .equal }
        if reads <= limits.rechecks { return .recheck(attempt: reads) }
        guard table.hasKey else { return .differs }
        return max(source.rows, target.rows) <= Int64(limits.fetchRows) ? .fetchRows : .bisect
    }

    /// The rows that differ, from each side's (key, hash) pairs.
    public static func rowDifferences(source: [(Key, String)], target: [(Key, String)]) -> [RowDifference] {
        var onTarget: [Key: String] = [:]
        for (key, hash) in target { onTarget[key] = hash }
        var result: [RowDifference] = []
        var seen = Set<Key>()
        for (key, hash) in source {
            seen.insert(key)
            switch onTarget[key] {
            case nil: result.append(RowDifference(kind: .missingOnTarget, key: key))
            case let other? where other != hash: result.append(RowDifference(kind: .differs, key: key))
            default: break
            }
        }
        for (key, _) in target where !seen.contains(key) {
            result.append(RowDifference(kind: .onlyOnTarget, key: key))
        }
        return result
    }

    // MARK: - SQL

    /// The statements for one table; bounds are bound as text parameters cast to the key's types.
    public struct Statements: Sendable, Hashable {
        public let table: Table

        public init(_ table: Table) { self.table = table }

        private var keyList: String { table.keyColumns.joined(separator: ", ") }
        /// The key columns qualified by the alias `t`: in `ORDER BY`, a bare name would mean the
        /// output column `key::text` and sort as text ("100000" before "20000").
        private var orderList: String { table.keyColumns.map { "t.\($0)" }.joined(separator: ", ") }
        private var keyTexts: String { table.keyColumns.map { "\($0)::text" }.joined(separator: ", ") }

        /// The tables of the database with their sizes (the keys come from `keyColumns`).
        public static let tables = """
            SELECT c.oid::text, n.nspname, c.relname, pg_relation_size(c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
            ORDER BY n.nspname, c.relname
            """

        /// Every primary key column: table oid, position, quoted name, type.
        public static let keyColumns = """
            SELECT i.indrelid::text, k.ord, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod)
            FROM pg_index i
            CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indisprimary
            ORDER BY 1, 2
            """

        /// `(a, b) > ($1::t1, $2::t2)` and `≤` for the upper bound; the parameters in order.
        public func predicate(_ range: KeyRange, firstParameter: Int = 1) -> (sql: String, parameters: [String]) {
            guard table.hasKey else { return ("true", []) }
            var parts: [String] = []
            var parameters: [String] = []
            var next = firstParameter
            func bound(_ key: Key, _ op: String) {
                let placeholders = zip(key.indices, table.keyTypes).map { index, type -> String in
                    defer { next += 1 }
                    return "$\(next)::\(type)"
                }
                parameters += key
                parts.append(table.keyColumns.count == 1
                             ? "\(table.keyColumns[0]) \(op) \(placeholders[0])"
                             : "(\(keyList)) \(op) (\(placeholders.joined(separator: ", ")))")
            }
            if let lower = range.lower { bound(lower, ">") }
            if let upper = range.upper { bound(upper, "<=") }
            return (parts.isEmpty ? "true" : parts.joined(separator: " AND "), parameters)
        }

        /// Count and hash sum of a range.
        public func digest(_ range: KeyRange) -> (sql: String, parameters: [String]) {
            let p = predicate(range)
            return ("SELECT count(*), coalesce(sum(\(table.rowHash.sql)), 0)::text FROM ONLY \(table.qualified) AS t WHERE \(p.sql)", p.parameters)
        }

        /// One row's hash: fails with 42883 when `rowHash` cannot hash this table's column types.
        public var probe: String { "SELECT \(table.rowHash.sql) FROM ONLY \(table.qualified) AS t LIMIT 1" }

        /// Every `every`-th key in key order: the first pass's range bounds.
        public func boundaries(every: Int) -> String {
            "SELECT \(keyTexts) FROM (SELECT \(keyList), row_number() OVER (ORDER BY \(keyList)) AS pgha_rn FROM ONLY \(table.qualified)) AS b WHERE pgha_rn % \(max(every, 1)) = 0 ORDER BY pgha_rn"
        }

        /// The key of the row `offset` rows into the range, in key order (where to bisect).
        public func keyAt(offset: Int64, in range: KeyRange) -> (sql: String, parameters: [String]) {
            let p = predicate(range)
            return ("SELECT \(keyTexts) FROM ONLY \(table.qualified) AS t WHERE \(p.sql) ORDER BY \(orderList) OFFSET \(max(offset, 0)) LIMIT 1", p.parameters)
        }

        /// Every row's key and hash in a range.
        public func rows(_ range: KeyRange) -> (sql: String, parameters: [String]) {
            let p = predicate(range)
            return ("SELECT \(keyTexts), (\(table.rowHash.sql))::text FROM ONLY \(table.qualified) AS t WHERE \(p.sql) ORDER BY \(orderList)", p.parameters)
        }
    }

    /// The first pass's ranges from the boundaries (each the upper bound of one range): n + 1
    /// ranges, the last one unbounded above.
    public static func ranges(boundaries: [Key]) -> [KeyRange] {
        var result: [KeyRange] = []
        var lower: Key?
        for bound in boundaries {
            result.append(KeyRange(lower: lower, upper: bound))
            lower = bound
        }
        result.append(KeyRange(lower: lower, upper: nil))
        return result
    }

    /// The two halves of `range` split at `middle` (the upper bound of the first half).
    public static func split(_ range: KeyRange, at middle: Key) -> [KeyRange] {
        [KeyRange(lower: range.lower, upper: middle), KeyRange(lower: middle, upper: range.upper)]
    }
}
