/// The stage executors this version of pgha ships, in migration order: `prerequisites`,
/// `extensions`, `config`, `sync` (physical method). Stages without an executor (`shadow`,
/// `cutover`, `complete`), or whose executor does not support the playbook (`sync` with
/// `method: logical`), appear in every plan as "not built yet", and a run stops before the first.
///
/// The CLI hands this list to `MigrationRunner.Configuration(executors:)`.
public enum StandardStages {
    /// Every built stage, in order.
    /// - Throws: `.templateInvalid` if the templates compiled into pgha do not parse (a broken
    ///   build; a unit test guards against it).
    public static func executors() throws(MigrationError) -> [any MigrationStageExecutor] {
        [PrerequisitesStage(), ExtensionsStage(), try ConfigStage(), SyncStage()]
    }
}
