import Foundation
import Logging
import Synchronization
import Testing
@testable import Migration

/// Collects every log line with its metadata.
struct CollectingLogHandler: LogHandler {
    final class Store: Sendable {
        let lines = Mutex<[String]>([])
    }

    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init(store: Store) { self.store = store }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let line = "\(event.level) \(event.message) \(all.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " "))"
        store.lines.withLock { $0.append(line) }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}

@Suite("MigrationRunner")
struct MigrationRunnerTests {
    /// A working directory with a playbook, two pre-existing output files, and a runner factory.
    struct Fixture {
        let dir: TempDirectory
        let playbook: LoadedPlaybook
        let store: StateStore
        let observer = CollectingObserver()
        let logs = CollectingLogHandler.Store()

        init(onFailure: String = "rollback") throws {
            dir = try TempDirectory("runner")
            try dir.write("playbook.yml", samplePlaybookYAML(onFailure: onFailure))
            try dir.write("out/app.env", "PROJECT_DB_PASSWORD=before-Secret-1\n", mode: 0o640)
            try dir.write("out/haproxy.cfg", "# the old haproxy.cfg\n", mode: 0o644)
            playbook = try PlaybookParser.load(path: dir.file("playbook.yml"))
            store = StateStore(directory: dir.file(".pgha"))
        }

        func runner(
            executors: [any MigrationStageExecutor]? = nil, decider: (any MigrationDecider)? = nil,
            cancellation: CancellationFlag = CancellationFlag(), playbook: LoadedPlaybook? = nil,
            allowPlaybookChange: Bool = false, crashAt: Int? = nil
        ) throws -> MigrationRunner {
            let logs = self.logs
            var configuration = MigrationRunner.Configuration(
                playbook: playbook ?? self.playbook, store: store,
                executors: try executors ?? [FakeStage(.prerequisites), FakeStage(.extensions), ConfigStage()],
                environment: StaticEnvironment(sampleSecrets),
                decider: decider ?? NonInteractiveDecider(onFailure: (playbook ?? self.playbook).playbook.onFailure),
                observer: observer, clock: FakeClock(), cancellation: cancellation,
                logger: Logger(label: "test") { _ in CollectingLogHandler(store: logs) },
                toolVersion: "0.1.0-test", workingDirectory: dir.path, allowPlaybookChange: allowPlaybookChange
            )
            if let crashAt { configuration.simulatedCrash = { $0 >= crashAt } }
            return MigrationRunner(configuration)
        }

        /// The generated files and the pre-existing ones (not the state directory).
        func outputs() throws -> [String: FileSnapshot] { try dir.snapshot(excluding: [".pgha", "playbook.yml"]) }
    }

    /// What must be equal between an interrupted-and-resumed run and an uninterrupted one.
    struct Normalized: Equatable {
        var stages: [String]
        var files: [String]
        var steps: [String]
        var outcome: MigrationOutcome?
        var direction: MigrationState.Direction

        init(_ s: MigrationState) {
            stages = s.stages.map { "\($0.stage) \($0.status.name) gate=\($0.gate.map(\.verdict.rawValue).joined(separator: ","))" }
            let finalRecords = Dictionary(grouping: s.files.filter { $0.phase != .abandoned }, by: \.path).mapValues { $0.max { $0.id < $1.id }! }
            files = finalRecords.values.map { "\($0.key) \($0.phase) \($0.sha256After)" }.sorted()
            steps = Dictionary(grouping: s.steps.filter { $0.phase != .abandoned }, by: \.name).mapValues { $0.max { $0.id < $1.id }!.phase }
                .map { "\($0.key) \($0.value)" }.sorted()
            outcome = s.lastOutcome
            direction = s.direction
        }
    }

