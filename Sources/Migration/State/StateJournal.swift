import Foundation
import Synchronization

/// The live migration state of one run, saved to disk after every change.
///
/// Stages record their side effects here, write-ahead: `beginStep` (intent, with the undo
/// information captured before the change) is on disk before the change is made; `completeStep`
/// after. A step found with an intent and no completion on resume is re-checked by its stage
/// (steps are idempotent: compare what is there with what the step wanted).
///
/// Every mutation persists before it returns; if persisting fails, the error propagates and the
/// caller must not perform the side effect. Thread-safe: mutations are serialised by a mutex, which
/// is also held while writing, so the file always reflects a prefix of the mutations in order.
public final class StateJournal: Sendable {
    /// Persists a state; `StateStore.save` in production.
    public typealias Persist = @Sendable (MigrationState) throws(MigrationError) -> Void

    private let state: Mutex<MigrationState>
    private let persist: Persist
    /// Timestamps for records.
    public let clock: any MigrationClock

    public init(state: MigrationState, clock: any MigrationClock, persist: @escaping Persist) {
        self.state = Mutex(state)
        self.clock = clock
        self.persist = persist
    }

    /// A journal that saves into `store`, masking `redactor`'s secrets.
    public convenience init(state: MigrationState, store: StateStore, redactor: SecretRedactor, clock: any MigrationClock) {
        self.init(state: state, clock: clock) { (state: MigrationState) throws(MigrationError) in
            try store.save(state, redactor: redactor)
        }
    }

    /// The current state.
    public var snapshot: MigrationState { state.withLock { $0 } }

    /// Applies `body` to the state, stamps `updatedAt`, and persists. If persisting fails the
    /// in-memory state keeps the change (it describes intent) and the error is thrown.
    @discardableResult
    public func update<T>(_ body: (inout MigrationState) throws(MigrationError) -> T) throws(MigrationError) -> T {
        let now = clock.now()
        return try state.withLock { (s: inout MigrationState) throws(MigrationError) -> T in
            let result = try body(&s)
            s.updatedAt = now
            try persist(s)
            return result
        }
    }

    /// Persists the current state unchanged (after a crash-resume, or to refresh `updatedAt`).
    public func save() throws(MigrationError) {
        try update { _ in }
    }

    // MARK: - Steps

    /// Records the intent of a step and persists it; returns its id.
    /// - Parameters:
    ///   - name: stable within the stage, so a resumed run finds it (`create-extension:pg_trgm@node2`).
    ///   - undo: what undo needs, captured before the change. No secrets.
    public func beginStep(_ stage: MigrationStage, name: String, detail: String, undo: StepUndo = .nothing) throws(MigrationError) -> Int {
        let now = clock.now()
        return try update { s in
            let id = s.nextRecordID
            s.nextRecordID += 1
            s.steps.append(.init(id: id, stage: stage, name: name, phase: .intent, detail: detail, undo: undo, intendedAt: now))
            return id
        }
    }

    /// Marks step `id` done and persists; `undo`, when given, replaces the undo information (e.g.
    /// with what the step learned while making its change).
    public func completeStep(_ id: Int, undo: StepUndo? = nil) throws(MigrationError) {
        try setStepPhase(id, .done, undo: undo)
    }

    /// Marks step `id` undone and persists.
    public func markStepUndone(_ id: Int) throws(MigrationError) {
        try setStepPhase(id, .undone)
    }

    /// Marks step `id` abandoned (found on resume never to have happened) and persists.
    public func abandonStep(_ id: Int) throws(MigrationError) {
        try setStepPhase(id, .abandoned)
    }

    /// Runs `body` as the journaled step `name` of `stage`, once: nothing when it is done; the
    /// intent an interrupted run left is reused (so `body` must be safe to run again: it looks
    /// before it changes); otherwise a new intent with `undo` is recorded first. `body` may return
    /// better undo information, recorded with the completion.
    public func runStep(_ stage: MigrationStage, _ name: String, detail: String, undo: StepUndo = .nothing,
                        _ body: () async throws -> StepUndo?) async throws {
        if step(stage, named: name)?.phase == .done { return }
        let id: Int
        if let pending = step(stage, named: name), pending.phase == .intent {
            id = pending.id
        } else {
            id = try beginStep(stage, name: name, detail: detail, undo: undo)
        }
        let better = try await body()
        try completeStep(id, undo: better)
    }

    /// The steps of `stage`, in order.
    public func steps(of stage: MigrationStage) -> [MigrationState.StepRecord] {
        snapshot.steps.filter { $0.stage == stage }
    }

    /// The latest step of `stage` named `name` that was not abandoned (a resumed run finds its
    /// earlier attempt here).
    public func step(_ stage: MigrationStage, named name: String) -> MigrationState.StepRecord? {
        steps(of: stage).last { $0.name == name && $0.phase != .abandoned }
    }

    /// Steps of `stage` with an intent and no completion: to re-check on resume.
    public func pendingSteps(of stage: MigrationStage) -> [MigrationState.StepRecord] {
        steps(of: stage).filter { $0.phase == .intent }
    }

    private func setStepPhase(_ id: Int, _ phase: MigrationState.StepPhase, undo: StepUndo? = nil) throws(MigrationError) {
        let now = clock.now()
        try update { (s: inout MigrationState) throws(MigrationError) in
            guard let i = s.steps.firstIndex(where: { $0.id == id }) else {
                throw MigrationError(.invalidTransition, "no journal step with id \(id)")
            }
            s.steps[i].phase = phase
            if let undo { s.steps[i].undo = undo }
            switch phase {
            case .done: s.steps[i].doneAt = now
            case .undone: s.steps[i].undoneAt = now
            case .intent, .abandoned: break
            }
        }
    }
}
