/// The values `QueryStateMachine` takes and gives: how a statement is consumed, the events (each the
/// outcome of one action), the actions and the completion.
extension QueryStateMachine {
    /// Where the statement stands. Each non-final state answers the action it last returned.
    enum Phase: Hashable, Sendable {
        /// PQflush until the statement (or the end of a COPY IN) is on the wire, then collect.
        case flushing
        /// PQisBusy / PQgetResult until NULL.
        case collecting
        /// PQgetCopyData until the data ends; `deliver`: it goes to the body (else discarded).
        case copyingOut(deliver: Bool)
        /// The COPY IN body runs (between writes); `writeFailed`: a write failed, later ones fail too.
        case copyingIn(writeFailed: Bool)
        /// One write of the body: PQputCopyData until libpq takes the chunk.
        case writing
        /// PQflush until the written chunk is on the wire (so that libpq's buffer stays small), then
        /// back to the body.
        case flushingWrite
        /// PQputCopyEnd (with an error message unless `.done`), then flushing.
        case endingCopy(CopyEndReason)
    }

    enum State: Hashable, Sendable {
        /// The executor sends the statement and reports `sent` or `sendFailed`.
        /// Can transition to: `.running(.flushing)`, `.finished`.
        case sending
        /// The phase's own action (flush, readResult, readCopyData, runCopyInBody, putCopyData,
        /// putCopyEnd) is out. Can transition to: any state.
        case running(Phase)
        /// poll() is out for the phase. Can transition to: `.consuming`, `.startingCancel`,
        /// `.finished` (the grace period passed).
        case waiting(Phase)
        /// PQconsumeInput is out, after a wait. Can transition to: `.running`, `.finished`.
        case consuming(Phase)
        /// keepResult or discardResult is out. Can transition to: `.running`.
        case disposing(Phase)
        /// The body has a row or a COPY chunk. Can transition to: `.running`, `.startingCancel`.
        case delivering(Phase)
        /// sendCancel is out. Can transition to: `.running`.
        case startingCancel(Phase)
        /// The results are over; waiting for the cancel request to end.
        /// Can transition to: `.finished`.
        case awaitingCancel(connectionAlive: Bool)
        /// The statement is over. Can transition to: nothing (every event is invalid).
        case finished
    }

    /// What the machine remembers of the first error result.
    struct FailureSeen: Hashable, Sendable {
        /// It carried a SQLSTATE (the server sent it; libpq's own errors have none).
        var hasSQLState: Bool
        /// The SQLSTATE was 57014 (query_canceled): our cancel, or a CopyFail, took effect.
        var cancelled: Bool
    }

    /// How the statement's results are consumed.
    enum Mode: Hashable, Sendable {
        /// Collect the results: the last successful one is returned, the first error thrown (`query`).
        case collect
        /// libpq's single-row mode: each row goes to the body as it arrives (`forEachRow`).
        case rows
        /// `COPY ... TO STDOUT`: each data row goes to the body (`copyOut`).
        case copyOut
        /// `COPY ... FROM STDIN`: the body writes the data (`copyIn`).
        case copyIn

        /// Rows or COPY data reach the caller as they arrive: after an interruption some were
        /// dropped, so the statement can no longer succeed.
        var streams: Bool {
            switch self {
            case .rows, .copyOut: true
            case .collect, .copyIn: false
            }
        }

        /// The statement must be a COPY of this mode's direction.
        var needsCopy: Bool {
            switch self {
            case .copyOut, .copyIn: true
            case .collect, .rows: false
            }
        }
    }

    /// What stopping a stream early does with the rest of the statement.
    enum StopPolicy: Hashable, Sendable {
        /// Cancel it on the server (PQcancel): the connection is idle again at once. Used outside a
        /// transaction block.
        case cancel
        /// Read and discard the rest: inside a transaction block, where a cancel would abort the
        /// transaction.
        case drain
    }

    /// Why a running statement is cancelled on the server.
    enum Interruption: Hashable, Sendable {
        /// The statement's deadline passed.
        case timeout
        /// The Swift task running it was cancelled.
        case taskCancelled
    }

    /// Why a stream's body ended it early.
    enum StopReason: Hashable, Sendable {
        /// The body returned `.stop`: the rows delivered stand.
        case requested
        /// The body threw: its error is rethrown.
        case bodyThrew
    }

    /// Whether and why the statement is being ended before its natural end.
    enum Ending: Hashable, Sendable {
        /// Running to its end.
        case none
        /// The body stopped a stream; the rest was cancelled with PQcancel (`cancelled`) or is
        /// being drained. A timeout or task cancellation during the drain cancels it too.
        case stopped(StopReason, cancelled: Bool)
        /// A timeout or task cancellation: PQcancel was sent.
        case interrupted(Interruption)

        /// True once PQcancel was sent: the deadline is then the grace period's.
        var cancelSent: Bool {
            switch self {
            case .none: false
            case .stopped(_, let cancelled): cancelled
            case .interrupted: true
            }
        }
    }

