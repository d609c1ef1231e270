/// How two answers to the same statement differ, for people: a kind, a one-line summary and up
/// to a few rows on each side.
public struct ResultDifference: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// One side failed, the other answered (or they failed differently).
        case error
        /// Other column names or built-in types.
        case columns
        /// Other rows (some only on one side, or another number of them).
        case rows
        /// The same rows in another order, for a statement that orders its result.
        case order
    }

    public var kind: Kind
    /// `2 rows only on the single node, 1 only on ha2; first: (5, 'x')`.
    public var summary: String
    /// Rows (canonical text) only the left side returned, at most `sampleRows`.
    public var onlyLeft: [[String?]]
    /// Rows only the right side returned.
    public var onlyRight: [[String?]]
    /// For an ordered statement: the first position where the sides differ.
    public var firstDifferingRow: Int?

    public init(kind: Kind, summary: String, onlyLeft: [[String?]] = [], onlyRight: [[String?]] = [], firstDifferingRow: Int? = nil) {
        self.kind = kind
        self.summary = summary
        self.onlyLeft = onlyLeft
        self.onlyRight = onlyRight
        self.firstDifferingRow = firstDifferingRow
    }
}

/// Compares two answers: in order when the statement orders its result, as multisets of rows
/// otherwise; values by type (`TypedValue`); both failing with the same SQLSTATE is the same
/// answer, an error on one side only never is.
public enum ResultComparator {
    /// Rows listed per side in a difference.
    public static let sampleRows = 3

    /// nil when the answers are the same; `left`/`right` name the sides in the summary.
    public static func difference(
        _ a: ExecutionOutcome, _ b: ExecutionOutcome, ordered: Bool, left: String = "left", right: String = "right"
    ) -> ResultDifference? {
        switch (a, b) {
        case (.error(let sa, let ma), .error(let sb, let mb)):
            if sa == sb, sa != nil { return nil }
            return ResultDifference(kind: .error, summary: "\(left): \(describeError(sa, ma)); \(right): \(describeError(sb, mb))")
        case (.error(let s, let m), .rows(let r)):
            return ResultDifference(kind: .error, summary: "\(left) failed (\(describeError(s, m))), \(right) returned \(r.rowCount) row\(r.rowCount == 1 ? "" : "s")")
        case (.rows(let r), .error(let s, let m)):
            return ResultDifference(kind: .error, summary: "\(left) returned \(r.rowCount) row\(r.rowCount == 1 ? "" : "s"), \(right) failed (\(describeError(s, m)))")
        case (.rows(let x), .rows(let y)):
            return difference(x, y, ordered: ordered, left: left, right: right)
        }
    }

    static func describeError(_ state: String?, _ message: String) -> String {
        (state.map { "SQLSTATE \($0)" } ?? "client error") + ": " + message
    }

