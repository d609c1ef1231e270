import Foundation

/// What the runner reports while it works. The CLI renders it (tables, progress lines); `--json`
/// prints one JSON object per line (`JSONLinesObserver`). Every text is already redacted.
public enum MigrationProgress: Hashable, Sendable {
    /// A run began. `resumed`: a state file existed.
    case runStarted(command: String, plan: [StagePlanEntry], resumed: Bool)
    /// The lock file of a runner that is gone was taken over.
    case staleLockReplaced(LockHolder)
    /// A stage's plan, shown before asking to run it.
    case stagePlanned(StagePlan)
    case stageStarted(MigrationStage, attempt: Int)
    /// A line of progress from inside a stage.
    case stageMessage(MigrationStage, String)
    /// Typed progress of a long task inside a stage (a bar on a terminal).
    case stageProgress(MigrationStage, StageProgress)
    /// The stage started waiting for something, or what it waits for changed (`StageWait.detail`).
    case stageWaiting(MigrationStage, StageWait)
    /// The stage's wait is over.
    case stageWaitEnded(MigrationStage, waitedSeconds: Double)
    case stageRunFailed(MigrationStage, StageFailure)
    case gateEvaluated(MigrationStage, [CheckResult])
    /// The operator's (or policy's) answer.
    case decision(MigrationStage, DecisionOption, reason: String?)
    case undoStarted(MigrationStage)
    case undoFinished(MigrationStage, error: String?)
    case warning(String)
    case finished(MigrationOutcome)
}

/// Receives progress. Called on the runner's task, in order; must not block for long.
public protocol MigrationObserver: Sendable {
    func report(_ progress: MigrationProgress)
}

/// Drops everything.
public struct SilentObserver: MigrationObserver {
    public init() {}
    public func report(_ progress: MigrationProgress) {}
}

/// Hands every event to a closure.
public struct ClosureObserver: MigrationObserver {
    private let body: @Sendable (MigrationProgress) -> Void
    public init(_ body: @escaping @Sendable (MigrationProgress) -> Void) { self.body = body }
    public func report(_ progress: MigrationProgress) { body(progress) }
}

/// One JSON object per line, e.g. `{"event":"gate","stage":"config","checks":[…]}`.
public struct JSONLinesObserver: MigrationObserver {
    private let write: @Sendable (String) -> Void

    /// - Parameter write: receives each line, without the newline.
    public init(write: @escaping @Sendable (String) -> Void) {
        self.write = write
    }

    public func report(_ progress: MigrationProgress) {
        write(Self.line(for: progress))
    }

    /// The JSON line for one progress event.
    public static func line(for progress: MigrationProgress) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let record = ProgressRecord(progress)
        guard let data = try? encoder.encode(record), let text = String(data: data, encoding: .utf8) else {
            return #"{"event":"error","message":"cannot encode progress"}"#
        }
        return text
    }
}

/// The JSON shape of a progress event.
struct ProgressRecord: Encodable {
    var event: String
    var command: String?
    var stage: MigrationStage?
    var attempt: Int?
    var message: String?
    var resumed: Bool?
    var plan: [StagePlanEntry]?
    var stagePlan: StagePlan?
    var failure: StageFailure?
    var checks: [CheckResult]?
    var passed: Bool?
    var decision: DecisionOption?
    var holder: LockHolder?
    var outcome: MigrationOutcome?
    var exitCode: Int32?
    var progress: StageProgress?
    var waiting: StageWait?
    var waitedSeconds: Double?

    init(_ progress: MigrationProgress) {
        switch progress {
        case .runStarted(let command, let plan, let resumed):
            event = "run-started"; self.command = command; self.plan = plan; self.resumed = resumed
        case .staleLockReplaced(let holder):
            event = "stale-lock-replaced"; self.holder = holder
        case .stagePlanned(let plan):
            event = "stage-planned"; stage = plan.stage; stagePlan = plan
        case .stageStarted(let s, let attempt):
            event = "stage-started"; stage = s; self.attempt = attempt
        case .stageMessage(let s, let text):
            event = "stage-message"; stage = s; message = text
        case .stageProgress(let s, let update):
            event = "stage-progress"; stage = s; self.progress = update
        case .stageWaiting(let s, let wait):
            event = "stage-waiting"; stage = s; waiting = wait; message = wait.what
        case .stageWaitEnded(let s, let seconds):
            event = "stage-wait-ended"; stage = s; waitedSeconds = seconds
        case .stageRunFailed(let s, let f):
            event = "stage-run-failed"; stage = s; failure = f; message = f.message
        case .gateEvaluated(let s, let results):
            event = "gate"; stage = s; checks = results; passed = results.worstVerdict != .fail
        case .decision(let s, let option, let reason):
            event = "decision"; stage = s; decision = option; message = reason
        case .undoStarted(let s):
            event = "undo-started"; stage = s
        case .undoFinished(let s, let error):
            event = "undo-finished"; stage = s; message = error; passed = error == nil
        case .warning(let text):
            event = "warning"; message = text
        case .finished(let o):
            event = "finished"; outcome = o; message = o.description; exitCode = o.exitCode.rawValue
        }
    }
}
