import PlainText
import ArgumentParser
import Foundation
import Migration
import Verification

/// `pgha status`: where the migration stands.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show where the migration stands: stages, gates, files in place, the lock.",
        discussion: """
            Reads the state in --state-dir (without taking the lock, so it works while a run is \
            in progress) and shows every stage with its status, attempts and gate summary, the \
            reasons of failed or skipped stages, the files pgha put in place, the last outcome, \
            who holds the lock, and the next command. With --json it prints the report document \
            (the same as the last line of `pgha run --json`).

            \(MigrationHelp.exitCodes([.success, .failure, .stateUnreadable]))
            """
    )

    @OptionGroup var options: MigrationOptions
    @OptionGroup var output: JSONOutputOption

    func run() async throws {
        CLILogging.bootstrap()
        let store = options.store
        let plain = MigrationOutput(json: output.json, redactor: .none)
        let state: MigrationState
        do {
            state = try store.load()
        } catch {
            throw plain.fail(error)
        }
        // The playbook tells which values are secrets; status prints only what the (already
        // redacted) state holds, but masks them again if the playbook is at hand.
        let redactor = (try? PlaybookParser.load(path: state.resolvedPlaybookPath))?.playbook.secretRedactor(environment: ProcessEnvironment()) ?? .none
        let out = MigrationOutput(json: output.json, redactor: redactor)
        let report = MigrationReport(state: state, store: store)
        if output.json {
            out.line(report.json())
            return
        }
        let built = Set(((try? MigrationStages.executors()) ?? []).map(\.stage))
        out.line("migration: \(state.playbook.name)")
        out.line("playbook:  \(state.resolvedPlaybookPath) (sha256 \(state.playbook.sha256.prefix(12))…)")
        out.line("state:     \(store.stateFile) (updated \(Self.time(state.updatedAt)), pgha \(state.toolVersion))")
        if state.direction == .rollback { out.line("direction: ROLLING BACK (a rollback did not finish)") }
        if let last = state.runs.last {
            var text = "last run:  pgha \(last.command) (pid \(last.pid)) started \(Self.time(last.startedAt))"
            if let outcome = last.outcome { text += ", ended: \(outcome.kind) (exit \(outcome.exitCode.rawValue))" }
            out.line(text)
        }
        if let holder = report.lockedBy {
            out.line("lock:      held by \(holder)")
        }
        out.line()
        let rows = state.stages.map { s -> [String] in
            let gate = s.gate.isEmpty ? "-" : "\(s.gate.worstVerdict.rawValue) (\(s.gate.count) checks)"
            return [
                "\(s.stage.order + 1)", s.stage.rawValue, built.contains(s.stage) ? "yes" : "not yet", s.status.name,
                "\(s.attempts)", s.finishedAt.map(Self.time) ?? "-", gate,
            ]
        }
        out.line(TextTable(header: ["#", "STAGE", "BUILT", "STATUS", "ATTEMPTS", "FINISHED", "GATE"], rows: rows).render())
        for s in state.stages {
            if let wait = s.waiting {
                let since = Int(Date().timeIntervalSince(wait.since).rounded())
                var text = "  \(s.stage) WAITING since \(Self.time(wait.since)) (\(since) s): for \(wait.what)"
                if let deadline = wait.deadline { text += "; gives up at \(Self.time(deadline))" }
                if let detail = wait.detail { text += " — \(detail)" }
                out.line(text)
            }
            if let reason = s.status.reason { out.line("  \(s.stage) \(s.status.name): \(reason)") }
            for check in s.gate where check.verdict == .fail || check.verdict == .warn {
                out.line("  \(s.stage) gate \(check.verdict.rawValue) \(check.name): observed \(check.observed)" + (check.expected.map { ", expected \($0)" } ?? "") + (check.advice.map { " — \($0)" } ?? ""))
            }
        }
        // The physical method checks the members' extensions in the sync gate (the cluster did not
        // exist during the extensions stage).
        let syncMatrix = ExtensionMatrix(checks: state.stage(.sync).gate.filter { $0.name.hasPrefix("extension") })
        if let matrix = syncMatrix ?? ExtensionMatrix(checks: state.stage(.extensions).gate) {
            out.line()
            out.line("extensions (node × extension, from the last \(syncMatrix == nil ? "extensions" : "sync") gate):")
            out.line(MigrationRenderer.indent(matrix.table(), by: 2))
        }
        // The shadow stage's report, kept in the state directory.
        if let shadow = report.shadow {
            out.line()
            out.line("shadow report (\(ShadowReport.textPath(store)), JSON beside it; \(Self.time(shadow.finishedAt))):")
            out.line(MigrationRenderer.indent(shadow.table(), by: 2))
        }
        let files = state.filesInPlace
        out.line()
        if files.isEmpty {
            out.line("files in place: none")
        } else {
            out.line("files in place (`pgha rollback` restores the previous version or removes them):")
            let fileRows = files.map { f -> [String] in
                let before = f.existedBefore ? "backed up (was \(f.modeBefore?.description ?? "?"))" : "new"
                return [f.key, f.path, f.modeAfter.description, String(f.sha256After.prefix(12)) + "…", before]
            }
            out.line(TextTable(header: ["KEY", "PATH", "MODE", "SHA256", "BEFORE"], rows: fileRows).render())
        }
        out.line()
        if let outcome = state.lastOutcome {
            out.line(outcome.description)
        }
        if let next = Self.next(state: state, lockedBy: report.lockedBy, store: store) {
            out.line("next: \(next)")
        }
    }

    static func next(state: MigrationState, lockedBy: LockHolder?, store: StateStore) -> String? {
        let dir = store.directoryArgument
        if lockedBy != nil { return "a run is in progress; `pgha status\(dir)` again later" }
        if state.direction == .rollback { return "`pgha rollback\(dir)` finishes the rollback" }
        guard let outcome = state.lastOutcome else {
            return "the last run did not finish (killed or crashed): `pgha resume\(dir)` continues from the last completed step"
        }
        switch outcome {
        case .completed: return nil
        case .stoppedBeforeUnbuiltStage: return "everything this pgha can do is done; `pgha rollback\(dir)` undoes it"
        case .reachedUntil, .declined, .interrupted: return "`pgha resume\(dir)` continues"
        case .stoppedAfterFailure: return "fix the cause, then `pgha resume\(dir)`, or `pgha rollback\(dir)`"
        case .rolledBack: return "single-node mode; `pgha migrate PLAYBOOK\(dir)` starts again"
        case .rollbackFailed: return "fix the cause, then `pgha rollback\(dir)` again"
        }
    }

    static func time(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
