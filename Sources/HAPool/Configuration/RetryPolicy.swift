/// How failed attempts are retried: exponential backoff with optional full jitter.
///
/// Defaults follow the seed: 3 retries, 0.1 s initial backoff, 10 s maximum, ×2, jitter on.
/// The policy only computes delays; *whether* an attempt may be retried at all is decided by
/// `FailureClassifier` (a statement whose outcome is unknown is never retried automatically).
public struct RetryPolicy: Sendable, Hashable, Codable {
    public var maxRetries: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    public var multiplier: Double
    public var jitter: Bool

    public init(
        maxRetries: Int = 3,
        initialBackoff: Duration = .milliseconds(100),
        maxBackoff: Duration = .seconds(10),
        multiplier: Double = 2.0,
        jitter: Bool = true
    ) {
        self.maxRetries = maxRetries
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// The delay before retry number `attempt` (1-based). `random` is a value in `0..<1` supplied by
    /// the caller (so tests are deterministic); with jitter the delay is spread over
    /// `[delay/2, delay]` ("equal jitter"), which avoids a thundering herd without ever retrying
    /// immediately.
    public func delay(beforeRetry attempt: Int, random: Double) -> Duration {
        precondition(attempt >= 1, "retries are numbered from 1")
        let initial = initialBackoff.asSeconds
        let capped = min(maxBackoff.asSeconds, initial * pow(multiplier, Double(attempt - 1)))
        let value = jitter ? capped / 2 + capped / 2 * min(max(random, 0), 1) : capped
        return .nanoseconds(Int64(value * 1e9))
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    public var asSeconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    /// Parses "30", "30s", "250ms", "2m", "1.5s", "1h".
    public init?(parsing text: String) {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = t
        var scale = 1.0
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            number = String(t.dropLast(suffix.count))
            scale = factor
            break
        }
        guard let value = Double(number.trimmingCharacters(in: .whitespaces)), value >= 0, value.isFinite else {
            return nil
        }
        self = .nanoseconds(Int64(value * scale * 1e9))
    }
}

import Foundation
