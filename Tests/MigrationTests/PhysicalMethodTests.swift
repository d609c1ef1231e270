import Foundation
import Testing
import Yams
@testable import Migration

/// What the physical method adds before sync: the playbook's keys, the standby patroni.yml, and
/// the prerequisites of a cluster that does not exist yet.
@Suite("Physical method: playbook, patroni.yml, prerequisites")
struct PhysicalMethodTests {
    func physicalPlaybookYAML(extra: String = "") -> String {
        samplePlaybookYAML()
            .replacingOccurrences(of: "  api_hosts: [127.0.0.11, 127.0.0.12, \"127.0.0.13:8009\"]\n", with: """
                  members:
                    - {name: ha1, host: 127.0.0.14}
                    - {name: ha2, host: 127.0.0.15}
                    - {name: ha3, host: 127.0.0.16, api_port: 8009}
                  replication_user: streamer
                  patroni_dcs: {ttl: 20, loop_wait: 1, retry_timeout: 5}

                """)
            .replacingOccurrences(of: "sync:\n  method: logical\n", with: """
                sync:
                  method: physical
                  slot: pgha_ha
                  max_wal_retention: 2GB
                  caught_up_lag: 64kB
                  cluster_timeout: 10m
                  stall_timeout: 90s
                  start_cluster: ./start-members.sh
                \(extra)
                """)
    }

