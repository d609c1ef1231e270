/// The migration's stage engine: a pure state machine. An event in, one action out; no I/O, no
/// clock, no randomness, so every transition is tested as a value.
///
/// Forward: for each stage from the first one not done: `confirm` → (proceed) `runStage` →
/// (succeeded) `evaluateGate` → (no FAIL) next stage. A run failure or a FAIL in the gate leads to
/// `decide` with retry, skip, stop, and rollback once any stage that changes things has run. A stage
/// that is not available ends the run with `stoppedBeforeUnbuiltStage`; `until` ends it with
/// `reachedUntil` after that stage.
///
/// Rollback: every stage that ran (attempts > 0) and is not yet rolled back is undone, last first.
/// An undo failure stops the rollback (`rollbackFailed`); running rollback again resumes it.
///
/// Invalid events return `.invalidEvent` and leave the engine unchanged: they can come from a state
/// file edited by hand, so the runner reports them instead of trapping.
public struct StageEngine: Hashable, Sendable {
    enum State: Hashable, Sendable {
        /// Nothing has happened in this run yet.
        /// Can transition to: `.confirming` (start), `.rollingBack` (rollback requested), `.finished`.
        case idle
        /// Waiting for the answer to `confirm` for the stage at `index`.
        /// Can transition to: `.running` (proceed), `.confirming` (skip: next stage), `.rollingBack`,
        /// `.finished` (stop, interrupted, or skip reaching the end/until/an unbuilt stage).
        case confirming(index: Int)
        /// The stage at `index` is running.
        /// Can transition to: `.gating` (succeeded), `.deciding` (failed), `.finished` (interrupted).
        case running(index: Int)
        /// The gate of the stage at `index` is being evaluated.
        /// Can transition to: `.confirming` (next stage), `.deciding` (FAIL), `.finished`.
        case gating(index: Int)
        /// The stage at `index` failed; waiting for the answer to `decide`.
        /// Can transition to: `.running` (retry), `.confirming` (skip), `.rollingBack`, `.finished`.
        case deciding(index: Int, failure: StageFailure)
        /// Undoing the stage at `index`; `remaining` are undone after it, in that order.
        /// Can transition to: `.rollingBack` (next), `.finished` (done, undo failed, interrupted).
        case rollingBack(index: Int, remaining: [Int], requested: Bool)
        /// The run is over.
        /// Can transition to: nothing (every event is invalid).
        case finished(MigrationOutcome)
    }

    /// The stages, in order.
    public let plan: [StagePlanEntry]
    /// Stop after this stage passes or is skipped (`--until`).
    public let until: MigrationStage?
    /// One record per plan entry, same order.
    public private(set) var records: [EngineStageRecord]
    private(set) var state: State = .idle

    /// - Parameters:
    ///   - plan: the stages, in migration order (the runner builds it from its executors).
    ///   - records: what a previous run left (from the state file); stages without a record start
    ///     as pending, records of stages not in the plan are ignored.
    ///   - until: stop after this stage.
    public init(plan: [StagePlanEntry], records: [EngineStageRecord] = [], until: MigrationStage? = nil) {
        self.plan = plan
        self.until = until
        self.records = plan.map { entry in
            records.last(where: { $0.stage == entry.stage }) ?? EngineStageRecord(stage: entry.stage)
        }
    }

    /// The outcome, once finished.
    public var outcome: MigrationOutcome? {
        if case .finished(let outcome) = state { return outcome }
        return nil
    }

    /// The stage the engine is working on (or asking about), if any.
    public var currentStage: MigrationStage? {
        switch state {
        case .idle, .finished: return nil
        case .confirming(let i), .running(let i), .gating(let i), .deciding(let i, _), .rollingBack(let i, _, _):
            return plan[i].stage
        }
    }

    /// True while undoing stages (the runner persists this so an interrupted rollback resumes as one).
    public var isRollingBack: Bool {
        if case .rollingBack = state { return true }
        return false
    }

    /// The record of `stage`, if it is in the plan.
    public func record(of stage: MigrationStage) -> EngineStageRecord? {
        records.first { $0.stage == stage }
    }

    /// True once a stage that changes things has run and is not rolled back: from then on
    /// rollback is offered.
    public var isRollbackAvailable: Bool {
        zip(plan, records).contains { entry, record in
            entry.makesChanges && record.attempts > 0 && record.status != .rolledBack
        }
    }

