public import Foundation
public import Logging
import Synchronization

/// The one executor of the stage engine: steps the engine, performs its actions through the stage
/// executors, asks the decider, reports to the observer, and saves the state after every
/// transition (before performing the action the transition asks for).
///
/// One runner at a time per state directory (`StateLock`). Cancellation (`CancellationFlag`, set
/// by the CLI on SIGINT/SIGTERM, or task cancellation) is honoured at every safe point: before each
/// action, and between steps inside a stage; the state is saved and the run ends with
/// `.interrupted`.
public struct MigrationRunner: Sendable {
    /// What the runner works with.
    public struct Configuration: Sendable {
        public var playbook: LoadedPlaybook
        public var store: StateStore
        /// Executors by stage; stages without one are "not built yet".
        public var executors: [any MigrationStageExecutor]
        public var environment: any EnvironmentProviding
        public var decider: any MigrationDecider
        public var observer: any MigrationObserver
        public var clock: any MigrationClock
        public var cancellation: CancellationFlag
        public var logger: Logger
        /// This pgha's version, recorded in the state and the lock.
        public var toolVersion: String
        /// Relative output paths are resolved against this directory on the first run (later runs
        /// use the one recorded in the state).
        public var workingDirectory: String
        /// Continue although the playbook's checksum differs from the one in the state.
        public var allowPlaybookChange: Bool
        /// Tests only: called with the number (from 1) of each state write about to happen; true
        /// makes that write and every later one fail as if the process had been killed there.
        var simulatedCrash: (@Sendable (Int) -> Bool)?
        /// Test hook (the CLI's `PGHA_TEST_CRASH_AT_WRITE` / `PGHA_TEST_CRASH_BEFORE_WRITE`, used by
        /// the kill -9 integration tests): called with the number (from 1) of every state write,
        /// just before it (`written == false`) and just after it reached the disk (`written == true`),
        /// with the state written. Leave it nil in production.
        public var stateWriteHook: (@Sendable (_ write: Int, _ written: Bool, _ state: MigrationState) -> Void)?

        public init(
            playbook: LoadedPlaybook, store: StateStore, executors: [any MigrationStageExecutor],
            environment: any EnvironmentProviding = ProcessEnvironment(), decider: any MigrationDecider,
            observer: any MigrationObserver = SilentObserver(), clock: any MigrationClock = SystemClock(),
            cancellation: CancellationFlag = CancellationFlag(), logger: Logger = Logger(label: "pgha.migration"),
            toolVersion: String, workingDirectory: String = FileManager.default.currentDirectoryPath,
            allowPlaybookChange: Bool = false
        ) {
            self.playbook = playbook
            self.store = store
            self.executors = executors
            self.environment = environment
            self.decider = decider
            self.observer = observer
            self.clock = clock
            self.cancellation = cancellation
            self.logger = logger
            self.toolVersion = toolVersion
            self.workingDirectory = workingDirectory
            self.allowPlaybookChange = allowPlaybookChange
        }
    }

    /// What to do.
    public enum Mode: Hashable, Sendable {
        /// Run forward from the first stage not done (a fresh run, or continuing one), stopping
        /// after `until` if given.
        case forward(until: MigrationStage?)
        /// Continue what the saved state was doing: forward, or an interrupted rollback.
        /// Requires a state file.
        case resume(until: MigrationStage?)
        /// Undo every stage that ran, last first. Requires a state file.
        case rollback
    }

    public let configuration: Configuration
    let redactor: SecretRedactor

    public init(_ configuration: Configuration) {
        self.configuration = configuration
        self.redactor = configuration.playbook.playbook.secretRedactor(environment: configuration.environment)
    }

    /// The stages as the engine sees them.
    public var planEntries: [StagePlanEntry] {
        MigrationStage.allCases.map { stage in
            let executor = executor(for: stage)
            return StagePlanEntry(stage: stage, isAvailable: executor != nil, makesChanges: executor?.makesChanges ?? true,
                                  notApplicable: executor?.notApplicableReason(for: configuration.playbook.playbook))
        }
    }

    /// The executor of `stage` that can run this playbook.
    func executor(for stage: MigrationStage) -> (any MigrationStageExecutor)? {
        configuration.executors.first { $0.stage == stage && $0.unavailableReason(for: configuration.playbook.playbook) == nil }
    }

