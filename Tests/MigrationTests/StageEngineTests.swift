import Foundation
import Testing
@testable import Migration

/// The stage engine as pure values: every event in every state, then whole scenarios.
@Suite("StageEngine")
struct StageEngineTests {
    /// prerequisites and extensions only check; config and sync change things; shadow, cutover and
    /// complete are not built.
    static let plan: [StagePlanEntry] = [
        .init(stage: .prerequisites, isAvailable: true, makesChanges: false),
        .init(stage: .extensions, isAvailable: true, makesChanges: false),
        .init(stage: .config, isAvailable: true, makesChanges: true),
        .init(stage: .sync, isAvailable: true, makesChanges: true),
        .init(stage: .shadow, isAvailable: false, makesChanges: true),
        .init(stage: .cutover, isAvailable: false, makesChanges: true),
        .init(stage: .complete, isAvailable: false, makesChanges: true),
    ]

    static let pass = CheckResult.pass("c", observed: "ok", expected: "ok")
    static let warn = CheckResult(name: "w", verdict: .warn, observed: "meh", expected: "ok", advice: "look")
    static let fail = CheckResult.fail("c", observed: "bad", expected: "ok", advice: "fix")
    static let runFailure = StageFailure(kind: .run, message: "boom")

    // MARK: - Fixtures: an engine in each state

    enum Fixture: String, CaseIterable, CustomTestStringConvertible {
        case idle
        case confirmingFirst
        case runningFirst
        case gatingFirst
        case decidingFirst
        case confirmingAfterChange
        case decidingAfterChange
        case rollingBack
        case finished

        var testDescription: String { rawValue }

        /// The stage events refer to in this state.
        var stage: MigrationStage {
            switch self {
            case .idle, .finished, .confirmingFirst, .runningFirst, .gatingFirst, .decidingFirst: return .prerequisites
            case .confirmingAfterChange: return .sync
            case .decidingAfterChange, .rollingBack: return .config
            }
        }

        func make() -> StageEngine {
            var e = StageEngine(plan: StageEngineTests.plan)
            func step(_ event: EngineEvent) { _ = e.event(event) }
            switch self {
            case .idle:
                break
            case .confirmingFirst:
                step(.start)
            case .runningFirst:
                step(.start); step(.userDecision(.proceed))
            case .gatingFirst:
                step(.start); step(.userDecision(.proceed)); step(.stageRunSucceeded(.prerequisites))
            case .decidingFirst:
                step(.start); step(.userDecision(.proceed)); step(.stageRunFailed(.prerequisites, runFailure))
            case .confirmingAfterChange, .decidingAfterChange, .rollingBack:
                step(.start)
                for stage in [MigrationStage.prerequisites, .extensions] {
                    step(.userDecision(.proceed)); step(.stageRunSucceeded(stage)); step(.gateEvaluated(stage, [pass]))
                }
                step(.userDecision(.proceed))
                step(.stageRunSucceeded(.config))
                if self == .confirmingAfterChange {
                    step(.gateEvaluated(.config, [pass]))
                } else {
                    step(.gateEvaluated(.config, [fail]))
                    if self == .rollingBack { step(.userDecision(.rollback)) }
                }
            case .finished:
                step(.start); step(.userDecision(.stop))
            }
            return e
        }
    }

    enum Event: String, CaseIterable {
        case start, proceed, retry, skip, rollbackDecision, stop
        case runSucceeded, runSucceededOther, runFailed, runFailedOther
        case gatePass, gateWarn, gateFail, gateOther
        case rollbackRequested, undoSucceeded, undoFailed, undoOther, interrupted

        func make(_ stage: MigrationStage) -> EngineEvent {
            switch self {
            case .start: return .start
            case .proceed: return .userDecision(.proceed)
            case .retry: return .userDecision(.retry)
            case .skip: return .userDecision(.skip(reason: "not needed here"))
            case .rollbackDecision: return .userDecision(.rollback)
            case .stop: return .userDecision(.stop)
            case .runSucceeded: return .stageRunSucceeded(stage)
            case .runSucceededOther: return .stageRunSucceeded(.complete)
            case .runFailed: return .stageRunFailed(stage, runFailure)
            case .runFailedOther: return .stageRunFailed(.complete, runFailure)
            case .gatePass: return .gateEvaluated(stage, [pass])
            case .gateWarn: return .gateEvaluated(stage, [pass, warn])
            case .gateFail: return .gateEvaluated(stage, [pass, fail])
            case .gateOther: return .gateEvaluated(.complete, [pass])
            case .rollbackRequested: return .rollbackRequested
            case .undoSucceeded: return .undoSucceeded(stage)
            case .undoFailed: return .undoFailed(stage, reason: "disk full")
            case .undoOther: return .undoSucceeded(.complete)
            case .interrupted: return .interrupted
            }
        }
    }

