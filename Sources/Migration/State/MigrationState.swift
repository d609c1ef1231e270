public import Foundation

/// The migration's write-ahead log and progress record: `<state-dir>/state.json`.
///
/// Every side effect is recorded before it is trusted: a step's intent (with the undo information
/// captured before the change) is saved before the step runs, and its completion after. A crash at
/// any point therefore leaves enough on disk to resume or undo. Nothing secret is stored: no
/// password, no DSN; files are identified by path and SHA-256. docs/MIGRATION_TO_HA.md documents
/// the format.
public struct MigrationState: Codable, Sendable, Hashable {
    /// The schema this pgha writes, and the newest it reads.
    public static let currentSchemaVersion = 2

    /// Which way the migration is going. A rollback that is interrupted resumes as a rollback.
    public enum Direction: String, Codable, Sendable, Hashable {
        case forward
        case rollback
    }

    public var schemaVersion: Int
    /// The pgha version that last wrote the file.
    public var toolVersion: String
    public var createdAt: Date
    public var updatedAt: Date
    public var playbook: PlaybookReference
    /// Relative output paths were resolved against this directory on the first run.
    public var workingDirectory: String
    public var direction: Direction
    /// How the last run ended (nil while a run is in progress or was killed).
    public var lastOutcome: MigrationOutcome?
    /// One record per stage, in migration order.
    public var stages: [StageState]
    /// Generic step journal (stages other than config record database changes here).
    public var steps: [StepRecord]
    /// Every file written, with its checksums and backup.
    public var files: [FileRecord]
    /// One entry per runner invocation.
    public var runs: [RunRecord]
    /// The next id for a step or file record (ids are unique across both).
    public var nextRecordID: Int
    /// What the cutover measured (the write pause, LSNs, times), for `pgha status` and the final report.
    public var cutover: CutoverRecord?

    /// The cutover's facts, as they happen.
    public struct CutoverRecord: Codable, Sendable, Hashable {
        /// `pgbouncer` or `hook`.
        public var method: String
        /// The application could no longer write on the single node (PgBouncer PAUSE, or the freeze).
        public var pausedAt: Date?
        /// `pg_current_wal_lsn()` right after the freeze: every member must replay it.
        public var finalLSN: String?
        public var caughtUpAt: Date?
        public var promotedAt: Date?
        public var promotedMember: String?
        /// The application could write again, on the cluster (PgBouncer RESUME, or the hook ran).
        public var resumedAt: Date?
        /// `resumedAt − pausedAt`: the write pause as pgha saw it.
        public var pauseSeconds: Double?
        /// A canary row written on the cluster reached the single node.
        public var wayBackProvenAt: Date?
        /// The cutover of an earlier attempt that was unfrozen (timeout, failure or interruption).
        public var abandonedAttempts: Int
        /// After a rollback past the switch: when the application was back on the single node,
        /// and its write pause then.
        public var rolledBackAt: Date?
        public var rollbackPauseSeconds: Double?

        public init(method: String) {
            self.method = method
            self.abandonedAttempts = 0
        }
    }

    /// The playbook a state belongs to.
    public struct PlaybookReference: Codable, Sendable, Hashable {
        public var path: String
        public var sha256: String
        public var name: String

        public init(path: String, sha256: String, name: String) {
            self.path = path
            self.sha256 = sha256
            self.name = name
        }
    }

    /// A stage's status with timestamps and its latest gate results.
    public struct StageState: Codable, Sendable, Hashable {
        public var stage: MigrationStage
        public var status: StageStatus
        public var attempts: Int
        public var startedAt: Date?
        public var finishedAt: Date?
        /// The latest gate results with observed values and verdicts.
        public var gate: [CheckResult]
        public var gateEvaluatedAt: Date?
        /// What the stage is waiting for right now (lag, a cluster to appear…), since when; nil when
        /// it is not waiting. Shown by `pgha status`.
        public var waiting: StageWait?

        public init(stage: MigrationStage, status: StageStatus = .pending, attempts: Int = 0, startedAt: Date? = nil, finishedAt: Date? = nil, gate: [CheckResult] = [], gateEvaluatedAt: Date? = nil, waiting: StageWait? = nil) {
            self.stage = stage
            self.status = status
            self.attempts = attempts
            self.startedAt = startedAt
            self.finishedAt = finishedAt
            self.gate = gate
            self.gateEvaluatedAt = gateEvaluatedAt
            self.waiting = waiting
        }
    }

