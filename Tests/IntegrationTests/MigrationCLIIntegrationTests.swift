import Foundation
import Migration
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The migration commands (`plan`, `run`, `migrate`, `status`, `resume`, `rollback`) of the BUILT
/// `pgha` binary, run as child processes against the sandbox (`pgha sandbox up`).
///
/// Each test works in its own temporary directory: a copy of playbooks/sandbox-logical.yml (whose outputs
/// are relative, so they land in that directory), its own `--state-dir`. The tests only read the
/// cluster. The binary is `pgha` next to the test bundle (`.build/debug/pgha`; `swift build`
/// builds it, and so does `swift test`), or `$PGHA_BINARY`.
///
/// The kill -9 tests use the binary's test hooks `PGHA_TEST_CRASH_AT_WRITE=N` (SIGKILL right after
/// the Nth state write) and `PGHA_TEST_CRASH_BEFORE_WRITE=N` (SIGKILL just before it).
@Suite("pgha migration commands on the sandbox", .serialized, .enabled(if: TestEnvironment.patroniEnabled))
struct MigrationCLIIntegrationTests {
    // MARK: - plan, run, status

    @Test("sandbox status in a directory without a sandbox says so (exit 2) instead of reporting another sandbox's servers")
    func sandboxStatusWithoutSandbox() throws {
        let cli = try CLIHarness.make()
        let work = try Workspace(cli)
        defer { work.remove() }
        let status = cli.run(["sandbox", "status", "--base-dir", work.path + "/none", "--json"], in: work, timeout: 30)
        #expect(status.exitCode == 2, "\(status)")
        #expect(status.stderr.contains("no sandbox in \(work.path)/none (no sandbox.json there)"), "\(status)")
        #expect(status.stderr.contains("next: pgha sandbox up --base-dir \(work.path)/none") && status.stdout.isEmpty, "\(status)")
        #expect(!FileManager.default.fileExists(atPath: work.path + "/none"), "status created nothing")
    }

    @Test("plan validates, shows every stage and changes nothing")
    func planChangesNothing() throws {
        let cli = try CLIHarness.make()
        let work = try Workspace(cli)
        defer { work.remove() }
        let before = try work.tree(includingState: true)

        let plan = cli.run(["plan", "sandbox.yml", "--state-dir", work.stateDir], in: work)
        #expect(plan.exitCode == 0, "\(plan)")
        #expect(plan.stdout.contains("`pgha run` would run: prerequisites, extensions, config."), "\(plan)")
        #expect(plan.stdout.contains("It would stop before 'sync': this version of pgha cannot run it for this playbook"), "\(plan)")
        #expect(plan.stdout.contains("NOT BUILT YET"), "\(plan)")
        #expect(plan.stdout.contains("new file") && plan.stdout.contains("app.single-node.env"), "the plan shows the diffs")
        #expect(plan.stdout.contains("Nothing was changed."))

        let json = cli.run(["plan", "sandbox.yml", "--state-dir", work.stateDir, "--json"], in: work)
        #expect(json.exitCode == 0, "\(json)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(document["stopsBefore"] as? String == "sync")
        #expect(document["wouldRun"] as? [String] == ["prerequisites", "extensions", "config"])
        #expect((document["stages"] as? [Any])?.count == MigrationStage.allCases.count)

        #expect(try work.tree(includingState: true) == before, "plan wrote nothing: no state directory, no output file")
        #expect(!FileManager.default.fileExists(atPath: work.stateDir))
    }

    @Test("run passes prerequisites, extensions and config, stops before sync with exit 5; status reports it")
    func runStopsBeforeSync() throws {
        let cli = try CLIHarness.make()
        let work = try Workspace(cli)
        defer { work.remove() }

        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work)
        #expect(run.exitCode == 5, "\(run)")
        #expect(run.stdout.contains("Stopped before stage 'sync': this version of pgha cannot run it for this playbook"), "\(run)")
        #expect(run.stdout.contains("Why: sync.method: logical needs sync.publisher"), "\(run)")
        #expect(run.stdout.contains("gate prerequisites: PASS") || run.stdout.contains("gate prerequisites: WARN"), "\(run)")
        #expect(run.stdout.contains("gate config: PASS"), "\(run)")

