public import Foundation

/// Where the migration gets wall-clock time from (timestamps in the state file and reports).
/// Tests inject a fake; nothing in the module reads the system clock directly.
public protocol MigrationClock: Sendable {
    /// The current time.
    func now() -> Date
}

/// The system clock (`Date()`).
public struct SystemClock: MigrationClock {
    public init() {}
    public func now() -> Date { Date() }
}
