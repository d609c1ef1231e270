/// Answers the engine's questions: run this stage? what now that it failed?
///
/// The CLI implements an interactive decider for `pgha migrate` (show the plan and diffs, ask before
/// every change, offer retry / skip with confirmation / rollback / stop on failure). `pgha run`
/// uses `NonInteractiveDecider`. A decider must return one of the offered options; anything else is
/// treated as `.stop`.
public protocol MigrationDecider: Sendable {
    /// Before running `stage`: usually `.proceed`, `.skip(reason:)` or `.stop`.
    func confirm(_ stage: MigrationStage, plan: StagePlan, options: [DecisionOption]) async -> UserDecision
    /// After `stage` failed: usually `.retry`, `.skip(reason:)`, `.rollback` or `.stop`.
    func decide(_ stage: MigrationStage, failure: StageFailure, options: [DecisionOption]) async -> UserDecision
}

/// The decider of `pgha run PLAYBOOK`: proceeds with every stage; on failure applies the playbook's
/// `on_failure` (rollback when it is offered, i.e. once something was changed; stop otherwise).
/// Never retries and never skips: automation must not guess.
public struct NonInteractiveDecider: MigrationDecider {
    public var onFailure: Playbook.OnFailure

    public init(onFailure: Playbook.OnFailure) {
        self.onFailure = onFailure
    }

    public func confirm(_ stage: MigrationStage, plan: StagePlan, options: [DecisionOption]) async -> UserDecision {
        .proceed
    }

    public func decide(_ stage: MigrationStage, failure: StageFailure, options: [DecisionOption]) async -> UserDecision {
        switch onFailure {
        case .rollback: return options.contains(.rollback) ? .rollback : .stop
        case .stop: return .stop
        }
    }
}