    /// What poll() waits for.
    enum Interest: Hashable, Sendable {
        /// POLLIN.
        case read
        /// POLLIN | POLLOUT: sending, while reading what the server says meanwhile.
        case readWrite
    }

    /// Where a result just read is kept until the end of the statement.
    enum ResultSlot: Hashable, Sendable {
        /// The last successful result (replacing, and clearing, an earlier one).
        case last
        /// The first error result.
        case error
    }

    /// A result's status (PQresultStatus), as far as the machine cares.
    enum ResultKind: Hashable, Sendable {
        /// PGRES_TUPLES_OK (in single-row mode: the end of a statement's rows).
        case tuples
        /// PGRES_COMMAND_OK.
        case command
        /// PGRES_EMPTY_QUERY.
        case emptyQuery
        /// PGRES_SINGLE_TUPLE: one row in single-row mode.
        case singleRow
        /// PGRES_FATAL_ERROR with its SQLSTATE (nil for errors generated by libpq).
        case error(sqlState: String?)
        /// PGRES_COPY_IN: the server waits for COPY data.
        case copyIn
        /// PGRES_COPY_OUT: COPY data follows (PQgetCopyData).
        case copyOut
        /// Anything else (COPY_BOTH, BAD_RESPONSE, NONFATAL_ERROR, pipeline states), with its status
        /// code: nothing sensible can follow on this connection.
        case other(status: UInt32)
    }

    /// PQflush: 0, 1, or -1 (with PQstatus == CONNECTION_BAD or not).
    enum FlushOutcome: Hashable, Sendable {
        case done, pending
        case failed(connectionBad: Bool)
    }

    /// PQconsumeInput: 1, or 0 (with PQstatus == CONNECTION_BAD or not).
    enum InputOutcome: Hashable, Sendable {
        case consumed
        case failed(connectionBad: Bool)
    }

    /// `readResult`: PQisBusy was true (`busy`), or PQgetResult returned a result or NULL (`end`,
    /// with PQstatus == CONNECTION_OK or not).
    enum ReadOutcome: Hashable, Sendable {
        case busy
        case result(ResultKind)
        case end(connectionAlive: Bool)
    }

    /// PQgetCopyData in async mode: a row (> 0), nothing yet (0), or the end of the data (-1, or -2
    /// for an error that the next PQgetResult reports).
    enum CopyDataOutcome: Hashable, Sendable {
        case chunk, wouldBlock, ended
    }

    /// PQputCopyData / PQputCopyEnd: queued (1), no buffer space yet (0), failed (-1).
    enum PutOutcome: Hashable, Sendable {
        case queued, wouldBlock, failed
    }

    /// How the body of `forEachRow` or `copyOut` came back from one row or chunk.
    enum BodyOutcome: Hashable, Sendable {
        /// It wants the next one.
        case next
        /// It wants no more.
        case stop
        /// It threw.
        case threw
    }

    /// How the body of `copyIn` ended.
    enum CopyInBodyOutcome: Hashable, Sendable {
        case finished, threw
    }

    /// How a COPY IN is ended: PQputCopyEnd with no error message (`done`: the server commits the
    /// data) or with one (the server fails the statement with 57014 and keeps nothing).
    enum CopyEndReason: Hashable, Sendable {
        /// Every write succeeded and the body finished.
        case done
        /// This call does not stream COPY FROM STDIN (or already ran its body once).
        case refused
        /// The body threw.
        case aborted
        /// A timeout or task cancellation.
        case interrupted
        /// A write failed.
        case writeFailed
    }

    /// What one write of a COPY IN body came to.
    enum WriteOutcome: Hashable, Sendable {
        /// libpq took the data and sent it (or the kernel buffers it).
        case written
        /// The statement was interrupted (now or by an earlier write); stop writing.
        case interrupted(Interruption)
        /// PQputCopyData failed (now or earlier); stop writing.
        case failed
    }

    /// A statement this call does not handle.
    enum Refusal: Hashable, Sendable {
        /// COPY FROM STDIN where the call does not stream it (drained by ending it with an error).
        case copyIn
        /// COPY TO STDOUT where the call does not stream it (its data is read and discarded).
        case copyOut
        /// `copyOut` / `copyIn` with a statement that is not a COPY of that direction.
        case notCopy
    }

