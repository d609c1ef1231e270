import Foundation
import Logging
import Testing
@testable import Migration

@Suite("Config stage")
struct ConfigStageTests {
    /// A temp working directory with a state directory and a journal over it.
    struct Fixture {
        let dir: TempDirectory
        let store: StateStore
        let journal: StateJournal
        let context: StageContext
        let stage: ConfigStage
        let messages: MessageLog

        init(env: [String: String] = sampleSecrets, playbook: Playbook? = nil) throws {
            dir = try TempDirectory("config")
            store = StateStore(directory: dir.file(".pgha"))
            let clock = FakeClock()
            let p = try playbook ?? samplePlaybook()
            let state = MigrationState(toolVersion: "test", playbook: .init(path: "p.yml", sha256: "x", name: p.name), workingDirectory: dir.path, now: clock.now())
            let redactor = p.secretRedactor(environment: StaticEnvironment(env))
            journal = StateJournal(state: state, store: store, redactor: redactor, clock: clock)
            let log = MessageLog()
            messages = log
            context = StageContext(
                playbook: p, playbookPath: "p.yml", workingDirectory: dir.path, store: store, environment: StaticEnvironment(env),
                redactor: redactor, journal: journal, clock: clock, cancellation: CancellationFlag(), logger: Logger(label: "test"),
                progress: { log.append($0) }
            )
            stage = try ConfigStage()
        }

        func outputs() throws -> [String: FileSnapshot] { try dir.snapshot(excluding: [".pgha"]) }
    }

    final class MessageLog: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    @Test("run writes every file with its mode, the gate passes, and a second run writes nothing")
    func runAndIdempotence() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        try await f.stage.run(f.context)
        let written = try f.outputs()
        #expect(Set(written.keys) == ["out/app.env", "out/app.single-node.env", "out/config.yaml", "out/haproxy.cfg", "out/patroni.yml"])
        #expect(written["out/app.env"]?.mode == 0o600)
        #expect(written["out/app.single-node.env"]?.mode == 0o600)
        #expect(written["out/haproxy.cfg"]?.mode == 0o644)
        let gate = try await f.stage.gate(f.context)
        #expect(gate.allSatisfy { $0.verdict == .pass }, "\(gate.filter { $0.verdict != .pass })")
        #expect(gate.count == 5 * 2 + 2)
        #expect(f.journal.snapshot.files.count == 5)
        #expect(f.journal.snapshot.files.allSatisfy { $0.phase == .written && !$0.existedBefore && $0.backupPath == nil })

