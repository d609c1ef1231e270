/// The lifecycle of one statement on a libpq connection, as a value: an event in, one action out.
///
/// No I/O, no clock, no lock. `StatementRun` performs the actions (PQflush, poll(), PQconsumeInput,
/// PQisBusy/PQgetResult, PQgetCopyData, PQputCopyData/PQputCopyEnd, PQcancel) and feeds their
/// outcomes back as events; time comes in with the events that need it (`now`, monotonic
/// nanoseconds), deadlines go out with the waits.
///
/// The path of a statement: sent → flushing (PQflush until it is on the wire, reading meanwhile) →
/// collecting (PQisBusy/PQgetResult until NULL, waiting for input), with side trips for single
/// rows (to the body), COPY OUT data (to the body, or discarded) and COPY IN (the body writes;
/// refused COPYs are ended with an error). At the end it resolves the outcome from what it saw.
///
/// **Deadline and cancellation.** When the deadline passes, or the task is cancelled (`woken`), the
/// machine asks for PQcancel (`sendCancel`), stops watching the wake-up channel, gives the server
/// `gracePeriod` to end the statement and, at the end of the results, waits for the cancel request
/// to be over (`awaitCancel`) so that it can never hit a later statement. A grace period that passes
/// closes the connection. A stream's body that stops early ends the rest the same way
/// (`StopPolicy.cancel`) or by draining it (`.drain`, inside a transaction block).
///
/// **Invalid events** (an outcome that does not answer the last action) return `.invalidEvent` and
/// change nothing; the executor then closes the connection and reports an internal error.
struct QueryStateMachine: Hashable, Sendable {
    let mode: Mode
    let stopPolicy: StopPolicy
    /// How long the server gets to end the statement after PQcancel (nanoseconds).
    let gracePeriod: UInt64
    /// Whether waits watch the wake-up channel (async calls, until a cancel is sent).
    let watchesWake: Bool

    private(set) var state: State = .sending
    /// The statement's deadline, or the grace period's once PQcancel was sent.
    private(set) var deadline: Deadline
    private(set) var ending: Ending = .none
    /// The first error result, if any.
    private(set) var failure: FailureSeen?
    /// A successful result is kept in the `.last` slot.
    private(set) var hasResult = false
    private(set) var refusal: Refusal?
    /// A COPY of the mode's direction started.
    private(set) var copyStarted = false
    /// Rows or COPY chunks handed to the body.
    private(set) var delivered = 0

    init(mode: Mode, stopPolicy: StopPolicy = .cancel, deadline: Deadline, gracePeriod: UInt64, watchesWake: Bool) {
        self.mode = mode
        self.stopPolicy = stopPolicy
        self.deadline = deadline
        self.gracePeriod = gracePeriod
        self.watchesWake = watchesWake
    }