    /// Feeds one event; returns the one thing to do next.
    public mutating func event(_ event: EngineEvent) -> EngineAction {
        switch state {
        case .idle:
            switch event {
            case .start:
                return proceed(from: 0)
            case .rollbackRequested:
                return beginRollback(requested: true)
            case .interrupted:
                return finish(.interrupted(nil))
            case .userDecision, .stageRunSucceeded, .stageRunFailed, .gateEvaluated, .undoSucceeded, .undoFailed:
                return invalid(event)
            }

        case .confirming(let index):
            return awaitingDecision(event, at: index, runsWith: .proceed, stopped: .declined(plan[index].stage))

        case .running(let index):
            switch event {
            case .stageRunSucceeded(let stage):
                guard stage == plan[index].stage else { return invalid(event) }
                state = .gating(index: index)
                return .evaluateGate(stage)
            case .stageRunFailed(let stage, let failure):
                guard stage == plan[index].stage else { return invalid(event) }
                return fail(index, failure)
            case .interrupted:
                return finish(.interrupted(plan[index].stage))
            case .start, .userDecision, .gateEvaluated, .rollbackRequested, .undoSucceeded, .undoFailed:
                return invalid(event)
            }

        case .gating(let index):
            switch event {
            case .gateEvaluated(let stage, let results):
                guard stage == plan[index].stage else { return invalid(event) }
                records[index].gate = results
                if results.worstVerdict == .fail {
                    return fail(index, .gate(results))
                }
                records[index].status = .passed
                return advance(after: index)
            case .interrupted:
                return finish(.interrupted(plan[index].stage))
            case .start, .userDecision, .stageRunSucceeded, .stageRunFailed, .rollbackRequested, .undoSucceeded, .undoFailed:
                return invalid(event)
            }

        case .deciding(let index, _):
            return awaitingDecision(event, at: index, runsWith: .retry, stopped: .stoppedAfterFailure(plan[index].stage))

        case .rollingBack(let index, let remaining, let requested):
            switch event {
            case .undoSucceeded(let stage):
                guard stage == plan[index].stage else { return invalid(event) }
                records[index].status = .rolledBack
                return undoNext(remaining, requested: requested)
            case .undoFailed(let stage, let reason):
                guard stage == plan[index].stage else { return invalid(event) }
                records[index].status = .failed(reason: "undo failed: " + reason)
                return finish(.rollbackFailed(stage))
            case .interrupted:
                return finish(.interrupted(plan[index].stage))
            case .start, .userDecision, .stageRunSucceeded, .stageRunFailed, .gateEvaluated, .rollbackRequested:
                return invalid(event)
            }

        case .finished:
            return invalid(event)
        }
    }

    // MARK: - Forecast

    /// What a forward run would do if every stage passed: the stages it would run, in order, and
    /// the unbuilt stage it would stop before. Found by driving this very engine (every
    /// confirmation answered "proceed", every run and gate passing), so `pgha plan` can never
    /// disagree with `pgha run` about it.
    public struct Forecast: Hashable, Sendable {
        public var wouldRun: [MigrationStage] = []
        public var stopsBefore: MigrationStage?
    }

    public static func forecast(plan: [StagePlanEntry], records: [EngineStageRecord] = [], until: MigrationStage? = nil) -> Forecast {
        var engine = StageEngine(plan: plan, records: records, until: until)
        var forecast = Forecast()
        var action = engine.event(.start)
        // Each stage takes three events; anything longer is a bug, not a plan.
        for _ in 0...(plan.count * 3 + 1) {
            switch action {
            case .confirm:
                action = engine.event(.userDecision(.proceed))
            case .runStage(let stage, _):
                forecast.wouldRun.append(stage)
                action = engine.event(.stageRunSucceeded(stage))
            case .evaluateGate(let stage):
                action = engine.event(.gateEvaluated(stage, []))
            case .finish(.stoppedBeforeUnbuiltStage(let stage)):
                forecast.stopsBefore = stage
                return forecast
            case .finish, .decide, .undoStage, .invalidEvent:
                return forecast
            }
        }
        return forecast
    }

    // MARK: - Transitions

