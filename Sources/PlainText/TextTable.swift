/// A left-aligned text table with a header and a dashed rule, columns two spaces apart.
public struct TextTable: Sendable, Equatable {
    public var header: [String]
    public var rows: [[String]]

    public init(header: [String], rows: [[String]]) {
        self.header = header
        self.rows = rows
    }

    /// Renders the table without a trailing newline; trailing spaces are trimmed.
    public func render() -> String {
        let columns = ([header] + rows).map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in [header] + rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var text = ""
            for index in 0..<columns {
                let cell = index < cells.count ? cells[index] : ""
                text += cell + String(repeating: " ", count: widths[index] - cell.count)
                if index < columns - 1 { text += "  " }
            }
            while text.hasSuffix(" ") { text.removeLast() }
            return text
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
    }
}
