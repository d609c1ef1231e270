import PlainText
import Foundation

/// The extensions stage's node × extension matrix: one row per extension (used by the source or
/// required by the playbook), one column for the single node and one per cluster member.
///
/// Cells: for `source`, the version installed in the source databases (`1.6`, `1.5/1.6` when the
/// databases differ, `—` when not installed); for a member, the default version it offers, then
/// `(lacks 1.5)` when it cannot install the source's version and `(< 2.0)` when it offers nothing
/// ≥ `extensions.min_versions`, or `missing` / `unreachable`.
///
/// The gate stores each row as the `observed` text of its `extension.<name>` check
/// (`source=1.6; node1=1.6; node2=missing`), so the matrix can be rebuilt from a state file's gate
/// results with `ExtensionMatrix(checks:)` and printed with `table()`.
public struct ExtensionMatrix: Sendable, Hashable, Codable {
    /// `source`, then the members' names.
    public var columns: [String]
    public var rows: [Row]

    public struct Row: Sendable, Hashable, Codable {
        public var extensionName: String
        public var verdict: Verdict
        /// Aligned with `columns`.
        public var cells: [String]

        public init(extensionName: String, verdict: Verdict, cells: [String]) {
            self.extensionName = extensionName
            self.verdict = verdict
            self.cells = cells
        }
    }

    public init(columns: [String], rows: [Row]) {
        self.columns = columns
        self.rows = rows
    }

    /// The prefix of the checks holding a row.
    public static let checkPrefix = "extension."

    /// Rebuilds the matrix from the extensions gate's results (checks named `extension.<name>`);
    /// nil when there are none. Columns are taken in order of first appearance.
    public init?(checks: [CheckResult]) {
        var columns: [String] = []
        var parsed: [(String, Verdict, [(String, String)])] = []
        for check in checks where check.name.hasPrefix(Self.checkPrefix) {
            let pairs = Self.parse(check.observed)
            for (column, _) in pairs where !columns.contains(column) { columns.append(column) }
            parsed.append((String(check.name.dropFirst(Self.checkPrefix.count)), check.verdict, pairs))
        }
        guard !parsed.isEmpty else { return nil }
        self.columns = columns
        self.rows = parsed.map { name, verdict, pairs in
            let cells = Dictionary(pairs, uniquingKeysWith: { first, _ in first })
            return Row(extensionName: name, verdict: verdict, cells: columns.map { cells[$0] ?? "" })
        }
    }

    /// `source=1.6; node1=1.6; node2=missing`.
    static func observedText(columns: [String], cells: [String]) -> String {
        zip(columns, cells).map { "\($0)=\($1)" }.joined(separator: "; ")
    }

    static func parse(_ text: String) -> [(String, String)] {
        text.split(separator: ";").compactMap { part in
            let item = part.trimmingCharacters(in: .whitespaces)
            guard let eq = item.firstIndex(of: "=") else { return nil }
            return (String(item[..<eq]), String(item[item.index(after: eq)...]))
        }
    }

    /// A plain-text table, e.g.
    ///
    /// ```
    /// EXTENSION  VERDICT  source  node1  node2    node3
    /// ---------  -------  ------  -----  -------  -----
    /// hstore     FAIL     —       1.8    missing  1.8
    /// pg_trgm    PASS     —       1.6    1.6      1.6
    /// ```
    public func table() -> String {
        TextTable(
            header: ["EXTENSION", "VERDICT"] + columns,
            rows: rows.map { [$0.extensionName, $0.verdict.rawValue] + $0.cells }
        ).render()
    }
}
