import Foundation
import Sandbox
import Testing

/// The migration over TLS, against a sandbox started with `pgha sandbox up --tls` (scripts/test's
/// second phase; PGHA_REQUIRE_TLS_SANDBOX=1 makes a sandbox without TLS an error instead of a
/// skip): playbooks/sandbox-tls.yml through every stage under the application's load, the
/// generated app.env's pools (`pgha health`, `pgha verify`) over verify-full and HTTPS with a
/// client certificate, and certificates that do not verify — another CA, expired, for another
/// host — named quickly with the host and the fix.
@Suite(.enabled(if: TLSSandbox.enabled), .serialized)
struct TLSMigrationIntegrationTests {
    let cli: CLIHarness
    let sandbox: SandboxConfiguration
    let tls: SandboxConfiguration.TLSFiles
    /// The cutover tests' workload and restore, shared.
    let cutover: CutoverIntegrationTests

    init() throws {
        cli = try CLIHarness.make()
        sandbox = try SandboxFixture.load().sandbox
        tls = try #require(sandbox.tls, "the sandbox was started without --tls: `pgha sandbox down && pgha sandbox up --tls`")
        cutover = try CutoverIntegrationTests()
    }

    @Test("playbooks/sandbox-tls.yml: plan, then run through complete under load with every connection verified; health and verify on the generated app.env")
    func migrationOverTLS() throws {
        let work = try workspace()
        defer { cutover.restore(work) }
        let plan = cli.run(["plan", "tls.yml", "--state-dir", work.stateDir], in: work, timeout: 60)
        #expect(plan.exitCode == 0 && plan.stdout.contains("Nothing was changed"), "\(plan)")
        let workload = try cutover.startWorkload(work)
        let run = cli.run(["run", "tls.yml", "--state-dir", work.stateDir], in: work, timeout: 600)
        let judged = cutover.stopWorkload(workload, work)
        #expect(run.exitCode == 0 && run.stdout.contains("Migration complete"), "\(run)")
        let report = try judged()
        #expect(report.acknowledged > 100 && report.missing == 0 && report.duplicated == 0 && report.errors == 0, "\(report.summary)")
        cutover.expectNoSecrets(under: work.stateDir)

        // The members serve TLS only, with the certificate the playbook named: a plain login is
        // refused by pg_hba (hostssl), and every replication connection is encrypted.
        let leader = try cutover.clusterLeader()
        let replication = try leader.query("SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)")
        let encrypted = try replication.int(0, 0), connections = try replication.int(0, 1)
        #expect(encrypted == 2 && connections == 2, "replication over TLS: \(String(describing: encrypted)) of \(String(describing: connections))")
        let member = sandbox.target.members[0]
        let plain = cli.run(["/usr/bin/psql", "host=\(member.host) port=\(member.pgPort) dbname=postgres user=\(sandbox.users.superuser) sslmode=disable", "-Atc", "SELECT 1"],
                            in: work, executable: "/usr/bin/psql", timeout: 30)
        #expect(plain.exitCode != 0 && plain.stderr.contains("no encryption"), "\(plain)")
        let https = cli.run(["/usr/bin/curl", "-sf", "--cacert", tls.caCertificate, "https://\(member.host):\(member.restPort)/patroni"],
                            in: work, executable: "/usr/bin/curl", timeout: 30)
        #expect(https.exitCode == 0 && https.stdout.contains("\"role\""), "\(https)")

        // The application's configuration as generated: the pools over verify-full and HTTPS.
        let appEnv = work.path + "/.pgha/tls/out/app.env"
        let health = isolated(["health", "--env-file", appEnv], in: work)
        #expect(health.exitCode == 0 && health.stdout.contains("healthy: yes"), "\(health)")
        let verify = isolated(["verify", "--env-file", appEnv], in: work)
        #expect(verify.exitCode == 0 && verify.stdout.contains("8/8 tests passed"), "\(verify)")
    }

