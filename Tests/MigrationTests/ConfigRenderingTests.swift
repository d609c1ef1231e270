import Foundation
import Testing
import Yams
@testable import Migration

@Suite("Templates and rendering")
struct ConfigRenderingTests {
    func render(_ playbook: Playbook? = nil, env: [String: String] = sampleSecrets) throws -> [String: RenderedFile] {
        let renderer = ConfigRenderer(playbook: try playbook ?? samplePlaybook(), templates: try .builtin(), workingDirectory: "/srv/app")
        let files = try renderer.render(environment: StaticEnvironment(env))
        return Dictionary(uniqueKeysWithValues: files.map { ($0.key, $0) })
    }

    /// A `.env` reader with python-dotenv's (and HAPool's DotEnv's) quoting rules.
    func parseEnv(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<eq])
            var rest = line[line.index(after: eq)...]
            var value = ""
            if rest.first == "'" {
                rest = rest.dropFirst()
                value = String(rest.prefix { $0 != "'" })
            } else if rest.first == "\"" {
                var escaped = false
                for ch in rest.dropFirst() {
                    if escaped {
                        value.append(ch == "n" ? "\n" : ch == "t" ? "\t" : ch)
                        escaped = false
                    } else if ch == "\\" {
                        escaped = true
                    } else if ch == "\"" {
                        break
                    } else {
                        value.append(ch)
                    }
                }
            } else {
                value = String(rest)
            }
            result[key] = value
        }
        return result
    }

    @Test("the built-in templates are byte for byte the repository's templates/", arguments: TemplateSet.names)
    func builtinMatchesRepository(_ name: String) throws {
        let onDisk = try FileIO.read(repositoryRoot + "/templates/" + name + ".mustache")
        #expect(onDisk.map { String(decoding: $0.contents, as: UTF8.self) } == BuiltinTemplates.all[name],
                "Sources/Migration/Config/BuiltinTemplates.swift is out of date for templates/\(name).mustache")
        let loaded = try TemplateSet.load(directory: repositoryRoot + "/templates")
        #expect(loaded.origin == repositoryRoot + "/templates")
    }

    @Test("both .env variants carry the seed's variables, the resolved passwords, and differ only in the mode switch")
    func envFiles() throws {
        let files = try render()
        let single = try #require(files["env_single_node_file"])
        let patroni = try #require(files["env_file"])
        #expect(single.mode == 0o600 && patroni.mode == 0o600)
        #expect(single.holdsSecrets && patroni.holdsSecrets)
        #expect(single.path == "/srv/app/out/app.single-node.env")
        let s = parseEnv(single.contents)
        let p = parseEnv(patroni.contents)
        #expect(s["ENABLE_PATRONI"] == "false")
        #expect(p["ENABLE_PATRONI"] == "true")
        #expect(p["PATRONI_HOSTS"] == "127.0.0.11,127.0.0.12,127.0.0.13:8009")
        #expect(p["PATRONI_PORT"] == "8008")
        #expect(p["PATRONI_DB"] == "distributed_postgres_cluster")
        #expect(p["PATRONI_SHARED_DB"] == "shared_knowledge")
        #expect(p["PATRONI_USER"] == "dpg_cluster")
        #expect(p["PATRONI_PASSWORD"] == sampleSecrets["PATRONI_PASSWORD"])
        #expect(p["PATRONI_API_USER"] == "pgha_api")
        #expect(p["PATRONI_API_PASSWORD"] == sampleSecrets["PATRONI_API_PASSWORD"])
        #expect(p["PATRONI_MIN_CONNECTIONS"] == "2" && p["PATRONI_MAX_CONNECTIONS"] == "20")
        #expect(p["PATRONI_HEALTH_CHECK_INTERVAL"] == "30" && p["PATRONI_FAILOVER_TIMEOUT"] == "30")
        #expect(p["PATRONI_SSLMODE"] == "disable")
        #expect(p["PROJECT_DB_HOST"] == "127.0.0.10" && p["PROJECT_DB_PORT"] == "15432")
        #expect(p["PROJECT_DB_NAME"] == "distributed_postgres_cluster")
        #expect(p["PROJECT_DB_PASSWORD"] == sampleSecrets["PROJECT_DB_PASSWORD"])
        #expect(p["SHARED_DB_NAME"] == "shared_knowledge")
        #expect(p["SHARED_DB_PASSWORD"] == sampleSecrets["PROJECT_DB_PASSWORD"], "the shared database defaults to the source's credentials")
        var withoutSwitch = s
        withoutSwitch["ENABLE_PATRONI"] = "true"
        #expect(withoutSwitch == p)
        #expect(!patroni.contents.contains("&#"), "nothing is HTML-escaped")
        #expect(!patroni.contents.contains("{{"), "no unrendered tag")
    }

    @Test("env quoting round-trips awkward values", arguments: [
        "plain", "with space", "it's", "q\"uote", "back\\slash", "$HOME", "#hash", "tab\there", "new\nline", "",
    ])
    func envQuoting(_ value: String) {
        #expect(parseEnv("K=" + EnvFileSyntax.quote(value))["K"] == value)
    }

    @Test("YAML quoting round-trips awkward values", arguments: [
        "plain", "127.0.0.11", "yes", "null", "1.5", "host:8008", "a \"b\"", "-dash", "", "x#y", "0x1F",
    ])
    func yamlQuoting(_ value: String) throws {
        let node = try Yams.compose(yaml: "k: " + YAMLSyntax.scalar(value))
        #expect(node?["k"]?.string == value)
        #expect(node?["k"]?.tag.description == "tag:yaml.org,2002:str")
    }

    @Test("config.yaml is the seed's memory.postgresql block in Patroni mode, without secrets")
    func configYAML() throws {
        let file = try #require(try render()["config_yaml"])
        #expect(file.mode == 0o644 && !file.holdsSecrets)
        let root = try #require(try Yams.compose(yaml: file.contents))
        let block = try #require(root["memory"]?["postgresql"])
        #expect(block["mode"]?.string == "patroni-ha")
        let patroni = try #require(block["patroni"])
        #expect(patroni["enabled"]?.bool == true)
        #expect(patroni["apiHosts"]?.array().compactMap(\.string) == ["127.0.0.11", "127.0.0.12", "127.0.0.13:8009"])
        #expect(patroni["apiPort"]?.int == 8008)
        #expect(patroni["database"]?.string == "distributed_postgres_cluster")
        #expect(patroni["sharedDatabase"]?.string == "shared_knowledge")
        #expect(patroni["password"]?.string == "${PATRONI_PASSWORD}")
        #expect(patroni["apiPassword"]?.string == "${PATRONI_API_PASSWORD}")
        #expect(patroni["failoverTimeout"]?.int == 30)
    }

    @Test("haproxy.cfg routes by REST checks with the fast settings")
    func haproxy() throws {
        let file = try #require(try render()["haproxy_cfg"])
        let text = file.contents
        for fragment in [
            "http-check send meth GET uri /primary", "http-check send meth GET uri /replica", "http-check expect status 200",
            "default-server inter 250ms fastinter 100ms downinter 100ms fall 2 rise 1 on-marked-down shutdown-sessions",
            "timeout connect 1s", "retries 1", "option redispatch 1", "bind 127.0.0.1:5000", "bind 127.0.0.1:5001",
            "server node1 127.0.0.11:15432 check port 8008", "server node3 127.0.0.13:15432 check port 8009",
        ] {
            #expect(text.contains(fragment), "missing \(fragment)")
        }
        #expect(text.components(separatedBy: "server node2 ").count == 3, "each member in both listeners")
        for secret in sampleSecrets.values { #expect(!text.contains(secret)) }
    }

    @Test("haproxy accepts the generated configuration", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/haproxy")))
    func haproxyAccepts() throws {
        let dir = try TempDirectory("haproxy")
        defer { dir.cleanup() }
        let file = try #require(try render()["haproxy_cfg"])
        try dir.write("haproxy.cfg", file.contents)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/haproxy")
        process.arguments = ["-c", "-q", "-f", dir.file("haproxy.cfg")]
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "haproxy -c: \(output)")
    }

    @Test("patroni.yml is valid YAML for reference, with no password")
    func patroniYML() throws {
        let file = try #require(try render()["patroni_yml"])
        let root = try #require(try Yams.compose(yaml: file.contents))
        #expect(root["scope"]?.string == "pgha-test")
        #expect(root["etcd3"]?["hosts"]?.array().compactMap(\.string) == ["127.0.0.1:12379"])
        #expect(root["bootstrap"]?["dcs"]?["maximum_lag_on_failover"]?.int == 1_048_576)
        #expect(root["postgresql"]?["listen"]?.string == "0.0.0.0:15432")
        #expect(file.contents.contains("PATRONI_NAME=node3 PATRONI_RESTAPI_CONNECT_ADDRESS=127.0.0.13:8009"))
        for secret in sampleSecrets.values { #expect(!file.contents.contains(secret)) }
    }

    @Test("playbooks/sandbox-tls.yml renders TLS everywhere: members, HAProxy's checks, the pools' settings")
    func tlsRendering() throws {
        var env = sampleSecrets
        env["SHARED_DB_PASSWORD"] = "Sh4red-Secret"
        env["PATRONI_REPLICATION_PASSWORD"] = "Repl-Secret"
        let playbook = try PlaybookParser.load(path: repositoryRoot + "/playbooks/sandbox-tls.yml").playbook
        let files = try render(playbook, env: env)
        let tls = "/tmp/pgha-sandbox/tls/"

        let patroniFile = try #require(files["patroni_yml"])
        let patroni = try #require(try Yams.compose(yaml: patroniFile.contents))
        let restapi = try #require(patroni["restapi"])
        #expect(restapi["certfile"]?.string == tls + "ha.crt" && restapi["keyfile"]?.string == tls + "ha.key")
        #expect(restapi["cafile"]?.string == tls + "ca.crt" && restapi["verify_client"]?.string == "optional")
        #expect(patroni["ctl"]?["cacert"]?.string == tls + "ca.crt" && patroni["ctl"]?["certfile"]?.string == tls + "ha.crt")
        let parameters = try #require(patroni["bootstrap"]?["dcs"]?["postgresql"]?["parameters"])
        #expect(parameters["ssl"]?.string == "on" && parameters["ssl_cert_file"]?.string == tls + "ha.crt")
        #expect(parameters["ssl_ca_file"]?.string == tls + "ca.crt")
        let hba = patroni["postgresql"]?["pg_hba"]?.array().compactMap(\.string) ?? []
        #expect(hba.filter { $0.hasPrefix("host") }.allSatisfy { $0.hasPrefix("hostssl ") } && hba.count == 3)
        let replication = try #require(patroni["postgresql"]?["authentication"]?["replication"])
        #expect(replication["sslmode"]?.string == "verify-full" && replication["sslrootcert"]?.string == tls + "ca.crt")

        let haproxy = try #require(files["haproxy_cfg"]).contents
        #expect(haproxy.contains("server ha1 127.0.0.14:15432 check port 8008 check-ssl verify required ca-file \(tls)ca.crt"))

        let configFile = try #require(files["config_yaml"])
        let block = try #require(try Yams.compose(yaml: configFile.contents)?["memory"]?["postgresql"]?["patroni"])
        #expect(block["apiScheme"]?.string == "https" && block["apiCaFile"]?.string == tls + "ca.crt")
        #expect(block["apiCertFile"]?.string == tls + "client.crt" && block["apiKeyFile"]?.string == tls + "client.key")
        #expect(block["sslmode"]?.string == "verify-full" && block["sslcert"]?.string == tls + "client.crt")

        let app = parseEnv(try #require(files["env_file"]).contents)
        #expect(app["PATRONI_API_SCHEME"] == "https" && app["PATRONI_API_CERTFILE"] == tls + "client.crt" && app["PATRONI_API_KEYFILE"] == tls + "client.key")
        #expect(app["PATRONI_SSLROOTCERT"] == tls + "ca.crt" && app["PATRONI_SSLCERT"] == tls + "client.crt")
        #expect(app["PROJECT_DB_SSLMODE"] == "verify-full" && app["PROJECT_DB_SSLROOTCERT"] == tls + "ca.crt")
        #expect(app["SHARED_DB_SSLROOTCERT"] == tls + "ca.crt")
        for file in files.values where !file.holdsSecrets { for secret in env.values { #expect(!file.contents.contains(secret)) } }
        #expect(files.values.filter(\.holdsSecrets).allSatisfy { $0.mode == 0o600 })
    }

    @Test("an unset credential is an error naming it; a dry run renders a placeholder")
    func missingVariable() throws {
        var env = sampleSecrets
        env["PATRONI_PASSWORD"] = nil
        do {
            _ = try render(env: env)
            Issue.record("rendered without PATRONI_PASSWORD")
        } catch let error as MigrationError {
            #expect(error.code == .environmentVariableMissing)
            #expect(error.message.contains("target.password refers to ${PATRONI_PASSWORD}"))
        }
        let renderer = ConfigRenderer(playbook: try samplePlaybook(), templates: try .builtin(), workingDirectory: "/srv")
        let files = try renderer.render(environment: StaticEnvironment(env), placeholdersForMissingSecrets: true)
        #expect(files.first { $0.key == "env_file" }?.contents.contains("'<unset: ${PATRONI_PASSWORD}>'") == true)
    }

    @Test("optional parts disappear cleanly")
    func optionalParts() throws {
        var playbook = try samplePlaybook()
        playbook.source.databases.shared = nil
        playbook.target.databases.shared = nil
        playbook.target.apiUser = nil
        playbook.target.apiPassword = nil
        playbook.target.sslmode = nil
        playbook.target.etcdHosts = []
        playbook.haproxy.statsPort = 0
        let files = try render(playbook)
        let env = parseEnv(try #require(files["env_file"]).contents)
        #expect(env["SHARED_DB_NAME"] == nil && env["PATRONI_SHARED_DB"] == nil && env["PATRONI_API_USER"] == nil && env["PATRONI_SSLMODE"] == nil)
        #expect(try #require(files["haproxy_cfg"]).contents.contains("listen stats") == false)
        #expect(try #require(files["patroni_yml"]).contents.contains("# etcd3:"))
        #expect(try Yams.compose(yaml: try #require(files["config_yaml"]).contents)?["memory"]?["postgresql"]?["patroni"]?["apiUser"] == nil)
    }

    @Test("a broken template names its line")
    func brokenTemplate() throws {
        let dir = try TempDirectory("templates")
        defer { dir.cleanup() }
        for name in TemplateSet.names { try dir.write(name + ".mustache", BuiltinTemplates.all[name]!) }
        try dir.write("haproxy.cfg.mustache", "ok\n{{#open}}\nnever closed\n")
        do {
            _ = try TemplateSet.load(directory: dir.path)
            Issue.record("a broken template loaded")
        } catch {
            #expect(error.code == .templateInvalid)
            #expect(error.message.contains("haproxy.cfg.mustache"))
            #expect(error.message.contains("line"))
        }
        try FileManager.default.removeItem(atPath: dir.file("patroni.yml.mustache"))
        #expect(throws: MigrationError.self) { try TemplateSet.load(directory: dir.path) }
    }
}
