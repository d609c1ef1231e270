import Testing

@testable import Patroni

@Suite("PatroniEndpoint parsing")
struct PatroniEndpointTests {
    @Test("accepted forms", arguments: [
        ("node1", "node1", 8008, false),
        ("node1:8010", "node1", 8010, false),
        ("  10.0.0.5:9000 ", "10.0.0.5", 9000, false),
        ("http://127.0.0.11:8008", "127.0.0.11", 8008, false),
        ("https://db.example.com", "db.example.com", 8008, true),
        ("HTTPS://db.example.com:8443/patroni", "db.example.com", 8443, true),
        ("http://127.0.0.1:18441/patroni", "127.0.0.1", 18441, false),
        ("[::1]:8008", "::1", 8008, false),
        ("[fe80::1%eth0]", "fe80::1%eth0", 8008, false),
        ("::1", "::1", 8008, false),
        ("http://[2001:db8::7]:8009/cluster?x", "2001:db8::7", 8009, false),
    ])
    func accepted(text: String, host: String, port: Int, tls: Bool) throws {
        let endpoint = try PatroniEndpoint.parse(text)
        #expect(endpoint == PatroniEndpoint(host: host, port: port, useTLS: tls))
        #expect(PatroniEndpoint(parsing: text) == endpoint)
    }

    @Test("refused forms say why", arguments: [
        "", "   ", "ftp://host", "host:0", "host:65536", "host:port", "user:pw@host:8008", "http://u:secret@host",
        "[::1", "[::1]x", "[host]:8008", "http://::1:8008", "host name", "host/path", "http://:8008",
    ])
    func refused(text: String) {
        let error = #expect(throws: PatroniError.self) { try PatroniEndpoint.parse(text) }
        #expect(error?.code == .invalidEndpoint)
        #expect(error.map { !$0.description.contains("secret") && !$0.description.contains("pw@") } == true)
        #expect(PatroniEndpoint(parsing: text) == nil)
    }

    @Test("defaults apply when the text has no port or scheme")
    func defaults() throws {
        #expect(try PatroniEndpoint.parse("h", defaultPort: 9008, defaultTLS: true) == PatroniEndpoint(host: "h", port: 9008, useTLS: true))
        #expect(try PatroniEndpoint.parse("http://h", defaultTLS: true).useTLS == false)
    }

    @Test("URLs and descriptions bracket IPv6 hosts")
    func rendering() {
        let v6 = PatroniEndpoint(host: "::1", port: 8008)
        #expect(v6.baseURL == "http://[::1]:8008")
        #expect(v6.url("/cluster") == "http://[::1]:8008/cluster")
        #expect(v6.description == "[::1]:8008")
        let tls = PatroniEndpoint(host: "db", port: 8443, useTLS: true)
        #expect(tls.baseURL == "https://db:8443")
        #expect(tls.url("history") == "https://db:8443/history")
        #expect(tls.description == "https://db:8443")
    }

    @Test("comma-separated lists skip blanks and duplicates")
    func lists() throws {
        let list = try PatroniEndpoint.parseList("127.0.0.11:8008, 127.0.0.12:8008,,127.0.0.11:8008 ,http://127.0.0.13")
        #expect(list.map(\.description) == ["127.0.0.11:8008", "127.0.0.12:8008", "127.0.0.13:8008"])
        #expect(throws: PatroniError.self) { try PatroniEndpoint.parseList("a:1,b:x") }
    }

    @Test("health check paths")
    func healthPaths() {
        #expect(PatroniHealthCheck.primary.path == "/primary")
        #expect(PatroniHealthCheck.replica(maxLagBytes: nil).path == "/replica")
        #expect(PatroniHealthCheck.replica(maxLagBytes: 1_048_576).path == "/replica?lag=1048576")
        #expect(PatroniHealthCheck.readOnly.path == "/read-only")
        #expect(PatroniHealthCheck.health.path == "/health")
        #expect(PatroniHealthCheck.liveness.path == "/liveness")
        #expect(PatroniHealthCheck.readiness.path == "/readiness")
    }

    @Test("configuration drops duplicate endpoints and forwards the body cap")
    func configuration() {
        let a = PatroniEndpoint(host: "a")
        var config = PatroniClientConfiguration(endpoints: [a, PatroniEndpoint(host: "b"), a])
        #expect(config.endpoints.count == 2)
        config.maxBodyBytes = 1234
        #expect(config.http.maxBodyBytes == 1234)
        #expect(config.requestTimeout <= .seconds(1))
        config.tls = PatroniTLS(caFile: "/ca.pem")
        config.credentials = PatroniCredentials(user: "u", password: "secret")
        #expect(config.http.tls?.caFile == "/ca.pem" && config.http.basicAuth?.user == "u")
        #expect(!"\(config.credentials!)".contains("secret"))
    }
}