    @Test("a forward run does prerequisites, extensions and config, then stops before sync (not built)")
    func forwardRun() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let outcome = try await f.runner().run(.forward(until: nil), command: "run")
        #expect(outcome == .stoppedBeforeUnbuiltStage(.sync))
        #expect(outcome.exitCode == .stageNotBuilt)
        let state = try f.store.load()
        #expect(state.stages.map(\.status.name) == ["passed", "passed", "passed", "pending", "pending", "pending", "pending"])
        #expect(state.stage(.config).startedAt != nil && state.stage(.config).finishedAt != nil)
        #expect(state.stage(.config).gate.count == 12)
        #expect(state.lastOutcome == outcome)
        #expect(state.runs.last?.outcome == outcome && state.runs.last?.command == "run")
        #expect(state.filesInPlace.count == 5)
        #expect(state.workingDirectory == f.dir.path)
        #expect(!FileIO.exists(f.store.lockFile), "the lock is released")
        #expect(f.observer.all.contains(.finished(outcome)))
        #expect(f.observer.all.contains { if case .stageStarted(.config, attempt: 1) = $0 { return true } else { return false } })

        let report = MigrationReport(state: state, store: f.store)
        #expect(report.exitCode == 5 && report.filesInPlace.count == 5 && report.lockedBy == nil)
        #expect(report.json().contains(#""kind" : "stopped-before-unbuilt-stage""#))
    }

    @Test("the dry run plans every stage, marks unbuilt ones, and writes nothing")
    func dryRun() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let before = try f.outputs()
        let plans = await (try f.runner()).plan()
        #expect(plans.map(\.stage) == MigrationStage.allCases)
        #expect(plans.map(\.isAvailable) == [true, true, true, false, false, false, false])
        #expect(plans[3].warnings == ["Not built yet in this version of pgha: a run stops before this stage."])
        #expect(plans[2].files.count == 5)
        #expect(try f.outputs() == before)
        #expect(!f.store.hasState)
    }

    @Test("--until stops after the stage; resume continues from there")
    func untilThenResume() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let before = try f.outputs()
        #expect(try await f.runner().run(.forward(until: .extensions), command: "run", guided: false) == .reachedUntil(.extensions))
        #expect(try f.outputs() == before, "config did not run")
        #expect(try await f.runner().run(.resume(until: nil), command: "resume", guided: true) == .stoppedBeforeUnbuiltStage(.sync))
        #expect(try f.store.load().runs.map(\.command) == ["run", "resume"])
        // Each run records its mode: what a later `resume` without --guided/--unattended follows.
        #expect(try f.store.load().runs.map(\.guided) == [false, true])
    }

    @Test("pgha rollback undoes every stage, restores every file byte for byte, and exits 0")
    func explicitRollback() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let before = try f.outputs()
        _ = try await f.runner().run(.forward(until: nil), command: "run")
        #expect(try f.outputs() != before)
        let outcome = try await f.runner().run(.rollback, command: "rollback")
        #expect(outcome == .rolledBack(requested: true))
        #expect(outcome.exitCode == .success)
        #expect(try f.outputs() == before)
        let state = try f.store.load()
        #expect(state.stages.prefix(3).allSatisfy { $0.status == .rolledBack })
        #expect(state.direction == .forward)
        #expect(state.filesInPlace.isEmpty)
        #expect(f.observer.all.filter { if case .undoStarted = $0 { return true } else { return false } }
            == [.undoStarted(.config), .undoStarted(.extensions), .undoStarted(.prerequisites)])

        // A new forward run after the rollback starts over.
        #expect(try await f.runner().run(.forward(until: nil), command: "run") == .stoppedBeforeUnbuiltStage(.sync))
    }

    @Test("on_failure rollback: a failure after a change rolls back and exits 4")
    func onFailureRollback() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let before = try f.outputs()
        let sync = FakeStage(.sync, makesChanges: true, gateFailures: 1)
        let executors: [any MigrationStageExecutor] = [FakeStage(.prerequisites), FakeStage(.extensions), try ConfigStage(), sync]
        let outcome = try await f.runner(executors: executors).run(.forward(until: nil), command: "run")
        #expect(outcome == .rolledBack(requested: false))
        #expect(outcome.exitCode == .rolledBack)
        #expect(try f.outputs() == before)
        #expect(sync.undos == 1)
        let state = try f.store.load()
        #expect(state.steps.allSatisfy { $0.phase == .undone })
        #expect(state.stage(.sync).gate.first?.verdict == .fail)
    }

    @Test("on_failure rollback before any change has nothing to undo: the run stops (exit 3)")
    func failureBeforeChange() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let executors: [any MigrationStageExecutor] = [FakeStage(.prerequisites), FakeStage(.extensions, gateFailures: 1), try ConfigStage()]
        let outcome = try await f.runner(executors: executors).run(.forward(until: nil), command: "run")
        #expect(outcome == .stoppedAfterFailure(.extensions))
        #expect(outcome.exitCode == .stoppedOnFailure)
        #expect(try f.store.load().stage(.extensions).status == .failed(reason: "gate failed: fake.extensions"))
        // Fixed: resume retries the failed stage and goes on.
        #expect(try await f.runner(executors: [FakeStage(.prerequisites), FakeStage(.extensions), try ConfigStage()]).run(.resume(until: nil), command: "resume")
            == .stoppedBeforeUnbuiltStage(.sync))
    }

    @Test("interactive decisions: retry, skip with a reason, stop")
    func decisions() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let decider = ScriptedDecider(decisions: [.retry, .skip(reason: "checked by hand")])
        let executors: [any MigrationStageExecutor] = [FakeStage(.prerequisites, runFailures: 2), FakeStage(.extensions), try ConfigStage()]
        let outcome = try await f.runner(executors: executors, decider: decider).run(.forward(until: nil), command: "migrate")
        #expect(outcome == .stoppedBeforeUnbuiltStage(.sync))
        let state = try f.store.load()
        #expect(state.stage(.prerequisites).status == .skipped(reason: "checked by hand"))
        #expect(state.stage(.prerequisites).attempts == 2)
        #expect(decider.asked.prefix(3) == ["confirm prerequisites proceed,skip,stop", "decide prerequisites retry,skip,stop", "decide prerequisites retry,skip,stop"])
        #expect(decider.asked.contains("confirm config proceed,skip,stop"))

        let declined = try Fixture()
        defer { declined.dir.cleanup() }
        let no = ScriptedDecider(confirms: [.proceed, .stop])
        #expect(try await declined.runner(decider: no).run(.forward(until: nil), command: "migrate") == .declined(.extensions))
        // An option that was not offered counts as stop.
        let bogus = try Fixture()
        defer { bogus.dir.cleanup() }
        #expect(try await bogus.runner(decider: ScriptedDecider(confirms: [.rollback])).run(.forward(until: nil), command: "migrate") == .declined(.prerequisites))
    }

    @Test("Ctrl-C inside a stage saves the state; resume finishes the run")
    func interrupted() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let flag = CancellationFlag()
        let executors: [any MigrationStageExecutor] = [FakeStage(.prerequisites), FakeStage(.extensions), InterruptedConfigStage(inner: try ConfigStage(), flag: flag)]
        let outcome = try await f.runner(executors: executors, cancellation: flag).run(.forward(until: nil), command: "run")
        #expect(outcome == .interrupted(.config))
        #expect(outcome.exitCode == .interrupted)
        let state = try f.store.load()
        #expect(state.stage(.config).status == .running)
        #expect(state.lastOutcome == outcome)
        #expect(!FileIO.exists(f.store.lockFile))
        #expect(try await f.runner().run(.resume(until: nil), command: "resume") == .stoppedBeforeUnbuiltStage(.sync))
        #expect(try f.store.load().stage(.config).attempts == 2)
    }

    @Test("resume and rollback need a state; a second runner is refused")
    func preconditions() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        await #expect(throws: MigrationError.self) { _ = try await f.runner().run(.resume(until: nil), command: "resume") }
        await #expect(throws: MigrationError.self) { _ = try await f.runner().run(.rollback, command: "rollback") }
        let lock = try f.store.lock(command: "run", toolVersion: "x", clock: FakeClock())
        defer { lock.release() }
        do {
            _ = try await f.runner().run(.forward(until: nil), command: "run")
            Issue.record("ran while locked")
        } catch {
            #expect((error as? MigrationError)?.code == .locked)
        }
    }

    @Test("a changed playbook is refused unless accepted")
    func playbookChanged() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        _ = try await f.runner().run(.forward(until: .prerequisites), command: "run")
        try f.dir.write("playbook.yml", samplePlaybookYAML().replacingOccurrences(of: "test rehearsal", with: "renamed"))
        let changed = try PlaybookParser.load(path: f.dir.file("playbook.yml"))
        do {
            _ = try await f.runner(playbook: changed).run(.resume(until: nil), command: "resume")
            Issue.record("resumed with a changed playbook")
        } catch {
            #expect((error as? MigrationError)?.code == .playbookChanged)
            #expect((error as? MigrationError)?.exitCode == .usage)
        }
        #expect(try await f.runner(playbook: changed, allowPlaybookChange: true).run(.resume(until: nil), command: "resume") == .stoppedBeforeUnbuiltStage(.sync))
        #expect(try f.store.load().playbook.name == "renamed")
    }

    @Test("no secret appears in the state file, the progress events (JSON) or the logs")
    func noSecrets() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        // A stage whose error message carries a password, as a server error might.
        let leaky = LeakyStage(secret: sampleSecrets["PATRONI_PASSWORD"]!)
        let executors: [any MigrationStageExecutor] = [FakeStage(.prerequisites), FakeStage(.extensions), try ConfigStage(), leaky]
        _ = try await f.runner(executors: executors, decider: ScriptedDecider(defaultDecision: .stop)).run(.forward(until: nil), command: "migrate")
        let stateText = String(decoding: try #require(try FileIO.read(f.store.stateFile)).contents, as: UTF8.self)
        let events = f.observer.jsonLines.joined(separator: "\n")
        let logs = f.logs.lines.withLock { $0 }.joined(separator: "\n")
        #expect(stateText.contains("passed") && events.contains("stage-started") && logs.contains("stage started"), "the checks below look at real output")
        #expect(stateText.contains("<redacted>"), "the leaked password was masked in the failure reason")
        for (name, secret) in sampleSecrets {
            #expect(!stateText.contains(secret), "\(name) in the state file")
            #expect(!events.contains(secret), "\(name) in the progress events")
            #expect(!logs.contains(secret), "\(name) in the logs")
            let escaped = String(decoding: try JSONEncoder().encode(secret), as: UTF8.self).dropFirst().dropLast()
            #expect(!stateText.contains(escaped), "\(name) (JSON-escaped) in the state file")
        }
        // The env files themselves do hold the passwords (the application needs them), mode 0600.
        let env = try #require(try FileIO.read(f.dir.file("out/app.env")))
        #expect(env.mode == 0o600)
        #expect(String(decoding: env.contents, as: UTF8.self).contains(sampleSecrets["PATRONI_PASSWORD"]!))
    }

    @Test("killed at every state write, then resumed: the same end state as an uninterrupted run")
    func crashAtEveryBoundary() async throws {
        // Reference: an uninterrupted run.
        let reference = try Fixture()
        defer { reference.dir.cleanup() }
        let counter = WriteCount()
        var referenceRunner = try reference.runner()
        referenceRunner = MigrationRunner(with(referenceRunner.configuration) { $0.simulatedCrash = { n in counter.record(n); return false } })
        let expectedOutcome = try await referenceRunner.run(.forward(until: nil), command: "run")
        let expectedState = Normalized(try reference.store.load())
        let expectedFiles = try reference.outputs()
        let writes = counter.max
        #expect(writes > 15, "the run writes its state at many boundaries (\(writes))")

        for crashAt in 1...writes {
            let f = try Fixture()
            defer { f.dir.cleanup() }
            do {
                _ = try await f.runner(crashAt: crashAt).run(.forward(until: nil), command: "run")
                Issue.record("no crash at write \(crashAt)")
            } catch {
                #expect((error as? MigrationError)?.message == "simulated crash")
            }
            let mode: MigrationRunner.Mode = f.store.hasState ? .resume(until: nil) : .forward(until: nil)
            let outcome = try await f.runner().run(mode, command: "resume")
            #expect(outcome == expectedOutcome, "crash at write \(crashAt)")
            #expect(Normalized(try f.store.load()) == expectedState, "crash at write \(crashAt)")
            #expect(try f.outputs() == expectedFiles, "crash at write \(crashAt)")
        }
    }

    @Test("a rollback killed at every state write, then resumed, restores every file exactly")
    func rollbackCrashAtEveryBoundary() async throws {
        let probe = try Fixture()
        defer { probe.dir.cleanup() }
        _ = try await probe.runner().run(.forward(until: nil), command: "run")
        let counter = WriteCount()
        let probeConfiguration = try probe.runner().configuration
        let runner = MigrationRunner(with(probeConfiguration) { $0.simulatedCrash = { n in counter.record(n); return false } })
        #expect(try await runner.run(.rollback, command: "rollback") == .rolledBack(requested: true))
        let writes = counter.max

        for crashAt in 1...writes {
            let f = try Fixture()
            defer { f.dir.cleanup() }
            let before = try f.outputs()
            _ = try await f.runner().run(.forward(until: nil), command: "run")
            do {
                _ = try await f.runner(crashAt: crashAt).run(.rollback, command: "rollback")
                Issue.record("no crash at write \(crashAt)")
            } catch {
                #expect((error as? MigrationError)?.message == "simulated crash")
            }
            // Killed before its first write, `pgha rollback` left no trace: it is run again.
            // Otherwise the saved state says "rolling back" and `pgha resume` finishes the job.
            let mode: MigrationRunner.Mode = try f.store.load().direction == .rollback ? .resume(until: nil) : .rollback
            #expect(crashAt == 1 ? mode == .rollback : mode == .resume(until: nil))
            #expect(try await f.runner().run(mode, command: "resume") == .rolledBack(requested: true), "crash at write \(crashAt)")
            #expect(try f.outputs() == before, "crash at write \(crashAt)")
            #expect(try f.store.load().stages.prefix(3).allSatisfy { $0.status == .rolledBack })
        }
    }
}

