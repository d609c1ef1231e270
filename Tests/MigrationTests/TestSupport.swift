import Foundation
import Synchronization
import Testing
@testable import Migration

/// A clock that starts at a fixed instant and moves one second per reading (deterministic
/// timestamps), and whose `sleep` returns at once after moving the time forward by the duration:
/// waits and timeouts run in simulated time, never in real time.
final class FakeClock: MigrationClock {
    private let state = Mutex<(ticks: Int, slept: Double, sleeps: [Duration])>((0, 0, []))
    let start: Date
    /// Seconds added per reading (0: time moves only by sleeping).
    let tick: Double

    init(start: Date = Date(timeIntervalSince1970: 1_800_000_000), tick: Double = 1) {
        self.start = start
        self.tick = tick
    }

    func now() -> Date {
        let offset = state.withLock { s in
            s.ticks += 1
            return Double(s.ticks) * tick + s.slept
        }
        return start.addingTimeInterval(offset)
    }

    func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        state.withLock { s in
            s.slept += duration.asSeconds
            s.sleeps.append(duration)
        }
        await Task.yield()
    }

    /// Every sleep so far.
    var sleeps: [Duration] { state.withLock { $0.sleeps } }
    /// Simulated seconds slept.
    var slept: Double { state.withLock { $0.slept } }
}

/// A fresh directory under the system temp directory, removed by `cleanup()`.
struct TempDirectory {
    let path: String

    init(_ label: String = "migration") throws {
        let base = FileManager.default.temporaryDirectory.path
        path = base + "/pgha-tests-\(label)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: path)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ text: String, mode: UInt16 = 0o644) throws {
        try FileIO.makeDirectories(FileIO.parentDirectory(of: file(name)), mode: 0o755)
        try FileIO.writeAtomically(Data(text.utf8), to: file(name), mode: mode)
    }

    func read(_ name: String) throws -> String? {
        try FileIO.read(file(name)).map { String(decoding: $0.contents, as: UTF8.self) }
    }

    /// Every regular file below the directory, relative path → bytes and mode.
    func snapshot(excluding excluded: [String] = []) throws -> [String: FileSnapshot] {
        var result: [String: FileSnapshot] = [:]
        let enumerator = FileManager.default.enumerator(atPath: path)
        while let relative = enumerator?.nextObject() as? String {
            if excluded.contains(where: { relative.hasPrefix($0) }) { continue }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file(relative), isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            result[relative] = try FileIO.read(file(relative))
        }
        return result
    }
}

/// Records every progress event.
final class CollectingObserver: MigrationObserver {
    private let events = Mutex<[MigrationProgress]>([])

    func report(_ progress: MigrationProgress) {
        events.withLock { $0.append(progress) }
    }

    var all: [MigrationProgress] { events.withLock { $0 } }

    /// Every event as the JSON line `--json` would print.
    var jsonLines: [String] { all.map(JSONLinesObserver.line(for:)) }
}

/// Answers from a script: confirmations and decisions in order; defaults when the script runs out.
final class ScriptedDecider: MigrationDecider {
    private let state: Mutex<(confirms: [UserDecision], decisions: [UserDecision], asked: [String])>
    let defaultConfirm: UserDecision
    let defaultDecision: UserDecision

    init(confirms: [UserDecision] = [], decisions: [UserDecision] = [], defaultConfirm: UserDecision = .proceed, defaultDecision: UserDecision = .stop) {
        state = Mutex((confirms, decisions, []))
        self.defaultConfirm = defaultConfirm
        self.defaultDecision = defaultDecision
    }

    func confirm(_ stage: MigrationStage, plan: StagePlan, options: [DecisionOption]) async -> UserDecision {
        state.withLock { s in
            s.asked.append("confirm \(stage) \(options.map(\.rawValue).joined(separator: ","))")
            return s.confirms.isEmpty ? defaultConfirm : s.confirms.removeFirst()
        }
    }

    func decide(_ stage: MigrationStage, failure: StageFailure, options: [DecisionOption]) async -> UserDecision {
        state.withLock { s in
            s.asked.append("decide \(stage) \(options.map(\.rawValue).joined(separator: ","))")
            return s.decisions.isEmpty ? defaultDecision : s.decisions.removeFirst()
        }
    }

    var asked: [String] { state.withLock { $0.asked } }
}