    static let confirmFirstOptions: [DecisionOption] = [.proceed, .skip, .stop]

    /// The valid events of each state and what they produce; every other event must be refused.
    static let valid: [Fixture: [Event: EngineAction]] = [
        .idle: [
            .start: .confirm(.prerequisites, options: confirmFirstOptions),
            .rollbackRequested: .finish(.rolledBack(requested: true)),
            .interrupted: .finish(.interrupted(nil)),
        ],
        .confirmingFirst: [
            .proceed: .runStage(.prerequisites, attempt: 1),
            .skip: .confirm(.extensions, options: confirmFirstOptions),
            .stop: .finish(.declined(.prerequisites)),
            .interrupted: .finish(.interrupted(.prerequisites)),
        ],
        .runningFirst: [
            .runSucceeded: .evaluateGate(.prerequisites),
            .runFailed: .decide(.prerequisites, runFailure, options: [.retry, .skip, .stop]),
            .interrupted: .finish(.interrupted(.prerequisites)),
        ],
        .gatingFirst: [
            .gatePass: .confirm(.extensions, options: confirmFirstOptions),
            .gateWarn: .confirm(.extensions, options: confirmFirstOptions),
            .gateFail: .decide(.prerequisites, .gate([pass, fail]), options: [.retry, .skip, .stop]),
            .interrupted: .finish(.interrupted(.prerequisites)),
        ],
        .decidingFirst: [
            .retry: .runStage(.prerequisites, attempt: 2),
            .skip: .confirm(.extensions, options: confirmFirstOptions),
            .stop: .finish(.stoppedAfterFailure(.prerequisites)),
            .interrupted: .finish(.interrupted(.prerequisites)),
        ],
        .confirmingAfterChange: [
            .proceed: .runStage(.sync, attempt: 1),
            .skip: .finish(.stoppedBeforeUnbuiltStage(.shadow)),
            .stop: .finish(.declined(.sync)),
            .rollbackDecision: .undoStage(.config),
            .rollbackRequested: .undoStage(.config),
            .interrupted: .finish(.interrupted(.sync)),
        ],
        .decidingAfterChange: [
            .retry: .runStage(.config, attempt: 2),
            .skip: .confirm(.sync, options: [.proceed, .skip, .stop, .rollback]),
            .stop: .finish(.stoppedAfterFailure(.config)),
            .rollbackDecision: .undoStage(.config),
            .rollbackRequested: .undoStage(.config),
            .interrupted: .finish(.interrupted(.config)),
        ],
        .rollingBack: [
            .undoSucceeded: .undoStage(.extensions),
            .undoFailed: .finish(.rollbackFailed(.config)),
            .interrupted: .finish(.interrupted(.config)),
        ],
        .finished: [:],
    ]

    @Test("every event in every state", arguments: Fixture.allCases)
    func everyEventInEveryState(_ fixture: Fixture) {
        let expectations = Self.valid[fixture] ?? [:]
        for event in Event.allCases {
            var engine = fixture.make()
            let before = engine
            let action = engine.event(event.make(fixture.stage))
            if let expected = expectations[event] {
                #expect(action == expected, "\(fixture) + \(event)")
            } else {
                guard case .invalidEvent(let invalid) = action else {
                    Issue.record("\(fixture) + \(event): expected invalidEvent, got \(action)")
                    continue
                }
                #expect(engine == before, "\(fixture) + \(event): an invalid event must not change the engine")
                #expect(!invalid.description.isEmpty)
            }
        }
    }