/// Applies `change` to a copy of `value`.
func with<T>(_ value: T, _ change: (inout T) -> Void) -> T {
    var copy = value
    change(&copy)
    return copy
}

/// Remembers the highest write number seen.
final class WriteCount: Sendable {
    private let value = Mutex(0)
    func record(_ n: Int) { value.withLock { $0 = Swift.max($0, n) } }
    var max: Int { value.withLock { $0 } }
}

/// The config stage, but SIGINT arrives as it starts: its first cancellation point throws.
struct InterruptedConfigStage: MigrationStageExecutor {
    let inner: ConfigStage
    let flag: CancellationFlag
    var stage: MigrationStage { inner.stage }
    var makesChanges: Bool { inner.makesChanges }

    func plan(_ context: StageContext) async throws -> StagePlan { try await inner.plan(context) }
    func run(_ context: StageContext) async throws {
        flag.cancel()
        try await inner.run(context)
    }
    func gate(_ context: StageContext) async throws -> [CheckResult] { try await inner.gate(context) }
    func undo(_ context: StageContext) async throws { try await inner.undo(context) }
}

/// A sync stage whose run fails with an error message that contains a password.
struct LeakyStage: MigrationStageExecutor {
    let secret: String
    let stage = MigrationStage.sync
    let makesChanges = true

    func plan(_ context: StageContext) async throws -> StagePlan { StagePlan(stage: stage, makesChanges: true) }
    func run(_ context: StageContext) async throws {
        context.progress("connecting with password \(secret)")
        context.logger.info("trying", metadata: ["password": "\(context.redactor.redact(secret))"])
        throw MigrationError(.stageFailed, "FATAL: password authentication failed for password \"\(secret)\"")
    }
    func gate(_ context: StageContext) async throws -> [CheckResult] { [] }
    func undo(_ context: StageContext) async throws {}
}
