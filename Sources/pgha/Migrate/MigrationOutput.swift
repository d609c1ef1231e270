import ArgumentParser
import Foundation
import Migration

/// Where the migration commands print. People get lines and tables on standard output and errors
/// on standard error; `--json` gets one JSON object per line on standard output (errors also as a
/// JSON line, plus the human message on standard error). Every text passes through the redactor
/// that knows the playbook's resolved credentials, as a last line of defence.
struct MigrationOutput: Sendable {
    let json: Bool
    let redactor: SecretRedactor

    // Output goes straight to the file descriptors (`write(2)` through FileHandle), never through
    // stdio: nothing is left in a buffer when the process is killed, and no `fflush(NULL)` can
    // block on the stdin stream lock that the prompt's reader thread holds.

    /// A line on standard output (unbuffered, so progress shows at once even through a pipe).
    func line(_ text: String = "") {
        Self.emit(redactor.redact(text) + "\n", to: .standardOutput)
    }

    /// Text on standard output without a newline (prompts).
    func write(_ text: String) {
        Self.emit(redactor.redact(text), to: .standardOutput)
    }

    /// A line on standard error.
    func errorLine(_ text: String) {
        Self.emit(redactor.redact(text) + "\n", to: .standardError)
    }

    /// A reader that went away (`pgha run | head`) must not stop a migration half-way: write
    /// errors are ignored (SIGPIPE is ignored while stages run, see `InterruptHandler`).
    private static func emit(_ text: String, to handle: FileHandle) {
        try? handle.write(contentsOf: Data(text.utf8))
    }

    /// One compact JSON object on standard output.
    func jsonLine(_ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        guard let data = try? encoder.encode(value), let text = String(data: data, encoding: .utf8) else {
            line(#"{"event":"error","message":"cannot encode the output"}"#)
            return
        }
        line(text)
    }

    /// Reports `error` (message and the next command to try) and returns the exit code to throw:
    /// the error's own, or `exitCode` for a command with its own table (`pgha compare`).
    func fail(_ error: any Error, next: String? = nil, exitCode: Int32? = nil) -> ExitCode {
        if let exit = error as? ExitCode { return exit }
        guard let error = error as? MigrationError else {
            errorLine("error: \(error)")
            if json { jsonLine(ErrorLine(code: "internal", message: redactor.redact("\(error)"), exitCode: MigrationExitCode.failure.rawValue)) }
            return ExitCode(MigrationExitCode.failure.rawValue)
        }
        errorLine("error: \(error.description)")
        if let advice = next ?? Self.advice(for: error) { errorLine("next: \(advice)") }
        let code = exitCode ?? error.exitCode.rawValue
        if json {
            jsonLine(ErrorLine(code: error.code.rawValue, message: redactor.redact(error.description), exitCode: code))
        }
        return ExitCode(code)
    }

    /// What to do about `error`, when there is something useful to say.
    static func advice(for error: MigrationError) -> String? {
        switch error.code {
        case .stateNotFound:
            return "start a migration with `pgha migrate PLAYBOOK` (guided) or `pgha run PLAYBOOK`, or point --state-dir at the right directory"
        case .stateCorrupt, .stateTooNew:
            return "see docs/MIGRATION_TO_HA.md, \"Unreadable state files\""
        case .locked:
            return "wait for that run to finish, or interrupt it (Ctrl-C saves its state), then `pgha resume`"
        case .playbookChanged:
            return "restore the playbook, or run again with --accept-playbook-change"
        case .playbookInvalid:
            return "fix the playbook (docs/PLAYBOOKS.md describes every key), then `pgha plan PLAYBOOK`"
        case .environmentVariableMissing:
            return "export the variable (for the sandbox: eval \"$(pgha sandbox env)\"), then run again"
        case .invalidTransition:
            return "the state is saved; please report this with the output of `pgha status --json`"
        case .fileChangedExternally:
            return "look at the file, put back the version pgha wrote or the original, then `pgha resume`"
        default:
            return nil
        }
    }

    /// Prints how the run ended: a sentence and the next command for people; the final report
    /// line (`{"event":"report",…}`) with `--json`.
    /// `unavailable`: why a stage cannot run (`MigrationRunner.unavailableReason(for:)`).
    func finish(_ outcome: MigrationOutcome, store: StateStore, unavailable: (MigrationStage) -> String) {
        if json {
            if let state = try? store.load() {
                jsonLine(ReportLine(report: MigrationReport(state: state, store: store, outcome: outcome)))
            }
            return
        }
        line()
        line(outcome.description)
        switch outcome {
        case .interrupted:
            line("Run `pgha resume\(store.directoryArgument)` to continue (or `pgha rollback\(store.directoryArgument)` to undo).")
        case .stoppedBeforeUnbuiltStage(let stage):
            line("Why: " + unavailable(stage))
            line("`pgha status\(store.directoryArgument)` shows where the migration stands; `pgha rollback\(store.directoryArgument)` undoes it.")
        case .completed, .reachedUntil, .stoppedAfterFailure, .declined, .rolledBack, .rollbackFailed:
            break
        }
        line("exit \(outcome.exitCode.rawValue): \(outcome.exitCode.meaning)")
    }
}

/// `{"event":"error","code":"locked","message":"…","exitCode":6}`.
struct ErrorLine: Encodable {
    var event = "error"
    var code: String
    var message: String
    var exitCode: Int32
}

/// `{"event":"report","report":{…}}`: the last line of `pgha run --json` (and `resume`, `rollback`).
struct ReportLine: Encodable {
    var event = "report"
    var report: MigrationReport
}

extension StateStore {
    /// ` --state-dir DIR` when the directory is not the default `.pgha` of the current directory,
    /// for the commands we suggest.
    var directoryArgument: String {
        let standard = (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(".pgha")
        if (directory as NSString).standardizingPath == (standard as NSString).standardizingPath { return "" }
        return " --state-dir \(Self.shellQuoted(directory))"
    }

    static func shellQuoted(_ text: String) -> String {
        let safe = text.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "/._-+=:,@".unicodeScalars.contains($0) }
        return safe ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
