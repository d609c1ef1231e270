public import PGClient

/// Decides what a failure means for routing and whether the work may be re-run.
///
/// The rule that matters: **a statement whose outcome is unknown is never re-run automatically**
/// (the seed retried writes blindly, which duplicates them when a COMMIT succeeded but its answer
/// was lost). Re-running is allowed only when the server cannot have applied anything: the failure
/// happened while connecting or before the statement was sent, the server rejected it as read-only
/// (SQLSTATE 25006: we reached a demoted leader), or the work runs on a replica, or the caller
/// declared it idempotent.
public enum FailureDecision: Hashable, Sendable {
    /// Nothing was applied: try again (on the new leader if the node lost its role).
    case retry
    /// It may have been applied: surface `HAError.Code.outcomeUnknown`.
    case outcomeUnknown
    /// A real error (SQL error, wrong password, timeout): surface it as it is.
    case fail
}

public enum FailureClassifier {
    /// - Parameters:
    ///   - error: what libpq reported.
    ///   - rerunIsSafe: the work is idempotent or ran on a replica (cannot have written).
    /// - Returns: the decision, and whether the node should be reported failed to the topology tracker.
    public static func classify(_ error: PGError, rerunIsSafe: Bool) -> (decision: FailureDecision, nodeFailed: Bool) {
        if error.code == .authenticationFailed || error.code == .invalidConfiguration {
            return (.fail, false)
        }
        if error.sqlState == "25006" {
            // read_only_sql_transaction: the server refused the write; it is not (or no longer) the leader.
            return (.retry, true)
        }
        if error.code == .connectionFailed {
            return (.retry, true)
        }
        if error.isConnectionLevel {
            if !error.statementMayHaveRun || rerunIsSafe { return (.retry, true) }
            return (.outcomeUnknown, true)
        }
        return (.fail, false)
    }
}
