import Foundation
import HTTPClient
import Testing
import TestSupport

@testable import Patroni

/// Decoding must never crash, whatever Patroni (or something pretending to be it) sends.
@Suite("Decoding mutated Patroni answers never crashes", .serialized)
struct PatroniFuzzTests {
    /// Values of every JSON type, to put where a field's real value was.
    static let replacements: [JSONValue] = [
        .null, .bool(true), .int(-1), .int(Int64.max), .double(1.5), .string(""), .string("unknown"),
        .array([]), .array([.int(1)]), .object([:]), .object(["x": .null]),
    ]

    /// Bytes that matter to a JSON parser, for insertion.
    static let syntax = Array(#"{}[]",:0-9eE.tfn\"#.utf8)

    private static func encode(_ value: JSONValue) throws -> [UInt8] {
        [UInt8](try JSONEncoder().encode(value))
    }

    @Test("every strict prefix of every fixture is a malformed answer", arguments: Fixture.clusters + Fixture.nodeStatuses + Fixture.histories)
    func truncated(name: String) async throws {
        var breather = Breather()
        let bytes = try Fixture.bytes(name)
        for length in 0..<bytes.count {
            await breather.breathe()
            let prefix = Array(bytes[..<length])
            do {
                if name.contains("history") {
                    _ = try PatroniDecoder.history(prefix)
                } else if name.contains("cluster") {
                    _ = try PatroniDecoder.cluster(prefix)
                } else {
                    _ = try PatroniDecoder.nodeStatus(prefix)
                }
                Issue.record("\(name) cut at \(length) bytes decoded")
            } catch {
                #expect(error.code == .malformedAnswer)
                #expect(error.field == "(document)")
            }
        }
    }

    @Test("a wrong type in any member field fails only for the name", arguments: Fixture.clusters)
    func wrongTypesInMembers(name: String) async throws {
        var breather = Breather()
        let original = try JSONDecoder().decode(JSONValue.self, from: Data(try Fixture.bytes(name)))
        let members = try #require(original["members"]?.arrayValue)
        var cases = 0
        for (index, member) in members.enumerated() {
            for key in try #require(member.objectValue).keys {
                for replacement in Self.replacements where replacement != member[key] {
                    await breather.breathe()
                    var mutatedMember = try #require(member.objectValue)
                    mutatedMember[key] = replacement
                    var mutatedMembers = members
                    mutatedMembers[index] = .object(mutatedMember)
                    var document = try #require(original.objectValue)
                    document["members"] = .array(mutatedMembers)
                    cases += 1
                    let bytes = try Self.encode(.object(document))
                    do {
                        let cluster = try PatroniDecoder.cluster(bytes)
                        #expect(key != "name" || replacement.stringValue.map { !$0.isEmpty } == true, "\(key) = \(replacement)")
                        #expect(cluster.members.count == members.count)
                    } catch {
                        if key == "name" {
                            #expect(error.code == .malformedAnswer)
                            #expect(error.field == "members[\(index)].name")
                        } else if key == "role" {
                            // A replica turned into a second leader.
                            #expect(error.code == .inconsistentTopology, "\(key) = \(replacement): \(error)")
                        } else {
                            Issue.record("\(name): members[\(index)].\(key) = \(replacement) failed: \(error)")
                        }
                    }
                }
            }
        }
        #expect(cases > 50)
    }