    /// Feeds the outcome of the last action; returns the next one.
    mutating func event(_ event: Event) -> Action {
        switch state {
        case .sending:
            switch event {
            case .sent:
                return resume(.flushing)
            case .sendFailed(let bad):
                return finish(bad ? .connectionBroken(mayHaveRun: false) : .sendRejected, close: bad)
            case .flushed, .readable, .woken, .deadlinePassed, .inputConsumed, .resultRead, .done, .bodyReturned,
                .copyData, .writeRequested, .put, .copyInBodyReturned, .cancelFinished:
                return invalid(event)
            }

        case .running(let phase):
            return running(phase, event)

        case .waiting(let phase):
            switch event {
            case .readable:
                state = .consuming(phase)
                return .consumeInput
            case .deadlinePassed(let now):
                switch ending {
                case .none, .stopped(_, cancelled: false):
                    return interrupt(.timeout, now: now, phase, event)
                case .stopped(let reason, cancelled: true):
                    // The grace period after PQcancel passed without the server ending the statement.
                    return finish(reason == .requested ? .stopped : .bodyFailed, close: true)
                case .interrupted(let why):
                    return finish(.interrupted(why, confirmed: false), close: true)
                }
            case .woken(let now):
                guard wakeWatched else { return invalid(event) }
                return interrupt(.taskCancelled, now: now, phase, event)
            case .sent, .sendFailed, .flushed, .inputConsumed, .resultRead, .done, .bodyReturned, .copyData,
                .writeRequested, .put, .copyInBodyReturned, .cancelFinished:
                return invalid(event)
            }

        case .consuming(let phase):
            switch event {
            case .inputConsumed(.consumed):
                return resume(phase)
            case .inputConsumed(.failed(let bad)):
                return inputFailed(phase, connectionBad: bad)
            case .sent, .sendFailed, .flushed, .readable, .woken, .deadlinePassed, .resultRead, .done,
                .bodyReturned, .copyData, .writeRequested, .put, .copyInBodyReturned, .cancelFinished:
                return invalid(event)
            }

        case .disposing(let phase):
            switch event {
            case .done:
                return resume(phase)
            case .sent, .sendFailed, .flushed, .readable, .woken, .deadlinePassed, .inputConsumed, .resultRead,
                .bodyReturned, .copyData, .writeRequested, .put, .copyInBodyReturned, .cancelFinished:
                return invalid(event)
            }

        case .delivering(let phase):
            switch event {
            case .bodyReturned(let outcome, let now, let cancelRequested):
                return bodyReturned(outcome, now: now, cancelRequested: cancelRequested, phase)
            case .sent, .sendFailed, .flushed, .readable, .woken, .deadlinePassed, .inputConsumed, .resultRead,
                .done, .copyData, .writeRequested, .put, .copyInBodyReturned, .cancelFinished:
                return invalid(event)
            }

        case .startingCancel(let phase):
            switch event {
            case .done:
                switch phase {
                case .writing, .flushingWrite, .copyingIn:
                    // The body's write gives up; the COPY is ended with an error once the body returns.
                    guard case .interrupted(let why) = ending else { return invalid(event) }
                    state = .running(.copyingIn(writeFailed: false))
                    return .writeFinished(.interrupted(why))
                case .endingCopy(.done):
                    // Never let the server commit a COPY that timed out or was cancelled.
                    return resume(.endingCopy(.interrupted))
                case .flushing, .collecting, .copyingOut, .endingCopy:
                    return resume(phase)
                }
            case .sent, .sendFailed, .flushed, .readable, .woken, .deadlinePassed, .inputConsumed, .resultRead,
                .bodyReturned, .copyData, .writeRequested, .put, .copyInBodyReturned, .cancelFinished:
                return invalid(event)
            }

        case .awaitingCancel(let alive):
            switch event {
            case .cancelFinished:
                return finish(resolve(connectionAlive: alive, cancelConfirmed: true))
            case .deadlinePassed:
                return finish(resolve(connectionAlive: alive, cancelConfirmed: false))
            case .sent, .sendFailed, .flushed, .readable, .woken, .inputConsumed, .resultRead, .done,
                .bodyReturned, .copyData, .writeRequested, .put, .copyInBodyReturned:
                return invalid(event)
            }

        case .finished:
            return invalid(event)
        }
    }

    // MARK: - The phases' own actions

