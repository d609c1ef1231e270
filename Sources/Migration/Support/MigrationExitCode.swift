/// The exit codes of `pgha migrate`, `run`, `plan`, `status`, `rollback` and `resume`, in one place.
///
/// docs/MIGRATION_TO_HA.md lists them for operators and automation. Values never change meaning;
/// new outcomes get new numbers.
public enum MigrationExitCode: Int32, CaseIterable, Sendable, Codable {
    /// Every stage that was asked for passed (or `--until STAGE` was reached), or an explicit
    /// `pgha rollback` restored single-node mode.
    case success = 0
    /// An unexpected error (I/O, a bug); the message says what. State is saved when possible.
    case failure = 1
    /// Usage error in what the command reads: an invalid playbook, a missing `${VAR}`, a changed
    /// playbook (a malformed command line is argument-parser's exit 64).
    case usage = 2
    /// A stage or its gate failed and the run stopped (`on_failure: stop`, or the operator chose
    /// stop). Fix the cause and `pgha resume`.
    case stoppedOnFailure = 3
    /// A stage failed and the run rolled back every completed stage (`on_failure: rollback`).
    case rolledBack = 4
    /// The run stopped before a stage this version of pgha does not implement yet.
    case stageNotBuilt = 5
    /// Another runner holds the state directory's lock.
    case locked = 6
    /// The state file is missing, corrupt, or written by a newer pgha.
    case stateUnreadable = 7
    /// An undo step failed during rollback; the system may be partly migrated. Fix and
    /// `pgha rollback` again (undo steps are idempotent).
    case rollbackFailed = 8
    /// The operator declined a stage at its confirmation prompt.
    case declined = 9
    /// Interrupted by SIGINT/SIGTERM; state is saved, `pgha resume` continues.
    case interrupted = 130

    /// One line for `--help` and the docs.
    public var meaning: String {
        switch self {
        case .success: return "completed (or --until reached, or rollback done on request)"
        case .failure: return "unexpected error"
        case .usage: return "invalid playbook, unset ${VAR} or changed playbook"
        case .stoppedOnFailure: return "a stage or gate failed and the run stopped"
        case .rolledBack: return "a stage failed and the run rolled back"
        case .stageNotBuilt: return "stopped before a stage that is not built yet"
        case .locked: return "locked by another runner"
        case .stateUnreadable: return "state file missing, corrupt, or from a newer pgha"
        case .rollbackFailed: return "rollback failed; system may be partly migrated"
        case .declined: return "operator declined a stage"
        case .interrupted: return "interrupted; state saved, resume possible"
        }
    }
}