        let status = cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work)
        #expect(status.exitCode == 0, "\(status)")
        let report = try CLIHarness.decodeReport(status.stdout)
        #expect(report.outcome == .stoppedBeforeUnbuiltStage(.sync))
        #expect(report.exitCode == 5)
        #expect(report.stages.prefix(3).map(\.status) == [.passed, .passed, .passed])
        #expect(report.stages.dropFirst(3).allSatisfy { $0.status == .pending })
        #expect(report.filesInPlace.count == 5)
        #expect(report.lockedBy == nil)

        let table = cli.run(["status", "--state-dir", work.stateDir], in: work)
        #expect(table.exitCode == 0, "\(table)")
        #expect(table.stdout.contains("STAGE") && table.stdout.contains("config") && table.stdout.contains("passed"), "\(table)")
        #expect(table.stdout.contains("files in place"), "\(table)")

        // Running again is idempotent: nothing is rewritten, same exit code.
        let files = try work.tree(includingState: false)
        let again = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--json"], in: work)
        #expect(again.exitCode == 5, "\(again)")
        #expect(try work.tree(includingState: false) == files)
        let lines = again.stdout.split(separator: "\n").map(String.init)
        #expect(lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil }, "every --json line is a JSON object")
        let last = try #require(lines.last)
        #expect(last.hasPrefix(#"{"event":"report""#), "\(last)")
        #expect(last.contains(#""exitCode":5"#))
    }

    @Test("--until stops after the named stage (exit 0), resume continues")
    func untilThenResume() throws {
        let cli = try CLIHarness.make()
        let work = try Workspace(cli)
        defer { work.remove() }
        let original = try work.tree(includingState: false)
        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "extensions"], in: work)
        #expect(run.exitCode == 0, "\(run)")
        #expect(run.stdout.contains("Stopped after stage 'extensions' as requested"), "\(run)")
        #expect(try work.tree(includingState: false) == original, "config did not run")
        let resume = cli.run(["resume", "--state-dir", work.stateDir], in: work)
        #expect(resume.exitCode == 5, "\(resume)")
        #expect(try StateStore(directory: work.stateDir).load().filesInPlace.count == 5)
        let bad = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "nonsense"], in: work)
        #expect(bad.exitCode == 64, "\(bad)")
        #expect(bad.stderr.contains("'nonsense'") && bad.stderr.contains("- prerequisites") && bad.stderr.contains("- complete"), "\(bad)")
    }

    // MARK: - rollback

    @Test("rollback restores every file exactly (bytes and mode) and removes the ones pgha created")
    func rollbackRestoresFiles() throws {
        let cli = try CLIHarness.make()
        let work = try Workspace(cli)
        defer { work.remove() }
        let original = try work.tree(includingState: false)

        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work)
        #expect(run.exitCode == 5, "\(run)")
        #expect(try work.tree(includingState: false) != original, "the run changed the files")

        let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work)
        #expect(rollback.exitCode == 0, "\(rollback)")
        #expect(rollback.stdout.contains("Rolled back"), "\(rollback)")
        #expect(try work.tree(includingState: false) == original, "every file as before, byte for byte with its mode")

        let status = try CLIHarness.decodeReport(cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work).stdout)
        #expect(status.outcome == .rolledBack(requested: true))
        #expect(status.stages.prefix(3).allSatisfy { $0.status == .rolledBack })
        #expect(status.filesInPlace.isEmpty)
        #expect(status.direction == .forward)

        // Rolling back again is harmless; a new run starts over.
        #expect(cli.run(["rollback", "--state-dir", work.stateDir], in: work).exitCode == 0)
        #expect(try work.tree(includingState: false) == original)
        #expect(cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work).exitCode == 5)
    }

    // MARK: - kill -9

    @Test("kill -9 right after (and just before) every state write of a run, then resume: the uninterrupted end state")
    func killAtEveryWrite() throws {
        let cli = try CLIHarness.make()
        let reference = try cli.referenceRun()
        for hook in ["PGHA_TEST_CRASH_AT_WRITE", "PGHA_TEST_CRASH_BEFORE_WRITE"] {
            var crashes = 0
            for n in 1...500 {
                let work = try Workspace(cli)
                defer { work.remove() }
                let original = try work.tree(includingState: false)
                let crashed = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work, environment: [hook: "\(n)"])
                if !crashed.signaled {
                    // Fewer than n writes: the run finished normally.
                    #expect(crashed.exitCode == 5, "\(hook)=\(n): \(crashed)")
                    break
                }
                crashes += 1
                #expect(crashed.status == SIGKILL, "\(hook)=\(n)")
                // Killed before the very first write, there is no state: the operator runs again.
                let hasState = FileManager.default.fileExists(atPath: work.stateDir + "/state.json")
                #expect(hasState || (hook == "PGHA_TEST_CRASH_BEFORE_WRITE" && n == 1), "\(hook)=\(n)")
                let resume = cli.run(hasState ? ["resume", "--state-dir", work.stateDir] : ["run", "sandbox.yml", "--state-dir", work.stateDir], in: work)
                #expect(resume.exitCode == 5, "\(hook)=\(n): \(resume)")
                #expect(try work.endState() == reference, "\(hook)=\(n)")
                // And the resumed migration still rolls back to the original files.
                let rollback = cli.run(["rollback", "--state-dir", work.stateDir], in: work)
                #expect(rollback.exitCode == 0, "\(hook)=\(n): \(rollback)")
                #expect(try work.tree(includingState: false) == original, "\(hook)=\(n): rollback after resume")
            }
            #expect(crashes > 15, "\(hook): a run writes its state at many boundaries (\(crashes))")
            print("\(hook): killed and resumed at \(crashes) state writes")
        }
    }

    @Test("kill -9 at every state write of a rollback, then resume (or rollback): every file restored exactly")
    func killRollbackAtEveryWrite() throws {
        let cli = try CLIHarness.make()
        var crashes = 0
        for n in 1...500 {
            let work = try Workspace(cli)
            defer { work.remove() }
            let original = try work.tree(includingState: false)
            #expect(cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work).exitCode == 5)
            let crashed = cli.run(["rollback", "--state-dir", work.stateDir], in: work, environment: ["PGHA_TEST_CRASH_AT_WRITE": "\(n)"])
            if !crashed.signaled {
                #expect(crashed.exitCode == 0, "n=\(n): \(crashed)")
                break
            }
            crashes += 1
            // Either the rollback was interrupted (and the state says so), or the kill came after
            // its last write (the outcome is recorded): `pgha resume` finishes it or has nothing to do.
            let state = try StateStore(directory: work.stateDir).load()
            let finished = state.lastOutcome == .rolledBack(requested: true)
            #expect(state.direction == .rollback || finished, "an interrupted rollback is recorded as one (n=\(n))")
            let resume = cli.run(["resume", "--state-dir", work.stateDir], in: work)
            #expect(resume.exitCode == 0, "n=\(n): \(resume)")
            if finished { #expect(resume.stdout.contains("Nothing to resume"), "n=\(n): \(resume)") }
            #expect(try work.tree(includingState: false) == original, "n=\(n)")
            let report = try CLIHarness.decodeReport(cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work).stdout)
            #expect(report.stages.prefix(3).allSatisfy { $0.status == .rolledBack }, "n=\(n)")
        }
        #expect(crashes > 5, "a rollback writes its state at several boundaries (\(crashes))")
        print("rollback: killed and resumed at \(crashes) state writes")
    }

    @Test("a real kill -9 from outside at random moments, then resume: the uninterrupted end state")
    func externalKill() throws {
        let cli = try CLIHarness.make()
        let started = Date()
        let reference = try cli.referenceRun()
        let duration = Date().timeIntervalSince(started)
        var generator = SystemRandomNumberGenerator()
        for attempt in 1...3 {
            let work = try Workspace(cli)
            defer { work.remove() }
            let delay = Double.random(in: 0.05...max(0.1, duration * 0.9), using: &generator)
            let process = try cli.start(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work)
            Thread.sleep(forTimeInterval: delay)
            process.signal(SIGKILL)
            let killed = process.wait(timeout: 60)
            let hasState = FileManager.default.fileExists(atPath: work.stateDir + "/state.json")
            let resume = cli.run(hasState ? ["resume", "--state-dir", work.stateDir] : ["run", "sandbox.yml", "--state-dir", work.stateDir], in: work)
            #expect(resume.exitCode == 5, "attempt \(attempt) (kill after \(delay) s, \(killed.signaled ? "killed" : "had finished")): \(resume)")
            #expect(try work.endState(ignoringStrayTemporaries: true) == reference, "attempt \(attempt), kill after \(delay) s")
            print("external kill -9 after \(String(format: "%.3f", delay)) s: \(killed.signaled ? "killed mid-run" : "the run had already finished"); resumed to the same end state")
        }
    }

    // MARK: - The guided mode

    @Test("migrate driven through a pipe: y to everything reaches the same end; n stops cleanly; no input stops safely")
    func migrateThroughPipe() throws {
        let cli = try CLIHarness.make()
        let reference = try cli.referenceRun()

        let yes = try Workspace(cli)
        defer { yes.remove() }
        let all = cli.run(["migrate", "sandbox.yml", "--state-dir", yes.stateDir], in: yes, stdin: .text("y\ny\ny\n"))
        #expect(all.exitCode == 5, "\(all)")
        #expect(all.stdout.components(separatedBy: "Run stage '").count - 1 == 3, "asked once per built stage: \(all)")
        #expect(all.stdout.contains("new file"), "the guided plan shows the diffs before asking")
        #expect(try yes.endState() == reference)

        let no = try Workspace(cli)
        defer { no.remove() }
        let original = try no.tree(includingState: false)
        let declined = cli.run(["migrate", "sandbox.yml", "--state-dir", no.stateDir], in: no, stdin: .text("y\ny\nn\n"))
        #expect(declined.exitCode == 9, "\(declined)")
        #expect(declined.stdout.contains("Stopped before stage 'config' at the operator's request"), "\(declined)")
        #expect(try no.tree(includingState: false) == original, "config did not run")
        let report = try CLIHarness.decodeReport(cli.run(["status", "--state-dir", no.stateDir, "--json"], in: no).stdout)
        #expect(report.stages.prefix(3).map(\.status) == [.passed, .passed, .pending])

        let silent = try Workspace(cli)
        defer { silent.remove() }
        let eof = cli.run(["migrate", "sandbox.yml", "--state-dir", silent.stateDir], in: silent, stdin: .none)
        #expect(eof.exitCode == 9, "\(eof)")
        #expect(eof.stdout.contains("no answer (end of input): stopping here"), "\(eof)")

        // Skipping asks for a reason and a confirmation; the reason is recorded.
        let skip = try Workspace(cli)
        defer { skip.remove() }
        let skipped = cli.run(["migrate", "sandbox.yml", "--state-dir", skip.stateDir], in: skip, stdin: .text("y\ns\nrehearsal without extension check\ny\nn\n"))
        #expect(skipped.exitCode == 9, "\(skipped)")
        let skipReport = try CLIHarness.decodeReport(cli.run(["status", "--state-dir", skip.stateDir, "--json"], in: skip).stdout)
        #expect(skipReport.stages[1].status == .skipped(reason: "rehearsal without extension check"))
    }

    @Test("migrate through a pseudo-terminal, answering y at every prompt: the same end")
    func migrateThroughPTY() throws {
        let cli = try CLIHarness.make()
        let reference = try cli.referenceRun()
        let work = try Workspace(cli)
        defer { work.remove() }
        let python = try #require(["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }, "python3 drives the pseudo-terminal")
        // Spawns pgha on a pty, answers "y" to every "Run stage" question, exits with pgha's status.
        let driver = """
            import os, pty, sys, select
            pid, fd = pty.fork()
            if pid == 0:
                os.execv(sys.argv[1], sys.argv[1:])
            seen, answered = b"", 0
            while True:
                try:
                    r, _, _ = select.select([fd], [], [], 120)
                    if not r: break
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data: break
                seen += data
                sys.stdout.buffer.write(data); sys.stdout.flush()
                if seen.count(b"Run stage '") > answered:
                    answered += 1
                    os.write(fd, b"y\\n")
            _, status = os.waitpid(pid, 0)
            sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
            """
        let result = cli.run([python, "-c", driver, cli.binary, "migrate", "sandbox.yml", "--state-dir", work.stateDir], in: work, executable: python)
        #expect(result.exitCode == 5, "\(result)")
        #expect(result.stdout.contains("Stopped before stage 'sync'"), "\(result)")
        #expect(try work.endState() == reference)
    }

    @Test("SIGINT at a prompt: exit 130 with `pgha resume` advice; resume (guided, as started) finishes")
    func sigintAtPromptThenResume() throws {
        let cli = try CLIHarness.make()
        let reference = try cli.referenceRun()
        let work = try Workspace(cli)
        defer { work.remove() }
        let process = try cli.start(["migrate", "sandbox.yml", "--state-dir", work.stateDir], in: work, stdin: .open)
        process.send("y\ny\n")
        #expect(process.waitForOutput("Run stage 'config' now?", timeout: 120), "\(process.stdout)")
        process.signal(SIGINT)
        let interrupted = process.wait(timeout: 60)
        #expect(interrupted.exitCode == 130, "\(interrupted)")
        #expect(interrupted.stderr.contains("SIGINT (Ctrl-C) received"), "\(interrupted)")
        #expect(interrupted.stdout.contains("pgha resume"), "\(interrupted)")
        let report = try CLIHarness.decodeReport(cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work).stdout)
        #expect(report.outcome == .interrupted(.config))
        #expect(report.lockedBy == nil)
        #expect(!FileManager.default.fileExists(atPath: work.stateDir + "/lock"), "the lock was released")

        let resume = cli.run(["resume", "--state-dir", work.stateDir], in: work, stdin: .text("y\n"))
        #expect(resume.exitCode == 5, "\(resume)")
        #expect(resume.stdout.contains("Run stage 'config' now?"), "resume asks, as the migration was started with migrate: \(resume)")
        #expect(try work.endState() == reference)
    }

    @Test("two quick Ctrl-C at a prompt end cleanly (exit 130, state readable, lock free); SIGTERM at a prompt and during run")
    func repeatedSignals() throws {
        let cli = try CLIHarness.make()
        let reference = try cli.referenceRun()
        let work = try Workspace(cli)
        defer { work.remove() }
        let process = try cli.start(["migrate", "sandbox.yml", "--state-dir", work.stateDir], in: work, stdin: .open)
        #expect(process.waitForOutput("Run stage 'prerequisites' now?", timeout: 120), "\(process.stdout)")
        process.signal(SIGINT)
        process.signal(SIGINT)
        let result = process.wait(timeout: 60)
        #expect(result.exitCode == 130, "\(result)")
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump"), "\(result)")
        let status = cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work)
        #expect(status.exitCode == 0, "the state is readable: \(status)")
        #expect(try CLIHarness.decodeReport(status.stdout).lockedBy == nil)
        #expect(cli.run(["resume", "--state-dir", work.stateDir, "--unattended"], in: work).exitCode == 5)
        #expect(try work.endState() == reference)

        // SIGTERM at a prompt: the same clean stop.
        let prompt = try Workspace(cli)
        defer { prompt.remove() }
        let asking = try cli.start(["migrate", "sandbox.yml", "--state-dir", prompt.stateDir], in: prompt, stdin: .open)
        asking.send("y\n")
        #expect(asking.waitForOutput("Run stage 'extensions' now?", timeout: 120), "\(asking.stdout)")
        asking.signal(SIGTERM)
        let terminated = asking.wait(timeout: 60)
        #expect(terminated.exitCode == 130, "\(terminated)")
        #expect(terminated.stderr.contains("SIGTERM received"), "\(terminated)")
        #expect(try CLIHarness.decodeReport(cli.run(["status", "--state-dir", prompt.stateDir, "--json"], in: prompt).stdout).outcome == .interrupted(.extensions))

        // SIGTERM while `pgha run` works (the run is short: it may finish first).
        let term = try Workspace(cli)
        defer { term.remove() }
        let running = try cli.start(["run", "sandbox.yml", "--state-dir", term.stateDir], in: term)
        #expect(running.waitForOutput("==> [1/7] prerequisites", timeout: 60), "\(running.stdout)")
        running.signal(SIGTERM)
        let stopped = running.wait(timeout: 60)
        #expect(stopped.exitCode == 130 || stopped.exitCode == 5, "\(stopped)")
        if stopped.exitCode == 130 {
            #expect(stopped.stderr.contains("SIGTERM received"), "\(stopped)")
            #expect(stopped.stdout.contains("pgha resume"), "\(stopped)")
        }
        print("SIGTERM during pgha run: \(stopped.exitCode == 130 ? "interrupted (exit 130)" : "the run finished first (exit 5)")")
        #expect(cli.run(["resume", "--state-dir", term.stateDir], in: term).exitCode == 5)
        #expect(try term.endState() == reference)
    }

    @Test("a stage failing after changes: guided retry / abort / rollback, and run's on_failure: rollback (exit 4)")
    func failureDecisions() throws {
        let cli = try CLIHarness.make()
        // patroni.yml's path is a directory: the config stage writes the other files, then fails.
        let work = try Workspace(cli, blockedOutput: "patroni.yml")
        defer { work.remove() }
        let original = try work.tree(includingState: false)

        let aborted = cli.run(["migrate", "sandbox.yml", "--state-dir", work.stateDir], in: work, stdin: .text("y\ny\ny\nr\na\n"))
        #expect(aborted.exitCode == 3, "\(aborted)")
        #expect(aborted.stdout.contains("Stage 'config' failed"), "\(aborted)")
        #expect(aborted.stdout.contains("[r]etry / [s]kip / roll[b]ack / [a]bort"), "rollback is offered once something changed: \(aborted)")
        #expect(aborted.stdout.contains("running config (attempt 2)"), "retried: \(aborted)")
        #expect(try work.tree(includingState: false) != original, "the files written before the failure stay until rollback")
        let stopped = try CLIHarness.decodeReport(cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work).stdout)
        #expect(stopped.outcome == .stoppedAfterFailure(.config))
        #expect(stopped.stages[2].status.name == "failed")

        // Declining the rollback confirmation asks again; then roll back for real.
        let rolledBack = cli.run(["resume", "--state-dir", work.stateDir], in: work, stdin: .text("y\nb\nn\nb\ny\n"))
        #expect(rolledBack.exitCode == 4, "\(rolledBack)")
        #expect(rolledBack.stdout.contains("Not rolled back."), "\(rolledBack)")
        #expect(try work.tree(includingState: false) == original, "every file restored exactly")

        // Unattended: the playbook says on_failure: rollback.
        let run = cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work)
        #expect(run.exitCode == 4, "\(run)")
        #expect(run.stdout.contains("A stage failed and the run rolled back"), "\(run)")
        #expect(try work.tree(includingState: false) == original)

        // Without a state dir the same failure with "a" at once, then a skip of config with reason.
        let skip = try Workspace(cli, blockedOutput: "patroni.yml")
        defer { skip.remove() }
        let skipped = cli.run(["migrate", "sandbox.yml", "--state-dir", skip.stateDir], in: skip, stdin: .text("y\ny\ny\ns\nfiles are managed elsewhere\ny\n"))
        #expect(skipped.exitCode == 5, "skipping config reaches the unbuilt sync stage: \(skipped)")
        let report = try CLIHarness.decodeReport(cli.run(["status", "--state-dir", skip.stateDir, "--json"], in: skip).stdout)
        #expect(report.stages[2].status == .skipped(reason: "files are managed elsewhere"))
    }

    // MARK: - Secrets, errors, lock

    @Test("no sandbox password in the state file, the JSON report, logs, or any command's output")
    func noSecretsAnywhere() throws {
        let cli = try CLIHarness.make()
        #expect(!cli.secrets.isEmpty, "the sandbox's passwords are known")
        let work = try Workspace(cli)
        defer { work.remove() }
        let verbose = ["PGHA_LOG_LEVEL": "trace"]
        var outputs: [(String, CommandResult)] = []
        outputs.append(("plan", cli.run(["plan", "sandbox.yml", "--state-dir", work.stateDir], in: work, environment: verbose)))
        outputs.append(("plan --json", cli.run(["plan", "sandbox.yml", "--state-dir", work.stateDir, "--json"], in: work, environment: verbose)))
        outputs.append(("migrate", cli.run(["migrate", "sandbox.yml", "--state-dir", work.stateDir, "--until", "extensions"], in: work, environment: verbose, stdin: .text("y\ny\n"))))
        outputs.append(("run --json", cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--json"], in: work, environment: verbose)))
        outputs.append(("status", cli.run(["status", "--state-dir", work.stateDir], in: work, environment: verbose)))
        outputs.append(("status --json", cli.run(["status", "--state-dir", work.stateDir, "--json"], in: work, environment: verbose)))
        var stateText = try String(contentsOfFile: work.stateDir + "/state.json", encoding: .utf8)
        outputs.append(("rollback --json", cli.run(["rollback", "--state-dir", work.stateDir, "--json"], in: work, environment: verbose)))
        stateText += try String(contentsOfFile: work.stateDir + "/state.json", encoding: .utf8)
        #expect(outputs.last?.1.exitCode == 0)
        #expect(outputs[3].1.exitCode == 5, "\(outputs[3].1)")

        // The generated .env does carry the password (the application needs it): the check below
        // looks for values that really flow through pgha.
        let work2 = try Workspace(cli)
        defer { work2.remove() }
        #expect(cli.run(["run", "sandbox.yml", "--state-dir", work2.stateDir], in: work2).exitCode == 5)
        let env = try String(contentsOfFile: work2.path + "/.pgha/sandbox-logical/out/app.env", encoding: .utf8)
        #expect(cli.secrets.contains { env.contains($0) }, "the generated .env holds a sandbox password")

        for secret in cli.secrets {
            let escaped = String(decoding: try JSONEncoder().encode(secret), as: UTF8.self).dropFirst().dropLast()
            #expect(!stateText.contains(secret) && !stateText.contains(escaped), "a sandbox password in the state file")
            for (name, result) in outputs {
                #expect(!result.stdout.contains(secret) && !result.stdout.contains(escaped), "a sandbox password in the stdout of \(name)")
                #expect(!result.stderr.contains(secret), "a sandbox password in the stderr (logs) of \(name)")
            }
        }
    }

    @Test("missing, corrupt, truncated and newer-schema state files: clear errors, exit 7")
    func unreadableStateFiles() throws {
        let cli = try CLIHarness.make()
        let work = try Workspace(cli)
        defer { work.remove() }

        let missing = cli.run(["status", "--state-dir", work.stateDir], in: work)
        #expect(missing.exitCode == 7, "\(missing)")
        #expect(missing.stderr.contains("no migration state"), "\(missing)")
        #expect(cli.run(["resume", "--state-dir", work.stateDir], in: work).exitCode == 7)
        #expect(cli.run(["rollback", "--state-dir", work.stateDir], in: work).exitCode == 7)

        #expect(cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work).exitCode == 5)
        let stateFile = work.stateDir + "/state.json"
        let good = try Data(contentsOf: URL(fileURLWithPath: stateFile))

        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: stateFile))
        for command in [["status"], ["resume"], ["rollback"], ["run", "sandbox.yml"]] {
            let r = cli.run(command + ["--state-dir", work.stateDir], in: work)
            #expect(r.exitCode == 7, "\(command) on a truncated state: \(r)")
            #expect(r.stderr.contains("is not valid JSON at byte") && r.stderr.contains("cut short"), "\(r)")
        }

        try Data("{\"schemaVersion\": 1, \"stages\": [ {\"stage\": \"config\", \"status\": {\"state\": \"exploded\"}} ]}".utf8).write(to: URL(fileURLWithPath: stateFile))
        let corrupt = cli.run(["status", "--state-dir", work.stateDir], in: work)
        #expect(corrupt.exitCode == 7, "\(corrupt)")
        #expect(corrupt.stderr.contains("does not match schema"), "\(corrupt)")

        try Data(#"{"schemaVersion": 3, "toolVersion": "9.1.0", "stages": []}"#.utf8).write(to: URL(fileURLWithPath: stateFile))
        let newer = cli.run(["resume", "--state-dir", work.stateDir, "--json"], in: work)
        #expect(newer.exitCode == 7, "\(newer)")
        #expect(newer.stderr.contains("was written by pgha 9.1.0 with schema 3") && newer.stderr.contains("this pgha reads schema 2 or older"), "\(newer)")
        #expect(newer.stdout.contains(#""code":"stateTooNew""#) && newer.stdout.contains(#""exitCode":7"#), "\(newer)")
    }

    @Test("a held lock gives exit 6 naming the holder (status still reads); a changed playbook exit 2 unless accepted")
    func lockAndPlaybookChange() throws {
        let cli = try CLIHarness.make()
        let work = try Workspace(cli)
        defer { work.remove() }
        #expect(cli.run(["run", "sandbox.yml", "--state-dir", work.stateDir, "--until", "prerequisites"], in: work).exitCode == 0)

        // A guided run waiting at its first question holds the state directory's lock.
        let holder = try cli.start(["migrate", "sandbox.yml", "--state-dir", work.stateDir], in: work, stdin: .open)
        #expect(holder.waitForOutput("Run stage 'extensions' now?", timeout: 120), "\(holder.stdout)")
        let locked = cli.run(["resume", "--state-dir", work.stateDir], in: work)
        #expect(locked.exitCode == 6, "\(locked)")
        #expect(locked.stderr.contains("the state directory is in use by pgha migrate (pid \(holder.process.processIdentifier)"), "\(locked)")
        let status = cli.run(["status", "--state-dir", work.stateDir], in: work)
        #expect(status.exitCode == 0, "status reads without the lock: \(status)")
        #expect(status.stdout.contains("lock:      held by pgha migrate (pid \(holder.process.processIdentifier)"), "\(status)")
        holder.closeInput()  // end of input: the safe answer, stop
        let declined = holder.wait(timeout: 60)
        #expect(declined.exitCode == 9, "\(declined)")

        try (try String(contentsOfFile: work.path + "/sandbox.yml", encoding: .utf8) + "\n# edited\n")
            .write(toFile: work.path + "/sandbox.yml", atomically: true, encoding: .utf8)
        let changed = cli.run(["resume", "--state-dir", work.stateDir], in: work)
        #expect(changed.exitCode == 2, "\(changed)")
        #expect(changed.stderr.contains("--accept-playbook-change"), "\(changed)")
        let accepted = cli.run(["resume", "--state-dir", work.stateDir, "--accept-playbook-change", "--unattended"], in: work)
        #expect(accepted.exitCode == 5, "\(accepted)")
    }

    @Test("pgha sandbox env exports every ${VAR} playbooks/sandbox.yml references")
    func sandboxEnvCoversThePlaybook() throws {
        let cli = try CLIHarness.make()
        let playbook = try PlaybookParser.load(path: CLIHarness.repository + "/playbooks/sandbox.yml")
        for (key, reference) in playbook.playbook.credentialReferences {
            #expect(cli.sandboxExports.contains(reference.variable), "\(key) refers to \(reference), which `pgha sandbox env` does not export")
        }
    }
}

