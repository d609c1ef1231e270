import Foundation
import Testing
@testable import HAPool

@Suite struct RetryPolicyTests {
    @Test func defaultsMatchTheSeed() {
        let p = RetryPolicy()
        #expect(p.maxRetries == 3)
        #expect(p.initialBackoff == .milliseconds(100))
        #expect(p.maxBackoff == .seconds(10))
        #expect(p.multiplier == 2.0)
        #expect(p.jitter)
    }

    @Test func exponentialWithoutJitter() {
        let p = RetryPolicy(jitter: false)
        #expect(p.delay(beforeRetry: 1, random: 0.5) == .milliseconds(100))
        #expect(p.delay(beforeRetry: 2, random: 0.5) == .milliseconds(200))
        #expect(p.delay(beforeRetry: 4, random: 0.5) == .milliseconds(800))
        #expect(p.delay(beforeRetry: 20, random: 0.5) == .seconds(10))
    }

    @Test func jitterStaysWithinHalfAndFull() {
        let p = RetryPolicy()
        #expect(p.delay(beforeRetry: 3, random: 0) == .milliseconds(200))
        #expect(p.delay(beforeRetry: 3, random: 1) == .milliseconds(400))
        let mid = p.delay(beforeRetry: 3, random: 0.5)
        #expect(mid > .milliseconds(200) && mid < .milliseconds(400))
    }

    @Test func durationParsing() {
        #expect(Duration(parsing: "30") == .seconds(30))
        #expect(Duration(parsing: "250ms") == .milliseconds(250))
        #expect(Duration(parsing: "2m") == .seconds(120))
        #expect(Duration(parsing: "1.5s") == .milliseconds(1500))
        #expect(Duration(parsing: "abc") == nil)
        #expect(Duration(parsing: "-1") == nil)
    }
}

@Suite struct DotEnvTests {
    @Test func parsesTheUsualForms() throws {
        let text = """
        # comment
        ENABLE_PATRONI=true
        export PATRONI_HOSTS=node1,node2 # trailing comment
        PATRONI_PASSWORD='s3cr#t value'
        QUOTED="a \\"b\\"\\nc"
        EMPTY=

        """
        let env = try DotEnv.parse(text)
        #expect(env["ENABLE_PATRONI"] == "true")
        #expect(env["PATRONI_HOSTS"] == "node1,node2")
        #expect(env["PATRONI_PASSWORD"] == "s3cr#t value")
        #expect(env["QUOTED"] == "a \"b\"\nc")
        #expect(env["EMPTY"] == "")
    }

    @Test func errorsNameTheLineNotTheValue() {
        #expect(throws: ConfigurationError.self) { try DotEnv.parse("A=1\nPATRONI_PASSWORD='hunter2") }
        do {
            _ = try DotEnv.parse("A=1\nPATRONI_PASSWORD='hunter2", file: "app.env")
        } catch {
            #expect(error.key == "app.env:2")
            #expect(!error.description.contains("hunter2"))
        }
        #expect(throws: ConfigurationError.self) { try DotEnv.parse("no equals sign") }
        #expect(throws: ConfigurationError.self) { try DotEnv.parse("1BAD=x") }
    }
}

@Suite struct EnvironmentConfigurationTests {
    let patroniEnv: [String: String] = [
        "ENABLE_PATRONI": "true",
        "PATRONI_HOSTS": "node1, node2:8009,https://node3:8443",
        "PATRONI_PORT": "8008",
        "PATRONI_DB": "distributed_postgres_cluster",
        "PATRONI_SHARED_DB": "shared_knowledge",
        "PATRONI_USER": "dpg_cluster",
        "PATRONI_PASSWORD": "a-real-password-0123456789",
        "PATRONI_MIN_CONNECTIONS": "1",
        "PATRONI_MAX_CONNECTIONS": "7",
        "PATRONI_HEALTH_CHECK_INTERVAL": "5",
        "PATRONI_FAILOVER_TIMEOUT": "45s",
        "PATRONI_SSLMODE": "verify-full",
        "PATRONI_SSLROOTCERT": "/ca.pem",
        "PATRONI_MAX_REPLICA_LAG": "16MB",
    ]

    @Test func patroniModeFromTheSeedVariables() throws {
        let config = try EnvironmentConfiguration(patroniEnv).dualPools()
        #expect(config.mode == .patroni)
        let p = try #require(config.patroni)
        #expect(p.apiHosts == ["node1", "node2:8009", "https://node3:8443"])
        #expect(p.apiPort == 8008)
        #expect(p.database == "distributed_postgres_cluster")
        #expect(config.patroniSharedDatabase == "shared_knowledge")
        #expect(p.minConnections == 1 && p.maxConnections == 7)
        #expect(p.healthCheckInterval == .seconds(5))
        #expect(p.failoverTimeout == .seconds(45))
        #expect(p.tls.sslMode == "verify-full" && p.tls.sslRootCert == "/ca.pem")
        #expect(p.maxReplicaLagBytes == 16 << 20)
        #expect(p.retry == RetryPolicy())
    }

    @Test func singleNodeIsTheDefault() throws {
        let env = [
            "PROJECT_DB_HOST": "10.0.0.5", "PROJECT_DB_PORT": "6432", "PROJECT_DB_NAME": "proj",
            "PROJECT_DB_USER": "app", "PROJECT_DB_PASSWORD": "pw-123456789",
        ]
        let config = try EnvironmentConfiguration(env).dualPools()
        #expect(config.mode == .singleNode)
        #expect(config.project?.host == "10.0.0.5" && config.project?.port == 6432)
        #expect(config.project?.maxConnections == 40)
        #expect(config.shared == nil)
    }

