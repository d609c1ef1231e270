import Foundation
import Migration

/// The decider of `pgha migrate` (and `pgha resume --guided`): asks the operator.
///
/// Before each stage (whose plan and diffs the renderer has just shown): `[y]es`, `[n]o` (stop
/// here; `pgha resume` continues later), `[s]kip` (asks for a reason and a confirmation), and
/// `roll[b]ack` once something was changed. After a failure: `[r]etry`, `[s]kip` (with reason and
/// confirmation), `roll[b]ack` (confirmed) when offered, `[a]bort` (stop; fix and `pgha resume`).
///
/// Answers are read from standard input one line each, so the dialogue can be scripted through a
/// pipe. At the end of the input it takes the safe answer (stop) and never waits; a signal
/// abandons the prompt (the runner then saves and exits 130). Answers are case-insensitive; an
/// unknown answer repeats the question.
struct TerminalDecider: MigrationDecider {
    let input: LineInput
    let output: MigrationOutput

    private enum Reply {
        case answer(String)
        /// End of input or a signal: take the safe answer.
        case gone(LineInput.Answer)
    }

    private func ask(_ question: String) async -> Reply {
        output.write(question)
        let answer = await input.next()
        switch answer {
        case .line(let text):
            if !isatty(STDIN_FILENO).boolValue { output.line(text) }  // echo scripted answers into the transcript
            return .answer(text.trimmingCharacters(in: .whitespaces).lowercased())
        case .endOfInput, .interrupted:
            output.line()
            return .gone(answer)
        }
    }

    private func stopSafely(_ why: LineInput.Answer, failed: Bool) -> UserDecision {
        if why == .endOfInput {
            output.line(failed
                ? "no answer (end of input): stopping here. The state is saved; fix the cause and `pgha resume`, or `pgha rollback`."
                : "no answer (end of input): stopping here. The state is saved; `pgha resume` continues later.")
        }
        return .stop
    }

    func confirm(_ stage: MigrationStage, plan: StagePlan, options: [DecisionOption]) async -> UserDecision {
        let rollback = options.contains(.rollback)
        let what = plan.makesChanges ? "It changes things (`pgha rollback` undoes it)." : "It only checks; it changes nothing."
        let choices = "[y]es / [n]o, stop here / [s]kip" + (rollback ? " / roll[b]ack" : "")
        while true {
            switch await ask("Run stage '\(stage)' now? \(what) \(choices): ") {
            case .gone(let why):
                return stopSafely(why, failed: false)
            case .answer(let text):
                switch text {
                case "y", "yes":
                    return .proceed
                case "n", "no", "stop", "q", "quit":
                    return .stop
                case "s", "skip":
                    switch await confirmSkip(stage) {
                    case .skip(let reason): return .skip(reason: reason)
                    case .cancelled: continue
                    case .gone(let why): return stopSafely(why, failed: false)
                    }
                case "b" where rollback, "rollback" where rollback:
                    switch await confirmRollback() {
                    case .yes: return .rollback
                    case .no: continue
                    case .gone(let why): return stopSafely(why, failed: false)
                    }
                default:
                    output.line("Please answer y (run it), n (stop here; `pgha resume` continues later) or s (skip it)\(rollback ? ", or b (roll back)" : "").")
                }
            }
        }
    }

    func decide(_ stage: MigrationStage, failure: StageFailure, options: [DecisionOption]) async -> UserDecision {
        let rollback = options.contains(.rollback)
        output.line()
        output.line("Stage '\(stage)' failed: \(failure.message)")
        let choices = "[r]etry / [s]kip" + (rollback ? " / roll[b]ack" : "") + " / [a]bort"
        while true {
            switch await ask("What now? \(choices): ") {
            case .gone(let why):
                return stopSafely(why, failed: true)
            case .answer(let text):
                switch text {
                case "r", "retry":
                    return .retry
                case "a", "abort", "stop", "q", "quit", "n", "no":
                    return .stop
                case "s", "skip":
                    switch await confirmSkip(stage) {
                    case .skip(let reason): return .skip(reason: reason)
                    case .cancelled: continue
                    case .gone(let why): return stopSafely(why, failed: true)
                    }
                case "b" where rollback, "rollback" where rollback:
                    switch await confirmRollback() {
                    case .yes: return .rollback
                    case .no: continue
                    case .gone(let why): return stopSafely(why, failed: true)
                    }
                default:
                    output.line("Please answer r (retry the stage), s (skip it)\(rollback ? ", b (undo every stage that ran)" : "") or a (abort: stop here, state saved).")
                }
            }
        }
    }

    private enum SkipAnswer {
        case skip(String)
        case cancelled
        case gone(LineInput.Answer)
    }

    private func confirmSkip(_ stage: MigrationStage) async -> SkipAnswer {
        output.line("Skipping '\(stage)' marks it skipped in the state; later stages run without it.")
        output.write("Reason (recorded in the state file): ")
        let reason: String
        switch await input.next() {
        case .line(let text):
            if !isatty(STDIN_FILENO).boolValue { output.line(text) }
            reason = text.trimmingCharacters(in: .whitespaces)
        case let other:
            output.line()
            return .gone(other)
        }
        switch await ask("Really skip '\(stage)'? [y/N]: ") {
        case .gone(let why):
            return .gone(why)
        case .answer(let text):
            guard text == "y" || text == "yes" else {
                output.line("Not skipped.")
                return .cancelled
            }
            return .skip(reason.isEmpty ? "skipped by the operator (no reason given)" : reason)
        }
    }

    private enum YesNo {
        case yes
        case no
        case gone(LineInput.Answer)
    }

    private func confirmRollback() async -> YesNo {
        switch await ask("Undo every stage that ran, last first, back to single-node mode? [y/N]: ") {
        case .gone(let why):
            return .gone(why)
        case .answer(let text):
            if text == "y" || text == "yes" { return .yes }
            output.line("Not rolled back.")
            return .no
        }
    }
}

extension Int32 {
    fileprivate var boolValue: Bool { self != 0 }
}
