import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Every child process of the sandbox goes through this file: helper commands that run to
// completion (initdb, psql, pg_ctl, etcdctl, openssl), servers started detached, PID files,
// signals and the /proc scan that `down` uses to prove that nothing was left behind.
//
// Why Foundation.Process + setpriv + setsid + a bash wrapper, and not swift-subprocess (evaluated,
// version 1.0.2, 2026-12, on this machine):
// - What swift-subprocess can do: switch uid, gid and supplementary groups in the child
//   (`PlatformOptions.userID/groupID/supplementaryGroups`; `--init-groups` would need our own
//   getgrouplist), start a new session (`createSession`), reset every signal handler and the
//   mask, close every descriptor above 2 (close_range), and its PID is the server's own (it
//   forks and execs directly). A prototype started `sleep` as postgres in its own session with
//   only fds 0-2, PID = the server's, and it survived the test process.
// - What it cannot do: return while the server keeps running. `run` always awaits the child's
//   termination, and tears the child down (SIGTERM, then SIGKILL) when the calling task is
//   cancelled. A detached server would need `run` left pending in an unstructured task that
//   outlives `launchDetached`, the servers becoming children of the pgha process, which is
//   outside the library's model (the Execution is valid only inside its closure).
// - What it costs: it brings swift-system. A clean debug build (`rm -rf .build && time swift
//   build --build-tests`, 2 shared cores, load ~2-3) took 123 s with it against 99 s without
//   (user CPU 3 m 17 s against 2 m 49 s): over the project's two-minute bar. Built alone,
//   Subprocess with swift-system takes 37 s (27 s of CPU) in debug.
// So the code stays, and the shell wrapper stays because Foundation.Process only reports the
// wrapper's exit once no child holds a descriptor it handed over (checked again: without the
// descriptor loop, `launchDetached` never returned while the server ran). A direct posix_spawn
// (POSIX_SPAWN_SETSID, closefrom, chdir) would remove the wrapper, but Swift's Glibc module does
// not export posix_spawn_file_actions_addclosefrom_np or _addchdir_np: it would take a new C shim
// target, and the servers would become pgha's children, to be reaped.

/// What a finished helper command printed and how it exited.
struct ProcessOutput: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
    var succeeded: Bool { status == 0 && !timedOut }
}

/// A process found by scanning /proc.
struct ScannedProcess: Sendable, Equatable {
    var pid: pid_t
    var commandLine: [String]
    var workingDirectory: String?
}

enum Processes {
    static let setpriv = "/usr/bin/setpriv"
    static let setsid = "/usr/bin/setsid"
    static let bash = "/bin/bash"
    static let env = "/usr/bin/env"

    /// The explicit environment every sandbox child gets (never the caller's: Patroni reads
    /// `PATRONI_*` variables, libpq reads `PG*` ones).
    static func minimalEnvironment(home: String, binDir: String? = nil, extra: [String: String] = [:]) -> [String: String] {
        var path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        if let binDir { path = binDir + ":" + path }
        var environment = ["PATH": path, "HOME": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"]
        for (key, value) in extra { environment[key] = value }
        return environment
    }

    /// The `setpriv` prefix that switches to `user` (uid, gid and its supplementary groups).
    static func setprivPrefix(_ user: OSUser) -> [String] {
        [setpriv, "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups"]
    }

    /// Runs a helper command to completion, capturing stdout and stderr (via temporary files, so a
    /// chatty child can never block on a full pipe). `input` is written to its stdin (used to pass
    /// SQL with passwords, which must not appear in a command line; keep it well under the 64 KiB
    /// a pipe buffers, as it is written before the child is awaited). After `timeout` the child gets
    /// SIGTERM and the result says `timedOut`.
    static func run(
        _ executable: String, _ arguments: [String], as user: OSUser? = nil,
        environment: [String: String], workingDirectory: String? = nil,
        input: String? = nil, timeout: Duration = .seconds(60)
    ) async throws -> ProcessOutput {
        let process = Process()
        if let user {
            process.executableURL = URL(fileURLWithPath: setpriv)
            process.arguments = Array(setprivPrefix(user).dropFirst()) + [executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        process.environment = environment
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }

        let outPath = temporaryPath("out")
        let errPath = temporaryPath("err")
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        let outHandle = try temporaryHandle(outPath)
        let errHandle = try temporaryHandle(errPath)
        defer {
            try? outHandle.close()
            try? errHandle.close()
        }
        process.standardOutput = outHandle
        process.standardError = errHandle
        let inputPipe: Pipe?
        if input != nil {
            let pipe = Pipe()
            process.standardInput = pipe
            inputPipe = pipe
        } else {
            process.standardInput = FileHandle.nullDevice
            inputPipe = nil
        }

        // The timer answers whether it stopped the command: cancelled once the command finished,
        // it answers false; firing while the command still runs, it sends SIGTERM and answers true.
        var timer: Task<Bool, Never>?
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in continuation.resume() }
            do {
                try withDefaultSignalMask { try process.run() }
            } catch {
                process.terminationHandler = nil
                continuation.resume(
                    throwing: SandboxError(.commandFailed, "cannot start \(executable)", underlying: error))
                return
            }
            let pid = process.processIdentifier
            if let inputPipe, let input {
                let writer = inputPipe.fileHandleForWriting
                try? writer.write(contentsOf: Data(input.utf8))  // fails only if the child exited early
                try? writer.close()
            }
            timer = Task {
                try? await Task.sleep(for: timeout)
                return !Task.isCancelled && isAlive(pid) && kill(pid, SIGTERM) == 0
            }
        }
        timer?.cancel()
        let timedOut = await timer?.value ?? false
        return ProcessOutput(
            status: process.terminationStatus,
            stdout: FileSystem.readText(outPath) ?? "",
            stderr: FileSystem.readText(errPath) ?? "",
            timedOut: timedOut)
    }

