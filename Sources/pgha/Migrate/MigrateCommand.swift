import ArgumentParser
import Migration

/// `pgha migrate PLAYBOOK`: the guided migration.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Guided migration: shows the plan, explains each stage, asks before every change.",
        discussion: """
            Shows the stages (built or not yet), then for each stage its explanation, what it \
            checks and changes, the diff of every file it writes (passwords masked), and asks: \
            [y]es / [n]o (stop here; `pgha resume` continues) / [s]kip (asks for a reason and a \
            confirmation) / roll[b]ack (once something changed). It shows progress and the gate's \
            results; on a failure it offers [r]etry / [s]kip / roll[b]ack / [a]bort. Answers are \
            read line by line from standard input, so they can be scripted; at the end of the \
            input pgha takes the safe answer (stop) instead of waiting. If a migration is already \
            saved in --state-dir, it continues it (stages that passed are not repeated). \
            Ctrl-C (SIGINT) or SIGTERM stops at the next safe point, saves, and exits 130; a \
            second Ctrl-C leaves at once (still safe: every step is saved before it is made).

            \(MigrationHelp.exitCodes(MigrationHelp.runnerCodes))
            """
    )

    @Argument(help: "The playbook (YAML); see docs/PLAYBOOKS.md.")
    var playbook: String

    @OptionGroup var options: MigrationOptions
    @OptionGroup var until: UntilOption
    @OptionGroup var playbookChange: PlaybookChangeOption

    func run() async throws {
        let session = try MigrationSession.open(playbookPath: playbook, options: options, json: false)
        let out = session.output
        let stop = until.stage
        out.line("Guided migration. Before every stage you see what it checks and changes, and you are asked:")
        out.line("  y = run it, n = stop here (`pgha resume` continues later), s = skip it (asks for a reason).")
        out.line("Ctrl-C stops safely at any time; `pgha rollback` undoes what was done.")
        out.line()
        try await session.run(.forward(until: stop), command: "migrate", guided: true, allowPlaybookChange: playbookChange.accept)
    }
}
