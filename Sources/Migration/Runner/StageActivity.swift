public import Foundation
import Synchronization

/// What a stage tells the operator while it runs, beyond its result: progress lines, typed
/// progress (bars), and waits. One per stage run, made by the runner; every text is redacted here.
///
/// Waits are saved in the state file (`StageState.waiting`) so `pgha status` shows them from
/// another terminal: at once when what is awaited changes, and at most every `persistInterval`
/// when only the detail changes (a long wait does not rewrite the state file every second).
public final class StageActivity: Sendable {
    public let stage: MigrationStage
    private let journal: StateJournal?
    private let observer: any MigrationObserver
    private let redactor: SecretRedactor
    private let clock: any MigrationClock
    /// How often a changing wait detail is saved.
    public let persistInterval: TimeInterval
    private let state = Mutex<WaitState>(WaitState())

    private struct WaitState {
        var current: StageWait?
        var savedAt: Date?
    }

    public init(
        stage: MigrationStage, journal: StateJournal?, observer: any MigrationObserver, redactor: SecretRedactor,
        clock: any MigrationClock, persistInterval: TimeInterval = 5
    ) {
        self.stage = stage
        self.journal = journal
        self.observer = observer
        self.redactor = redactor
        self.clock = clock
        self.persistInterval = persistInterval
    }

    /// A line of progress.
    public func message(_ text: String) {
        observer.report(.stageMessage(stage, redactor.redact(text)))
    }

    /// A typed progress update (a bar on a terminal).
    public func progress(_ update: StageProgress) {
        var update = update
        update.title = redactor.redact(update.title)
        update.detail = update.detail.map(redactor.redact)
        observer.report(.stageProgress(stage, update))
    }

    /// The stage waits for `what` (bounded by `deadline`, if any); `detail` is the latest observation.
    /// Calling it again with the same `what` updates the detail and keeps `since`.
    /// - Throws: only when the state cannot be saved (then the stage must stop).
    public func waiting(_ what: String, detail: String? = nil, deadline: Date? = nil) throws(MigrationError) {
        let now = clock.now()
        let what = redactor.redact(what)
        let detail = detail.map(redactor.redact)
        let (wait, persist, announce): (StageWait, Bool, Bool) = state.withLock { s in
            if var current = s.current, current.what == what {
                let changed = current.detail != detail || current.deadline != deadline
                current.detail = detail
                current.deadline = deadline
                s.current = current
                let due = s.savedAt.map { now.timeIntervalSince($0) >= persistInterval } ?? true
                if changed && due { s.savedAt = now }
                return (current, changed && due, changed)
            }
            let wait = StageWait(what: what, since: now, detail: detail, deadline: deadline)
            s.current = wait
            s.savedAt = now
            return (wait, true, true)
        }
        if persist { try save(wait) }
        if announce { observer.report(.stageWaiting(stage, wait)) }
    }

    /// The wait is over (what was awaited arrived, or the stage gives up).
    public func doneWaiting() throws(MigrationError) {
        let ended = state.withLock { s -> StageWait? in
            defer { s.current = nil; s.savedAt = nil }
            return s.current
        }
        guard let ended else { return }
        try save(nil)
        observer.report(.stageWaitEnded(stage, waitedSeconds: clock.now().timeIntervalSince(ended.since)))
    }

    /// The current wait, if any.
    public var currentWait: StageWait? { state.withLock { $0.current } }

    private func save(_ wait: StageWait?) throws(MigrationError) {
        guard let journal else { return }
        let stage = self.stage
        try journal.update { s in
            if let i = s.stages.firstIndex(where: { $0.stage == stage }) { s.stages[i].waiting = wait }
        }
    }
}
