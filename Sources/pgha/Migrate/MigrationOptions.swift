import ArgumentParser
import Foundation
import Synchronization
import Logging
import Migration

/// `--state-dir`, shared by every migration command (`migrate`, `run`, `plan`, `status`,
/// `rollback`, `resume`).
struct MigrationOptions: ParsableArguments {
    @Option(
        name: .customLong("state-dir"),
        help: ArgumentHelp(
            "The migration's state directory: state.json, the lock, backups of overwritten files.",
            valueName: "dir"))
    var stateDir: String = ".pgha"

    /// The state directory as an absolute path (backup paths recorded in the state must not depend
    /// on the directory a later `pgha resume` runs from).
    var stateDirectory: String {
        let cwd = FileManager.default.currentDirectoryPath
        let path = stateDir.hasPrefix("/") ? stateDir : (cwd as NSString).appendingPathComponent(stateDir)
        return (path as NSString).standardizingPath
    }

    var store: StateStore { StateStore(directory: stateDirectory) }
}

/// `--json`.
struct JSONOutputOption: ParsableArguments {
    @Flag(name: .long, help: "Machine-readable output: one JSON object per line (see docs/MIGRATION_TO_HA.md).")
    var json = false
}

/// A stage named on the command line: argument-parser refuses any other name (exit 64, listing
/// the stages), like every other malformed command line.
struct StageArgument: ExpressibleByArgument, Sendable {
    let stage: MigrationStage

    init?(argument: String) {
        guard let stage = MigrationStage(rawValue: argument) else { return nil }
        self.stage = stage
    }

    static var allValueStrings: [String] { MigrationStage.allCases.map(\.rawValue) }
}

/// `--until STAGE`.
struct UntilOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Stop after this stage passes.", valueName: "stage"))
    var until: StageArgument?

    var stage: MigrationStage? { until?.stage }
}

/// `--accept-playbook-change`.
struct PlaybookChangeOption: ParsableArguments {
    @Flag(
        name: .customLong("accept-playbook-change"),
        help: "Continue although the playbook changed since the migration started (stages that passed are not re-run).")
    var accept = false
}

/// pgha's version: `pgha --version`, and what state files and lock files record.
enum PGHAVersion {
    static let current = "0.1.0"
}

/// The stage executors this pgha has (`StandardStages`). Stages without one appear as "not built
/// yet" and a run stops before them.
enum MigrationStages {
    static func executors() throws(MigrationError) -> [any MigrationStageExecutor] {
        try StandardStages.executors()
    }
}

/// The exit-code table for `--help` discussions, from `MigrationExitCode`.
enum MigrationHelp {
    static func exitCodes(_ codes: [MigrationExitCode]) -> String {
        "Exit codes: " + codes.map { "\($0.rawValue) \($0.meaning)" }.joined(separator: "; ")
            + "; 64 the command line itself is malformed (unknown option, missing argument)."
    }

    /// Every code a command that runs stages can return.
    static let runnerCodes: [MigrationExitCode] = MigrationExitCode.allCases
}

/// Everything a migration command needs once its arguments are parsed: the playbook, the state
/// store, the redactor that masks every resolved credential in whatever is printed, and the output.
struct MigrationSession {
    let playbook: LoadedPlaybook
    let store: StateStore
    let redactor: SecretRedactor
    let output: MigrationOutput

    /// Loads the playbook at `path` (exit 2 when it is invalid).
    static func open(playbookPath: String, options: MigrationOptions, json: Bool) throws -> MigrationSession {
        let (playbook, redactor, output) = try loadPlaybook(playbookPath, json: json)
        return MigrationSession(playbook: playbook, store: options.store, redactor: redactor, output: output)
    }

    /// The playbook at `path` (exit 2 when it is invalid), the redactor of its resolved
    /// credentials and the output that uses it: for commands without a state directory.
    static func loadPlaybook(_ path: String, json: Bool) throws -> (LoadedPlaybook, SecretRedactor, MigrationOutput) {
        CLILogging.bootstrap()
        let output = MigrationOutput(json: json, redactor: .none)
        let playbook: LoadedPlaybook
        do {
            playbook = try PlaybookParser.load(path: path)
        } catch {
            throw output.fail(error)
        }
        let redactor = playbook.playbook.secretRedactor(environment: ProcessEnvironment())
        return (playbook, redactor, MigrationOutput(json: json, redactor: redactor))
    }

    /// For `resume` and `rollback`, which are not given a playbook: reads the state (exit 7 when
    /// it is missing or unreadable) and loads the playbook it names.
    static func openFromState(options: MigrationOptions, json: Bool) throws -> (MigrationSession, MigrationState) {
        CLILogging.bootstrap()
        let output = MigrationOutput(json: json, redactor: .none)
        let store = options.store
        let state: MigrationState
        do {
            state = try store.load()
        } catch {
            throw output.fail(error)
        }
        let path = state.resolvedPlaybookPath
        let playbook: LoadedPlaybook
        do {
            playbook = try PlaybookParser.load(path: path)
        } catch {
            throw output.fail(error, next: "the migration in \(store.directory) was started with \(path); restore that file (it is needed to resume or roll back)")
        }
        let redactor = playbook.playbook.secretRedactor(environment: ProcessEnvironment())
        let session = MigrationSession(
            playbook: playbook, store: store, redactor: redactor,
            output: MigrationOutput(json: json, redactor: redactor))
        return (session, state)
    }