    private mutating func running(_ phase: Phase, _ event: Event) -> Action {
        switch (phase, event) {
        case (.flushing, .flushed(.done)):
            return resume(.collecting)
        case (.flushing, .flushed(.pending)), (.flushingWrite, .flushed(.pending)):
            return wait(phase, .readWrite)
        case (.flushing, .flushed(.failed(let bad))):
            // When the server closed the connection libpq has marked it CONNECTION_BAD: PQgetResult
            // then reports the error (with the server's last message, e.g. 57P01) without waiting.
            return bad ? resume(.collecting) : connectionLost()
        case (.flushingWrite, .flushed(.done)):
            state = .running(.copyingIn(writeFailed: false))
            return .writeFinished(.written)
        case (.flushingWrite, .flushed(.failed)):
            return writeFailed()

        case (.collecting, .resultRead(.busy)):
            return wait(.collecting, .read)
        case (.collecting, .resultRead(.result(let kind))):
            return resultArrived(kind)
        case (.collecting, .resultRead(.end(let alive))):
            if ending.cancelSent {
                // Make sure our cancel request is over before anyone can send another statement.
                state = .awaitingCancel(connectionAlive: alive)
                return .awaitCancel(until: deadline)
            }
            return finish(resolve(connectionAlive: alive, cancelConfirmed: true))

        case (.copyingOut(let deliver), .copyData(.chunk)):
            guard deliver, ending == .none else { return .readCopyData }  // discarded
            state = .delivering(phase)
            return .deliverCopyData
        case (.copyingOut, .copyData(.wouldBlock)):
            return wait(phase, .read)
        case (.copyingOut, .copyData(.ended)):
            return resume(.collecting)  // the COPY's own result (or error) follows

        case (.copyingIn(let writeFailed), .writeRequested(let now, let cancelRequested)):
            if case .interrupted(let why) = ending { return .writeFinished(.interrupted(why)) }
            if writeFailed { return .writeFinished(.failed) }
            // Checked at every write: a fast writer may never wait for the socket.
            if deadline.hasPassed(at: now) { return interrupt(.timeout, now: now, phase, event) }
            if cancelRequested && wakeWatched { return interrupt(.taskCancelled, now: now, phase, event) }
            return resume(.writing)
        case (.copyingIn(let writeFailed), .copyInBodyReturned(let outcome)):
            let reason: CopyEndReason
            if case .interrupted = ending {
                reason = .interrupted
            } else if writeFailed {
                reason = .writeFailed  // what the body threw is most likely our write error
            } else if outcome == .threw {
                ending = .stopped(.bodyThrew, cancelled: false)
                reason = .aborted
            } else {
                reason = .done
            }
            return resume(.endingCopy(reason))

        case (.writing, .put(.queued)):
            return resume(.flushingWrite)
        case (.writing, .put(.wouldBlock)), (.endingCopy, .put(.wouldBlock)):
            return wait(phase, .readWrite)
        case (.writing, .put(.failed)):
            return writeFailed()
        case (.endingCopy, .put(.queued)):
            return resume(.flushing)
        case (.endingCopy, .put(.failed)):
            return resume(.collecting)  // PQgetResult reports why

        case (.flushing, _), (.flushingWrite, _), (.collecting, _), (.copyingOut, _), (.copyingIn, _),
            (.writing, _), (.endingCopy, _):
            return invalid(event)
        }
    }

    /// Enters `phase` and returns its own action.
    private mutating func resume(_ phase: Phase) -> Action {
        state = .running(phase)
        switch phase {
        case .flushing, .flushingWrite: return .flush
        case .collecting: return .readResult
        case .copyingOut: return .readCopyData
        case .copyingIn: return .runCopyInBody
        case .writing: return .putCopyData
        case .endingCopy(let reason): return .putCopyEnd(reason)
        }
    }

    private var wakeWatched: Bool { watchesWake && !ending.cancelSent }

    private mutating func wait(_ phase: Phase, _ interest: Interest) -> Action {
        state = .waiting(phase)
        return .wait(interest, until: deadline, wake: wakeWatched)
    }

    // MARK: - Results