// MARK: - Harness

/// How a child process ended and what it printed.
struct CommandResult: CustomStringConvertible {
    /// The exit status, or the signal number when `signaled`.
    var status: Int32
    var signaled: Bool
    var stdout: String
    var stderr: String

    /// The exit status (nil when a signal ended the process).
    var exitCode: Int32? { signaled ? nil : status }

    var description: String {
        "\(signaled ? "killed by signal" : "exit") \(status)\n--- stdout\n\(stdout.suffix(6000))\n--- stderr\n\(stderr.suffix(3000))"
    }
}

/// A running child process, its output in files (no pipe to drain, no deadlock).
final class ChildProcess {
    enum Input {
        /// `/dev/null`.
        case none
        /// These bytes through a pipe, then end of input.
        case text(String)
        /// A pipe kept open (`send`).
        case open
    }

    let process = Process()
    private let outPath: String
    private let errPath: String
    private let inputPipe: Pipe?

    init(executable: String, arguments: [String], directory: String, environment: [String: String], input: Input, scratch: String) throws {
        outPath = scratch + "/stdout-\(UUID().uuidString)"
        errPath = scratch + "/stderr-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        switch input {
        case .none:
            inputPipe = nil
            process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        case .text, .open:
            let pipe = Pipe()
            inputPipe = pipe
            process.standardInput = pipe
        }
        try process.run()
        if case .text(let text) = input {
            send(text)
            closeInput()
        }
    }

    /// A test that ends early (a `try` that threw) leaves nothing running behind it: a workload
    /// left writing would slow every later test's apply and judge.
    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        closeInput()
    }

    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    func send(_ text: String) {
        inputPipe?.fileHandleForWriting.write(Data(text.utf8))
    }

    func closeInput() {
        try? inputPipe?.fileHandleForWriting.close()
    }

    func signal(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// Polls standard output until it contains `text`.
    func waitForOutput(_ text: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stdout.contains(text) { return true }
            if !process.isRunning { return stdout.contains(text) }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    /// Waits for the end (SIGKILL after `timeout`, recorded as an issue).
    func wait(timeout: TimeInterval) -> CommandResult {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        if process.isRunning {
            Issue.record("\(process.arguments ?? []) still running after \(timeout) s; killed")
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        closeInput()
        let result = CommandResult(
            status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
            stdout: stdout, stderr: stderr)
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
        return result
    }
}

/// The built binary, the environment `pgha sandbox env` gives, the sandbox's passwords.
struct CLIHarness {
    let binary: String
    /// The parent environment plus the sandbox's variables (crash hooks removed).
    let environment: [String: String]
    /// Variable names `pgha sandbox env` exports.
    let sandboxExports: Set<String>
    /// Every sandbox password (secrets/*), to look for where none may be.
    let secrets: [String]
    let scratch: String

    static let repository: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    private static let shared: Result<CLIHarness, any Error> = Result { try CLIHarness() }

    static func make() throws -> CLIHarness { try shared.get() }

    struct SetupError: Error, CustomStringConvertible {
        var description: String
    }

    private init() throws {
        let variables = ProcessInfo.processInfo.environment
        let candidates = [
            variables["PGHA_BINARY"],
            ((CommandLine.arguments.first ?? "") as NSString).deletingLastPathComponent + "/pgha",
            ((Bundle.main.bundlePath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("pgha"),
            Self.repository + "/.build/debug/pgha",
        ].compactMap { $0 }
        guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw SetupError(description: "the pgha binary was not found (looked at \(candidates)); run `swift build` first or set PGHA_BINARY")
        }
        self.binary = binary
        scratch = NSTemporaryDirectory() + "pgha-cli-scratch-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)

        // What `eval "$(pgha sandbox env)"` gives a shell.
        var base = variables
        for key in base.keys where key.hasPrefix("PGHA_TEST_CRASH") { base[key] = nil }
        if let dir = variables["PGHA_TEST_SANDBOX_DIR"], variables["PGHA_SANDBOX_DIR"] == nil { base["PGHA_SANDBOX_DIR"] = dir }
        let exportsProcess = try ChildProcess(
            executable: "/bin/bash", arguments: ["-c", #""$0" sandbox env"#, binary], directory: Self.repository,
            environment: base, input: .none, scratch: scratch)
        let exports = exportsProcess.wait(timeout: 60)
        guard exports.exitCode == 0 else { throw SetupError(description: "`pgha sandbox env` failed: \(exports)") }
        sandboxExports = Set(exports.stdout.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("export "), let eq = line.firstIndex(of: "=") else { return nil }
            return String(line[line.index(line.startIndex, offsetBy: 7)..<eq])
        })
        let evaluated = try ChildProcess(
            executable: "/bin/bash", arguments: ["-c", #"eval "$("$0" sandbox env)" && env -0"#, binary], directory: Self.repository,
            environment: base, input: .none, scratch: scratch)
        let dump = evaluated.wait(timeout: 60)
        guard dump.exitCode == 0 else { throw SetupError(description: "eval \"$(pgha sandbox env)\" failed: \(dump)") }
        var environment: [String: String] = [:]
        for entry in dump.stdout.split(separator: "\0") {
            guard let eq = entry.firstIndex(of: "=") else { continue }
            environment[String(entry[..<eq])] = String(entry[entry.index(after: eq)...])
        }
        let sandboxDir = environment["PGHA_SANDBOX_DIR"] ?? "/tmp/pgha-sandbox"
        // The playbook's admin_user has no ${VAR} password: libpq reads the sandbox's password
        // file. `pgha sandbox env` does not export PGPASSFILE (yet): set it here.
        if environment["PGPASSFILE"] == nil, FileManager.default.fileExists(atPath: sandboxDir + "/secrets/pgpass") {
            environment["PGPASSFILE"] = sandboxDir + "/secrets/pgpass"
        }
        self.environment = environment

        var secrets: Set<String> = []
        let secretsDir = sandboxDir + "/secrets"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: secretsDir)) ?? [] {
            guard let text = try? String(contentsOfFile: secretsDir + "/" + name, encoding: .utf8) else { continue }
            if name == "pgpass" {
                // hostname:port:database:username:password (comments start with #)
                for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                    let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                    if fields.count == 5 { secrets.insert(String(fields[4])) }
                }
            } else {
                secrets.insert(text.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        self.secrets = secrets.filter { $0.count >= 6 }.sorted()
    }

    /// Runs `pgha ARGS` (or `executable ARGS`) in `workspace` and waits for it.
    func run(
        _ arguments: [String], in workspace: Workspace, environment extra: [String: String] = [:],
        stdin: ChildProcess.Input = .none, executable: String? = nil, timeout: TimeInterval = 300
    ) -> CommandResult {
        do {
            return try start(arguments, in: workspace, environment: extra, stdin: stdin, executable: executable).wait(timeout: timeout)
        } catch {
            Issue.record("cannot start \(arguments): \(error)")
            return CommandResult(status: -1, signaled: false, stdout: "", stderr: "\(error)")
        }
    }

    func start(
        _ arguments: [String], in workspace: Workspace, environment extra: [String: String] = [:],
        stdin: ChildProcess.Input = .none, executable: String? = nil
    ) throws -> ChildProcess {
        // With `executable`, arguments[0] names it (argv[0]) and is dropped.
        let args = executable == nil ? arguments : Array(arguments.dropFirst())
        return try ChildProcess(
            executable: executable ?? binary, arguments: args, directory: workspace.path,
            environment: environment.merging(extra) { _, new in new }, input: stdin, scratch: scratch)
    }

    /// The end state of an uninterrupted `pgha run` in a fresh workspace.
    func referenceRun() throws -> EndState {
        let work = try Workspace(self)
        defer { work.remove() }
        let run = self.run(["run", "sandbox.yml", "--state-dir", work.stateDir], in: work)
        guard run.exitCode == 5 else { throw SetupError(description: "the reference run failed: \(run)") }
        return try work.endState()
    }

    static func decodeReport(_ text: String) throws -> MigrationReport {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(MigrationReport.self, from: Data(text.utf8))
    }
}

/// A temporary directory with a copy of playbooks/sandbox-logical.yml as `sandbox.yml` (the
/// independent cluster; the logical method stops before sync) (outputs under `.pgha/sandbox-logical/out`,
/// relative, so inside this directory), two of the five output files already present with their
/// own bytes and modes (one not even UTF-8), and a state directory `state/`.
struct Workspace {
    let path: String
    var stateDir: String { path + "/state" }
    var outDir: String { path + "/.pgha/sandbox-logical/out" }

    /// - Parameter blockedOutput: an output file name whose path is made a directory, so that
    ///   writing it fails.
    init(_ cli: CLIHarness, blockedOutput: String? = nil) throws {
        path = NSTemporaryDirectory() + "pgha-cli-\(UUID().uuidString)"
        if let blockedOutput {
            try FileManager.default.createDirectory(atPath: path + "/.pgha/sandbox-logical/out/" + blockedOutput, withIntermediateDirectories: true)
        }
        try FileManager.default.createDirectory(atPath: path + "/.pgha/sandbox-logical/out", withIntermediateDirectories: true)
        // Without sync.publisher: the logical sync cannot run, so a run stops before it (these
        // tests are about the runner: locks, kill -9 at every state write, resume), and the
        // independent cluster is only read.
        let playbook = try String(contentsOfFile: CLIHarness.repository + "/playbooks/sandbox-logical.yml", encoding: .utf8)
        guard let start = playbook.range(of: "  # The role the cluster's subscriptions"), let end = playbook.range(of: "  slot: pgha_sync\n") else {
            throw CLIHarness.SetupError(description: "playbooks/sandbox-logical.yml has no sync.publisher block to remove")
        }
        try playbook.replacingCharacters(in: start.lowerBound..<end.lowerBound, with: "").write(toFile: path + "/sandbox.yml", atomically: true, encoding: .utf8)
        try Data("# the application's current settings\nAPP_SETTING=keep-me\n".utf8).write(to: URL(fileURLWithPath: outDir + "/app.env"))
        chmod(outDir + "/app.env", 0o644)
        try Data([0x23, 0x20, 0xFF, 0xFE, 0x00, 0x0A, 0x6C, 0x69, 0x73, 0x74, 0x65, 0x6E, 0x0A]).write(to: URL(fileURLWithPath: outDir + "/haproxy.cfg"))
        chmod(outDir + "/haproxy.cfg", 0o640)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Every file and directory under the workspace (the state directory optionally), with bytes
    /// and mode.
    func tree(includingState: Bool, ignoringStrayTemporaries: Bool = false) throws -> [String: FileFingerprint] {
        var result: [String: FileFingerprint] = [:]
        guard let enumerator = FileManager.default.enumerator(atPath: path) else { return result }
        while let relative = enumerator.nextObject() as? String {
            if !includingState && (relative == "state" || relative.hasPrefix("state/")) { continue }
            if ignoringStrayTemporaries && (relative as NSString).lastPathComponent.hasPrefix(".pgha-tmp-") { continue }
            var info = stat()
            guard lstat(path + "/" + relative, &info) == 0 else { continue }
            let isDirectory = (info.st_mode & S_IFMT) == S_IFDIR
            let contents = isDirectory ? nil : FileManager.default.contents(atPath: path + "/" + relative)
            result[relative] = FileFingerprint(directory: isDirectory, mode: UInt16(info.st_mode & 0o7777), contents: contents)
        }
        return result
    }

    /// What must be identical after an interrupted-and-resumed run and an uninterrupted one.
    func endState(ignoringStrayTemporaries: Bool = false) throws -> EndState {
        let state = try StateStore(directory: stateDir).load()
        return EndState(
            stages: state.stages.map { "\($0.stage)=\($0.status.name)" },
            outcome: state.lastOutcome?.kind,
            direction: state.direction.rawValue,
            filesInPlace: state.filesInPlace.map { "\($0.key) \($0.path.replacingOccurrences(of: path, with: "<work>")) \($0.sha256After) \($0.modeAfter)" }.sorted(),
            tree: try tree(includingState: false, ignoringStrayTemporaries: ignoringStrayTemporaries))
    }
}

struct FileFingerprint: Equatable {
    var directory: Bool
    var mode: UInt16
    var contents: Data?
}

struct EndState: Equatable {
    var stages: [String]
    var outcome: String?
    var direction: String
    var filesInPlace: [String]
    var tree: [String: FileFingerprint]
}