    @Test("another CA, an expired certificate, a certificate for another host: exit 2 within a second, naming the host and the fix")
    func certificatesThatDoNotVerify() throws {
        let work = try workspace()
        defer { work.remove() }
        let otherCA = try makeOtherCA(in: work)
        let expired = try makeExpiredCertificate(in: work, host: "127.0.0.17")
        // Fake REST hosts on addresses the sandbox does not use.
        let expiredServer = try openSSLServer(host: "127.0.0.17", port: 18443, certificate: expired, in: work)
        defer { expiredServer.signal(SIGKILL); _ = expiredServer.wait(timeout: 10) }
        let wrongHostServer = try openSSLServer(host: "127.0.0.18", port: 18443, certificate: (tls.serverCertificates["ha"]?.certificate ?? "", tls.serverCertificates["ha"]?.key ?? ""), in: work)
        defer { wrongHostServer.signal(SIGKILL); _ = wrongHostServer.wait(timeout: 10) }
        Thread.sleep(forTimeInterval: 0.5)

        // The pools' settings as the migration would generate them, against the sandbox's own
        // cluster (node1-3, HTTPS with the sandbox's CA).
        let env = work.path + "/pools.env"
        try """
            ENABLE_PATRONI=true
            PATRONI_HOSTS=\(sandbox.cluster.members.map(\.host).joined(separator: ","))
            PATRONI_PORT=\(sandbox.cluster.restPort)
            PATRONI_API_SCHEME=https
            PATRONI_API_CAFILE=\(tls.caCertificate)
            PATRONI_DB=\(sandbox.cluster.projectDatabase)
            PATRONI_USER=\(sandbox.users.application)
            PATRONI_PASSWORD=\(try sandbox.password(\.application))
            PATRONI_SSLMODE=verify-full
            PATRONI_SSLROOTCERT=\(tls.caCertificate)

            """.write(toFile: env, atomically: true, encoding: .utf8)
        chmod(env, 0o600)
        let good = isolated(["health", "--env-file", env], in: work)
        #expect(good.exitCode == 0, "the settings work before they are broken: \(good)")

        let cases: [(name: String, extra: [String], overrides: [String: String], expect: [String])] = [
            ("REST API, another CA", [], ["PATRONI_API_CAFILE": otherCA],
             ["is not signed by the CA in PATRONI_API_CAFILE (\(otherCA))", "\(sandbox.cluster.members[0].host):\(sandbox.cluster.restPort)"]),
            ("PostgreSQL, another CA", [], ["PATRONI_SSLROOTCERT": otherCA],
             ["did not verify against PATRONI_SSLROOTCERT (\(otherCA))", "-starttls postgres"]),
            ("expired", ["--hosts", "127.0.0.17:18443"], [:], ["the certificate of 127.0.0.17:18443 has expired"]),
            ("another host", ["--hosts", "127.0.0.18:18443"], [:], ["the certificate of 127.0.0.18:18443 does not name that host"]),
        ]
        for c in cases {
            let started = Date()
            let result = isolated(["health", "--env-file", env] + c.extra, in: work, overrides: c.overrides)
            let seconds = Date().timeIntervalSince(started)
            #expect(result.exitCode == 2, "\(c.name): \(result)")
            for fragment in c.expect { #expect(result.stderr.contains(fragment), "\(c.name): \(fragment)\n\(result)") }
            #expect(result.stderr.contains("next: "), "\(c.name): \(result)")
            #expect(seconds < 1.5, "\(c.name): \(seconds) s")
            for secret in cli.secrets { #expect(!result.stdout.contains(secret) && !result.stderr.contains(secret), "\(c.name): a password leaked") }
        }

        // The migration's prerequisites with the single node's CA wrong: the check says TLS, not
        // "does not answer", and names the playbook key and the file.
        let bad = try String(contentsOfFile: work.path + "/tls.yml", encoding: .utf8)
            .replacingOccurrences(of: "  sslrootcert: \(tls.caCertificate)\n  databases:", with: "  sslrootcert: \(otherCA)\n  databases:")
        try bad.write(toFile: work.path + "/bad.yml", atomically: true, encoding: .utf8)
        let prerequisites = cli.run(["run", "bad.yml", "--state-dir", work.path + "/bad-state", "--until", "prerequisites"], in: work, timeout: 60)
        #expect(prerequisites.exitCode == 3, "\(prerequisites)")
        #expect(prerequisites.stdout.contains("answers, but its TLS does not verify"), "\(prerequisites)")
        #expect(prerequisites.stdout.contains("did not verify against source.sslrootcert (\(otherCA))"), "\(prerequisites)")
    }

    // MARK: - Helpers

    /// A workspace with playbooks/sandbox-tls.yml as `tls.yml`, adapted as the cutover tests adapt
    /// sandbox.yml (this sandbox's paths, its own slot, a short shadow, stop instead of rollback).
    func workspace() throws -> Workspace {
        let work = try Workspace(cli)
        _ = cli.run(["sandbox", "stop-cluster", "--purge"], in: work, timeout: 120)
        var text = try String(contentsOfFile: CLIHarness.repository + "/playbooks/sandbox-tls.yml", encoding: .utf8)
        text = text.replacingOccurrences(of: "/tmp/pgha-sandbox/tls", with: tls.directory)
        text = text.replacingOccurrences(of: "slot: pgha_ha", with: "slot: pgha_ct")
        text = text.replacingOccurrences(of: "queries: 1500", with: "queries: 150")
        text = text.replacingOccurrences(of: "p99_slack: 20ms", with: "p99_slack: 2s")
        text = text.replacingOccurrences(of: "workload: playbooks/sandbox-workload.yml", with: "workload: \(CLIHarness.repository)/playbooks/sandbox-workload.yml")
        text = text.replacingOccurrences(of: "ini_file: /tmp/pgha-sandbox/pgbouncer/pgbouncer.ini", with: "ini_file: \(sandbox.pgbouncer.configFile)")
        text = text.replacingOccurrences(of: "on_failure: rollback", with: "on_failure: stop")
        try text.write(toFile: work.path + "/tls.yml", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: sandbox.pgbouncer.configFile, toPath: work.path + "/pgbouncer.ini.original")
        return work
    }

    /// `pgha ARGS` with only the given file's settings: the harness's environment (the sandbox's
    /// exports for node1-3) would win over an env file.
    func isolated(_ arguments: [String], in work: Workspace, overrides: [String: String] = [:]) -> CommandResult {
        let assignments = ["PATH=/usr/bin:/bin", "HOME=\(work.path)"] + overrides.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return cli.run(["/usr/bin/env", "-i"] + assignments + [cli.binary] + arguments, in: work, executable: "/usr/bin/env", timeout: 60)
    }

    func openssl(_ arguments: [String], in work: Workspace) throws {
        let result = cli.run(["/usr/bin/openssl"] + arguments, in: work, executable: "/usr/bin/openssl", timeout: 60)
        guard result.exitCode == 0 else { throw HarnessError("openssl \(arguments.first ?? ""): \(result)") }
    }

    /// A CA nobody trusts; its certificate's path.
    func makeOtherCA(in work: Workspace) throws -> String {
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", work.path + "/other-ca.key", "-out", work.path + "/other-ca.crt",
                     "-days", "2", "-subj", "/CN=not the sandbox CA"], in: work)
        return work.path + "/other-ca.crt"
    }

