public import Foundation
import PGClient
import PlainText

/// The physical sync's wait, as a pure state machine: an observation (with its time) in, one step
/// out — keep waiting (what for, progress to show), caught up, or failed (why, what to do). No I/O,
/// no clock of its own: the sync stage observes, feeds it, and sleeps between.
///
/// What it waits for, in order: the cluster to appear (its REST API answering; bounded by
/// `cluster_timeout`), the initial copy (`pg_stat_progress_basebackup` on the single node), every
/// member streaming, then each member's replay lag (single node's current LSN − the member's
/// replay LSN) within `caught_up_lag`. What stops it at once: a writable leader (not a standby
/// cluster), a member of another system (`system_identifier`), the slot holding back more WAL than
/// `max_wal_retention`, and no progress at all for `stall_timeout`.
public struct SyncMonitor: Sendable {
    public let limits: SyncLimits
    public let startedAt: Date
    private var lastProgressAt: Date
    private var fingerprint: [String]?
    private var copyMeter = ProgressMeter()
    private var lagMeters: [String: ProgressMeter] = [:]

    /// What to do after one observation.
    public enum Step: Sendable, Hashable {
        /// Keep waiting: what for (for `pgha status`), the latest detail, when the wait gives up,
        /// and progress to show.
        case waiting(what: String, detail: String, deadline: Date?, progress: [StageProgress])
        /// Every member streams within the lag threshold.
        case caughtUp(summary: String, progress: [StageProgress])
        /// Stop the stage.
        case failed(reason: String, advice: String)
    }

    public init(limits: SyncLimits, startedAt: Date) {
        self.limits = limits
        self.startedAt = startedAt
        self.lastProgressAt = startedAt
    }

    public mutating func observe(_ o: SyncObservation) -> Step {
        let now = o.at
        guard let source = o.source.value else {
            return stalled(now) ?? .waiting(
                what: "the single node \(limits.sourceAddress) to answer", detail: o.source.failure ?? "?", deadline: stallDeadline, progress: [])
        }
        if let slot = source.slot, slot.retainedBytes > limits.maxWALRetentionBytes {
            return .failed(
                reason: "slot \(limits.slot) on the single node holds back \(formatBytes(slot.retainedBytes)) of WAL, more than sync.max_wal_retention (\(formatBytes(limits.maxWALRetentionBytes))); the stage stops so that the single node's disk does not fill",
                advice: slot.active
                    ? "the standby cluster consumes the WAL too slowly (see its members' lag in `pgha status`): raise sync.max_wal_retention if the disk allows, then `pgha resume`; `pgha rollback` drops the slot"
                    : "nothing streams from the slot (the standby cluster stopped?): start its members, then `pgha resume`; `pgha rollback` drops the slot and frees the WAL")
        }
        if let writable = o.members.first(where: \.isWritableLeader) {
            return .failed(
                reason: "\(writable.name) is a writable leader: the cluster behind target.api_hosts is not a standby cluster of the single node",
                advice: Self.rebuildAdvice(limits))
        }
        for member in o.members {
            if let server = member.server?.value, server.systemIdentifier != source.systemIdentifier {
                return .failed(
                    reason: "\(member.name) belongs to another system: system identifier \(server.systemIdentifier), the single node's is \(source.systemIdentifier)",
                    advice: Self.rebuildAdvice(limits))
            }
        }

        // The copy's and the lag's progress.
        var progress: [StageProgress] = []
        if let backup = source.basebackup {
            progress.append(copyMeter.transfer(
                task: "basebackup", title: "initial copy", unit: .bytes, done: backup.streamedBytes, total: backup.totalBytes,
                at: now, detail: backup.phase))
        }
        var lags: [(String, Int64)] = []
        for member in o.members {
            guard let replay = member.server?.value?.replayLSN else { continue }
            let lag = max(0, source.currentLSN - replay)
            lags.append((member.name, lag))
            // A member that is not streaming yet has a position, but no lag worth a bar.
            guard member.isStreaming else { continue }
            var meter = lagMeters[member.name] ?? ProgressMeter()
            progress.append(meter.gauge(
                task: "lag:\(member.name)", title: "replay lag \(member.name)", unit: .bytes, value: lag,
                target: limits.caughtUpLagBytes, at: now, detail: member.state))
            lagMeters[member.name] = meter
        }
        noteProgress(o, source: source, now: now)

        // The cluster has not appeared yet.
        if o.members.isEmpty {
            let deadline = startedAt.addingTimeInterval(limits.clusterTimeoutSeconds)
            if now >= deadline {
                return .failed(
                    reason: "the standby cluster did not appear within sync.cluster_timeout (\(Int(limits.clusterTimeoutSeconds)) s): \(o.restError ?? "no REST host answered")",
                    advice: startAdvice + "; then `pgha resume`")
            }
            return .waiting(
                what: "the standby cluster to appear (no REST host answers yet)",
                detail: (limits.startHook ? "sync.start_cluster ran; " : startAdvice + "; ") + (o.restError ?? ""),
                deadline: deadline, progress: progress)
        }
        if let stalled = stalled(now) { return stalled }

        let listed = Set(o.members.map(\.name))
        let missing = limits.membersNamed ? limits.members.filter { !listed.contains($0) } : []
        let notStreaming = o.members.filter { !$0.isStreaming }
        let streaming = o.members.filter(\.isStreaming)
        if source.basebackup != nil || !missing.isEmpty || !notStreaming.isEmpty || streaming.count < limits.requiredCount {
            var parts: [String] = []
            if let backup = source.basebackup {
                parts.append("pg_basebackup of the single node: \(backup.phase), \(formatBytes(backup.streamedBytes))" + (backup.totalBytes.map { " of \(formatBytes($0))" } ?? ""))
            }
            parts += notStreaming.map { "\($0.name) is \($0.role), \($0.state ?? "state unknown")" }
            parts += missing.map { "\($0) is not in the cluster yet" }
            if missing.isEmpty, streaming.count < limits.requiredCount {
                parts.append("\(streaming.count) of \(limits.requiredCount) members stream")
            }
            let what = source.basebackup != nil ? "the initial copy of the single node" : "every member to stream from the single node"
            return .waiting(what: what, detail: parts.joined(separator: "; "), deadline: stallDeadline, progress: progress)
        }

        let behind = lags.filter { $0.1 > limits.caughtUpLagBytes }
        let unknown = o.members.filter { $0.server?.value?.replayLSN == nil }
        if !behind.isEmpty || !unknown.isEmpty {
            let parts = behind.map { "\($0.0) \(formatBytes($0.1)) behind" } + unknown.map { "\($0.name): \($0.server?.failure ?? "no replay position yet")" }
            return .waiting(
                what: "replay lag ≤ \(formatBytes(limits.caughtUpLagBytes)) on every member", detail: parts.joined(separator: "; "),
                deadline: stallDeadline, progress: progress)
        }
        let summary = lags.map { "\($0.0) \(formatBytes($0.1))" }.joined(separator: ", ")
        return .caughtUp(summary: "every member streams from the single node; replay lag \(summary)", progress: progress)
    }

