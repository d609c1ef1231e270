import ArgumentParser
import Foundation
import Migration

/// `pgha plan PLAYBOOK`: the dry run.
struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Dry run: everything the migration would check and change, changing nothing.",
        discussion: """
            Validates the playbook (every problem at once, with line and column), then shows each \
            stage: what it checks, what it changes (with a unified diff per generated file; \
            password values masked), how it is undone, warnings such as an unset ${VAR}, and \
            the stages not built yet. If a migration is saved in --state-dir, stages already done \
            are marked. It takes no lock and writes nothing: no state directory, no state file, \
            no output file. With --json it prints one JSON document.

            \(MigrationHelp.exitCodes([.success, .failure, .usage, .stateUnreadable]))
            """
    )

    @Argument(help: "The playbook (YAML); see docs/PLAYBOOKS.md.")
    var playbook: String

    @OptionGroup var options: MigrationOptions
    @OptionGroup var output: JSONOutputOption

    func run() async throws {
        let session = try MigrationSession.open(playbookPath: playbook, options: options, json: output.json)
        let out = session.output
        let state: MigrationState?
        do {
            state = try session.store.loadIfPresent()
        } catch {
            throw out.fail(error, next: "`pgha plan` reads the saved state to mark the stages already done; fix or move \(session.store.stateFile) aside")
        }
        let runner = try session.runner(
            decider: NonInteractiveDecider(onFailure: session.playbook.playbook.onFailure), observer: SilentObserver(),
            cancellation: CancellationFlag(), allowPlaybookChange: false)
        let plans = await runner.plan()
        // The engine itself says what a run would do (every stage passing).
        let forecast = StageEngine.forecast(plan: runner.planEntries, records: state?.engineRecords ?? [])

        if output.json {
            out.jsonLine(PlanDocument(
                playbook: .init(path: session.playbook.path, sha256: session.playbook.sha256, name: session.playbook.playbook.name),
                stateFile: session.store.stateFile, savedState: state != nil,
                stages: plans.map { PlanDocument.Stage(plan: $0, status: state?.stage($0.stage).status.name ?? "pending") },
                wouldRun: forecast.wouldRun.map(\.rawValue), stopsBefore: forecast.stopsBefore?.rawValue,
                finishesRollbackFirst: state?.direction == .rollback))
            return
        }
        out.line("plan for '\(session.playbook.playbook.name)' (\(session.playbook.path), sha256 \(session.playbook.sha256.prefix(12))…)")
        out.line("state: \(session.store.stateFile)" + (state == nil ? " (none yet: a run starts from the first stage)" : ""))
        if let state, state.playbook.sha256 != session.playbook.sha256 {
            out.line("warning: the playbook changed since the saved migration started; a run needs --accept-playbook-change")
        }
        out.line()
        out.line(MigrationRenderer.stageTable(plan: runner.planEntries, state: state))
        for plan in plans {
            out.line()
            out.line(MigrationRenderer.render(plan, detailed: true, status: state?.stage(plan.stage).status))
        }
        out.line()
        if state?.direction == .rollback {
            out.line("A rollback was interrupted: `pgha run` or `pgha resume` finish it first.")
        }
        if forecast.wouldRun.isEmpty {
            out.line("`pgha run` would run no stage.")
        } else {
            out.line("`pgha run` would run: " + forecast.wouldRun.map(\.rawValue).joined(separator: ", ") + ".")
        }
        if let stop = forecast.stopsBefore {
            out.line("It would stop before '\(stop)': this version of pgha cannot run it for this playbook (exit 5; its plan above says why).")
        }
        out.line("Nothing was changed.")
    }

    struct PlanDocument: Encodable {
        struct Stage: Encodable {
            var plan: StagePlan
            var status: String
        }

        var playbook: MigrationState.PlaybookReference
        var stateFile: String
        var savedState: Bool
        var stages: [Stage]
        var wouldRun: [String]
        var stopsBefore: String?
        var finishesRollbackFirst: Bool
    }
}
