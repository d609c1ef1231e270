import ShadowCompare

/// One statement the shadow stage replays, with what the comparison needs to know about it.
public struct ShadowStatement: Sendable, Hashable {
    public enum Origin: String, Sendable, Hashable, Codable {
        /// From the playbook's workload file.
        case workload
        /// Captured from the single node's own traffic.
        case capture
    }

    public var name: String?
    public var sql: String
    /// Parameter sets, cycled through (empty for a statement without parameters).
    public var params: [[String?]]
    public var weight: Int
    public var origin: Origin
    public let fingerprint: String
    public let normalized: String
    /// Compared in order (the outermost query has ORDER BY).
    public let ordered: Bool
    public let unorderedLimit: Bool

    public init(name: String? = nil, sql: String, params: [[String?]] = [], weight: Int = 1, origin: Origin) {
        let text = SQLText(sql)
        self.name = name
        self.sql = sql
        self.params = params
        self.weight = max(1, weight)
        self.origin = origin
        self.fingerprint = text.fingerprint
        self.normalized = text.normalized
        self.ordered = text.ordersResult
        self.unorderedLimit = text.hasUnorderedLimit
    }

    /// How the report names it: its workload name, or the start of its normalised text.
    public var label: String {
        if let name { return name }
        return normalized.count <= 60 ? normalized : String(normalized.prefix(59)) + "…"
    }
}

/// The replay's traffic: the workload's statements and the captured ones (the same captured
/// statement text with other parameters merges into one statement with several parameter sets,
/// weighted by how often it ran).
public struct ShadowTraffic: Sendable, Hashable {
    public var statements: [ShadowStatement]

    public init(workload: ShadowWorkload?, captured: [CapturedStatement]) {
        var statements: [ShadowStatement] = (workload?.statements ?? []).map {
            ShadowStatement(name: $0.name, sql: $0.sql, params: $0.params, weight: $0.weight, origin: .workload)
        }
        var byText: [String: Int] = [:]
        for c in captured {
            if let i = byText[c.sql] {
                statements[i].weight += 1
                if !c.params.isEmpty { statements[i].params.append(c.params) }
            } else {
                byText[c.sql] = statements.count
                statements.append(ShadowStatement(sql: c.sql, params: c.params.isEmpty ? [] : [c.params], origin: .capture))
            }
        }
        self.statements = statements
    }

    public var isEmpty: Bool { statements.isEmpty }
}

/// Which statement, parameter set and member each execution uses: a pure, seeded sequence (the
/// same seed gives the same replay). Statements come in proportion to their weights, parameter
/// sets in turn, members in turn (every member gets an equal share).
public struct ShadowScheduler: Sendable {
    public struct Job: Sendable, Hashable {
        public var sequence: Int
        public var statement: Int
        public var params: [String?]
        public var member: Int
    }

    private let statements: [ShadowStatement]
    private let memberCount: Int
    private var cycle: [Int]
    private var nextParams: [Int]
    private var issued = 0
    private var rng: SplitMix64

    public init(traffic: ShadowTraffic, memberCount: Int, seed: UInt64 = 0x5eed) {
        statements = traffic.statements
        self.memberCount = max(1, memberCount)
        rng = SplitMix64(seed: seed)
        // One cycle holds each statement `weight` times (large weights scaled down to keep it short).
        let total = traffic.statements.reduce(0) { $0 + $1.weight }
        let scale = max(1, total / 10_000)
        var cycle: [Int] = []
        for (i, s) in traffic.statements.enumerated() { cycle += Array(repeating: i, count: max(1, s.weight / scale)) }
        self.cycle = cycle
        nextParams = Array(repeating: 0, count: traffic.statements.count)
        shuffle()
    }

    private mutating func shuffle() {
        guard cycle.count > 1 else { return }
        for i in stride(from: cycle.count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            cycle.swapAt(i, j)
        }
    }

    /// The next execution (nil when there is no traffic).
    public mutating func next() -> Job? {
        guard !cycle.isEmpty else { return nil }
        let position = issued % cycle.count
        if position == 0, issued > 0 { shuffle() }
        let statement = cycle[position]
        let sets = statements[statement].params
        var params: [String?] = []
        if !sets.isEmpty {
            params = sets[nextParams[statement] % sets.count]
            nextParams[statement] += 1
        }
        defer { issued += 1 }
        return Job(sequence: issued, statement: statement, params: params, member: issued % memberCount)
    }
}

/// A small seeded generator (Vigna's SplitMix64): the replay order is reproducible.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