    /// The checks of the sync gate, from one observation: `sync.standby`, `sync.system_identifier`,
    /// `sync.members_streaming`, `sync.replay_lag`, `sync.wal_retention`.
    public static func gate(_ o: SyncObservation, limits: SyncLimits) -> [CheckResult] {
        guard let source = o.source.value else {
            let why = o.source.failure ?? "?"
            return ["sync.standby", "sync.system_identifier", "sync.members_streaming", "sync.replay_lag", "sync.wal_retention"].map {
                .fail($0, observed: "the single node cannot be read: \(why)", advice: "fix the source's admin login (source.admin_user), then `pgha resume`")
            }
        }
        var results: [CheckResult] = []
        let rebuild = rebuildAdvice(limits)
        if o.members.isEmpty {
            results.append(.fail("sync.standby", observed: "no member answers: \(o.restError ?? "no REST host answered")", expected: "a standby cluster of the single node",
                                 advice: "start the cluster's members (\(limits.patroniYML)), then `pgha resume`"))
        } else if let writable = o.members.first(where: \.isWritableLeader) {
            results.append(.fail("sync.standby", observed: "\(writable.name) is a writable leader", expected: "a standby cluster of the single node", advice: rebuild))
        } else if let leader = o.members.first(where: \.isStandbyLeader) {
            results.append(.pass("sync.standby", observed: "standby leader \(leader.name), following \(limits.sourceAddress)", expected: "a standby cluster of the single node"))
        } else {
            results.append(.fail("sync.standby", observed: "no standby leader among " + o.members.map(\.name).joined(separator: ", "), expected: "a standby cluster of the single node",
                                 advice: "the cluster has no standby leader (an election in progress?): wait, then `pgha resume`"))
        }

        let ids = o.members.map { m -> String in
            switch m.server {
            case .observed(let s)?: return "\(m.name)=\(s.systemIdentifier)"
            case .failed(let why)?: return "\(m.name)=unknown (\(why))"
            case nil: return "\(m.name)=unknown (no address)"
            }
        }
        let foreign = o.members.filter { ($0.server?.value).map { $0.systemIdentifier != source.systemIdentifier } ?? false }
        let unread = o.members.filter { $0.server?.value == nil }
        let idObserved = "single node=\(source.systemIdentifier); " + ids.joined(separator: "; ")
        if !foreign.isEmpty {
            results.append(.fail("sync.system_identifier", observed: idObserved, expected: "the single node's on every member", advice: rebuild))
        } else if !unread.isEmpty || o.members.isEmpty {
            results.append(.fail("sync.system_identifier", observed: idObserved, expected: "the single node's on every member",
                                 advice: "every member's PostgreSQL must answer (see credentials and its Patroni log), then `pgha resume`"))
        } else {
            results.append(.pass("sync.system_identifier", observed: idObserved, expected: "the single node's on every member"))
        }

        let listed = Set(o.members.map(\.name))
        let missing = limits.membersNamed ? limits.members.filter { !listed.contains($0) } : []
        let notStreaming = o.members.filter { !$0.isStreaming }
        let streamingExpected = "\(limits.requiredCount) members streaming (the standby leader from the single node, the others from it)"
        let streamingObserved = o.members.map { "\($0.name) \($0.role) \($0.state ?? "?")" }.joined(separator: ", ")
        if !missing.isEmpty || !notStreaming.isEmpty || o.members.filter(\.isStreaming).count < limits.requiredCount {
            results.append(.fail("sync.members_streaming", observed: streamingObserved + (missing.isEmpty ? "" : "; missing: " + missing.joined(separator: ", ")),
                                 expected: streamingExpected, advice: "start the members named (\(limits.patroniYML)) and wait until `pgha status` shows them streaming; then `pgha resume`"))
        } else {
            results.append(.pass("sync.members_streaming", observed: streamingObserved, expected: streamingExpected))
        }

        let lagExpected = "≤ \(formatBytes(limits.caughtUpLagBytes)) on every member (sync.caught_up_lag)"
        var lags: [String] = []
        var behind: [String] = []
        for member in o.members {
            guard let replay = member.server?.value?.replayLSN else {
                behind.append("\(member.name) unknown")
                continue
            }
            let lag = max(0, source.currentLSN - replay)
            lags.append("\(member.name) \(formatBytes(lag))")
            if lag > limits.caughtUpLagBytes { behind.append("\(member.name) \(formatBytes(lag))") }
        }
        if !behind.isEmpty || o.members.isEmpty {
            results.append(.fail("sync.replay_lag", observed: (lags + behind.filter { $0.hasSuffix("unknown") }).joined(separator: ", "), expected: lagExpected,
                                 advice: "the members are still catching up: `pgha resume` waits for them"))
        } else {
            results.append(.pass("sync.replay_lag", observed: lags.joined(separator: ", "), expected: lagExpected))
        }

        let walExpected = "≤ \(formatBytes(limits.maxWALRetentionBytes)) held back by slot \(limits.slot) (sync.max_wal_retention)"
        if let slot = source.slot {
            let observed = "\(formatBytes(slot.retainedBytes)), slot \(slot.active ? "in use" : "not in use")"
            if slot.retainedBytes > limits.maxWALRetentionBytes {
                results.append(.fail("sync.wal_retention", observed: observed, expected: walExpected, advice: "the standby cluster does not keep up: see `pgha status`, then `pgha resume`; `pgha rollback` drops the slot"))
            } else {
                results.append(.pass("sync.wal_retention", observed: observed, expected: walExpected))
            }
        } else {
            results.append(.fail("sync.wal_retention", observed: "slot \(limits.slot) does not exist on the single node", expected: walExpected,
                                 advice: "the standby cluster follows without the slot and can lose WAL it still needs: run the sync stage again (`pgha resume` after `pgha rollback` of sync)"))
        }
        return results
    }