    @Test("sync and target.members parse into values; api_hosts come from the members")
    func parses() throws {
        let p = try PlaybookParser.parse(physicalPlaybookYAML(), file: "p.yml")
        #expect(p.sync == Playbook.Sync(method: .physical, slot: "pgha_ha", maxWALRetentionBytes: 2 << 30, caughtUpLagBytes: 64 << 10,
                                        clusterTimeoutSeconds: 600, stallTimeoutSeconds: 90, startCluster: "./start-members.sh", stopCluster: nil, hookTimeoutSeconds: 600))
        #expect(p.target.members.map(\.name) == ["ha1", "ha2", "ha3"] && p.target.membersNamed)
        #expect(p.target.apiHosts.map(\.description) == ["127.0.0.14:8008", "127.0.0.15:8008", "127.0.0.16:8009"])
        #expect(p.target.replicationUser == "streamer")
        #expect(p.target.dcs == Playbook.DCSTimings(ttl: 20, loopWait: 1, retryTimeout: 5))
        // Without a sync section: physical, the default, with the thresholds' lag.
        let defaults = try PlaybookParser.parse(samplePlaybookYAML().replacingOccurrences(of: "sync:\n  method: logical\n", with: ""), file: "p.yml")
        #expect(defaults.sync.method == .physical && defaults.sync.caughtUpLagBytes == 1 << 20 && defaults.sync.slot == "pgha_standby")
        #expect(!defaults.target.membersNamed && defaults.target.members.map(\.name) == ["node1", "node2", "node3"])
    }

    @Test("bad sync and member values are refused, each with its place and a fix", arguments: [
        ("method: physical\n  slot: Bad-Name", "sync.slot", "use lower-case letters"),
        ("method: sideways", "sync.method", "expected one of physical, logical"),
        ("max_wal_retention: lots", "sync.max_wal_retention", "expected a size"),
        ("stall_timeout: -3s", "sync.stall_timeout", "expected a duration"),
        ("wal_limit: 1GB", "sync.wal_limit", "known keys: method, slot, max_wal_retention"), ("slott: x", "sync.slott", "did you mean 'slot'"),
    ])
    func badSync(_ line: String, _ key: String, _ fix: String) throws {
        let yaml = samplePlaybookYAML().replacingOccurrences(of: "sync:\n  method: logical\n", with: "sync:\n  \(line)\n")
        let error = try #require(throws: MigrationError.self) { _ = try PlaybookParser.parse(yaml, file: "p.yml") }
        let issue = try #require(error.issues.first { $0.key == key }, "\(error.issues)")
        #expect(issue.line != nil && issue.message.contains(fix), "\(issue.message)")
    }

    @Test("patroni_dcs is held to what Patroni accepts; members must be unique")
    func badTarget() throws {
        let timings = physicalPlaybookYAML().replacingOccurrences(of: "{ttl: 20, loop_wait: 1, retry_timeout: 5}", with: "{ttl: 20, loop_wait: 10, retry_timeout: 10}")
        let e1 = try #require(throws: MigrationError.self) { _ = try PlaybookParser.parse(timings, file: "p.yml") }
        #expect(e1.issues.contains { $0.key == "target.patroni_dcs" && $0.message.contains("loop_wait + 2 * retry_timeout <= ttl") })
        let twice = physicalPlaybookYAML().replacingOccurrences(of: "{name: ha2, host: 127.0.0.15}", with: "{name: ha1, host: 127.0.0.15}")
        let e2 = try #require(throws: MigrationError.self) { _ = try PlaybookParser.parse(twice, file: "p.yml") }
        #expect(e2.issues.contains { $0.key == "target.members[1].name" && $0.message.contains("listed twice") })
    }

    @Test("the physical method's patroni.yml bootstraps a standby cluster of the single node, with the playbook's members and timings")
    func standbyPatroniYML() throws {
        let playbook = try PlaybookParser.parse(physicalPlaybookYAML(), file: "p.yml")
        let files = try ConfigRenderer(playbook: playbook, templates: .builtin(), workingDirectory: "/srv")
            .render(environment: StaticEnvironment(sampleSecrets))
        let file = try #require(files.first { $0.key == "patroni_yml" })
        let root = try #require(try Yams.compose(yaml: file.contents))
        let dcs = try #require(root["bootstrap"]?["dcs"])
        #expect(dcs["standby_cluster"]?["host"]?.string == "127.0.0.10")
        #expect(dcs["standby_cluster"]?["port"]?.int == 15432)
        #expect(dcs["standby_cluster"]?["primary_slot_name"]?.string == "pgha_ha")
        #expect(dcs["standby_cluster"]?["create_replica_methods"]?.array().compactMap(\.string) == ["basebackup"])
        #expect(dcs["ttl"]?.int == 20 && dcs["loop_wait"]?.int == 1 && dcs["retry_timeout"]?.int == 5)
        #expect(dcs["postgresql"]?["parameters"]?["wal_level"]?.string == "logical")
        #expect(root["postgresql"]?["basebackup"]?.array().first?["checkpoint"]?.string == "fast")
        #expect(root["postgresql"]?["authentication"]?["replication"]?["username"]?.string == "streamer")
        #expect(root["postgresql"]?["pg_hba"]?.array().compactMap(\.string).contains("host replication streamer 0.0.0.0/0 scram-sha-256") == true)
        #expect(file.contents.contains("ha3: PATRONI_NAME=ha3 PATRONI_RESTAPI_CONNECT_ADDRESS=127.0.0.16:8009"))
        for secret in sampleSecrets.values { #expect(!file.contents.contains(secret)) }
        // The logical method's cluster is independent: no standby_cluster.
        var logical = playbook
        logical.sync.method = .logical
        let other = try ConfigRenderer(playbook: logical, templates: .builtin(), workingDirectory: "/srv").render(environment: StaticEnvironment(sampleSecrets))
        let otherFile = try #require(other.first { $0.key == "patroni_yml" })
        let otherRoot = try #require(try Yams.compose(yaml: otherFile.contents))
        #expect(otherRoot["bootstrap"]?["dcs"]?["standby_cluster"] == nil)
        // haproxy.cfg names the playbook's members.
        #expect(try #require(files.first { $0.key == "haproxy_cfg" }).contents.contains("server ha3 127.0.0.16:15432 check port 8009"))
    }

    // MARK: - Prerequisites

    var limits: PrerequisiteLimits {
        var l = PrereqFixture.limits
        l.method = .physical
        l.replicationUser = "replicator"
        l.slot = "pgha_ha"
        l.members = [.init(name: "ha1", host: "127.0.0.14", apiPort: 8008), .init(name: "ha2", host: "127.0.0.15", apiPort: 8008)]
        return l
    }

    func hba(_ lines: [PhysicalSourceFacts.HBARule]) -> PhysicalSourceFacts {
        PhysicalSourceFacts(
            replicationRole: .init(name: "replicator", canLogin: true, replication: true, superuser: false), hbaRules: .observed(lines),
            configFile: "/var/lib/pg/data/postgresql.conf", dataDirectory: "/var/lib/pg/data", slot: nil)
    }

    func rule(_ line: Int, _ address: String?, _ netmask: String? = nil, db: [String] = ["replication"], users: [String] = ["replicator"], method: String = "scram-sha-256") -> PhysicalSourceFacts.HBARule {
        .init(line: line, type: address == nil ? "local" : "host", databases: db, users: users, address: address, netmask: netmask, method: method)
    }

    func evaluate(_ facts: PhysicalSourceFacts, cluster: ClusterObservation? = nil) -> [String: CheckResult] {
        var o = PrereqFixture.healthy()
        o.source.physical = .observed(facts)
        if let cluster { o.cluster = cluster }
        return Dictionary(PrerequisitesEvaluation.evaluate(o, limits: limits).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    var absentCluster: ClusterObservation {
        ClusterObservation(
            restHosts: [RESTHostObservation(endpoint: "127.0.0.14:8008", clusterError: "connection refused", statusError: "connection refused")],
            members: [], membersFrom: nil, ttlSeconds: nil, pool: .failed("no REST host answered"), elapsedMs: 3)
    }

    @Test("no cluster yet: the cluster checks are SKIP with the order of work, the source's physical checks run")
    func deferredCluster() {
        let r = evaluate(hba([rule(1, nil, db: ["all"]), rule(2, "127.0.0.0", "255.0.0.0")]), cluster: absentCluster)
        for name in ["cluster.rest_hosts", "cluster.members", "cluster.standby", "cluster.version"] {
            #expect(r[name]?.verdict == .skip, "\(name): \(String(describing: r[name]))")
            #expect(r[name]?.observed.contains("started from the config stage's patroni.yml during sync") == true)
        }
        #expect(r["cluster.pool"] == nil && r["cluster.leader"] == nil)
        #expect(r["source.replication_role"]?.verdict == .pass)
        #expect(r["source.hba_replication"]?.verdict == .pass)
        #expect(r["source.hba_replication"]?.observed == "ha1 (127.0.0.14): line 2; ha2 (127.0.0.15): line 2")
        #expect(r["source.config_file"]?.verdict == .pass)
        #expect(r["source.slot"]?.verdict == .pass)
    }

    @Test("pg_hba.conf: the first matching line decides; reject, other networks and plain `all` databases do not admit replication")
    func hbaMatching() {
        let rejectFirst = evaluate(hba([rule(1, "127.0.0.14", "255.255.255.255", method: "reject"), rule(2, "all")]), cluster: absentCluster)
        #expect(rejectFirst["source.hba_replication"]?.verdict == .fail)
        #expect(rejectFirst["source.hba_replication"]?.observed.contains("ha1 (127.0.0.14): line 1 rejects") == true)
        let otherNet = evaluate(hba([rule(1, "10.0.0.0", "255.0.0.0"), rule(2, "127.0.0.0", "255.0.0.0", db: ["all"], users: ["all"])]), cluster: absentCluster)
        #expect(otherNet["source.hba_replication"]?.verdict == .fail)
        #expect(otherNet["source.hba_replication"]?.advice?.contains("host replication replicator <member address>/32") == true)
        let byName = evaluate(hba([rule(1, "db-members.example.com")]), cluster: absentCluster)
        #expect(byName["source.hba_replication"]?.verdict == .warn)
        let group = evaluate(hba([rule(1, "all", users: ["+replicators"])]), cluster: absentCluster)
        #expect(group["source.hba_replication"]?.verdict == .warn)
    }

    @Test("a missing or weak replication role, postgresql.conf outside the data directory and a logical slot of that name fail with the fix")
    func sourceFailures() {
        var facts = hba([rule(1, "all")])
        facts.replicationRole = nil
        facts.configFile = "/etc/postgresql/15/main/postgresql.conf"
        facts.slot = .init(name: "pgha_ha", type: "logical", active: false)
        let r = evaluate(facts, cluster: absentCluster)
        #expect(r["source.replication_role"]?.advice?.contains("CREATE ROLE replicator LOGIN REPLICATION") == true)
        #expect(r["source.config_file"]?.verdict == .fail)
        #expect(r["source.config_file"]?.advice?.contains("install -o postgres -g postgres -m 600 /dev/null /var/lib/pg/data/postgresql.conf") == true)
        #expect(r["source.slot"]?.verdict == .fail)
        facts.replicationRole = .init(name: "replicator", canLogin: false, replication: false, superuser: false)
        #expect(evaluate(facts, cluster: absentCluster)["source.replication_role"]?.advice?.contains("ALTER ROLE replicator LOGIN REPLICATION") == true)
    }

    @Test("a cluster with a writable leader is refused for the physical method; a standby cluster passes; tables without a key only WARN")
    func existingCluster() {
        let independent = evaluate(hba([rule(1, "all")]))  // the healthy fixture: node1 is a writable leader
        #expect(independent["cluster.standby"]?.verdict == .fail)
        #expect(independent["cluster.standby"]?.advice?.contains("sync.method: logical") == true)
        var standby = PrereqFixture.healthy().cluster
        standby.members[0].role = "standby_leader"
        let r = evaluate(hba([rule(1, "all")]), cluster: standby)
        #expect(r["cluster.standby"]?.verdict == .pass)
        #expect(r["cluster.standby"]?.observed.contains("standby leader node1 (in recovery by design)") == true)

        var o = PrereqFixture.healthy()
        o.source.databases[0].tables = .observed(TableIdentities(checked: 4, withoutIdentity: ["public.pgbench_history"]))
        o.source.physical = .observed(hba([rule(1, "all")]))
        let keys = PrerequisitesEvaluation.evaluate(o, limits: limits).first { $0.name == "source.primary_keys" }
        #expect(keys?.verdict == .warn)
        #expect(keys?.advice?.contains("REPLICA IDENTITY FULL") == true)
        #expect(PrerequisitesEvaluation.evaluate(o, limits: PrereqFixture.limits).first { $0.name == "source.primary_keys" }?.verdict == .fail)
    }

    @Test("PostgreSQL's text arrays are read back, quotes and commas included")
    func textArrays() {
        #expect(SourceInspector.textArray("{replication}") == ["replication"])
        #expect(SourceInspector.textArray("{all,\"a,b\",\"q\\\"x\"}") == ["all", "a,b", "q\"x"])
        #expect(SourceInspector.textArray("{}") == [])
        #expect(SourceInspector.textArray(nil) == [])
    }
}
