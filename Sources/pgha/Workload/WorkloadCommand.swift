import ArgumentParser
import Dispatch
import Foundation
import PGClient
import Synchronization
import Workload

/// `pgha workload`: an application in miniature for rehearsals.
struct WorkloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload",
        abstract: "Run writers and readers through the application's way in, then judge what was kept.",
        discussion: """
            Writers insert rows with a unique (writer, seq) into the table `pgha_workload` at \
            --rate writes per second in all; readers read. The way in is either one address \
            (--host/--port: PgBouncer in front of the database; the password from \
            $PGPASSWORD, --password-file or libpq's password file) or the seed's \
            DualDatabasePools from an .env file (--env-file: single-node or Patroni mode; SIGHUP \
            reads it again, as a restart would). It runs for --duration seconds, or until SIGINT \
            or SIGTERM; then it reads every row back through the same way in (the final primary) \
            and prints what it judged: writes acknowledged, lost (acknowledged and missing), \
            duplicated, errors the application saw, writes of unknown outcome (never re-run) and \
            the longest write. With --report FILE the same as JSON. Exit codes: 0 nothing lost, \
            duplicated or failed; 1 otherwise; 2 an unreadable --password-file; 3 the final check could \
            not run; 64 a malformed command line (argument-parser).
            """
    )

    @Option(help: "Host of the way in (e.g. PgBouncer).") var host: String?
    @Option(help: "Port of the way in.") var port: Int = 5432
    @Option(help: "Database.") var database: String = "distributed_postgres_cluster"
    @Option(help: "Role.") var user: String = "dpg_cluster"
    @Option(name: .customLong("password-file"), help: ArgumentHelp("A file holding the password.", valueName: "file")) var passwordFile: String?
    @Option(name: .customLong("env-file"), help: ArgumentHelp("Use DualDatabasePools configured from this .env instead of --host.", valueName: "file")) var envFile: String?
    @Option(help: "Writer clients.") var writers: Int = 4
    @Option(help: "Reader clients.") var readers: Int = 2
    @Option(help: "Writes per second, all writers together.") var rate: Double = 200
    @Option(help: "Seconds to run (0: until SIGINT/SIGTERM).") var duration: Double = 0
    @Option(help: ArgumentHelp("Write the judgement as JSON here.", valueName: "file")) var report: String?
    @Option(name: .customLong("pid-file"), help: ArgumentHelp("Write this process's PID here (for `kill -HUP`).", valueName: "file")) var pidFile: String?

    func validate() throws {
        guard (host == nil) != (envFile == nil) else { throw ValidationError("give either --host (a plain connection) or --env-file (DualDatabasePools)") }
        guard writers >= 1, readers >= 0, rate > 0, duration >= 0 else { throw ValidationError("--writers ≥ 1, --readers ≥ 0, --rate > 0, --duration ≥ 0") }
    }

    func run() async throws {
        let wayIn: WorkloadRunner.WayIn
        if let envFile {
            wayIn = .envFile(envFile)
        } else {
            var password = ProcessInfo.processInfo.environment["PGPASSWORD"]
            if let passwordFile {
                guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                    printError("error: cannot read --password-file \(passwordFile)")
                    throw ExitCode(2)
                }
                password = text.trimmingCharacters(in: .newlines)
            }
            var extra: [String: String] = [:]
            if let passfile = ProcessInfo.processInfo.environment["PGPASSFILE"] { extra["passfile"] = passfile }
            wayIn = .direct(PGConnectionConfig(
                host: host ?? "", port: port, database: database, user: user, password: password,
                connectTimeout: .seconds(10), applicationName: "pgha-workload", extra: extra))
        }
        let runner = WorkloadRunner(wayIn: wayIn, options: .init(writers: writers, readers: readers, rate: rate))
        do {
            try await runner.prepare()
        } catch {
            printError("error: cannot create the workload's table through the way in: \(error)")
            throw ExitCode(3)
        }
        if let pidFile { try? "\(getpid())\n".write(toFile: pidFile, atomically: true, encoding: .utf8) }
        let signals = SignalWatch { signal in
            if signal == SIGHUP { runner.reload() } else { runner.stop() }
        }
        signals.install()
        let started = Date()
        let running = Task { await runner.run() }
        if duration > 0 {
            try? await Task.sleep(for: .seconds(duration))
            runner.stop()
        }
        await running.value
        let seconds = Date().timeIntervalSince(started)
        let judged: WorkloadReport
        do {
            judged = try await runner.report(seconds: seconds)
        } catch {
            printError("error: the final check could not read the rows back: \(error)")
            throw ExitCode(3)
        }
        print(judged.summary)
        if !judged.errorKinds.isEmpty { print("workload: errors by kind: " + judged.errorKinds.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")) }
        if !judged.missingExamples.isEmpty { print("workload: lost, e.g. " + judged.missingExamples.joined(separator: ", ")) }
        if !judged.duplicatedExamples.isEmpty { print("workload: duplicated, e.g. " + judged.duplicatedExamples.joined(separator: ", ")) }
        if let report {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            try encoder.encode(judged).write(to: URL(fileURLWithPath: report))
        }
        if let pidFile { unlink(pidFile) }
        if !judged.clean { throw ExitCode(1) }
    }
}

/// SIGINT, SIGTERM and SIGHUP through dispatch sources (no code in a raw handler).
final class SignalWatch: Sendable {
    private let handler: @Sendable (Int32) -> Void
    private let sources = Mutex<[SignalSource]>([])

    init(_ handler: @escaping @Sendable (Int32) -> Void) { self.handler = handler }

    func install() {
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
            signal(signalNumber, SIG_IGN)
            let box = SignalSource(DispatchSource.makeSignalSource(signal: signalNumber, queue: .global()))
            let handler = self.handler
            box.source.setEventHandler { handler(signalNumber) }
            box.source.resume()
            sources.withLock { $0.append(box) }
        }
    }
}
