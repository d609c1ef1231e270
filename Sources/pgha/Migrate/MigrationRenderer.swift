import PlainText
import Foundation
import Migration
import Verification

/// Renders migration progress for people: the plan, a line per stage and per step, the gate
/// results as a table, decisions, undo. `pgha migrate` (guided) shows each stage's full plan with
/// its diffs before asking; `pgha run` shows a short version (the diffs are in `pgha plan`).
struct MigrationRenderer: MigrationObserver {
    enum Style: Sendable {
        /// `pgha migrate`: full plans (explanations, diffs) before every question.
        case guided
        /// `pgha run`, `resume`, `rollback`: short progress lines.
        case unattended
    }

    let output: MigrationOutput
    let store: StateStore
    let style: Style
    let display: ProgressDisplay

    init(output: MigrationOutput, store: StateStore, style: Style, display: ProgressDisplay? = nil) {
        self.output = output
        self.store = store
        self.style = style
        self.display = display ?? ProgressDisplay(output: output)
    }

    func report(_ progress: MigrationProgress) {
        if case .stageProgress(_, let update) = progress {
            display.show(update)
            return
        }
        display.clear()
        switch progress {
        case .stageProgress:
            break  // drawn above
        case .runStarted(let command, let plan, let resumed):
            let state = try? store.load()
            let name = state?.playbook.name ?? "migration"
            output.line("pgha \(command): \(name)" + (resumed && command != "rollback" ? " (continuing the saved migration)" : ""))
            output.line("state: \(store.stateFile)")
            output.line()
            output.line(Self.stageTable(plan: plan, state: state))

        case .staleLockReplaced(let holder):
            output.line("note: took over the lock left by \(holder), which is no longer running")

        case .stagePlanned(let plan):
            output.line()
            switch style {
            case .guided:
                output.line(Self.render(plan, detailed: true))
            case .unattended:
                output.line(Self.heading(plan.stage) + (plan.makesChanges ? "" : " (checks only)"))
                for warning in plan.warnings { output.line("    warning: \(warning)") }
            }

        case .stageStarted(let stage, let attempt):
            if style == .guided || attempt > 1 {
                output.line("  running \(stage)" + (attempt > 1 ? " (attempt \(attempt))" : "") + "…")
            }

        case .stageMessage(_, let message):
            output.line(Self.indent(message, by: 4))

        case .stageWaiting(_, let wait):
            guard display.shouldShowWait(wait.what) else { return }
            var text = "    waiting for \(wait.what)"
            if let deadline = wait.deadline {
                text += " (gives up after \(ProgressDisplay.duration(deadline.timeIntervalSince(wait.since))))"
            }
            if let detail = wait.detail { text += ": \(detail)" }
            output.line(text)

        case .stageWaitEnded(_, let seconds):
            display.waitEnded()
            output.line("    done waiting after \(ProgressDisplay.duration(seconds))")

        case .stageRunFailed(let stage, let failure):
            output.line("  \(stage) FAILED: \(failure.message)")

        case .gateEvaluated(let stage, let checks):
            output.line(Self.gateSummary(stage, checks))
            output.line(Self.indent(Self.gateTable(checks), by: 4))

        case .decision(let stage, let option, let reason):
            switch option {
            case .proceed:
                break
            case .retry: output.line("  retrying \(stage)")
            case .skip: output.line("  skipping \(stage)" + (reason.map { ": \($0)" } ?? ""))
            case .rollback: output.line("  rolling back every stage that ran, last first")
            case .stop: output.line("  stopping at \(stage)")
            }

        case .undoStarted(let stage):
            output.line()
            output.line("==> undo \(stage): \(stage.title)")

        case .undoFinished(let stage, let error):
            if let error {
                output.line("  undo of \(stage) FAILED: \(error)")
            } else {
                output.line("  \(stage) undone")
            }

        case .warning(let text):
            output.line("warning: \(text)")

        case .finished:
            break  // MigrationOutput.finish prints the outcome once the state is final
        }
    }

    // MARK: - Pieces, shared with `pgha plan` and `pgha status`

    /// `==> [3/7] config: Environment and configuration files`
    static func heading(_ stage: MigrationStage) -> String {
        "==> [\(stage.order + 1)/\(MigrationStage.allCases.count)] \(stage): \(stage.title)"
    }