    /// An event while stage `index` waits for an answer: at its confirmation (`runsWith`
    /// `.proceed`, a stop is `.declined`) or after its failure (`.retry`, `.stoppedAfterFailure`).
    /// The other of proceed/retry is not an answer to this question.
    private mutating func awaitingDecision(_ event: EngineEvent, at index: Int, runsWith: DecisionOption, stopped: MigrationOutcome) -> EngineAction {
        switch event {
        case .userDecision(let decision):
            switch decision {
            case .proceed, .retry:
                return decision.option == runsWith ? run(index) : invalid(event)
            case .skip(let reason):
                records[index].status = .skipped(reason: reason)
                return advance(after: index)
            case .rollback:
                guard isRollbackAvailable else { return invalid(event) }
                return beginRollback(requested: false)
            case .stop:
                return finish(stopped)
            }
        case .rollbackRequested:
            guard isRollbackAvailable else { return invalid(event) }
            return beginRollback(requested: false)
        case .interrupted:
            return finish(.interrupted(plan[index].stage))
        case .start, .stageRunSucceeded, .stageRunFailed, .gateEvaluated, .undoSucceeded, .undoFailed:
            return invalid(event)
        }
    }

    private mutating func run(_ index: Int) -> EngineAction {
        records[index].status = .running
        records[index].attempts += 1
        state = .running(index: index)
        return .runStage(plan[index].stage, attempt: records[index].attempts)
    }

    private mutating func fail(_ index: Int, _ failure: StageFailure) -> EngineAction {
        records[index].status = .failed(reason: failure.message)
        state = .deciding(index: index, failure: failure)
        var options: [DecisionOption] = [.retry, .skip, .stop]
        if isRollbackAvailable { options.append(.rollback) }
        return .decide(plan[index].stage, failure, options: options)
    }

    /// After the stage at `index` passed or was skipped.
    private mutating func advance(after index: Int) -> EngineAction {
        if plan[index].stage == until { return finish(.reachedUntil(plan[index].stage)) }
        return proceed(from: index + 1)
    }

    /// Moves to the first stage at or after `start` that is not done.
    private mutating func proceed(from start: Int) -> EngineAction {
        var index = start
        while index < plan.count, records[index].status.isDone || plan[index].notApplicable != nil {
            if let reason = plan[index].notApplicable, !records[index].status.isDone {
                records[index].status = .skipped(reason: reason)
            }
            if plan[index].stage == until { return finish(.reachedUntil(plan[index].stage)) }
            index += 1
        }
        guard index < plan.count else { return finish(.completed) }
        guard plan[index].isAvailable else { return finish(.stoppedBeforeUnbuiltStage(plan[index].stage)) }
        state = .confirming(index: index)
        var options: [DecisionOption] = [.proceed, .skip, .stop]
        if isRollbackAvailable { options.append(.rollback) }
        return .confirm(plan[index].stage, options: options)
    }

    private mutating func beginRollback(requested: Bool) -> EngineAction {
        let queue = records.indices.reversed().filter { records[$0].attempts > 0 && records[$0].status != .rolledBack }
        return undoNext(queue, requested: requested)
    }

    private mutating func undoNext(_ queue: [Int], requested: Bool) -> EngineAction {
        guard let next = queue.first else { return finish(.rolledBack(requested: requested)) }
        state = .rollingBack(index: next, remaining: Array(queue.dropFirst()), requested: requested)
        return .undoStage(plan[next].stage)
    }

    private mutating func finish(_ outcome: MigrationOutcome) -> EngineAction {
        state = .finished(outcome)
        return .finish(outcome)
    }

    private func invalid(_ event: EngineEvent) -> EngineAction {
        .invalidEvent(InvalidEngineEvent(event: Self.name(of: event), state: Self.name(of: state)))
    }

    static func name(of event: EngineEvent) -> String {
        switch event {
        case .start: return "start"
        case .userDecision(let d): return "userDecision(\(d.option.rawValue))"
        case .stageRunSucceeded(let s): return "stageRunSucceeded(\(s))"
        case .stageRunFailed(let s, _): return "stageRunFailed(\(s))"
        case .gateEvaluated(let s, _): return "gateEvaluated(\(s))"
        case .rollbackRequested: return "rollbackRequested"
        case .undoSucceeded(let s): return "undoSucceeded(\(s))"
        case .undoFailed(let s, _): return "undoFailed(\(s))"
        case .interrupted: return "interrupted"
        }
    }

    static func name(of state: State) -> String {
        switch state {
        case .idle: return "idle"
        case .confirming: return "confirming a stage"
        case .running: return "running a stage"
        case .gating: return "evaluating a gate"
        case .deciding: return "waiting for a decision after a failure"
        case .rollingBack: return "rolling back"
        case .finished: return "finished"
        }
    }
}