        let stateBefore = try FileIO.read(f.store.stateFile)
        try await f.stage.run(f.context)
        #expect(try f.outputs() == written)
        #expect(f.journal.snapshot.files.count == 5, "nothing new recorded")
        #expect(try FileIO.read(f.store.stateFile) == stateBefore, "the state file was not even rewritten")
        #expect(f.messages.all.suffix(5).allSatisfy { $0.hasSuffix("is up to date") })
        let plan = try await f.stage.plan(f.context)
        #expect(plan.files.allSatisfy { $0.action == .unchanged && $0.diff.isEmpty })
    }

    @Test("existing files are backed up byte for byte with their mode, and undo restores them exactly")
    func backupAndUndo() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        let original = "PROJECT_DB_PASSWORD=old-Secret-9\nCUSTOM=keep me\n"
        try f.dir.write("out/app.env", original, mode: 0o640)
        try f.dir.write("out/haproxy.cfg", "global\n  # hand-made\n", mode: 0o604)
        let before = try f.outputs()

        try await f.stage.run(f.context)
        let files = f.journal.snapshot.files
        let env = try #require(files.first { $0.key == "env_file" })
        #expect(env.existedBefore && env.modeBefore == FileMode(0o640) && env.modeAfter == FileMode(0o600))
        let backup = try #require(env.backupPath)
        #expect(backup == f.store.backupsDirectory + "/config/\(env.id)-app.env")
        #expect(try FileIO.read(backup) == before["out/app.env"], "backup is byte for byte, with its mode")
        #expect(try SHA256.hex(Data(original.utf8)) == env.sha256Before)

        try await f.stage.undo(f.context)
        #expect(try f.outputs() == before, "every file back byte for byte with its mode; created files removed")
        #expect(f.journal.snapshot.files.allSatisfy { $0.phase == .restored })
        try await f.stage.undo(f.context)
        #expect(try f.outputs() == before, "undo is idempotent")
    }

    @Test("undo after several runs restores the state before the first one")
    func undoAfterReruns() async throws {
        var playbook = try samplePlaybook()
        let f = try Fixture(playbook: playbook)
        defer { f.dir.cleanup() }
        try f.dir.write("out/config.yaml", "memory: {}\n", mode: 0o600)
        let before = try f.outputs()
        try await f.stage.run(f.context)
        // The playbook changes between runs: the second run overwrites pgha's own first version.
        playbook.application.maxConnections = 30
        var second = f.context
        second.playbook = playbook
        try await f.stage.run(second)
        #expect(f.journal.snapshot.files.filter { $0.key == "config_yaml" }.count == 2)
        try await f.stage.undo(second)
        #expect(try f.outputs() == before)
    }

    @Test("a file edited after pgha wrote it is kept aside before undo restores the original")
    func externalEditBeforeUndo() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        try await f.stage.run(f.context)
        try f.dir.write("out/haproxy.cfg", "edited by an operator\n")
        try await f.stage.undo(f.context)
        #expect(!FileIO.exists(f.dir.file("out/haproxy.cfg")))
        let kept = try FileManager.default.contentsOfDirectory(atPath: f.store.backupsDirectory + "/config").filter { $0.hasSuffix(".changed-before-undo") }
        #expect(kept.count == 1)
        #expect(f.messages.all.contains { $0.contains("had been edited after pgha wrote it") })
    }

    @Test("an interrupted write is resolved on the next run: done if written, redone if not", arguments: [true, false])
    func crashBetweenIntentAndDone(writeHappened: Bool) async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        try f.dir.write("out/patroni.yml", "scope: old\n", mode: 0o644)
        let before = try f.outputs()
        // Simulate a crash right after the intent was saved (and maybe after the write).
        let renderer = f.stage.renderer(f.context)
        let file = try #require(try renderer.render(environment: StaticEnvironment(sampleSecrets)).first { $0.key == "patroni_yml" })
        let managed = ManagedFiles(journal: f.journal, stage: .config, backupsDirectory: f.store.backupsDirectory)
        try f.journal.update { (s: inout MigrationState) throws(MigrationError) in
            s.files.append(.init(id: 99, stage: .config, key: "patroni_yml", path: file.path, existedBefore: true,
                                 sha256Before: try SHA256.hex("scope: old\n"), modeBefore: FileMode(0o644),
                                 backupPath: managed.backupPath(id: 99, path: file.path), sha256After: try SHA256.hex(file.contents),
                                 modeAfter: FileMode(0o644), phase: .intent, intendedAt: Date()))
        }
        try FileIO.makeDirectories(f.store.backupsDirectory + "/config")
        try FileIO.writeAtomically(Data("scope: old\n".utf8), to: managed.backupPath(id: 99, path: file.path), mode: 0o644)
        if writeHappened { try FileIO.writeAtomically(Data(file.contents.utf8), to: file.path, mode: 0o644) }

        try await f.stage.run(f.context)
        let records = f.journal.snapshot.files.filter { $0.key == "patroni_yml" }
        #expect(records.first?.phase == (writeHappened ? .written : .abandoned))
        #expect(records.filter { $0.phase == .written }.count == 1)
        #expect(try await f.stage.gate(f.context).allSatisfy { $0.verdict == .pass })
        try await f.stage.undo(f.context)
        #expect(try f.outputs() == before)
    }

    @Test("a file changed by someone else during the interruption stops the stage")
    func crashThenExternalChange() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        try f.journal.update { s in
            s.files.append(.init(id: 50, stage: .config, key: "haproxy_cfg", path: f.dir.file("out/haproxy.cfg"), existedBefore: false,
                                 sha256Before: nil, modeBefore: nil, backupPath: nil, sha256After: String(repeating: "0", count: 64),
                                 modeAfter: FileMode(0o644), phase: .intent, intendedAt: Date()))
        }
        try f.dir.write("out/haproxy.cfg", "someone else\n")
        await #expect(throws: MigrationError.self) { try await f.stage.run(f.context) }
    }

    @Test("the gate fails on a hand-edited file or a wrong mode, with advice")
    func gateFailures() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        try await f.stage.run(f.context)
        try f.dir.write("out/config.yaml", "changed\n")
        try FileIO.writeAtomically(try #require(try FileIO.read(f.dir.file("out/app.env"))).contents, to: f.dir.file("out/app.env"), mode: 0o644)
        let failing = try await f.stage.gate(f.context).filter { $0.verdict == .fail }
        #expect(failing.map(\.name) == ["mode.env_file", "file.config_yaml"])
        #expect(failing.first?.advice == "\(f.dir.file("out/app.env")) holds passwords: chmod 600 it")
    }

    @Test("the gate reads ENABLE_PATRONI with the pool's own .env parser: a wrong value, or a file the pool would refuse, fails with its place")
    func gateReadsTheEnvLikeThePool() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        try await f.stage.run(f.context)
        let path = f.dir.file("out/app.single-node.env")
        let rendered = String(decoding: try #require(try FileIO.read(path)).contents, as: UTF8.self)
        #expect(rendered.contains("\nENABLE_PATRONI=false\n"))
        // export, quotes and a trailing comment are read as the pool reads them: still false.
        try FileIO.writeAtomically(Data(rendered.replacingOccurrences(of: "ENABLE_PATRONI=false", with: "export ENABLE_PATRONI='false' # single node").utf8), to: path, mode: 0o600)
        var checks = try await f.stage.gate(f.context)
        #expect(checks.first { $0.name == "enable_patroni.env_single_node_file" }?.verdict == .pass, "\(checks)")
        // set twice: the pool refuses the file, so does the gate, naming the line.
        try FileIO.writeAtomically(Data((rendered + "ENABLE_PATRONI=true\n").utf8), to: path, mode: 0o600)
        checks = try await f.stage.gate(f.context)
        let twice = try #require(checks.first { $0.name == "enable_patroni.env_single_node_file" })
        #expect(twice.verdict == .fail && twice.observed.contains("app.single-node.env") && twice.observed.contains("ENABLE_PATRONI"), "\(twice)")
        #expect(!twice.observed.contains("Secret"), "no value in the message")
    }

    @Test("the plan shows diffs with every secret masked, also the old one on disk")
    func planDiffs() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        try f.dir.write("out/app.env", "PROJECT_DB_PASSWORD=old-Secret-9\nPATRONI_PASSWORD='\(sampleSecrets["PATRONI_PASSWORD"]!)'\n", mode: 0o600)
        let plan = try await f.stage.plan(f.context)
        #expect(plan.files.count == 5)
        let env = try #require(plan.files.first { $0.key == "env_file" })
        #expect(env.action == .update)
        #expect(env.diff.contains("-PROJECT_DB_PASSWORD=<redacted>"))
        #expect(env.diff.contains("+PROJECT_DB_PASSWORD=<redacted, changed>"))
        #expect(env.diff.contains("+ENABLE_PATRONI=true"))
        #expect(!env.diff.contains("old-Secret-9"))
        let all = plan.files.map(\.diff).joined() + plan.changes.joined()
        for secret in sampleSecrets.values { #expect(!all.contains(secret)) }
        #expect(plan.files.first { $0.key == "haproxy_cfg" }?.action == .create)
        #expect(plan.files.first { $0.key == "haproxy_cfg" }?.diff.hasPrefix("--- /dev/null") == true)
        #expect(plan.warnings.isEmpty)
        #expect(!FileIO.exists(f.store.stateFile), "planning writes nothing")
    }

    @Test("the plan warns about unset variables instead of failing; the run fails naming the variable")
    func unsetVariable() async throws {
        var env = sampleSecrets
        env["PROJECT_DB_PASSWORD"] = nil
        let f = try Fixture(env: env)
        defer { f.dir.cleanup() }
        let plan = try await f.stage.plan(f.context)
        #expect(plan.warnings == ["source.password refers to ${PROJECT_DB_PASSWORD}, which is not set: the run will stop at this stage until it is exported"])
        await #expect(throws: MigrationError.self) { try await f.stage.run(f.context) }
        #expect(try f.outputs().isEmpty, "nothing written")
    }

    @Test("cancellation stops between files and the next run finishes the job")
    func cancellation() async throws {
        let f = try Fixture()
        defer { f.dir.cleanup() }
        f.context.cancellation.cancel()
        do {
            try await f.stage.run(f.context)
            Issue.record("a cancelled run finished")
        } catch let error as MigrationError {
            #expect(error.code == .interrupted)
        }
        #expect(try f.outputs().isEmpty)
        var resumed = f.context
        resumed.cancellation = CancellationFlag()
        try await f.stage.run(resumed)
        #expect(try f.outputs().count == 5)
    }
}

import Synchronization
