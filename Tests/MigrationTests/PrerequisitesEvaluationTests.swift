import PlainText
import Foundation
import Logging
import Testing
@testable import Migration

/// Observations of a healthy rehearsal system: single node 127.0.0.10, members node1 (leader),
/// node2 and node3 (streaming replicas), REST on 127.0.0.1x:8008.
enum PrereqFixture {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let names = ["node1", "node2", "node3"]

    static func endpoint(_ name: String) -> String { "127.0.0.1\(name.last!):8008" }

    static func source() -> SourceObservation {
        SourceObservation(
            address: "127.0.0.10:15432",
            logins: [
                LoginObservation(purpose: "application", user: "dpg_cluster", database: "distributed_postgres_cluster"),
                LoginObservation(purpose: "shared", user: "dpg_cluster", database: "shared_knowledge"),
                LoginObservation(purpose: "admin", user: "postgres", database: "distributed_postgres_cluster"),
            ],
            serverVersionNum: 150018, serverVersion: "15.18 (Debian 15.18-0+deb12u1)",
            settings: .observed(SourceSettings(walLevel: "logical", maxReplicationSlots: 10, usedReplicationSlots: 0, maxWalSenders: 10, usedWalSenders: 0)),
            transactions: .observed(OpenTransactions(seesAllSessions: true, oldest: [
                OpenTransaction(pid: 4242, database: "distributed_postgres_cluster", user: "dpg_cluster", state: "active", ageSeconds: 2),
            ])),
            databases: [
                SourceDatabaseObservation(name: "distributed_postgres_cluster", tables: .observed(TableIdentities(checked: 4, withoutIdentity: [])), largeObjects: .observed(0), unloggedTables: .observed([])),
                SourceDatabaseObservation(name: "shared_knowledge", tables: .observed(TableIdentities(checked: 2, withoutIdentity: [])), largeObjects: .observed(0), unloggedTables: .observed([])),
            ],
            elapsedMs: 40)
    }

    static func member(_ name: String, leader: Bool = false, state: String? = nil, lag: Int64? = 0) -> MemberObservation {
        MemberObservation(
            name: name, role: leader ? "leader" : "replica", isLeader: leader, isReplica: !leader,
            state: state ?? (leader ? "running" : "streaming"), host: "127.0.0.1\(name.last!)", port: 15432,
            lagBytes: leader ? nil : lag, apiEndpoint: endpoint(name),
            server: .observed(MemberServer(serverVersionNum: 150018, inRecovery: !leader)),
            logins: [
                LoginObservation(purpose: "application", user: "dpg_cluster", database: "distributed_postgres_cluster"),
                LoginObservation(purpose: "admin", user: "postgres", database: "postgres"),
            ])
    }

    static func host(_ name: String, leaders: [String] = ["node1"]) -> RESTHostObservation {
        RESTHostObservation(
            endpoint: endpoint(name), leaders: leaders, memberNames: names,
            status: NodeStatusObservation(name: name, role: name == "node1" ? "primary" : "replica", state: "running",
                                          serverVersion: 150018, dcsLastSeen: Int64(now.timeIntervalSince1970) - 1))
    }

    static func healthy() -> PrerequisiteObservations {
        PrerequisiteObservations(
            observedAt: now, source: source(),
            cluster: ClusterObservation(
                restHosts: names.map { host($0) },
                members: [member("node1", leader: true), member("node2"), member("node3")],
                membersFrom: endpoint("node1"), ttlSeconds: 20,
                pool: .observed("writes to 127.0.0.11:15432 (confirmed not in recovery), reads to 127.0.0.12:15432, 127.0.0.13:15432; database distributed_postgres_cluster"),
                elapsedMs: 120))
    }

    static let limits = PrerequisiteLimits(
        minMembers: 3, maxLagBytes: 1 << 20, maxTransactionAgeSeconds: 300, minServerVersion: 15, slotsNeeded: 2, slotsMargin: 2,
        credentialHints: ["target.application": "target.password (${PATRONI_PASSWORD})", "source.application": "source.password (${PROJECT_DB_PASSWORD})"])

    /// node3's Patroni was stopped: `/cluster` still lists it as stopped, its REST API is gone,
    /// its PostgreSQL refuses connections.
    static func node3Stopped() -> PrerequisiteObservations {
        var o = healthy()
        var node3 = member("node3", state: "stopped", lag: nil)
        node3.server = .failed("connectionFailed: connection refused [127.0.0.13:15432]")
        node3.logins = node3.logins.map { login in
            var login = login
            login.error = "connectionFailed: connection refused [127.0.0.13:15432]"
            login.serverAnswered = false
            return login
        }
        o.cluster.members[2] = node3
        o.cluster.restHosts[2] = RESTHostObservation(
            endpoint: endpoint("node3"), clusterError: "Patroni transport from 127.0.0.13:8008/cluster: connection refused",
            statusError: "Patroni transport from 127.0.0.13:8008/patroni: connection refused")
        return o
    }
}

