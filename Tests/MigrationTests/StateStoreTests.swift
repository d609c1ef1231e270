import Foundation
import Testing
import TestSupport
@testable import Migration

@Suite("StateStore, StateLock, StateJournal")
struct StateStoreTests {
    static func sampleState(clock: FakeClock = FakeClock()) -> MigrationState {
        var state = MigrationState(
            toolVersion: "0.1.0", playbook: .init(path: "playbooks/sandbox.yml", sha256: String(repeating: "a", count: 64), name: "sandbox"),
            workingDirectory: "/srv/app", now: clock.now()
        )
        state.apply([
            EngineStageRecord(stage: .prerequisites, status: .passed, attempts: 1, gate: [.pass("members", observed: "3 running", expected: ">= 3")]),
            EngineStageRecord(stage: .extensions, status: .failed(reason: "pg_trgm missing on node2"), attempts: 2),
        ], now: clock.now())
        state.steps.append(.init(id: 1, stage: .extensions, name: "create-extension:pg_trgm", phase: .intent, detail: "CREATE EXTENSION pg_trgm", undo: .replicationSlot(.init(server: "source", name: "pgha_ha", createdByPGHA: true)), intendedAt: clock.now()))
        state.files.append(.init(id: 2, stage: .config, key: "env_file", path: "/srv/app/out/app.env", existedBefore: true, sha256Before: String(repeating: "b", count: 64), modeBefore: FileMode(0o644), backupPath: "/srv/app/.pgha/backups/config/2-app.env", sha256After: String(repeating: "c", count: 64), modeAfter: FileMode(0o600), phase: .written, intendedAt: clock.now(), writtenAt: clock.now()))
        state.nextRecordID = 3
        return state
    }