    @Test("a wrong type in any top-level /cluster field fails only for members", arguments: Fixture.clusters)
    func wrongTypesAtTop(name: String) async throws {
        var breather = Breather()
        let original = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(try Fixture.bytes(name))).objectValue)
        for key in original.keys {
            for replacement in Self.replacements where replacement != original[key] {
                await breather.breathe()
                var document = original
                document[key] = replacement
                let bytes = try Self.encode(.object(document))
                do {
                    _ = try PatroniDecoder.cluster(bytes)
                    #expect(key != "members" || replacement.arrayValue == [], "members = \(replacement)")
                } catch {
                    #expect(key == "members", "\(key) = \(replacement): \(error)")
                    #expect(error.code == .malformedAnswer)
                }
            }
        }
    }

    @Test("a wrong type in any /patroni field still decodes", arguments: Fixture.nodeStatuses)
    func wrongTypesInNodeStatus(name: String) async throws {
        var breather = Breather()
        let original = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(try Fixture.bytes(name))).objectValue)
        for key in original.keys {
            for replacement in Self.replacements {
                await breather.breathe()
                var document = original
                document[key] = replacement
                #expect(throws: Never.self, "\(key) = \(replacement)") {
                    _ = try PatroniDecoder.nodeStatus(try Self.encode(.object(document)))
                }
            }
        }
        // And nested: every xlog / patroni / replication field.
        for container in ["xlog", "patroni"] {
            guard let inner = original[container]?.objectValue else { continue }
            for key in inner.keys {
                for replacement in Self.replacements {
                    await breather.breathe()
                    var mutated = inner
                    mutated[key] = replacement
                    var document = original
                    document[container] = .object(mutated)
                    let status = try PatroniDecoder.nodeStatus(try Self.encode(.object(document)))
                    #expect(status.state == original["state"]?.stringValue.map(PatroniMemberState.init(rawValue:)))
                }
            }
        }
    }

    @Test("history rows with wrong types or too few elements are malformed, never a crash")
    func historyRows() throws {
        let good: JSONValue = .array([.int(1), .int(100), .string("r"), .string("t"), .string("m")])
        for position in 0..<5 {
            for replacement in Self.replacements {
                var row = try #require(good.arrayValue)
                row[position] = replacement
                let bytes = try Self.encode(.array([.array(row)]))
                let fits: Bool
                switch (position, replacement) {
                case (0, .int), (1, .int), (2, .string): fits = true
                default: fits = position >= 3
                }
                do {
                    let entries = try PatroniDecoder.history(bytes)
                    #expect(fits, "position \(position) = \(replacement)")
                    #expect(entries.count == 1)
                } catch {
                    #expect(!fits, "position \(position) = \(replacement): \(error)")
                    #expect(error.code == .malformedAnswer)
                    #expect(error.field?.hasPrefix("[0]") == true, "\(error)")
                }
            }
        }
        for count in 0..<3 {
            let row = Array(try #require(good.arrayValue)[..<count])
            #expect(throws: PatroniError.self) { try PatroniDecoder.history(try Self.encode(.array([.array(row)]))) }
        }
        let wide = try PatroniDecoder.history(Array(#"[[1, 2, "r", "t", "m", "extra", {"x": 1}]]"#.utf8))
        #expect(wide.first?.newLeader == "m")
        #expect(throws: PatroniError.self) { try PatroniDecoder.history(Array(#"{"history": []}"#.utf8)) }
    }

    @Test("deep nesting is refused or read, never a stack overflow", arguments: [64, 10_000, 200_000])
    func deepNesting(depth: Int) {
        let nested = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        let inTags = #"{"members": [{"name": "a", "role": "leader", "tags": {"deep": "# + nested + "}}]}"
        let atTop = String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        do {
            let cluster = try PatroniDecoder.cluster(Array(inTags.utf8))
            #expect(cluster.members.count == 1)
        } catch {
            #expect(error.code == .malformedAnswer)
        }
        #expect(throws: PatroniError.self) { try PatroniDecoder.cluster(Array(atTop.utf8)) }
        do {
            _ = try PatroniDecoder.config(Array(atTop.utf8))
        } catch {
            #expect(error.code == .malformedAnswer)
        }
    }

    @Test("non-UTF-8 bytes are a malformed answer")
    func nonUTF8() throws {
        var bytes = try Fixture.bytes("v4/cluster.json")
        let at = try #require(bytes.firstRange(of: Array("m2".utf8))).lowerBound
        bytes.replaceSubrange(at..<(at + 2), with: [0xFF, 0xFE])
        let error = #expect(throws: PatroniError.self) { try PatroniDecoder.cluster(bytes) }
        #expect(error?.code == .malformedAnswer)
        #expect(throws: PatroniError.self) { try PatroniDecoder.nodeStatus([0xC3, 0x28, 0xA0, 0xA1]) }
    }

    @Test("lag as a string, a float, or negative")
    func oddLags() throws {
        let json = #"{"members": [{"name": "a", "lag": "unknown", "receive_lag": 12.0, "replay_lag": -5, "port": "5432", "timeline": 1e3}]}"#
        let member = try #require(try PatroniDecoder.cluster(Array(json.utf8)).members.first)
        #expect(member.lag == nil)
        #expect(member.receiveLag == 12)
        #expect(member.replayLag == -5)
        #expect(member.port == 5432)
        #expect(member.timeline == 1000)
    }

    @Test("a large but valid answer decodes (the size cap is the HTTP layer's job)")
    func large() async throws {
        await Task.yield()
        let member = #"{"name": "m%d", "role": "replica", "state": "streaming", "lag": 0, "tags": {"note": "%@"}}"#
        let pad = String(repeating: "x", count: 200)
        let members = (0..<5_000).map { member.replacingOccurrences(of: "%d", with: String($0)).replacingOccurrences(of: "%@", with: pad) }
        let json = #"{"members": ["# + members.joined(separator: ",") + "]}"
        let cluster = try PatroniDecoder.cluster(Array(json.utf8))
        #expect(cluster.members.count == 5_000)
        #expect(cluster.leader == nil)
    }

    @Test("random byte mutations of every fixture never crash and only ever fail as malformed or inconsistent")
    func randomMutations() async throws {
        var breather = Breather()
        var rng = SplitMix64(seed: 0x5EED_CAFE)
        var decoded = 0
        var failed = 0
        for name in Fixture.clusters + Fixture.nodeStatuses + Fixture.histories {
            let original = try Fixture.bytes(name)
            for _ in 0..<200 {
                await breather.breathe()
                var bytes = original
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let position = Int(rng.next() % UInt64(max(1, bytes.count)))
                    switch rng.next() % 4 {
                    case 0: bytes[position] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: bytes.insert(Self.syntax[Int(rng.next() % UInt64(Self.syntax.count))], at: position)
                    case 2: if !bytes.isEmpty { bytes.remove(at: position) }
                    default: bytes.insert(contentsOf: bytes[position..<min(bytes.count, position + 8)], at: position)
                    }
                }
                do {
                    if name.contains("history") {
                        _ = try PatroniDecoder.history(bytes)
                    } else if name.contains("cluster") {
                        _ = try PatroniDecoder.cluster(bytes)
                    } else {
                        _ = try PatroniDecoder.nodeStatus(bytes)
                    }
                    decoded += 1
                } catch {
                    failed += 1
                    #expect(error.code == .malformedAnswer || error.code == .inconsistentTopology)
                }
            }
        }
        #expect(decoded > 0)
        #expect(failed > 0)
    }
}

/// A small deterministic PRNG so the mutation test is reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// These loops are CPU-bound, and Swift's cooperative pool has only as many threads as cores:
/// yielding now and then lets the other tests' tasks (with their timing checks) run meanwhile.
struct Breather {
    private var count = 0
    mutating func breathe() async {
        count += 1
        if count % 8 == 0 { await Task.yield() }
    }
}

/// Servers that start an answer and never finish it: a body that stalls mid-transfer, a
/// close-delimited answer from a server that never closes, a chunked answer without its last
/// chunk, a server that trickles one byte at a time. Each request ends by the client's own
/// timeout (curl's code 28, not a hang: the time limit below fails the test instead of waiting
/// for ever), with an error naming the host; the Patroni client answers from another member.
@Suite("Hostile Patroni servers", .timeLimit(.minutes(1)))
struct HostileServerTests {
    static let partial = Array(#"{"members": [{"name": "m1", "role": "lea"#.utf8)

    enum Kind: String, CaseIterable, Sendable {
        case stalledBody, neverCloses, unfinishedChunks, trickle

        var reply: LoopbackServer.Reply {
            switch self {
            case .stalledBody: return .stall(Canned.response(body: HostileServerTests.partial, contentLength: 5_000))
            case .neverCloses: return .stall(Canned.closeDelimited(Array(#"{"members": []}"#.utf8)))
            case .unfinishedChunks: return .stall(Canned.unfinishedChunks(HostileServerTests.partial))
            case .trickle: return .trickle(Canned.response(body: HostileServerTests.partial, contentLength: 5_000), every: .milliseconds(20), byte: 0x20)
            }
        }
    }

    @Test("HTTPClient: the transfer ends by the timeout, and the error names the host", arguments: Kind.allCases)
    func httpClient(_ kind: Kind) throws {
        let server = try LoopbackServer(reply: kind.reply)
        defer { server.stop() }
        let client = HTTPClient(configuration: .init(totalTimeout: .seconds(30)))
        let error = #expect(throws: HTTPError.self) {
            try client.send(HTTPRequest(url: server.baseURL + "/cluster"), timeout: .milliseconds(300))
        }
        #expect(error?.code == .timeout, "\(String(describing: error))")
        #expect(error?.curlCode == 28)
        #expect(error?.description.contains("127.0.0.1:\(server.port)") == true, "\(String(describing: error))")
        #expect(server.requests.count == 1)
    }

    @Test("PatroniClient: a stalling member is skipped, and its failure names it", arguments: Kind.allCases)
    func patroniClient(_ kind: Kind) async throws {
        let hostile = try LoopbackServer(reply: kind.reply)
        defer { hostile.stop() }
        let healthy = try LoopbackServer(reply: .bytes(Canned.response(body: Array(try Fixture.text("v4/cluster.json").utf8), close: true), close: true))
        defer { healthy.stop() }
        let endpoints = [PatroniEndpoint(host: "127.0.0.1", port: hostile.port), PatroniEndpoint(host: "127.0.0.1", port: healthy.port)]
        let patroni = PatroniClient(configuration: PatroniClientConfiguration(endpoints: endpoints, requestTimeout: .milliseconds(300), actionTimeout: .seconds(5)))

        let answer = try await patroni.cluster()
        #expect(answer.endpoint == endpoints[1])
        #expect(answer.value.leader?.name == "m1")

        let each = await patroni.clusterFromEach()
        guard case .failure(let error)? = each[endpoints[0]] else {
            Issue.record("the \(kind) member cannot have answered: \(String(describing: each[endpoints[0]]))")
            return
        }
        #expect(error.httpError?.code == .timeout, "\(error)")
        #expect(error.description.contains("127.0.0.1:\(hostile.port)"), "\(error)")
        #expect((try? each[endpoints[1]]?.get()) != nil)
    }

    @Test("PatroniClient: when every member stalls, the error lists each host with its timeout")
    func allStall() async throws {
        let servers = try Kind.allCases.map { try LoopbackServer(reply: $0.reply) }
        defer { servers.forEach { $0.stop() } }
        let endpoints = servers.map { PatroniEndpoint(host: "127.0.0.1", port: $0.port) }
        let patroni = PatroniClient(configuration: PatroniClientConfiguration(endpoints: endpoints, requestTimeout: .milliseconds(300), actionTimeout: .seconds(5)))
        let error = await #expect(throws: PatroniError.self) { try await patroni.cluster() }
        #expect(error?.code == .allEndpointsFailed)
        for endpoint in endpoints {
            #expect(error?.failures[endpoint]?.httpError?.code == .timeout, "\(endpoint): \(String(describing: error?.failures[endpoint]))")
            #expect(error?.message.contains("\(endpoint)") == true)
        }
    }
}