    @Test("the fixtures are in the states they claim")
    func fixtureStates() {
        #expect(Fixture.idle.make().state == .idle)
        #expect(Fixture.confirmingFirst.make().state == .confirming(index: 0))
        #expect(Fixture.runningFirst.make().state == .running(index: 0))
        #expect(Fixture.gatingFirst.make().state == .gating(index: 0))
        #expect(Fixture.decidingFirst.make().state == .deciding(index: 0, failure: Self.runFailure))
        #expect(Fixture.confirmingAfterChange.make().state == .confirming(index: 3))
        #expect(Fixture.decidingAfterChange.make().state == .deciding(index: 2, failure: .gate([Self.fail])))
        #expect(Fixture.rollingBack.make().state == .rollingBack(index: 2, remaining: [1, 0], requested: false))
        #expect(Fixture.finished.make().state == .finished(.declined(.prerequisites)))
        #expect(Fixture.confirmingAfterChange.make().isRollbackAvailable)
        #expect(!Fixture.decidingFirst.make().isRollbackAvailable)
    }

    // MARK: - Scenarios

    /// Drives the engine, answering every confirm with proceed and every gate with `gate(stage)`.
    static func runForward(_ engine: inout StageEngine, gate: (MigrationStage) -> [CheckResult] = { _ in [pass] }) -> EngineAction {
        var action = engine.event(.start)
        while true {
            switch action {
            case .confirm: action = engine.event(.userDecision(.proceed))
            case .runStage(let s, _): action = engine.event(.stageRunSucceeded(s))
            case .evaluateGate(let s): action = engine.event(.gateEvaluated(s, gate(s)))
            case .decide, .undoStage, .finish, .invalidEvent: return action
            }
        }
    }

    @Test("a forward run stops before the first stage that is not built")
    func stopsBeforeUnbuiltStage() {
        var engine = StageEngine(plan: Self.plan)
        let action = Self.runForward(&engine)
        #expect(action == .finish(.stoppedBeforeUnbuiltStage(.shadow)))
        #expect(engine.records.map(\.status) == [.passed, .passed, .passed, .passed, .pending, .pending, .pending])
        #expect(engine.outcome?.exitCode == .stageNotBuilt)
    }

    @Test("until stops after the named stage, and a resumed engine continues after it")
    func until() {
        var engine = StageEngine(plan: Self.plan, until: .extensions)
        #expect(Self.runForward(&engine) == .finish(.reachedUntil(.extensions)))
        #expect(engine.record(of: .config)?.status == .pending)

        var resumed = StageEngine(plan: Self.plan, records: engine.records)
        #expect(resumed.event(.start) == .confirm(.config, options: Self.confirmFirstOptions))

        var already = StageEngine(plan: Self.plan, records: engine.records, until: .prerequisites)
        #expect(already.event(.start) == .finish(.reachedUntil(.prerequisites)))
    }

    @Test("every stage available and passing completes")
    func completes() {
        let all = MigrationStage.allCases.map { StagePlanEntry(stage: $0, isAvailable: true, makesChanges: false) }
        var engine = StageEngine(plan: all)
        #expect(Self.runForward(&engine) == .finish(.completed))
        #expect(engine.records.allSatisfy { $0.status == .passed })
        var again = StageEngine(plan: all, records: engine.records)
        #expect(again.event(.start) == .finish(.completed))
    }

    @Test("a stage that does not apply is skipped with its reason, without asking; until on it stops there")
    func notApplicableIsSkipped() {
        let all = MigrationStage.allCases.map {
            StagePlanEntry(stage: $0, isAvailable: true, makesChanges: false, notApplicable: $0 == .shadow ? "not for this method" : nil)
        }
        var engine = StageEngine(plan: all)
        var confirmed: [MigrationStage] = []
        var action = engine.event(.start)
        while case .confirm(let stage, _) = action {
            confirmed.append(stage)
            action = engine.event(.userDecision(.proceed))
            if case .runStage = action { action = engine.event(.stageRunSucceeded(stage)) }
            if case .evaluateGate = action { action = engine.event(.gateEvaluated(stage, [])) }
        }
        #expect(action == .finish(.completed))
        #expect(!confirmed.contains(.shadow) && confirmed.contains(.cutover))
        #expect(engine.record(of: .shadow)?.status == .skipped(reason: "not for this method"))
        #expect(engine.records.filter { $0.stage != .shadow }.allSatisfy { $0.status == .passed })

        var until = StageEngine(plan: all, until: .shadow)
        #expect(Self.runForward(&until) == .finish(.reachedUntil(.shadow)))
        #expect(until.record(of: .cutover)?.status == .pending)
    }