func check(_ results: [CheckResult], _ name: String) throws -> CheckResult {
    try #require(results.first { $0.name == name }, "no check named \(name) in \(results.map(\.name))")
}

@Suite("Prerequisites gate (pure evaluation)")
struct PrerequisitesEvaluationTests {
    let limits = PrereqFixture.limits

    @Test("a healthy system passes every check, in a stable order")
    func healthyPasses() {
        let results = PrerequisitesEvaluation.evaluate(PrereqFixture.healthy(), limits: limits)
        #expect(results.map(\.name) == [
            "source.reachable", "source.version", "credentials.source", "source.wal_level", "source.replication_slots",
            "source.wal_senders", "source.primary_keys", "source.long_transactions", "source.large_objects", "source.unlogged_tables",
            "cluster.rest_hosts", "cluster.members", "cluster.leader", "cluster.replicas_streaming", "cluster.replica_lag",
            "cluster.version", "cluster.dcs", "cluster.pool", "credentials.node1", "credentials.node2", "credentials.node3",
        ])
        #expect(results.allSatisfy { $0.verdict == .pass }, "\(results.filter { $0.verdict != .pass })")
        #expect(results.worstVerdict == .pass)
        #expect(results.first?.durationMs == 40)
        #expect(results.first { $0.name == "cluster.members" }?.durationMs == 120)
    }

    @Test("a stopped replica fails the gate, and the checks name it")
    func stoppedReplicaIsNamed() throws {
        let results = PrerequisitesEvaluation.evaluate(PrereqFixture.node3Stopped(), limits: limits)
        let streaming = try check(results, "cluster.replicas_streaming")
        #expect(streaming.verdict == .fail)
        #expect(streaming.observed == "1 of 2 replicas streaming: node2; not streaming: node3 (replica, stopped)")
        #expect(streaming.advice?.hasPrefix("node3 must stream from the leader") == true)
        #expect(streaming.advice?.contains("pgha resume") == true)
        let members = try check(results, "cluster.members")
        #expect(members.verdict == .fail)
        #expect(members.observed.contains("2 of 3 members running"))
        #expect(members.observed.contains("not running: node3 (replica, stopped)"))
        #expect(members.advice?.contains("bring node3 back") == true)
        let rest = try check(results, "cluster.rest_hosts")
        #expect(rest.verdict == .fail)
        #expect(rest.observed.contains("127.0.0.13:8008 (node3): Patroni transport"))
        let credentials = try check(results, "credentials.node3")
        #expect(credentials.verdict == .fail)
        #expect(credentials.observed.hasPrefix("node3 is stopped: not checked"))
        #expect(try check(results, "cluster.leader").verdict == .pass)
        #expect(try check(results, "credentials.node2").verdict == .pass)
        #expect(results.worstVerdict == .fail)
    }

    @Test("a member gone from the DCS is still pointed at through its REST host")
    func memberAbsentFromCluster() throws {
        var o = PrereqFixture.node3Stopped()
        o.cluster.members.removeLast()
        let results = PrerequisitesEvaluation.evaluate(o, limits: limits)
        let streaming = try check(results, "cluster.replicas_streaming")
        #expect(streaming.verdict == .fail)
        #expect(streaming.observed.contains("absent from /cluster: the member behind REST 127.0.0.13:8008"))
        let members = try check(results, "cluster.members")
        #expect(members.verdict == .fail)
        #expect(members.observed.contains("2 of 2 members running"))
        #expect(members.advice?.contains("127.0.0.13:8008") == true)
    }

    @Test("a member /cluster still lists as running whose PostgreSQL refuses connections does not count")
    func listedButDead() throws {
        var o = PrereqFixture.healthy()
        o.cluster.members[1].server = .failed("connectionFailed: connection refused")
        o.cluster.members[1].logins = o.cluster.members[1].logins.map { login in
            var login = login
            login.error = "connectionFailed: connection refused"
            login.serverAnswered = false
            return login
        }
        let results = PrerequisitesEvaluation.evaluate(o, limits: limits)
        let members = try check(results, "cluster.members")
        #expect(members.verdict == .fail)
        #expect(members.observed.contains("not running: node2 (replica, streaming per Patroni, but its PostgreSQL does not answer)"))
        let streaming = try check(results, "cluster.replicas_streaming")
        #expect(streaming.verdict == .fail)
        #expect(streaming.observed.hasPrefix("1 of 2 replicas streaming: node3; not streaming: node2"))
        #expect(try check(results, "cluster.replica_lag").observed == "node3 0 B")
        #expect(try check(results, "credentials.node2").observed.hasPrefix("node2's PostgreSQL does not answer: not checked"))

        var wrongPassword = PrereqFixture.healthy()
        wrongPassword.cluster.members[1].logins[0].error = "authenticationFailed: password authentication failed"
        #expect(try check(PrerequisitesEvaluation.evaluate(wrongPassword, limits: limits), "cluster.members").verdict == .pass,
                "a refused login means the server is up")
    }

    @Test("a REST host down while its member still runs fails rest_hosts only, naming the member")
    func restHostDown() throws {
        var o = PrereqFixture.healthy()
        o.cluster.restHosts[1] = RESTHostObservation(endpoint: PrereqFixture.endpoint("node2"), clusterError: "timeout", statusError: "timeout")
        let results = PrerequisitesEvaluation.evaluate(o, limits: limits)
        let rest = try check(results, "cluster.rest_hosts")
        #expect(rest.verdict == .fail)
        #expect(rest.observed == "2 of 3 answer; 127.0.0.12:8008 (node2): timeout")
        #expect(results.filter { $0.verdict == .fail }.map(\.name) == ["cluster.rest_hosts"])
    }

    @Test("two members claiming the leader role fail cluster.leader")
    func twoLeaders() throws {
        var o = PrereqFixture.healthy()
        o.cluster.restHosts[1].clusterError = "Patroni inconsistentTopology from 127.0.0.12:8008/cluster: 2 members claim the leader role: node1, node2"
        o.cluster.restHosts[1].leaders = ["node1", "node2"]
        let leader = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "cluster.leader")
        #expect(leader.verdict == .fail)
        #expect(leader.observed == "2 members claim the leader role: node1, node2")
        #expect(leader.advice?.contains("split brain") == true)

        var split = PrereqFixture.healthy()
        split.cluster.restHosts[2].leaders = ["node3"]
        #expect(try check(PrerequisitesEvaluation.evaluate(split, limits: limits), "cluster.leader").observed == "2 members claim the leader role: node1, node3")
    }

    @Test("no leader, or a leader still in recovery, fails cluster.leader")
    func noConfirmedLeader() throws {
        var none = PrereqFixture.healthy()
        none.cluster.members[0] = MemberObservation(name: "node1", role: "replica", isLeader: false, isReplica: true, state: "running", host: "127.0.0.11", port: 15432)
        for i in none.cluster.restHosts.indices { none.cluster.restHosts[i].leaders = [] }
        let leader = try check(PrerequisitesEvaluation.evaluate(none, limits: limits), "cluster.leader")
        #expect(leader.verdict == .fail)
        #expect(leader.observed.hasPrefix("no leader among node1 (replica, running)"))

        var recovering = PrereqFixture.healthy()
        recovering.cluster.members[0].server = .observed(MemberServer(serverVersionNum: 150018, inRecovery: true))
        let r = try check(PrerequisitesEvaluation.evaluate(recovering, limits: limits), "cluster.leader")
        #expect(r.verdict == .fail)
        #expect(r.observed.contains("still in recovery"))

        var silent = PrereqFixture.healthy()
        silent.cluster.restHosts[2].leaders = []
        let s = try check(PrerequisitesEvaluation.evaluate(silent, limits: limits), "cluster.leader")
        #expect(s.verdict == .warn)
        #expect(s.observed.contains("127.0.0.13:8008 names no leader"))
    }

    @Test("replication lag over the threshold fails; an unknown lag warns")
    func lag() throws {
        var o = PrereqFixture.healthy()
        o.cluster.members[1].lagBytes = 2 << 20
        let lag = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "cluster.replica_lag")
        #expect(lag.verdict == .fail)
        #expect(lag.observed == "node2 2.0 MB, node3 0 B")
        #expect(lag.expected == "≤ 1.0 MB on every streaming replica")
        #expect(lag.advice?.hasPrefix("node2 is too far behind") == true)

        o.cluster.members[1].lagBytes = nil
        #expect(try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "cluster.replica_lag").verdict == .warn)

        o.cluster.members[1].lagBytes = 1 << 20
        #expect(try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "cluster.replica_lag").verdict == .pass, "the threshold itself is allowed")
    }

    @Test("a member older than the single node or the threshold fails cluster.version")
    func versions() throws {
        var o = PrereqFixture.healthy()
        o.cluster.members[2].server = .observed(MemberServer(serverVersionNum: 140011, inRecovery: true))
        let version = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "cluster.version")
        #expect(version.verdict == .fail)
        #expect(version.observed == "node1 15.18, node2 15.18, node3 14.11; single node 15.18")
        #expect(version.advice?.hasPrefix("node3 runs an older major version") == true)

        var newerSource = PrereqFixture.healthy()
        newerSource.source.serverVersionNum = 160004
        #expect(try check(PrerequisitesEvaluation.evaluate(newerSource, limits: limits), "cluster.version").verdict == .fail)

        var old = PrereqFixture.healthy()
        old.source.serverVersionNum = 140011
        let source = try check(PrerequisitesEvaluation.evaluate(old, limits: limits), "source.version")
        #expect(source.verdict == .fail)
        #expect(source.observed == "14.11")
        #expect(source.expected == "≥ 15")

        var unknown = PrereqFixture.healthy()
        unknown.cluster.members[2].server = .failed("refused")
        unknown.cluster.restHosts[2].status?.serverVersion = nil
        #expect(try check(PrerequisitesEvaluation.evaluate(unknown, limits: limits), "cluster.version").verdict == .warn)

        var fromREST = PrereqFixture.healthy()
        fromREST.cluster.members[2].server = .failed("refused")
        #expect(try check(PrerequisitesEvaluation.evaluate(fromREST, limits: limits), "cluster.version").verdict == .pass, "/patroni's server_version stands in")
        #expect(versionText(90624) == "9.6.24")
    }

    @Test("a table without primary key or replica identity fails source.primary_keys")
    func missingPrimaryKey() throws {
        var o = PrereqFixture.healthy()
        o.source.databases[0].tables = .observed(TableIdentities(checked: 4, withoutIdentity: ["public.events"]))
        let pk = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.primary_keys")
        #expect(pk.verdict == .fail)
        #expect(pk.observed == "1 of 6 tables without one: distributed_postgres_cluster.public.events")
        #expect(pk.advice?.contains("REPLICA IDENTITY FULL") == true)

        o.source.databases[1].tables = .failed("permission denied for schema private")
        #expect(try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.primary_keys").observed.hasPrefix("could not list the tables: shared_knowledge: permission denied"))

        #expect(SourceInspector.hasReplicaIdentity(identity: "d", hasPrimaryKey: true))
        #expect(!SourceInspector.hasReplicaIdentity(identity: "d", hasPrimaryKey: false))
        #expect(SourceInspector.hasReplicaIdentity(identity: "f", hasPrimaryKey: false))
        #expect(SourceInspector.hasReplicaIdentity(identity: "i", hasPrimaryKey: false))
        #expect(!SourceInspector.hasReplicaIdentity(identity: "n", hasPrimaryKey: true))
    }

    @Test("a transaction older than the threshold fails, naming its pid; limited visibility warns")
    func longTransactions() throws {
        var o = PrereqFixture.healthy()
        o.source.transactions = .observed(OpenTransactions(seesAllSessions: true, oldest: [
            OpenTransaction(pid: 777, database: "distributed_postgres_cluster", user: "report", state: "idle in transaction", ageSeconds: 412.4),
            OpenTransaction(preparedGID: "tx-1", database: "shared_knowledge", user: "dpg_cluster", state: "prepared", ageSeconds: 301),
            OpenTransaction(pid: 778, database: "distributed_postgres_cluster", user: "dpg_cluster", state: "active", ageSeconds: 12),
        ]))
        let long = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.long_transactions")
        #expect(long.verdict == .fail)
        #expect(long.observed == "2 open longer than 300 s: pid 777 (distributed_postgres_cluster, report, idle in transaction) open 412 s, prepared transaction 'tx-1' (shared_knowledge, dpg_cluster, prepared) open 301 s")
        #expect(long.advice?.contains("pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN (777)") == true)
        #expect(long.advice?.contains("ROLLBACK PREPARED") == true)

        var limited = PrereqFixture.healthy()
        limited.source.transactions = .observed(OpenTransactions(seesAllSessions: false, oldest: []))
        let warn = try check(PrerequisitesEvaluation.evaluate(limited, limits: limits), "source.long_transactions")
        #expect(warn.verdict == .warn)
        #expect(warn.advice?.contains("source.admin_user") == true)
    }

    @Test("wal_level other than logical fails, and says when only a restart is missing")
    func walLevel() throws {
        var o = PrereqFixture.healthy()
        o.source.settings = .observed(SourceSettings(walLevel: "replica", maxReplicationSlots: 10, usedReplicationSlots: 0, maxWalSenders: 10, usedWalSenders: 0))
        let plain = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.wal_level")
        #expect(plain.verdict == .fail)
        #expect(plain.observed == "replica")
        #expect(plain.advice?.contains("ALTER SYSTEM SET wal_level = logical") == true)

        o.source.settings = .observed(SourceSettings(walLevel: "replica", walLevelPendingRestart: true, walLevelConfigured: "logical", maxReplicationSlots: 10, usedReplicationSlots: 0, maxWalSenders: 10, usedWalSenders: 0))
        let pending = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.wal_level")
        #expect(pending.verdict == .fail)
        #expect(pending.observed == "replica in effect; logical configured, waiting for a restart")
        #expect(pending.advice?.hasPrefix("restart PostgreSQL on the single node") == true)
    }

    @Test("replication slot and WAL sender headroom: FAIL below what sync needs, WARN below the margin")
    func headroom() throws {
        var o = PrereqFixture.healthy()
        o.source.settings = .observed(SourceSettings(walLevel: "logical", maxReplicationSlots: 4, usedReplicationSlots: 3, maxWalSenders: 10, usedWalSenders: 7))
        let results = PrerequisitesEvaluation.evaluate(o, limits: limits)
        let slots = try check(results, "source.replication_slots")
        #expect(slots.verdict == .fail)
        #expect(slots.observed == "1 free of 4 (3 in use)")
        #expect(slots.advice?.contains("ALTER SYSTEM SET max_replication_slots = 7") == true)
        let senders = try check(results, "source.wal_senders")
        #expect(senders.verdict == .warn)
        #expect(senders.observed == "3 free of 10 (7 in use)")
    }

    @Test("large objects are reported as a warning")
    func largeObjects() throws {
        var o = PrereqFixture.healthy()
        o.source.databases[1].largeObjects = .observed(12)
        let lo = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.large_objects")
        #expect(lo.verdict == .warn)
        #expect(lo.observed == "shared_knowledge: 12 large objects")
        #expect(PrerequisitesEvaluation.evaluate(o, limits: limits).worstVerdict == .warn, "a warning does not fail the gate")
    }

    @Test("the DCS as Patroni sees it: stale contact, pause, lost leader lock, failsafe")
    func dcs() throws {
        var stale = PrereqFixture.healthy()
        stale.cluster.restHosts[1].status?.dcsLastSeen = Int64(PrereqFixture.now.timeIntervalSince1970) - 45
        let s = try check(PrerequisitesEvaluation.evaluate(stale, limits: limits), "cluster.dcs")
        #expect(s.verdict == .fail)
        #expect(s.observed == "127.0.0.12:8008 (node2) last reached the DCS 45 s ago")

        var paused = PrereqFixture.healthy()
        for i in paused.cluster.restHosts.indices { paused.cluster.restHosts[i].status?.pause = true }
        let p = try check(PrerequisitesEvaluation.evaluate(paused, limits: limits), "cluster.dcs")
        #expect(p.verdict == .fail)
        #expect(p.advice?.contains("patronictl resume") == true)

        var unlocked = PrereqFixture.healthy()
        unlocked.cluster.restHosts[0].status?.clusterUnlocked = true
        unlocked.cluster.restHosts[2].status?.failsafeActive = true
        let u = try check(PrerequisitesEvaluation.evaluate(unlocked, limits: limits), "cluster.dcs")
        #expect(u.verdict == .fail)
        #expect(u.observed.contains("127.0.0.11:8008 (node1) sees no leader lock (cluster_unlocked)"))
        #expect(u.observed.contains("127.0.0.13:8008 (node3) runs in failsafe mode"))

        var noTTL = PrereqFixture.healthy()
        noTTL.cluster.ttlSeconds = nil
        noTTL.cluster.restHosts[1].status?.dcsLastSeen = Int64(PrereqFixture.now.timeIntervalSince1970) - 25
        #expect(try check(PrerequisitesEvaluation.evaluate(noTTL, limits: limits), "cluster.dcs").verdict == .pass, "30 s without a ttl")
    }

    @Test("credentials: a wrong password names the variable; a missing database is fine on the cluster, not on the source")
    func credentials() throws {
        var o = PrereqFixture.healthy()
        o.cluster.members[1].logins[0].error = "authenticationFailed: password authentication failed for user \"dpg_cluster\" (SQLSTATE 28P01)"
        o.cluster.members[2].logins[0].error = "connectionFailed: database \"distributed_postgres_cluster\" does not exist (SQLSTATE 3D000)"
        o.cluster.members[2].logins[0].databaseMissing = true
        o.source.logins[1].error = "connectionFailed: database \"shared_knowledge\" does not exist (SQLSTATE 3D000)"
        o.source.logins[1].databaseMissing = true
        let results = PrerequisitesEvaluation.evaluate(o, limits: limits)
        let node2 = try check(results, "credentials.node2")
        #expect(node2.verdict == .fail)
        #expect(node2.advice?.contains("${PATRONI_PASSWORD}") == true)
        let node3 = try check(results, "credentials.node3")
        #expect(node3.verdict == .pass)
        #expect(node3.observed.contains("does not exist yet: the sync stage creates it"))
        #expect(try check(results, "credentials.source").verdict == .fail)
    }

    @Test("an unlogged table fails the gate with its name and the fix: its rows would reach the cluster by neither method")
    func unloggedTables() throws {
        var o = PrereqFixture.healthy()
        #expect(try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.unlogged_tables").verdict == .pass)
        o.source.databases[1].unloggedTables = .observed(["public.session_cache"])
        let found = try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.unlogged_tables")
        #expect(found.verdict == .fail && found.observed.contains("shared_knowledge: public.session_cache"), "\(found)")
        #expect(found.advice?.contains("ALTER TABLE … SET LOGGED") == true)
        o.source.databases[0].unloggedTables = .failed("permission denied")
        o.source.databases[1].unloggedTables = .observed([])
        #expect(try check(PrerequisitesEvaluation.evaluate(o, limits: limits), "source.unlogged_tables").verdict == .warn)
    }

    @Test("an unreachable single node fails reachable, version and everything read from it")
    func sourceDown() throws {
        var o = PrereqFixture.healthy()
        o.source = SourceObservation(
            address: "127.0.0.10:15432",
            logins: [LoginObservation(purpose: "application", user: "dpg_cluster", database: "distributed_postgres_cluster",
                                      error: "connectionFailed: connection refused", serverAnswered: false)],
            settings: .failed("no login to the single node succeeded"), transactions: .failed("no login to the single node succeeded"),
            databases: [SourceDatabaseObservation(name: "distributed_postgres_cluster", tables: .failed("no login"), largeObjects: .failed("no login"))])
        let results = PrerequisitesEvaluation.evaluate(o, limits: limits)
        let reachable = try check(results, "source.reachable")
        #expect(reachable.verdict == .fail)
        #expect(reachable.advice?.contains("pg_isready -h 127.0.0.10 -p 15432") == true)
        for name in ["source.version", "credentials.source", "source.wal_level", "source.replication_slots", "source.wal_senders", "source.primary_keys", "source.long_transactions"] {
            #expect(try check(results, name).verdict == .fail, "\(name)")
        }
        #expect(try check(results, "credentials.source").observed.hasPrefix("not checked"))
        #expect(try check(results, "source.large_objects").verdict == .warn)
        #expect(try check(results, "cluster.members").verdict == .pass)
    }

    @Test("a certificate that does not verify is named as such, with the playbook key and the CA file to fix")
    func certificateProblems() throws {
        var tlsLimits = limits
        tlsLimits.caFiles = ["source.sslrootcert": "/etc/pgha/old-ca.crt", "target.api_cafile": "/etc/pgha/api-ca.crt"]
        var o = PrereqFixture.healthy()
        let verifyFailed = "connectionFailed: connection to server at \"127.0.0.10\", port 15432 failed: SSL error: certificate verify failed"
        o.source.logins = o.source.logins.map { login in
            var login = login
            login.error = verifyFailed
            login.serverAnswered = false
            return login
        }
        o.cluster.restHosts[1].clusterError = "Patroni transport from https://127.0.0.12:8008/cluster: tls: SSL certificate problem: certificate has expired"
        o.cluster.restHosts[1].statusError = o.cluster.restHosts[1].clusterError
        let results = PrerequisitesEvaluation.evaluate(o, limits: tlsLimits)
        let reachable = try check(results, "source.reachable")
        #expect(reachable.verdict == .fail && reachable.observed.contains("its TLS does not verify"))
        #expect(reachable.advice?.contains("did not verify against source.sslrootcert (/etc/pgha/old-ca.crt)") == true, "\(reachable)")
        #expect(reachable.advice?.contains("openssl s_client -connect 127.0.0.10:15432 -starttls postgres -CAfile /etc/pgha/old-ca.crt") == true)
        #expect(reachable.advice?.hasSuffix("then `pgha resume`") == true)
        let credentials = try check(results, "credentials.source")
        #expect(credentials.advice == reachable.advice)
        let rest = try check(results, "cluster.rest_hosts")
        #expect(rest.advice?.hasPrefix("the certificate of 127.0.0.12:8008 has expired: renew it") == true, "\(rest)")
    }

    @Test("no REST host answering fails every cluster check with the reasons")
    func clusterUnreachable() throws {
        var o = PrereqFixture.healthy()
        o.cluster = ClusterObservation(
            restHosts: PrereqFixture.names.map { RESTHostObservation(endpoint: PrereqFixture.endpoint($0), clusterError: "refused", statusError: "refused") },
            members: [], pool: .failed("no_leader: no Patroni REST API host answered"))
        let results = PrerequisitesEvaluation.evaluate(o, limits: limits)
        for name in ["cluster.rest_hosts", "cluster.members", "cluster.leader", "cluster.replicas_streaming", "cluster.version", "cluster.dcs", "cluster.pool"] {
            #expect(try check(results, name).verdict == .fail, "\(name)")
        }
        #expect(try check(results, "cluster.members").observed.hasPrefix("no REST host gave a valid /cluster answer (127.0.0.11:8008: refused"))
        #expect(!results.contains { $0.name.hasPrefix("credentials.node") })
    }

    @Test("the limits come from the playbook; one slot per source database")
    func limitsFromPlaybook() throws {
        var playbook = try samplePlaybook()
        let l = PrerequisiteLimits(playbook: playbook)
        #expect(l.minMembers == 3 && l.maxLagBytes == 1 << 20 && l.maxTransactionAgeSeconds == 300)
        #expect(l.slotsNeeded == 2)
        #expect(l.credentialHints["target.application"] == "target.password (${PATRONI_PASSWORD})")
        #expect(l.credentialHints["source.admin"] == "the password file (PGPASSFILE or ~/.pgpass)")
        playbook.source.databases.shared = nil
        #expect(PrerequisiteLimits(playbook: playbook).slotsNeeded == 1)
    }

    @Test("byte sizes read like PostgreSQL's")
    func bytes() {
        #expect(formatBytes(0) == "0 B")
        #expect(formatBytes(1023) == "1023 B")
        #expect(formatBytes(16 * 1024) == "16.0 kB")
        #expect(formatBytes(1 << 20) == "1.0 MB")
        #expect(formatBytes(5 << 29) == "2.5 GB")
    }
}