    // MARK: - Helpers

    private var stallDeadline: Date { lastProgressAt.addingTimeInterval(limits.stallTimeoutSeconds) }

    /// Progress is anything that moves: bytes copied, a member's position, a state change.
    private mutating func noteProgress(_ o: SyncObservation, source: SourceSync, now: Date) {
        var print: [String] = ["copy:\(source.basebackup?.streamedBytes ?? -1):\(source.basebackup?.phase ?? "")"]
        for member in o.members.sorted(by: { $0.name < $1.name }) {
            print.append("\(member.name):\(member.role):\(member.state ?? ""):\(member.server?.value?.replayLSN?.description ?? "-")")
        }
        if print != fingerprint {
            fingerprint = print
            lastProgressAt = now
        }
    }

    private func stalled(_ now: Date) -> Step? {
        guard now.timeIntervalSince(lastProgressAt) > limits.stallTimeoutSeconds else { return nil }
        return .failed(
            reason: "no progress for \(Int(now.timeIntervalSince(lastProgressAt))) s (sync.stall_timeout): neither the copy nor any member's position moved",
            advice: "check the members' Patroni and PostgreSQL logs and `pgha status`; then `pgha resume` (or raise sync.stall_timeout)")
    }

    private var startAdvice: String {
        limits.startHook
            ? "sync.start_cluster ran but no member answers: check its output and the members' Patroni logs"
            : "start Patroni on every member with \(limits.patroniYML) (docs/PATRONI_SETUP.md)"
    }

    static func rebuildAdvice(_ limits: SyncLimits) -> String {
        "the physical method needs a new cluster that Patroni bootstraps as a standby of this single node: stop its members, empty their data directories, use a new scope (or `patronictl remove` the old one), and start them with \(limits.patroniYML); then `pgha resume`. To copy into an existing cluster, use sync.method: logical"
    }
}