    /// Why `stage` cannot run with this playbook: no executor, or one that does not support it.
    public func unavailableReason(for stage: MigrationStage) -> String {
        let playbook = configuration.playbook.playbook
        return configuration.executors.lazy.filter { $0.stage == stage }.compactMap { $0.unavailableReason(for: playbook) }.first
            ?? "Not built yet in this version of pgha: a run stops before this stage."
    }

    /// `pgha plan`: every stage's plan, without taking the lock or changing anything. A stage whose
    /// plan cannot be computed gets a plan with the error as a warning.
    public func plan() async -> [StagePlan] {
        let state = try? configuration.store.loadIfPresent()
        let context = makeContext(journal: nil, workingDirectory: state?.workingDirectory ?? configuration.workingDirectory, stage: nil)
        var plans: [StagePlan] = []
        for entry in planEntries {
            plans.append(await plan(entry.stage, context: context))
        }
        return plans
    }

    func plan(_ stage: MigrationStage, context: StageContext) async -> StagePlan {
        guard let executor = executor(for: stage) else {
            var plan = StagePlan.notBuilt(stage)
            plan.warnings = [unavailableReason(for: stage)]
            return plan
        }
        if let reason = executor.notApplicableReason(for: configuration.playbook.playbook) {
            return StagePlan(stage: stage, makesChanges: false, summary: "Does not apply to this playbook: a run skips it.", warnings: [reason])
        }
        do {
            return try await executor.plan(context)
        } catch {
            var plan = StagePlan(stage: stage, makesChanges: executor.makesChanges)
            plan.warnings.append("cannot compute the plan: " + redactor.redact(Self.message(of: error)))
            return plan
        }
    }

    /// Runs the migration in `mode`; `command` names the CLI command for the state's run history.
    /// - Returns: how the run ended (`outcome.exitCode` is the process exit code).
    /// - Throws: `.locked`, `.stateNotFound`, `.stateCorrupt`, `.stateTooNew`, `.playbookChanged`,
    ///   `.invalidTransition`, `.io` — conditions where no outcome can be recorded.
    /// `guided` is recorded with the run (a later `resume` does the same again); nil for a rollback.
    public func run(_ mode: Mode, command: String, guided: Bool? = nil) async throws(MigrationError) -> MigrationOutcome {
        let c = configuration
        let lock = try c.store.lock(command: command, toolVersion: c.toolVersion, clock: c.clock)
        defer { lock.release() }
        if let previous = lock.replacedHolder {
            c.observer.report(.staleLockReplaced(previous))
            c.logger.notice("took over a stale lock", metadata: ["pid": "\(previous.pid)", "host": "\(previous.hostname)"])
        }

        let existing = try c.store.loadIfPresent()
        switch mode {
        case .forward: break
        case .resume, .rollback:
            guard existing != nil else {
                throw MigrationError(.stateNotFound, "no migration state in \(c.store.directory): nothing to \(mode == .rollback ? "roll back" : "resume"). Start with `pgha migrate` or `pgha run`.", path: c.store.stateFile)
            }
        }
        var state = existing ?? MigrationState(
            toolVersion: c.toolVersion,
            playbook: .init(path: c.playbook.path, sha256: c.playbook.sha256, name: c.playbook.playbook.name),
            workingDirectory: c.workingDirectory, now: c.clock.now()
        )
        if existing != nil {
            try checkPlaybook(&state)
        }
        state.toolVersion = c.toolVersion
        state.lastOutcome = nil
        state.runs.append(.init(command: command, pid: lock.holder.pid, startedAt: c.clock.now(), guided: mode == .rollback ? nil : guided))
        if mode == .rollback { state.direction = .rollback }
        let journal = makeJournal(state)
        try journal.save()

        let until: MigrationStage?
        let firstEvent: EngineEvent
        switch mode {
        case .forward(let u):
            until = u
            firstEvent = state.direction == .rollback ? .rollbackRequested : .start
            if state.direction == .rollback {
                c.observer.report(.warning("the last rollback did not finish; finishing it before anything else"))
            }
        case .resume(let u):
            until = u
            firstEvent = state.direction == .rollback ? .rollbackRequested : .start
        case .rollback:
            until = nil
            firstEvent = .rollbackRequested
        }
        let entries = planEntries
        c.observer.report(.runStarted(command: command, plan: entries, resumed: existing != nil))
        c.logger.info("migration run started", metadata: ["command": "\(command)", "resumed": "\(existing != nil)"])

        var engine = StageEngine(plan: entries, records: state.engineRecords, until: until)
        var action = engine.event(firstEvent)
        while true {
            // Save the transition before acting on it.
            let rollingBack: Bool
            if case .undoStage = action { rollingBack = true } else { rollingBack = false }
            let records = engine.records
            try journal.update { s in
                s.apply(records, now: c.clock.now())
                if rollingBack { s.direction = .rollback }
            }

            if case .finish(let outcome) = action {
                return try finish(outcome, journal: journal)
            }
            if case .invalidEvent(let invalid) = action {
                c.logger.error("stage engine rejected an event", metadata: ["detail": "\(invalid)"])
                throw MigrationError(.invalidTransition, "internal error: the stage engine rejected \(invalid). The state is saved; please report this.")
            }
            if isCancelled {
                action = engine.event(.interrupted)
                continue
            }
            if let event = await perform(action, journal: journal) {
                action = engine.event(event)
            } else {
                action = engine.event(.interrupted)
            }
        }
    }

