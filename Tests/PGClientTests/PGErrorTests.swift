import Testing

@testable import PGClient

@Suite("PGError")
struct PGErrorTests {
    @Test("server errors are classified from their SQLSTATE", arguments: [
        ("23505", "duplicate key value violates unique constraint", true, PGError.Code.queryFailed, false),
        ("42601", "syntax error at or near", true, .queryFailed, false),
        ("40001", "could not serialize access", true, .queryFailed, false),
        ("25006", "cannot execute INSERT in a read-only transaction", true, .queryFailed, false),
        ("57014", "canceling statement due to user request", true, .cancelled, false),
        ("57014", "canceling statement due to statement timeout", true, .timeout, false),
        ("55000", "recovery is in progress", true, .notAvailableOnStandby, false),
        ("55000", "object not in prerequisite state", true, .queryFailed, false),
        ("57P01", "terminating connection due to administrator command", true, .connectionBroken, true),
        ("57P02", "terminating connection because of crash of another server process", true, .connectionBroken, true),
        ("57P03", "the database system is shutting down", true, .connectionBroken, true),
        ("57P05", "terminating connection due to idle-session timeout", true, .connectionBroken, true),
        ("25P03", "terminating connection due to idle-in-transaction timeout", true, .connectionBroken, true),
        ("08006", "connection failure", true, .connectionBroken, true),
        ("23505", "anything", false, .connectionBroken, true),
        ("28P01", "password authentication failed", true, .authenticationFailed, true),
    ] as [(String, String, Bool, PGError.Code, Bool)])
    func serverErrors(sqlState: String, message: String, alive: Bool, code: PGError.Code, connectionLevel: Bool) {
        let classified = PGError.classifyServerError(sqlState: sqlState, message: message, connectionAlive: alive)
        #expect(classified == code)
        let error = PGError(code: classified, message: message, sqlState: sqlState)
        #expect(error.isConnectionLevel == connectionLevel)
    }

    @Test("a client-side error without SQLSTATE on a live connection is unexpectedResult")
    func clientSide() {
        #expect(PGError.classifyServerError(sqlState: nil, message: "x", connectionAlive: true) == .unexpectedResult)
        #expect(PGError.classifyServerError(sqlState: nil, message: "x", connectionAlive: false) == .connectionBroken)
    }

    @Test("connection failures are classified from libpq's message", arguments: [
        (#"connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for user "app""#,
         PGError.Code.authenticationFailed, "28P01" as String?),
        ("connection to server at \"h\", port 1 failed: fe_sendauth: no password supplied", .authenticationFailed, nil),
        (#"FATAL:  no pg_hba.conf entry for host "10.0.0.1", user "x", database "y", no encryption"#,
         .authenticationFailed, "28000"),
        (#"FATAL:  role "ghost" does not exist"#, .authenticationFailed, "28000"),
        (#"FATAL:  database "nope" does not exist"#, .connectionFailed, "3D000"),
        ("FATAL:  the database system is starting up", .connectionFailed, "57P03"),
        ("FATAL:  the database system is shutting down", .connectionFailed, "57P03"),
        ("FATAL:  sorry, too many clients already: too many connections", .connectionFailed, "53300"),
        ("FATAL:  remaining connection slots are reserved for non-replication superuser connections",
         .connectionFailed, "53300"),
        (#"connection to server at "127.0.0.1", port 1 failed: Connection refused"#, .connectionFailed, nil),
        (#"could not translate host name "nowhere" to address: Name or service not known"#, .connectionFailed, nil),
        (#"invalid connection option "bogus""#, .invalidConfiguration, nil),
        (#"invalid sslmode value: "sometimes""#, .invalidConfiguration, nil),
        (#"invalid port number: "x""#, .invalidConfiguration, nil),
        (#"root certificate file "/nope" does not exist"#, .invalidConfiguration, nil),
    ] as [(String, PGError.Code, String?)])
    func connectFailures(message: String, code: PGError.Code, sqlState: String?) {
        let (classified, state) = PGError.classifyConnectFailure(message: message)
        #expect(classified == code)
        #expect(state == sqlState)
    }

    @Test("description is one safe line; debugDescription adds detail, hint and flags")
    func descriptions() {
        let error = PGError(
            code: .queryFailed, message: "duplicate key value violates unique constraint \"t_pkey\"",
            sqlState: "23505", detail: "Key (id)=(1) already exists.", hint: "none", host: "db1", port: 5432)
        #expect(error.description == "queryFailed: duplicate key value violates unique constraint \"t_pkey\" (SQLSTATE 23505) [db1:5432]")
        #expect(!error.description.contains("Key (id)"))
        #expect(error.debugDescription.contains("DETAIL: Key (id)=(1) already exists."))
        #expect(error.debugDescription.contains("HINT: none"))
        #expect(error.debugDescription.contains("statementMayHaveRun: false"))
        #expect(error.debugDescription.contains("isConnectionLevel: false"))
        #expect(PGError(code: .timeout, message: "t").description == "timeout: t")
    }

    @Test("isConnectionLevel defaults follow the code and SQLSTATE; explicit values win")
    func connectionLevelDefaults() {
        #expect(PGError(code: .connectionFailed, message: "").isConnectionLevel)
        #expect(PGError(code: .authenticationFailed, message: "").isConnectionLevel)
        #expect(PGError(code: .connectionBroken, message: "").isConnectionLevel)
        #expect(PGError(code: .connectionClosed, message: "").isConnectionLevel)
        #expect(!PGError(code: .queryFailed, message: "", sqlState: "42P01").isConnectionLevel)
        #expect(PGError(code: .queryFailed, message: "", sqlState: "08P01").isConnectionLevel)
        #expect(!PGError(code: .timeout, message: "").isConnectionLevel)
        #expect(PGError(code: .timeout, message: "", isConnectionLevel: true).isConnectionLevel)
        #expect(PGError(code: .queryFailed, message: "", sqlState: "40P01").isSerializationFailure)
        #expect(PGError(code: .queryFailed, message: "", sqlState: "25006").isReadOnlyTransaction)
        #expect(!PGError(code: .queryFailed, message: "", sqlState: "23505").isSerializationFailure)
    }

    @Test("codes print their names and compare by identity")
    func codes() {
        #expect("\(PGError.Code.notAvailableOnStandby)" == "notAvailableOnStandby")
        #expect(PGError.Code.timeout != PGError.Code.cancelled)
        #expect(Set([PGError.Code.timeout, .timeout, .cancelled]).count == 2)
    }
}