    /// A certificate for `host` signed by the sandbox's CA, valid for one day in 2020.
    func makeExpiredCertificate(in work: Workspace, host: String) throws -> (String, String) {
        let dir = work.path + "/expired-ca"
        try FileManager.default.createDirectory(atPath: dir + "/newcerts", withIntermediateDirectories: true)
        try "".write(toFile: dir + "/index.txt", atomically: true, encoding: .utf8)
        try "1000\n".write(toFile: dir + "/serial", atomically: true, encoding: .utf8)
        try """
            [ca]
            default_ca = d
            [d]
            dir = \(dir)
            database = $dir/index.txt
            new_certs_dir = $dir/newcerts
            serial = $dir/serial
            default_md = sha256
            policy = p
            [p]
            commonName = supplied
            [ext]
            subjectAltName = IP:\(host)

            """.write(toFile: dir + "/ca.cnf", atomically: true, encoding: .utf8)
        try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/server.key", "-out", dir + "/server.csr", "-subj", "/CN=\(host)"], in: work)
        try openssl(["ca", "-batch", "-config", dir + "/ca.cnf", "-cert", tls.caCertificate, "-keyfile", tls.caKey, "-in", dir + "/server.csr",
                     "-out", dir + "/server.crt", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extensions", "ext", "-notext"], in: work)
        return (dir + "/server.crt", dir + "/server.key")
    }

    /// `openssl s_server` with `certificate`, answering HTTPS on `host:port` (it ignores SIGTERM:
    /// stop it with SIGKILL).
    func openSSLServer(host: String, port: Int, certificate: (String, String), in work: Workspace) throws -> ChildProcess {
        try cli.start(["/usr/bin/openssl", "s_server", "-accept", "\(host):\(port)", "-cert", certificate.0, "-key", certificate.1, "-www", "-quiet"],
                      in: work, executable: "/usr/bin/openssl")
    }
}

/// Whether the TLS migration tests run: when the sandbox was started with `--tls`, and always
/// (failing when it was not) with PGHA_REQUIRE_TLS_SANDBOX=1.
enum TLSSandbox {
    static var required: Bool { TestEnvironment.variables["PGHA_REQUIRE_TLS_SANDBOX"] == "1" }

    static var enabled: Bool {
        if required { return true }
        guard SandboxFixture.enabled, let sandbox = try? SandboxConfiguration.load(baseDir: SandboxFixture.baseDir) else { return false }
        return sandbox.tls != nil
    }
}
