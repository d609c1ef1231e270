import PGClient

/// One request's retry budget and decisions, shared by the async and the sync paths: the two
/// loops differ only in how they wait (a suspension on the injected clock, or a blocked thread).
///
/// A request may retry until `failoverTimeout` after its first failure point; the deadline is read
/// lazily, so a request that succeeds at once never reads the clock. What may be re-run at all is
/// `FailureClassifier`'s decision.
struct RetryLoop {
    /// What the loop does next.
    enum Step {
        /// No leader is confirmed: wait for one until this instant, then pick again.
        case waitForLeader(until: ContinuousClock.Instant)
        /// Pick again after this pause (zero: at once).
        case retry(after: Duration)
        /// Give up with this error.
        case fail(HAError)
    }

    private(set) var attempts = 0
    private var deadline: LazyDeadline
    /// The last error seen, reported when the budget runs out while no leader is confirmed.
    private(set) var lastError: HAError?
    let policy: RetryPolicy

    init(budget: Duration, policy: RetryPolicy, clock: any PoolClock) {
        self.deadline = LazyDeadline(span: budget, clock: clock)
        self.policy = policy
    }

    mutating func beginAttempt() { attempts += 1 }

    /// Time left for a check-out (at least 1 ms).
    mutating func remaining() -> Duration { deadline.remaining() }

    /// No writer is published. `failure` says why, as precisely as the pool knows.
    mutating func noLeader(failure: () -> HAError) -> Step {
        if deadline.passed() {
            var error = lastError ?? failure()
            error.attempts = attempts
            return .fail(error)
        }
        return .waitForLeader(until: deadline.instant())
    }

    /// Checking out a connection failed. `poolClosed` is the HA pool's own closing (a node pool
    /// closed because its member left is a routing race, not the end). `random` is in `0..<1`.
    mutating func checkoutFailed(_ error: HAError, poolClosed: Bool, random: Double) -> (step: Step, nodeFailed: Bool) {
        if error.code == .poolExhausted || error.code == .cancelled || (error.code == .closed && poolClosed) {
            return (.fail(error), false)
        }
        if let underlying = error.underlying, underlying.code == .authenticationFailed || underlying.code == .invalidConfiguration {
            return (.fail(error), false)
        }
        lastError = error
        if deadline.passed() { return (.fail(error), true) }
        let delay = policy.delay(beforeRetry: min(max(attempts, 1), 30), random: random)
        let left = deadline.instant() - deadline.clock.now
        return (.retry(after: min(delay, max(.zero, left))), true)
    }

    /// A statement failed on `node`. `rerunIsSafe`: idempotent, or on a replica, or nothing can
    /// have been applied (before COMMIT in a transaction).
    mutating func statementFailed(_ error: PGError, node: NodeAddress, rerunIsSafe: Bool) -> (step: Step, nodeFailed: Bool) {
        let (decision, nodeFailed) = FailureClassifier.classify(error, rerunIsSafe: rerunIsSafe)
        switch decision {
        case .retry where !deadline.passed():
            return (.retry(after: .zero), nodeFailed)
        case .retry, .fail:
            let code: HAError.Code = error.isConnectionLevel ? .connectionFailed : .queryFailed
            return (.fail(HAError(code, "statement failed", node: node, underlying: error, attempts: attempts)), nodeFailed)
        case .outcomeUnknown:
            return (.fail(HAError(
                .outcomeUnknown, "the connection failed after the statement was sent; it may or may not have been applied",
                node: node, underlying: error, attempts: attempts
            )), nodeFailed)
        }
    }
}
