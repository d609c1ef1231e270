/// The stage executors this version of pgha ships, in migration order: `prerequisites`,
/// `extensions`, `config`, `sync`, `shadow`, `cutover`, `complete` (the physical method). A stage
/// whose executor does not support the playbook (`sync`, `cutover` and `complete` with
/// `method: logical`) appears in every plan as "not built yet", and a run stops before it.
///
/// The CLI hands this list to `MigrationRunner.Configuration(executors:)`.
public enum StandardStages {
    /// Every built stage, in order.
    /// - Throws: `.templateInvalid` if the templates compiled into pgha do not parse (a broken
    ///   build; a unit test guards against it).
    public static func executors() throws(MigrationError) -> [any MigrationStageExecutor] {
        [PrerequisitesStage(), ExtensionsStage(), try ConfigStage(), SyncStage(), ShadowStage(), CutoverStage(), CompleteStage()]
    }
}
