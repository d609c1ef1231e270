import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs a playbook's command hook (`sync.start_cluster`, `cutover.switch_application`, …) with
/// `/bin/sh -c` (default signal actions restored), bounded in time, in a process group of its own (a timeout or an interrupt stops
/// the whole group: SIGTERM, then SIGKILL after 5 s).
///
/// The hook inherits pgha's environment plus `PGHA_BIN` (the running pgha), `PGHA_HOOK` (its
/// playbook key), `PGHA_STATE_DIR`, `PGHA_PLAYBOOK` and the absolute paths of the generated files
/// (`PGHA_ENV_FILE`, `PGHA_ENV_SINGLE_NODE_FILE`, `PGHA_CONFIG_YAML`, `PGHA_HAPROXY_CFG`,
/// `PGHA_PATRONI_YML`). Its output is kept (the last 40 lines, every known secret masked) for the
/// progress lines and the error. Hooks must be idempotent: a run resumed after a crash runs a hook
/// again when its completion was not recorded.
public struct HookRunner: Sendable {
    /// What a hook run gave.
    public struct Result: Sendable, Hashable {
        public var exitStatus: Int32
        public var seconds: Double
        /// The last lines of its standard output and error, redacted.
        public var outputTail: [String]
    }

    public var environment: [String: String]
    public var redactor: SecretRedactor

    public init(environment: [String: String], redactor: SecretRedactor) {
        self.environment = environment
        self.redactor = redactor
    }

    /// The hook environment for a stage: pgha's environment and the `PGHA_*` paths.
    public static func environment(for context: StageContext, key: String) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        if env["PGHA_BIN"] == nil { env["PGHA_BIN"] = Self.currentExecutable() }
        env["PGHA_HOOK"] = key
        env["PGHA_STATE_DIR"] = context.store.directory
        env["PGHA_PLAYBOOK"] = context.playbookPath.hasPrefix("/") ? context.playbookPath : context.workingDirectory + "/" + context.playbookPath
        let o = context.playbook.outputs
        func absolute(_ path: String) -> String { ConfigRenderer.absolutePath(path, in: context.workingDirectory) }
        env["PGHA_ENV_FILE"] = absolute(o.envFile)
        env["PGHA_ENV_SINGLE_NODE_FILE"] = absolute(o.envSingleNodeFile)
        env["PGHA_CONFIG_YAML"] = absolute(o.configYAML)
        env["PGHA_HAPROXY_CFG"] = absolute(o.haproxyCfg)
        env["PGHA_PATRONI_YML"] = absolute(o.patroniYML)
        return env
    }

    /// `/proc/self/exe`, else the first argument.
    static func currentExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Runs `command`; `key` names it in messages. Returns when it exits, or stops it at `timeout`
    /// (or when the task is cancelled) and throws.
    /// - Throws: `.stageFailed` (could not start, timed out), `.interrupted` (cancelled).
    public func run(_ command: String, key: String, timeout: Duration, clock: any MigrationClock) async throws(MigrationError) -> Result {
        let process = Process()
        // pgha ignores SIGINT/SIGTERM while stages run (it handles them through dispatch sources),
        // and a child inherits ignored signals — a shell cannot even trap them again. env(1) puts
        // the default actions back before the shell starts, so stopping the hook works.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["--default-signal=HUP,INT,QUIT,TERM,PIPE", "/bin/sh", "-c", "exec 0</dev/null; " + command]
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let collector = OutputTail(limit: 40)
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil } else { collector.append(data) }
        }
        let started = ContinuousClock.now
        do {
            try process.run()
        } catch {
            pipe.fileHandleForReading.readabilityHandler = nil
            throw MigrationError(.stageFailed, "\(key): cannot start /bin/sh: \(error)")
        }
        // Foundation starts the child as the leader of a process group of its own, so that
        // stopping it (kill(-pid)) stops whatever it started.
        let pid = process.processIdentifier

        var outcome: MigrationError?
        let deadline = clock.now().addingTimeInterval(timeout.asSeconds)
        while process.isRunning {
            if Task.isCancelled {
                outcome = MigrationError(.interrupted, "interrupted while \(key) ran; it was stopped")
                break
            }
            if clock.now() >= deadline {
                outcome = MigrationError(.stageFailed, "\(key) did not finish within \(Int(timeout.asSeconds)) s (playbook: sync.hook_timeout); it was stopped")
                break
            }
            try? await clock.sleep(for: .milliseconds(50))
        }
        if outcome != nil, process.isRunning {
            kill(-pid, SIGTERM)
            let grace = ContinuousClock.now + .seconds(5)
            while process.isRunning, ContinuousClock.now < grace { try? await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning { kill(-pid, SIGKILL) }
        }
        process.waitUntilExit()
        pipe.fileHandleForReading.readabilityHandler = nil
        collector.append(pipe.fileHandleForReading.readDataToEndOfFile())
        let tail = collector.lines.map(redactor.redact)
        if var outcome {
            if !tail.isEmpty { outcome.message += "; its last output: " + tail.suffix(5).joined(separator: " | ") }
            throw outcome
        }
        return Result(exitStatus: process.terminationStatus, seconds: (ContinuousClock.now - started).asSeconds, outputTail: tail)
    }
}

/// The last lines of a stream of bytes.
private final class OutputTail: Sendable {
    private let state = Mutex<(pending: [UInt8], lines: [String])>(([], []))
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func append(_ data: Data) {
        state.withLock { s in
            s.pending += data
            while let newline = s.pending.firstIndex(of: UInt8(ascii: "\n")) {
                s.lines.append(String(decoding: s.pending[..<newline], as: UTF8.self))
                s.pending.removeFirst(newline + 1)
                if s.lines.count > limit { s.lines.removeFirst(s.lines.count - limit) }
            }
        }
    }

    var lines: [String] {
        state.withLock { s in
            s.pending.isEmpty ? s.lines : s.lines + [String(decoding: s.pending, as: UTF8.self)]
        }
    }
}

extension HookRunner {
    /// Runs the playbook command `key` for a stage: says so, shows the last lines of its output,
    /// and fails the stage when it exits non-zero (or outlives `timeoutSeconds`).
    static func runForStage(_ context: StageContext, key: String, command: String, timeoutSeconds: Double) async throws {
        let runner = HookRunner(environment: HookRunner.environment(for: context, key: key), redactor: context.redactor)
        context.progress("running \(key): \(command)")
        let result = try await runner.run(command, key: key, timeout: .seconds(timeoutSeconds), clock: context.clock)
        for line in result.outputTail.suffix(10) { context.progress("  | \(line)") }
        guard result.exitStatus == 0 else {
            throw MigrationError(.stageFailed, "\(key) exited with status \(result.exitStatus)" + (result.outputTail.last.map { ": \($0)" } ?? ""))
        }
        context.progress(String(format: "%@ finished in %.1f s", key, result.seconds))
    }
}
