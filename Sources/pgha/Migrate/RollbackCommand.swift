import ArgumentParser
import Migration

/// `pgha rollback`: undo the migration.
struct RollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Undo every stage that ran, last first, back to single-node mode.",
        discussion: """
            Reads the state in --state-dir and undoes every stage that ran and is not rolled back \
            yet, in reverse order: the config stage puts back every file it overwrote, byte for \
            byte with its mode, and removes the files it created; check-only stages have nothing \
            to undo. Interrupted (Ctrl-C, kill -9), it is finished by `pgha rollback` or `pgha \
            resume`. An undo failure stops the rollback (exit 8); fix the cause and run `pgha \
            rollback` again. Afterwards a new `pgha migrate` or `pgha run` starts from the \
            beginning.

            \(MigrationHelp.exitCodes([.success, .failure, .usage, .locked, .stateUnreadable, .rollbackFailed, .interrupted]))
            """
    )

    @OptionGroup var options: MigrationOptions
    @OptionGroup var output: JSONOutputOption
    @OptionGroup var playbookChange: PlaybookChangeOption

    func run() async throws {
        let (session, _) = try MigrationSession.openFromState(options: options, json: output.json)
        try await session.run(.rollback, command: "rollback", guided: false, allowPlaybookChange: playbookChange.accept)
    }
}