    /// Where a journaled step stands.
    public enum StepPhase: String, Codable, Sendable, Hashable {
        /// Recorded before the side effect; not known to have happened.
        case intent
        /// The side effect happened.
        case done
        /// The side effect was undone.
        case undone
        /// Found on resume to have never happened; superseded by a new attempt.
        case abandoned
    }

    /// One side effect of a stage (other than writing a file).
    public struct StepRecord: Codable, Sendable, Hashable {
        public var id: Int
        public var stage: MigrationStage
        /// A stable name, so a resumed run can find the step again (e.g. `create-extension:pg_trgm@node2`).
        public var name: String
        public var phase: StepPhase
        /// Human-readable description (no secrets).
        public var detail: String
        /// Undo information captured before the change (e.g. who created a slot).
        public var undo: StepUndo
        public var intendedAt: Date
        public var doneAt: Date?
        public var undoneAt: Date?

        public init(id: Int, stage: MigrationStage, name: String, phase: StepPhase, detail: String, undo: StepUndo = .nothing, intendedAt: Date, doneAt: Date? = nil, undoneAt: Date? = nil) {
            self.id = id
            self.stage = stage
            self.name = name
            self.phase = phase
            self.detail = detail
            self.undo = undo
            self.intendedAt = intendedAt
            self.doneAt = doneAt
            self.undoneAt = undoneAt
        }
    }

    /// Where a file change stands.
    public enum FilePhase: String, Codable, Sendable, Hashable {
        /// About to be written (backup taken or about to be); not known to be written.
        case intent
        /// Written.
        case written
        /// Undone: the file was restored from its backup (or removed if it did not exist).
        case restored
        /// Found on resume to have never been written; superseded.
        case abandoned
    }

    /// One file written by a stage.
    public struct FileRecord: Codable, Sendable, Hashable {
        public var id: Int
        public var stage: MigrationStage
        /// The playbook output key (`env_file`, …).
        public var key: String
        /// Absolute path.
        public var path: String
        public var existedBefore: Bool
        public var sha256Before: String?
        public var modeBefore: FileMode?
        /// Where the previous content was copied, byte for byte with its mode (nil when the file
        /// did not exist).
        public var backupPath: String?
        public var sha256After: String
        public var modeAfter: FileMode
        public var phase: FilePhase
        public var intendedAt: Date
        public var writtenAt: Date?
        public var restoredAt: Date?

        public init(id: Int, stage: MigrationStage, key: String, path: String, existedBefore: Bool, sha256Before: String?, modeBefore: FileMode?, backupPath: String?, sha256After: String, modeAfter: FileMode, phase: FilePhase, intendedAt: Date, writtenAt: Date? = nil, restoredAt: Date? = nil) {
            self.id = id
            self.stage = stage
            self.key = key
            self.path = path
            self.existedBefore = existedBefore
            self.sha256Before = sha256Before
            self.modeBefore = modeBefore
            self.backupPath = backupPath
            self.sha256After = sha256After
            self.modeAfter = modeAfter
            self.phase = phase
            self.intendedAt = intendedAt
            self.writtenAt = writtenAt
            self.restoredAt = restoredAt
        }
    }

    /// One invocation of the runner.
    public struct RunRecord: Codable, Sendable, Hashable {
        /// `run`, `resume`, `rollback`, … as told by the CLI.
        public var command: String
        public var pid: Int32
        public var startedAt: Date
        public var endedAt: Date?
        public var outcome: MigrationOutcome?
        /// Whether this run asked before each stage (`migrate`, `resume --guided`) or ran
        /// unattended; what a later `resume` without --guided/--unattended does again. Nil for a
        /// rollback and in files written before pgha recorded it.
        public var guided: Bool?

        public init(command: String, pid: Int32, startedAt: Date, endedAt: Date? = nil, outcome: MigrationOutcome? = nil, guided: Bool? = nil) {
            self.command = command
            self.pid = pid
            self.startedAt = startedAt
            self.endedAt = endedAt
            self.outcome = outcome
            self.guided = guided
        }
    }

