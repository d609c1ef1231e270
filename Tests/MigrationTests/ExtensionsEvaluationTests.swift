import Foundation
import Testing
@testable import Migration

enum ExtFixture {
    static let contrib: [String: AvailableExtension] = [
        "plpgsql": AvailableExtension(defaultVersion: "1.0", versions: ["1.0"], installedVersion: "1.0"),
        "pg_trgm": AvailableExtension(defaultVersion: "1.6", versions: ["1.3", "1.4", "1.5", "1.6"]),
        "hstore": AvailableExtension(defaultVersion: "1.8", versions: ["1.4", "1.5", "1.6", "1.7", "1.8"]),
    ]

    static func member(_ name: String, role: String = "replica", available: [String: AvailableExtension] = contrib) -> MemberExtensions {
        MemberExtensions(name: name, role: role, address: "127.0.0.1\(name.last!):15432", available: .observed(available))
    }

    /// The sandbox: plpgsql installed in both source databases, contrib on every member.
    static func healthy() -> ExtensionObservations {
        ExtensionObservations(
            observedAt: PrereqFixture.now,
            source: [
                SourceExtensions(database: "distributed_postgres_cluster", installed: .observed(["plpgsql": "1.0"])),
                SourceExtensions(database: "shared_knowledge", installed: .observed(["plpgsql": "1.0"])),
            ],
            members: [member("node1", role: "leader"), member("node2"), member("node3")],
            elapsedMs: 55)
    }
}

@Suite("Extensions gate (pure evaluation)")
struct ExtensionsEvaluationTests {
    @Test("every extension available everywhere passes, one check per extension with its matrix row")
    func healthy() throws {
        let results = ExtensionsEvaluation.evaluate(ExtFixture.healthy(), required: ["pg_trgm"])
        #expect(results.map(\.name) == ["extensions.source", "extensions.members", "extension.pg_trgm", "extension.plpgsql"])
        #expect(results.allSatisfy { $0.verdict == .pass }, "\(results.filter { $0.verdict != .pass })")
        let trgm = try check(results, "extension.pg_trgm")
        #expect(trgm.observed == "source=—; node1=1.6; node2=1.6; node3=1.6")
        #expect(trgm.expected == "available on every member (extensions.required)")
        let plpgsql = try check(results, "extension.plpgsql")
        #expect(plpgsql.observed == "source=1.0; node1=1.0; node2=1.0; node3=1.0")
        #expect(plpgsql.expected == "available on every member, version 1.0 (installed on the single node)")
        #expect(results.allSatisfy { $0.durationMs == 55 })
    }

    @Test("an extension missing on one replica fails, naming the member and the extension")
    func missingOnOneNode() throws {
        var o = ExtFixture.healthy()
        var lacking = ExtFixture.contrib
        lacking["hstore"] = nil
        o.members[2] = ExtFixture.member("node3", available: lacking)
        let results = ExtensionsEvaluation.evaluate(o, required: ["pg_trgm", "hstore"])
        let hstore = try check(results, "extension.hstore")
        #expect(hstore.verdict == .fail)
        #expect(hstore.observed == "source=—; node1=1.8; node2=1.8; node3=missing")
        #expect(hstore.advice?.hasPrefix("install the package providing hstore on node3") == true)
        #expect(try check(results, "extension.pg_trgm").verdict == .pass)
        #expect(results.worstVerdict == .fail)
    }

    @Test("an extension the source uses must be installable at the source's version on every member")
    func versionNotAvailable() throws {
        var o = ExtFixture.healthy()
        o.source[0].installed = .observed(["plpgsql": "1.0", "pg_trgm": "1.2"])
        let results = ExtensionsEvaluation.evaluate(o, required: [])
        let trgm = try check(results, "extension.pg_trgm")
        #expect(trgm.verdict == .fail)
        #expect(trgm.observed == "source=1.2; node1=1.6 (lacks 1.2); node2=1.6 (lacks 1.2); node3=1.6 (lacks 1.2)")
        #expect(trgm.advice?.contains("ALTER EXTENSION pg_trgm UPDATE TO") == true)
        #expect(trgm.expected == "available on every member, version 1.2 (installed on the single node)")
    }

