import Testing

@testable import PGClient

/// The statement lifecycle as values: no server, no clock (times are plain numbers), no sleeping.
@Suite("QueryStateMachine")
struct QueryStateMachineTests {
    typealias Machine = QueryStateMachine
    typealias Event = QueryStateMachine.Event
    typealias Action = QueryStateMachine.Action

    static let grace: UInt64 = 100
    static let deadline = Deadline(nanoseconds: 1_000)

    static func machine(
        _ mode: Machine.Mode = .collect, policy: Machine.StopPolicy = .cancel, deadline: Deadline = .none,
        wake: Bool = false
    ) -> Machine {
        Machine(mode: mode, stopPolicy: policy, deadline: deadline, gracePeriod: grace, watchesWake: wake)
    }

    /// Feeds each event and expects its action.
    static func expect(
        _ machine: inout Machine, _ steps: [(Event, Action)], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for (index, (event, expected)) in steps.enumerated() {
            let action = machine.event(event)
            #expect(action == expected, "step \(index): \(event)", sourceLocation: sourceLocation)
            if action != expected { return }
        }
    }

    static func finish(_ outcome: Machine.Completion.Outcome, close: Bool) -> Action {
        .finish(Machine.Completion(outcome: outcome, close: close))
    }

    /// sent → flushed → the first readResult.
    static let sendAndFlush: [(Event, Action)] = [(.sent, .flush), (.flushed(.done), .readResult)]

    // MARK: - Collecting (query)

