import Foundation
import Synchronization

/// What a check-only stage's `run` observed, kept for its `gate`.
///
/// The runner evaluates a stage's gate right after its run succeeded, in the same process, so the
/// gate judges exactly what the run collected (and showed as progress) instead of asking every
/// server again. An entry is taken once, only for the same playbook, and only while it is fresh;
/// otherwise the gate observes anew (e.g. a gate evaluated without a run in this process).
final class ObservationCache<Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var takenAt: Date
        var playbook: Playbook
    }

    private let entry = Mutex<Entry?>(nil)
    /// Older observations are not reused.
    let maxAge: TimeInterval

    init(maxAge: TimeInterval = 120) {
        self.maxAge = maxAge
    }

    func store(_ value: Value, takenAt: Date, playbook: Playbook) {
        entry.withLock { $0 = Entry(value: value, takenAt: takenAt, playbook: playbook) }
    }

    /// The stored value if it belongs to `playbook` and is at most `maxAge` old at `now`; the
    /// entry is removed either way.
    func take(now: Date, playbook: Playbook) -> Value? {
        let stored = entry.withLock { e -> Entry? in
            defer { e = nil }
            return e
        }
        guard let stored, stored.playbook == playbook else { return nil }
        let age = now.timeIntervalSince(stored.takenAt)
        guard age >= 0, age <= maxAge else { return nil }
        return stored.value
    }
}
