// The stage engine's vocabulary: the plan it runs, what it records per stage, the events it
// accepts and the actions it answers with (the machine itself is StageEngine.swift).

/// One stage as the engine sees it: which stage, whether this pgha can run it, and whether it
/// changes anything (a stage that only checks needs no undo and makes no rollback necessary).
public struct StagePlanEntry: Hashable, Sendable, Codable {
    public var stage: MigrationStage
    /// False when no executor is registered: the stage shows as "not built yet" and a run stops
    /// before it.
    public var isAvailable: Bool
    /// True when running the stage changes files, databases or the cluster.
    public var makesChanges: Bool
    /// Why the stage does not apply to this playbook (nil: it does): a forward run marks it
    /// skipped with this reason and goes on, without asking.
    public var notApplicable: String?

    public init(stage: MigrationStage, isAvailable: Bool, makesChanges: Bool, notApplicable: String? = nil) {
        self.stage = stage
        self.isAvailable = isAvailable
        self.makesChanges = makesChanges
        self.notApplicable = notApplicable
    }
}

/// What the engine remembers about one stage; persisted by the runner.
public struct EngineStageRecord: Hashable, Sendable, Codable {
    public var stage: MigrationStage
    public var status: StageStatus
    /// How many times the stage's run was started (0: never ran, so nothing to undo).
    public var attempts: Int
    /// The latest gate results (empty until the gate ran).
    public var gate: [CheckResult]

    public init(stage: MigrationStage, status: StageStatus = .pending, attempts: Int = 0, gate: [CheckResult] = []) {
        self.stage = stage
        self.status = status
        self.attempts = attempts
        self.gate = gate
    }
}

/// What the operator (or the non-interactive policy) can answer.
public enum DecisionOption: String, Hashable, Sendable, Codable, CaseIterable {
    /// Run the stage (at its confirmation).
    case proceed
    /// Run the failed stage again.
    case retry
    /// Mark the stage skipped (with a reason) and go on.
    case skip
    /// Undo every stage that ran, in reverse order.
    case rollback
    /// Stop here; state is saved and `pgha resume` continues.
    case stop
}

/// An answer to `EngineAction.confirm` or `EngineAction.decide`.
public enum UserDecision: Hashable, Sendable {
    case proceed
    case retry
    case skip(reason: String)
    case rollback
    case stop

    /// The option this decision picks.
    public var option: DecisionOption {
        switch self {
        case .proceed: return .proceed
        case .retry: return .retry
        case .skip: return .skip
        case .rollback: return .rollback
        case .stop: return .stop
        }
    }
}

/// Something that happened, fed to `StageEngine.event(_:)`.
public enum EngineEvent: Hashable, Sendable {
    /// Begin (or resume) the forward run from the first stage that is not done.
    case start
    /// The answer to the last `confirm` or `decide` action.
    case userDecision(UserDecision)
    /// The stage's run finished without error.
    case stageRunSucceeded(MigrationStage)
    /// The stage's run threw.
    case stageRunFailed(MigrationStage, StageFailure)
    /// The stage's gate was evaluated.
    case gateEvaluated(MigrationStage, [CheckResult])
    /// Undo every stage that ran (`pgha rollback`, or resuming an interrupted rollback).
    case rollbackRequested
    /// The stage's undo finished.
    case undoSucceeded(MigrationStage)
    /// The stage's undo threw.
    case undoFailed(MigrationStage, reason: String)
    /// SIGINT/SIGTERM or cancellation: stop at once (state is saved by the runner).
    case interrupted
}

/// What the runner must do next. Exactly one per event.
public enum EngineAction: Hashable, Sendable {
    /// Show the stage's plan and ask whether to run it; answer with `.userDecision`.
    case confirm(MigrationStage, options: [DecisionOption])
    /// Run the stage; answer with `.stageRunSucceeded` or `.stageRunFailed`.
    case runStage(MigrationStage, attempt: Int)
    /// Evaluate the stage's gate; answer with `.gateEvaluated`.
    case evaluateGate(MigrationStage)
    /// The stage failed; ask what to do; answer with `.userDecision`.
    case decide(MigrationStage, StageFailure, options: [DecisionOption])
    /// Undo the stage; answer with `.undoSucceeded` or `.undoFailed`.
    case undoStage(MigrationStage)
    /// The run is over.
    case finish(MigrationOutcome)
    /// The event does not fit the current state; nothing changed. The runner reports it as a bug
    /// (or as a state file edited by hand) instead of crashing.
    case invalidEvent(InvalidEngineEvent)
}

/// An event the engine refused, and the state it was in.
public struct InvalidEngineEvent: Hashable, Sendable, CustomStringConvertible {
    public var event: String
    public var state: String
    public var description: String { "event \(event) is not valid while \(state)" }
}
