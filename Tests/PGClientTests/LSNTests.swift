import Foundation
import Testing

@testable import PGClient

@Suite("LSN")
struct LSNTests {
    @Test("parses and prints PostgreSQL's X/Y form", arguments: [
        ("16/B374D848", UInt64(0x16_B374_D848)),
        ("0/0", 0),
        ("0/1", 1),
        ("1/0", 0x1_0000_0000),
        ("FFFFFFFF/FFFFFFFF", .max),
        ("0/3000060", 0x300_0060),
    ])
    func roundTrip(text: String, value: UInt64) throws {
        let lsn = try #require(LSN(text))
        #expect(lsn.value == value)
        #expect(lsn.description == text)
        #expect(LSN(value).description == text)
    }

    @Test("accepts lower case and leading zeros, prints canonical form")
    func lenientInput() {
        #expect(LSN("16/b374d848")?.description == "16/B374D848")
        #expect(LSN("00000016/0000000A")?.description == "16/A")
    }

    @Test("rejects malformed input", arguments: [
        "", "/", "0/", "/0", "16", "16/B374D848/1", "G/0", "0/G", " 0/0", "0/0 ", "123456789/0",
        "0/123456789", "-1/0", "0x10/0", "16/B374 D848", "1//2",
    ])
    func rejects(text: String) {
        #expect(LSN(text) == nil)
    }

    @Test("orders by position and measures distance in bytes")
    func ordering() throws {
        let a = try #require(LSN("0/FFFFFFFF"))
        let b = try #require(LSN("1/0"))
        #expect(a < b)
        #expect(a.distance(to: b) == 1)
        #expect(b.distance(to: a) == -1)
        #expect(b - a == 1)
        #expect(a - b == -1)
        #expect([b, a, LSN.invalid].sorted() == [LSN.invalid, a, b])
        #expect(LSN.invalid.distance(to: LSN(.max)) == .max)
        #expect(LSN(.max).distance(to: LSN.invalid) == .min)
        #expect(LSN(5).distance(to: LSN(5)) == 0)
    }

    @Test("Codable as its string form")
    func codable() throws {
        let lsn = try #require(LSN("16/B374D848"))
        let data = try JSONEncoder().encode(["lsn": lsn])
        #expect(String(decoding: data, as: UTF8.self) == #"{"lsn":"16\/B374D848"}"#)
        let decoded = try JSONDecoder().decode([String: LSN].self, from: data)
        #expect(decoded["lsn"] == lsn)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([String: LSN].self, from: Data(#"{"lsn":"nope"}"#.utf8))
        }
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([String: LSN].self, from: Data(#"{"lsn":42}"#.utf8))
        }
    }
}
