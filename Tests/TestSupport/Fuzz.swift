import Foundation
public import PropertyBased
import Synchronization
public import Testing

/// Runs a property over inputs from a PropertyBased generator with a fixed seed, so that a
/// failure reproduces on every run and every machine.
///
/// `propertyCheck` draws a new random seed on each run, and its `.fixedSeed` trait always records
/// an issue (it is meant for debugging, not for committed tests); this runner keeps the
/// library's generators and fixes the seed instead. Case `n` draws from a Xoshiro generator seeded
/// by `(seed, n)`, so one case can be replayed alone. Every issue recorded while a case runs gets
/// a comment with the seed, the case number and the input's description; the run stops at the
/// first failing case.
///
/// To explore beyond the committed seed: `PGHA_FUZZ_SEED=0x1234 PGHA_FUZZ_CASES=20000 swift test
/// --filter …`; to replay one case: `PGHA_FUZZ_CASE=17`.
public enum Fuzz {
    /// Counts outcomes across cases (the body is `@Sendable`), so a test can check that its
    /// generator reaches every interesting branch and is not degenerate.
    public final class Tally: Sendable {
        private let counts = Mutex<[String: Int]>([:])
        public init() {}
        public func count(_ label: String) { counts.withLock { $0[label, default: 0] += 1 } }
        public subscript(label: String) -> Int { counts.withLock { $0[label, default: 0] } }
        public var all: [String: Int] { counts.withLock { $0 } }
    }

    private final class Flag: Sendable {
        let raised = Atomic<Bool>(false)
    }

    /// Runs `body` on `count` inputs; see the type's documentation.
    public static func check<Input: Sendable & CustomStringConvertible>(
        _ generator: Generator<Input, some Sequence>,
        seed: UInt64,
        count: Int,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: @escaping @Sendable (Input) async throws -> Void
    ) async {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["PGHA_FUZZ_SEED"].flatMap(parseSeed) ?? seed
        let count = environment["PGHA_FUZZ_CASES"].flatMap { Int($0) } ?? count
        let cases: [Int] = environment["PGHA_FUZZ_CASE"].flatMap { Int($0) }.map { [$0] } ?? Array(0..<count)
        guard let test = Test.current else {
            Issue.record("Fuzz.check must run inside a test", sourceLocation: sourceLocation)
            return
        }
        for n in cases {
            if n % 8 == 7 { await Task.yield() }
            var rng = Xoshiro(seed: state(seed: seed, case: n))
            let input = generator.run(using: &rng)
            let label = String(format: "fuzz seed 0x%016llX, case %d of %d (replay: PGHA_FUZZ_SEED=0x%016llX PGHA_FUZZ_CASE=%d): ", seed, n, count, seed, n)
                + String(input.description.prefix(500))
            let failed = Flag()
            let handler = IssueHandlingTrait.compactMapIssues { issue in
                var issue = issue
                issue.comments.append(Comment(rawValue: label))
                if issue.severity >= .error { failed.raised.store(true, ordering: .relaxed) }
                return issue
            }
            do {
                try await handler.provideScope(for: test, testCase: Test.Case.current) {
                    do {
                        try await body(input)
                    } catch {
                        Issue.record(error, "the property threw", sourceLocation: sourceLocation)
                    }
                }
            } catch {
                Issue.record(error, "the issue handler failed", sourceLocation: sourceLocation)
            }
            if failed.raised.load(ordering: .relaxed) { return }
        }
    }

    /// Xoshiro's state for case `n`: SplitMix64 over the seed and the case number (Xoshiro must
    /// not start from a state of zeros, and neighbouring cases must not look alike).
    static func state(seed: UInt64, case n: Int) -> (UInt64, UInt64, UInt64, UInt64) {
        var x = seed ^ (UInt64(n) &* 0xD1B5_4A32_D192_ED03)
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        return (next(), next(), next(), next())
    }

    static func parseSeed(_ text: String) -> UInt64? {
        text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }
}
