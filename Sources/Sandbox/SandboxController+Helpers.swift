import Foundation
import PlainText
import Glibc

// SandboxController's helpers: waiting for servers, PID files, commands run as postgres.

extension SandboxController {
    struct DiedError: Error {}

    /// Polls `check` every 250 ms until it is true; a `DiedError` from `check` means the server
    /// exited. Either failure names the log file (and shows its last lines).
    func waitUntil(
        deadline: ContinuousClock.Instant, what: String, log: String, _ check: () async throws -> Bool
    ) async throws {
        let clock = ContinuousClock()
        while true {
            do {
                if try await check() { return }
            } catch is DiedError {
                throw SandboxError(.startFailed, "\(what) exited right after starting", advice: "read \(log)\(Self.logTail(log))")
            }
            if clock.now >= deadline {
                throw SandboxError(.timeout, "\(what) did not come up in time", advice: "read \(log)\(Self.logTail(log))")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// Removes the contents of a directory left by an interrupted initdb.
    func emptyDirectory(_ path: String) throws {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: path) else { return }
        for entry in entries { try FileSystem.remove((path as NSString).appendingPathComponent(entry)) }
    }

    /// The last lines of a log, indented, with any line mentioning a password dropped.
    static func logTail(_ path: String, lines: Int = 8) -> String {
        guard let text = FileSystem.readText(path) else { return "" }
        let tail = text.split(separator: "\n", omittingEmptySubsequences: true).suffix(lines)
        guard !tail.isEmpty else { return "" }
        return "; its last lines:\n" + redacted(tail.joined(separator: "\n")).split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
    }

    /// Drops every line that mentions a password (psql echoes failing statements).
    static func redacted(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.lowercased().contains("password") ? "[line redacted]" : String($0) }
            .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
