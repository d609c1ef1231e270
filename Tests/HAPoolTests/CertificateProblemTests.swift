import Foundation
import Logging
import TestSupport
import Testing
@testable import HAPool

/// TLS failures as libpq and libcurl word them (messages copied from real failures on this
/// machine), recognised and turned into the fix; the pool ends its start-up at the first round
/// of them instead of waiting out its timeout (pool time: a fake clock, see BrokenRESTAPITests).
@Suite struct CertificateProblemTests {
    @Test("libpq's and libcurl's TLS messages are recognised", arguments: [
        (#"connection to server at "127.0.0.10", port 15432 failed: SSL error: certificate verify failed"#, CertificateProblem.Kind.verifyFailed),
        (#"server certificate for "127.0.0.1" (and 4 other names) does not match host name "127.0.0.20""#, .wrongHost),
        (#"root certificate file "/etc/pgha/ca.crt" does not exist"#, .unreadableFile),
        (#"could not open certificate file "/etc/pgha/client.crt": No such file or directory"#, .unreadableFile),
        (#"SSL error: tlsv13 alert certificate required"#, .clientCertificateRefused),
        (#"server does not support SSL, but SSL was required"#, .serverWithoutTLS),
        ("Patroni transport from https://127.0.0.17:8008/cluster: tls: SSL certificate problem: certificate has expired", .expired),
        ("tls: SSL certificate problem: certificate is not yet valid", .notYetValid),
        ("tls: SSL certificate problem: self-signed certificate in certificate chain", .untrusted),
        ("tls: SSL certificate problem: unable to get local issuer certificate", .untrusted),
        ("tls: SSL: no alternative certificate subject name matches target host name '127.0.0.18'", .wrongHost),
        ("tls: OpenSSL/3.0.17: error:0A00010B:SSL routines::wrong version number", .serverWithoutTLS),
    ])
    func recognised(_ message: String, _ kind: CertificateProblem.Kind) {
        #expect(CertificateProblem(message: message)?.kind == kind, "\(message)")
    }

    @Test("other failures are not TLS problems", arguments: [
        "connectionRefused: Failed to connect to 127.0.0.14 port 8008: Connection refused",
        #"password authentication failed for user "dpg_cluster""#,
        "timeout: Connection timed out after 300 milliseconds",
        "malformedAnswer: members: expected an array",
    ])
    func notTLS(_ message: String) {
        #expect(CertificateProblem(message: message) == nil)
    }

    @Test("the advice names the server, the setting, the file and a command that shows the certificate")
    func advice() {
        let advice = CertificateProblem(kind: .untrusted).advice(
            server: "127.0.0.14:8008", caSetting: "PATRONI_API_CAFILE", caFile: "/etc/pgha/ca.crt", certSetting: "PATRONI_API_CERTFILE", postgres: false)
        #expect(advice.contains("127.0.0.14:8008") && advice.contains("PATRONI_API_CAFILE (/etc/pgha/ca.crt)"))
        #expect(advice.contains("openssl s_client -connect 127.0.0.14:8008 -CAfile /etc/pgha/ca.crt"))
        let postgres = CertificateProblem(kind: .verifyFailed).advice(
            server: "127.0.0.10:15432", caSetting: "source.sslrootcert", caFile: nil, certSetting: "source.sslcert", postgres: true)
        #expect(postgres.contains("-starttls postgres") && !postgres.contains("-CAfile"))
        for kind in CertificateProblem.Kind.allCases {
            #expect(!CertificateProblem(kind: kind).advice(server: "h:1", caSetting: "S", caFile: nil, certSetting: "C", postgres: true).isEmpty)
        }
    }

    @Test("HTTPS to a REST host that speaks plain HTTP ends start-up at once, named as a TLS problem")
    func startUpEndsAtTheFirstTLSFailure() async throws {
        // The greeting is sent on accept: an HTTP answer where the client expects a TLS ServerHello.
        let server = try LoopbackServer(greeting: Canned.json(#"{"members":[]}"#)) { _ in .hangUp }
        defer { server.stop() }
        let harness = try BrokenRESTAPITests.Harness(port: server.port, useTLS: true)
        let (failure, took) = await harness.start(timeout: .seconds(20))
        await harness.pool.close()
        let error = try #require(failure)
        #expect(error.code == .topologyUnavailable, "\(error)")
        let certificate = try #require(error.certificate, "\(error)")
        #expect(certificate.server == "127.0.0.1:\(server.port)" && certificate.problem.kind == .serverWithoutTLS, "\(error)")
        #expect(error.message.contains("could be verified"), "\(error)")
        // Not the 20 s timeout: the first failed round decides, at the start waiter's first look
        // (50 ms of pool time; the fake clock moves only once the TLS attempt has ended).
        #expect(took <= .milliseconds(50), "\(took)")
    }
}
