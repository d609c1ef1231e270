import Testing

@testable import PGClient

/// Streams (single rows, COPY OUT, COPY IN) and invalid events, as values.
@Suite("QueryStateMachine streaming")
struct QueryStateMachineStreamingTests {
    typealias T = QueryStateMachineTests
    typealias Machine = QueryStateMachine
    typealias Event = QueryStateMachine.Event
    typealias Action = QueryStateMachine.Action

    static let row: [(Event, Action)] = [
        (.resultRead(.result(.singleRow)), .deliverRow),
        (.bodyReturned(.next, now: 10, cancelRequested: false), .readResult),
    ]
    static let endOfRows: [(Event, Action)] = [(.resultRead(.result(.tuples)), .keepResult(.last)), (.done, .readResult)]

    // MARK: - Rows

    @Test("rows go to the body one by one; the final empty result ends the stream")
    func rows() {
        var m = T.machine(.rows)
        T.expect(&m, T.sendAndFlush + Self.row + Self.row + Self.endOfRows + [
            (.resultRead(.end(connectionAlive: true)), T.finish(.succeeded, close: false)),
        ])
        #expect(m.delivered == 2)
    }

    @Test("stop outside a transaction: cancel the rest, discard rows, wait for the cancel request")
    func stopCancels() {
        var m = T.machine(.rows)
        T.expect(&m, T.sendAndFlush + Self.row + [
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.stop, now: 50, cancelRequested: false), .sendCancel),
            (.done, .readResult),
            (.resultRead(.result(.singleRow)), .discardResult),
            (.done, .readResult),
            (.resultRead(.busy), .wait(.read, until: Deadline(nanoseconds: 150), wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .readResult),
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 150))),
            (.cancelFinished, T.finish(.stopped, close: false)),
        ])
        #expect(m.delivered == 2)
    }

    @Test("stop inside a transaction: the rest is drained, nothing is cancelled")
    func stopDrains() {
        var m = T.machine(.rows, policy: .drain)
        T.expect(&m, T.sendAndFlush + [
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.stop, now: 50, cancelRequested: false), .readResult),
            (.resultRead(.result(.singleRow)), .discardResult),
            (.done, .readResult),
        ] + Self.endOfRows + [
            (.resultRead(.end(connectionAlive: true)), T.finish(.stopped, close: false)),
        ])
    }

    @Test("a drain cut short by the deadline is cancelled; the stop still stands")
    func drainTimesOut() {
        var m = T.machine(.rows, policy: .drain, deadline: T.deadline)
        T.expect(&m, T.sendAndFlush + [
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.stop, now: 50, cancelRequested: false), .readResult),
            (.resultRead(.busy), .wait(.read, until: T.deadline, wake: false)),
            (.deadlinePassed(now: 1_000), .sendCancel),
            (.done, .readResult),
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
            (.cancelFinished, T.finish(.stopped, close: false)),
        ])
    }

    @Test("a stop whose cancel is never confirmed closes the connection; the rows delivered stand")
    func stopUnconfirmed() {
        var m = T.machine(.rows)
        T.expect(&m, T.sendAndFlush + [
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.stop, now: 50, cancelRequested: false), .sendCancel),
            (.done, .readResult),
            (.resultRead(.busy), .wait(.read, until: Deadline(nanoseconds: 150), wake: false)),
            (.deadlinePassed(now: 150), T.finish(.stopped, close: true)),
        ])
    }

    @Test("a body that throws ends the stream like a stop; its error is rethrown")
    func bodyThrows() {
        var m = T.machine(.rows)
        T.expect(&m, T.sendAndFlush + [
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.threw, now: 50, cancelRequested: false), .sendCancel),
            (.done, .readResult),
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 150))),
            (.cancelFinished, T.finish(.bodyFailed, close: false)),
        ])
    }

    @Test("the deadline is checked after every row: a slow body times out mid-stream, never succeeds")
    func timeoutBetweenRows() {
        var m = T.machine(.rows, deadline: T.deadline)
        T.expect(&m, T.sendAndFlush + [
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.next, now: 999, cancelRequested: false), .readResult),
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.next, now: 1_500, cancelRequested: false), .sendCancel),
            (.done, .readResult),
            (.resultRead(.result(.singleRow)), .discardResult),
            (.done, .readResult),
        ] + Self.endOfRows + [
            // The statement ended on its own, but rows were dropped: still a timeout.
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_600))),
            (.cancelFinished, T.finish(.interrupted(.timeout, confirmed: true), close: false)),
        ])
    }

    @Test("a task cancelled while the body runs is noticed after the row (async calls only)")
    func taskCancelledBetweenRows() {
        var async = T.machine(.rows, wake: true)
        T.expect(&async, T.sendAndFlush + [
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.next, now: 70, cancelRequested: true), .sendCancel),
            (.done, .readResult),
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 170))),
            (.cancelFinished, T.finish(.interrupted(.taskCancelled, confirmed: true), close: false)),
        ])
        var sync = T.machine(.rows)
        T.expect(&sync, T.sendAndFlush + [
            (.resultRead(.result(.singleRow)), .deliverRow),
            (.bodyReturned(.next, now: 70, cancelRequested: true), .readResult),
        ])
    }

    @Test("a server error part-way through the rows is the answer")
    func errorMidStream() {
        var m = T.machine(.rows)
        T.expect(&m, T.sendAndFlush + Self.row + [
            (.resultRead(.result(.error(sqlState: "22012"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)),
             T.finish(.serverError(connectionAlive: true, forceMayHaveRun: false), close: false)),
        ])
    }

    // MARK: - COPY OUT

    static let copyOutStart: [(Event, Action)] = T.sendAndFlush + [
        (.resultRead(.result(.copyOut)), .discardResult), (.done, .readCopyData),
    ]

    @Test("COPY OUT: each row to the body, then the COPY's own result")
    func copyOut() {
        var m = T.machine(.copyOut)
        T.expect(&m, Self.copyOutStart + [
            (.copyData(.chunk), .deliverCopyData),
            (.bodyReturned(.next, now: 1, cancelRequested: false), .readCopyData),
            (.copyData(.wouldBlock), .wait(.read, until: .none, wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.failed(connectionBad: true)), .readResult),
            (.resultRead(.result(.command)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), T.finish(.succeeded, close: false)),
        ])
        #expect(m.delivered == 1)
    }

    @Test("COPY OUT stopped early: cancelled, the rest discarded")
    func copyOutStop() {
        var m = T.machine(.copyOut)
        T.expect(&m, Self.copyOutStart + [
            (.copyData(.chunk), .deliverCopyData),
            (.bodyReturned(.stop, now: 5, cancelRequested: false), .sendCancel),
            (.done, .readCopyData),
            (.copyData(.chunk), .readCopyData),
            (.copyData(.ended), .readResult),
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 105))),
            (.cancelFinished, T.finish(.stopped, close: false)),
        ])
    }

    @Test("copyOut with a statement that is no COPY TO STDOUT is refused; its errors come first")
    func copyOutWrongStatement() {
        var select = T.machine(.copyOut)
        T.expect(&select, T.sendAndFlush + Self.endOfRows + [
            (.resultRead(.end(connectionAlive: true)), T.finish(.refused(.notCopy), close: false)),
        ])
        var syntax = T.machine(.copyOut)
        T.expect(&syntax, T.sendAndFlush + [
            (.resultRead(.result(.error(sqlState: "42601"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)),
             T.finish(.serverError(connectionAlive: true, forceMayHaveRun: false), close: false)),
        ])
        var copyIn = T.machine(.copyOut)
        T.expect(&copyIn, T.sendAndFlush + [
            (.resultRead(.result(.copyIn)), .discardResult),
            (.done, .putCopyEnd(.refused)),
        ])
    }

    // MARK: - COPY IN

    static let copyInStart: [(Event, Action)] = T.sendAndFlush + [
        (.resultRead(.result(.copyIn)), .discardResult), (.done, .runCopyInBody),
    ]
    static let write: [(Event, Action)] = [
        (.writeRequested(now: 0, cancelRequested: false), .putCopyData), (.put(.queued), .flush),
        (.flushed(.done), .writeFinished(.written)),
    ]
    /// PQputCopyEnd queued and flushed: on to the COPY's result.
    static let ending: [(Event, Action)] = [(.put(.queued), .flush), (.flushed(.done), .readResult)]

    @Test("COPY IN: writes wait for buffer space and for the socket, then CopyDone and the count")
    func copyIn() {
        var m = T.machine(.copyIn)
        T.expect(&m, Self.copyInStart + Self.write + [
            (.writeRequested(now: 0, cancelRequested: false), .putCopyData),
            (.put(.wouldBlock), .wait(.readWrite, until: .none, wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .putCopyData),
            (.put(.queued), .flush),
            (.flushed(.pending), .wait(.readWrite, until: .none, wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .flush),
            (.flushed(.done), .writeFinished(.written)),
            (.copyInBodyReturned(.finished), .putCopyEnd(.done)),
        ] + Self.ending + [
            (.resultRead(.result(.command)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), T.finish(.succeeded, close: false)),
        ])
    }

    @Test("COPY IN with a bad row: the server's error (22P02) at the end, connection usable")
    func copyInBadRow() {
        var m = T.machine(.copyIn)
        T.expect(&m, Self.copyInStart + Self.write + [(.copyInBodyReturned(.finished), .putCopyEnd(.done))]
            + Self.ending + [
                (.resultRead(.result(.error(sqlState: "22P02"))), .keepResult(.error)),
                (.done, .readResult),
                (.resultRead(.end(connectionAlive: true)),
                 T.finish(.serverError(connectionAlive: true, forceMayHaveRun: false), close: false)),
            ])
    }

    @Test("COPY IN whose body throws: CopyFail, then the body's error")
    func copyInBodyThrows() {
        var m = T.machine(.copyIn)
        T.expect(&m, Self.copyInStart + Self.write + [(.copyInBodyReturned(.threw), .putCopyEnd(.aborted))]
            + Self.ending + [
                (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
                (.done, .readResult),
                (.resultRead(.end(connectionAlive: true)), T.finish(.bodyFailed, close: false)),
            ])
    }

    @Test("COPY IN timing out in a write: the write gives up, later ones too, CopyFail, timeout")
    func copyInTimeout() {
        var m = T.machine(.copyIn, deadline: T.deadline)
        T.expect(&m, Self.copyInStart + [
            (.writeRequested(now: 0, cancelRequested: false), .putCopyData),
            (.put(.wouldBlock), .wait(.readWrite, until: T.deadline, wake: false)),
            (.deadlinePassed(now: 1_000), .sendCancel),
            (.done, .writeFinished(.interrupted(.timeout))),
            (.writeRequested(now: 0, cancelRequested: false), .writeFinished(.interrupted(.timeout))),
            (.copyInBodyReturned(.threw), .putCopyEnd(.interrupted)),
        ] + Self.ending + [
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
            (.cancelFinished, T.finish(.interrupted(.timeout, confirmed: true), close: false)),
        ])
    }

    @Test("a fast writer that never waits still meets its deadline and its task's cancellation")
    func copyInChecksEveryWrite() {
        var late = T.machine(.copyIn, deadline: T.deadline)
        T.expect(&late, Self.copyInStart + Self.write + [
            (.writeRequested(now: 1_200, cancelRequested: false), .sendCancel),
            (.done, .writeFinished(.interrupted(.timeout))),
            (.copyInBodyReturned(.finished), .putCopyEnd(.interrupted)),
        ])
        var cancelled = T.machine(.copyIn, wake: true)
        T.expect(&cancelled, Self.copyInStart + [
            (.writeRequested(now: 40, cancelRequested: true), .sendCancel),
            (.done, .writeFinished(.interrupted(.taskCancelled))),
            (.copyInBodyReturned(.threw), .putCopyEnd(.interrupted)),
        ] + Self.ending + [
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 140))),
            (.cancelFinished, T.finish(.interrupted(.taskCancelled, confirmed: true), close: false)),
        ])
        var sync = T.machine(.copyIn)
        T.expect(&sync, Self.copyInStart + [(.writeRequested(now: 40, cancelRequested: true), .putCopyData)])
    }

    @Test("COPY IN with a failed write: CopyFail (never CopyDone), the statement's own error")
    func copyInWriteFails() {
        var m = T.machine(.copyIn)
        T.expect(&m, Self.copyInStart + [
            (.writeRequested(now: 0, cancelRequested: false), .putCopyData),
            (.put(.failed), .writeFinished(.failed)),
            (.writeRequested(now: 0, cancelRequested: false), .writeFinished(.failed)),
            (.copyInBodyReturned(.threw), .putCopyEnd(.writeFailed)),
            (.put(.failed), .readResult),
            (.resultRead(.result(.error(sqlState: nil))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: false)),
             T.finish(.serverError(connectionAlive: false, forceMayHaveRun: false), close: true)),
        ])
    }

    @Test("a timeout before the COPY starts or while ending it never lets the server commit")
    func copyInInterruptedOutsideTheBody() {
        var before = T.machine(.copyIn, deadline: T.deadline)
        T.expect(&before, T.sendAndFlush + [
            (.resultRead(.busy), .wait(.read, until: T.deadline, wake: false)),
            (.deadlinePassed(now: 1_000), .sendCancel),
            (.done, .readResult),
            (.resultRead(.result(.copyIn)), .discardResult),
            (.done, .putCopyEnd(.interrupted)),
        ])
        var ending = T.machine(.copyIn, deadline: T.deadline)
        T.expect(&ending, Self.copyInStart + [
            (.copyInBodyReturned(.finished), .putCopyEnd(.done)),
            (.put(.wouldBlock), .wait(.readWrite, until: T.deadline, wake: false)),
            (.deadlinePassed(now: 1_000), .sendCancel),
            (.done, .putCopyEnd(.interrupted)),
        ])
    }

    @Test("copyIn with a statement that is no COPY FROM STDIN, or a second COPY, is refused")
    func copyInWrongStatement() {
        var insert = T.machine(.copyIn)
        T.expect(&insert, T.sendAndFlush + [
            (.resultRead(.result(.command)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), T.finish(.refused(.notCopy), close: false)),
        ])
        var twice = T.machine(.copyIn)
        T.expect(&twice, Self.copyInStart + [(.copyInBodyReturned(.finished), .putCopyEnd(.done))] + Self.ending + [
            (.resultRead(.result(.command)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.result(.copyIn)), .discardResult),
            (.done, .putCopyEnd(.refused)),
        ])
    }

    // MARK: - Invalid events

    /// One of every event (payloads chosen arbitrarily).
    static let everyEvent: [Event] = [
        .sent, .sendFailed(connectionBad: true), .flushed(.done), .flushed(.pending),
        .flushed(.failed(connectionBad: false)), .readable, .woken(now: 7), .deadlinePassed(now: 7),
        .inputConsumed(.consumed), .inputConsumed(.failed(connectionBad: true)), .resultRead(.busy),
        .resultRead(.result(.singleRow)), .resultRead(.result(.tuples)), .resultRead(.end(connectionAlive: true)),
        .done, .bodyReturned(.next, now: 7, cancelRequested: false), .copyData(.chunk),
        .writeRequested(now: 0, cancelRequested: false),
        .put(.queued), .copyInBodyReturned(.finished), .cancelFinished,
    ]

    /// Machines in many states: every prefix of the scenarios above.
    static var reachable: [Machine] {
        let scenarios: [(Machine, [(Event, Action)])] = [
            (T.machine(.collect, deadline: T.deadline, wake: true), T.sendAndFlush + [
                (.resultRead(.busy), .wait(.read, until: T.deadline, wake: true)), (.readable, .consumeInput),
                (.inputConsumed(.consumed), .readResult), (.resultRead(.busy), .wait(.read, until: T.deadline, wake: true)),
                (.deadlinePassed(now: 1_000), .sendCancel), (.done, .readResult),
                (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
                (.cancelFinished, .finish(.init(outcome: .interrupted(.timeout, confirmed: true), close: false))),
            ]),
            (T.machine(.rows, wake: true), T.sendAndFlush + Self.row + [(.resultRead(.result(.singleRow)), .deliverRow)]),
            (T.machine(.copyOut), Self.copyOutStart + [(.copyData(.chunk), .deliverCopyData)]),
            (T.machine(.copyIn), Self.copyInStart + [
                (.writeRequested(now: 0, cancelRequested: false), .putCopyData), (.put(.queued), .flush),
                (.flushed(.done), .writeFinished(.written)), (.copyInBodyReturned(.finished), .putCopyEnd(.done)),
            ]),
        ]
        var machines: [Machine] = []
        for (start, steps) in scenarios {
            var m = start
            machines.append(m)
            for (event, _) in steps {
                _ = m.event(event)
                machines.append(m)
            }
        }
        return machines
    }

    @Test("in every reachable state every event is answered: invalid ones change nothing, none traps")
    func invalidEventsChangeNothing() {
        var invalid = 0
        for machine in Self.reachable {
            for event in Self.everyEvent {
                var copy = machine
                let action = copy.event(event)
                if case .invalidEvent(let answer) = action {
                    invalid += 1
                    #expect(copy == machine, "\(event) in \(machine.state)")
                    #expect(answer.event == event && answer.state == machine.state)
                    #expect(answer.description.contains("is not valid while"))
                }
            }
        }
        #expect(invalid >= Self.reachable.count * (Self.everyEvent.count - 4))
    }

    @Test("a finished machine refuses everything")
    func finishedRefusesEverything() {
        var m = T.machine()
        T.expect(&m, T.sendAndFlush + [(.resultRead(.end(connectionAlive: true)), T.finish(.noResult, close: false))])
        for event in Self.everyEvent {
            var copy = m
            #expect(copy.event(event) == .invalidEvent(.init(event: event, state: .finished)))
        }
    }
}