    @Test(arguments: [
        "CHANGE_ME_TO_STRONG_PASSWORD_32_CHARS_MIN", "changeme", "<password>", "your_password",
    ])
    func placeholderPasswordsAreRefused(_ placeholder: String) {
        var env = patroniEnv
        env["PATRONI_PASSWORD"] = placeholder
        do {
            _ = try EnvironmentConfiguration(env).dualPools()
            Issue.record("accepted a placeholder password")
        } catch {
            #expect(error.code == .placeholderPassword)
            #expect(error.key == "PATRONI_PASSWORD")
            #expect(!error.description.contains(placeholder))
        }
    }

    @Test(arguments: [
        ("PATRONI_PORT", "eighty"), ("PATRONI_PORT", "70000"), ("PATRONI_SSLMODE", "sometimes"),
        ("PATRONI_MAX_CONNECTIONS", "0"), ("PATRONI_HEALTH_CHECK_INTERVAL", "soon"), ("ENABLE_PATRONI", "maybe"),
        ("PATRONI_MIN_CONNECTIONS", "50"), ("PATRONI_REPLICA_FALLBACK", "random"), ("PATRONI_MAX_REPLICA_LAG", "lots"),
    ])
    func invalidValuesNameTheVariable(_ key: String, _ value: String) {
        var env = patroniEnv
        env[key] = value
        do {
            _ = try EnvironmentConfiguration(env).dualPools()
            Issue.record("accepted \(key)=\(value)")
        } catch {
            #expect(error.code == .invalidValue)
            #expect(error.key == key)
        }
    }

    @Test func missingVariables() {
        var env = patroniEnv
        env["PATRONI_HOSTS"] = nil
        #expect(throws: ConfigurationError(.missing, key: "PATRONI_HOSTS", "is not set")) {
            try EnvironmentConfiguration(env).dualPools()
        }
        #expect(throws: ConfigurationError.self) { try EnvironmentConfiguration([:]).dualPools() }
    }

    @Test func processEnvironmentOverridesDotEnv() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pgha-dotenv-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent(".env").path
        try "PATRONI_HOSTS=from-file\nPATRONI_DB=filedb\n".write(toFile: path, atomically: true, encoding: .utf8)
        let env = try EnvironmentConfiguration.load(dotEnvPath: path, processEnvironment: ["PATRONI_HOSTS": "from-env"])
        #expect(env.variables["PATRONI_HOSTS"] == "from-env")
        #expect(env.variables["PATRONI_DB"] == "filedb")
    }

    @Test func byteCounts() {
        #expect(ByteCount.parse("1048576") == 1 << 20)
        #expect(ByteCount.parse("512kB") == 512 << 10)
        #expect(ByteCount.parse("1GB") == 1 << 30)
        #expect(ByteCount.parse("-1") == nil)
        #expect(ByteCount.parse("99999999999999TB") == nil)
    }
}

@Suite struct YAMLConfigurationTests {
    let yaml = """
    memory:
      postgresql:
        mode: patroni-ha
        patroni:
          enabled: true
          apiHosts:
            - node1
            - node2
          apiPort: 8008
          database: distributed_postgres_cluster
          user: dpg_cluster
          password: ${PATRONI_PASSWORD}
          minConnections: 2
          maxConnections: 20
          healthCheckInterval: 30
          failoverTimeout: 30
    """

    @Test func theSeedBlock() throws {
        let config = try YAMLConfiguration.dualPools(yaml: yaml, environment: ["PATRONI_PASSWORD": "from-the-environment"])
        #expect(config.mode == .patroni)
        #expect(config.patroni?.apiHosts == ["node1", "node2"])
        #expect(config.patroni?.password == "from-the-environment")
        #expect(config.patroni?.failoverTimeout == .seconds(30))
    }

    @Test func unsetReferenceIsAnError() {
        #expect(throws: ConfigurationError.self) { try YAMLConfiguration.dualPools(yaml: yaml, environment: [:]) }
    }

    @Test func errorsNameTheYAMLKey() {
        let bad = yaml.replacingOccurrences(of: "apiPort: 8008", with: "apiPort: many")
        do {
            _ = try YAMLConfiguration.dualPools(yaml: bad, environment: ["PATRONI_PASSWORD": "x-123456789"])
            Issue.record("accepted apiPort: many")
        } catch {
            #expect(error.key == "memory.postgresql.patroni.apiPort")
        }
        let unknown = yaml.replacingOccurrences(of: "apiPort: 8008", with: "apiPortt: 8008")
        #expect(throws: ConfigurationError.self) {
            try YAMLConfiguration.dualPools(yaml: unknown, environment: ["PATRONI_PASSWORD": "x-123456789"])
        }
        #expect(throws: ConfigurationError.self) { try YAMLConfiguration.dualPools(yaml: "memory: [1", environment: [:]) }
        #expect(throws: ConfigurationError.self) { try YAMLConfiguration.dualPools(yaml: "other: 1", environment: [:]) }
    }

    @Test func singleNodeMode() throws {
        let text = """
        memory:
          postgresql:
            mode: single-node
            project: { host: db1, port: 5432, database: proj, user: app, password: "${PW}" }
            shared: { host: db1, database: shared, user: app, password: "${PW}" }
        """
        let config = try YAMLConfiguration.dualPools(yaml: text, environment: ["PW": "pw-0123456789"])
        #expect(config.mode == .singleNode)
        #expect(config.project?.database == "proj")
        #expect(config.shared?.database == "shared")
    }
}
