import Foundation
import PGClient

/// Where the integration tests find their servers. The sandbox sets these variables; others may
/// add their own entries here.
///
/// PostgreSQL (a primary):
///   PGHA_TEST_PG_HOST           host or IP; when unset, the suites that need it are disabled
///   PGHA_TEST_PG_PORT           default 5432
///   PGHA_TEST_PG_USER           default "postgres"
///   PGHA_TEST_PG_DB             default: the user name
///   PGHA_TEST_PG_PASSWORD_FILE  a file holding the password (trailing newline ignored); when
///                               unset, libpq's ~/.pgpass / PGPASSFILE is used
///
/// Optionally a streaming standby of that primary (same user, password and database):
///   PGHA_TEST_PG_STANDBY_PORT   when unset, the standby tests are disabled (never required)
///   PGHA_TEST_PG_STANDBY_HOST   default: PGHA_TEST_PG_HOST
///
/// PGHA_REQUIRE_SANDBOX=1: the suites run even when variables are missing, and fail (via
/// `#require`) instead of being skipped, so CI cannot pass by accident.
enum TestEnvironment {
    static let variables = ProcessInfo.processInfo.environment

    /// True when PGHA_REQUIRE_SANDBOX=1: missing servers are failures, not skips.
    static let required: Bool = variables["PGHA_REQUIRE_SANDBOX"] == "1"

    /// For `.enabled(if:)`: run the PostgreSQL suites when a server is named, or when required.
    static let pgEnabled: Bool = variables["PGHA_TEST_PG_HOST"] != nil || required

    /// The test server, or nil when PGHA_TEST_PG_HOST is unset or a variable is unusable (the
    /// reason is in `pgProblem`).
    static let pg: PGConnectionConfig? = pgResult.config

    /// A standby of `pg`, when PGHA_TEST_PG_STANDBY_PORT is set.
    static let pgStandby: PGConnectionConfig? = {
        guard var config = pg, let text = variables["PGHA_TEST_PG_STANDBY_PORT"], let port = Int(text) else {
            return nil
        }
        config.host = variables["PGHA_TEST_PG_STANDBY_HOST"] ?? config.host
        config.port = port
        return config
    }()

    /// Why `pg` is nil, for `#require` messages.
    static let pgProblem: String = pgResult.problem ?? ""

    private static let pgResult: (config: PGConnectionConfig?, problem: String?) = {
        guard let host = variables["PGHA_TEST_PG_HOST"], !host.isEmpty else {
            return (
                nil,
                "PGHA_TEST_PG_HOST is not set (PGHA_REQUIRE_SANDBOX=1 needs the sandbox's PGHA_TEST_PG_* variables)"
            )
        }
        var port = 5432
        if let text = variables["PGHA_TEST_PG_PORT"] {
            guard let value = Int(text) else { return (nil, "PGHA_TEST_PG_PORT is not a number: \(text)") }
            port = value
        }
        let user = variables["PGHA_TEST_PG_USER"] ?? "postgres"
        var password: String?
        if let file = variables["PGHA_TEST_PG_PASSWORD_FILE"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                return (nil, "PGHA_TEST_PG_PASSWORD_FILE cannot be read: \(file)")
            }
            password = String(text.trimmingCharacters(in: .newlines))
        }
        let config = PGConnectionConfig(
            host: host, port: port, database: variables["PGHA_TEST_PG_DB"] ?? user, user: user,
            password: password, connectTimeout: .seconds(5), applicationName: "pgha-tests")
        return (config, nil)
    }()
}