@Suite("Prerequisites stage executor (no network)")
struct PrerequisitesStageTests {
    func context(_ dir: TempDirectory, playbook: Playbook, secrets: [String: String] = sampleSecrets) -> StageContext {
        let environment = StaticEnvironment(secrets)
        return StageContext(
            playbook: playbook, playbookPath: "test.yml", workingDirectory: dir.path, store: StateStore(directory: dir.file("state")),
            environment: environment, redactor: playbook.secretRedactor(environment: environment), journal: nil,
            clock: FakeClock(start: PrereqFixture.now), cancellation: CancellationFlag(), logger: Logger(label: "test"))
    }

    @Test("each check is named once: the gate produces exactly PrerequisiteCheck.checks(for:), and the plan lists the same, for both methods")
    func checkNamesOnce() throws {
        let dir = try TempDirectory("prereq-names")
        defer { dir.cleanup() }
        func names(_ results: [CheckResult]) -> Set<String> {
            Set(results.map(\.name).filter { !$0.hasPrefix("credentials.") || $0 == "credentials.source" })
        }
        func listed(_ playbook: Playbook) -> Set<String> {
            Set(PrerequisitesStage().checks(context(dir, playbook: playbook)).compactMap { $0.split(separator: ":").first.map(String.init) }
                .filter { $0 != "credentials.<member>" })
        }
        // Logical: the independent cluster's checks, credentials per member.
        var logical = try samplePlaybook()
        logical.sync.method = .logical
        let logicalNames = Set(PrerequisiteCheck.checks(for: .logical).map(\.name))
        let evaluated = PrerequisitesEvaluation.evaluate(PrereqFixture.healthy(), limits: PrerequisiteLimits(playbook: logical))
        #expect(names(evaluated) == logicalNames)
        #expect(evaluated.contains { $0.name == "credentials.node1" })
        #expect(listed(logical) == logicalNames)
        // Physical: what a standby cluster needs, with the cluster absent (skipped) and present.
        var physical = logical
        physical.sync.method = .physical
        let physicalNames = Set(PrerequisiteCheck.checks(for: .physical).map(\.name))
        var o = PrereqFixture.healthy()
        o.source.physical = .observed(PhysicalSourceFacts(
            replicationRole: .init(name: "replicator", canLogin: true, replication: true, superuser: false), hbaRules: .observed([]),
            configFile: "/data/postgresql.conf", dataDirectory: "/data", slot: nil))
        #expect(names(PrerequisitesEvaluation.evaluate(o, limits: PrerequisiteLimits(playbook: physical))) == physicalNames)
        o.cluster = ClusterObservation(restHosts: [], members: [], pool: .failed("no cluster yet"))
        #expect(names(PrerequisitesEvaluation.evaluate(o, limits: PrerequisiteLimits(playbook: physical))) == physicalNames)
        #expect(listed(physical) == physicalNames)
        #expect(Set(PrerequisiteCheck.allCases.map(\.name)) == logicalNames.union(physicalNames))
    }

