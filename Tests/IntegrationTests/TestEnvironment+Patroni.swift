import Foundation
import HTTPClient
import Patroni

/// The Patroni REST API of the sandbox:
///   PGHA_TEST_PATRONI_HOSTS               comma-separated host:port list (e.g.
///                                         127.0.0.11:8008,127.0.0.12:8008,127.0.0.13:8008); when
///                                         unset, the Patroni suites are disabled
///   PGHA_TEST_PATRONI_API_USER            REST API user for POST (switchover)
///   PGHA_TEST_PATRONI_API_PASSWORD_FILE   a file holding its password (trailing newline ignored)
extension TestEnvironment {
    /// For `.enabled(if:)`: run the Patroni suites when endpoints are named, or when required.
    static let patroniEnabled: Bool = variables["PGHA_TEST_PATRONI_HOSTS"] != nil || required

    /// The sandbox's REST API endpoints, or nil (the reason is in `patroniProblem`).
    static let patroniEndpoints: [PatroniEndpoint]? = patroniResult.endpoints

    /// Basic auth for Patroni's POST endpoints, when configured.
    static let patroniAuth: PatroniCredentials? = patroniResult.auth

    /// Why `patroniEndpoints` is nil, for `#require` messages.
    static let patroniProblem: String = patroniResult.problem ?? ""

    private static let patroniResult: (endpoints: [PatroniEndpoint]?, auth: PatroniCredentials?, problem: String?) = {
        guard let hosts = variables["PGHA_TEST_PATRONI_HOSTS"], !hosts.isEmpty else {
            return (nil, nil, "PGHA_TEST_PATRONI_HOSTS is not set (PGHA_REQUIRE_SANDBOX=1 needs the sandbox's PGHA_TEST_PATRONI_* variables)")
        }
        let endpoints: [PatroniEndpoint]
        do throws(PatroniError) {
            endpoints = try PatroniEndpoint.parseList(hosts)
        } catch {
            return (nil, nil, "PGHA_TEST_PATRONI_HOSTS: \(error.message)")
        }
        var auth: PatroniCredentials?
        if let user = variables["PGHA_TEST_PATRONI_API_USER"], let file = variables["PGHA_TEST_PATRONI_API_PASSWORD_FILE"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                return (nil, nil, "PGHA_TEST_PATRONI_API_PASSWORD_FILE cannot be read: \(file)")
            }
            auth = PatroniCredentials(user: user, password: text.trimmingCharacters(in: .newlines))
        }
        return (endpoints, auth, nil)
    }()
}
