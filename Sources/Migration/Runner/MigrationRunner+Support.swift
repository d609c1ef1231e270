import Foundation
import Logging
import Synchronization

// The runner's support: the journal it gives the stages (state writes counted for the crash
// tests), finishing a run, the playbook check, decisions validated, stage contexts, cancellation.

extension MigrationRunner {
    func makeJournal(_ state: MigrationState) -> StateJournal {
        let store = configuration.store
        let redactor = self.redactor
        let crash = configuration.simulatedCrash
        let hook = configuration.stateWriteHook
        guard crash != nil || hook != nil else {
            return StateJournal(state: state, store: store, redactor: redactor, clock: configuration.clock)
        }
        let writes = WriteCounter()
        return StateJournal(state: state, clock: configuration.clock) { (state: MigrationState) throws(MigrationError) in
            let (number, crashed) = writes.count.withLock { n in
                n += 1
                return (n, crash?(n) ?? false)
            }
            if crashed { throw MigrationError(.io, "simulated crash") }
            hook?(number, false, state)
            try store.save(state, redactor: redactor)
            hook?(number, true, state)
        }
    }

    func finish(_ outcome: MigrationOutcome, journal: StateJournal) throws(MigrationError) -> MigrationOutcome {
        let c = configuration
        let now = c.clock.now()
        try journal.update { s in
            s.lastOutcome = outcome
            if case .rolledBack = outcome { s.direction = .forward }
            if !s.runs.isEmpty {
                s.runs[s.runs.count - 1].endedAt = now
                s.runs[s.runs.count - 1].outcome = outcome
            }
        }
        c.observer.report(.finished(outcome))
        c.logger.info("migration run finished", metadata: ["outcome": "\(outcome.kind)", "exit": "\(outcome.exitCode.rawValue)"])
        return outcome
    }

    func checkPlaybook(_ state: inout MigrationState) throws(MigrationError) {
        let c = configuration
        if state.playbook.sha256 != c.playbook.sha256 {
            guard c.allowPlaybookChange else {
                throw MigrationError(
                    .playbookChanged,
                    "the playbook \(c.playbook.path) differs from the one this migration was started with (\(state.playbook.path), sha256 \(state.playbook.sha256.prefix(12))…, now \(c.playbook.sha256.prefix(12))…). Restore it, or confirm the change (the CLI's --accept-playbook-change); stages that already passed are not re-run.",
                    path: c.playbook.path
                )
            }
            c.observer.report(.warning("the playbook changed since the last run; continuing with the new one (stages that passed are not re-run)"))
        }
        state.playbook = .init(path: c.playbook.path, sha256: c.playbook.sha256, name: c.playbook.playbook.name)
    }

    func report(_ decision: UserDecision, stage: MigrationStage) {
        let reason: String?
        if case .skip(let r) = decision { reason = redactor.redact(r) } else { reason = nil }
        configuration.observer.report(.decision(stage, decision.option, reason: reason))
    }

    var isCancelled: Bool { configuration.cancellation.isCancelled || Task.isCancelled }

    func isInterruption(_ error: any Error) -> Bool {
        if let error = error as? MigrationError, error.code == .interrupted { return true }
        return error is CancellationError || isCancelled
    }

    /// A decision outside `options` becomes `.stop`; a skip gets a default reason.
    static func validated(_ decision: UserDecision, options: [DecisionOption]) -> UserDecision {
        guard options.contains(decision.option) else { return .stop }
        if case .skip(let reason) = decision, reason.trimmingCharacters(in: .whitespaces).isEmpty {
            return .skip(reason: "skipped by the operator (no reason given)")
        }
        return decision
    }

    static func message(of error: any Error) -> String {
        if let error = error as? MigrationError { return error.description }
        return String(describing: error)
    }

    func makeContext(journal: StateJournal?, workingDirectory: String, stage: MigrationStage?) -> StageContext {
        let c = configuration
        var logger = c.logger
        if let stage { logger[metadataKey: "stage"] = "\(stage)" }
        // `plan` runs without a stage (nothing is reported) and without a journal (nothing saved).
        let observer: any MigrationObserver = stage == nil ? SilentObserver() : c.observer
        let activity = StageActivity(
            stage: stage ?? .prerequisites, journal: stage == nil ? nil : journal, observer: observer,
            redactor: redactor, clock: c.clock)
        return StageContext(
            playbook: c.playbook.playbook, playbookPath: c.playbook.path, workingDirectory: workingDirectory,
            store: c.store, environment: c.environment, redactor: redactor, journal: journal, clock: c.clock,
            cancellation: c.cancellation, logger: logger, activity: activity)
    }

    /// Runs `body` (a stage's run, gate or undo) in a task of its own that SIGINT/SIGTERM cancel at
    /// once, so a long query is cancelled on the server and a wait ends, instead of only stopping at
    /// the next check of the flag.
    func cancellable<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let task = Task { try await body() }
        let token = configuration.cancellation.onCancel { task.cancel() }
        defer { configuration.cancellation.remove(token) }
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }
}

/// Counts state writes for `Configuration.simulatedCrash` and `stateWriteHook`.
private final class WriteCounter: Sendable {
    let count = Mutex(0)
}
