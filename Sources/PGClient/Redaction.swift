/// Removes secrets from text that came from libpq or the server before it is stored in a `PGError`.
///
/// libpq does not normally echo passwords, but some paths quote input back (conninfo parse errors
/// quote URI fragments; syntax errors quote SQL text near the error, which can include the literal
/// of `ALTER ROLE ... PASSWORD '...'`). We scrub, in order:
/// 1. every occurrence of a known secret (the configured password, in plain and URI-encoded form);
/// 2. `password=value` / `password = 'value'` pairs (any keyword ending in "password");
/// 3. credentials in URIs (`scheme://user:secret@host` becomes `scheme://user:***@host`);
/// 4. when the SQL text itself mentions a password (`sqlMentionsPassword`), every quoted fragment
///    (`"..."` and `'...'`), because the server's "at or near" excerpts may quote the literal.
enum Redaction {
    static let mask = "***"

    static func scrub(_ text: String, secrets: [String] = [], sqlMentionsPassword: Bool = false) -> String {
        var result = text
        for secret in secrets where !secret.isEmpty {
            result = result.replacing(secret, with: mask)
            let encoded = percentEncoded(secret)
            if encoded != secret { result = result.replacing(encoded, with: mask) }
        }
        // `password=secret`, `sslpassword = 'se cret'`: keeps the key and the `=`.
        let keywordPassword = #/(?i)(\b[a-z_]*password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'"&]+)/#
        // `postgresql://user:secret@host` → keeps scheme and user.
        let uriCredentials = #/(?i)([a-z][a-z0-9+.\-]*://[^\s:/@]*):[^\s@/]*@/#
        result = result.replacing(keywordPassword) { match in "\(match.output.1)\(mask)" }
        result = result.replacing(uriCredentials) { match in "\(match.output.1):\(mask)@" }
        if sqlMentionsPassword {
            result = result.replacing(#/"[^"]*"?/#) { _ in "\"\(mask)\"" }
            result = result.replacing(#/'[^']*'?/#) { _ in "'\(mask)'" }
        }
        return result
    }

    /// Optional variant for DETAIL / HINT fields.
    static func scrubOptional(_ text: String?, secrets: [String] = [], sqlMentionsPassword: Bool = false) -> String? {
        text.map { scrub($0, secrets: secrets, sqlMentionsPassword: sqlMentionsPassword) }
    }

    /// True when SQL text may carry a password literal (checked only on the error path).
    static func mentionsPassword(_ sql: String) -> Bool {
        sql.lowercased().contains("password")
    }

    /// RFC 3986 percent-encoding of everything but unreserved characters (as a URI would carry it).
    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%"
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        return out
    }
}