/// A stage that journals one step per run and undoes it; can be told to fail its run, its gate or
/// its undo a number of times.
final class FakeStage: MigrationStageExecutor {
    let stage: MigrationStage
    let makesChanges: Bool
    private let control: Mutex<(runFailures: Int, gateFailures: Int, undoFailures: Int, runs: Int, undos: Int)>

    init(_ stage: MigrationStage, makesChanges: Bool = false, runFailures: Int = 0, gateFailures: Int = 0, undoFailures: Int = 0) {
        self.stage = stage
        self.makesChanges = makesChanges
        control = Mutex((runFailures, gateFailures, undoFailures, 0, 0))
    }

    var runs: Int { control.withLock { $0.runs } }
    var undos: Int { control.withLock { $0.undos } }

    func plan(_ context: StageContext) async throws -> StagePlan {
        StagePlan(stage: stage, makesChanges: makesChanges, checks: ["fake check"])
    }

    func run(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let fail = control.withLock { c in
            c.runs += 1
            if c.runFailures > 0 { c.runFailures -= 1; return true }
            return false
        }
        if fail { throw MigrationError(.stageFailed, "fake \(stage) run failed") }
        if makesChanges, !journal.steps(of: stage).contains(where: { $0.phase == .done }) {
            let id = try journal.beginStep(stage, name: "fake-change", detail: "a fake change", undo: .hook(.init(key: "fake.change", undoKey: nil)))
            try context.checkCancellation()
            try journal.completeStep(id)
        }
        context.progress("fake \(stage) ran")
    }

    func gate(_ context: StageContext) async throws -> [CheckResult] {
        let fail = control.withLock { c in
            if c.gateFailures > 0 { c.gateFailures -= 1; return true }
            return false
        }
        return fail
            ? [.fail("fake.\(stage)", observed: "bad", expected: "good", advice: "fix it")]
            : [.pass("fake.\(stage)", observed: "good", expected: "good")]
    }

    func undo(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let fail = control.withLock { c in
            c.undos += 1
            if c.undoFailures > 0 { c.undoFailures -= 1; return true }
            return false
        }
        if fail { throw MigrationError(.stageFailed, "fake \(stage) undo failed") }
        for step in journal.steps(of: stage) where step.phase == .done || step.phase == .intent {
            try journal.markStepUndone(step.id)
        }
    }
}

/// Playbook text for tests (the sandbox's shape, outputs under `out/`).
func samplePlaybookYAML(onFailure: String = "rollback", outputs: String = "out") -> String {
    """
    version: 1
    name: test rehearsal
    source:
      host: 127.0.0.10
      port: 15432
      user: dpg_cluster
      password: ${PROJECT_DB_PASSWORD}
      admin_user: postgres
      sslmode: disable
      databases:
        project: distributed_postgres_cluster
        shared: shared_knowledge
    target:
      scope: pgha-test
      api_hosts: [127.0.0.11, 127.0.0.12, "127.0.0.13:8009"]
      api_port: 8008
      api_user: pgha_api
      api_password: ${PATRONI_API_PASSWORD}
      port: 15432
      user: dpg_cluster
      password: ${PATRONI_PASSWORD}
      sslmode: disable
      etcd_hosts: [127.0.0.1:12379]
    extensions:
      required: [pg_trgm]
    thresholds:
      min_members: 3
      max_lag_bytes: 1MB
      max_transaction_age: 300s
    outputs:
      env_file: \(outputs)/app.env
      env_single_node_file: \(outputs)/app.single-node.env
      config_yaml: \(outputs)/config.yaml
      haproxy_cfg: \(outputs)/haproxy.cfg
      patroni_yml: \(outputs)/patroni.yml
    # These tests describe an existing, independent cluster (the logical method's target).
    sync:
      method: logical
    on_failure: \(onFailure)

    """
}

/// Real-looking secrets, so tests can assert they never reach the state file, logs or reports.
let sampleSecrets: [String: String] = [
    "PROJECT_DB_PASSWORD": "Pr0ject'S3cret$pa55 #1",
    "PATRONI_PASSWORD": "Patr0niHA-Secret-Value-32chars-xx",
    "PATRONI_API_PASSWORD": "api\"Pass\\word\u{1}z",
]

func samplePlaybook() throws -> Playbook {
    try PlaybookParser.parse(samplePlaybookYAML(), file: "test.yml")
}

/// The repository root (for templates/ and playbooks/), from this file's path.
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()