    @Test("different default versions warn")
    func defaultsDiffer() throws {
        var o = ExtFixture.healthy()
        var older = ExtFixture.contrib
        older["hstore"] = AvailableExtension(defaultVersion: "1.7", versions: ["1.4", "1.5", "1.6", "1.7", "1.8"])
        o.members[1] = ExtFixture.member("node2", available: older)
        let hstore = try check(ExtensionsEvaluation.evaluate(o, required: ["hstore"]), "extension.hstore")
        #expect(hstore.verdict == .warn)
        #expect(hstore.observed == "source=—; node1=1.8; node2=1.7; node3=1.8")

        var sourceOlder = ExtFixture.healthy()
        sourceOlder.source[1].installed = .observed(["plpgsql": "1.0", "hstore": "1.7"])
        #expect(try check(ExtensionsEvaluation.evaluate(sourceOlder, required: []), "extension.hstore").verdict == .warn,
                "the source's 1.7 is installable, but the members would create 1.8 by default")
    }

    @Test("a member that cannot be asked fails extensions.members and every extension")
    func memberUnreachable() throws {
        var o = ExtFixture.healthy()
        o.members[1].available = .failed("connectionFailed: connection refused [127.0.0.12:15432]")
        let results = ExtensionsEvaluation.evaluate(o, required: ["pg_trgm"])
        let members = try check(results, "extensions.members")
        #expect(members.verdict == .fail)
        #expect(members.observed == "not reachable: node2 (127.0.0.12:15432): connectionFailed: connection refused [127.0.0.12:15432]")
        let trgm = try check(results, "extension.pg_trgm")
        #expect(trgm.verdict == .fail)
        #expect(trgm.observed.contains("node2=unreachable"))
        #expect(trgm.advice?.contains("node2 could not be asked") == true)
    }

    @Test("extensions.min_versions: no installable version reaching the minimum fails")
    func minimumVersion() throws {
        let results = ExtensionsEvaluation.evaluate(ExtFixture.healthy(), required: ["hstore"], minVersions: ["hstore": "2.0"])
        let hstore = try check(results, "extension.hstore")
        #expect(hstore.verdict == .fail)
        #expect(hstore.observed == "source=—; node1=1.8 (< 2.0); node2=1.8 (< 2.0); node3=1.8 (< 2.0)")
        #expect(hstore.expected == "available on every member, ≥ 2.0 (extensions.required)")
        #expect(ExtensionsEvaluation.evaluate(ExtFixture.healthy(), required: ["hstore"], minVersions: ["hstore": "1.8"]).worstVerdict == .pass)
    }

    @Test("an unreadable source database or no member list fails")
    func unreadable() throws {
        var o = ExtFixture.healthy()
        o.source[1].installed = .failed("authenticationFailed: password authentication failed")
        o.members = []
        o.clusterError = "127.0.0.11:8008: refused"
        let results = ExtensionsEvaluation.evaluate(o, required: ["pg_trgm"])
        #expect(try check(results, "extensions.source").verdict == .fail)
        #expect(try check(results, "extensions.source").observed == "could not read: shared_knowledge: authenticationFailed: password authentication failed")
        #expect(try check(results, "extensions.members").observed == "no member list: 127.0.0.11:8008: refused")
        #expect(try check(results, "extension.pg_trgm").observed == "source=—", "nothing to compare: still listed")
    }

    @Test("required extensions come first in the playbook's order, then the source's by name")
    func order() {
        var o = ExtFixture.healthy()
        o.source[0].installed = .observed(["plpgsql": "1.0", "citext": "1.6", "pg_trgm": "1.6"])
        #expect(ExtensionsEvaluation.extensionNames(o, required: ["pg_trgm", "hstore"]) == ["pg_trgm", "hstore", "citext", "plpgsql"])
    }

    @Test("extension versions compare numerically")
    func versions() {
        #expect(ExtensionsEvaluation.compareVersions("1.10", "1.9") == 1)
        #expect(ExtensionsEvaluation.compareVersions("2.0", "2.0.0") == 0)
        #expect(ExtensionsEvaluation.compareVersions("2.0.1", "2.0") == 1)
        #expect(ExtensionsEvaluation.compareVersions("0.8.0", "1.0") == -1)
        #expect(ExtensionsEvaluation.compareVersions("1.0beta1", "1.0beta2") == -1)
    }
}

