import Testing

@testable import PGClient

@Suite("PGValue encoding")
struct PGValueTests {
    @Test("text representation and type OID of each case")
    func encoding() {
        let cases: [(PGValue, String?, UInt32)] = [
            (.null, nil, 0),
            (.text("héllo"), "héllo", 0),
            (.text(""), "", 0),
            (.int(42), "42", 20),
            (.int(-7), "-7", 20),
            (.int(.min), "-9223372036854775808", 20),
            (.int(.max), "9223372036854775807", 20),
            (.bool(true), "t", 16),
            (.bool(false), "f", 16),
            (.double(0.1), "0.1", 701),
            (.double(-2.5e-5), "-2.5e-05", 701),
            (.double(1e300), "1e+300", 701),
            (.double(.infinity), "Infinity", 701),
            (.double(-.infinity), "-Infinity", 701),
            (.double(.nan), "NaN", 701),
            (.bytes([]), "\\x", 17),
            (.bytes([0x00, 0x0A, 0xFF]), "\\x000aff", 17),
        ]
        for (value, text, oid) in cases {
            #expect(value.textRepresentation == text, "\(value)")
            #expect(value.typeOID == oid, "\(value)")
        }
    }

    @Test("doubles survive the round trip through their text form")
    func doubleRoundTrip() {
        for value in [0.1, 1.0 / 3.0, -123456.789, .leastNonzeroMagnitude, .greatestFiniteMagnitude] {
            #expect(Double(PGValue.double(value).textRepresentation!) == value)
        }
    }

    @Test("literals and optional initialisers")
    func literals() {
        let values: [PGValue] = ["a", 1, true, 2.5]
        #expect(values == [.text("a"), .int(1), .bool(true), .double(2.5)])
        #expect(PGValue(nil as String?) == .null)
        #expect(PGValue("x" as String?) == .text("x"))
        #expect(PGValue(nil as Int?) == .null)
        #expect(PGValue(3 as Int?) == .int(3))
        #expect(PGValue.lsn(LSN(0x1_0000_0002)) == .text("1/2"))
    }
}