    private mutating func resultArrived(_ kind: ResultKind) -> Action {
        switch kind {
        case .tuples, .command, .emptyQuery:
            hasResult = true
            state = .disposing(.collecting)
            return .keepResult(.last)
        case .singleRow:
            guard mode == .rows else { return finish(.unexpectedStatus(kind), close: true) }
            guard ending == .none else {
                state = .disposing(.collecting)
                return .discardResult
            }
            state = .delivering(.collecting)
            return .deliverRow
        case .error(let sqlState):
            state = .disposing(.collecting)
            guard failure == nil else { return .discardResult }
            failure = FailureSeen(hasSQLState: sqlState != nil, cancelled: sqlState == "57014")
            return .keepResult(.error)
        case .copyOut:
            let deliver = mode == .copyOut
            if deliver {
                copyStarted = true
            } else if refusal == nil {
                refusal = .copyOut
            }
            state = .disposing(.copyingOut(deliver: deliver))
            return .discardResult
        case .copyIn:
            let next: Phase
            if mode == .copyIn && !copyStarted {
                copyStarted = true
                next = ending == .none ? .copyingIn(writeFailed: false) : .endingCopy(.interrupted)
            } else {
                // Ended with an error message: the server then fails the statement with 57014.
                if refusal == nil { refusal = .copyIn }
                next = .endingCopy(.refused)
            }
            state = .disposing(next)
            return .discardResult
        case .other:
            return finish(.unexpectedStatus(kind), close: true)
        }
    }

    private mutating func bodyReturned(_ outcome: BodyOutcome, now: UInt64, cancelRequested: Bool, _ phase: Phase)
        -> Action
    {
        delivered += 1
        switch outcome {
        case .next:
            let event = Event.bodyReturned(outcome, now: now, cancelRequested: cancelRequested)
            if deadline.hasPassed(at: now) { return interrupt(.timeout, now: now, phase, event) }
            if cancelRequested && wakeWatched { return interrupt(.taskCancelled, now: now, phase, event) }
            return resume(phase)
        case .stop, .threw:
            let reason: StopReason = outcome == .stop ? .requested : .bodyThrew
            switch stopPolicy {
            case .cancel:
                ending = .stopped(reason, cancelled: true)
                deadline = Deadline.at(now, plus: gracePeriod)
                state = .startingCancel(phase)
                return .sendCancel
            case .drain:
                ending = .stopped(reason, cancelled: false)
                return resume(phase)
            }
        }
    }

    // MARK: - Interruptions and failures

    /// The deadline passed or the task was cancelled: PQcancel, then the grace period.
    private mutating func interrupt(_ why: Interruption, now: UInt64, _ phase: Phase, _ event: Event) -> Action {
        switch ending {
        case .none:
            ending = .interrupted(why)
        case .stopped(let reason, cancelled: false):
            ending = .stopped(reason, cancelled: true)  // the drain is cut short
        case .stopped(_, cancelled: true), .interrupted:
            return invalid(event)  // a cancel is already out
        }
        deadline = Deadline.at(now, plus: gracePeriod)
        state = .startingCancel(phase)
        return .sendCancel
    }

    private mutating func inputFailed(_ phase: Phase, connectionBad: Bool) -> Action {
        switch phase {
        case .flushing, .collecting:
            return connectionBad ? resume(.collecting) : connectionLost()
        case .copyingOut, .endingCopy:
            return resume(.collecting)  // PQgetResult reports it
        case .writing, .flushingWrite:
            return writeFailed()
        case .copyingIn:
            return invalid(.inputConsumed(.failed(connectionBad: connectionBad)))
        }
    }

    private mutating func writeFailed() -> Action {
        state = .running(.copyingIn(writeFailed: true))
        return .writeFinished(.failed)
    }

    /// PQconsumeInput or PQflush failed without libpq marking the connection bad.
    private mutating func connectionLost() -> Action {
        if case .stopped(let reason, _) = ending {
            return finish(reason == .requested ? .stopped : .bodyFailed, close: true)
        }
        if let failure, failure.hasSQLState {
            // The server said why (e.g. 57P01 admin shutdown) before the connection ended.
            return finish(.serverError(connectionAlive: false, forceMayHaveRun: true), close: true)
        }
        return finish(.connectionBroken(mayHaveRun: true), close: true)
    }

    private mutating func finish(_ outcome: Completion.Outcome, close: Bool) -> Action {
        finish(Completion(outcome: outcome, close: close))
    }

    private mutating func finish(_ completion: Completion) -> Action {
        state = .finished
        return .finish(completion)
    }

    private func invalid(_ event: Event) -> Action {
        .invalidEvent(InvalidEvent(event: event, state: state))
    }
}
