import Foundation
import Testing
@testable import Migration

@Suite("Playbook validation")
struct PlaybookParserTests {
    /// The issues of invalid playbook text.
    func issues(_ yaml: String) -> [MigrationError.Issue] {
        do {
            _ = try PlaybookParser.parse(yaml, file: "playbooks/x.yml")
            Issue.record("the playbook was accepted")
            return []
        } catch {
            #expect(error.code == .playbookInvalid)
            #expect(error.exitCode == .usage)
            return error.issues
        }
    }

    /// The sample with one line replaced.
    func sample(replacing old: String, with new: String) -> String {
        let text = samplePlaybookYAML()
        precondition(text.contains(old), "sample lacks \(old)")
        return text.replacingOccurrences(of: old, with: new)
    }

    @Test("the sample playbook parses into the expected values")
    func valid() throws {
        let p = try samplePlaybook()
        #expect(p.name == "test rehearsal")
        #expect(p.source.host == "127.0.0.10")
        #expect(p.source.port == 15432)
        #expect(p.source.password == EnvironmentReference("PROJECT_DB_PASSWORD"))
        #expect(p.source.databases == .init(project: "distributed_postgres_cluster", shared: "shared_knowledge"))
        #expect(p.target.apiHosts == [.init(host: "127.0.0.11", port: 8008), .init(host: "127.0.0.12", port: 8008), .init(host: "127.0.0.13", port: 8009)])
        #expect(p.target.databases == p.source.databases)
        #expect(p.target.etcdHosts == [.init(host: "127.0.0.1", port: 12379)])
        #expect(p.extensions.required == ["pg_trgm"])
        #expect(p.thresholds.maxLagBytes == 1_048_576)
        #expect(p.thresholds.maxTransactionAgeSeconds == 300)
        #expect(p.thresholds.minMembers == 3)
        #expect(p.onFailure == .rollback)
        #expect(p.outputs.envFile == "out/app.env")
        #expect(p.credentialReferences.map(\.reference.variable) == ["PROJECT_DB_PASSWORD", "PATRONI_API_PASSWORD", "PATRONI_PASSWORD"])
    }

    @Test("the shipped playbooks are valid", arguments: ["sandbox.yml", "sandbox-logical.yml", "example-production.yml"])
    func shipped(_ name: String) throws {
        let loaded = try PlaybookParser.load(path: repositoryRoot + "/playbooks/" + name)
        #expect(loaded.sha256.count == 64)
        if name == "example-production.yml" {
            #expect(loaded.playbook.extensions.required.contains("ruvector"))
            #expect(loaded.playbook.target.apiHosts.count == 3)
        } else {
            let p = loaded.playbook
            #expect(p.source.host == "127.0.0.10" && p.source.port == 15432)
            if name == "sandbox.yml" {
                // The physical rehearsal: a new cluster ha1-ha3, started from the rendered patroni.yml.
                #expect(p.sync.method == .physical && p.sync.slot == "pgha_ha" && p.sync.startCluster != nil && p.sync.stopCluster != nil)
                #expect(p.target.members.map(\.name) == ["ha1", "ha2", "ha3"] && p.target.membersNamed)
                #expect(p.target.apiHosts.map(\.host) == ["127.0.0.14", "127.0.0.15", "127.0.0.16"])
                #expect(p.target.dcs == .init(ttl: 20, loopWait: 1, retryTimeout: 5))
            } else {
                #expect(p.sync.method == .logical)
                #expect(p.target.apiHosts.map(\.host) == ["127.0.0.11", "127.0.0.12", "127.0.0.13"])
            }
            #expect(p.target.port == 15432 && p.target.apiPort == 8008 && p.target.user == "dpg_cluster")
            #expect(p.source.databases == .init(project: "distributed_postgres_cluster", shared: "shared_knowledge"))
        }
    }

    @Test("a wrong type names line, column, key and what was found")
    func wrongType() {
        let found = issues(sample(replacing: "api_hosts: [127.0.0.11, 127.0.0.12, \"127.0.0.13:8009\"]", with: "api_hosts: 8008"))
        #expect(found.map(\.description) == ["playbooks/x.yml:15:14: target.api_hosts: expected a list of host[:port], got a number"])
    }

    @Test("an unknown key is an error with a suggestion when one is close")
    func unknownKey() {
        let found = issues(sample(replacing: "  admin_user: postgres", with: "  admin_usr: postgres"))
        #expect(found.map(\.description) == ["playbooks/x.yml:8:3: source.admin_usr: unknown key (did you mean 'admin_user'?)"])
        let far = issues(sample(replacing: "on_failure: rollback", with: "on_failure: rollback\ncolour: blue"))
        #expect(far.count == 1)
        #expect(far.first?.key == "colour")
        #expect(far.first?.message.contains("known keys: version, name") == true)
    }

    @Test("a literal password is refused without repeating it")
    func literalPassword() {
        let found = issues(sample(replacing: "password: ${PATRONI_PASSWORD}", with: "password: hunter2-Secret"))
        #expect(found.count == 1)
        #expect(found.first?.key == "target.password")
        #expect(found.first?.line == 21)
        #expect(found.first?.message.contains("a literal password is not allowed") == true)
        #expect(found.first.map { !$0.description.contains("hunter2") } == true)

        let malformed = issues(sample(replacing: "password: ${PATRONI_PASSWORD}", with: "password: pre${PATRONI_PASSWORD}"))
        #expect(malformed.first?.message.contains("exactly one ${ENV_VAR}") == true)
        let number = issues(sample(replacing: "password: ${PATRONI_PASSWORD}", with: "password: 123456"))
        #expect(number.first?.message.contains("a literal password") == true)
    }

