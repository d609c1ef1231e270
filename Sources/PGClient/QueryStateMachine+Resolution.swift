/// How a statement ended, decided from what the machine saw once the results are over.
///
/// In this order: a stream the body stopped keeps the body's outcome (the connection is closed if
/// it could not be made idle); a timeout or task cancellation is reported as such when the server
/// confirmed it (57014, or no result at all, or any stream: rows were dropped), and closes the
/// connection when it did not; otherwise the statement ended on its own: a refused COPY, the first
/// error, no result, a COPY call whose statement was no COPY, or success.
extension QueryStateMachine {
    /// The end of the results was reached (and the cancel request, if any, is over or timed out).
    func resolve(connectionAlive alive: Bool, cancelConfirmed: Bool) -> Completion {
        switch ending {
        case .stopped(let reason, _):
            return Completion(outcome: reason == .requested ? .stopped : .bodyFailed, close: !alive || !cancelConfirmed)
        case .interrupted(let why):
            if !cancelConfirmed || !alive {
                if !alive, failure != nil {
                    return Completion(outcome: .serverError(connectionAlive: false, forceMayHaveRun: true), close: true)
                }
                return Completion(outcome: .interrupted(why, confirmed: false), close: true)
            }
            let cancelledByServer = failure?.cancelled ?? false
            if cancelledByServer || (failure == nil && (!hasResult || mode.streams)) {
                return Completion(outcome: .interrupted(why, confirmed: true), close: false)
            }
            // Otherwise the statement ended on its own (success or another error): report that.
        case .none:
            break
        }
        if let refusal, alive {
            // Checked before `failure`: refusing COPY FROM STDIN makes the server report 57014.
            return Completion(outcome: .refused(refusal), close: false)
        }
        if failure != nil {
            return Completion(outcome: .serverError(connectionAlive: alive, forceMayHaveRun: false), close: !alive)
        }
        guard hasResult else { return Completion(outcome: .noResult, close: !alive) }
        if mode.needsCopy && !copyStarted {
            return Completion(outcome: .refused(.notCopy), close: !alive)
        }
        return Completion(outcome: .succeeded, close: !alive)
    }
}