    @Test("the gate evaluates what the run observed, and masks every secret in it")
    func gateUsesTheRunsObservationsRedacted() async throws {
        let dir = try TempDirectory("prereq")
        defer { dir.cleanup() }
        let playbook = try samplePlaybook()
        let stage = PrerequisitesStage()
        var o = PrereqFixture.node3Stopped()
        let secret = try #require(sampleSecrets["PATRONI_PASSWORD"])
        o.cluster.members[1].logins[0].error = "authenticationFailed: the server said \(secret)"
        stage.cache.store(o, takenAt: PrereqFixture.now, playbook: playbook)
        let results = try await stage.gate(context(dir, playbook: playbook))
        #expect(results.count == 21)
        #expect(try check(results, "cluster.replicas_streaming").observed.contains("node3"))
        let text = results.map { "\($0.observed) \($0.advice ?? "")" }.joined()
        #expect(!text.contains(secret))
        #expect(text.contains(SecretRedactor.mask))
    }

    @Test("the plan lists every check with the playbook's thresholds and changes nothing")
    func plan() async throws {
        let dir = try TempDirectory("prereq-plan")
        defer { dir.cleanup() }
        let playbook = try samplePlaybook()
        let plan = try await PrerequisitesStage().plan(context(dir, playbook: playbook, secrets: [:]))
        #expect(!plan.makesChanges && plan.changes.isEmpty)
        let text = plan.checks.joined(separator: "\n")
        for fragment in ["source.wal_level", "source.long_transactions: no transaction open longer than 300 s", "cluster.members: ≥ 3 members running",
                         "cluster.replica_lag: ≤ 1.0 MB", "127.0.0.13:8009", "credentials.<member>", "cluster.dcs", "cluster.pool"] {
            #expect(text.contains(fragment), "\(fragment)")
        }
        #expect(plan.warnings.contains { $0.contains("${PATRONI_PASSWORD}") })
        #expect(try await ExtensionsStage().plan(context(dir, playbook: playbook)).checks.joined().contains("pg_trgm"))
    }

