public import Foundation

/// One progress update of a long stage: what is being done, how far it is, how fast it goes.
///
/// Two shapes: a *transfer* counts up to a total (the initial copy: bytes streamed of the backup's
/// size); a *gauge* is a value that must come down to a target (a member's replay lag, to the lag
/// that counts as caught up). Rate and ETA come from `ProgressMeter`. The CLI draws a progress bar
/// on a terminal, prints plain lines otherwise, and one JSON object per update with `--json`.
public struct StageProgress: Hashable, Sendable, Codable {
    public enum Kind: String, Hashable, Sendable, Codable {
        /// `done` counts up to `total`.
        case transfer
        /// `value` must come down to `target`.
        case gauge
    }

    public enum Unit: String, Hashable, Sendable, Codable {
        case bytes
        case items
    }

    /// A stable identifier of the task within the stage (`basebackup`, `lag:ha2`), so a renderer
    /// can redraw one line per task.
    public var task: String
    /// What is being done, for people: "initial copy (pg_basebackup from the single node)".
    public var title: String
    public var kind: Kind
    public var unit: Unit
    /// Transfer: done so far. Gauge: the current value.
    public var value: Int64
    /// Transfer: the total, when known.
    public var total: Int64?
    /// Gauge: the value at or below which the task is done.
    public var target: Int64?
    /// Transfer: units done per second; gauge: units the value falls per second (negative: rising).
    public var ratePerSecond: Double?
    /// Seconds until done at the current rate, when it can be estimated.
    public var etaSeconds: Double?
    /// A short extra ("phase: streaming database files", "streaming from the single node").
    public var detail: String?

    public init(
        task: String, title: String, kind: Kind, unit: Unit, value: Int64, total: Int64? = nil, target: Int64? = nil,
        ratePerSecond: Double? = nil, etaSeconds: Double? = nil, detail: String? = nil
    ) {
        self.task = task
        self.title = title
        self.kind = kind
        self.unit = unit
        self.value = value
        self.total = total
        self.target = target
        self.ratePerSecond = ratePerSecond
        self.etaSeconds = etaSeconds
        self.detail = detail
    }

    /// Transfer: the fraction done (0…1) when the total is known; gauge: 1 once at the target.
    public var fraction: Double? {
        switch kind {
        case .transfer:
            guard let total, total > 0 else { return nil }
            return min(1, max(0, Double(value) / Double(total)))
        case .gauge:
            guard let target else { return nil }
            return value <= target ? 1 : nil
        }
    }

    /// Whether the task is finished.
    public var isDone: Bool { fraction == 1 }
}

/// What a stage is waiting for (a cluster to appear, lag to come down, a lock…) and since when.
/// Saved in the state file, so `pgha status` shows it from another terminal.
public struct StageWait: Hashable, Sendable, Codable {
    /// What is awaited: "the standby cluster to appear (no REST host answers yet)".
    public var what: String
    public var since: Date
    /// The latest observation ("3 of 3 REST hosts answer; ha1 is restoring from a backup").
    public var detail: String?
    /// When the wait gives up (the stage then fails), if it is bounded.
    public var deadline: Date?

    public init(what: String, since: Date, detail: String? = nil, deadline: Date? = nil) {
        self.what = what
        self.since = since
        self.detail = detail
        self.deadline = deadline
    }
}

/// Rate and ETA of a task from timestamped samples: a pure value (the caller passes the time).
///
/// The rate is the change over the samples of the last `window` seconds (older ones are dropped),
/// so a stall shows as a falling rate rather than an average over the whole task.
public struct ProgressMeter: Sendable {
    public var window: Double
    private var samples: [(at: Date, value: Int64)] = []

    public init(window: Double = 10) {
        self.window = window
    }

    /// Records `value` at `at`; returns the rate in units per second (negative when the value falls),
    /// nil until two samples span some time.
    public mutating func sample(_ value: Int64, at: Date) -> Double? {
        samples.append((at, value))
        while let first = samples.first, at.timeIntervalSince(first.at) > window, samples.count > 2 {
            samples.removeFirst()
        }
        guard let first = samples.first, samples.count >= 2 else { return nil }
        let span = at.timeIntervalSince(first.at)
        guard span > 0 else { return nil }
        return Double(value - first.value) / span
    }

    /// A transfer update: rate and ETA to `total`.
    public mutating func transfer(
        task: String, title: String, unit: StageProgress.Unit, done: Int64, total: Int64?, at: Date, detail: String? = nil
    ) -> StageProgress {
        let rate = sample(done, at: at)
        var eta: Double?
        if let rate, rate > 0, let total { eta = max(0, Double(total - done) / rate) }
        return StageProgress(task: task, title: title, kind: .transfer, unit: unit, value: done, total: total, ratePerSecond: rate, etaSeconds: eta, detail: detail)
    }

    /// A gauge update: how fast `value` falls, and when it reaches `target` at that rate.
    public mutating func gauge(
        task: String, title: String, unit: StageProgress.Unit, value: Int64, target: Int64, at: Date, detail: String? = nil
    ) -> StageProgress {
        let rising = sample(value, at: at)
        let falling = rising.map { -$0 }
        var eta: Double?
        if value <= target {
            eta = 0
        } else if let falling, falling > 0 {
            eta = Double(value - target) / falling
        }
        return StageProgress(task: task, title: title, kind: .gauge, unit: unit, value: value, target: target, ratePerSecond: falling, etaSeconds: eta, detail: detail)
    }
}