@Suite("Extension matrix")
struct ExtensionMatrixTests {
    func failingObservation() -> ExtensionObservations {
        var o = ExtFixture.healthy()
        var lacking = ExtFixture.contrib
        lacking["hstore"] = nil
        o.members[1] = ExtFixture.member("node2", available: lacking)
        return o
    }

    @Test("the matrix rebuilt from the gate's checks equals the one computed from the observations")
    func roundTrip() throws {
        let o = failingObservation()
        let direct = ExtensionsEvaluation.matrix(o, required: ["pg_trgm", "hstore"])
        let checks = ExtensionsEvaluation.evaluate(o, required: ["pg_trgm", "hstore"])
        let rebuilt = try #require(ExtensionMatrix(checks: checks))
        #expect(rebuilt == direct)
        #expect(rebuilt.columns == ["source", "node1", "node2", "node3"])
        #expect(rebuilt.rows.map(\.verdict) == [.pass, .fail, .pass])
        // Codable, for JSON reports.
        let data = try JSONEncoder().encode(rebuilt)
        #expect(try JSONDecoder().decode(ExtensionMatrix.self, from: data) == rebuilt)
        #expect(ExtensionMatrix(checks: [.pass("cluster.members", observed: "3")]) == nil)
    }

    @Test("the table aligns columns")
    func table() {
        let matrix = ExtensionsEvaluation.matrix(failingObservation(), required: ["pg_trgm", "hstore"])
        #expect(matrix.table() == """
            EXTENSION  VERDICT  source  node1  node2    node3
            ---------  -------  ------  -----  -------  -----
            pg_trgm    PASS     —       1.6    1.6      1.6
            hstore     FAIL     —       1.8    missing  1.8
            plpgsql    PASS     1.0     1.0    1.0      1.0
            """)
    }
}

@Suite("CheckResult (shared with the verification suite)")
struct CheckResultTests {
    @Test("verdicts order by severity: SKIP < PASS < WARN < FAIL")
    func order() {
        #expect(Verdict.allCases.sorted() == [.skip, .pass, .warn, .fail])
        #expect([CheckResult]().worstVerdict == .pass)
        #expect([CheckResult(name: "a", verdict: .skip, observed: "")].worstVerdict == .skip)
        #expect([.pass("a", observed: "x"), .warn("b", observed: "y", advice: "z")].worstVerdict == .warn)
        let verdict: CheckResult.Verdict = .fail
        #expect(verdict == Verdict.fail)
    }

    @Test("a state file's gate entry without durationMs or expected still reads")
    func decodesOldEntries() throws {
        let json = #"{"name":"file.env_file","verdict":"PASS","observed":"sha256 abc"}"#
        let check = try JSONDecoder().decode(CheckResult.self, from: Data(json.utf8))
        #expect(check == CheckResult(name: "file.env_file", verdict: .pass, observed: "sha256 abc"))
        let full = CheckResult.fail("x", observed: "o", expected: "e", advice: "a")
        #expect(try JSONDecoder().decode(CheckResult.self, from: JSONEncoder().encode(full)) == full)
        let text = String(decoding: try JSONEncoder().encode(CheckResult.pass("p", observed: "o")), as: UTF8.self)
        #expect(!text.contains("expected") && !text.contains("advice"))
    }

    @Test("redaction masks name, observed, expected and advice")
    func redaction() {
        let redactor = SecretRedactor(secrets: ["hunter22"])
        let check = CheckResult(name: "n hunter22", verdict: .fail, observed: "saw hunter22", expected: "hunter22", advice: "use hunter22", durationMs: 3)
        let masked = check.redacted(by: redactor)
        #expect(masked == CheckResult(name: "n <redacted>", verdict: .fail, observed: "saw <redacted>", expected: "<redacted>", advice: "use <redacted>", durationMs: 3))
        #expect(CheckResult.pass("x", observed: "y").redacted(by: redactor).expected == nil)
    }
}
