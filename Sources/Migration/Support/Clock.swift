public import Foundation

/// Where the migration gets time from: wall-clock timestamps for the state file and reports, and
/// the waits of long stages (lag, catch-up, a cluster to appear, timeouts).
///
/// Tests inject a fake whose `sleep` advances its own time at once, so every wait and timeout is
/// unit-tested without a real sleep; nothing in the module reads the system clock or sleeps on its
/// own.
public protocol MigrationClock: Sendable {
    /// The current time.
    func now() -> Date
    /// Waits `duration` (or returns at once in a fake). Throws `CancellationError` when the task
    /// is cancelled (SIGINT/SIGTERM cancel a stage's task), so a wait never outlives an interrupt.
    func sleep(for duration: Duration) async throws
}

/// The system clock (`Date()`, `Task.sleep`).
public struct SystemClock: MigrationClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}