    /// A fresh state for `playbook`, every stage pending.
    public init(toolVersion: String, playbook: PlaybookReference, workingDirectory: String, now: Date) {
        self.schemaVersion = Self.currentSchemaVersion
        self.toolVersion = toolVersion
        self.createdAt = now
        self.updatedAt = now
        self.playbook = playbook
        self.workingDirectory = workingDirectory
        self.direction = .forward
        self.lastOutcome = nil
        self.stages = MigrationStage.allCases.map { StageState(stage: $0) }
        self.steps = []
        self.files = []
        self.runs = []
        self.nextRecordID = 1
        self.cutover = nil
    }

    /// The playbook's path for `pgha resume`/`rollback`/`status`, which are not given one: as
    /// recorded, made absolute against `workingDirectory` when it was relative.
    public var resolvedPlaybookPath: String {
        playbook.path.hasPrefix("/") ? playbook.path : (workingDirectory as NSString).appendingPathComponent(playbook.path)
    }

    /// The record of `stage` (every stage has one).
    public func stage(_ stage: MigrationStage) -> StageState {
        stages.first { $0.stage == stage } ?? StageState(stage: stage)
    }

    /// The engine's view of the stages.
    public var engineRecords: [EngineStageRecord] {
        stages.map { EngineStageRecord(stage: $0.stage, status: $0.status, attempts: $0.attempts, gate: $0.gate) }
    }

    /// Copies the engine's records in, stamping `startedAt`/`finishedAt`/`gateEvaluatedAt` on
    /// every change with `now`.
    public mutating func apply(_ records: [EngineStageRecord], now: Date) {
        for record in records {
            if !stages.contains(where: { $0.stage == record.stage }) {
                stages.append(StageState(stage: record.stage))
                stages.sort { $0.stage < $1.stage }
            }
            let i = stages.firstIndex { $0.stage == record.stage }!
            var s = stages[i]
            if s.status != record.status {
                switch record.status {
                case .running:
                    s.startedAt = now
                    s.finishedAt = nil
                case .pending:
                    s.finishedAt = nil
                case .passed, .failed, .rolledBack, .skipped:
                    s.finishedAt = now
                }
                s.status = record.status
                // A wait belongs to one run of the stage.
                s.waiting = nil
            }
            if s.gate != record.gate {
                s.gate = record.gate
                s.gateEvaluatedAt = now
            }
            s.attempts = record.attempts
            stages[i] = s
        }
    }

    /// Files written and not undone.
    public var filesInPlace: [FileRecord] {
        files.filter { $0.phase == .written }
    }

    /// This state with every free text passed through `redactor` (the last line of defence
    /// against a secret reaching the disk).
    public func redacted(by redactor: SecretRedactor) -> MigrationState {
        guard !redactor.secrets.isEmpty else { return self }
        var copy = self
        copy.playbook.name = redactor.redact(playbook.name)
        copy.playbook.path = redactor.redact(playbook.path)
        copy.workingDirectory = redactor.redact(workingDirectory)
        copy.stages = stages.map { s in
            var s = s
            switch s.status {
            case .failed(let reason): s.status = .failed(reason: redactor.redact(reason))
            case .skipped(let reason): s.status = .skipped(reason: redactor.redact(reason))
            case .pending, .running, .passed, .rolledBack: break
            }
            s.gate = s.gate.map { $0.redacted(by: redactor) }
            s.waiting = s.waiting.map { wait in
                var wait = wait
                wait.what = redactor.redact(wait.what)
                wait.detail = wait.detail.map(redactor.redact)
                return wait
            }
            return s
        }
        copy.steps = steps.map { step in
            var step = step
            step.name = redactor.redact(step.name)
            step.detail = redactor.redact(step.detail)
            step.undo = step.undo.redacted(by: redactor)
            return step
        }
        copy.files = files.map { file in
            var file = file
            file.path = redactor.redact(file.path)
            file.backupPath = file.backupPath.map(redactor.redact)
            return file
        }
        copy.runs = runs.map { run in
            var run = run
            run.command = redactor.redact(run.command)
            return run
        }
        return copy
    }
}

/// Unix permission bits, stored as an octal string ("0600") so the state file reads naturally.
public struct FileMode: Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt16

    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    /// `0600`.
    public var description: String {
        let octal = String(rawValue, radix: 8)
        return String(repeating: "0", count: max(0, 4 - octal.count)) + octal
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = UInt16(text, radix: 8), value <= 0o7777 else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected an octal file mode such as \"0600\", got \"\(text)\"")
        }
        rawValue = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
