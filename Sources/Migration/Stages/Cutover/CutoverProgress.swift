/// Where an interrupted cutover stands, from its journal: a pure function, tested for every
/// combination of steps (a kill -9 can land between any two).
///
/// The cutover has one point of no return: the step that lets the application write on the
/// cluster (`switch-application`). Before it, the single node holds every write and the cluster
/// none, so an interrupted cutover is either continued or undone without losing anything:
/// - nothing frozen yet: start (again) from the top;
/// - frozen, not promoted: the freeze has lasted who knows how long — unfreeze (the application
///   writes on the single node again), then start over;
/// - promoted (the cluster left the single node's timeline), not switched: continue — the single
///   node is still frozen and the cluster has every write; the freeze is bounded by the run's
///   own timeouts from here;
/// - promoted, and the freeze was undone (a failed attempt): the cluster can no longer follow the
///   single node — the stage fails, `pgha rollback` rebuilds from the start;
/// - switched: continue (the remaining steps are idempotent).
public enum CutoverProgress: Hashable, Sendable {
    case fresh
    case unfreezeThenStartOver
    case continueAfterPromotion
    case promotedButUnfrozen
    case continueAfterSwitch

    /// Steps whose being done means the single node (or PgBouncer) is frozen.
    public static let freezeSteps: Set<String> = ["pgbouncer-pause", "freeze-setting", "freeze-logins"]

    public static func of(_ steps: [MigrationState.StepRecord]) -> CutoverProgress {
        func last(_ name: String) -> MigrationState.StepRecord? { steps.last { $0.name == name && $0.phase != .abandoned } }
        // A step with only an intent may or may not have happened: for the freeze it is treated as
        // done (undoing a freeze that did not happen is harmless); for promotion and the switch
        // the stage looks at the world (they are checked again when continued).
        func happened(_ name: String) -> Bool {
            guard let step = last(name) else { return false }
            return step.phase == .done || step.phase == .intent
        }
        if happened("switch-application") { return .continueAfterSwitch }
        let frozen = freezeSteps.contains { happened($0) }
        if happened("promote") {
            return frozen ? .continueAfterPromotion : .promotedButUnfrozen
        }
        return frozen ? .unfreezeThenStartOver : .fresh
    }
}
