import PlainText
import Foundation
import PropertyBased
import Testing
import TestSupport
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

    @Test func crlfAndByteOrderMark() throws {
        // "\r\n" is a single Character in Swift: a CRLF file once parsed as one long line.
        let env = try DotEnv.entries(bytes: [0xEF, 0xBB, 0xBF] + Array("# c\r\nA=1\r\nB='two'\r\n".utf8), file: "w.env")
        #expect(env.map(\.key) == ["A", "B"])
        #expect(env.map(\.value) == ["1", "two"])
        #expect(env.map(\.line) == [2, 3])
    }

    @Test func errorsNameTheLineNotTheValue() {
        #expect(throws: ConfigurationError.self) { try DotEnv.parse("A=1\nPATRONI_PASSWORD='hunter2") }
        do {
            _ = try DotEnv.parse("A=1\nPATRONI_PASSWORD='hunter2", file: "app.env")
        } catch {
            #expect(error.key == "PATRONI_PASSWORD")
            #expect(error.file == "app.env" && error.line == 2 && error.column == 18)
            #expect(error.description == "app.env:2:18: PATRONI_PASSWORD: unterminated single quote: close it with ' on the same line (a value cannot span lines)")
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
        #expect(throws: ConfigurationError(.missing, key: "PATRONI_HOSTS", "is not set: set it")) {
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
        #expect(parseBytes("1048576") == 1 << 20)
        #expect(parseBytes("512kB") == 512 << 10)
        #expect(parseBytes("1GB") == 1 << 30)
        #expect(parseBytes("-1") == nil)
        #expect(parseBytes("99999999999999TB") == nil)
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

// MARK: - Hostile .env files and YAML blocks

/// A `.env` file as lines, so that tests can mutate a valid one line by line.
struct EnvFile: Sendable, CustomStringConvertible {
    enum Style: Sendable, CaseIterable { case plain, single, double }
    enum Line: Sendable {
        case comment(String)
        case blank
        case entry(key: String, value: String, style: Style, export: Bool)
        case raw(String)
    }
    var lines: [Line]
    var mutations: [String] = []
    var byteLevel: [ByteMutation] = []

    var description: String { (mutations + byteLevel.map(\.description)).joined(separator: "; ") }
    var isBenign: Bool { mutations.isEmpty && byteLevel.allSatisfy(\.isBenign) && Set(byteLevel).count == byteLevel.count }

    static func quoted(_ value: String, _ style: Style) -> String {
        switch style {
        case .plain: return value
        case .single: return "'" + value + "'"
        case .double:
            return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n") + "\""
        }
    }

    var text: String {
        lines.map { line in
            switch line {
            case .comment(let text): return "# " + text
            case .blank: return ""
            case .entry(let key, let value, let style, let export): return (export ? "export " : "") + key + "=" + Self.quoted(value, style)
            case .raw(let text): return text
            }
        }.joined(separator: "\n") + "\n"
    }

    var bytes: [UInt8] {
        var bytes = Array(text.utf8)
        for m in byteLevel { m.apply(to: &bytes) }
        return bytes
    }

    /// 1-based line of each entry's key.
    func line(of key: String) -> Int? {
        lines.firstIndex { if case .entry(key, _, _, _) = $0 { return true } else { return false } }.map { $0 + 1 }
    }

    /// A valid Patroni-mode file in every style the format allows.
    static func base(_ variables: [String: String]) -> EnvFile {
        var lines: [Line] = [.comment("generated for the fuzz test"), .blank]
        for (n, (key, value)) in variables.sorted(by: { $0.key < $1.key }).enumerated() {
            let style = Style.allCases[n % 3]
            lines.append(.entry(key: key, value: value, style: style, export: n % 4 == 1))
            if n % 5 == 2 { lines.append(.blank) }
        }
        return EnvFile(lines: lines)
    }

    static let invalidNames = ["1PATRONI", "PATRONI PORT", "PATRONI-PORT", "PÄTRONI", "", "A\u{0}B", "A.B"]
    static let typedValues: [(String, String)] = [
        ("PATRONI_PORT", "eighty"), ("PATRONI_PORT", "70000"), ("PATRONI_MAX_CONNECTIONS", "-1"), ("ENABLE_PATRONI", "maybe"),
        ("PATRONI_HEALTH_CHECK_INTERVAL", "soon"), ("PATRONI_SSLMODE", "sometimes"), ("PATRONI_MAX_REPLICA_LAG", "lots"),
        ("PATRONI_HOSTS", ","), ("PATRONI_PASSWORD", "CHANGE_ME_TO_STRONG_PASSWORD_32_CHARS_MIN"),
        ("PATRONI_HOSTS", "node1\u{1B}[2J"), ("PATRONI_DB", "db\u{202E}"), ("PATRONI_PORT", String(repeating: "9", count: 5000)),
    ]

    /// One structural mutation of one line.
    mutating func mutateLine(using rng: inout some RandomNumberGenerator) {
        let entryIndices = lines.indices.filter { if case .entry = lines[$0] { return true } else { return false } }
        guard let i = entryIndices.randomElement(using: &rng), case .entry(let key, let value, let style, let export) = lines[i] else { return }
        let line = i + 1
        switch Int.random(in: 0..<10, using: &rng) {
        case 0:
            let name = Self.invalidNames.randomElement(using: &rng)!
            lines[i] = .entry(key: name, value: value, style: style, export: export)
            mutations.append("line \(line): key \(key) renamed to \(name.debugDescription)")
        case 1:
            lines[i] = .raw((export ? "export " : "") + key + " " + Self.quoted(value, style))
            mutations.append("line \(line): no '='")
        case 2 where style != .plain:
            lines[i] = .raw(key + "=" + String(Self.quoted(value, style).dropLast()))
            mutations.append("line \(line): unterminated quote")
        case 3 where style != .plain:
            lines[i] = .raw(key + "=" + Self.quoted(value, style) + "tail")
            mutations.append("line \(line): text after the quote")
        case 4:
            lines.insert(lines[i], at: Int.random(in: (i + 1)...lines.count, using: &rng))
            mutations.append("line \(line): \(key) written twice")
        case 5:
            lines[i] = .entry(key: key, value: String(repeating: "x", count: 70_000), style: style, export: export)
            mutations.append("line \(line): \(key) = <70000 characters>")
        case 6:
            let scalar = DocumentMutatorScalars.controls.randomElement(using: &rng)!
            lines[i] = .entry(key: key, value: value + String(scalar), style: style, export: export)
            mutations.append("line \(line): \(key) + U+\(String(scalar.value, radix: 16)) (\(style))")
        case 7:
            lines.remove(at: i)
            mutations.append("line \(line): \(key) removed")
        default:
            let (typed, bad) = Self.typedValues.randomElement(using: &rng)!
            if let j = lines.firstIndex(where: { if case .entry(typed, _, _, _) = $0 { return true } else { return false } }),
               case .entry(_, _, let s, let e) = lines[j] {
                lines[j] = .entry(key: typed, value: bad, style: s, export: e)
                mutations.append("line \(j + 1): \(typed) = \(bad.prefix(20).debugDescription)")
            }
        }
    }

    static func generator(_ variables: [String: String]) -> Generator<EnvFile, Shrink.None<EnvFile>> {
        Generator { rng in
            var file = base(variables)
            if Int.random(in: 0..<10, using: &rng) == 0 {
                file.byteLevel = [[ByteMutation.byteOrderMark], [.crlf], [.byteOrderMark, .crlf]].randomElement(using: &rng)!
                return file
            }
            let structural = Int.random(in: 0...2, using: &rng)
            for _ in 0..<structural { file.mutateLine(using: &rng) }
            for _ in 0..<Int.random(in: (structural == 0 ? 1 : 0)...2, using: &rng) {
                file.byteLevel.append(ByteMutation.random(of: file.bytes, using: &rng))
            }
            return file
        }
    }
}

enum DocumentMutatorScalars {
    static let controls: [Unicode.Scalar] = ["\u{0}", "\u{7}", "\u{1B}", "\u{7F}", "\u{85}", "\u{2028}", "\u{FEFF}", "\u{202E}", "\r"]
}

@Suite("Configuration from mutated .env files and YAML blocks")
struct ConfigurationPropertyTests {
    static let password = "a-real-password-0123456789"
    static let variables: [String: String] = [
        "ENABLE_PATRONI": "true", "PATRONI_HOSTS": "node1, node2:8009", "PATRONI_PORT": "8008",
        "PATRONI_DB": "distributed_postgres_cluster", "PATRONI_SHARED_DB": "shared_knowledge", "PATRONI_USER": "dpg_cluster",
        "PATRONI_PASSWORD": password, "PATRONI_MIN_CONNECTIONS": "1", "PATRONI_MAX_CONNECTIONS": "7",
        "PATRONI_HEALTH_CHECK_INTERVAL": "5", "PATRONI_SSLMODE": "disable", "PATRONI_MAX_REPLICA_LAG": "16MB",
        "APP_UNRELATED": "kept # not a comment inside quotes",
    ]

    /// Whether two configurations hold the same values (they are not Equatable; never printed,
    /// since they hold the password).
    static func same(_ a: DualPoolsConfig, _ b: DualPoolsConfig) -> Bool {
        String(reflecting: a) == String(reflecting: b)
    }

    /// What every configuration error from a file must look like.
    static func checkReport(_ error: ConfigurationError, file: String, secret: String) {
        #expect(error.file == file, "no file: \(error)")
        #expect(error.description.hasPrefix(file + ":") || error.code == .missing, "\(error)")
        if error.code != .missing || error.key.isEmpty {
            #expect(error.line != nil, "no line: \(error)")
        }
        #expect(tellsTheFix(error.message), "no fix: \(error)")
        #expect(!containsHiddenCharacter(error.description) && !error.description.contains("\n"), "raw control character: \(error.description.debugDescription)")
        #expect(!error.description.contains(secret), "the password leaked: \(error)")
        #expect(error.description.count < 500, "\(error.description.count) characters: \(error.description.prefix(200))…")
    }

    static func envOutcome(_ bytes: [UInt8], file: String) -> Result<DualPoolsConfig, ConfigurationError> {
        do throws(ConfigurationError) {
            var variables: [String: String] = [:]
            var origins: [String: EnvironmentConfiguration.Origin] = [:]
            for entry in try DotEnv.entries(bytes: bytes, file: file) {
                variables[entry.key] = entry.value
                origins[entry.key] = .init(file: file, line: entry.line, column: entry.column)
            }
            return .success(try EnvironmentConfiguration(variables, origins: origins, dotEnvFile: file).dualPools())
        } catch {
            return .failure(error)
        }
    }

    @Test("mutated .env files: no crash, every error placed and explained, never the password")
    func mutatedDotEnv() async throws {
        let file = "app.env"
        let expected = try EnvironmentConfiguration(Self.variables).dualPools()
        #expect(Self.same(try Self.envOutcome(EnvFile.base(Self.variables).bytes, file: file).get(), expected))
        let tally = Fuzz.Tally()
        await Fuzz.check(EnvFile.generator(Self.variables), seed: 0xD07E_0000, count: 200) { env in
            let result = Self.envOutcome(env.bytes, file: file)
            if env.isBenign {
                #expect((try? result.get()).map { Self.same($0, expected) } == true, "a BOM or CRLF changed the configuration: \((try? result.get()) == nil ? "\(result)" : "different values")")
                tally.count("benign")
                return
            }
            guard case .failure(let error) = result else {
                tally.count("accepted")
                return
            }
            tally.count("refused")
            Self.checkReport(error, file: file, secret: Self.password)
            if env.mutations.count == 1, env.byteLevel.isEmpty {
                let what = env.mutations[0]
                if what.contains("written twice") { #expect(error.message.contains("is set twice"), "\(error)") }
                if what.contains("renamed to") { #expect(error.message.contains("invalid variable name") || error.message.contains("expected KEY=value"), "\(error)") }
                if what.contains("unterminated quote") { #expect(error.message.contains("unterminated"), "\(error)") }
            }
        }
        #expect(tally["benign"] > 10 && tally["accepted"] > 10 && tally["refused"] > 100, "\(tally.all)")
    }

    static let yamlText = """
    memory:
      postgresql:
        mode: patroni-ha
        patroni:
          enabled: true
          apiHosts:
            - node1
            - "node2:8009"
          apiPort: 8008
          database: distributed_postgres_cluster
          sharedDatabase: shared_knowledge
          user: dpg_cluster
          password: ${PATRONI_PASSWORD}
          minConnections: 2
          maxConnections: 20
          healthCheckInterval: 30
          failoverTimeout: 30s
          sslmode: disable
          maxReplicaLag: 16MB
        project: { host: db1, port: 5432, database: proj, user: app, password: "${PW:-fallback-pw-123}" }
    """

    static func yamlOutcome(_ bytes: [UInt8]) -> Result<DualPoolsConfig, ConfigurationError> {
        do throws(ConfigurationError) {
            return .success(try YAMLConfiguration.dualPools(bytes: bytes, environment: ["PATRONI_PASSWORD": password], file: "config.yaml"))
        } catch {
            return .failure(error)
        }
    }

    @Test("mutated YAML blocks: no crash, every error placed and explained, never the password")
    func mutatedYAML() async throws {
        let document = try Document(yaml: Self.yamlText)
        let expected = try YAMLConfiguration.dualPools(yaml: Self.yamlText, environment: ["PATRONI_PASSWORD": Self.password])
        #expect(Self.same(try Self.yamlOutcome(Array(document.render(.yaml).utf8)).get(), expected))
        let tally = Fuzz.Tally()
        await Fuzz.check(DocumentMutator(document, format: .yaml).generator, seed: 0x9A3_0000, count: 300) { mutated in
            let result = Self.yamlOutcome(mutated.bytes)
            if mutated.isBenign {
                #expect((try? result.get()).map { Self.same($0, expected) } == true, "a BOM or CRLF changed the configuration: \((try? result.get()) == nil ? "\(result)" : "different values")")
                tally.count("benign")
                return
            }
            guard case .failure(let error) = result else {
                tally.count("accepted")
                return
            }
            tally.count("refused")
            Self.checkReport(error, file: "config.yaml", secret: Self.password)
            #expect(error.line != nil, "no line: \(error)")
            if mutated.structural.count == 1, mutated.byteLevel.isEmpty, case .duplicateKey = mutated.structural[0] {
                #expect(error.message.contains("duplicate key"), "\(error)")
            }
        }
        #expect(tally["benign"] > 10 && tally["accepted"] > 10 && tally["refused"] > 100, "\(tally.all)")
    }

    @Test("a YAML syntax error names file, line and column and never quotes the line")
    func yamlSyntax() {
        let text = "memory:\n  postgresql:\n    patroni:\n      password: \"hunter2-Secret\n"
        guard case .failure(let error) = Self.yamlOutcome(Array(text.utf8)) else {
            Issue.record("accepted")
            return
        }
        #expect(error.code == .unreadableFile)
        #expect(error.description.hasPrefix("config.yaml:"), "\(error)")
        #expect(error.line != nil && error.column != nil)
        #expect(!error.description.contains("hunter2"), "\(error)")
        #expect(error.message.contains("close the quote"), "\(error)")
    }

    @Test("a value error in YAML names the key, the file and the value's position")
    func yamlValue() {
        let text = Self.yamlText.replacingOccurrences(of: "apiPort: 8008", with: "apiPort: eighty")
        guard case .failure(let error) = Self.yamlOutcome(Array(text.utf8)) else {
            Issue.record("accepted")
            return
        }
        #expect(error.description == "config.yaml:9:16: memory.postgresql.patroni.apiPort: expected a whole number in 1…65535, got \"eighty\"")
        let missing = Self.yamlText.replacingOccurrences(of: "      user: dpg_cluster\n", with: "")
        guard case .failure(let missingError) = Self.yamlOutcome(Array(missing.utf8)) else {
            Issue.record("accepted")
            return
        }
        #expect(missingError.description == "config.yaml:5:7: memory.postgresql.patroni.user: is not set: set it")
    }

    @Test("a .env error names file, line and column, and a missing variable the file")
    func dotEnvPlaces() throws {
        guard case .failure(let typed) = Self.envOutcome(Array("ENABLE_PATRONI=true\nPATRONI_HOSTS=a\n  PATRONI_PORT = eighty\n".utf8), file: "app.env") else {
            Issue.record("accepted")
            return
        }
        #expect(typed.description == "app.env:3:18: PATRONI_PORT: expected a whole number in 1…65535, got \"eighty\"")
        guard case .failure(let missing) = Self.envOutcome(Array("ENABLE_PATRONI=true\nPATRONI_HOSTS=a\n".utf8), file: "app.env") else {
            Issue.record("accepted")
            return
        }
        #expect(missing.description == "app.env: PATRONI_DB: is not set: set it (in app.env or the environment)")
        #expect(throws: ConfigurationError.self) { try DotEnv.parse("A='x'y") }
        #expect(throws: ConfigurationError.self) { try DotEnv.parse("A=1\nA=2") }
        #expect(try DotEnv.parse("A=\"x\u{1}y\"")["A"] == "x\u{1}y", "a quoted value may hold any character")
        #expect(throws: ConfigurationError.self) { try DotEnv.parse("A=x\u{1}y") }
    }
}
