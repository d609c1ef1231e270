import PlainText
import Foundation
import Migration
import Synchronization

/// Draws `StageProgress` for people. On a terminal: one bar per task, redrawn in place on the
/// current line (cleared before any other output). Otherwise (a pipe, a log file): a plain line
/// per task when it starts, every `lineInterval` seconds, at each quarter, and when it is done.
final class ProgressDisplay: Sendable {
    let output: MigrationOutput
    let isTerminal: Bool
    let lineInterval: TimeInterval
    private let state = Mutex<State>(State())

    private struct State {
        /// A bar is drawn on the current line (no newline after it yet).
        var barShown = false
        var lastLine: [String: (at: Date, quarter: Int, done: Bool)] = [:]
        var lastWait: (what: String, at: Date)?
    }

    init(output: MigrationOutput, isTerminal: Bool = isatty(STDOUT_FILENO) == 1, lineInterval: TimeInterval = 5) {
        self.output = output
        self.isTerminal = isTerminal
        self.lineInterval = lineInterval
    }

    func show(_ progress: StageProgress, now: Date = Date()) {
        if isTerminal {
            state.withLock { $0.barShown = true }
            output.write("\r\u{1B}[2K" + Self.bar(progress))
            return
        }
        let quarter = progress.fraction.map { Int($0 * 4) } ?? -1
        let due: Bool = state.withLock { s in
            let previous = s.lastLine[progress.task]
            let due: Bool
            if let previous {
                // Done: once. Otherwise at each quarter, and every lineInterval.
                due = progress.isDone ? !previous.done
                    : previous.done || quarter > previous.quarter || now.timeIntervalSince(previous.at) >= lineInterval
            } else {
                due = true
            }
            if due { s.lastLine[progress.task] = (now, quarter, progress.isDone) }
            return due
        }
        if due { output.line("    " + Self.line(progress)) }
    }

    /// Whether to print a wait: when what is awaited changes, else every `lineInterval` × 2 (each
    /// look may change the detail; a log needs no line per second).
    func shouldShowWait(_ what: String, now: Date = Date()) -> Bool {
        state.withLock { s in
            if let last = s.lastWait, last.what == what, now.timeIntervalSince(last.at) < lineInterval * 2 { return false }
            s.lastWait = (what, now)
            return true
        }
    }

    /// The wait is over.
    func waitEnded() {
        state.withLock { $0.lastWait = nil }
    }

    /// Ends a bar left on the current line, so the next output starts on a line of its own.
    func clear() {
        let shown = state.withLock { s -> Bool in
            defer { s.barShown = false }
            return s.barShown
        }
        if shown { output.write("\r\u{1B}[2K") }
    }

    // MARK: - Formatting (pure)

    /// `    [##########··········]  50%  initial copy  55.0 MB / 110.0 MB  20.1 MB/s  ETA 3 s`
    static func bar(_ p: StageProgress, width: Int = 24) -> String {
        let filled = Int(((p.fraction ?? 0) * Double(width)).rounded(.down))
        let bar = "[" + String(repeating: "#", count: filled) + String(repeating: "·", count: width - filled) + "]"
        return "    " + bar + " " + line(p)
    }

    /// The text of one update, without the bar.
    static func line(_ p: StageProgress) -> String {
        var parts: [String] = []
        switch p.kind {
        case .transfer:
            if let fraction = p.fraction { parts.append(String(format: "%3d%%", Int((fraction * 100).rounded(.down)))) }
            parts.append(p.title)
            parts.append(amount(p.value, p.unit) + (p.total.map { " / " + amount($0, p.unit) } ?? ""))
            if let rate = p.ratePerSecond { parts.append(amount(Int64(rate.rounded()), p.unit) + "/s") }
        case .gauge:
            parts.append(p.title + " " + amount(p.value, p.unit) + (p.target.map { " (done at ≤ " + amount($0, p.unit) + ")" } ?? ""))
            if p.isDone {
                parts.append("done")
            } else if let rate = p.ratePerSecond {
                parts.append((rate >= 0 ? "falling " : "rising ") + amount(Int64(abs(rate).rounded()), p.unit) + "/s")
            }
        }
        if let eta = p.etaSeconds, !p.isDone { parts.append("ETA " + duration(eta)) }
        if let detail = p.detail { parts.append("(" + detail + ")") }
        return parts.joined(separator: "  ")
    }

    static func amount(_ value: Int64, _ unit: StageProgress.Unit) -> String {
        switch unit {
        case .bytes: return formatBytes(value)
        case .items: return "\(value)"
        }
    }

    /// `45 s`, `3 min 20 s`, `2 h 5 min`.
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded(.up))
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \((s % 3600) / 60) min"
    }
}