    /// Starts a server detached from us: in its own session (`setsid`), as `user` (`setpriv`), with
    /// default signal handling (`env --default-signal`: a background job of a shell starts with
    /// SIGINT and SIGQUIT ignored), an explicit minimal environment, stdin from /dev/null and
    /// stdout/stderr appended to `logFile`.
    /// Returns the server's own PID (`setsid` and `setpriv` exec in place, and the wrapper shell
    /// backgrounds a subshell that is not a process-group leader, so `setsid` does not fork).
    static func launchDetached(
        _ executable: String, _ arguments: [String], as user: OSUser,
        environment: [String: String], workingDirectory: String, logFile: String
    ) async throws -> pid_t {
        // Foundation's Process learns that a child exited when a descriptor it handed to the child
        // is closed; the subshell closes every inherited descriptor above 2 so that the server
        // (which outlives the wrapper) does not hold it open. Bash, because dash's redirections
        // only reach descriptors 0-9.
        let script = #"""
            log="$1"; shift
            (
              for entry in /proc/$BASHPID/fd/*; do
                fd=${entry##*/}
                if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null; fi
              done
              exec "$@" </dev/null >>"$log" 2>&1
            ) &
            echo "$!"
            """#
        let output = try await run(
            bash, ["-c", script, "pgha-launch", logFile, setsid] + setprivPrefix(user)
                + [env, "--default-signal", executable] + arguments,
            environment: environment, workingDirectory: workingDirectory, timeout: .seconds(10))
        guard output.succeeded, let pid = pid_t(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw SandboxError(
                .startFailed, "cannot start \(executable): \(output.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return pid
    }

    /// Runs `body` (which spawns a child) with an empty signal mask on this thread, then restores
    /// the mask. Foundation's `Process` spawns without resetting the mask, and the threads Swift
    /// concurrency runs on block most signals: a child would inherit that and, for example, a
    /// Python program (Patroni) would never see SIGTERM. Wraps `pthread_sigmask`.
    static func withDefaultSignalMask<T>(_ body: () throws -> T) rethrows -> T {
        var empty = sigset_t()
        var previous = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_SETMASK, &empty, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        return try body()
    }

    /// Whether `pid` exists and is not a zombie (reads /proc/PID/stat).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0, let stat = FileSystem.readText("/proc/\(pid)/stat") else { return false }
        // The state follows the parenthesised command name, which may itself contain ')'.
        guard let close = stat.lastIndex(of: ")") else { return false }
        let rest = stat[stat.index(after: close)...].drop(while: { $0 == " " })
        return rest.first != "Z" && rest.first != "X"
    }

    /// /proc/PID/cmdline split at NUL bytes.
    static func commandLine(_ pid: pid_t) -> [String] {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Sends a signal; false if the process does not exist.
    @discardableResult
    static func signal(_ pid: pid_t, _ signal: Int32) -> Bool { kill(pid, signal) == 0 }

    /// Every live process of `owner` whose command line mentions `directory` or whose working
    /// directory lies inside it (PostgreSQL's backends and auxiliary processes rename themselves but
    /// keep their working directory in the data directory). Only `owner`'s processes: a root shell
    /// that happens to sit in the logs directory is none of the sandbox's business.
    static func processes(using directory: String, owner: OSUser) -> [ScannedProcess] {
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        let own = getpid()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var found: [ScannedProcess] = []
        for entry in entries {
            guard let pid = pid_t(entry), pid != own, isAlive(pid),
                  let attributes = try? FileManager.default.attributesOfItem(atPath: "/proc/\(pid)"),
                  (attributes[.ownerAccountID] as? NSNumber)?.uint32Value == owner.uid
            else { continue }
            let commandLine = commandLine(pid)
            let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")
            let mentions = commandLine.contains { $0 == directory || $0.hasPrefix(prefix) || $0.contains("=" + prefix) }
            let inside = cwd.map { $0 == directory || $0.hasPrefix(prefix) } ?? false
            if mentions || inside {
                found.append(ScannedProcess(pid: pid, commandLine: commandLine, workingDirectory: cwd))
            }
        }
        return found.sorted { $0.pid < $1.pid }
    }

    /// A PID file holding one decimal PID.
    struct PIDFile: Sendable {
        var path: String

        func read() -> pid_t? {
            FileSystem.readText(path).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }

        func write(_ pid: pid_t) throws { try FileSystem.writeFile(path, contents: "\(pid)\n", mode: 0o644) }

        func remove() { unlink(path) }

        /// The PID if that process is alive and its command line still contains `marker` (guards
        /// against a recycled PID); a stale file is removed.
        func livePID(marker: String) -> pid_t? {
            guard let pid = read() else { return nil }
            if Processes.isAlive(pid), Processes.commandLine(pid).contains(where: { $0.contains(marker) }) {
                return pid
            }
            remove()
            return nil
        }
    }

    /// Waits until `pid` has exited or `timeout` passed; true if it is gone.
    static func waitForExit(_ pid: pid_t, timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while isAlive(pid) {
            if clock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return true
    }

    private static func temporaryPath(_ kind: String) -> String {
        let name = "pgha-\(getpid())-\(UUID().uuidString.prefix(8))-\(kind)"
        return (NSTemporaryDirectory() as NSString).appendingPathComponent(name)
    }

    private static func temporaryHandle(_ path: String) throws -> FileHandle {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SandboxError(.fileSystem, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }
}
