/// How a run of the stage engine ended.
public enum MigrationOutcome: Hashable, Sendable, CustomStringConvertible {
    /// Every stage passed or was skipped.
    case completed
    /// `--until STAGE` was reached: that stage passed (or was skipped) and the run stopped as asked.
    case reachedUntil(MigrationStage)
    /// The next stage is not built in this version of pgha; the run stopped before it.
    case stoppedBeforeUnbuiltStage(MigrationStage)
    /// A stage or its gate failed and the run stopped (operator's choice or `on_failure: stop`).
    case stoppedAfterFailure(MigrationStage)
    /// The operator declined to run a stage.
    case declined(MigrationStage)
    /// Every stage that had run was undone. `requested` is true for an explicit `pgha rollback`,
    /// false when the run rolled back after a failure.
    case rolledBack(requested: Bool)
    /// Undoing a stage failed; stages before it are still in place.
    case rollbackFailed(MigrationStage)
    /// SIGINT/SIGTERM or cancellation; the stage that was current, if any.
    case interrupted(MigrationStage?)

    /// The exit code a command returns for this outcome.
    public var exitCode: MigrationExitCode {
        switch self {
        case .completed, .reachedUntil: return .success
        case .stoppedBeforeUnbuiltStage: return .stageNotBuilt
        case .stoppedAfterFailure: return .stoppedOnFailure
        case .declined: return .declined
        case .rolledBack(let requested): return requested ? .success : .rolledBack
        case .rollbackFailed: return .rollbackFailed
        case .interrupted: return .interrupted
        }
    }

    /// One short identifier, for JSON: `completed`, `reached-until`, `stopped-before-unbuilt-stage`,
    /// `stopped-after-failure`, `declined`, `rolled-back`, `rollback-failed`, `interrupted`.
    public var kind: String {
        switch self {
        case .completed: return "completed"
        case .reachedUntil: return "reached-until"
        case .stoppedBeforeUnbuiltStage: return "stopped-before-unbuilt-stage"
        case .stoppedAfterFailure: return "stopped-after-failure"
        case .declined: return "declined"
        case .rolledBack: return "rolled-back"
        case .rollbackFailed: return "rollback-failed"
        case .interrupted: return "interrupted"
        }
    }

    /// The stage the outcome is about, if any.
    public var stage: MigrationStage? {
        switch self {
        case .completed, .rolledBack: return nil
        case .reachedUntil(let s), .stoppedBeforeUnbuiltStage(let s), .stoppedAfterFailure(let s),
             .declined(let s), .rollbackFailed(let s):
            return s
        case .interrupted(let s): return s
        }
    }

    /// A sentence for people.
    public var description: String {
        switch self {
        case .completed:
            return "Migration complete: every stage passed."
        case .reachedUntil(let stage):
            return "Stopped after stage '\(stage)' as requested (--until). Continue with `pgha resume`."
        case .stoppedBeforeUnbuiltStage(let stage):
            return "Stopped before stage '\(stage)': this version of pgha cannot run it for this playbook (why: below). Everything before it is done and saved; nothing was faked."
        case .stoppedAfterFailure(let stage):
            return "Stage '\(stage)' failed and the run stopped. Fix the cause, then `pgha resume` (or `pgha rollback`)."
        case .declined(let stage):
            return "Stopped before stage '\(stage)' at the operator's request. `pgha resume` continues from there."
        case .rolledBack(let requested):
            return requested
                ? "Rolled back: every stage that had run was undone; the application stays in single-node mode."
                : "A stage failed and the run rolled back: every stage that had run was undone; the application stays in single-node mode."
        case .rollbackFailed(let stage):
            return "Rollback failed while undoing stage '\(stage)'. Fix the cause and run `pgha rollback` again (undo steps are idempotent)."
        case .interrupted(let stage):
            let at = stage.map { " during stage '\($0)'" } ?? ""
            return "Interrupted\(at). State is saved; `pgha resume` continues from the last completed step."
        }
    }
}

extension MigrationOutcome: Codable {
    private enum CodingKeys: String, CodingKey { case kind, stage, requested }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(String.self, forKey: .kind)
        let stage = try c.decodeIfPresent(MigrationStage.self, forKey: .stage)
        func required() throws -> MigrationStage {
            guard let stage else {
                throw DecodingError.keyNotFound(CodingKeys.stage, .init(codingPath: c.codingPath, debugDescription: "outcome \(kind) needs a stage"))
            }
            return stage
        }
        switch kind {
        case "completed": self = .completed
        case "reached-until": self = .reachedUntil(try required())
        case "stopped-before-unbuilt-stage": self = .stoppedBeforeUnbuiltStage(try required())
        case "stopped-after-failure": self = .stoppedAfterFailure(try required())
        case "declined": self = .declined(try required())
        case "rolled-back": self = .rolledBack(requested: try c.decodeIfPresent(Bool.self, forKey: .requested) ?? false)
        case "rollback-failed": self = .rollbackFailed(try required())
        case "interrupted": self = .interrupted(stage)
        default:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown outcome \"\(kind)\"")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        try c.encodeIfPresent(stage, forKey: .stage)
        if case .rolledBack(let requested) = self { try c.encode(requested, forKey: .requested) }
    }
}
