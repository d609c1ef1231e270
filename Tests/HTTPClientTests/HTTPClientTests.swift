import TestSupport
import Foundation
import Testing

@testable import HTTPClient

@Suite("HTTPClient against a loopback server", .timeLimit(.minutes(1)))
struct HTTPClientTests {
    @Test("GET returns status, headers and a JSON body; sends method, path and User-Agent")
    func getJSON() throws {
        let server = try LoopbackServer(reply: .bytes(Canned.json(#"{"members": []}"#), close: false))
        defer { server.stop() }
        let client = HTTPClient()
        let response = try client.send(HTTPRequest(url: server.baseURL + "/cluster?x=1"))
        #expect(response.status == 200)
        #expect(response.isSuccess)
        #expect(response.text == #"{"members": []}"#)
        #expect(response.headers["content-type"] == "application/json")
        #expect(response.elapsed > .zero)
        let request = try #require(server.requests.first)
        #expect(request.method == "GET")
        #expect(request.target == "/cluster?x=1")
        #expect(request.header("User-Agent") == "pgha")
        #expect(request.header("Expect") == nil)
    }

    @Test("any status is a response; sendExpectingSuccess maps non-2xx to .httpStatus", arguments: [201, 204, 301, 404, 412, 500, 503])
    func statuses(status: Int) throws {
        let body = status == 204 ? "" : "<html><body><p>Switchover   failed</p></body></html>"
        let server = try LoopbackServer(reply: .bytes(Canned.response(status: status, reason: "X", body: Array(body.utf8)), close: false))
        defer { server.stop() }
        let client = HTTPClient()
        let request = HTTPRequest(url: server.baseURL + "/primary")
        let response = try client.send(request)
        #expect(response.status == status)
        #expect(response.isSuccess == (200..<300).contains(status))
        if (200..<300).contains(status) {
            #expect(try client.sendExpectingSuccess(request).status == status)
        } else {
            let error = #expect(throws: HTTPError.self) { try client.sendExpectingSuccess(request) }
            #expect(error?.code == .httpStatus)
            #expect(error?.status == status)
            #expect(error?.message.contains("Switchover failed") == true)
        }
    }

    @Test("POST/PATCH/PUT/DELETE send their method, body and Content-Type", arguments: [HTTPMethod.post, .patch, .put, .delete])
    func methodsAndBodies(method: HTTPMethod) throws {
        struct Body: Encodable { var leader: String; var candidate: String? }
        let server = try LoopbackServer(reply: .bytes(Canned.response(body: Array("ok".utf8)), close: false))
        defer { server.stop() }
        let client = HTTPClient()
        let request = try HTTPRequest.json(method, url: server.baseURL + "/switchover", body: Body(leader: "m1", candidate: nil))
        _ = try client.send(request)
        let seen = try #require(server.requests.first)
        #expect(seen.method == method.rawValue)
        #expect(seen.header("Content-Type") == "application/json")
        #expect(String(decoding: seen.body, as: UTF8.self) == #"{"leader":"m1"}"#)
        #expect(seen.header("Expect") == nil)
    }

    @Test("a POST without a body sends Content-Length: 0")
    func emptyPost() throws {
        let server = try LoopbackServer(reply: .bytes(Canned.response(body: []), close: false))
        defer { server.stop() }
        _ = try HTTPClient().send(HTTPRequest(method: .post, url: server.baseURL + "/restart"))
        let seen = try #require(server.requests.first)
        #expect(seen.method == "POST")
        #expect(seen.header("Content-Length") == "0")
    }

    /// The configured total timeout is 10 minutes, longer than the suite's time limit: only the
    /// request's own 200 ms timeout can end this with curl's code 28.
    @Test("a server that never answers ends with .timeout, by the request's own timeout")
    func timeout() throws {
        let server = try LoopbackServer(reply: .silence)
        defer { server.stop() }
        let client = HTTPClient(configuration: .init(totalTimeout: .seconds(600)))
        let error = #expect(throws: HTTPError.self) {
            try client.send(HTTPRequest(url: server.baseURL + "/cluster"), timeout: .milliseconds(200))
        }
        #expect(error?.code == .timeout)
        #expect(error?.curlCode == 28)
        #expect(server.requests.count == 1)
    }

    @Test("a closed port fails fast with .connectionRefused")
    func refused() throws {
        let port = try closedPort()
        // With 10-minute timeouts, only the refusal itself can end this (as .connectionRefused,
        // not .timeout).
        let client = HTTPClient(configuration: .init(connectTimeout: .seconds(600), totalTimeout: .seconds(600)))
        let error = #expect(throws: HTTPError.self) { try client.send(HTTPRequest(url: "http://127.0.0.1:\(port)/cluster")) }
        #expect(error?.code == .connectionRefused)
        #expect(error?.isConnectFailure == true)
    }

    @Test("a body over the cap aborts with .bodyTooLarge (declared length and close-delimited)", arguments: [true, false])
    func bodyCap(declared: Bool) throws {
        let big = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024)
        let bytes = declared ? Canned.response(body: big) : Canned.closeDelimited(big)
        let server = try LoopbackServer(reply: .bytes(bytes, close: true))
        defer { server.stop() }
        let client = HTTPClient(configuration: .init(maxBodyBytes: 1000))
        let error = #expect(throws: HTTPError.self) { try client.send(HTTPRequest(url: server.baseURL + "/history")) }
        #expect(error?.code == .bodyTooLarge)
        #expect(error?.message.contains("1000") == true)
        // Exactly at the cap is fine.
        let exact = try LoopbackServer(reply: .bytes(Canned.closeDelimited(Array(big[..<1000])), close: true))
        defer { exact.stop() }
        #expect(try client.send(HTTPRequest(url: exact.baseURL + "/")).body.count == 1000)
    }

    @Test("a connection closed mid-body is .unreadableBody")
    func truncatedBody() throws {
        let bytes = Canned.response(body: Array(#"{"members": [{"name": "m1""#.utf8), contentLength: 500)
        let server = try LoopbackServer(reply: .bytes(bytes, close: true))
        defer { server.stop() }
        let error = #expect(throws: HTTPError.self) { try HTTPClient().send(HTTPRequest(url: server.baseURL + "/cluster")) }
        #expect(error?.code == .unreadableBody)
        #expect(error?.curlCode == 18)
    }

    @Test("a connection closed before any answer is .transport")
    func hangUp() throws {
        let server = try LoopbackServer(reply: .hangUp)
        defer { server.stop() }
        let error = #expect(throws: HTTPError.self) { try HTTPClient().send(HTTPRequest(url: server.baseURL + "/cluster")) }
        #expect(error?.code == .transport)
        #expect(error?.curlCode == 52)
    }

    @Test("basic auth goes in the Authorization header, never in the URL or an error")
    func basicAuth() throws {
        let server = try LoopbackServer(reply: .bytes(Canned.response(status: 401, body: Array("bad s3cr3t!".utf8)), close: false))
        defer { server.stop() }
        let auth = HTTPBasicAuth(user: "patroni", password: "s3cr3t!")
        let client = HTTPClient(configuration: .init(basicAuth: auth))
        let request = HTTPRequest(method: .post, url: server.baseURL + "/switchover")
        let error = #expect(throws: HTTPError.self) { try client.sendExpectingSuccess(request) }
        let seen = try #require(server.requests.first)
        let expected = "Basic " + Data("patroni:s3cr3t!".utf8).base64EncodedString()
        #expect(seen.header("Authorization") == expected)
        #expect(!seen.target.contains("s3cr3t"))
        #expect(error?.status == 401)
        #expect(error.map { !"\($0)".contains("s3cr3t!") } == true)
        #expect(!"\(auth)".contains("s3cr3t"))
        #expect(!String(reflecting: auth).contains("s3cr3t"))
    }

    @Test("the password appears in no error description, whatever fails")
    func passwordNeverInErrors() throws {
        let password = "hunter2-Pa55"
        let silent = try LoopbackServer(reply: .silence)
        defer { silent.stop() }
        let client = HTTPClient(configuration: .init(basicAuth: .init(user: "u", password: password)))
        var errors: [HTTPError] = []
        let urls = [
            silent.baseURL + "/x", "http://127.0.0.1:\(try closedPort())/x", "http://u:\(password)@127.0.0.1:1/x",
            "ftp://127.0.0.1/\(password.count)", "not a url",
        ]
        for url in urls {
            do { _ = try client.send(HTTPRequest(url: url), timeout: .milliseconds(100)) } catch { errors.append(error) }
        }
        #expect(errors.count == urls.count)
        for error in errors {
            #expect(!error.description.contains(password))
            #expect(!error.url.contains(password))
        }
    }

    @Test("credentials in the URL and CR/LF in headers are refused before anything is sent")
    func invalidRequests() throws {
        let client = HTTPClient()
        let withCredentials = #expect(throws: HTTPError.self) {
            try client.send(HTTPRequest(url: "http://admin:topsecret@127.0.0.1:8008/cluster"))
        }
        #expect(withCredentials?.code == .invalidRequest)
        #expect(withCredentials?.url == "http://127.0.0.1:8008/cluster")
        #expect(withCredentials.map { !$0.description.contains("topsecret") } == true)

        var headers = HTTPHeaders()
        headers.add(name: "X-Evil", value: "a\r\nHost: other")
        let injected = #expect(throws: HTTPError.self) {
            try client.send(HTTPRequest(url: "http://127.0.0.1:1/", headers: headers))
        }
        #expect(injected?.code == .invalidRequest)
        let badScheme = #expect(throws: HTTPError.self) { try client.send(HTTPRequest(url: "file:///etc/passwd")) }
        #expect(badScheme?.code == .invalidRequest)
        let malformed = #expect(throws: HTTPError.self) { try client.send(HTTPRequest(url: "http://[::1")) }
        #expect(malformed?.code == .invalidRequest)
    }

    @Test("TLS failures are .tls: HTTPS to a plain server, unreadable CA file")
    func tlsFailures() throws {
        let server = try LoopbackServer(greeting: Canned.json("{}", status: 400, close: true)) { _ in .hangUp }
        defer { server.stop() }
        let https = "https://127.0.0.1:\(server.port)/cluster"
        let plain = #expect(throws: HTTPError.self) { try HTTPClient().send(HTTPRequest(url: https)) }
        #expect(plain?.code == .tls)
        let badCA = HTTPClient(configuration: .init(tls: .init(caFile: "/nonexistent/ca.pem")))
        let error = #expect(throws: HTTPError.self) { try badCA.send(HTTPRequest(url: https)) }
        #expect(error?.code == .tls)
    }

    @Test("handles are reused, so keep-alive connections are too")
    func keepAlive() throws {
        let server = try LoopbackServer(reply: .bytes(Canned.json("{}"), close: false))
        defer { server.stop() }
        let client = HTTPClient()
        for _ in 0..<5 { _ = try client.send(HTTPRequest(url: server.baseURL + "/cluster")) }
        #expect(server.requests.count == 5)
        #expect(server.connectionCount == 1)
        #expect(client.idleHandleCount == 1)
    }

    /// Latency is measured by `pgha bench refresh` against real Patroni (docs/BENCHMARKS.md);
    /// what a unit test can check without a clock is that many requests share one connection.
    @Test("300 requests in a row reuse one keep-alive connection")
    func oneConnectionForManyRequests() throws {
        let body = String(repeating: "x", count: 900)
        let server = try LoopbackServer(reply: .bytes(Canned.json(#"{"a":"\#(body)"}"#), close: false))
        defer { server.stop() }
        let client = HTTPClient()
        for _ in 0..<300 { #expect(try client.send(HTTPRequest(url: server.baseURL + "/cluster")).body.count == 908) }
        #expect(server.requests.count == 300)
        #expect(server.connectionCount == 1)
    }

    @Test("async send works and many run concurrently")
    func asyncConcurrent() async throws {
        let server = try LoopbackServer { request in .bytes(Canned.json(#"{"path":"\#(request.target)"}"#), close: false) }
        defer { server.stop() }
        let client = HTTPClient()
        let texts = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<20 {
                group.addTask { try await client.send(HTTPRequest(url: server.baseURL + "/\(i)")).text }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(texts).count == 20)
    }

    @Test("cancelling the task resumes it at once with .cancelled")
    func asyncCancellation() async throws {
        let server = try LoopbackServer(reply: .silence)
        defer { server.stop() }
        let client = HTTPClient()
        let task = Task { () async throws(HTTPError) -> HTTPResponse in
            try await client.send(HTTPRequest(url: server.baseURL + "/cluster"), timeout: .seconds(600))
        }
        #expect(await server.waitForRequests(1, within: .seconds(20)))
        task.cancel()
        // .cancelled, not the 600 s .timeout: the cancellation ended it.
        let result = await task.result
        guard case .failure(let error) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect((error as? HTTPError)?.code == .cancelled)
    }

    @Test("a task cancelled before sending never reaches the server")
    func cancelledBeforeStart() async throws {
        let server = try LoopbackServer(reply: .bytes(Canned.json("{}"), close: false))
        defer { server.stop() }
        let client = HTTPClient()
        let task = Task { () async throws(HTTPError) -> HTTPResponse in
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.send(HTTPRequest(url: server.baseURL + "/cluster"))
        }
        let result = await task.result
        guard case .failure(let error) = result else {
            Issue.record("expected a failure, got \(result)")
            return
        }
        #expect((error as? HTTPError)?.code == .cancelled)
        #expect(server.requests.isEmpty)
    }
}

@Suite("HTTPClient values")
struct HTTPClientValueTests {
    @Test("credentials are stripped from URLs", arguments: [
        ("http://u:p@h:1/x", "http://h:1/x"),
        ("https://user@host/path?q=a@b", "https://host/path?q=a@b"),
        ("http://host:8008/cluster", "http://host:8008/cluster"),
        ("http://a:b@[::1]:8008/", "http://[::1]:8008/"),
        ("no scheme@here", "no scheme@here"),
    ])
    func redaction(input: String, expected: String) {
        #expect(HTTPError.redactingCredentials(in: input) == expected)
    }

    @Test("headers are case-insensitive and ordered")
    func headers() {
        var headers: HTTPHeaders = ["Content-Type": "text/plain"]
        headers.add(name: "X-A", value: "1")
        headers.add(name: "x-a", value: "2")
        #expect(headers["content-type"] == "text/plain")
        #expect(headers.values(for: "X-A") == ["1", "2"])
        headers.replaceOrAdd(name: "X-a", value: "3")
        #expect(headers.values(for: "x-A") == ["3"])
        #expect(headers.count == 2)
    }

    @Test("durations become positive whole milliseconds for libcurl")
    func milliseconds() {
        #expect(Duration.milliseconds(500).curlMilliseconds == 500)
        #expect(Duration.microseconds(1).curlMilliseconds == 1)
        #expect(Duration.microseconds(1500).curlMilliseconds == 2)
        #expect(Duration.zero.curlMilliseconds == 1)
        #expect(Duration.seconds(-3).curlMilliseconds == 1)
        #expect(Duration.seconds(2).curlMilliseconds == 2000)
    }

    @Test("body excerpts drop HTML and collapse whitespace")
    func excerpt() {
        let html = "<!DOCTYPE HTML>\n<html>\n <body>\n  <h1>Error response</h1>\n  <p>Error code: 400</p>\n </body>\n</html>\n"
        let response = HTTPResponse(status: 400, body: Array(html.utf8))
        #expect(response.bodyExcerpt() == "Error response Error code: 400")
        #expect(HTTPResponse(status: 500, body: Array(String(repeating: "y", count: 500).utf8)).bodyExcerpt(limit: 10).count == 11)
    }

    @Test("error descriptions name code, URL, status and curl code")
    func errorDescription() {
        let error = HTTPError(code: .timeout, url: "http://x:y@h/p", status: nil, message: "too slow", curlCode: 28)
        #expect(error.description == "HTTP timeout for http://h/p: too slow [curl 28]")
    }
}

/// A TCP port on 127.0.0.1 where nothing listens.
func closedPort() throws -> Int {
    let server = try LoopbackServer(reply: .hangUp)
    let port = server.port
    server.stop()
    return port
}
