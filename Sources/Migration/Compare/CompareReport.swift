/// What `pgha compare` found (also its JSON document).
public struct CompareReport: Sendable, Codable {
    /// One table of one database.
    public struct Table: Sendable, Codable {
        public enum Status: String, Sendable, Codable {
            case identical
            case different
            case missingOnTarget = "missing on target"
            case onlyOnTarget = "only on target"
            case schemaDiffers = "primary key differs"
        }

        /// The single node's database name.
        public var database: String
        /// `schema.name`.
        public var table: String
        public var status: Status
        public var sourceRows: Int64 = 0
        public var targetRows: Int64 = 0
        /// The first pass's ranges.
        public var ranges: Int = 0
        /// Ranges that differed after their rechecks and could not be narrowed further (leaves).
        public var differingRanges: Int = 0
        /// The first of them, for people (`100 < key ≤ 200`).
        public var rangeExamples: [String] = []
        /// First-pass ranges that differed at first and agreed when read again (moving data).
        public var converged: Int = 0
        /// Rows that differ (exact count), and the first of them.
        public var rowDifferences: Int = 0
        public var rows: [CompareModel.RowDifference] = []
        /// Relation sizes of both sides together.
        public var bytes: Int64 = 0
        public var seconds: Double = 0
        /// How rows were hashed (`record` unless a column type has no extended hash function).
        public var rowHash: CompareModel.RowHash?
        public var note: String?

        public init(database: String, table: String, status: Status, note: String? = nil) {
            self.database = database
            self.table = table
            self.status = status
            self.note = note
        }

        public var isIdentical: Bool { status == .identical }

        /// `identical (12000 rows, 1 range)` / `12 rows differ: …`.
        public var summary: String {
            switch status {
            case .identical:
                return "identical (\(sourceRows) rows, \(ranges) range\(ranges == 1 ? "" : "s")\(converged > 0 ? ", \(converged) agreed when read again" : ""))"
            case .different:
                var text = "DIFFERENT: \(sourceRows) rows on the single node, \(targetRows) on the cluster"
                if rowDifferences > 0 {
                    text += "; \(rowDifferences) \(rowDifferences == 1 ? "row differs" : "rows differ"): " + rows.map { "\($0.kind.rawValue) \($0.key.count == 1 ? $0.key[0] : "(" + $0.key.joined(separator: ", ") + ")")" }.joined(separator: ", ")
                    if rowDifferences > rows.count { text += ", …" }
                } else if !rangeExamples.isEmpty {
                    text += "; differing: " + rangeExamples.joined(separator: "; ")
                }
                if let note { text += " (\(note))" }
                return text
            case .missingOnTarget: return "missing on the cluster"
            case .onlyOnTarget: return "only on the cluster"
            case .schemaDiffers: return "primary key differs" + (note.map { ": \($0)" } ?? "")
            }
        }
    }

    /// The member read on the cluster's side.
    public var target: String
    public var tables: [Table] = []
    public var elapsedSeconds: Double = 0

    public init(target: String) { self.target = target }

    public var identical: Bool { tables.allSatisfy(\.isIdentical) }
    /// Relation bytes read on both sides together.
    public var bytes: Int64 { tables.reduce(0) { $0 + $1.bytes } }
    /// Both sides together, per second of the whole run.
    public var mebibytesPerSecond: Double { elapsedSeconds > 0 ? Double(bytes) / 1_048_576 / elapsedSeconds : 0 }
}