    @Test("SELECT 1: send, flush, wait for input, keep the result, end")
    func happyPath() {
        var m = Self.machine()
        Self.expect(&m, Self.sendAndFlush + [
            (.resultRead(.busy), .wait(.read, until: .none, wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .readResult),
            (.resultRead(.result(.tuples)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), Self.finish(.succeeded, close: false)),
        ])
        #expect(m.state == .finished)
    }

    @Test("a statement that does not fit in the send buffer is flushed while reading")
    func flushPending() {
        var m = Self.machine(deadline: Self.deadline)
        Self.expect(&m, [
            (.sent, .flush),
            (.flushed(.pending), .wait(.readWrite, until: Self.deadline, wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .flush),
            (.flushed(.done), .readResult),
        ])
    }

    @Test("send and flush failures: a bad connection is read to its error, a live one reported")
    func sendAndFlushFailures() {
        var bad = Self.machine()
        Self.expect(&bad, [(.sendFailed(connectionBad: true), Self.finish(.connectionBroken(mayHaveRun: false), close: true))])
        var live = Self.machine()
        Self.expect(&live, [(.sendFailed(connectionBad: false), Self.finish(.sendRejected, close: false))])
        var flushBad = Self.machine()
        Self.expect(&flushBad, [(.sent, .flush), (.flushed(.failed(connectionBad: true)), .readResult)])
        var flushLost = Self.machine()
        Self.expect(&flushLost, [
            (.sent, .flush), (.flushed(.failed(connectionBad: false)), Self.finish(.connectionBroken(mayHaveRun: true), close: true)),
        ])
    }

    @Test("several results: the last success is kept, the first error wins")
    func severalResults() {
        var m = Self.machine()
        Self.expect(&m, Self.sendAndFlush + [
            (.resultRead(.result(.command)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.result(.tuples)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.result(.error(sqlState: "23505"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.result(.error(sqlState: "25P02"))), .discardResult),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)),
             Self.finish(.serverError(connectionAlive: true, forceMayHaveRun: false), close: false)),
        ])
    }

    @Test("an error with the connection gone closes it")
    func errorOnDeadConnection() {
        var m = Self.machine()
        Self.expect(&m, Self.sendAndFlush + [
            (.resultRead(.result(.error(sqlState: "57P01"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: false)),
             Self.finish(.serverError(connectionAlive: false, forceMayHaveRun: false), close: true)),
        ])
    }

    @Test("PQconsumeInput failing: CONNECTION_BAD reads the error; otherwise the connection is lost")
    func inputFailures() {
        let waiting = Self.sendAndFlush + [(Event.resultRead(.busy), Action.wait(.read, until: .none, wake: false)), (.readable, .consumeInput)]
        var bad = Self.machine()
        Self.expect(&bad, waiting + [(.inputConsumed(.failed(connectionBad: true)), .readResult)])
        var lost = Self.machine()
        Self.expect(&lost, waiting + [(.inputConsumed(.failed(connectionBad: false)), Self.finish(.connectionBroken(mayHaveRun: true), close: true))])
        // After the server's error arrived, a lost connection reports that error (e.g. 57P01).
        var said = Self.machine()
        Self.expect(&said, Self.sendAndFlush + [
            (.resultRead(.result(.error(sqlState: "57P01"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.busy), .wait(.read, until: .none, wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.failed(connectionBad: false)),
             Self.finish(.serverError(connectionAlive: false, forceMayHaveRun: true), close: true)),
        ])
    }

    @Test("no result at all, and result statuses nothing can follow")
    func noResultAndUnexpectedStatus() {
        var none = Self.machine()
        Self.expect(&none, Self.sendAndFlush + [(.resultRead(.end(connectionAlive: true)), Self.finish(.noResult, close: false))])
        var other = Self.machine()
        Self.expect(&other, Self.sendAndFlush + [
            (.resultRead(.result(.other(status: 8))), Self.finish(.unexpectedStatus(.other(status: 8)), close: true)),
        ])
        var single = Self.machine()
        Self.expect(&single, Self.sendAndFlush + [
            (.resultRead(.result(.singleRow)), Self.finish(.unexpectedStatus(.singleRow), close: true)),
        ])
    }

    // MARK: - Timeouts and task cancellation

    /// Up to the cancel: a wait with the statement's deadline, which passes at `now`.
    static func timedOut(_ m: inout Machine, now: UInt64 = 1_000, wake: Bool = false) {
        expect(&m, sendAndFlush + [
            (.resultRead(.busy), .wait(.read, until: deadline, wake: wake)),
            (.deadlinePassed(now: now), .sendCancel),
            (.done, .readResult),
            (.resultRead(.busy), .wait(.read, until: Deadline(nanoseconds: now + grace), wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .readResult),
        ])
    }

    @Test("a timeout cancels; the server confirms with 57014 and the cancel request ends: usable")
    func timeoutConfirmed() {
        var m = Self.machine(deadline: Self.deadline)
        Self.timedOut(&m)
        Self.expect(&m, [
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
            (.cancelFinished, Self.finish(.interrupted(.timeout, confirmed: true), close: false)),
        ])
    }

    @Test("a timeout whose cancel request does not end within the grace period closes the connection")
    func timeoutCancelRequestHangs() {
        var m = Self.machine(deadline: Self.deadline)
        Self.timedOut(&m)
        Self.expect(&m, [
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
            (.deadlinePassed(now: 1_100), Self.finish(.interrupted(.timeout, confirmed: false), close: true)),
        ])
    }

    @Test("a server that never ends the statement after the cancel: the grace period closes the connection")
    func timeoutGracePasses() {
        var m = Self.machine(deadline: Self.deadline)
        Self.timedOut(&m)
        Self.expect(&m, [
            (.resultRead(.busy), .wait(.read, until: Deadline(nanoseconds: 1_100), wake: false)),
            (.deadlinePassed(now: 1_100), Self.finish(.interrupted(.timeout, confirmed: false), close: true)),
        ])
    }

    @Test("a statement that ended on its own before the cancel hit reports its own outcome")
    func timeoutButFinished() {
        var ok = Self.machine(deadline: Self.deadline)
        Self.timedOut(&ok)
        Self.expect(&ok, [
            (.resultRead(.result(.tuples)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
            (.cancelFinished, Self.finish(.succeeded, close: false)),
        ])
        var failed = Self.machine(deadline: Self.deadline)
        Self.timedOut(&failed)
        Self.expect(&failed, [
            (.resultRead(.result(.error(sqlState: "23505"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
            (.cancelFinished, Self.finish(.serverError(connectionAlive: true, forceMayHaveRun: false), close: false)),
        ])
        var nothing = Self.machine(deadline: Self.deadline)
        Self.timedOut(&nothing)
        Self.expect(&nothing, [
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
            (.cancelFinished, Self.finish(.interrupted(.timeout, confirmed: true), close: false)),
        ])
    }

    @Test("a timeout after which the connection died reports the server's error, may have run")
    func timeoutConnectionDied() {
        var m = Self.machine(deadline: Self.deadline)
        Self.timedOut(&m)
        Self.expect(&m, [
            (.resultRead(.result(.error(sqlState: "57P01"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: false)), .awaitCancel(until: Deadline(nanoseconds: 1_100))),
            (.cancelFinished, Self.finish(.serverError(connectionAlive: false, forceMayHaveRun: true), close: true)),
        ])
    }

    @Test("task cancellation: the wake-up channel is watched until the cancel is sent")
    func taskCancellation() {
        var m = Self.machine(wake: true)
        Self.expect(&m, Self.sendAndFlush + [
            (.resultRead(.busy), .wait(.read, until: .none, wake: true)),
            (.woken(now: 500), .sendCancel),
            (.done, .readResult),
            (.resultRead(.busy), .wait(.read, until: Deadline(nanoseconds: 600), wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .readResult),
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), .awaitCancel(until: Deadline(nanoseconds: 600))),
            (.cancelFinished, Self.finish(.interrupted(.taskCancelled, confirmed: true), close: false)),
        ])
    }

    @Test("a task cancelled while the statement is still being sent is cancelled from the flush wait")
    func taskCancelledWhileFlushing() {
        var m = Self.machine(wake: true)
        Self.expect(&m, [
            (.sent, .flush),
            (.flushed(.pending), .wait(.readWrite, until: .none, wake: true)),
            (.woken(now: 10), .sendCancel),
            (.done, .flush),
        ])
    }

    @Test("a wake-up the machine did not ask for is answered as invalid and changes nothing")
    func strayWakeUps() {
        var sync = Self.machine()
        Self.expect(&sync, Self.sendAndFlush + [(.resultRead(.busy), .wait(.read, until: .none, wake: false))])
        let before = sync
        #expect(sync.event(.woken(now: 1)) == .invalidEvent(.init(event: .woken(now: 1), state: before.state)))
        #expect(sync == before)
        var async = Self.machine(deadline: Self.deadline, wake: true)
        Self.timedOut(&async, wake: true)
        Self.expect(&async, [(.resultRead(.busy), .wait(.read, until: Deadline(nanoseconds: 1_100), wake: false))])
        let cancelling = async
        guard case .invalidEvent = async.event(.woken(now: 1_050)) else {
            Issue.record("a second wake-up after the cancel must be invalid")
            return
        }
        #expect(async == cancelling)
    }

    // MARK: - COPY where the call does not stream it

    @Test("COPY TO STDOUT in query(): the data is read and discarded, then refused")
    func copyOutRefused() {
        var m = Self.machine()
        Self.expect(&m, Self.sendAndFlush + [
            (.resultRead(.result(.copyOut)), .discardResult),
            (.done, .readCopyData),
            (.copyData(.chunk), .readCopyData),
            (.copyData(.wouldBlock), .wait(.read, until: .none, wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .readCopyData),
            (.copyData(.ended), .readResult),
            (.resultRead(.result(.command)), .keepResult(.last)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), Self.finish(.refused(.copyOut), close: false)),
        ])
    }

    @Test("COPY FROM STDIN in query(): ended with an error, refused before the server's 57014")
    func copyInRefused() {
        var m = Self.machine()
        Self.expect(&m, Self.sendAndFlush + [
            (.resultRead(.result(.copyIn)), .discardResult),
            (.done, .putCopyEnd(.refused)),
            (.put(.wouldBlock), .wait(.readWrite, until: .none, wake: false)),
            (.readable, .consumeInput),
            (.inputConsumed(.consumed), .putCopyEnd(.refused)),
            (.put(.queued), .flush),
            (.flushed(.done), .readResult),
            (.resultRead(.result(.error(sqlState: "57014"))), .keepResult(.error)),
            (.done, .readResult),
            (.resultRead(.end(connectionAlive: true)), Self.finish(.refused(.copyIn), close: false)),
        ])
    }

    // MARK: - Deadline values

    @Test("deadlines: none never passes, a real one passes at its instant, sums saturate")
    func deadlines() {
        #expect(!Deadline.none.hasPassed(at: .max))
        #expect(!Deadline(nanoseconds: 10).hasPassed(at: 9))
        #expect(Deadline(nanoseconds: 10).hasPassed(at: 10))
        #expect(Deadline.at(5, plus: 7) == Deadline(nanoseconds: 12))
        #expect(Deadline.at(.max - 1, plus: 7) == Deadline(nanoseconds: .max))
        #expect(Deadline.at(0, plus: 0) != .none)
        #expect(Deadline(nanoseconds: 2_000_000).remainingMilliseconds(now: 500_000) == 2)
        #expect(Deadline(nanoseconds: 2_000_000).remainingMilliseconds(now: 2_000_000) == nil)
        #expect(Deadline.none.remainingMilliseconds(now: 123) == -1)
    }
}