    @Test("save then load gives back the same state; the file is 0600 and no temporary file is left")
    func roundTrip() throws {
        let dir = try TempDirectory("store")
        defer { dir.cleanup() }
        let store = StateStore(directory: dir.file(".pgha"))
        let state = Self.sampleState()
        try store.save(state, redactor: .none)
        #expect(try store.load() == state)
        #expect(state.resolvedPlaybookPath == "/srv/app/playbooks/sandbox.yml")
        #expect(try FileIO.read(store.stateFile)?.mode == 0o600)
        let entries = try FileManager.default.contentsOfDirectory(atPath: store.directory)
        #expect(entries.sorted() == ["state.json"])

        var changed = state
        changed.direction = .rollback
        try store.save(changed, redactor: .none)
        #expect(try store.load().direction == .rollback)
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.directory).sorted() == ["state.json"])
    }

    @Test("a Patroni setting's undo (with and without a previous value) is written with its kind and read back unchanged")
    func patroniSettingUndoRoundTrip() throws {
        var state = Self.sampleState()
        let undos: [StepUndo] = [
            .patroniSetting(.init(key: "synchronous_mode", previous: nil)),
            .patroniSetting(.init(key: "synchronous_mode", previous: "false")),
            .patroniSlot(.init(name: "pgha_back", database: "app")),
        ]
        for (i, undo) in undos.enumerated() {
            state.steps.append(.init(id: 10 + i, stage: .sync, name: "step-\(i)", phase: .done, detail: "d", undo: undo, intendedAt: Date(timeIntervalSince1970: 0)))
        }
        let data = try StateStore.encode(state)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"kind\" : \"patroni-setting\""))
        let back = try StateStore.decode(data, path: "state.json")
        #expect(back.steps.suffix(3).map(\.undo) == undos)
    }

    @Test("dates are written with milliseconds and read back to the millisecond; whole-second dates of older files still load")
    func millisecondDates() throws {
        var state = Self.sampleState()
        state.updatedAt = Date(timeIntervalSince1970: 1_700_000_000.25)
        let text = String(decoding: try StateStore.encode(state), as: UTF8.self)
        #expect(text.contains("\"updatedAt\" : \"2023-11-14T22:13:20.250Z\""))
        let back = try StateStore.decode(try StateStore.encode(state), path: "state.json")
        #expect(abs(back.updatedAt.timeIntervalSince1970 - 1_700_000_000.25) < 0.001)

        let wholeSeconds = text.replacingOccurrences(of: "2023-11-14T22:13:20.250Z", with: "2023-11-14T22:13:20Z")
        let old = try StateStore.decode(Data(wholeSeconds.utf8), path: "state.json")
        #expect(old.updatedAt == Date(timeIntervalSince1970: 1_700_000_000))
    }

    @Test("a temporary file left by a writer killed mid-write is removed by the next write; a live writer's is kept")
    func strayTemporaryRemoved() throws {
        let dir = try TempDirectory("stray")
        defer { dir.cleanup() }
        let store = StateStore(directory: dir.file(".pgha"))
        try store.save(Self.sampleState(), redactor: .none)
        // PID 2147483646 is above any pid_max: no such process. Our own PID stands for a live writer.
        let dead = store.directory + "/.pgha-tmp-2147483646-0-state.json"
        let live = store.directory + "/.pgha-tmp-\(getpid())-7-state.json"
        let other = store.directory + "/.pgha-tmp-2147483646-0-other.json"
        for path in [dead, live, other] {
            #expect(FileManager.default.createFile(atPath: path, contents: Data("{\"half".utf8)))
        }
        try store.save(Self.sampleState(), redactor: .none)
        let entries = try FileManager.default.contentsOfDirectory(atPath: store.directory).sorted()
        #expect(Set(entries) == [".pgha-tmp-2147483646-0-other.json", ".pgha-tmp-\(getpid())-7-state.json", "state.json"])
        #expect(try store.load() == Self.sampleState())
    }

    @Test("the JSON names schema, tool version, statuses with timestamps, gates and files")
    func format() throws {
        let text = String(decoding: try StateStore.encode(Self.sampleState()), as: UTF8.self)
        for fragment in [
            #""schemaVersion" : 2"#, #""kind" : "replication-slot""#, #""toolVersion" : "0.1.0""#, #""state" : "failed""#, #""reason" : "pg_trgm missing on node2""#,
            #""finishedAt" : "2027-01-15T08:00"#, #""verdict" : "PASS""#, #""observed" : "3 running""#,
            #""backupPath" : "/srv/app/.pgha/backups/config/2-app.env""#, #""modeAfter" : "0600""#, #""phase" : "written""#,
        ] {
            #expect(text.contains(fragment), "missing \(fragment)")
        }
    }

    @Test("a schema-1 state file written by pgha 0.1.0 loads, is upgraded to schema 2, and saves back as schema 2",
          arguments: ["state-v1-rehearsal", "state-v1-with-step"])
    func upgradesSchema1(fixture: String) throws {
        let url = try #require(Bundle.module.url(forResource: fixture, withExtension: "json", subdirectory: "Fixtures"))
        let data = try Data(contentsOf: url)
        let raw = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(raw["schemaVersion"] as? Int == 1)
        let state = try StateStore.decode(data, path: fixture + ".json")
        #expect(state.schemaVersion == 2)
        #expect(state.stage(.config).status == .passed)
        #expect(state.stage(.prerequisites).gate.count == 20)
        #expect(state.filesInPlace.count == 5)
        #expect(state.lastOutcome?.kind == "stopped-before-unbuilt-stage")
        if fixture == "state-v1-with-step" {
            #expect(state.steps.map(\.undo) == [.legacy(["existed": "false"])])
        }
        // Saved again, it is a schema-2 file that loads to the same state.
        let dir = try TempDirectory("upgrade")
        defer { dir.cleanup() }
        let store = StateStore(directory: dir.file(".pgha"))
        try store.save(state, redactor: .none)
        let text = try #require(try dir.read(".pgha/state.json"))
        #expect(text.contains(#""schemaVersion" : 2"#))
        #expect(try store.load() == state)
    }

    @Test("a schema-2 step undo of an unknown kind is refused with its key path")
    func unknownUndoKind() throws {
        var text = String(decoding: try StateStore.encode(Self.sampleState()), as: UTF8.self)
        text = text.replacingOccurrences(of: #""kind" : "replication-slot""#, with: #""kind" : "teleport""#)
        let error = try #require(throws: MigrationError.self) { _ = try StateStore.decode(Data(text.utf8), path: "s.json") }
        #expect(error.code == .stateCorrupt)
        #expect(error.message.contains("steps[0].undo"))
        #expect(error.message.contains("unknown undo kind \"teleport\""))
    }

    @Test("a file cut short at any point gives a clear error naming the byte offset", arguments: [0, 1, 17, 100, 400, -2])
    func truncated(at cut: Int) throws {
        let data = try StateStore.encode(Self.sampleState())
        let length = cut < 0 ? data.count + cut : cut
        let prefix = data.prefix(length)
        do {
            _ = try StateStore.decode(Data(prefix), path: "state.json")
            Issue.record("a truncated file decoded")
        } catch {
            #expect(error.code == .stateCorrupt)
            if length == 0 {
                #expect(error.message.contains("is empty (0 bytes)"))
            } else {
                #expect(error.message.contains("byte \(length)"), "\(error.message)")
                #expect(error.message.contains("cut short"))
            }
        }
    }

    @Test("corrupt bytes are located by line and column")
    func corrupt() throws {
        let text = "{\n  \"schemaVersion\": 1,\n  \"toolVersion\": \"0.1.0\" oops\n}"
        #expect(throws: MigrationError.self) { try StateStore.decode(Data(text.utf8), path: "s.json") }
        do {
            _ = try StateStore.decode(Data(text.utf8), path: "s.json")
        } catch {
            #expect(error.message.contains("line 3, column 26"), "\(error.message)")
        }
        let zeros = Data(repeating: 0, count: 64)
        do {
            _ = try StateStore.decode(zeros, path: "s.json")
            Issue.record("zeros decoded")
        } catch {
            #expect(error.message.contains("NUL byte"))
        }
    }

    @Test("valid JSON that is not a state names what is wrong")
    func wrongShape() throws {
        for (text, expected) in [
            (#"[1, 2]"#, "not a pgha state file"),
            (#"{"hello": 1}"#, "no schemaVersion"),
            (#"{"schemaVersion": 1, "toolVersion": "0.1.0"}"#, "missing key"),
        ] {
            do {
                _ = try StateStore.decode(Data(text.utf8), path: "s.json")
                Issue.record("\(text) decoded")
            } catch {
                #expect(error.code == .stateCorrupt)
                #expect(error.message.contains(expected), "\(error.message)")
            }
        }
        var bad = String(decoding: try StateStore.encode(Self.sampleState()), as: UTF8.self)
        bad = bad.replacingOccurrences(of: #""state" : "failed""#, with: #""state" : "exploded""#)
        do {
            _ = try StateStore.decode(Data(bad.utf8), path: "s.json")
            Issue.record("an unknown status decoded")
        } catch {
            #expect(error.message.contains("stages[1].status"), "\(error.message)")
            #expect(error.message.contains("exploded"))
        }
    }

    @Test("a state from a newer pgha is refused, naming its version and schema")
    func newerSchema() throws {
        var state = Self.sampleState()
        state.schemaVersion = 7
        state.toolVersion = "3.1.4"
        do {
            _ = try StateStore.decode(try StateStore.encode(state), path: "s.json")
            Issue.record("a newer schema decoded")
        } catch {
            #expect(error.code == .stateTooNew)
            #expect(error.message.contains("written by pgha 3.1.4 with schema 7"))
            #expect(error.message.contains("reads schema 2 or older"))
            #expect(error.exitCode == .stateUnreadable)
        }
    }

    @Test("a missing state file is stateNotFound")
    func missing() throws {
        let dir = try TempDirectory("store")
        defer { dir.cleanup() }
        #expect(throws: MigrationError.self) { try StateStore(directory: dir.path).load() }
        #expect(try StateStore(directory: dir.path).loadIfPresent() == nil)
    }

    @Test("a held lock refuses a second runner and names the holder; release frees it")
    func lockHeld() throws {
        let dir = try TempDirectory("lock")
        defer { dir.cleanup() }
        let store = StateStore(directory: dir.path)
        let first = try store.lock(command: "run", toolVersion: "0.1.0", clock: FakeClock())
        #expect(first.isHeld)
        #expect(StateLock.currentHolder(path: store.lockFile)?.pid == getpid())
        do {
            _ = try store.lock(command: "resume", toolVersion: "0.1.0", clock: FakeClock())
            Issue.record("a second lock was granted")
        } catch {
            #expect(error.code == .locked)
            #expect(error.message.contains("pgha run (pid \(getpid()) on "))
            #expect(error.exitCode == .locked)
        }
        first.release()
        #expect(!FileIO.exists(store.lockFile))
        #expect(StateLock.currentHolder(path: store.lockFile) == nil)
        let second = try store.lock(command: "resume", toolVersion: "0.1.0", clock: FakeClock())
        #expect(second.replacedHolder == nil)
        second.release()
    }

    @Test("a lock file left by a dead runner is taken over and reported")
    func staleLock() throws {
        let dir = try TempDirectory("lock")
        defer { dir.cleanup() }
        let store = StateStore(directory: dir.path)
        let dead = LockHolder(pid: 2_147_483_000, hostname: StateLock.hostName(), startedAt: Date(timeIntervalSince1970: 1_700_000_000), command: "run", toolVersion: "0.0.9")
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        try FileIO.writeAtomically(try encoder.encode(dead), to: store.lockFile, mode: 0o600)
        #expect(dead.isAliveOnThisHost == false)
        #expect(StateLock.currentHolder(path: store.lockFile) == nil, "a file nobody flocks is not held")

        let lock = try store.lock(command: "resume", toolVersion: "0.1.0", clock: FakeClock())
        defer { lock.release() }
        #expect(lock.replacedHolder == dead)
        #expect(lock.holder.pid == getpid())
        #expect(lock.holder.isAliveOnThisHost == true)
    }

    @Test("the journal persists every change before returning, in order")
    func journal() throws {
        let dir = try TempDirectory("journal")
        defer { dir.cleanup() }
        let store = StateStore(directory: dir.path)
        let journal = StateJournal(state: Self.sampleState(), store: store, redactor: .none, clock: FakeClock())
        let slot = StepUndo.ReplicationSlot(server: "source", name: "pgha_ha", createdByPGHA: false)
        let id = try journal.beginStep(.sync, name: "create-slot:pgha_ha", detail: "create slot pgha_ha", undo: .replicationSlot(slot))
        var saved = try store.load()
        #expect(saved.steps.last?.phase == .intent)
        #expect(saved.steps.last?.undo == .replicationSlot(slot))
        #expect(journal.pendingSteps(of: .sync).map(\.id).contains(id))
        var created = slot
        created.createdByPGHA = true
        try journal.completeStep(id, undo: .replicationSlot(created))
        saved = try store.load()
        #expect(saved.steps.last?.phase == .done)
        #expect(saved.steps.last?.undo == .replicationSlot(created))
        #expect(saved.steps.last?.doneAt != nil)
        try journal.markStepUndone(id)
        #expect(try store.load().steps.last?.phase == .undone)
        #expect(throws: MigrationError.self) { try journal.completeStep(9999) }
    }

    @Test("a journal whose persistence fails throws and the caller stops")
    func journalPersistFailure() throws {
        let journal = StateJournal(state: Self.sampleState(), clock: FakeClock()) { (_: MigrationState) throws(MigrationError) in
            throw MigrationError(.io, "disk full")
        }
        #expect(throws: MigrationError.self) { _ = try journal.beginStep(.config, name: "x", detail: "x") }
    }

    @Test("secrets are masked in everything written to the state file")
    func redaction() throws {
        let secret = "Sup3r-Secret-Passw0rd"
        var state = Self.sampleState()
        state.apply([EngineStageRecord(stage: .extensions, status: .failed(reason: "FATAL: password authentication failed (password=\(secret))"), attempts: 1,
                                       gate: [.fail("dsn", observed: "postgresql://u:\(secret)@h/db", expected: "ok", advice: "retry \(secret)")])], now: Date())
        state.steps[0].detail = "ran with \(secret)"
        let bytes = try StateStore.encode(state.redacted(by: SecretRedactor(secrets: [secret])))
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(!text.contains(secret))
        #expect(text.contains("<redacted>"))
    }

    @Test("JSON syntax check finds the first error")
    func syntaxCheck() {
        #expect(JSONSyntaxCheck.firstError(in: Array(#"{"a": [1, 2.5e3, true, null, "x\u00e9"]}"#.utf8)) == nil)
        #expect(JSONSyntaxCheck.firstError(in: Array(#"{"a": 01}"#.utf8))?.offset == 7)
        #expect(JSONSyntaxCheck.firstError(in: Array(#"{"a": tru}"#.utf8))?.problem == "expected 'true'")
        #expect(JSONSyntaxCheck.firstError(in: Array(#"{"a": 1} x"#.utf8))?.problem == "unexpected data after the end of the document")
        #expect(JSONSyntaxCheck.firstError(in: Array(#"{"a": "x"#.utf8))?.problem.contains("unexpected end of data") == true)
    }

    @Test("SHA-256 through libcrypto matches known vectors")
    func sha256() throws {
        #expect(try SHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(try SHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

/// Hostile state files: a valid one mutated (wrong types, unknown and duplicate keys, huge values,
/// deep nesting, control characters, truncation, invalid UTF-8, BOM, CRLF). Loading never
/// crashes, and every refusal names the file, the place and what to do.
@Suite("StateStore loading mutated state files")
struct StateStorePropertyTests {
    static let path = "/srv/app/.pgha/state.json"
    static let advice = ["Restore it from a backup, or move it aside", "Use that pgha (or a newer one)"]

    static func outcome(_ bytes: [UInt8]) -> Result<MigrationState, MigrationError> {
        do throws(MigrationError) {
            return .success(try StateStore.decode(Data(bytes), path: path))
        } catch {
            return .failure(error)
        }
    }

    /// What every refusal must look like.
    static func checkReport(_ error: MigrationError) {
        let message = error.message
        #expect(error.code == .stateCorrupt || error.code == .stateTooNew, "\(error.code)")
        #expect(error.exitCode == .stateUnreadable)
        #expect(message.contains(path), "\(message)")
        // The place: a byte position, a key path, or the top level.
        let placed = message.range(of: #"byte \d+ \(line \d+, column \d+\)"#, options: .regularExpression) != nil
            || message.range(of: #"(schema \d+|file): [A-Za-z\[\]0-9.]+: "#, options: .regularExpression) != nil
            || message.contains(" in ") || message.contains("the top level") || message.contains("is empty (0 bytes)")
        #expect(placed, "no place: \(message)")
        #expect(advice.contains { message.contains($0) }, "no fix: \(message)")
        #expect(!containsHiddenCharacter(message) && !message.contains("\n"), "raw control character: \(message.debugDescription)")
        #expect(message.count < 700, "\(message.count) characters: \(message.prefix(300))…")
    }

    @Test("the renderer used by the mutations writes the same state back")
    func roundTrip() throws {
        let state = StateStoreTests.sampleState()
        let document = try Document(yaml: String(decoding: try StateStore.encode(state), as: UTF8.self))
        #expect(try StateStore.decode(Data(document.render(.json).utf8), path: Self.path) == state)
    }

    @Test("mutated state files: no crash, every refusal placed and explained, BOM and CRLF change nothing")
    func mutated() async throws {
        let state = StateStoreTests.sampleState()
        let document = try Document(yaml: String(decoding: try StateStore.encode(state), as: UTF8.self))
        let tally = Fuzz.Tally()
        await Fuzz.check(DocumentMutator(document, format: .json).generator, seed: 0x57A7_E000, count: 200) { mutated in
            let result = Self.outcome(mutated.bytes)
            if mutated.isBenign {
                #expect((try? result.get()) == state, "a BOM or CRLF changed the state: \(result)")
                tally.count("benign")
                return
            }
            guard case .failure(let error) = result else {
                tally.count("accepted")
                return
            }
            tally.count("refused")
            Self.checkReport(error)
            Self.checkPrediction(mutated, error.message)
        }
        #expect(tally["benign"] > 10 && tally["accepted"] > 10 && tally["refused"] > 100, "\(tally.all)")
    }

    /// What a single mutation must produce.
    static func checkPrediction(_ mutated: MutatedDocument, _ message: String) {
        if mutated.structural.isEmpty, mutated.byteLevel.count == 1 {
            switch mutated.byteLevel[0] {
            case .invalidUTF8:
                if let offset = mutated.firstInvalidUTF8Offset {
                    let line = MutatedDocument.line(ofOffset: offset, in: mutated.bytes)
                    #expect(message.contains("byte \(offset) (line \(line),") && message.contains("0x"), "\(message)")
                }
            case .truncate(let at) where at < mutated.bytes.count + 1 && at < Array(mutated.document.render(.json).utf8).count - 1:
                #expect(message.contains("cut short") || message.contains("is empty (0 bytes)"), "\(message)")
            default:
                break
            }
        }
        guard mutated.structural.count == 1, mutated.byteLevel.isEmpty else { return }
        switch mutated.structural[0] {
        case .duplicateKey(let path, _):
            let key = mutated.original.key(at: path) ?? ""
            #expect(message.contains("the key \"\(key)\" appears twice"), "\(message)")
        case .deepNesting(_, _, let depth) where depth > 512:
            #expect(message.contains("nesting too deep"), "\(message)")
        case .remove(let path, let keyPath):
            // Every key pgha writes is required, except those of free-form mappings (undo).
            if let key = mutated.original.key(at: path), !keyPath.contains("undo") {
                #expect(message.contains("missing key \"\(key)\"") || message.contains("has no \(key)"), "\(message)")
            }
        default:
            break
        }
    }

    @Test("specific hostile state files are explained", arguments: [
        (#"{"schemaVersion": 1, "schemaVersion": 2}"#, "the key \"schemaVersion\" appears twice"),
        (#"{"schemaVersion": 18446744073709551616}"#, "does not fit in 64 bits"),
        (#"{"schemaVersion": 1e999}"#, "out of range"),
        (#"{"schemaVersion": "1"}"#, "schemaVersion: expected a whole number"),
        (#"{"schemaVersion": 1, "toolVersion": "\uD800"}"#, "unpaired surrogate \\uD800"),
        ("\u{FEFF}\u{FEFF}{}", "unexpected byte order mark"),
        ("{\"a\u{1B}[31m\": 1}", "control character U+001B inside a string"),
        ("[1, 2]", "the top level is not a JSON object"),
    ])
    func specific(_ text: String, _ expected: String) {
        guard case .failure(let error) = Self.outcome(Array(text.utf8)) else {
            Issue.record("\(text) was accepted")
            return
        }
        Self.checkReport(error)
        #expect(error.message.contains(expected), "\(error.message)")
    }

    @Test("a bad date names its key; a newer writer's version is escaped")
    func dateAndVersion() throws {
        var text = String(decoding: try StateStore.encode(StateStoreTests.sampleState()), as: UTF8.self)
        text = text.replacingOccurrences(of: #""createdAt" : "2027"#, with: #""createdAt" : "yesterday 2027"#)
        guard case .failure(let error) = Self.outcome(Array(text.utf8)) else {
            Issue.record("a bad date was accepted")
            return
        }
        #expect(error.message.contains("createdAt: expected a date such as 2027-01-15T08:00:00Z"), "\(error.message)")
        let newer = #"{"schemaVersion": 9, "toolVersion": "9.0\u001B]0;owned\u0007"}"#
        guard case .failure(let tooNew) = Self.outcome(Array(newer.utf8)) else {
            Issue.record("a newer schema was accepted")
            return
        }
        #expect(tooNew.code == .stateTooNew)
        #expect(tooNew.message.contains("pgha 9.0<U+001B>]0;owned<U+0007> with schema 9"), "\(tooNew.message)")
        Self.checkReport(tooNew)
    }
}
