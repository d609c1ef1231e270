import ArgumentParser
import Migration

/// `pgha run PLAYBOOK`: the unattended migration.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the migration without questions (for automation).",
        discussion: """
            Runs every stage from the first one not done, in order, each followed by its gate. \
            It never asks, retries or skips: when a stage or its gate fails it applies the \
            playbook's on_failure (rollback, once something was changed; otherwise stop). \
            It stops before the first stage this version of pgha does not have yet (exit 5), or \
            after --until STAGE. If a migration is already saved in --state-dir it continues it. \
            With --json, standard output carries one JSON object per line: progress events \
            ({"event":"stage-started",…}, {"event":"gate",…}, …, {"event":"finished",…}) and, \
            last, {"event":"report","report":{…}} (the same document as `pgha status --json`); \
            errors are {"event":"error","code":…,"message":…,"exitCode":…}. \
            SIGINT/SIGTERM stop at the next safe point, save, and exit 130.

            \(MigrationHelp.exitCodes(MigrationHelp.runnerCodes))
            """
    )

    @Argument(help: "The playbook (YAML); see docs/PLAYBOOKS.md.")
    var playbook: String

    @OptionGroup var options: MigrationOptions
    @OptionGroup var output: JSONOutputOption
    @OptionGroup var until: UntilOption
    @OptionGroup var playbookChange: PlaybookChangeOption

    func run() async throws {
        let session = try MigrationSession.open(playbookPath: playbook, options: options, json: output.json)
        try await session.run(.forward(until: until.stage), command: "run", guided: false, allowPlaybookChange: playbookChange.accept)
    }
}