    @Test("gate results are recorded with warnings; a FAIL fails the stage with the checks")
    func gateResults() {
        var engine = StageEngine(plan: Self.plan)
        let action = Self.runForward(&engine) { $0 == .extensions ? [Self.warn, Self.fail] : [Self.pass, Self.warn] }
        #expect(action == .decide(.extensions, .gate([Self.warn, Self.fail]), options: [.retry, .skip, .stop]))
        #expect(engine.record(of: .prerequisites)?.gate == [Self.pass, Self.warn])
        #expect(engine.record(of: .prerequisites)?.status == .passed)
        #expect(engine.record(of: .extensions)?.status == .failed(reason: "gate failed: c"))
    }

    @Test("a run resumed after a crash re-runs the interrupted stage")
    func resumeAfterCrash() {
        var engine = StageEngine(plan: Self.plan)
        _ = engine.event(.start)
        _ = engine.event(.userDecision(.proceed))
        _ = engine.event(.stageRunSucceeded(.prerequisites))
        _ = engine.event(.gateEvaluated(.prerequisites, [Self.pass]))
        _ = engine.event(.userDecision(.proceed))
        // Crash while extensions runs: the saved records say running, attempt 1.
        #expect(engine.record(of: .extensions) == EngineStageRecord(stage: .extensions, status: .running, attempts: 1))

        var resumed = StageEngine(plan: Self.plan, records: engine.records)
        #expect(resumed.event(.start) == .confirm(.extensions, options: Self.confirmFirstOptions))
        #expect(resumed.event(.userDecision(.proceed)) == .runStage(.extensions, attempt: 2))
    }

    @Test("rollback undoes every stage that ran, last first, and marks them rolled back")
    func rollbackOrder() {
        var engine = Fixture.confirmingAfterChange.make()
        var undone: [MigrationStage] = []
        var action = engine.event(.userDecision(.rollback))
        while case .undoStage(let stage) = action {
            undone.append(stage)
            action = engine.event(.undoSucceeded(stage))
        }
        #expect(undone == [.config, .extensions, .prerequisites])
        #expect(action == .finish(.rolledBack(requested: false)))
        #expect(engine.records.prefix(3).allSatisfy { $0.status == .rolledBack })
        #expect(engine.records[3].status == .pending)
        #expect(!engine.isRollbackAvailable)

        // Rolling back again has nothing to do; a new forward run starts from the beginning.
        var again = StageEngine(plan: Self.plan, records: engine.records)
        #expect(again.event(.rollbackRequested) == .finish(.rolledBack(requested: true)))
        var forward = StageEngine(plan: Self.plan, records: engine.records)
        #expect(forward.event(.start) == .confirm(.prerequisites, options: Self.confirmFirstOptions))
        #expect(forward.event(.userDecision(.proceed)) == .runStage(.prerequisites, attempt: 2))
    }

    @Test("an undo failure stops the rollback; requesting it again resumes where it failed")
    func undoFailure() {
        var engine = Fixture.rollingBack.make()
        #expect(engine.event(.undoSucceeded(.config)) == .undoStage(.extensions))
        #expect(engine.event(.undoFailed(.extensions, reason: "x")) == .finish(.rollbackFailed(.extensions)))
        #expect(engine.record(of: .extensions)?.status == .failed(reason: "undo failed: x"))
        #expect(engine.outcome?.exitCode == .rollbackFailed)

        var again = StageEngine(plan: Self.plan, records: engine.records)
        #expect(again.event(.rollbackRequested) == .undoStage(.extensions))
        #expect(again.event(.undoSucceeded(.extensions)) == .undoStage(.prerequisites))
        #expect(again.event(.undoSucceeded(.prerequisites)) == .finish(.rolledBack(requested: true)))
    }

    @Test("a skipped stage keeps its reason and is undone on rollback if it had run")
    func skip() {
        var engine = Fixture.decidingAfterChange.make()
        _ = engine.event(.userDecision(.skip(reason: "files installed by hand")))
        #expect(engine.record(of: .config)?.status == .skipped(reason: "files installed by hand"))
        #expect(engine.event(.rollbackRequested) == .undoStage(.config))
    }

