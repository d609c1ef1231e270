import Foundation

/// `0 B`, `512 B`, `16.0 kB`, `1.0 MB`, `2.5 GB` (base 1024, as PostgreSQL writes sizes): the one
/// way pgha prints a size, in tables, gates, progress and reports.
public func formatBytes(_ bytes: Int64) -> String {
    let units = ["kB", "MB", "GB", "TB"]
    guard abs(bytes) >= 1024 else { return "\(bytes) B" }
    var value = Double(bytes) / 1024
    var unit = 0
    while abs(value) >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return String(format: "%.1f", value) + " " + units[unit]
}

/// Parses a size as PostgreSQL and pgha's configuration write it: `1048576`, `512kB` (or `KB`),
/// `16MB`, `1GB`, `2TB` (base 1024; spaces allowed around the number). Nil for a negative, a
/// malformed or an overflowing size. The one parser behind the playbook and the pool's environment.
public func parseBytes(_ text: String) -> Int64? {
    let t = text.trimmingCharacters(in: .whitespaces)
    let units: [(String, Int64)] = [("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("kB", 1 << 10), ("B", 1)]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        guard let n = Int64(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n >= 0 else { return nil }
        let (product, overflow) = n.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }
    guard let n = Int64(t), n >= 0 else { return nil }
    return n
}
