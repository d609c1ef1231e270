import Foundation
import Testing
@testable import Migration

@Suite("Cutover: where an interrupted cutover stands")
struct CutoverProgressTests {
    func steps(_ spec: [(String, MigrationState.StepPhase)]) -> [MigrationState.StepRecord] {
        spec.enumerated().map { i, s in
            .init(id: i + 1, stage: .cutover, name: s.0, phase: s.1, detail: s.0, intendedAt: Date(timeIntervalSince1970: 0))
        }
    }

    @Test("every prefix of the cutover's journal, with its last step as intent or done, maps to one safe way on")
    func everyPrefix() {
        let order = ["guardrails", "replica-identity:db.t", "prepare-tables", "pgbouncer-pause", "freeze-setting", "freeze-logins",
                     "terminate-sessions", "final-lsn", "promote", "cluster-logins", "publication:db", "switch-application",
                     "subscription:db", "canary:db"]
        for n in 0...order.count {
            for lastPhase in [MigrationState.StepPhase.intent, .done] where n > 0 || lastPhase == .done {
                var spec = order.prefix(n).map { ($0, MigrationState.StepPhase.done) }
                if n > 0 { spec[n - 1].1 = lastPhase }
                let progress = CutoverProgress.of(steps(spec))
                let names = Set(spec.map(\.0))
                let expected: CutoverProgress
                if names.contains("switch-application") { expected = .continueAfterSwitch }
                else if names.contains("promote") { expected = .continueAfterPromotion }
                else if !names.isDisjoint(with: CutoverProgress.freezeSteps) { expected = .unfreezeThenStartOver }
                else { expected = .fresh }
                #expect(progress == expected, "after \(spec.last.map { "\($0.0) (\($0.1))" } ?? "nothing")")
            }
        }
    }

    @Test("an undone freeze (a failed attempt) means nothing is frozen; after a promotion that is a dead end")
    func undoneFreeze() {
        #expect(CutoverProgress.of(steps([("pgbouncer-pause", .undone), ("freeze-setting", .undone)])) == .fresh)
        #expect(CutoverProgress.of(steps([("freeze-setting", .undone), ("promote", .done)])) == .promotedButUnfrozen)
        #expect(CutoverProgress.of(steps([("freeze-setting", .abandoned)])) == .fresh)
        // A later attempt's freeze counts, whatever an earlier one did.
        #expect(CutoverProgress.of(steps([("freeze-setting", .undone), ("freeze-setting", .done)])) == .unfreezeThenStartOver)
    }
}
