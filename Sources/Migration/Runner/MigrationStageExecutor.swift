import Foundation
public import Logging
import Synchronization

/// One stage's behaviour: what it plans, runs, checks and undoes.
///
/// The runner calls `plan` before asking to run the stage (and for `pgha plan`), `run` to do the
/// work, `gate` to decide whether the migration may advance, and `undo` during a rollback.
///
/// Contract:
/// - `run` is idempotent: it may be called again after a crash at any point, and must then
///   finish the job without repeating side effects. Record every side effect in
///   `context.journal` before making it (`beginStep`, with undo information captured first), and
///   mark it done after; on entry, re-check `pendingSteps(of:)`.
/// - `undo` is idempotent too, and must work from whatever the journal says happened.
/// - `gate` does not change anything. A check with verdict FAIL stops the migration at this stage.
/// - Between steps, call `context.checkCancellation()`: it throws `.interrupted` after SIGINT/SIGTERM.
///   The runner also cancels the task running `run`, `gate` or `undo` on SIGINT/SIGTERM, so work in
///   progress stops at once: an async libpq query is cancelled on the server, `context.sleep` throws.
/// - Wait only through `context.sleep` (the injected clock: unit tests use a fake one) and bound
///   every wait; say what is awaited with `context.activity.waiting(…)` (shown by `pgha status`),
///   and report long work with `context.activity.progress(…)`.
/// - Never put a password, a DSN or other secret into an error message, a step detail or a check.
public protocol MigrationStageExecutor: Sendable {
    /// The stage this executor implements.
    var stage: MigrationStage { get }
    /// Whether `run` changes anything (files, databases, the cluster). Rollback is offered from the
    /// first stage that does.
    var makesChanges: Bool { get }
    /// What the stage will check and change, given the current state of the world. No side effects.
    func plan(_ context: StageContext) async throws -> StagePlan
    /// Does the work.
    func run(_ context: StageContext) async throws
    /// The checks that must pass to advance.
    func gate(_ context: StageContext) async throws -> [CheckResult]
    /// Reverts what `run` did.
    func undo(_ context: StageContext) async throws
    /// Why this executor cannot run `playbook` (a method not built yet), or nil when it can. A
    /// stage it cannot run shows as "not built yet" and a run stops before it.
    func unavailableReason(for playbook: Playbook) -> String?
    /// Why this stage does not apply to `playbook` (nil: it does): a run marks it skipped with
    /// the reason and goes on. Unlike `unavailableReason`, nothing is missing.
    func notApplicableReason(for playbook: Playbook) -> String?
}

extension MigrationStageExecutor {
    public func unavailableReason(for playbook: Playbook) -> String? { nil }
    public func notApplicableReason(for playbook: Playbook) -> String? { nil }
}

/// Everything a stage needs, handed over by the runner.
public struct StageContext: Sendable {
    public var playbook: Playbook
    /// The playbook's path, for messages.
    public var playbookPath: String
    /// Relative paths in the playbook are resolved against this directory.
    public var workingDirectory: String
    /// The state directory (backups live under `store.backupsDirectory`).
    public var store: StateStore
    /// Where `${VAR}` credentials are resolved.
    public var environment: any EnvironmentProviding
    /// Masks the playbook's resolved secrets; apply it to any text from outside (server errors…).
    public var redactor: SecretRedactor
    /// The write-ahead journal; nil during a dry run (`plan`), when nothing may be changed.
    public var journal: StateJournal?
    public var clock: any MigrationClock
    public var cancellation: CancellationFlag
    public var logger: Logger
    /// Progress lines, typed progress and waits for the operator (redacted on the way out).
    public var activity: StageActivity

    public init(
        playbook: Playbook, playbookPath: String, workingDirectory: String, store: StateStore,
        environment: any EnvironmentProviding, redactor: SecretRedactor, journal: StateJournal?,
        clock: any MigrationClock, cancellation: CancellationFlag, logger: Logger,
        activity: StageActivity
    ) {
        self.playbook = playbook
        self.playbookPath = playbookPath
        self.workingDirectory = workingDirectory
        self.store = store
        self.environment = environment
        self.redactor = redactor
        self.journal = journal
        self.clock = clock
        self.cancellation = cancellation
        self.logger = logger
        self.activity = activity
    }

    /// A context outside a runner (tests, tools): progress lines go to `progress`, other events to
    /// `observer`; waits are saved in `journal` when there is one.
    public init(
        playbook: Playbook, playbookPath: String, workingDirectory: String, store: StateStore,
        environment: any EnvironmentProviding, redactor: SecretRedactor, journal: StateJournal?,
        clock: any MigrationClock, cancellation: CancellationFlag, logger: Logger, stage: MigrationStage = .prerequisites,
        observer: any MigrationObserver = SilentObserver(), progress: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        let forwarding = ClosureObserver { event in
            if case .stageMessage(_, let text) = event { progress(text) } else { observer.report(event) }
        }
        self.init(
            playbook: playbook, playbookPath: playbookPath, workingDirectory: workingDirectory, store: store,
            environment: environment, redactor: redactor, journal: journal, clock: clock, cancellation: cancellation,
            logger: logger, activity: StageActivity(stage: stage, journal: journal, observer: forwarding, redactor: redactor, clock: clock))
    }

