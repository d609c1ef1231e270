public import Foundation

/// What the application saw and what the database kept: the workload's judgement of a migration.
///
/// Every write has a unique `(writer, seq)`; the writer records it as acknowledged (COMMIT
/// returned), failed (the error proves nothing was applied, e.g. the connection was refused) or
/// unknown (the connection broke after the statement was sent: never re-run, so it is applied at
/// most once). At the end the rows on the final primary are counted per `(writer, seq)`.
public struct WorkloadReport: Codable, Sendable, Hashable {
    public var writers: Int
    public var readers: Int
    public var seconds: Double
    /// Writes whose COMMIT returned.
    public var acknowledged: Int
    /// Acknowledged writes absent from the final primary: lost.
    public var missing: Int
    /// `(writer, seq)` present more than once.
    public var duplicated: Int
    /// Writes with an unknown outcome (never re-run) and how many of them were applied.
    public var outcomeUnknown: Int
    public var outcomeUnknownApplied: Int
    /// Errors the application saw, writes and reads (by message, counted).
    public var errors: Int
    public var errorKinds: [String: Int]
    public var reads: Int
    /// The longest time one write waited (sent → acknowledged or failed), and when it started.
    public var longestWriteSeconds: Double
    public var longestWriteAt: Date?
    /// Writes per second over the run.
    public var writesPerSecond: Double
    /// Where the final check read the rows from (`host:port` of the server that answered).
    public var checkedOn: String
    /// Examples of missing and duplicated writes (`writer/seq`), at most 10 each.
    public var missingExamples: [String]
    public var duplicatedExamples: [String]

    /// 0 lost, 0 duplicated, 0 errors.
    public var clean: Bool { missing == 0 && duplicated == 0 && errors == 0 }

    public init(
        writers: Int, readers: Int, seconds: Double, acknowledged: Int, missing: Int, duplicated: Int, outcomeUnknown: Int,
        outcomeUnknownApplied: Int, errors: Int, errorKinds: [String: Int], reads: Int, longestWriteSeconds: Double,
        longestWriteAt: Date?, writesPerSecond: Double, checkedOn: String, missingExamples: [String], duplicatedExamples: [String]
    ) {
        self.writers = writers
        self.readers = readers
        self.seconds = seconds
        self.acknowledged = acknowledged
        self.missing = missing
        self.duplicated = duplicated
        self.outcomeUnknown = outcomeUnknown
        self.outcomeUnknownApplied = outcomeUnknownApplied
        self.errors = errors
        self.errorKinds = errorKinds
        self.reads = reads
        self.longestWriteSeconds = longestWriteSeconds
        self.longestWriteAt = longestWriteAt
        self.writesPerSecond = writesPerSecond
        self.checkedOn = checkedOn
        self.missingExamples = missingExamples
        self.duplicatedExamples = duplicatedExamples
    }

    /// One line for people.
    public var summary: String {
        String(format: "workload: %d writes acknowledged in %.1f s (%.0f/s, %d writers, %d readers, %d reads); lost %d, duplicated %d, application errors %d, outcome unknown %d (applied %d); longest write %.3f s; checked on %@",
               acknowledged, seconds, writesPerSecond, writers, readers, reads, missing, duplicated, errors, outcomeUnknown,
               outcomeUnknownApplied, longestWriteSeconds, checkedOn)
    }
}

/// The writers' records and the final judgement: pure.
public struct WorkloadLedger: Sendable, Hashable {
    public enum Outcome: Sendable, Hashable {
        case acknowledged
        case failed
        case unknown
    }

    public struct Key: Hashable, Sendable, Comparable {
        public var writer: Int
        public var seq: Int64
        public init(writer: Int, seq: Int64) {
            self.writer = writer
            self.seq = seq
        }
        public static func < (a: Key, b: Key) -> Bool { (a.writer, a.seq) < (b.writer, b.seq) }
        public var description: String { "\(writer)/\(seq)" }
    }

    public private(set) var outcomes: [Key: Outcome] = [:]

    public init() {}

    public mutating func record(_ key: Key, _ outcome: Outcome) { outcomes[key] = outcome }

    public var acknowledged: Int { outcomes.values.filter { $0 == .acknowledged }.count }

    /// Judges `rows` (every `(writer, seq)` found on the final primary, with repetitions).
    public func judge(rows: [Key: Int]) -> (missing: [Key], duplicated: [Key], unknownApplied: Int, unknown: Int) {
        var missing: [Key] = []
        var unknownApplied = 0
        var unknown = 0
        for (key, outcome) in outcomes {
            switch outcome {
            case .acknowledged: if (rows[key] ?? 0) == 0 { missing.append(key) }
            case .unknown:
                unknown += 1
                if (rows[key] ?? 0) > 0 { unknownApplied += 1 }
            case .failed: break
            }
        }
        let duplicated = rows.filter { $0.value > 1 }.map(\.key)
        return (missing.sorted(), duplicated.sorted(), unknownApplied, unknown)
    }
}
