import Foundation
import PGClient
import Testing
@testable import Migration

/// The physical sync's decisions, from synthetic observations and times (no server, no sleep).
@Suite("SyncMonitor: the physical sync's wait")
struct SyncMonitorTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let sysid = "7714636302383325476"
    let limits = SyncLimits(
        members: ["ha1", "ha2", "ha3"], minMembers: 3, caughtUpLagBytes: 1 << 20, maxWALRetentionBytes: 1 << 30,
        clusterTimeoutSeconds: 300, stallTimeoutSeconds: 120, slot: "pgha_ha", sourceAddress: "127.0.0.10:15432",
        patroniYML: "/srv/out/patroni.yml", startHook: true)

    func source(lsn: UInt64 = 0x3000000, retained: Int64 = 4096, active: Bool = true, backup: BasebackupProgress? = nil) -> Probe<SourceSync> {
        .observed(SourceSync(systemIdentifier: sysid, currentLSN: LSN(lsn), slot: SlotState(active: active, restartLSN: LSN(lsn > UInt64(retained) ? lsn - UInt64(retained) : 0), retainedBytes: retained), basebackup: backup))
    }

    func member(_ name: String, role: String = "replica", state: String? = "streaming", replay: UInt64? = 0x3000000, id: String? = nil) -> SyncMember {
        SyncMember(name: name, role: role, state: state, address: "127.0.0.1x:15432",
                   server: replay.map { .observed(MemberSync(systemIdentifier: id ?? sysid, replayLSN: LSN($0))) } ?? .failed("connection refused"))
    }

    func streaming(lag: [UInt64] = [0, 0, 0], at seconds: Double) -> SyncObservation {
        let lsn: UInt64 = 0x3000000
        return SyncObservation(at: t0 + seconds, source: source(lsn: lsn), members: [
            member("ha1", role: "standby_leader", replay: lsn - lag[0]), member("ha2", replay: lsn - lag[1]), member("ha3", replay: lsn - lag[2]),
        ])
    }

    @Test("no REST host answers: it waits for the cluster to appear, up to cluster_timeout, then fails saying what to start")
    func clusterAppears() {
        var monitor = SyncMonitor(limits: limits, startedAt: t0)
        let absent = { (s: Double) in SyncObservation(at: self.t0 + s, source: self.source(active: false), members: [], restError: "127.0.0.14:8008: connection refused") }
        guard case .waiting(let what, let detail, let deadline, _) = monitor.observe(absent(1)) else { Issue.record("not waiting"); return }
        #expect(what.contains("the standby cluster to appear"))
        #expect(detail.contains("connection refused"))
        #expect(deadline == t0 + 300)
        // Long silence while absent is not a stall: the cluster timeout governs.
        guard case .waiting = monitor.observe(absent(299)) else { Issue.record("gave up early"); return }
        guard case .failed(let reason, let advice) = monitor.observe(absent(301)) else { Issue.record("did not give up"); return }
        #expect(reason.contains("did not appear within sync.cluster_timeout (300 s)"))
        #expect(advice.contains("sync.start_cluster ran") && advice.contains("pgha resume"))
    }

    @Test("the copy shows as a transfer with rate and ETA, then the members' lag as gauges; caught up when every member streams within the threshold")
    func copyThenLag() {
        var monitor = SyncMonitor(limits: limits, startedAt: t0)
        let copying = { (s: Double, done: Int64) in
            SyncObservation(at: self.t0 + s, source: self.source(backup: BasebackupProgress(phase: "streaming database files", streamedBytes: done, totalBytes: 100 << 20)),
                            members: [self.member("ha1", state: "creating replica", replay: nil), self.member("ha2", state: "stopped", replay: nil)])
        }
        guard case .waiting(let what, _, _, let first) = monitor.observe(copying(1, 10 << 20)) else { Issue.record("not waiting"); return }
        #expect(what == "the initial copy of the single node")
        #expect(first.first?.task == "basebackup" && first.first?.fraction == 0.1)
        guard case .waiting(_, let detail, _, let second) = monitor.observe(copying(3, 30 << 20)) else { Issue.record("not waiting"); return }
        #expect(second.first?.ratePerSecond == Double(10 << 20))
        #expect(second.first?.etaSeconds == 7)
        #expect(detail.contains("ha3 is not in the cluster yet") && detail.contains("ha1 is replica, creating replica"))

        guard case .waiting(let lagWhat, let lagDetail, _, let lags) = monitor.observe(streaming(lag: [0, 4 << 20, 0], at: 10)) else { Issue.record("not waiting for lag"); return }
        #expect(lagWhat == "replay lag ≤ 1.0 MB on every member")
        #expect(lagDetail == "ha2 4.0 MB behind")
        #expect(lags.map(\.task) == ["lag:ha1", "lag:ha2", "lag:ha3"])
        #expect(lags[1].kind == .gauge && lags[1].value == 4 << 20 && !lags[1].isDone)
        guard case .caughtUp(let summary, _) = monitor.observe(streaming(lag: [0, 512, 0], at: 11)) else { Issue.record("not caught up"); return }
        #expect(summary.contains("ha2 512 B"))
    }

    @Test("a writable leader or a member of another system stops the stage at once with the rebuild advice")
    func foreignCluster() {
        var monitor = SyncMonitor(limits: limits, startedAt: t0)
        let independent = SyncObservation(at: t0 + 1, source: source(), members: [member("node1", role: "leader", state: "running"), member("node2")])
        guard case .failed(let reason, let advice) = monitor.observe(independent) else { Issue.record("accepted a writable leader"); return }
        #expect(reason.contains("node1 is a writable leader"))
        #expect(advice.contains("new scope") && advice.contains("sync.method: logical"))
        var other = SyncMonitor(limits: limits, startedAt: t0)
        let foreign = SyncObservation(at: t0 + 1, source: source(), members: [member("ha1", role: "standby_leader", id: "6999999999999999999")])
        guard case .failed(let why, _) = other.observe(foreign) else { Issue.record("accepted another system"); return }
        #expect(why.contains("ha1 belongs to another system: system identifier 6999999999999999999, the single node's is \(sysid)"))
    }

    @Test("a slot holding back more WAL than the limit stops the stage; the advice depends on whether anything streams")
    func walLimit() {
        var monitor = SyncMonitor(limits: limits, startedAt: t0)
        let full = SyncObservation(at: t0 + 5, source: source(retained: (1 << 30) + 1, active: false), members: [])
        guard case .failed(let reason, let advice) = monitor.observe(full) else { Issue.record("kept waiting"); return }
        #expect(reason.contains("holds back 1.0 GB of WAL, more than sync.max_wal_retention (1.0 GB)"))
        #expect(advice.contains("nothing streams from the slot"))
    }

    @Test("no progress for stall_timeout fails; any movement (bytes, a position, a state) resets the clock")
    func stall() {
        var monitor = SyncMonitor(limits: limits, startedAt: t0)
        let stuck = { (s: Double, lsn: UInt64) in
            SyncObservation(at: self.t0 + s, source: self.source(lsn: 0x9000000), members: [
                self.member("ha1", role: "standby_leader", replay: lsn), self.member("ha2", replay: lsn), self.member("ha3", replay: lsn),
            ])
        }
        guard case .waiting = monitor.observe(stuck(1, 0x1000000)) else { Issue.record(); return }
        guard case .waiting = monitor.observe(stuck(100, 0x1000000)) else { Issue.record(); return }
        guard case .waiting = monitor.observe(stuck(110, 0x1000100)) else { Issue.record("moved, yet failed"); return }
        guard case .waiting = monitor.observe(stuck(229, 0x1000100)) else { Issue.record("failed before stall_timeout"); return }
        guard case .failed(let reason, _) = monitor.observe(stuck(231, 0x1000100)) else { Issue.record("no stall detected"); return }
        #expect(reason.contains("no progress for 121 s (sync.stall_timeout)"))
    }

    @Test("the gate: PASS on a caught-up standby cluster; each problem fails its own check")
    func gate() {
        let good = SyncMonitor.gate(streaming(at: 1), limits: limits)
        #expect(good.map(\.name) == ["sync.standby", "sync.system_identifier", "sync.members_streaming", "sync.replay_lag", "sync.wal_retention"])
        #expect(good.allSatisfy { $0.verdict == .pass }, "\(good)")

        var bad = streaming(lag: [0, 8 << 20, 0], at: 1)
        bad.members[2].state = "starting"
        bad.members[1].server = .observed(MemberSync(systemIdentifier: "1", replayLSN: LSN(0x3000000 - (8 << 20))))
        let results = Dictionary(uniqueKeysWithValues: SyncMonitor.gate(bad, limits: limits).map { ($0.name, $0) })
        #expect(results["sync.standby"]?.verdict == .pass)
        #expect(results["sync.system_identifier"]?.verdict == .fail)
        #expect(results["sync.members_streaming"]?.observed.contains("ha3 replica starting") == true)
        #expect(results["sync.replay_lag"]?.verdict == .fail)

        let noSlot = SyncObservation(at: t0, source: .observed(SourceSync(systemIdentifier: sysid, currentLSN: LSN(1), slot: nil)), members: [])
        let missing = Dictionary(uniqueKeysWithValues: SyncMonitor.gate(noSlot, limits: limits).map { ($0.name, $0) })
        #expect(missing["sync.wal_retention"]?.observed.contains("does not exist") == true)
        #expect(missing["sync.standby"]?.verdict == .fail)
    }

    @Test("members named by the playbook must all stream; without names only their number counts")
    func namedMembers() {
        var monitor = SyncMonitor(limits: limits, startedAt: t0)
        var two = streaming(at: 1)
        two.members.removeLast()
        guard case .waiting(_, let detail, _, _) = monitor.observe(two) else { Issue.record(); return }
        #expect(detail.contains("ha3 is not in the cluster yet"))
        var unnamed = limits
        unnamed.membersNamed = false
        unnamed.minMembers = 2
        var relaxed = SyncMonitor(limits: unnamed, startedAt: t0)
        guard case .caughtUp = relaxed.observe(two) else { Issue.record("two of min 2 should do"); return }
    }
}