    /// Reports a progress line for the operator.
    public func progress(_ message: String) { activity.message(message) }

    /// Waits `duration` on the injected clock; throws `.interrupted` on SIGINT/SIGTERM.
    public func sleep(for duration: Duration) async throws(MigrationError) {
        try checkCancellation()
        do {
            try await clock.sleep(for: duration)
        } catch {
            throw MigrationError(.interrupted, "interrupted")
        }
        try checkCancellation()
    }

    /// Throws `.interrupted` once SIGINT/SIGTERM was received or the task was cancelled.
    public func checkCancellation() throws(MigrationError) {
        if cancellation.isCancelled || Task.isCancelled {
            throw MigrationError(.interrupted, "interrupted")
        }
    }

    /// The journal, or an error during a dry run.
    public func requireJournal() throws(MigrationError) -> StateJournal {
        guard let journal else {
            throw MigrationError(.invalidTransition, "a dry run (plan) cannot change anything")
        }
        return journal
    }
}

/// Set by the CLI's SIGINT/SIGTERM handler (or anyone wanting the run to stop); the runner and the
/// stages stop at the next safe point, save the state, and end with `.interrupted`.
///
/// Work that can be stopped at once (the task running a stage) registers a handler with
/// `onCancel`; `cancel()` runs every handler once.
public final class CancellationFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    private let handlers = Mutex<(next: Int, byID: [Int: @Sendable () -> Void])>((0, [:]))

    public init() {}

    /// Asks the run to stop: sets the flag, then runs every registered handler. Call it from a
    /// dispatch signal source rather than a raw signal handler.
    public func cancel() {
        flag.store(true, ordering: .sequentiallyConsistent)
        let toRun = handlers.withLock { h -> [@Sendable () -> Void] in
            defer { h.byID = [:] }
            return Array(h.byID.values)
        }
        for handler in toRun { handler() }
    }

    public var isCancelled: Bool { flag.load(ordering: .sequentiallyConsistent) }

    /// Runs `handler` on `cancel()` (at once if already cancelled). Returns a token for `remove`.
    @discardableResult
    public func onCancel(_ handler: @escaping @Sendable () -> Void) -> Int {
        let token: Int? = handlers.withLock { h in
            if isCancelled { return nil }
            h.next += 1
            h.byID[h.next] = handler
            return h.next
        }
        guard let token else {
            handler()
            return 0
        }
        return token
    }

    /// Forgets the handler registered under `token`.
    public func remove(_ token: Int) {
        _ = handlers.withLock { $0.byID.removeValue(forKey: token) }
    }
}

/// What a stage will do, for people (the guided prompt, `pgha plan`) and for JSON.
public struct StagePlan: Hashable, Sendable, Codable {
    public var stage: MigrationStage
    /// False for a stage this pgha does not implement: it is listed, never run.
    public var isAvailable: Bool
    public var makesChanges: Bool
    public var title: String
    public var summary: String
    /// What it checks.
    public var checks: [String]
    /// What it changes.
    public var changes: [String]
    /// How its changes are undone.
    public var undo: [String]
    /// For stages that write files: each file, what will happen to it, and the diff.
    public var files: [PlannedFile]
    /// Anything the operator should know before saying yes (e.g. an unset variable).
    public var warnings: [String]

    public init(
        stage: MigrationStage, isAvailable: Bool = true, makesChanges: Bool, summary: String? = nil,
        checks: [String] = [], changes: [String] = [], undo: [String] = [], files: [PlannedFile] = [], warnings: [String] = []
    ) {
        self.stage = stage
        self.isAvailable = isAvailable
        self.makesChanges = makesChanges
        self.title = stage.title
        self.summary = summary ?? stage.summary
        self.checks = checks
        self.changes = changes
        self.undo = undo
        self.files = files
        self.warnings = warnings
    }

    /// The plan of a stage this pgha does not implement.
    public static func notBuilt(_ stage: MigrationStage) -> StagePlan {
        StagePlan(
            stage: stage, isAvailable: false, makesChanges: true,
            summary: stage.summary,
            warnings: ["Not built yet in this version of pgha: a run stops before this stage."]
        )
    }
}

/// One file in a plan.
public struct PlannedFile: Hashable, Sendable, Codable {
    public enum Action: String, Hashable, Sendable, Codable {
        case create
        case update
        case unchanged
    }

    public var key: String
    public var path: String
    public var action: Action
    public var mode: FileMode
    public var holdsSecrets: Bool
    /// Unified diff from what is on disk to what will be written; secret values are masked.
    public var diff: String

    public init(key: String, path: String, action: Action, mode: FileMode, holdsSecrets: Bool, diff: String) {
        self.key = key
        self.path = path
        self.action = action
        self.mode = mode
        self.holdsSecrets = holdsSecrets
        self.diff = diff
    }
}
