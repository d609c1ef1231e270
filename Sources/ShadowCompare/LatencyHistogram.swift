public import Histogram

/// Latencies in microseconds, in an HdrHistogram (HdrHistogram/hdrhistogram-swift): constant
/// memory and recording cost whatever the count, 3 significant digits from 1 µs to 1 hour,
/// mergeable (per statement into per side).
public struct LatencyHistogram: Sendable, Hashable, Codable {
    public private(set) var histogram: Histogram<UInt64>

    public init() {
        histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        histogram.autoResize = true
    }

    /// Records one latency (clamped to at least 1 µs).
    public mutating func record(microseconds: UInt64) {
        _ = histogram.record(max(1, microseconds))
    }

    public mutating func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let micros = max(0, seconds) * 1_000_000 + max(0, attoseconds) / 1_000_000_000_000
        record(microseconds: UInt64(micros))
    }

    public mutating func add(_ other: LatencyHistogram) {
        histogram.add(other.histogram)
    }

    public var count: UInt64 { histogram.totalCount }

    /// The value at `percentile` (0…100), in microseconds; 0 when empty.
    public func microseconds(atPercentile percentile: Double) -> UInt64 {
        count == 0 ? 0 : histogram.valueAtPercentile(percentile)
    }

    public var summary: LatencySummary {
        LatencySummary(
            count: Int(count), p50Ms: ms(microseconds(atPercentile: 50)), p95Ms: ms(microseconds(atPercentile: 95)),
            p99Ms: ms(microseconds(atPercentile: 99)), maxMs: ms(count == 0 ? 0 : histogram.max), meanMs: count == 0 ? 0 : histogram.mean / 1000)
    }

    private func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }

    public static func == (a: LatencyHistogram, b: LatencyHistogram) -> Bool { a.histogram == b.histogram }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        hasher.combine(microseconds(atPercentile: 50))
    }
}

/// Percentiles of a `LatencyHistogram`, in milliseconds (reports, JSON).
public struct LatencySummary: Sendable, Hashable, Codable {
    public var count: Int
    public var p50Ms: Double
    public var p95Ms: Double
    public var p99Ms: Double
    public var maxMs: Double
    public var meanMs: Double

    public init(count: Int, p50Ms: Double, p95Ms: Double, p99Ms: Double, maxMs: Double, meanMs: Double) {
        self.count = count
        self.p50Ms = p50Ms
        self.p95Ms = p95Ms
        self.p99Ms = p99Ms
        self.maxMs = maxMs
        self.meanMs = meanMs
    }

    /// `p50 0.21 ms, p95 0.40 ms, p99 0.93 ms (1,204)`.
    public var text: String {
        count == 0 ? "no samples" : "p50 \(Self.format(p50Ms)) ms, p95 \(Self.format(p95Ms)) ms, p99 \(Self.format(p99Ms)) ms (n=\(count))"
    }

    public static func format(_ ms: Double) -> String {
        if ms >= 100 { return String(Int(ms.rounded())) }
        if ms >= 10 { return String((ms * 10).rounded() / 10) }
        let hundredths = Int((ms * 100).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }
}