    /// A runner for this session.
    func runner(
        decider: any MigrationDecider, observer: any MigrationObserver, cancellation: CancellationFlag,
        allowPlaybookChange: Bool
    ) throws -> MigrationRunner {
        let executors: [any MigrationStageExecutor]
        do {
            executors = try MigrationStages.executors()
        } catch {
            throw output.fail(error)
        }
        // The renderer already shows every failure; the runner's own log lines are for
        // PGHA_LOG_LEVEL=info/debug/trace (and errors).
        var logger = Logger(label: "pgha.migration")
        if ProcessInfo.processInfo.environment["PGHA_LOG_LEVEL"] == nil { logger.logLevel = .error }
        var configuration = MigrationRunner.Configuration(
            playbook: playbook, store: store, executors: executors, decider: decider, observer: observer,
            cancellation: cancellation, logger: logger, toolVersion: PGHAVersion.current,
            allowPlaybookChange: allowPlaybookChange)
        configuration.stateWriteHook = CrashTestHook.fromEnvironment()
        return MigrationRunner(configuration)
    }

    /// Runs the stages in `mode` (guided: the operator is asked; otherwise the playbook's
    /// `on_failure` decides), with SIGINT/SIGTERM handling, and turns the outcome (or error) into
    /// the process exit: prints the final message and, with `--json`, the report line. Throws
    /// `ExitCode` unless the exit is 0.
    func run(_ mode: MigrationRunner.Mode, command: String, guided: Bool, allowPlaybookChange: Bool) async throws {
        let interrupts = InterruptHandler(output: output, lockFile: store.lockFile)
        let decider: any MigrationDecider
        if guided {
            let input = LineInput()
            interrupts.whenInterrupted { input.interrupt() }
            decider = TerminalDecider(input: input, output: output)
        } else {
            decider = NonInteractiveDecider(onFailure: playbook.playbook.onFailure)
        }
        let observer: any MigrationObserver
        if output.json {
            let output = self.output
            observer = JSONLinesObserver { output.line($0) }
        } else {
            observer = MigrationRenderer(output: output, store: store, style: guided ? .guided : .unattended)
        }
        let runner = try runner(decider: decider, observer: observer, cancellation: interrupts.cancellation, allowPlaybookChange: allowPlaybookChange)
        interrupts.install()
        let outcome: MigrationOutcome
        do {
            outcome = try await runner.run(mode, command: command, guided: guided)
        } catch {
            interrupts.finished()
            throw output.fail(error)
        }
        interrupts.finished()
        output.finish(outcome, store: store, unavailable: runner.unavailableReason(for:))
        if outcome.exitCode != .success {
            throw ExitCode(outcome.exitCode.rawValue)
        }
    }
}

/// Test hook for the kill -9 integration tests (not for production use):
///
/// - `PGHA_TEST_CRASH_AT_WRITE=N`: the process kills itself with SIGKILL right after its Nth state
///   write reached the disk (before the side effect that write announced).
/// - `PGHA_TEST_CRASH_BEFORE_WRITE=N`: SIGKILL just before the Nth state write (after every side
///   effect that followed write N-1).
/// - `PGHA_TEST_CRASH_AFTER_STEP=NAME`: SIGKILL right after the write that records step NAME done
///   (the first such write of the process, if the step was not done when it started); `PREFIX*`:
///   the first step whose name starts with PREFIX.
///
/// Writes are counted per process, from 1.
enum CrashTestHook {
    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> (@Sendable (Int, Bool, MigrationState) -> Void)? {
        let after = environment["PGHA_TEST_CRASH_AT_WRITE"].flatMap(Int.init)
        let before = environment["PGHA_TEST_CRASH_BEFORE_WRITE"].flatMap(Int.init)
        let afterStep = environment["PGHA_TEST_CRASH_AFTER_STEP"].flatMap { $0.isEmpty ? nil : $0 }
        guard after != nil || before != nil || afterStep != nil else { return nil }
        let stepWasDone = StepDone()
        return { write, written, state in
            if (written && write == after) || (!written && write == before) {
                kill(getpid(), SIGKILL)
            }
            if let afterStep, written {
                let done = state.steps.contains { step in
                    step.phase == .done && (afterStep.hasSuffix("*") ? step.name.hasPrefix(afterStep.dropLast()) : step.name == afterStep)
                }
                let becameDone = stepWasDone.value.withLock { previous -> Bool in
                    defer { previous = done }
                    return previous == false && done
                }
                if becameDone { kill(getpid(), SIGKILL) }
            }
        }
    }

    /// Whether the step was done at the previous write (nil before the first).
    private final class StepDone: Sendable {
        let value = Mutex<Bool?>(nil)
    }
}
