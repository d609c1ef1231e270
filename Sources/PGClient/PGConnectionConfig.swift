import CLibPQ

/// libpq's `sslmode`.
public enum PGSSLMode: String, Sendable, Codable, CaseIterable {
    case disable, allow, prefer, require
    case verifyCA = "verify-ca"
    case verifyFull = "verify-full"
}

/// libpq's `target_session_attrs` (PostgreSQL 14+ values included): which server of a
/// multi-host `host` list to settle on.
public enum PGTargetSessionAttrs: String, Sendable, Codable, CaseIterable {
    case any
    case readWrite = "read-write"
    case readOnly = "read-only"
    case primary, standby
    case preferStandby = "prefer-standby"
}

/// Connection parameters for one PostgreSQL server (or a libpq multi-host list).
///
/// `description`, `debugDescription`, `redactedDescription` and `dump()` never show the password.
/// Values are passed to libpq as keyword/value arrays (PQconnectStartParams, with `dbname` not
/// expanded), so no value can inject other keywords.
public struct PGConnectionConfig: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// Host name, IP address or Unix-socket directory; may be a comma-separated list (libpq
    /// multi-host), in which case `targetSessionAttrs` chooses among them.
    public var host: String
    /// The port for every host (see `ports` for a different port per host).
    public var port: Int
    /// One port per entry of a multi-host `host` list; nil means `port` for every host.
    public var ports: [Int]?
    /// `dbname`.
    public var database: String
    /// `user`.
    public var user: String
    /// The password; nil (or empty) lets libpq use PGPASSFILE / ~/.pgpass (or PGPASSWORD).
    public var password: String?
    /// `sslmode`; nil leaves libpq's default (`prefer`, or PGSSLMODE).
    public var sslMode: PGSSLMode?
    /// `sslrootcert`: CA file used by verify-ca / verify-full.
    public var sslRootCert: String?
    /// `sslcert`: client certificate file.
    public var sslCert: String?
    /// `sslkey`: client key file.
    public var sslKey: String?
    /// The deadline for the whole connection attempt (TCP, TLS, authentication, every host of a
    /// list), enforced by PGClient's own poll loop. Default 5 s. Also passed to libpq as
    /// `connect_timeout` (whole seconds, at least 2 — libpq's minimum).
    public var connectTimeout: Duration
    /// How long a timed-out or cancelled query waits for the server to confirm the cancellation
    /// (PQcancel, then reading the query's end) before the connection is closed instead. Default 1 s.
    public var cancelGracePeriod: Duration
    /// `application_name`, shown in pg_stat_activity. When nil libpq sends
    /// `fallback_application_name=pgha`.
    public var applicationName: String?
    /// `target_session_attrs`.
    public var targetSessionAttrs: PGTargetSessionAttrs?
    /// Other libpq keywords, e.g. `["options": "-c statement_timeout=5s", "keepalives_idle": "10"]`.
    /// The fields above take precedence over the same keyword here.
    public var extra: [String: String]

    /// The default `connectTimeout`: 5 seconds.
    public static let defaultConnectTimeout: Duration = .seconds(5)

    public init(
        host: String,
        port: Int = 5432,
        database: String,
        user: String,
        password: String? = nil,
        sslMode: PGSSLMode? = nil,
        sslRootCert: String? = nil,
        sslCert: String? = nil,
        sslKey: String? = nil,
        connectTimeout: Duration = PGConnectionConfig.defaultConnectTimeout,
        cancelGracePeriod: Duration = .seconds(1),
        applicationName: String? = nil,
        targetSessionAttrs: PGTargetSessionAttrs? = nil,
        ports: [Int]? = nil,
        extra: [String: String] = [:]
    ) {
        self.host = host
        self.port = port
        self.ports = ports
        self.database = database
        self.user = user
        self.password = password
        self.sslMode = sslMode
        self.sslRootCert = sslRootCert
        self.sslCert = sslCert
        self.sslKey = sslKey
        self.connectTimeout = connectTimeout
        self.cancelGracePeriod = cancelGracePeriod
        self.applicationName = applicationName
        self.targetSessionAttrs = targetSessionAttrs
        self.extra = extra
    }

    /// Parses a libpq connection string, `key=value ...` or a `postgresql://` / `postgres://` URI,
    /// with PQconninfoParse.
    ///
    /// Missing values get these defaults: host `localhost`, port 5432, user `postgres`, database
    /// = user, connect timeout 5 s (also when `connect_timeout` is 0: pgha never waits forever).
    /// A port list (`port=5432,5433`) with different ports fills `ports`. Keywords without a field
    /// go to `extra`.
    ///
    /// Throws `.invalidConfiguration` for a malformed string, an unknown keyword, or an invalid
    /// port, sslmode, target_session_attrs or connect_timeout; the message never contains the
    /// password.
    public init(conninfo: String) throws(PGError) {
        var errorPointer: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &errorPointer) else {
            var message = "could not parse the connection string"
            if let errorPointer {
                message = String(cString: errorPointer).trimmingTrailingNewlines()
                PQfreemem(errorPointer)
            }
            throw PGError(
                code: .invalidConfiguration,
                message: Redaction.scrub(message, secrets: PGConnectionConfig.passwordCandidates(in: conninfo)))
        }
        defer { PQconninfoFree(options) }

        var values: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                values[String(cString: keyword)] = String(cString: value)
            }
            option += 1
        }
        try self.init(parsedValues: values)
    }

    /// Builds a config from libpq keyword/value pairs (as PQconninfoParse returns them).
    init(parsedValues source: [String: String]) throws(PGError) {
        var values = source
        func take(_ key: String) -> String? {
            guard let value = values.removeValue(forKey: key), !value.isEmpty else { return nil }
            return value
        }
        func invalid(_ message: String) -> PGError {
            PGError(code: .invalidConfiguration, message: message)
        }

        let user = take("user") ?? "postgres"
        var port = 5432
        var ports: [Int]?
        if let portText = take("port") {
            var list: [Int] = []
            for item in portText.split(separator: ",", omittingEmptySubsequences: false) {
                let trimmed = item.trimmingSpaces()
                if trimmed.isEmpty {
                    list.append(5432)
                    continue
                }
                guard let number = Int(trimmed), (1...65535).contains(number) else {
                    throw invalid("invalid port number: \"\(trimmed)\"")
                }
                list.append(number)
            }
            port = list[0]
            if Set(list).count > 1 { ports = list }
        }
        var sslMode: PGSSLMode?
        if let text = take("sslmode") {
            guard let mode = PGSSLMode(rawValue: text) else {
                throw invalid(
                    "invalid sslmode value: \"\(text)\" (expected one of "
                        + PGSSLMode.allCases.map(\.rawValue).joined(separator: ", ") + ")")
            }
            sslMode = mode
        }
        var attrs: PGTargetSessionAttrs?
        if let text = take("target_session_attrs") {
            guard let value = PGTargetSessionAttrs(rawValue: text) else {
                throw invalid(
                    "invalid target_session_attrs value: \"\(text)\" (expected one of "
                        + PGTargetSessionAttrs.allCases.map(\.rawValue).joined(separator: ", ") + ")")
            }
            attrs = value
        }
        var timeout = PGConnectionConfig.defaultConnectTimeout
        if let text = take("connect_timeout") {
            guard let seconds = Int(text.trimmingSpaces()) else {
                throw invalid("invalid integer value \"\(text)\" for connection option \"connect_timeout\"")
            }
            if seconds > 0 { timeout = .seconds(seconds) }
        }
        self.init(
            host: take("host") ?? "localhost",
            port: port,
            database: take("dbname") ?? user,
            user: user,
            password: take("password"),
            sslMode: sslMode,
            sslRootCert: take("sslrootcert"),
            sslCert: take("sslcert"),
            sslKey: take("sslkey"),
            connectTimeout: timeout,
            applicationName: take("application_name"),
            targetSessionAttrs: attrs,
            ports: ports,
            extra: values.filter { !$0.value.isEmpty })
    }

    /// "host=… port=… dbname=… user=…" plus sslmode, target_session_attrs, application_name and
    /// the `extra` keywords (sorted; values of password-like keywords masked). Never the password.
    public var redactedDescription: String {
        var parts = [
            "host=" + Self.quoted(host),
            "port=" + (ports.map { $0.map(String.init).joined(separator: ",") } ?? String(port)),
            "dbname=" + Self.quoted(database),
            "user=" + Self.quoted(user),
        ]
        if let sslMode { parts.append("sslmode=" + sslMode.rawValue) }
        if let targetSessionAttrs { parts.append("target_session_attrs=" + targetSessionAttrs.rawValue) }
        if let applicationName { parts.append("application_name=" + Self.quoted(applicationName)) }
        for key in extra.keys.sorted() {
            let value = Self.isSecretKeyword(key) ? Redaction.mask : Self.quoted(extra[key] ?? "")
            parts.append(key + "=" + value)
        }
        return parts.joined(separator: " ")
    }

    /// Same as `redactedDescription`.
    public var description: String { redactedDescription }

    /// `PGConnectionConfig(host=… port=… …)`, without the password.
    public var debugDescription: String { "PGConnectionConfig(\(redactedDescription))" }

    /// `dump()` and the debugger show the redacted form, never the password.
    public var customMirror: Mirror {
        Mirror(self, children: ["redacted": redactedDescription, "hasPassword": password?.isEmpty == false])
    }

    /// The host:port label used in errors and logs ("127.0.0.1:5432", or the list for multi-host).
    var endpointLabel: String {
        guard let ports else { return "\(host):\(port)" }
        return "\(host):\(ports.map(String.init).joined(separator: ","))"
    }

    /// The keyword/value pairs handed to PQconnectStartParams, in order; later pairs override
    /// earlier ones for the same keyword (libpq's rule), so defaults come first, then `extra`,
    /// then the explicit fields. Empty values are skipped (libpq ignores them anyway).
    func libpqParameters() -> [(String, String)] {
        var pairs: [(String, String)] = [
            ("client_encoding", "UTF8"),
            ("fallback_application_name", "pgha"),
        ]
        for key in extra.keys.sorted() { pairs.append((key, extra[key] ?? "")) }
        pairs.append(("host", host))
        pairs.append(("port", ports.map { $0.map(String.init).joined(separator: ",") } ?? String(port)))
        pairs.append(("dbname", database))
        pairs.append(("user", user))
        if let password { pairs.append(("password", password)) }
        if let sslMode { pairs.append(("sslmode", sslMode.rawValue)) }
        if let sslRootCert { pairs.append(("sslrootcert", sslRootCert)) }
        if let sslCert { pairs.append(("sslcert", sslCert)) }
        if let sslKey { pairs.append(("sslkey", sslKey)) }
        let seconds = max(2, Int((connectTimeout.nanoseconds + 999_999_999) / 1_000_000_000))
        pairs.append(("connect_timeout", String(seconds)))
        if let applicationName { pairs.append(("application_name", applicationName)) }
        if let targetSessionAttrs { pairs.append(("target_session_attrs", targetSessionAttrs.rawValue)) }
        return pairs.filter { !$0.1.isEmpty }
    }

    /// Secrets to scrub from any text libpq or the server returns for this config.
    var secrets: [String] {
        var list: [String] = []
        if let password, !password.isEmpty { list.append(password) }
        for (key, value) in extra where Self.isSecretKeyword(key) && !value.isEmpty { list.append(value) }
        return list
    }

    static func isSecretKeyword(_ key: String) -> Bool { key.lowercased().contains("password") }

    /// A conninfo value in libpq's quoting: bare when safe, else single quotes with \\ and \'
    /// escaped (for a conninfo pgha hands to a server, e.g. CREATE SUBSCRIPTION's CONNECTION).
    public static func quoted(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains(where: { $0 == " " || $0 == "'" || $0 == "\\" || $0 == "=" })
        guard needsQuotes else { return value }
        return "'" + value.replacing("\\", with: "\\\\").replacing("'", with: "\\'") + "'"
    }

    /// Substrings of a raw conninfo that may be a password (used to scrub parse errors, which can
    /// quote fragments of the input): the value after `password=` and URI user-info after ':'.
    static func passwordCandidates(in conninfo: String) -> [String] {
        var candidates: [String] = []
        if let match = conninfo.firstMatch(of: #/(?i)password\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&]+)/#) {
            var value = String(match.output.1)
            if value.hasPrefix("'") {
                value.removeFirst()
                if value.hasSuffix("'") { value.removeLast() }
            }
            candidates.append(value)
        }
        if let match = conninfo.firstMatch(of: #/://[^\s:/@]*:([^\s@/]*)@/#) {
            candidates.append(String(match.output.1))
        }
        return candidates.filter { !$0.isEmpty }
    }
}

extension Duration {
    /// The duration in whole nanoseconds (saturating), computed once per call site.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (fromSeconds, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (total, overflow2) = fromSeconds.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds < 0 ? .min : .max }
        return total
    }
}

extension StringProtocol {
    func trimmingTrailingNewlines() -> String {
        var text = String(self)
        while let last = text.last, last.isNewline || last == " " { text.removeLast() }
        return text
    }

    func trimmingSpaces() -> String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return String(text)
    }
}
