import ArgumentParser
import Foundation
import Migration

/// `pgha compare PLAYBOOK`: the single node's data against the cluster's, table by table.
struct CompareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare every table of the migrated databases on the single node and on the cluster, down to the rows.",
        discussion: """
            Reads, never writes. Each table is cut into primary-key ranges (--chunk-rows rows each); \
            both servers digest each range at the same time (row count and a sum of 64-bit row \
            hashes, computed server-side); a range that differs is read again (--rechecks, \
            --recheck-delay: the data may be moving, a standby replaying or a subscription \
            applying), then bisected until it holds at most --fetch-rows rows, whose keys are \
            listed. Tables without a primary key are compared whole. The cluster's side is its \
            leader (or standby leader), or --member. Logins: source.admin_user and \
            target.admin_user when the playbook names them, else the application's.

            Exit codes: 0 every table identical; 1 a difference was found (a table missing, a \
            range or rows differ); 2 invalid playbook, unset ${VAR} or unusable --resume-file; 3 a side cannot be reached \
            or read (the message says which); 130 interrupted; 64 the command line itself is \
            malformed.
            """
    )

    @Argument(help: "The playbook (YAML); see docs/PLAYBOOKS.md.")
    var playbook: String

    @Option(help: "Only this table (schema.name); repeat for several.")
    var table: [String] = []

    @Option(help: "The cluster member to read instead of the leader (its name).")
    var member: String?

    @Option(help: "Rows per range of the first pass.")
    var chunkRows: Int = 20_000

    @Option(help: "A differing range of at most this many rows is compared row by row.")
    var fetchRows: Int = 500

    @Option(help: "How often a differing range is read again before it counts.")
    var rechecks: Int = 2

    @Option(help: "Seconds between two reads of a differing range.")
    var recheckDelay: Double = 1

    @Option(help: "Tables compared at once (each with a connection per side).")
    var jobs: Int = 2

    @Option(name: .customLong("resume-file"), help: ArgumentHelp(
        "Record each table found identical in FILE (one `database.schema.table` a line) and skip the tables it already lists: an interrupted compare run again with the same FILE goes on where it stopped.",
        valueName: "file"))
    var resumeFile: String?

    @OptionGroup var output: JSONOutputOption

    func validate() throws {
        guard chunkRows >= 2, fetchRows >= 2, rechecks >= 0, recheckDelay >= 0, jobs >= 1 else {
            throw ValidationError("--chunk-rows and --fetch-rows must be at least 2, --jobs at least 1, --rechecks and --recheck-delay not negative")
        }
    }

    func run() async throws {
        let (loaded, redactor, out) = try MigrationSession.loadPlaybook(playbook, json: output.json)
        let p = loaded.playbook
        var options = DataCompare.Options(
            limits: .init(chunkRows: chunkRows, fetchRows: fetchRows, rechecks: rechecks), jobs: jobs,
            recheckDelay: .milliseconds(Int64(recheckDelay * 1000)), tables: table, member: member)
        let resume: ResumeFile?
        if let resumeFile {
            do {
                resume = try ResumeFile(path: resumeFile)
            } catch {
                throw out.fail(MigrationError(.io, "cannot use --resume-file \(resumeFile): \(error)"), next: "give a file pgha may create and append to", exitCode: MigrationExitCode.usage.rawValue)
            }
        } else {
            resume = nil
        }
        options.skip = resume?.identical ?? []
        if let resume, !resume.identical.isEmpty, !output.json {
            out.line("\(resume.identical.count) table(s) listed in \(resume.path) as identical are not compared again")
        }
        let compare = DataCompare(playbook: p, environment: ProcessEnvironment(), redactor: redactor, options: options)
        let json = output.json
        let report: CompareReport
        do {
            report = try await compare.run(progress: { line in if !json { out.line(line) } }, compared: { (table: CompareReport.Table) throws(MigrationError) -> Void in
                if table.isIdentical { try resume?.append(table.database + "." + table.table) }
            })
        } catch {
            // Its own table: a side that cannot be reached or read is 3, as for `pgha verify`.
            let code: Int32 = switch error.code {
            case .interrupted: MigrationExitCode.interrupted.rawValue
            case .environmentVariableMissing: MigrationExitCode.usage.rawValue
            default: 3
            }
            throw out.fail(error, next: "check that both sides answer (`pgha plan` lists the logins; the prerequisites stage checks them), then run pgha compare again",
                           exitCode: code)
        }
        if json {
            out.jsonLine(Document(report: report, identical: report.identical, mebibytesPerSecond: report.mebibytesPerSecond))
        } else {
            let different = report.tables.filter { !$0.isIdentical }
            let rows = report.tables.reduce(Int64(0)) { $0 + $1.sourceRows }
            out.line(String(format: "%d tables, %lld rows on the single node, %.1f MiB read on both sides in %.2f s (%.0f MiB/s)",
                            report.tables.count, rows, Double(report.bytes) / 1_048_576, report.elapsedSeconds, report.mebibytesPerSecond))
            out.line(different.isEmpty ? "identical: every table agrees" : "DIFFERENT: \(different.count) table\(different.count == 1 ? "" : "s") differ (\(different.map(\.table).joined(separator: ", ")))")
        }
        if !report.identical { throw ExitCode(1) }
    }

    /// `--resume-file`: the tables an earlier run found identical, and an appender for this run's
    /// (each line written with one `write` on an `O_APPEND` descriptor, so the jobs' lines never mix).
    final class ResumeFile: Sendable {
        let path: String
        let identical: Set<String>
        private let fd: Int32

        init(path: String) throws {
            self.path = path
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            identical = Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw MigrationError(.io, String(cString: strerror(errno))) }
        }

        func append(_ table: String) throws(MigrationError) {
            let line = Array((table + "\n").utf8)
            let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == line.count else { throw MigrationError(.io, "cannot append to \(path): \(String(cString: strerror(errno)))") }
        }

        deinit { close(fd) }
    }

    struct Document: Encodable {
        var report: CompareReport
        var identical: Bool
        var mebibytesPerSecond: Double
    }
}
