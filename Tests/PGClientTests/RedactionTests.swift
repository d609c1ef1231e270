import Testing

@testable import PGClient

@Suite("Redaction")
struct RedactionTests {
    @Test("known secrets, keyword passwords and URI credentials are masked", arguments: [
        ("connect with password=abc123 host=h", "connect with password=*** host=h"),
        ("password = 'a b\\'c' host=h", "password = *** host=h"),
        ("sslpassword=k3y", "sslpassword=***"),
        ("PASSWORD=Up", "PASSWORD=***"),
        ("postgresql://alice:pw@host/db", "postgresql://alice:***@host/db"),
        ("see postgres://u:p%40ss@h:5432/d?x=1 now", "see postgres://u:***@h:5432/d?x=1 now"),
        ("postgresql://u@h/d?password=pw&sslmode=require", "postgresql://u@h/d?password=***&sslmode=require"),
        ("no secrets here", "no secrets here"),
    ])
    func patterns(input: String, expected: String) {
        #expect(Redaction.scrub(input) == expected)
    }

    @Test("a known secret is removed wherever it appears, also percent-encoded")
    func knownSecret() {
        let text = #"invalid percent-encoded token: "p@ss/w rd" and p%40ss%2Fw%20rd"#
        let scrubbed = Redaction.scrub(text, secrets: ["p@ss/w rd"])
        #expect(!scrubbed.contains("p@ss"))
        #expect(!scrubbed.contains("p%40ss"))
        #expect(Redaction.scrub("x", secrets: [""]) == "x")
    }

    @Test("quoted fragments are masked when the SQL mentions a password")
    func sqlFragments() {
        let message = #"unterminated quoted string at or near "'hunter2""#
        #expect(!Redaction.scrub(message, sqlMentionsPassword: true).contains("hunter2"))
        #expect(Redaction.scrub(message, sqlMentionsPassword: false).contains("hunter2"))
        #expect(Redaction.mentionsPassword("ALTER ROLE x PASSWORD 'y'"))
        #expect(!Redaction.mentionsPassword("SELECT 1"))
    }

    @Test("conninfo password candidates")
    func candidates() {
        #expect(PGConnectionConfig.passwordCandidates(in: "host=h password='a b' user=u") == ["a b"])
        #expect(PGConnectionConfig.passwordCandidates(in: "postgresql://u:s%zz@h/d") == ["s%zz"])
        #expect(PGConnectionConfig.passwordCandidates(in: "host=h").isEmpty)
    }
}
