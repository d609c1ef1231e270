import Foundation

/// One Patroni REST API address.
///
/// Parses `host`, `host:port`, `http://host:port`, `https://host:port` (a path such as
/// `/patroni`, as in a member's `api_url`, is ignored), `[::1]:8008` and a bare `::1`.
/// User-info (`user:password@`) is refused: credentials belong in ``HTTPBasicAuth``.
public struct PatroniEndpoint: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Host name or IP address, IPv6 without brackets.
    public var host: String
    public var port: Int
    public var useTLS: Bool

    /// Patroni's default REST API port.
    public static let defaultPort = 8008

    public init(host: String, port: Int = PatroniEndpoint.defaultPort, useTLS: Bool = false) {
        self.host = host
        self.port = port
        self.useTLS = useTLS
    }

    /// Parses `text`; `nil` when it is not a usable endpoint (see ``parse(_:defaultPort:defaultTLS:)``
    /// for the reason).
    public init?(parsing text: String, defaultPort: Int = PatroniEndpoint.defaultPort, defaultTLS: Bool = false) {
        guard let endpoint = try? Self.parse(text, defaultPort: defaultPort, defaultTLS: defaultTLS) else { return nil }
        self = endpoint
    }

    /// Parses `text`, saying what is wrong with it.
    ///
    /// - Throws: ``PatroniError/Code/invalidEndpoint``.
    public static func parse(_ text: String, defaultPort: Int = PatroniEndpoint.defaultPort, defaultTLS: Bool = false) throws(PatroniError) -> PatroniEndpoint {
        func invalid(_ why: String) -> PatroniError {
            let shown = text.contains("@") ? "<endpoint with credentials>" : "\"\(text)\""
            return PatroniError(code: .invalidEndpoint, message: "\(shown) is not a Patroni API endpoint: \(why)")
        }
        var rest = Substring(text.trimmingWhitespace())
        guard !rest.isEmpty else { throw invalid("empty") }
        var useTLS = defaultTLS
        var hadScheme = false
        if let schemeEnd = rest.range(of: "://") {
            let scheme = rest[..<schemeEnd.lowerBound].lowercased()
            switch scheme {
            case "http": useTLS = false
            case "https": useTLS = true
            default: throw invalid("scheme must be http or https")
            }
            rest = rest[schemeEnd.upperBound...]
            hadScheme = true
        }
        if let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) {
            guard hadScheme else { throw invalid("a path needs an http:// or https:// prefix") }
            rest = rest[..<pathStart]
        }
        if rest.contains("@") { throw invalid("credentials do not belong in an endpoint; configure basic auth") }
        var host: Substring
        var portText: Substring?
        if rest.first == "[" {
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unterminated [IPv6] address") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw invalid("unexpected text after ]") }
                portText = after.dropFirst()
            }
            guard host.contains(":") else { throw invalid("brackets are for IPv6 addresses") }
        } else if rest.filter({ $0 == ":" }).count > 1 {
            guard !hadScheme else { throw invalid("an IPv6 address in a URL needs brackets") }
            host = rest  // bare IPv6, default port
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw invalid("no host") }
        let allowed: (Character) -> Bool = { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_" || $0 == ":" || $0 == "%" }
        guard host.allSatisfy(allowed), host.allSatisfy(\.isASCII) else { throw invalid("the host contains characters a host name cannot have") }
        var port = defaultPort
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else { throw invalid("port must be 1–65535") }
            port = value
        }
        return PatroniEndpoint(host: String(host), port: port, useTLS: useTLS)
    }

    /// Parses a comma-separated list (e.g. `PATRONI_HOSTS`); empty items are skipped and
    /// duplicates dropped, keeping the first occurrence's position.
    public static func parseList(_ text: String, defaultPort: Int = PatroniEndpoint.defaultPort, defaultTLS: Bool = false) throws(PatroniError) -> [PatroniEndpoint] {
        var out: [PatroniEndpoint] = []
        for item in text.split(separator: ",") where !String(item).trimmingWhitespace().isEmpty {
            let endpoint = try parse(String(item), defaultPort: defaultPort, defaultTLS: defaultTLS)
            if !out.contains(endpoint) { out.append(endpoint) }
        }
        return out
    }

    /// `host:port`, with brackets around an IPv6 host.
    public var authority: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// `http://host:port` or `https://host:port`.
    public var baseURL: String { (useTLS ? "https://" : "http://") + authority }

    /// `baseURL` + `path` (which should start with `/`).
    public func url(_ path: String) -> String { baseURL + (path.hasPrefix("/") ? path : "/" + path) }

    /// `host:port`, prefixed with `https://` when TLS is used.
    public var description: String { useTLS ? "https://" + authority : authority }
}
