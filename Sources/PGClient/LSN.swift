/// A PostgreSQL write-ahead-log position (`pg_lsn`): a 64-bit byte offset into the WAL stream,
/// written as two hexadecimal halves, `"16/B374D848"` = 0x16_B374D848.
///
/// Ordered by position; `Codable` as its string form (as Patroni's REST API and our state files
/// carry it). `LSN.invalid` ("0/0") is PostgreSQL's InvalidXLogRecPtr.
public struct LSN: Sendable, Hashable, Comparable, Codable, CustomStringConvertible, LosslessStringConvertible {
    /// The byte position.
    public var value: UInt64

    /// "0/0", PostgreSQL's InvalidXLogRecPtr.
    public static let invalid = LSN(0)

    public init(_ value: UInt64) { self.value = value }

    /// Parses "X/Y" with 1 to 8 hexadecimal digits on each side (either case), exactly as
    /// PostgreSQL's `pg_lsn_in` accepts it. Returns nil for anything else.
    public init?(_ description: String) {
        var text = description
        guard let value = text.withUTF8({ LSN.parse($0) }) else { return nil }
        self.value = value
    }

    /// Parses the bytes of "X/Y" (used on libpq's C strings without creating a String).
    init?(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        guard let value = LSN.parse(bytes) else { return nil }
        self.value = value
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64? {
        var high: UInt64 = 0
        var low: UInt64 = 0
        var digits = 0
        var seenSlash = false
        for byte in bytes {
            let nibble: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = UInt64(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = UInt64(byte - UInt8(ascii: "A") + 10)
            case UInt8(ascii: "/"):
                guard !seenSlash, digits > 0 else { return nil }
                seenSlash = true
                digits = 0
                continue
            default:
                return nil
            }
            digits += 1
            guard digits <= 8 else { return nil }
            if seenSlash { low = low << 4 | nibble } else { high = high << 4 | nibble }
        }
        guard seenSlash, digits > 0 else { return nil }
        return high << 32 | low
    }

    /// "16/B374D848": upper-case hexadecimal halves without leading zeros, as PostgreSQL prints.
    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/"
            + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    public static func < (lhs: LSN, rhs: LSN) -> Bool { lhs.value < rhs.value }

    /// Bytes of WAL from `self` to `other`: positive when `other` is ahead. Saturates at
    /// `Int64.min` / `Int64.max` (a distance of 8 EiB does not occur in practice).
    public func distance(to other: LSN) -> Int64 {
        if other.value >= value {
            let bytes = other.value - value
            return bytes > UInt64(Int64.max) ? .max : Int64(bytes)
        } else {
            let bytes = value - other.value
            return bytes > UInt64(Int64.max) ? .min : -Int64(bytes)
        }
    }

    /// Bytes of WAL between two positions: `a - b` = `b.distance(to: a)`; positive when `a` is ahead.
    public static func - (lhs: LSN, rhs: LSN) -> Int64 { rhs.distance(to: lhs) }

    /// Decodes the string form "X/Y".
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let lsn = LSN(text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "not a PostgreSQL LSN (expected \"X/Y\" in hexadecimal): \(text)")
        }
        self = lsn
    }

    /// Encodes the string form "X/Y".
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
