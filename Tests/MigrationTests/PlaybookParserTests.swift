import PlainText
import Foundation
import PropertyBased
import Testing
import TestSupport
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

    @Test("the shipped playbooks are valid", arguments: ["sandbox.yml", "sandbox-tls.yml", "sandbox-logical.yml", "example-production.yml"])
    func shipped(_ name: String) throws {
        let loaded = try PlaybookParser.load(path: repositoryRoot + "/playbooks/" + name)
        #expect(loaded.sha256.count == 64)
        if name == "example-production.yml" {
            #expect(loaded.playbook.extensions.required.contains("ruvector"))
            #expect(loaded.playbook.target.apiHosts.count == 3)
        } else {
            let p = loaded.playbook
            #expect(p.source.host == "127.0.0.10" && p.source.port == 15432)
            if name == "sandbox-tls.yml" {
                // The TLS rehearsal: every connection verified, the members rendered with TLS.
                #expect(p.source.tls.sslMode == "verify-full" && p.source.tls.sslRootCert == "/tmp/pgha-sandbox/tls/ca.crt")
                #expect(p.target.apiScheme == "https" && p.target.apiCertFile == "/tmp/pgha-sandbox/tls/client.crt")
                #expect(p.target.tls.sslCert == "/tmp/pgha-sandbox/tls/client.crt" && p.target.tls.sslKey == "/tmp/pgha-sandbox/tls/client.key")
                #expect(p.target.memberTLS == .init(certFile: "/tmp/pgha-sandbox/tls/ha.crt", keyFile: "/tmp/pgha-sandbox/tls/ha.key",
                                                    caFile: "/tmp/pgha-sandbox/tls/ca.crt", verifyClient: .optional))
            }
            if name == "sandbox.yml" || name == "sandbox-tls.yml" {
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

    @Test("TLS settings: a certificate needs its key, HTTPS-only keys need https, verify_client needs a CA")
    func tlsRules() {
        let certOnly = issues(sample(replacing: "  sslmode: disable\n  etcd_hosts", with: "  sslmode: verify-full\n  sslcert: /etc/pgha/client.crt\n  etcd_hosts"))
        #expect(certOnly.map(\.key) == ["target.sslcert"])
        #expect(certOnly.first?.message.contains("target.sslkey is not") == true)
        let keyOnly = issues(sample(replacing: "  admin_user: postgres\n  sslmode: disable", with: "  admin_user: postgres\n  sslmode: disable\n  sslkey: /k"))
        #expect(keyOnly.map(\.key) == ["source.sslkey"])
        let http = issues(sample(replacing: "  api_port: 8008", with: "  api_port: 8008\n  api_cafile: /etc/pgha/ca.crt\n  api_cert: /c\n  api_key: /k"))
        #expect(http.map(\.key) == ["target.api_cafile", "target.api_cert", "target.api_key"])
        #expect(http.first?.message.contains("api_scheme: https") == true)
        let noCA = issues(sample(replacing: "  etcd_hosts", with: "  member_tls: {certfile: /m.crt, keyfile: /m.key, verify_client: required}\n  etcd_hosts"))
        #expect(noCA.map(\.key) == ["target.member_tls.verify_client"])
        let noKey = issues(sample(replacing: "  etcd_hosts", with: "  member_tls: {certfile: /m.crt}\n  etcd_hosts"))
        #expect(noKey.first?.message.contains("missing required key 'keyfile'") == true)
        let bad = issues(sample(replacing: "  etcd_hosts", with: "  member_tls: {certfile: /m.crt, keyfile: /m.key, cafile: /ca, verify_client: always}\n  etcd_hosts"))
        #expect(bad.map(\.key) == ["target.member_tls.verify_client"])
    }

    @Test("member_tls without verify_client asks client certificates for the unsafe endpoints only when a CA is named")
    func memberTLSDefault() throws {
        let withCA = try PlaybookParser.parse(sample(replacing: "  etcd_hosts", with: "  member_tls: {certfile: /m.crt, keyfile: /m.key, cafile: /ca}\n  etcd_hosts"), file: "x.yml")
        #expect(withCA.target.memberTLS?.verifyClient == .optional)
        let without = try PlaybookParser.parse(sample(replacing: "  etcd_hosts", with: "  member_tls: {certfile: /m.crt, keyfile: /m.key}\n  etcd_hosts"), file: "x.yml")
        #expect(without.target.memberTLS?.verifyClient == Playbook.MemberTLS.VerifyClient.none)
    }

    @Test("sync.synchronous_mode defaults to true, reads false, and refuses anything else naming the key")
    func synchronousMode() throws {
        #expect(try samplePlaybook().sync.synchronousMode == true)
        let off = try PlaybookParser.parse(sample(replacing: "  method: logical", with: "  method: logical\n  synchronous_mode: false"), file: "x.yml")
        #expect(off.sync.synchronousMode == false && off.sync.method == .logical)
        let bad = issues(sample(replacing: "  method: logical", with: "  method: logical\n  synchronous_mode: maybe"))
        #expect(bad.map(\.key) == ["sync.synchronous_mode"])
        #expect(bad.first?.message.contains("expected one of true, false") == true)
    }

    @Test("sync.defer_indexes defaults to false, reads true, and refuses anything else naming the key")
    func deferIndexes() throws {
        #expect(try samplePlaybook().sync.deferIndexes == false)
        let on = try PlaybookParser.parse(sample(replacing: "  method: logical", with: "  method: logical\n  defer_indexes: true"), file: "x.yml")
        #expect(on.sync.deferIndexes == true)
        let bad = issues(sample(replacing: "  method: logical", with: "  method: logical\n  defer_indexes: later"))
        #expect(bad.map(\.key) == ["sync.defer_indexes"])
        #expect(bad.first?.message.contains("expected one of true, false") == true)
    }

    @Test("sync.initial_copy defaults to snapshot with 2 copy jobs, reads subscription and a job count, and refuses anything else naming the key")
    func initialCopy() throws {
        let defaults = try samplePlaybook().sync
        #expect(defaults.initialCopy == .snapshot && defaults.copyJobs == 2)
        let other = try PlaybookParser.parse(sample(replacing: "  method: logical", with: "  method: logical\n  initial_copy: subscription\n  copy_jobs: 4"), file: "x.yml")
        #expect(other.sync.initialCopy == .subscription && other.sync.copyJobs == 4)
        let bad = issues(sample(replacing: "  method: logical", with: "  method: logical\n  initial_copy: rsync"))
        #expect(bad.map(\.key) == ["sync.initial_copy"])
        #expect(bad.first?.message.contains("expected one of snapshot, subscription") == true)
        let jobs = issues(sample(replacing: "  method: logical", with: "  method: logical\n  copy_jobs: 0"))
        #expect(jobs.map(\.key) == ["sync.copy_jobs"])
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
            "playbooks/x.yml:4:3: source: missing required key 'user': add user: under source (docs/PLAYBOOKS.md)",
            "playbooks/x.yml:4:3: source: missing required key 'password': add password: under source (docs/PLAYBOOKS.md)",
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
        #expect(duplicate.first?.message == "duplicate key 'name' in this mapping: keep one of them (YAML would silently use only one value)")
        #expect(duplicate.first?.line == 2)
        #expect(issues("").first?.description == "playbooks/x.yml:1:1: the playbook is empty: write at least version, name, source and target (docs/PLAYBOOKS.md)")
        #expect(issues("- a\n- b\n").first?.message == "expected a mapping, got a list")
    }

    @Test("cross-field rules")
    func crossField() {
        let members = issues(sample(replacing: "min_members: 3", with: "min_members: 5"))
        #expect(members.first?.message == "requires 5 members but target.api_hosts lists 3: list every member's API in target.api_hosts, or lower min_members")
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
        #expect(parseBytes("16MB") == 16 << 20)
        #expect(parseBytes("512kB") == 512 << 10)
        #expect(parseBytes("-1") == nil)
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

/// Hostile playbooks: valid ones mutated (wrong types, unknown and duplicate keys, huge values,
/// deep nesting, control characters, truncation, invalid UTF-8, BOM, CRLF, tabs). The parser
/// never crashes, and every problem names the file, the line and column, and the fix.
@Suite("Playbook validation of mutated playbooks")
struct PlaybookParserPropertyTests {
    static let file = "playbooks/mutated.yml"

    /// The sample and the shipped playbooks, as trees, with what they parse to.
    static func bases() throws -> [(Document, Playbook)] {
        let texts = [
            samplePlaybookYAML(),
            try String(contentsOfFile: repositoryRoot + "/playbooks/sandbox.yml", encoding: .utf8),
            try String(contentsOfFile: repositoryRoot + "/playbooks/example-production.yml", encoding: .utf8),
        ]
        return try texts.map { (try Document(yaml: $0), try PlaybookParser.parse($0, file: file)) }
    }

    /// The issues of `bytes`, or the playbook.
    static func outcome(_ bytes: [UInt8]) -> Result<Playbook, MigrationError> {
        do throws(MigrationError) {
            return .success(try PlaybookParser.parse(bytes: bytes, file: file))
        } catch {
            return .failure(error)
        }
    }

    /// What every failure must look like.
    static func checkReport(_ error: MigrationError) {
        #expect(error.code == .playbookInvalid)
        #expect(error.path == file)
        #expect(!error.issues.isEmpty, "\(error.message)")
        for issue in error.issues {
            #expect(issue.file == file)
            #expect(issue.line != nil && issue.column != nil, "no position: \(issue)")
            #expect(issue.description.hasPrefix("\(file):\(issue.line ?? 0):\(issue.column ?? 0): "), "\(issue)")
            #expect(tellsTheFix(issue.message), "no fix: \(issue)")
            #expect(!containsHiddenCharacter(issue.description) && !issue.description.contains("\n"), "raw control character: \(issue.description.debugDescription)")
            #expect(issue.description.count < 500, "\(issue.description.count) characters: \(issue.description.prefix(200))…")
        }
    }

    @Test("the renderer used by the mutations writes the same playbooks back")
    func roundTrip() throws {
        for (document, playbook) in try Self.bases() {
            #expect(try PlaybookParser.parse(document.render(.yaml), file: Self.file) == playbook)
        }
    }

    @Test("mutated playbooks: no crash, every problem placed and explained, benign changes change nothing")
    func mutated() async throws {
        let tally = Fuzz.Tally()
        for (n, (document, original)) in try Self.bases().enumerated() {
            let mutator = DocumentMutator(document, format: .yaml)
            await Fuzz.check(mutator.generator, seed: 0x9A7B_0000 + UInt64(n), count: 120) { mutated in
                let result = Self.outcome(mutated.bytes)
                if mutated.isBenign {
                    #expect((try? result.get()) == original, "a BOM or CRLF changed the playbook: \(result)")
                    tally.count("benign")
                    return
                }
                guard case .failure(let error) = result else {
                    tally.count("accepted")
                    return
                }
                tally.count("refused")
                Self.checkReport(error)
                Self.checkPrediction(mutated, error)
            }
        }
        // The generator reaches every outcome (a regression here means it became degenerate).
        #expect(tally["benign"] > 10 && tally["accepted"] > 10 && tally["refused"] > 150, "\(tally.all)")
    }

    /// What a single mutation must produce.
    static func checkPrediction(_ mutated: MutatedDocument, _ error: MigrationError) {
        let keys = error.issues.map(\.key)
        let messages = error.issues.map(\.message)
        if mutated.structural.isEmpty, mutated.byteLevel.count == 1, case .invalidUTF8 = mutated.byteLevel[0],
           let offset = mutated.firstInvalidUTF8Offset {
            #expect(messages == [messages.first].compactMap { $0 } && messages.first?.contains("UTF-8") == true, "\(messages)")
            #expect(error.issues.first?.line == MutatedDocument.line(ofOffset: offset, in: mutated.bytes))
        }
        guard mutated.structural.count == 1, mutated.byteLevel.isEmpty else { return }
        let original = mutated.original
        switch mutated.structural[0] {
        case .renameKey(let path, _, let name):
            let parent = original.keyPath(Array(path.dropLast()))
            let isSchemaLike = !name.isEmpty && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || $0 == "_" }
            // (Under extensions.min_versions any extension name is a key, so the issue is not
            // always "unknown key"; it is always placed under the parent.)
            if !isSchemaLike || name.hasPrefix("zz_") {
                #expect(error.issues.contains { $0.key.hasPrefix(parent) }, "\(error.issues)")
            }
        case .duplicateKey(let path, _):
            let name = original.key(at: path) ?? ""
            #expect(error.issues.contains { $0.message.contains("duplicate key '\(name)'") && $0.key == name }, "\(error.issues)")
        case .wrongType(let path, let keyPath, .mapping(let entries)) where !entries.isEmpty:
            if case .scalar? = original[path] {
                #expect(keys.contains { $0.hasPrefix(keyPath) }, "\(keyPath): \(error.issues)")
            }
        case .controlCharacter(_, let keyPath, let scalar) where scalar != "\t":
            #expect(keys.contains { $0.hasPrefix(keyPath) }, "\(keyPath): \(error.issues)")
        case .deepNesting(_, let keyPath, let depth):
            if depth > 1_000 {
                #expect(messages.count == 1 && messages[0].contains("nested more than 1000 levels"), "\(messages)")
            } else {
                #expect(keys.contains { $0.hasPrefix(keyPath) }, "\(keyPath): \(error.issues)")
            }
        default:
            break
        }
    }

    @Test("a literal password is never repeated, whatever else is wrong with the file")
    func literalPasswords() async throws {
        let (document, _) = try Self.bases()[0]
        let credentials = document.paths.filter { ["password", "api_password"].contains(document.key(at: $0)) }
        #expect(credentials.count == 3)
        let mutator = DocumentMutator(document, format: .yaml)
        let secrets = zip(Gen.element(of: credentials), Gen.letterOrNumber.string(of: 8...24), Gen.bool)
            .map { path, tail, quoted in (path: path!, secret: "Hunter2-" + tail, quoted: quoted) }
        let cases = zip(secrets, mutator.generator).map { secret, mutated in SecretCase(secret: secret, mutated: mutated, document: document) }
        await Fuzz.check(cases, seed: 0x5EC2_E7, count: 80) { c in
            let result = Self.outcome(c.bytes)
            guard case .failure(let error) = result else {
                Issue.record("a literal password was accepted")
                return
            }
            #expect(!error.description.contains(c.secret), "\(error.description)")
            #expect(!error.message.contains(c.secret))
        }
    }

    struct SecretCase: Sendable, CustomStringConvertible {
        var secret: String
        var bytes: [UInt8]
        var summary: String
        init(secret: (path: Document.Path, secret: String, quoted: Bool), mutated: MutatedDocument, document: Document) {
            var doc = document
            doc.replace(secret.path, with: .scalar(secret.secret, secret.quoted ? .quoted : .plain))
            for m in mutated.structural where m.path != secret.path { m.apply(to: &doc, format: .yaml) }
            var bytes = Array(doc.render(.yaml).utf8)
            for m in mutated.byteLevel { m.apply(to: &bytes) }
            self.secret = secret.secret
            self.bytes = bytes
            summary = "\(document.keyPath(secret.path)) = \(secret.secret); \(mutated)"
        }
        var description: String { summary }
    }

    @Test("hostile YAML features: aliases that expand, merge keys, tags, several documents")
    func yamlFeatures() {
        let laughs = "a: &a [x, x, x, x, x, x, x, x]\n" + (1...12).map { "l\($0): &l\($0) [" + Array(repeating: "*\($0 == 1 ? "a" : "l\($0 - 1)")", count: 8).joined(separator: ", ") + "]" }.joined(separator: "\n")
        for text in [
            samplePlaybookYAML() + laughs,
            samplePlaybookYAML().replacingOccurrences(of: "name: test rehearsal", with: "name: &n test\nversion2: *n"),
            "<<: {version: 1}\n" + samplePlaybookYAML(),
            samplePlaybookYAML().replacingOccurrences(of: "port: 15432\n  user", with: "port: !!str 15432\n  user"),
            samplePlaybookYAML() + "---\nversion: 2\n",
            "%YAML 1.1\n---\n" + samplePlaybookYAML(),
            String(repeating: "- ", count: 5_000) + "x\n",
            String(repeating: "  ", count: 3_000) + "a: 1\n",
        ] {
            switch Self.outcome(Array(text.utf8)) {
            case .success: break
            case .failure(let error): Self.checkReport(error)
            }
        }
    }

    @Test("specific hostile bytes are explained", arguments: [
        ("tab", "version: 1\nname: x\nsource:\n\thost: a\n", "indent with spaces"),
        ("NUL", "version: 1\nname: x\u{0}y\n", "U+0000"),
        ("escape sequence", "version: 1\nname: \"x\\u001B[31my\"\n", "U+001B"),
        ("bidirectional override", "version: 1\nname: \"admin\u{202E}resu\"\n", "U+202E"),
        ("unclosed quote", "version: 1\nname: \"x\n", "close the quote"),
        ("unclosed list", "version: 1\nname: [x\n", "close the list"),
        ("at sign", "version: 1\nname: @x\n", "must be quoted"),
    ])
    func specific(_ label: String, _ text: String, _ fix: String) throws {
        guard case .failure(let error) = Self.outcome(Array(text.utf8)) else {
            Issue.record("\(label) was accepted")
            return
        }
        Self.checkReport(error)
        #expect(error.issues.contains { $0.message.contains(fix) }, "\(label): \(error.issues)")
    }

    @Test("invalid UTF-8 names the byte, the line and the column; a BOM is accepted")
    func utf8() throws {
        var bytes = Array(samplePlaybookYAML().utf8)
        let at = try #require(bytes.firstRange(of: Array("dpg_cluster".utf8))).lowerBound + 3
        bytes.insert(0xFF, at: at)
        guard case .failure(let error) = Self.outcome(bytes) else {
            Issue.record("accepted")
            return
        }
        #expect(error.issues.map(\.description) == ["\(Self.file):6:12: byte \(at) (line 6, column 12) is not UTF-8 (0xFF): save the file as UTF-8"])
        #expect(try Self.outcome([0xEF, 0xBB, 0xBF] + Array(samplePlaybookYAML().utf8)).get() == samplePlaybook())
    }
}
