import Foundation
import HAPool
import Testing
@testable import Migration

/// The files the config stage generates are read back by HAPool's own configuration loaders,
/// exactly as the application will read them.
@Suite("Generated files read by HAPool")
struct HAPoolCompatibilityTests {
    func rendered() throws -> [String: RenderedFile] {
        let renderer = ConfigRenderer(playbook: try samplePlaybook(), templates: try .builtin(), workingDirectory: "/srv/app")
        return Dictionary(uniqueKeysWithValues: try renderer.render(environment: StaticEnvironment(sampleSecrets)).map { ($0.key, $0) })
    }

    @Test("the Patroni .env configures HAPool in Patroni mode with the playbook's values")
    func patroniEnv() throws {
        let text = try #require(try rendered()["env_file"]).contents
        let config = try EnvironmentConfiguration(try DotEnv.parse(text, file: "app.env")).dualPools()
        #expect(config.mode == .patroni)
        let patroni = try #require(config.patroni)
        #expect(patroni.apiHosts == ["127.0.0.11", "127.0.0.12", "127.0.0.13:8009"])
        #expect(patroni.apiPort == 8008)
        #expect(patroni.database == "distributed_postgres_cluster")
        #expect(patroni.user == "dpg_cluster")
        #expect(patroni.password == sampleSecrets["PATRONI_PASSWORD"])
        #expect(patroni.api.user == "pgha_api")
        #expect(patroni.api.password == sampleSecrets["PATRONI_API_PASSWORD"])
        #expect(patroni.maxReplicaLagBytes == 1_048_576)
        #expect(config.patroniSharedDatabase == "shared_knowledge")
    }

    @Test("the single-node .env configures HAPool in single-node mode")
    func singleNodeEnv() throws {
        let text = try #require(try rendered()["env_single_node_file"]).contents
        let config = try EnvironmentConfiguration(try DotEnv.parse(text, file: "app.single-node.env")).dualPools()
        #expect(config.mode == .singleNode)
        let project = try #require(config.project)
        #expect(project.host == "127.0.0.10" && project.port == 15432)
        #expect(project.database == "distributed_postgres_cluster")
        #expect(project.password == sampleSecrets["PROJECT_DB_PASSWORD"])
        #expect(project.maxConnections == 40)
        #expect(config.shared?.database == "shared_knowledge")
        #expect(config.shared?.maxConnections == 15)
    }

    @Test("the YAML block configures HAPool in Patroni mode, passwords from the environment")
    func yamlBlock() throws {
        let text = try #require(try rendered()["config_yaml"]).contents
        let config = try YAMLConfiguration.dualPools(yaml: text, environment: sampleSecrets)
        #expect(config.mode == .patroni)
        #expect(config.patroni?.apiHosts == ["127.0.0.11", "127.0.0.12", "127.0.0.13:8009"])
        #expect(config.patroni?.password == sampleSecrets["PATRONI_PASSWORD"])
        #expect(config.patroni?.api.password == sampleSecrets["PATRONI_API_PASSWORD"])
        #expect(config.patroniSharedDatabase == "shared_knowledge")
    }
}
