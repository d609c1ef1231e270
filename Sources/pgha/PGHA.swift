import ArgumentParser

/// The `pgha` command-line tool: the root command. Each area (sandbox, verify, migrate…) lives in
/// its own folder under `Sources/pgha/` with one `ParsableCommand` per subcommand.
@main
struct PGHA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pgha",
        abstract: "Move a PostgreSQL application from a single node to a Patroni HA cluster.",
        discussion: """
            pgha has three parts: an HA connection-pool library, a verification suite and a \
            migration orchestrator. `pgha sandbox` runs a local rehearsal system: a single \
            PostgreSQL node (the "before") and a three-member Patroni cluster on etcd (the "after").
            """,
        version: PGHAVersion.current,
        subcommands: PGHA.commands
    )

    /// Every top-level command, in help order. To add one, write its file (e.g.
    /// `Sources/pgha/Verify/VerifyCommand.swift`) and append its type here.
    static var commands: [any ParsableCommand.Type] {
        [
            SandboxCommand.self,
            HealthCommand.self,
            VerifyCommand.self,
            BenchCommand.self,
            PlanCommand.self,
            MigrateCommand.self,
            RunCommand.self,
            StatusCommand.self,
            ResumeCommand.self,
            RollbackCommand.self,
            CompareCommand.self,
            WorkloadCommand.self,
        ]
    }
}