    public static func difference(_ x: ResultSnapshot, _ y: ResultSnapshot, ordered: Bool, left: String = "left", right: String = "right") -> ResultDifference? {
        if x.columns.count != y.columns.count || zip(x.columns, y.columns).contains(where: { !sameColumn($0, $1) }) {
            let describe = { (s: ResultSnapshot) in s.columns.map { "\($0.name)(\($0.typeOID))" }.joined(separator: ", ") }
            return ResultDifference(kind: .columns, summary: "columns differ: \(left) [\(describe(x))], \(right) [\(describe(y))]")
        }
        let sameSet = x.rowCount == y.rowCount && x.unorderedDigest == y.unorderedDigest
        if ordered {
            if x.rowCount == y.rowCount && x.orderedDigest == y.orderedDigest { return nil }
            if sameSet {
                let first = (0..<min(x.rows.count, y.rows.count)).first { x.rows[$0] != y.rows[$0] }
                return ResultDifference(
                    kind: .order,
                    summary: "the same \(x.rowCount) rows in another order" + (first.map { "; first at row \($0 + 1): \(left) \(ResultSnapshot.describe(x.rows[$0])), \(right) \(ResultSnapshot.describe(y.rows[$0]))" } ?? ""),
                    firstDifferingRow: first)
            }
        } else if sameSet {
            return nil
        }
        // Row-level: which rows are on one side only (over the rows both snapshots kept).
        var counts: [[String?]: Int] = [:]
        for row in x.rows { counts[row, default: 0] += 1 }
        var onlyRight: [[String?]] = []
        var onlyRightCount = 0
        for row in y.rows {
            if let n = counts[row], n > 0 {
                counts[row] = n - 1
            } else {
                onlyRightCount += 1
                if onlyRight.count < sampleRows { onlyRight.append(row) }
            }
        }
        var onlyLeft: [[String?]] = []
        var onlyLeftCount = 0
        for row in x.rows {
            guard let n = counts[row], n > 0 else { continue }
            counts[row] = n - 1
            onlyLeftCount += 1
            if onlyLeft.count < sampleRows { onlyLeft.append(row) }
        }
        var parts = ["\(left) \(x.rowCount) row\(x.rowCount == 1 ? "" : "s"), \(right) \(y.rowCount)"]
        if onlyLeftCount > 0 { parts.append("\(onlyLeftCount) only on \(left): " + onlyLeft.map { ResultSnapshot.describe($0) }.joined(separator: ", ") + (onlyLeftCount > onlyLeft.count ? ", …" : "")) }
        if onlyRightCount > 0 { parts.append("\(onlyRightCount) only on \(right): " + onlyRight.map { ResultSnapshot.describe($0) }.joined(separator: ", ") + (onlyRightCount > onlyRight.count ? ", …" : "")) }
        if !x.isComplete || !y.isComplete { parts.append("(row-level comparison over the first \(min(x.rows.count, y.rows.count)) rows)") }
        let first = ordered ? (0..<min(x.rows.count, y.rows.count)).first { x.rows[$0] != y.rows[$0] } ?? min(x.rows.count, y.rows.count) : nil
        return ResultDifference(kind: .rows, summary: parts.joined(separator: "; "), onlyLeft: onlyLeft, onlyRight: onlyRight, firstDifferingRow: first)
    }

    static func sameColumn(_ a: ResultSnapshot.Column, _ b: ResultSnapshot.Column) -> Bool {
        guard a.name == b.name else { return false }
        if a.typeOID < 16384 || b.typeOID < 16384 { return a.typeOID == b.typeOID }
        return true
    }
}

/// Diffy's classification of one shadowed execution: the statement ran on the single node twice
/// (the *primary* and, after the candidate, the *secondary* answer) and once on a cluster member
/// (the *candidate*).
///
/// - The single node disagreeing with itself makes the execution **noise** (`now()`, `random()`,
///   an unordered `LIMIT`, data changing meanwhile): reported, never a mismatch.
/// - The candidate agreeing with the primary answer is a **match**.
/// - Otherwise, a candidate that had not yet replayed the single node's position when it ran
///   (`candidateBehind`) shows **lag**, not a mismatch.
/// - Otherwise it is a **mismatch**; an error on one side only is one too.
public enum ShadowClassification: Sendable, Hashable, Codable {
    case match
    case noise(ResultDifference)
    case lag(ResultDifference)
    case mismatch(ResultDifference)

    public var name: String {
        switch self {
        case .match: return "match"
        case .noise: return "noise"
        case .lag: return "lag"
        case .mismatch: return "mismatch"
        }
    }

    public var difference: ResultDifference? {
        switch self {
        case .match: return nil
        case .noise(let d), .lag(let d), .mismatch(let d): return d
        }
    }

    public static func classify(
        primary: ExecutionOutcome, secondary: ExecutionOutcome?, candidate: ExecutionOutcome, ordered: Bool, candidateBehind: Bool,
        sourceName: String = "single node", candidateName: String = "cluster"
    ) -> ShadowClassification {
        if let secondary, let noise = ResultComparator.difference(primary, secondary, ordered: ordered, left: "\(sourceName) (1st run)", right: "\(sourceName) (2nd run)") {
            return .noise(noise)
        }
        guard let difference = ResultComparator.difference(primary, candidate, ordered: ordered, left: sourceName, right: candidateName) else {
            return .match
        }
        return candidateBehind ? .lag(difference) : .mismatch(difference)
    }

    /// A lagging execution is run once more after the member caught up: agreeing then confirms
    /// lag; still lagging stays lag; noise is noise; a difference with the member caught up is a
    /// mismatch after all. Anything but lag stands as first classified.
    public static func afterRecheck(first: ShadowClassification, recheck: ShadowClassification?) -> ShadowClassification {
        guard case .lag(let d) = first else { return first }
        switch recheck {
        case nil, .match?: return .lag(d)
        case .lag?: return .lag(d)
        case .noise(let n)?: return .noise(n)
        case .mismatch(let m)?: return .mismatch(m)
        }
    }
}
