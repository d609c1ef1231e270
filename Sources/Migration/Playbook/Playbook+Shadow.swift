import Yams

extension Playbook {
    /// Shadowing before cutover (`shadow:`): which read traffic is replayed against the single node
    /// and every cluster member, for how long, and what the gate holds the cluster to.
    public struct Shadow: Hashable, Sendable {
        /// A workload file (statements with parameter sets and weights), relative to the working
        /// directory; see docs/PLAYBOOKS.md.
        public var workload: String?
        /// A bounded capture of the single node's own traffic, replayed with the workload.
        public var capture: Capture?
        /// Replay stops after this long …
        public var durationSeconds: Double
        /// … or after this many executions, whichever comes first.
        public var queries: Int
        /// Executions in flight at once (each runs on the single node and on one member).
        public var concurrency: Int
        /// Every statement's `statement_timeout`, on both sides.
        public var statementTimeoutSeconds: Double
        /// The cluster's p99 may be at most this multiple of the single node's …
        public var maxP99Ratio: Double
        /// … or this much above it, whichever is more (at sub-millisecond latencies a ratio alone
        /// is noise).
        public var p99SlackSeconds: Double
        /// The write canary on the single node must be visible on every member within this.
        public var lagBudgetSeconds: Double
        /// How long a lagging member is waited for before its differing execution is run again.
        public var lagRecheckSeconds: Double
        /// Mismatches kept in the report with their statement, parameters and rows.
        public var reportMismatches: Int
        /// Whether the playbook has a `shadow:` section.
        public var configured: Bool

        public struct Capture: Hashable, Sendable {
            /// How long the single node logs every statement (`log_min_duration_statement = 0`).
            public var windowSeconds: Double
            /// At most this many captured statements are kept.
            public var maxStatements: Int
            /// At most this much of the csvlog is read.
            public var maxBytes: Int64

            public init(windowSeconds: Double = 30, maxStatements: Int = 5_000, maxBytes: Int64 = 64 << 20) {
                self.windowSeconds = windowSeconds
                self.maxStatements = maxStatements
                self.maxBytes = maxBytes
            }
        }

        public init(
            workload: String? = nil, capture: Capture? = nil, durationSeconds: Double = 60, queries: Int = 2_000, concurrency: Int = 2,
            statementTimeoutSeconds: Double = 5, maxP99Ratio: Double = 2, p99SlackSeconds: Double = 0.005, lagBudgetSeconds: Double = 2,
            lagRecheckSeconds: Double = 2, reportMismatches: Int = 20, configured: Bool = false
        ) {
            self.workload = workload
            self.capture = capture
            self.durationSeconds = durationSeconds
            self.queries = queries
            self.concurrency = concurrency
            self.statementTimeoutSeconds = statementTimeoutSeconds
            self.maxP99Ratio = maxP99Ratio
            self.p99SlackSeconds = p99SlackSeconds
            self.lagBudgetSeconds = lagBudgetSeconds
            self.lagRecheckSeconds = lagRecheckSeconds
            self.reportMismatches = reportMismatches
            self.configured = configured
        }

        /// Where the traffic comes from, for people.
        public var trafficDescription: String {
            var parts: [String] = []
            if let workload { parts.append("the workload file \(workload)") }
            if let capture { parts.append("a \(Int(capture.windowSeconds)) s capture of the single node's own statements") }
            return parts.isEmpty ? "no traffic source" : parts.joined(separator: " and ")
        }
    }
}

/// A workload file for the shadow stage: read-only statements with parameter sets and weights.
///
/// ```yaml
/// statements:
///   - name: account balance          # optional; the report names statements by it
///     sql: SELECT abalance FROM pgbench_accounts WHERE aid = $1
///     weight: 5                      # relative frequency (default 1)
///     params: [[1], [42], [99999]]   # one list per execution, cycled; none for a statement without $n
/// ```
public struct ShadowWorkload: Hashable, Sendable {
    public struct Statement: Hashable, Sendable {
        public var name: String?
        public var sql: String
        public var weight: Int
        /// Parameter sets (text values, nil for NULL); empty when the statement has none.
        public var params: [[String?]]

        public init(name: String? = nil, sql: String, weight: Int = 1, params: [[String?]] = []) {
            self.name = name
            self.sql = sql
            self.weight = weight
            self.params = params
        }
    }

    public var statements: [Statement]

    public init(statements: [Statement]) {
        self.statements = statements
    }

    /// Reads and validates the workload file at `path` (every problem with line, column and key).
    public static func load(path: String) throws(MigrationError) -> ShadowWorkload {
        guard let snapshot = try FileIO.read(path) else {
            throw MigrationError(.playbookInvalid, "workload file \(path) (shadow.workload) does not exist", path: path)
        }
        return try parse(String(decoding: snapshot.contents, as: UTF8.self), file: path)
    }

    public static func parse(_ text: String, file: String) throws(MigrationError) -> ShadowWorkload {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw MigrationError(.playbookInvalid, "workload file \(file) is not valid YAML", path: file, issues: [PlaybookParser.yamlIssue(error, file: file, text: text)])
        }
        let reader = PlaybookReader(file: file)
        guard let workload = reader.workload(root), reader.issues.isEmpty else {
            let count = reader.issues.count
            throw MigrationError(.playbookInvalid, "workload file \(file) is invalid (\(count) problem\(count == 1 ? "" : "s")):", path: file, issues: reader.issues)
        }
        return workload
    }
}