    @Test("records of stages outside the plan are ignored; missing ones start pending")
    func recordsMerge() {
        let plan = [StagePlanEntry(stage: .config, isAvailable: true, makesChanges: true)]
        let engine = StageEngine(plan: plan, records: [
            EngineStageRecord(stage: .prerequisites, status: .passed, attempts: 1),
        ])
        #expect(engine.records == [EngineStageRecord(stage: .config)])
    }

    @Test("outcomes map to the documented exit codes")
    func exitCodes() {
        #expect(MigrationOutcome.completed.exitCode.rawValue == 0)
        #expect(MigrationOutcome.reachedUntil(.config).exitCode.rawValue == 0)
        #expect(MigrationOutcome.stoppedAfterFailure(.config).exitCode.rawValue == 3)
        #expect(MigrationOutcome.rolledBack(requested: false).exitCode.rawValue == 4)
        #expect(MigrationOutcome.rolledBack(requested: true).exitCode.rawValue == 0)
        #expect(MigrationOutcome.stoppedBeforeUnbuiltStage(.sync).exitCode.rawValue == 5)
        #expect(MigrationOutcome.rollbackFailed(.config).exitCode.rawValue == 8)
        #expect(MigrationOutcome.declined(.config).exitCode.rawValue == 9)
        #expect(MigrationOutcome.interrupted(nil).exitCode.rawValue == 130)
        #expect(MigrationError(.locked, "x").exitCode.rawValue == 6)
        #expect(MigrationError(.stateTooNew, "x").exitCode.rawValue == 7)
        #expect(MigrationError(.playbookInvalid, "x").exitCode.rawValue == 2)
        #expect(Set(MigrationExitCode.allCases.map(\.rawValue)).count == MigrationExitCode.allCases.count)
    }

    @Test("statuses and outcomes survive JSON", arguments: [
        MigrationOutcome.completed, .reachedUntil(.config), .stoppedBeforeUnbuiltStage(.sync), .stoppedAfterFailure(.extensions),
        .declined(.config), .rolledBack(requested: true), .rolledBack(requested: false), .rollbackFailed(.config),
        .interrupted(nil), .interrupted(.config),
    ])
    func outcomeCodable(_ outcome: MigrationOutcome) throws {
        let data = try JSONEncoder().encode(outcome)
        #expect(try JSONDecoder().decode(MigrationOutcome.self, from: data) == outcome)
        for status in [StageStatus.pending, .running, .passed, .failed(reason: "r"), .rolledBack, .skipped(reason: "s")] {
            let encoded = try JSONEncoder().encode(status)
            #expect(try JSONDecoder().decode(StageStatus.self, from: encoded) == status)
        }
    }
}

@Suite("Stage engine: the forecast pgha plan shows")
struct StageEngineForecastTests {
    let plan: [StagePlanEntry] = [
        .init(stage: .prerequisites, isAvailable: true, makesChanges: false),
        .init(stage: .extensions, isAvailable: true, makesChanges: false),
        .init(stage: .config, isAvailable: true, makesChanges: true),
        .init(stage: .sync, isAvailable: false, makesChanges: true),
        .init(stage: .shadow, isAvailable: true, makesChanges: false),
    ]

    @Test("a fresh run runs the built stages and stops before the first unbuilt one")
    func fresh() {
        let f = StageEngine.forecast(plan: plan)
        #expect(f.wouldRun == [.prerequisites, .extensions, .config] && f.stopsBefore == .sync)
    }

    @Test("stages already done are not run again; --until ends the forecast")
    func doneAndUntil() {
        let done = [EngineStageRecord(stage: .prerequisites, status: .passed, attempts: 1), EngineStageRecord(stage: .extensions, status: .passed, attempts: 1)]
        #expect(StageEngine.forecast(plan: plan, records: done) == .init(wouldRun: [.config], stopsBefore: .sync))
        #expect(StageEngine.forecast(plan: plan, until: .extensions) == .init(wouldRun: [.prerequisites, .extensions], stopsBefore: nil))
        let built = plan.map { StagePlanEntry(stage: $0.stage, isAvailable: true, makesChanges: $0.makesChanges) }
        #expect(StageEngine.forecast(plan: built) == .init(wouldRun: plan.map(\.stage), stopsBefore: nil))
        let all = plan.map { EngineStageRecord(stage: $0.stage, status: .passed, attempts: 1) }
        #expect(StageEngine.forecast(plan: built, records: all) == .init(wouldRun: [], stopsBefore: nil))
    }
}