    @Test("observations are reused once, for the same playbook, while fresh")
    func cache() throws {
        let cache = ObservationCache<Int>(maxAge: 60)
        let playbook = try samplePlaybook()
        cache.store(1, takenAt: PrereqFixture.now, playbook: playbook)
        #expect(cache.take(now: PrereqFixture.now.addingTimeInterval(5), playbook: playbook) == 1)
        #expect(cache.take(now: PrereqFixture.now.addingTimeInterval(5), playbook: playbook) == nil, "taken once")
        cache.store(2, takenAt: PrereqFixture.now, playbook: playbook)
        #expect(cache.take(now: PrereqFixture.now.addingTimeInterval(61), playbook: playbook) == nil, "stale")
        var other = playbook
        other.thresholds.minMembers = 2
        cache.store(3, takenAt: PrereqFixture.now, playbook: playbook)
        #expect(cache.take(now: PrereqFixture.now, playbook: other) == nil, "another playbook")
    }

    @Test("the standard stages are all seven; the first two read-only; the logical sync needs a publisher, its shadow does not apply (skipped), its cutover runs; cutover needs a way to move the application")
    func standardStages() throws {
        let executors = try StandardStages.executors()
        #expect(executors.map(\.stage) == [.prerequisites, .extensions, .config, .sync, .shadow, .cutover, .complete])
        #expect(executors.map(\.makesChanges) == [false, false, true, true, true, true, true])
        var playbook = try samplePlaybook()
        let sync = try #require(executors.first { $0.stage == .sync })
        #expect(sync.unavailableReason(for: playbook)?.contains("sync.method: logical needs sync.publisher") == true)
        let shadow = try #require(executors.first { $0.stage == .shadow })
        #expect(shadow.unavailableReason(for: playbook) == nil)
        #expect(shadow.notApplicableReason(for: playbook)?.contains("skipped: the shadow replay") == true)
        var logical = playbook
        logical.sync.publisherUser = "replicator"
        logical.sync.publisherPassword = EnvironmentReference("PATRONI_REPLICATION_PASSWORD")
        #expect(sync.unavailableReason(for: logical) == nil, "the logical sync runs with a publisher")
        playbook.sync.method = .physical
        #expect(sync.unavailableReason(for: playbook) == nil)
        #expect(shadow.unavailableReason(for: playbook) == nil && shadow.notApplicableReason(for: playbook) == nil, "shadow runs with the physical method")
        let cutover = try #require(executors.first { $0.stage == .cutover })
        #expect(cutover.unavailableReason(for: playbook)?.contains("no cutover.pgbouncer") == true, "no way to move the application")
        playbook.cutover.pgbouncer = .init(adminHost: "127.0.0.1", iniFile: "/etc/pgbouncer/pgbouncer.ini", target: .init(host: "127.0.0.1", port: 5000))
        #expect(cutover.unavailableReason(for: playbook) == nil)
        playbook.cutover = .init(method: .hook)
        #expect(cutover.unavailableReason(for: playbook)?.contains("switch_application is missing") == true)
    }
}
