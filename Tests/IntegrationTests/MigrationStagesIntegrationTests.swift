import Foundation
import Logging
import Migration
import Patroni
import Sandbox
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The prerequisites and extensions stages against the real sandbox (single node + 3 Patroni
/// members on etcd), with the sandbox playbook. Two tests stop or restart a replica; each puts
/// the sandbox back (leader + 2 streaming replicas) before it ends, also when it fails.
@Suite(.enabled(if: SandboxFixture.enabled), .serialized)
struct MigrationStagesIntegrationTests {
    // MARK: - Prerequisites

    @Test func prerequisitesPassOnTheHealthySandbox() async throws {
        let harness = try StageHarness()
        try await harness.fixture.waitForHealthyCluster()
        let (checks, elapsed) = try await harness.runStage(PrerequisitesStage())
        harness.report("prerequisites, healthy sandbox", checks, elapsed)

        let names = checks.map(\.name)
        for name in ["source.reachable", "source.version", "credentials.source", "source.wal_level", "source.replication_slots",
                     "source.wal_senders", "source.primary_keys", "source.long_transactions", "source.large_objects", "source.unlogged_tables",
                     "cluster.rest_hosts", "cluster.members", "cluster.leader", "cluster.replicas_streaming", "cluster.replica_lag",
                     "cluster.version", "cluster.dcs", "cluster.pool"] {
            #expect(names.contains(name), "missing check \(name)")
        }
        for member in harness.fixture.sandbox.cluster.members {
            #expect(names.contains("credentials.\(member.name)"))
        }
        let failing = checks.filter { $0.verdict == .fail }
        #expect(failing.isEmpty, "unexpected FAIL: \(failing.map { "\($0.name): \($0.observed)" })")
        #expect(checks.first { $0.name == "source.wal_level" }?.observed == "logical")
        #expect(checks.first { $0.name == "cluster.members" }?.observed.hasPrefix("3 of 3 members running") == true)
        harness.expectNoSecrets(in: checks)
    }

    @Test func stoppingAReplicaFailsThePrerequisitesGateNamingIt() async throws {
        let harness = try StageHarness()
        try await harness.fixture.waitForHealthyCluster()
        let replica = try await harness.aReplica()
        let stopped = ContinuousClock.now
        do {
            try await harness.stopPatroni(replica)
            let stopTime = ContinuousClock.now - stopped
            let (checks, elapsed) = try await harness.runStage(PrerequisitesStage())
            harness.report("prerequisites, \(replica) stopped (its Patroni took \(stopTime) to stop)", checks, elapsed)

            let streaming = try #require(checks.first { $0.name == "cluster.replicas_streaming" })
            #expect(streaming.verdict == .fail)
            #expect(streaming.observed.contains(replica), "\(streaming.observed)")
            #expect(streaming.advice?.contains(replica) == true, "\(streaming.advice ?? "no advice")")
            let members = try #require(checks.first { $0.name == "cluster.members" })
            #expect(members.verdict == .fail)
            #expect(members.observed.contains(replica), "\(members.observed)")
            #expect(checks.first { $0.name == "cluster.rest_hosts" }?.verdict == .fail)
            #expect(checks.first { $0.name == "cluster.leader" }?.verdict == .pass)
            #expect(checks.first { $0.name == "source.reachable" }?.verdict == .pass)
            harness.expectNoSecrets(in: checks)
        } catch {
            await harness.restoreAfterFailure()
            throw error
        }
        try await harness.restoreSandbox()
        print("[stages] sandbox healthy again \(ContinuousClock.now - stopped) after stopping \(replica)")
    }

    // MARK: - Extensions

    @Test func extensionsPassWithTheRequiredContribExtension() async throws {
        let harness = try StageHarness()
        try await harness.fixture.waitForHealthyCluster()
        #expect(harness.playbook.extensions.required == ["pg_trgm"])
        let (checks, elapsed) = try await harness.runStage(ExtensionsStage())
        harness.report("extensions, sandbox playbook", checks, elapsed)

        #expect(checks.allSatisfy { $0.verdict == .pass }, "\(checks.filter { $0.verdict != .pass }.map { "\($0.name): \($0.observed)" })")
        let trgm = try #require(checks.first { $0.name == "extension.pg_trgm" })
        for member in harness.fixture.sandbox.cluster.members {
            #expect(trgm.observed.contains("\(member.name)=1.6"), "\(trgm.observed)")
        }
        #expect(checks.contains { $0.name == "extension.plpgsql" }, "the source's own extensions are checked too")
        let matrix = try #require(ExtensionMatrix(checks: checks))
        #expect(matrix.columns.first == "source")
        #expect(Set(matrix.columns) == Set(["source"] + harness.fixture.sandbox.cluster.members.map(\.name)))
        #expect(matrix.rows.first?.extensionName == "pg_trgm")
        print(matrix.table())
    }

    @Test func aReplicaWithoutHstoreFailsTheExtensionsGateNamingIt() async throws {
        var harness = try StageHarness()
        harness.playbook.extensions.required = ["pg_trgm", "hstore"]
        try await harness.fixture.waitForHealthyCluster()

        let (before, _) = try await harness.runStage(ExtensionsStage())
        #expect(before.first { $0.name == "extension.hstore" }?.verdict == .pass, "hstore is available everywhere before the test")

        let replica = try await harness.aReplica()
        let copy = try ExtensionDirectoryCopy(without: "hstore", binDir: harness.fixture.sandbox.postgresBinDir)
        defer { copy.remove() }
        let started = ContinuousClock.now
        do {
            try await harness.stopPatroni(replica)
            try harness.startPatroniWithoutExtensionFiles(replica, extensionDirectory: copy.path)
            try await harness.fixture.waitForHealthyCluster(timeout: .seconds(90))
            let restart = ContinuousClock.now - started

            let (checks, elapsed) = try await harness.runStage(ExtensionsStage())
            harness.report("extensions, hstore required, \(replica) restarted without hstore's files (restart took \(restart))", checks, elapsed)
            let hstore = try #require(checks.first { $0.name == "extension.hstore" })
            #expect(hstore.verdict == .fail)
            #expect(hstore.observed.contains("\(replica)=missing"), "\(hstore.observed)")
            #expect(hstore.advice?.contains(replica) == true, "\(hstore.advice ?? "no advice")")
            #expect(hstore.advice?.contains("hstore") == true)
            #expect(checks.first { $0.name == "extension.pg_trgm" }?.verdict == .pass)
            let others = harness.fixture.sandbox.cluster.members.map(\.name).filter { $0 != replica }
            for other in others { #expect(!hstore.observed.contains("\(other)=missing")) }
            if let matrix = ExtensionMatrix(checks: checks) { print(matrix.table()) }
        } catch {
            await harness.restoreAfterFailure(stoppingNamespacedMember: replica)
            throw error
        }
        try await harness.restoreSandbox(stoppingNamespacedMember: replica)
        let (after, _) = try await harness.runStage(ExtensionsStage())
        #expect(after.first { $0.name == "extension.hstore" }?.verdict == .pass, "hstore is back on \(replica) after the normal restart")
    }
}

// MARK: - Harness

/// The sandbox playbook with the sandbox's credentials, and a stage context around it.
struct StageHarness {
    let fixture: SandboxFixture
    var playbook: Playbook
    let environment: StaticEnvironment
    let stateDirectory: String

    init() throws {
        fixture = try SandboxFixture.load()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        playbook = try PlaybookParser.load(path: root + "/playbooks/sandbox-logical.yml").playbook
        let sandbox = fixture.sandbox
        let application = try sandbox.password(\.application)
        environment = StaticEnvironment([
            "PROJECT_DB_PASSWORD": application,
            "SHARED_DB_PASSWORD": application,
            "PATRONI_PASSWORD": application,
            "PATRONI_API_PASSWORD": try sandbox.password(\.restAPI),
            // The superusers have no ${VAR} in the sandbox playbook: libpq reads the sandbox's
            // password file.
            "PGPASSFILE": sandbox.secrets.pgpass,
        ])
        stateDirectory = FileManager.default.temporaryDirectory.path + "/pgha-stages-\(UUID().uuidString)"
    }

    var secrets: [String] {
        (try? [fixture.sandbox.password(\.application), fixture.sandbox.password(\.restAPI), fixture.sandbox.password(\.superuser)]) ?? []
    }

    func context(progress: @escaping @Sendable (String) -> Void) -> StageContext {
        StageContext(
            playbook: playbook, playbookPath: "playbooks/sandbox-logical.yml", workingDirectory: stateDirectory,
            store: StateStore(directory: stateDirectory), environment: environment,
            redactor: playbook.secretRedactor(environment: environment), journal: nil, clock: SystemClock(),
            cancellation: CancellationFlag(), logger: Logger(label: "pgha.tests.stages"), progress: progress)
    }

    /// `run` then `gate`, as the runner does; the gate's checks and the whole duration.
    func runStage(_ executor: any MigrationStageExecutor) async throws -> ([CheckResult], Duration) {
        let lines = Mutex<[String]>([])
        let context = self.context { line in lines.withLock { $0.append(line) } }
        let started = ContinuousClock.now
        let plan = try await executor.plan(context)
        #expect(!plan.makesChanges && plan.changes.isEmpty)
        try await executor.run(context)
        let checks = try await executor.gate(context)
        let elapsed = ContinuousClock.now - started
        for line in lines.withLock({ $0 }) { print("[stages] progress: \(line)") }
        #expect(!checks.isEmpty)
        return (checks, elapsed)
    }

    func report(_ title: String, _ checks: [CheckResult], _ elapsed: Duration) {
        print("[stages] \(title): \(checks.count) checks in \(elapsed)")
        for check in checks {
            print("[stages]   \(check.verdict.rawValue) \(check.name) (\(Int(check.durationMs)) ms): \(check.observed)")
            if check.verdict != .pass, let advice = check.advice { print("[stages]        → \(advice)") }
        }
    }

    func expectNoSecrets(in checks: [CheckResult]) {
        let text = checks.map { "\($0.name) \($0.observed) \($0.expected ?? "") \($0.advice ?? "")" }.joined(separator: "\n")
        for secret in secrets where secret.count >= 3 {
            #expect(!text.contains(secret), "a password leaked into the checks")
        }
    }

    /// A member that is a streaming replica right now.
    func aReplica() async throws -> String {
        let cluster = try await fixture.client.cluster().value
        return try #require(cluster.members.first { $0.isReplica && $0.state?.rawValue == "streaming" }?.name, "no streaming replica")
    }

    func pidFile(_ member: String) -> String { "\(fixture.sandbox.runDir)/\(member).pid" }

    /// SIGTERM to the member's Patroni (which stops its PostgreSQL first); waits until it exited.
    func stopPatroni(_ member: String) async throws {
        let text = try String(contentsOfFile: pidFile(member), encoding: .utf8)
        let pid = try #require(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(60)
        while Self.isAlive(pid) {
            if ContinuousClock.now > deadline { throw HarnessError("Patroni \(member) (pid \(pid)) did not stop within 60 s") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Starts the member's Patroni in a private mount namespace where PostgreSQL's extension
    /// directory is `extensionDirectory` (bind-mounted over `$(pg_config --sharedir)/extension`),
    /// detached and with a clean signal mask, logging to the sandbox's log; writes its PID file
    /// so that the sandbox controller sees it as running.
    func startPatroniWithoutExtensionFiles(_ member: String, extensionDirectory: String) throws {
        let sandbox = fixture.sandbox
        let config = try #require(sandbox.cluster.members.first { $0.name == member })
        let sharedExtensions = try ExtensionDirectoryCopy.systemDirectory(binDir: sandbox.postgresBinDir)
        let patroni = (sandbox.patroniVenv as NSString).appendingPathComponent("bin/patroni")
        let user = try #require(getpwnam("postgres"), "no postgres OS user")
        let script = "mount --bind \"$1\" \"$2\" && cd \"$5\" && exec setpriv --reuid=\(user.pointee.pw_uid) --regid=\(user.pointee.pw_gid) --init-groups \"$3\" \"$4\""
        let arguments = ["/usr/bin/setsid", "/usr/bin/unshare", "--mount", "--propagation", "private",
                         "/bin/sh", "-c", script, "pgha-ns", extensionDirectory, sharedExtensions, patroni, config.configFile, config.dir]
        let environment = [
            "PATH=\(sandbox.postgresBinDir):/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME=\(String(cString: user.pointee.pw_dir))", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TZ=UTC",
        ]
        let pid = try Self.spawnDetached(arguments, environment: environment, logFile: "\(sandbox.logsDir)/\(member).log")
        try "\(pid)\n".write(toFile: pidFile(member), atomically: true, encoding: .utf8)
        _ = Self.spawned.withLock { $0.insert(pid) }
    }

    /// Stops the namespaced Patroni (if it runs), then `SandboxController.up()` restarts whatever
    /// is missing the normal way, and waits for a leader and 2 streaming replicas.
    func restoreSandbox(stoppingNamespacedMember member: String? = nil) async throws {
        if let member, let text = try? String(contentsOfFile: pidFile(member), encoding: .utf8),
           let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
           Self.spawned.withLock({ $0.contains(pid) }) {
            try await stopPatroni(member)
            var status: Int32 = 0
            waitpid(pid, &status, 0)  // our child: reap it
            _ = Self.spawned.withLock { $0.remove(pid) }
        }
        _ = try await SandboxController(configuration: fixture.sandbox).up(timeout: .seconds(120))
        try await fixture.waitForHealthyCluster(timeout: .seconds(90))
    }

    /// After a failed test: restores the sandbox, recording (not throwing) a failure to do so, so
    /// that the test's own error is the one reported.
    func restoreAfterFailure(stoppingNamespacedMember member: String? = nil) async {
        do {
            try await restoreSandbox(stoppingNamespacedMember: member)
        } catch {
            Issue.record("could not restore the sandbox after the failure: \(error) — run `pgha sandbox up`")
        }
    }

    /// PIDs this process started (namespaced Patroni), to reap.
    static let spawned = Mutex<Set<pid_t>>([])

    static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].drop { $0 == " " }.first
        return state != "Z" && state != "X"
    }

    /// posix_spawn with an empty signal mask and default dispositions (Swift's threads block most
    /// signals, and a child inherits that: Patroni would never see SIGTERM), stdin from /dev/null,
    /// stdout and stderr appended to `logFile`, every other descriptor closed.
    static func spawnDetached(_ arguments: [String], environment: [String], logFile: String) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // glibc ignores closing a descriptor that is not open (only out-of-range ones fail).
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd > 2 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard rc == 0 else { throw HarnessError("posix_spawn \(arguments[0]) failed: \(String(cString: strerror(rc)))") }
        return pid
    }
}

/// A copy of PostgreSQL's extension directory without one extension's control and SQL files.
struct ExtensionDirectoryCopy {
    let root: String
    var path: String { root + "/extension" }

    /// `$(pg_config --sharedir)/extension`.
    static func systemDirectory(binDir: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binDir + "/pg_config")
        process.arguments = ["--sharedir"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let sharedir = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(process.terminationStatus == 0 && !sharedir.isEmpty, "pg_config --sharedir failed")
        return sharedir + "/extension"
    }

    init(without name: String, binDir: String) throws {
        root = "/tmp/pgha-ext-\(UUID().uuidString.prefix(8))"
        let fm = FileManager.default
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try fm.copyItem(atPath: try Self.systemDirectory(binDir: binDir), toPath: path)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        for file in try fm.contentsOfDirectory(atPath: path) where file == "\(name).control" || file.hasPrefix("\(name)--") {
            try fm.removeItem(atPath: path + "/" + file)
        }
        let left = try fm.contentsOfDirectory(atPath: path)
        try #require(!left.contains("\(name).control") && left.count > 100, "the copy should lack only \(name)")
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
