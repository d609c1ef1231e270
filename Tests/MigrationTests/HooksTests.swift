import Foundation
import Testing
@testable import Migration

/// Command hooks: real `/bin/sh` children, the time bound in the fake clock's time.
@Suite("Command hooks")
struct HooksTests {
    let redactor = SecretRedactor(secrets: ["hunter2-secret-value"])

    @Test("a hook's exit status, its environment and its output (redacted) come back")
    func runs() async throws {
        let runner = HookRunner(environment: ["PATH": "/usr/bin:/bin", "GREETING": "hello"], redactor: redactor)
        let result = try await runner.run(#"echo "$GREETING from $0"; echo "pw hunter2-secret-value" >&2; exit 3"#, key: "test.hook", timeout: .seconds(60), clock: SystemClock())
        #expect(result.exitStatus == 3)
        #expect(result.outputTail.contains("hello from /bin/sh"))
        #expect(result.outputTail.contains("pw <redacted>"))
        #expect(!result.outputTail.joined().contains("hunter2"))
    }

    @Test("a hook that outlives its bound is stopped with everything it started, and the error says which key to raise", .timeLimit(.minutes(1)))
    func timeout() async throws {
        let dir = try TempDirectory("hook")
        defer { dir.cleanup() }
        let pidFile = dir.file("child.pid")
        let runner = HookRunner(environment: ["PATH": "/usr/bin:/bin"], redactor: redactor)
        // The fake clock moves without sleeping: 120 simulated seconds pass at once — but only once
        // the hook has started its background child (otherwise there would be nothing to check).
        let clock = GatedClock(FakeClock(tick: 0)) { FileManager.default.fileExists(atPath: pidFile) && ((try? String(contentsOfFile: pidFile, encoding: .utf8))?.hasSuffix("\n") ?? false) }
        let error = await #expect(throws: MigrationError.self) {
            _ = try await runner.run("sleep 600 & echo $! > \(pidFile); echo started; wait", key: "sync.start_cluster", timeout: .seconds(120), clock: clock)
        }
        #expect(error?.code == .stageFailed)
        #expect(error?.message.contains("sync.start_cluster did not finish within 120 s (playbook: sync.hook_timeout)") == true)
        // The background child was in the hook's process group: gone too.
        let text = try #require(try dir.read("child.pid"))
        let pid = try #require(Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        var alive = kill(pid, 0) == 0
        for _ in 0..<100 where alive {
            try await Task.sleep(for: .milliseconds(20))
            alive = kill(pid, 0) == 0
        }
        #expect(!alive)
    }

    @Test("cancelling the task stops the hook and reports an interruption", .timeLimit(.minutes(1)))
    func cancelled() async throws {
        let runner = HookRunner(environment: ["PATH": "/usr/bin:/bin"], redactor: redactor)
        let task = Task { try await runner.run("sleep 600", key: "k", timeout: .seconds(900), clock: SystemClock()) }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        do {
            _ = try await task.value
            Issue.record("the hook was not stopped")
        } catch let error as MigrationError {
            #expect(error.code == .interrupted)
        }
    }
}

/// A fake clock whose time stands still until `open()` holds (it yields meanwhile, never sleeps).
final class GatedClock: MigrationClock {
    let inner: FakeClock
    let open: @Sendable () -> Bool

    init(_ inner: FakeClock, open: @escaping @Sendable () -> Bool) {
        self.inner = inner
        self.open = open
    }

    func now() -> Date { inner.now() }

    func sleep(for duration: Duration) async throws {
        while !open() {
            try Task.checkCancellation()
            await Task.yield()
        }
        try await inner.sleep(for: duration)
    }
}