    @Test("missing required keys are reported at their parent")
    func missingKey() {
        let found = issues(sample(replacing: "  user: dpg_cluster\n  password: ${PROJECT_DB_PASSWORD}\n", with: ""))
        #expect(found.map(\.description) == [
            "playbooks/x.yml:4:3: source: missing required key 'user'",
            "playbooks/x.yml:4:3: source: missing required key 'password'",
        ])
    }

    @Test("every problem is reported at once")
    func severalProblems() {
        var yaml = sample(replacing: "port: 15432\n  user: dpg_cluster\n  password: ${PROJECT", with: "port: 99999\n  user: dpg_cluster\n  password: ${PROJECT")
        yaml = yaml.replacingOccurrences(of: "sslmode: disable\n  databases", with: "sslmode: sometimes\n  databases")
        yaml = yaml.replacingOccurrences(of: "max_lag_bytes: 1MB", with: "max_lag_bytes: lots")
        yaml = yaml.replacingOccurrences(of: "on_failure: rollback", with: "on_failure: panic")
        let found = issues(yaml)
        #expect(found.map(\.key) == ["source.port", "source.sslmode", "thresholds.max_lag_bytes", "on_failure"])
        #expect(found[0].message == "expected a whole number between 1 and 65535, got 99999")
        #expect(found[1].message.contains("expected one of disable, allow, prefer, require, verify-ca, verify-full, got \"sometimes\""))
        #expect(found[2].message.contains("got a string (\"lots\")"))
        #expect(found[3].message == "expected one of rollback, stop, got \"panic\"")
    }

    @Test("YAML syntax errors and duplicate keys carry their position")
    func yamlErrors() {
        let syntax = issues("version: 1\nname: [unclosed\n")
        #expect(syntax.count == 1)
        #expect(syntax.first?.line != nil)
        let duplicate = issues(sample(replacing: "name: test rehearsal", with: "name: a\nname: b"))
        #expect(duplicate.first?.message == "duplicate key 'name'")
        #expect(duplicate.first?.line == 2)
        #expect(issues("").first?.message == "the playbook is empty")
        #expect(issues("- a\n- b\n").first?.message == "expected a mapping, got a list")
    }

    @Test("cross-field rules")
    func crossField() {
        let members = issues(sample(replacing: "min_members: 3", with: "min_members: 5"))
        #expect(members.first?.message == "requires 5 members but target.api_hosts lists 3")
        let duplicateHost = issues(sample(replacing: "127.0.0.12, \"127.0.0.13:8009\"", with: "127.0.0.11, \"127.0.0.13:8009\""))
        #expect(duplicateHost.first?.key == "target.api_hosts[1]")
        let sameOutput = issues(sample(replacing: "config_yaml: out/config.yaml", with: "config_yaml: out/app.env"))
        #expect(sameOutput.first?.key == "outputs.config_yaml")
        let newer = issues(sample(replacing: "version: 1", with: "version: 2"))
        #expect(newer.first?.message.contains("this pgha reads playbook version 1; got 2") == true)
    }

    @Test("host:port parsing", arguments: [
        ("db1", "db1", 8008), ("db1:9000", "db1", 9000), ("[::1]:8009", "::1", 8009), ("::1", "::1", 8008), ("10.0.0.1", "10.0.0.1", 8008),
    ])
    func hostPort(_ text: String, _ host: String, _ port: Int) {
        #expect(PlaybookReader.parseHostPort(text, defaultPort: 8008) == .init(host: host, port: port))
    }

    @Test("invalid host:port", arguments: ["", "db1:", "db1:x", "db1:70000", "a b", "[::1", "*"])
    func badHostPort(_ text: String) {
        #expect(PlaybookReader.parseHostPort(text, defaultPort: 8008) == nil)
    }

    @Test("durations, sizes and suggestions")
    func units() {
        #expect(PlaybookReader.parseDuration("250ms") == 0.25)
        #expect(PlaybookReader.parseDuration("5m") == 300)
        #expect(PlaybookReader.parseDuration("2h") == 7200)
        #expect(PlaybookReader.parseDuration("30") == 30)
        #expect(PlaybookReader.parseDuration("soon") == nil)
        #expect(PlaybookReader.parseBytes("16MB") == 16 << 20)
        #expect(PlaybookReader.parseBytes("512kB") == 512 << 10)
        #expect(PlaybookReader.parseBytes("-1") == nil)
        #expect(PlaybookReader.closest(to: "api_host", in: ["api_hosts", "api_port"]) == "api_hosts")
        #expect(PlaybookReader.closest(to: "xyz", in: ["api_hosts", "api_port"]) == nil)
    }

    @Test("environment references resolve at run time and never store the value")
    func references() throws {
        let p = try samplePlaybook()
        let env = StaticEnvironment(sampleSecrets)
        #expect(try p.source.password.resolve(in: env, key: "source.password") == sampleSecrets["PROJECT_DB_PASSWORD"])
        #expect(p.missingCredentials(in: env).isEmpty)
        let partial = StaticEnvironment(["PATRONI_PASSWORD": "x"])
        #expect(p.missingCredentials(in: partial).map(\.key) == ["source.password", "target.api_password"])
        do {
            _ = try p.source.password.resolve(in: partial, key: "source.password")
            Issue.record("resolved an unset variable")
        } catch {
            #expect(error.code == .environmentVariableMissing)
            #expect(error.message == "source.password refers to ${PROJECT_DB_PASSWORD}, which is not set; export it before running pgha")
        }
        #expect(EnvironmentReference(parsing: "${A_1}")?.variable == "A_1")
        #expect(EnvironmentReference(parsing: "${1A}") == nil)
        #expect(EnvironmentReference(parsing: "$A") == nil)
    }
}
