/// The stages of a migration from a single PostgreSQL node to a Patroni cluster, in order.
///
/// Which stages this pgha can run is decided in one place: the executors it registers
/// (`StandardStages`) and what each says of the playbook (`unavailableReason(for:)`, e.g. the
/// logical method's sync). A stage without one appears in every plan as "not built yet", and a run
/// stops before it with `MigrationOutcome.stoppedBeforeUnbuiltStage`: nothing is faked.
public enum MigrationStage: String, CaseIterable, Codable, Sendable, Comparable, CustomStringConvertible {
    /// Check the single node, the Patroni cluster and the thresholds (members, lag, transactions).
    case prerequisites
    /// Check that every required extension is available (and at which version) on every node.
    case extensions
    /// Generate the application's `.env` (single-node and Patroni variants), the YAML block,
    /// haproxy.cfg and a reference patroni.yml from templates/.
    case config
    /// Copy the data from the single node into the cluster and keep it in sync.
    case sync
    /// Dual mode: shadow the application's traffic to the cluster and compare.
    case shadow
    /// Switch the application to Patroni mode; start reverse replication for rollback.
    case cutover
    /// Final verification; the migration is done.
    case complete

    /// A short title for tables and prompts.
    public var title: String {
        switch self {
        case .prerequisites: return "Prerequisites"
        case .extensions: return "Extensions on every node"
        case .config: return "Environment and configuration files"
        case .sync: return "Data synchronisation"
        case .shadow: return "Dual-mode traffic shadowing"
        case .cutover: return "Cutover to Patroni mode"
        case .complete: return "Complete"
        }
    }

    /// One sentence explaining the stage to an operator.
    public var summary: String {
        switch self {
        case .prerequisites:
            return "Checks that the single node and the Patroni cluster are reachable and healthy and that the thresholds hold (members, lag, long transactions). Changes nothing."
        case .extensions:
            return "Checks that every required extension is installed, at a compatible version, on the single node and on every cluster member. Changes nothing."
        case .config:
            return "Renders the application's .env (single-node and Patroni variants), the memory.postgresql YAML block, haproxy.cfg and a reference patroni.yml; shows diffs, backs up every file it overwrites."
        case .sync:
            return "Brings the cluster up as a standby cluster of the single node (physical method) and waits until every member streams, caught up."
        case .shadow:
            return "Replays the application's read traffic on the single node and on every cluster member side by side and compares the answers (mismatches, noise, lag), the latencies and a write canary."
        case .cutover:
            return "Freezes the single node, waits for the final LSN, promotes the cluster, prepares the way back, and moves the application (PgBouncer or a hook): a pause, not errors."
        case .complete:
            return "After the soak, drops the way back and the single node's slot, and writes the final report."
        }
    }

    /// Position in the migration order.
    public var order: Int { Self.allCases.firstIndex(of: self)! }

    public static func < (lhs: MigrationStage, rhs: MigrationStage) -> Bool { lhs.order < rhs.order }

    public var description: String { rawValue }
}

/// Where a stage stands.
public enum StageStatus: Hashable, Sendable, CustomStringConvertible {
    /// Not started (or started again after a rollback and not yet begun).
    case pending
    /// Started and not finished. Seen in a saved state, it means the runner was interrupted
    /// (Ctrl-C, kill, crash) in the middle of the stage; resume runs it again (steps are idempotent).
    case running
    /// Ran and its gate passed.
    case passed
    /// Its run or gate failed (or its undo failed during a rollback).
    case failed(reason: String)
    /// Undone by a rollback.
    case rolledBack
    /// Skipped by the operator, with the reason they gave.
    case skipped(reason: String)

    /// The status as one word: `pending`, `running`, `passed`, `failed`, `rolled-back`, `skipped`.
    public var name: String {
        switch self {
        case .pending: return "pending"
        case .running: return "running"
        case .passed: return "passed"
        case .failed: return "failed"
        case .rolledBack: return "rolled-back"
        case .skipped: return "skipped"
        }
    }

    /// The reason of a failed or skipped stage.
    public var reason: String? {
        switch self {
        case .failed(let reason), .skipped(let reason): return reason
        case .pending, .running, .passed, .rolledBack: return nil
        }
    }

    /// Passed or skipped: a forward run moves past it.
    public var isDone: Bool {
        switch self {
        case .passed, .skipped: return true
        case .pending, .running, .failed, .rolledBack: return false
        }
    }

    public var description: String {
        if let reason { return "\(name): \(reason)" }
        return name
    }
}

extension StageStatus: Codable {
    private enum CodingKeys: String, CodingKey { case state, reason }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let state = try container.decode(String.self, forKey: .state)
        let reason = try container.decodeIfPresent(String.self, forKey: .reason) ?? ""
        switch state {
        case "pending": self = .pending
        case "running": self = .running
        case "passed": self = .passed
        case "failed": self = .failed(reason: reason)
        case "rolled-back": self = .rolledBack
        case "skipped": self = .skipped(reason: reason)
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .state, in: container,
                debugDescription: "unknown stage status \"\(state)\" (expected pending, running, passed, failed, rolled-back or skipped)"
            )
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .state)
        try container.encodeIfPresent(reason, forKey: .reason)
    }
}