    /// Performs one action; returns the event it produced (nil: interrupted).
    private func perform(_ action: EngineAction, journal: StateJournal) async -> EngineEvent? {
        let c = configuration
        switch action {
        case .confirm(let stage, let options):
            let context = makeContext(journal: nil, workingDirectory: journal.snapshot.workingDirectory, stage: stage)
            let plan = await self.plan(stage, context: context)
            c.observer.report(.stagePlanned(plan))
            let decision = Self.validated(await c.decider.confirm(stage, plan: plan, options: options), options: options)
            if isCancelled { return nil }
            report(decision, stage: stage)
            return .userDecision(decision)

        case .runStage(let stage, let attempt):
            guard let executor = executor(for: stage) else {
                return .stageRunFailed(stage, StageFailure(kind: .run, message: "stage \(stage) is not built in this version of pgha"))
            }
            c.observer.report(.stageStarted(stage, attempt: attempt))
            c.logger.info("stage started", metadata: ["stage": "\(stage)", "attempt": "\(attempt)"])
            do {
                let context = makeContext(journal: journal, workingDirectory: journal.snapshot.workingDirectory, stage: stage)
                try await cancellable { try await executor.run(context) }
                return .stageRunSucceeded(stage)
            } catch {
                if isInterruption(error) { return nil }
                let failure = StageFailure(kind: .run, message: redactor.redact(Self.message(of: error)))
                c.observer.report(.stageRunFailed(stage, failure))
                c.logger.warning("stage failed", metadata: ["stage": "\(stage)", "error": "\(failure.message)"])
                return .stageRunFailed(stage, failure)
            }

        case .evaluateGate(let stage):
            guard let executor = executor(for: stage) else {
                return .gateEvaluated(stage, [.fail("stage.available", observed: "not built", expected: "built", advice: "upgrade pgha")])
            }
            var results: [CheckResult]
            do {
                let context = makeContext(journal: journal, workingDirectory: journal.snapshot.workingDirectory, stage: stage)
                results = try await cancellable { try await executor.gate(context) }
            } catch {
                if isInterruption(error) { return nil }
                results = [.fail("gate.error", observed: Self.message(of: error), expected: "the gate's checks can run", advice: "fix the cause and retry the stage")]
            }
            results = results.map { $0.redacted(by: redactor) }
            c.observer.report(.gateEvaluated(stage, results))
            return .gateEvaluated(stage, results)

        case .decide(let stage, let failure, let options):
            let decision = Self.validated(await c.decider.decide(stage, failure: failure, options: options), options: options)
            if isCancelled { return nil }
            report(decision, stage: stage)
            return .userDecision(decision)

        case .undoStage(let stage):
            guard let executor = executor(for: stage) else {
                return .undoFailed(stage, reason: "no executor for stage \(stage) in this version of pgha")
            }
            c.observer.report(.undoStarted(stage))
            c.logger.info("undoing stage", metadata: ["stage": "\(stage)"])
            do {
                let context = makeContext(journal: journal, workingDirectory: journal.snapshot.workingDirectory, stage: stage)
                try await cancellable { try await executor.undo(context) }
                c.observer.report(.undoFinished(stage, error: nil))
                return .undoSucceeded(stage)
            } catch {
                if isInterruption(error) { return nil }
                let message = redactor.redact(Self.message(of: error))
                c.observer.report(.undoFinished(stage, error: message))
                return .undoFailed(stage, reason: message)
            }

        case .finish, .invalidEvent:
            preconditionFailure("handled by run(_:command:)")
        }
    }
}