    /// Something that happened: the outcome of the last action.
    enum Event: Hashable, Sendable {
        /// PQsendQuery(Params) (and PQsetSingleRowMode) succeeded.
        case sent
        /// PQsendQuery(Params) returned 0; `connectionBad`: PQstatus is CONNECTION_BAD.
        case sendFailed(connectionBad: Bool)
        /// The outcome of `flush`.
        case flushed(FlushOutcome)
        /// `wait`: the socket is ready.
        case readable
        /// `wait`: the task was cancelled (the wake-up channel fired for this statement).
        case woken(now: UInt64)
        /// `wait` or `awaitCancel`: the deadline passed; `now` on the monotonic clock.
        case deadlinePassed(now: UInt64)
        /// The outcome of `consumeInput`.
        case inputConsumed(InputOutcome)
        /// The outcome of `readResult`.
        case resultRead(ReadOutcome)
        /// `keepResult`, `discardResult` or `sendCancel` is done.
        case done
        /// The body came back from the row or chunk; `now` on the monotonic clock;
        /// `cancelRequested`: the task was cancelled meanwhile.
        case bodyReturned(BodyOutcome, now: UInt64, cancelRequested: Bool)
        /// The outcome of `readCopyData`.
        case copyData(CopyDataOutcome)
        /// The COPY IN body called `write`; `now` on the monotonic clock; `cancelRequested`: the task
        /// was cancelled meanwhile.
        case writeRequested(now: UInt64, cancelRequested: Bool)
        /// The outcome of `putCopyData` or `putCopyEnd`.
        case put(PutOutcome)
        /// The COPY IN body returned or threw.
        case copyInBodyReturned(CopyInBodyOutcome)
        /// `awaitCancel`: the cancel request is over.
        case cancelFinished
    }

    /// What the executor must do next. Each is answered by the event named.
    enum Action: Hashable, Sendable {
        /// PQflush. Answer: `flushed`.
        case flush
        /// poll() the socket for `interest` until `until` (`Deadline.none`: no limit), and the
        /// wake-up channel when `wake`. Answer: `readable`, `woken` or `deadlinePassed`.
        case wait(Interest, until: Deadline, wake: Bool)
        /// PQconsumeInput. Answer: `inputConsumed`.
        case consumeInput
        /// PQisBusy, and PQgetResult when it is false. Answer: `resultRead`.
        case readResult
        /// Keep the result just read in `slot` (clearing what was there). Answer: `done`.
        case keepResult(ResultSlot)
        /// PQclear the result just read. Answer: `done`.
        case discardResult
        /// Hand the single-row result just read to the body, then PQclear it. Answer: `bodyReturned`.
        case deliverRow
        /// PQgetCopyData (async), after freeing the previous row. Answer: `copyData`.
        case readCopyData
        /// Hand the COPY row just read to the body. Answer: `bodyReturned`.
        case deliverCopyData
        /// Run the COPY IN body; its writes answer `writeRequested`, its end `copyInBodyReturned`.
        case runCopyInBody
        /// PQputCopyData with the chunk being written. Answer: `put`.
        case putCopyData
        /// Return from the body's `write` with this outcome. Answer: the body's next `writeRequested`
        /// or its `copyInBodyReturned`.
        case writeFinished(WriteOutcome)
        /// PQputCopyEnd, with an error message unless `.done`. Answer: `put`.
        case putCopyEnd(CopyEndReason)
        /// Start the PQcancel request (on another thread). Answer: `done`.
        case sendCancel
        /// Wait until the cancel request is over, at most until `until`. Answer: `cancelFinished`
        /// or `deadlinePassed`.
        case awaitCancel(until: Deadline)
        /// The statement is over.
        case finish(Completion)
        /// The event does not fit the state; nothing changed. The executor cannot know where libpq
        /// stands: it closes the connection and reports an internal error (never re-run).
        case invalidEvent(InvalidEvent)
    }

    /// How the statement ended, and whether the connection must be closed.
    struct Completion: Hashable, Sendable {
        enum Outcome: Hashable, Sendable {
            /// It ran to its end: `query` returns the last result, streams their count.
            case succeeded
            /// The body stopped the stream: the rows delivered stand (their count is returned).
            case stopped
            /// The body threw: its error is rethrown.
            case bodyFailed
            /// The first error result is the answer, classified with `connectionAlive`;
            /// `forceMayHaveRun`: report `statementMayHaveRun` whatever the code says.
            case serverError(connectionAlive: Bool, forceMayHaveRun: Bool)
            /// A timeout or task cancellation; `confirmed`: the server ended the statement within
            /// the grace period (the connection is usable).
            case interrupted(Interruption, confirmed: Bool)
            /// The connection broke (PQerrorMessage), with whether the statement may have run.
            case connectionBroken(mayHaveRun: Bool)
            /// libpq refused to send on a live connection (PQerrorMessage).
            case sendRejected
            /// A result status nothing sensible can follow.
            case unexpectedStatus(ResultKind)
            /// A statement this call does not handle.
            case refused(Refusal)
            /// The statement produced no result at all.
            case noResult
        }

        var outcome: Outcome
        /// The connection is unusable (broken, or a cancel was not confirmed): close it.
        var close: Bool
    }

    /// An event that did not fit, and the state it met.
    struct InvalidEvent: Hashable, Sendable, CustomStringConvertible {
        var event: Event
        var state: State
        var description: String { "event \(event) is not valid while \(state)" }
    }
}
