import ArgumentParser
import Migration

/// `pgha resume`: continue a saved migration.
struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue the saved migration after a crash, Ctrl-C, kill -9, a failure or --until.",
        discussion: """
            Reads the state in --state-dir and the playbook it names, and continues from the last \
            completed step: a stage found "running" (the runner was interrupted inside it) runs \
            again, its finished steps are recognised and not repeated (every step is idempotent). \
            An interrupted rollback is finished first; after a finished rollback there is nothing \
            to resume (exit 0; `pgha migrate` or `pgha run` start again). Without --guided or \
            --unattended it does what the last run did (recorded in the state file): it asks before \
            each stage after `pgha migrate` or `pgha resume --guided`, and runs unattended after \
            `pgha run` or `pgha resume --unattended`.

            \(MigrationHelp.exitCodes(MigrationHelp.runnerCodes))
            """
    )

    @OptionGroup var options: MigrationOptions
    @OptionGroup var output: JSONOutputOption
    @OptionGroup var until: UntilOption
    @OptionGroup var playbookChange: PlaybookChangeOption

    @Flag(name: .long, help: "Ask before each stage, like `pgha migrate`.")
    var guided = false

    @Flag(name: .long, help: "Do not ask; apply the playbook's on_failure, like `pgha run`.")
    var unattended = false

    func validate() throws {
        if guided && unattended { throw ValidationError("--guided and --unattended exclude each other") }
        if guided && output.json { throw ValidationError("--json is for unattended runs; it cannot be combined with --guided") }
    }

    func run() async throws {
        let (session, state) = try MigrationSession.openFromState(options: options, json: output.json)
        if state.direction == .forward, case .rolledBack? = state.lastOutcome {
            // A finished rollback is not something to continue: starting the migration over is a
            // decision for `pgha migrate` / `pgha run`, not a side effect of "resume".
            let out = session.output
            if output.json {
                out.jsonLine(ReportLine(report: MigrationReport(state: state, store: session.store)))
            } else {
                out.line("Nothing to resume: the migration was rolled back and the application is in single-node mode.")
                out.line("`pgha migrate \(StateStore.shellQuoted(state.resolvedPlaybookPath))\(session.store.directoryArgument)` (or `pgha run`) starts it again.")
            }
            return
        }
        // As the last run that recorded its mode (files from before: how the migration was started).
        let lastGuided = state.runs.last { $0.guided != nil }?.guided
            ?? (state.runs.last { $0.command == "migrate" || $0.command == "run" }?.command == "migrate")
        let ask = guided || (!unattended && !output.json && lastGuided)
        try await session.run(.resume(until: until.stage), command: "resume", guided: ask, allowPlaybookChange: playbookChange.accept)
    }
}
