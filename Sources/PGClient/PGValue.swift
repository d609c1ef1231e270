/// A query parameter (`$1`, `$2`, ...). Sent in PostgreSQL's text format together with a type OID
/// (PQsendQueryParams' `paramTypes`), so the server parses it exactly as it would a literal.
///
/// `.text` is sent with type OID 0 ("unknown"): the server infers the type from the context, as
/// for a quoted literal, so `WHERE id = $1` works with `.text("42")` and `WHERE lsn > $1` with
/// `.text("0/3000000")`. The other cases carry their type: int8, bool, float8, bytea.
public enum PGValue: Sendable, Hashable {
    /// SQL NULL (sent as a null pointer, type inferred by the server).
    case null
    /// Text; must not contain a NUL character (PostgreSQL text cannot hold one).
    case text(String)
    /// An integer, sent as int8 (the server casts to int2/int4/numeric implicitly where needed).
    case int(Int64)
    /// A boolean, sent as bool ("t"/"f").
    case bool(Bool)
    /// A double, sent as float8 ("Infinity", "-Infinity" and "NaN" included).
    case double(Double)
    /// Bytes, sent as bytea in hex form ("\x0a0b").
    case bytes([UInt8])

    /// PostgreSQL type OIDs (pg_type.oid) used for parameters.
    public enum TypeOID {
        public static let unknown: UInt32 = 0
        public static let bool: UInt32 = 16
        public static let bytea: UInt32 = 17
        public static let int8: UInt32 = 20
        public static let text: UInt32 = 25
        public static let float8: UInt32 = 701
        public static let pgLSN: UInt32 = 3220
    }

    /// The type OID sent for this value.
    public var typeOID: UInt32 {
        switch self {
        case .null, .text: TypeOID.unknown
        case .int: TypeOID.int8
        case .bool: TypeOID.bool
        case .double: TypeOID.float8
        case .bytes: TypeOID.bytea
        }
    }

    /// The text representation sent to the server; nil for NULL.
    public var textRepresentation: String? {
        switch self {
        case .null: nil
        case .text(let string): string
        case .int(let int): String(int)
        case .bool(let bool): bool ? "t" : "f"
        case .double(let double): PGValue.format(double)
        case .bytes(let bytes): PGValue.hex(bytes)
        }
    }

    /// An LSN, sent as text (the server infers pg_lsn from the context, e.g. `$1::pg_lsn`).
    public static func lsn(_ lsn: LSN) -> PGValue { .text(lsn.description) }

    static func format(_ double: Double) -> String {
        if double.isNaN { return "NaN" }
        if double.isInfinite { return double < 0 ? "-Infinity" : "Infinity" }
        return double.description  // shortest round-trip form, e.g. "0.1", "1e-05"
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(2 + bytes.count * 2)
        out.append(UInt8(ascii: "\\"))
        out.append(UInt8(ascii: "x"))
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension PGValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension PGValue {
    /// `.text(value)` or `.null`.
    public init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    /// `.int(value)` or `.null`.
    public init(_ value: Int?) { self = value.map { .int(Int64($0)) } ?? .null }
}
