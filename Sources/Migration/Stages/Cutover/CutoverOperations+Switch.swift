import Foundation
import HAPool
import PGClient
import Patroni
import PlainText

/// Switching the application (the point of no return): PgBouncer repointed and resumed, or the hook; then the first application writes awaited.
extension CutoverOperations {
    // MARK: - 6. Switch the application (the point of no return)

    var iniBackupPath: String { context.store.directory + "/pgbouncer.ini.before-cutover" }
    var envBackupPath: String { context.store.directory + "/application.env.before-cutover" }

    /// PgBouncer reaches the leader through its target (HAProxy's primary port): waits until a
    /// session through it lands on a writable primary (bounded, 30 s). Nothing to wait for with the
    /// hook method. Run alongside `prepareWayBack`: it changes nothing.
    func awaitSwitchTarget() async throws {
        guard cutover.method == .pgbouncer, let target = cutover.pgbouncer?.target else { return }
        guard try await wait("the leader through \(target)", seconds: 30, { await db.isWritablePrimary(host: target.host, port: target.port) }) else {
            throw MigrationError(.stageFailed, "\(target) (cutover.pgbouncer.target) does not lead to a writable primary within 30 s: is HAProxy running with the generated haproxy.cfg?")
        }
    }

    /// PgBouncer's databases whose name on the cluster differs (the logical method may copy into
    /// new names: target.databases).
    var renamedDatabases: [String: String] {
        var renamed: [String: String] = [:]
        for database in db.databases where database.source != database.cluster { renamed[database.source] = database.cluster }
        return renamed
    }

    func switchApplication() async throws {
        switch cutover.method {
        case .pgbouncer:
            guard let settings = cutover.pgbouncer else { throw MigrationError(.stageFailed, "cutover.pgbouncer is missing") }
            let target = settings.target
            let names = CutoverStage.pgbouncerDatabases(playbook)
            try await step("switch-application", "repoint PgBouncer at \(target), RELOAD, RESUME (the point of no return)",
                           undo: .createdObject(.init(server: "local", database: settings.iniFile, kind: "file-backup", name: iniBackupPath))) {
                guard let original = try FileIO.read(settings.iniFile) else {
                    throw MigrationError(.stageFailed, "cutover.pgbouncer.ini_file \(settings.iniFile) does not exist")
                }
                if !FileIO.exists(iniBackupPath) {
                    try FileIO.writeAtomically(original.contents, to: iniBackupPath, mode: 0o600)
                }
                let before = String(decoding: try FileIO.read(iniBackupPath)?.contents ?? original.contents, as: UTF8.self)
                let repointed = try PgBouncerAdmin.repointed(before, databases: names, to: target, renamed: renamedDatabases)
                try FileIO.writeAtomically(Data(repointed.utf8), to: settings.iniFile, mode: original.mode)
                let admin = PgBouncerAdmin(settings: settings, connections: db.connections)
                let console = try await admin.connect()
                defer { console.close() }
                try await admin.reload(console: console)
                let shown = try await admin.databases(console: console)
                let wrong = names.filter { shown[$0] != target.description }
                guard wrong.isEmpty else {
                    throw MigrationError(.stageFailed, "PgBouncer still sends " + wrong.joined(separator: ", ") + " elsewhere after RELOAD (SHOW DATABASES)")
                }
                try await admin.resume(names, console: console)
                try record { r in
                    r.resumedAt = now
                    if let paused = r.pausedAt { r.pauseSeconds = now.timeIntervalSince(paused) }
                }
                context.progress(String(format: "the application is on the cluster: PgBouncer resumed (write pause %.2f s)", journal.snapshot.cutover?.pauseSeconds ?? 0))
                return nil
            }
        case .hook:
            guard let command = cutover.switchApplication else { throw MigrationError(.stageFailed, "cutover.method is hook but cutover.switch_application is missing") }
            let envPath = cutover.applicationEnv
            try await step("switch-application", "run cutover.switch_application (the point of no return)",
                           undo: envPath.map { .createdObject(.init(server: "local", database: $0, kind: "file-backup", name: envBackupPath)) } ?? .hook(.init(key: "cutover.switch_application", undoKey: "cutover.switch_back"))) {
                if let envPath {
                    if !FileIO.exists(envBackupPath), let current = try FileIO.read(envPath) {
                        try FileIO.writeAtomically(current.contents, to: envBackupPath, mode: 0o600)
                    }
                    let generated = ConfigRenderer.absolutePath(playbook.outputs.envFile, in: context.workingDirectory)
                    guard let env = try FileIO.read(generated) else {
                        throw MigrationError(.stageFailed, "\(generated) (outputs.env_file) does not exist: the config stage writes it")
                    }
                    try FileIO.writeAtomically(env.contents, to: envPath, mode: 0o600)
                    context.progress("\(envPath) now holds the Patroni-mode settings (ENABLE_PATRONI=true); the old one is kept in the state directory")
                }
                try await runHook("cutover.switch_application", command)
                try record { r in
                    r.resumedAt = now
                    if let paused = r.pausedAt { r.pauseSeconds = now.timeIntervalSince(paused) }
                }
                return nil
            }
            try await awaitApplicationWrites()
        }
    }

    func runHook(_ key: String, _ command: String) async throws {
        try await HookRunner.runForStage(context, key: key, command: command, timeoutSeconds: cutover.hookTimeoutSeconds)
    }

    /// Hook method: the application's first writes on the cluster.
    func awaitApplicationWrites() async throws {
        let leader = try await leader()
        let c = try await db.member(host: leader.host, port: leader.port, database: playbook.target.databases.project)
        let sql = "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::int8 FROM pg_stat_user_tables WHERE relname NOT IN ('pgha_canary', 'pgha_verify', 'pgha_shadow_canary')"
        let start = try await db.run(c, sql, what: "reading the cluster's write counters").string(0, 0).flatMap(Int64.init) ?? 0
        try context.activity.waiting("the application's first writes on the cluster", deadline: now.addingTimeInterval(cutover.applicationWaitSeconds))
        let seen = try await wait("application writes", seconds: cutover.applicationWaitSeconds) {
            _ = try? await c.query("SELECT pg_stat_clear_snapshot()", timeout: .seconds(5))
            return (try await db.run(c, sql, what: "reading the cluster's write counters").string(0, 0).flatMap(Int64.init) ?? 0) > start
        }
        try context.activity.doneWaiting()
        guard seen else {
            throw MigrationError(.stageFailed, "no write of the application reached the cluster within cutover.application_wait (\(Int(cutover.applicationWaitSeconds)) s) after cutover.switch_application. Next: check the application; `pgha resume` waits again, `pgha rollback` moves it back")
        }
        context.progress("the application writes on the cluster")
    }
}
