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
