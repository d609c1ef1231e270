import Foundation
import Logging
import Synchronization
import Testing
@testable import Migration

@Suite("Stage protocol: progress, waits, cancellation, the sleeping clock")
struct StageProtocolTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("a transfer's rate and ETA come from the samples of the last window")
    func transferMeter() {
        var meter = ProgressMeter(window: 10)
        let first = meter.transfer(task: "copy", title: "initial copy", unit: .bytes, done: 0, total: 1000, at: t0)
        #expect(first.ratePerSecond == nil && first.etaSeconds == nil && first.fraction == 0)
        let second = meter.transfer(task: "copy", title: "initial copy", unit: .bytes, done: 200, total: 1000, at: t0 + 2)
        #expect(second.ratePerSecond == 100)
        #expect(second.etaSeconds == 8)
        #expect(second.fraction == 0.2)
        // A stall: 20 s later still 200 bytes. Old samples leave the window, the rate drops to 0, no ETA.
        _ = meter.transfer(task: "copy", title: "initial copy", unit: .bytes, done: 200, total: 1000, at: t0 + 12)
        let stalled = meter.transfer(task: "copy", title: "initial copy", unit: .bytes, done: 200, total: 1000, at: t0 + 22)
        #expect(stalled.ratePerSecond == 0)
        #expect(stalled.etaSeconds == nil)
        let done = meter.transfer(task: "copy", title: "initial copy", unit: .bytes, done: 1000, total: 1000, at: t0 + 23)
        #expect(done.isDone && done.etaSeconds == 0)
    }

    @Test("a gauge reports how fast the value falls and when it reaches its target; rising has no ETA")
    func gaugeMeter() {
        var meter = ProgressMeter()
        _ = meter.gauge(task: "lag:ha2", title: "lag ha2", unit: .bytes, value: 5000, target: 1000, at: t0)
        let falling = meter.gauge(task: "lag:ha2", title: "lag ha2", unit: .bytes, value: 3000, target: 1000, at: t0 + 1)
        #expect(falling.ratePerSecond == 2000)
        #expect(falling.etaSeconds == 1)
        #expect(!falling.isDone)
        let rising = meter.gauge(task: "lag:ha2", title: "lag ha2", unit: .bytes, value: 9000, target: 1000, at: t0 + 2)
        #expect(rising.ratePerSecond! < 0)
        #expect(rising.etaSeconds == nil)
        let caughtUp = meter.gauge(task: "lag:ha2", title: "lag ha2", unit: .bytes, value: 800, target: 1000, at: t0 + 3)
        #expect(caughtUp.isDone && caughtUp.etaSeconds == 0)
    }

    @Test("a wait is saved at once, its changing detail at most every persistInterval, and cleared when over")
    func waitsArePersisted() async throws {
        let dir = try TempDirectory("waits")
        defer { dir.cleanup() }
        let clock = FakeClock(tick: 1)
        let store = StateStore(directory: dir.file(".pgha"))
        let state = MigrationState(toolVersion: "t", playbook: .init(path: "p.yml", sha256: "x", name: "p"), workingDirectory: dir.path, now: clock.now())
        let writes = Mutex(0)
        let journal = StateJournal(state: state, clock: clock) { (s: MigrationState) throws(MigrationError) in
            writes.withLock { $0 += 1 }
            try store.save(s, redactor: .none)
        }
        let observer = CollectingObserver()
        let activity = StageActivity(stage: .sync, journal: journal, observer: observer, redactor: SecretRedactor(secrets: ["hunter2-secret"]), clock: clock, persistInterval: 5)
        try activity.waiting("the standby cluster to appear", detail: "no REST host answers (password hunter2-secret)")
        var saved = try store.load().stage(.sync).waiting
        #expect(saved?.what == "the standby cluster to appear")
        #expect(saved?.detail?.contains("hunter2-secret") == false)
        let since = saved?.since
        let afterFirst = writes.withLock { $0 }
        // The same wait with a new detail one (fake) second later: announced, not saved yet.
        try activity.waiting("the standby cluster to appear", detail: "1 of 3 REST hosts answer")
        #expect(writes.withLock { $0 } == afterFirst)
        try await clock.sleep(for: .seconds(6))
        try activity.waiting("the standby cluster to appear", detail: "3 of 3 REST hosts answer")
        #expect(writes.withLock { $0 } == afterFirst + 1)
        saved = try store.load().stage(.sync).waiting
        #expect(saved?.since == since && saved?.detail == "3 of 3 REST hosts answer")
        // Something else awaited: saved at once, with a new `since`.
        try activity.waiting("replay lag ≤ 1.0 MB on every member")
        #expect(try store.load().stage(.sync).waiting?.what == "replay lag ≤ 1.0 MB on every member")
        try activity.doneWaiting()
        #expect(try store.load().stage(.sync).waiting == nil)
        let events = observer.all.compactMap { event -> String? in
            switch event {
            case .stageWaiting(_, let w): return "waiting \(w.what)"
            case .stageWaitEnded: return "ended"
            default: return nil
            }
        }
        #expect(events == [
            "waiting the standby cluster to appear", "waiting the standby cluster to appear", "waiting the standby cluster to appear",
            "waiting replay lag ≤ 1.0 MB on every member", "ended",
        ])
        #expect(observer.jsonLines.allSatisfy { !$0.contains("hunter2-secret") })
    }

    @Test("cancel() runs every registered handler once, and a handler registered after it at once")
    func cancellationHandlers() {
        let flag = CancellationFlag()
        let calls = Mutex<[String]>([])
        flag.onCancel { calls.withLock { $0.append("a") } }
        let token = flag.onCancel { calls.withLock { $0.append("removed") } }
        flag.remove(token)
        flag.onCancel { calls.withLock { $0.append("b") } }
        flag.cancel()
        flag.cancel()
        #expect(calls.withLock { $0.sorted() } == ["a", "b"])
        flag.onCancel { calls.withLock { $0.append("late") } }
        #expect(calls.withLock { $0.last } == "late")
    }

    @Test("context.sleep moves the fake clock without sleeping and turns cancellation into .interrupted")
    func contextSleep() async throws {
        let dir = try TempDirectory("sleep")
        defer { dir.cleanup() }
        let clock = FakeClock(tick: 0)
        let flag = CancellationFlag()
        let context = StageContext(
            playbook: try samplePlaybook(), playbookPath: "p.yml", workingDirectory: dir.path, store: StateStore(directory: dir.path),
            environment: StaticEnvironment([:]), redactor: .none, journal: nil, clock: clock, cancellation: flag, logger: Logger(label: "t"))
        let before = clock.now()
        for _ in 0..<3600 { try await context.sleep(for: .seconds(1)) }
        #expect(clock.now().timeIntervalSince(before) == 3600)
        flag.cancel()
        await #expect(throws: MigrationError.self) { try await context.sleep(for: .seconds(1)) }
    }

    @Test("SIGINT during a stage cancels the stage's task itself, not only at its next check", .timeLimit(.minutes(1)))
    func cancelsRunningWork() async throws {
        let dir = try TempDirectory("cancel-work")
        defer { dir.cleanup() }
        try dir.write("playbook.yml", samplePlaybookYAML(onFailure: "stop"))
        let playbook = try PlaybookParser.load(path: dir.file("playbook.yml"))
        let flag = CancellationFlag()
        let started = Mutex(false)
        let blocking = BlockingStage { started.withLock { $0 = true } }
        let runner = MigrationRunner(MigrationRunner.Configuration(
            playbook: playbook, store: StateStore(directory: dir.file(".pgha")),
            executors: [blocking], environment: StaticEnvironment(sampleSecrets),
            decider: NonInteractiveDecider(onFailure: .stop), clock: FakeClock(), cancellation: flag,
            toolVersion: "t", workingDirectory: dir.path))
        let run = Task { try await runner.run(.forward(until: nil), command: "run") }
        while !started.withLock({ $0 }) { await Task.yield() }
        flag.cancel()
        let outcome = try await run.value
        #expect(outcome == .interrupted(.prerequisites))
        #expect(blocking.sawCancellation)
    }
}

/// A stage whose run waits until its task is cancelled (it never polls a flag).
final class BlockingStage: MigrationStageExecutor {
    let stage = MigrationStage.prerequisites
    let makesChanges = false
    private let onStart: @Sendable () -> Void
    private let cancelled = Mutex(false)

    init(onStart: @escaping @Sendable () -> Void) { self.onStart = onStart }

    var sawCancellation: Bool { cancelled.withLock { $0 } }

    func plan(_ context: StageContext) async throws -> StagePlan { StagePlan(stage: stage, makesChanges: false) }
    func run(_ context: StageContext) async throws {
        onStart()
        let stream = AsyncStream<Never> { _ in }
        for await _ in stream {}
        // The stream ends only when the task is cancelled.
        cancelled.withLock { $0 = Task.isCancelled }
        throw CancellationError()
    }
    func gate(_ context: StageContext) async throws -> [CheckResult] { [] }
    func undo(_ context: StageContext) async throws {}
}
