import Foundation

/// A stage that only reads: `run` observes the world once and shows a summary, `gate` evaluates
/// those observations (a pure function) into checks, `undo` has nothing to do, and the plan lists
/// the checks with a warning for each credential the environment lacks. The prerequisites and
/// extensions stages are this skeleton with their own observation, summary and evaluation.
protocol CheckOnlyStage: MigrationStageExecutor {
    associatedtype Observations: Sendable
    /// Holds what `run` observed for the `gate` that follows it.
    var cache: ObservationCache<Observations> { get }
    /// Reads everything the checks need. Never throws: what cannot be read is recorded and
    /// fails its check.
    func observe(_ context: StageContext) async -> Observations
    /// When the observations were taken (the cache's age).
    func observedAt(_ observations: Observations) -> Date
    /// What `run` shows, one progress line each.
    func summary(_ observations: Observations, _ context: StageContext) -> [String]
    /// The checks, pure.
    func evaluate(_ observations: Observations, _ context: StageContext) -> [CheckResult]
    /// What the plan says will be checked.
    func checks(_ context: StageContext) -> [String]
}

extension CheckOnlyStage {
    public var makesChanges: Bool { false }

    public func plan(_ context: StageContext) async throws -> StagePlan {
        let missing = context.playbook.missingCredentials(in: context.environment).filter { $0.key != "target.api_password" }
        return StagePlan(
            stage: stage, makesChanges: false, checks: checks(context), changes: [],
            undo: ["nothing to undo: this stage only reads"],
            warnings: missing.map { "\($0.key) refers to \($0.reference), which is not set: the checks that need it will fail until it is exported" }
        )
    }

    public func run(_ context: StageContext) async throws {
        try context.checkCancellation()
        let observations = await observe(context)
        try context.checkCancellation()
        cache.store(observations, takenAt: observedAt(observations), playbook: context.playbook)
        for line in summary(observations, context) { context.progress(line) }
    }

    public func gate(_ context: StageContext) async throws -> [CheckResult] {
        let observations: Observations
        if let cached = cache.take(now: context.clock.now(), playbook: context.playbook) {
            observations = cached
        } else {
            observations = await observe(context)
        }
        return evaluate(observations, context).map { $0.redacted(by: context.redactor) }
    }

    public func undo(_ context: StageContext) async throws {
        context.progress("nothing to undo: the \(stage.rawValue) stage changed nothing")
    }
}