    /// The stages, whether this pgha has them, whether they change things, and where they stand.
    static func stageTable(plan: [StagePlanEntry], state: MigrationState?) -> String {
        let rows = plan.map { entry -> [String] in
            let status = state?.stage(entry.stage).status.name ?? "pending"
            return [
                "\(entry.stage.order + 1)", entry.stage.rawValue,
                entry.isAvailable ? "yes" : "not yet",
                entry.isAvailable ? (entry.makesChanges ? "yes" : "no") : "-",
                status,
            ]
        }
        return TextTable(header: ["#", "STAGE", "BUILT", "CHANGES", "STATUS"], rows: rows).render()
    }

    /// A stage's plan: what it checks, changes and how it is undone; with `detailed`, the diffs.
    static func render(_ plan: StagePlan, detailed: Bool, status: StageStatus? = nil) -> String {
        var lines = [heading(plan.stage)]
        guard plan.isAvailable else {
            lines.append("    NOT BUILT YET in this version of pgha: a run stops before this stage.")
            lines.append("    " + plan.summary)
            return lines.joined(separator: "\n")
        }
        lines.append("    " + plan.summary)
        if let status, status.isDone {
            lines.append("    already \(status.name) in the saved state: a run does not repeat it")
        }
        lines.append("    changes things: " + (plan.makesChanges ? "yes" : "no (checks only)"))
        if !plan.checks.isEmpty {
            lines.append("    checks:")
            lines += plan.checks.map { "      - \($0)" }
        }
        if !plan.changes.isEmpty {
            lines.append("    changes:")
            lines += plan.changes.map { "      - \($0)" }
        }
        if !plan.undo.isEmpty {
            lines.append("    undo:")
            lines += plan.undo.map { "      - \($0)" }
        }
        for warning in plan.warnings {
            lines.append("    warning: \(warning)")
        }
        if detailed {
            for file in plan.files where file.action != .unchanged && !file.diff.isEmpty {
                lines.append("")
                lines.append("    \(file.action == .create ? "new file" : "changes to") \(file.path) (mode \(file.mode)\(file.holdsSecrets ? ", holds secrets: values masked" : "")):")
                lines.append(indent(file.diff.hasSuffix("\n") ? String(file.diff.dropLast()) : file.diff, by: 6))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// `  gate config: PASS (15 checks: 15 PASS)`
    static func gateSummary(_ stage: MigrationStage, _ checks: [CheckResult]) -> String {
        let counts = CheckResult.Verdict.allCases.compactMap { verdict -> String? in
            let n = checks.filter { $0.verdict == verdict }.count
            return n == 0 ? nil : "\(n) \(verdict.rawValue)"
        }
        return "  gate \(stage): \(checks.worstVerdict.rawValue) (\(checks.count) check\(checks.count == 1 ? "" : "s")\(counts.isEmpty ? "" : ": " + counts.joined(separator: ", ")))"
    }

    /// VERDICT, CHECK, OBSERVED (long observations cut at `width`); then, for every check that
    /// did not pass, what was observed and expected in full and what to do.
    static func gateTable(_ checks: [CheckResult], width: Int = 90) -> String {
        let rows = checks.map { [$0.verdict.rawValue, $0.name, truncated($0.observed, to: width)] }
        var text = TextTable(header: ["VERDICT", "CHECK", "OBSERVED"], rows: rows).render()
        for check in checks where check.verdict == .fail || check.verdict == .warn {
            text += "\n\n\(check.verdict.rawValue) \(check.name)"
            text += "\n  observed: \(check.observed)"
            if let expected = check.expected { text += "\n  expected: \(expected)" }
            if let advice = check.advice { text += "\n  next:     \(advice)" }
        }
        return text
    }

    static func truncated(_ text: String, to width: Int) -> String {
        let flat = text.replacingOccurrences(of: "\n", with: " ")
        return flat.count <= width ? flat : String(flat.prefix(width - 1)) + "…"
    }

    static func indent(_ text: String, by count: Int) -> String {
        let pad = String(repeating: " ", count: count)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : pad + $0 }.joined(separator: "\n")
    }
}
