import Testing

@testable import PGClient

@Suite("PGConnectionConfig")
struct PGConnectionConfigTests {
    @Test("parses key=value strings")
    func keywordString() throws {
        let config = try PGConnectionConfig(
            conninfo: """
                host=db1.example port=6432 dbname=app user=alice password='s3cr et' sslmode=verify-full \
                sslrootcert=/etc/ca.pem sslcert=/c.pem sslkey=/k.pem connect_timeout=3 application_name=api \
                target_session_attrs=read-write options='-c statement_timeout=5s' keepalives_idle=10
                """)
        #expect(config.host == "db1.example")
        #expect(config.port == 6432)
        #expect(config.ports == nil)
        #expect(config.database == "app")
        #expect(config.user == "alice")
        #expect(config.password == "s3cr et")
        #expect(config.sslMode == .verifyFull)
        #expect(config.sslRootCert == "/etc/ca.pem")
        #expect(config.sslCert == "/c.pem")
        #expect(config.sslKey == "/k.pem")
        #expect(config.connectTimeout == .seconds(3))
        #expect(config.applicationName == "api")
        #expect(config.targetSessionAttrs == .readWrite)
        #expect(config.extra == ["options": "-c statement_timeout=5s", "keepalives_idle": "10"])
    }

    @Test("parses postgresql:// and postgres:// URIs with percent-encoding and query parameters")
    func uris() throws {
        let config = try PGConnectionConfig(
            conninfo: "postgresql://bob:p%40ss%2Fw0rd@10.0.0.5:5433/orders?sslmode=require&application_name=x%20y")
        #expect(config.host == "10.0.0.5")
        #expect(config.port == 5433)
        #expect(config.user == "bob")
        #expect(config.password == "p@ss/w0rd")
        #expect(config.database == "orders")
        #expect(config.sslMode == .require)
        #expect(config.applicationName == "x y")

        let short = try PGConnectionConfig(conninfo: "postgres://h")
        #expect(short.host == "h")
        #expect(short.port == 5432)
        #expect(short.user == "postgres")
        #expect(short.database == "postgres")
        #expect(short.password == nil)
        #expect(short.connectTimeout == PGConnectionConfig.defaultConnectTimeout)
    }

    @Test("multi-host lists keep their hosts; different ports fill `ports`")
    func multiHost() throws {
        let config = try PGConnectionConfig(
            conninfo: "postgresql://u@127.0.0.1:5433,127.0.0.1:5434,127.0.0.1:5435/db?target_session_attrs=primary")
        #expect(config.host == "127.0.0.1,127.0.0.1,127.0.0.1")
        #expect(config.port == 5433)
        #expect(config.ports == [5433, 5434, 5435])
        #expect(config.targetSessionAttrs == .primary)
        #expect(config.redactedDescription.contains("port=5433,5434,5435"))
        let parameters = Dictionary(config.libpqParameters(), uniquingKeysWith: { _, last in last })
        #expect(parameters["port"] == "5433,5434,5435")

        let same = try PGConnectionConfig(conninfo: "host=a,b port=5432,5432 user=u")
        #expect(same.ports == nil)
        #expect(same.port == 5432)
        #expect(same.database == "u")
    }

    @Test("defaults: connect_timeout=0 keeps our bounded default")
    func defaults() throws {
        let config = try PGConnectionConfig(conninfo: "connect_timeout=0")
        #expect(config.host == "localhost")
        #expect(config.connectTimeout == .seconds(5))
        #expect(config.cancelGracePeriod == .seconds(1))
    }

    @Test("malformed strings and bad values are .invalidConfiguration", arguments: [
        "host", "host='unterminated", "no_such_keyword=1", "sslmode=sometimes", "port=http",
        "port=70000", "target_session_attrs=leader", "connect_timeout=soon", "postgresql://h:notaport/db",
        "postgresql://h/db?nope=1", "postgresql://[::1/db",
    ])
    func invalid(conninfo: String) {
        let error = #expect(throws: PGError.self) { try PGConnectionConfig(conninfo: conninfo) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.isConnectionLevel == true)
        #expect(error?.statementMayHaveRun == false)
        #expect(error?.message.isEmpty == false)
    }

    @Test("parse errors never echo the password", arguments: [
        "postgresql://u:Hunter2Secret%zz@h/db",
        "postgresql://u:Hunter2Secret@h:badport/db",
        "password=Hunter2Secret unknownkey=1",
        "password='Hunter2Secret' host='oops",
        "host=h password=Hunter2Secret port=",
    ])
    func parseErrorsAreScrubbed(conninfo: String) {
        do {
            _ = try PGConnectionConfig(conninfo: conninfo)
            // (An accepted string is fine too; then nothing is printed.)
        } catch {
            #expect(!error.message.contains("Hunter2"), "\(error.message)")
            #expect(!String(reflecting: error).contains("Hunter2"))
        }
    }

    @Test("description, debugDescription, dump and redactedDescription never show the password")
    func redaction() {
        let config = PGConnectionConfig(
            host: "db", port: 5432, database: "app db", user: "o'neil", password: "TopSecret-42",
            sslMode: .require, applicationName: "api", targetSessionAttrs: .readWrite,
            extra: ["sslpassword": "KeyPass-77", "options": "-c x=1"])
        #expect(
            config.redactedDescription
                == "host=db port=5432 dbname='app db' user='o\\'neil' sslmode=require "
                + "target_session_attrs=read-write application_name=api options='-c x=1' sslpassword=***")
        var dumped = ""
        dump(config, to: &dumped)
        for text in [config.description, config.debugDescription, config.redactedDescription, dumped,
            String(reflecting: config), "\(config)"]
        {
            #expect(!text.contains("TopSecret"), "\(text)")
            #expect(!text.contains("KeyPass"), "\(text)")
        }
        #expect(config.secrets.sorted() == ["KeyPass-77", "TopSecret-42"])
    }

    @Test("libpq parameters: defaults first, then extra, then fields (later wins in libpq)")
    func parameterOrder() {
        let config = PGConnectionConfig(
            host: "h", port: 1234, database: "d", user: "u", password: "",
            connectTimeout: .milliseconds(300), extra: ["sslmode": "disable", "client_encoding": "LATIN1"])
        let keys = config.libpqParameters().map(\.0)
        #expect(keys == ["client_encoding", "fallback_application_name", "client_encoding", "sslmode",
            "host", "port", "dbname", "user", "connect_timeout"])
        let values = Dictionary(config.libpqParameters(), uniquingKeysWith: { _, last in last })
        #expect(values["client_encoding"] == "LATIN1")
        #expect(values["connect_timeout"] == "2")  // libpq's minimum; our own deadline is 300 ms
        #expect(values["password"] == nil)  // empty: libpq falls back to ~/.pgpass
    }
}
