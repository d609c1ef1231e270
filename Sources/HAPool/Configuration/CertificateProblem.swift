/// A TLS failure recognised in libpq's or libcurl's error text, with what to do about it.
///
/// Both libraries report certificate problems as text only (libpq through `PQerrorMessage`,
/// libcurl through its error buffer), so this reads the phrases OpenSSL, libpq and libcurl use.
/// A certificate problem does not heal by waiting or retrying: callers stop early and say so.
public struct CertificateProblem: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The server's certificate is not signed by the CA the client trusts (or is self-signed).
        case untrusted
        /// The server's certificate has expired.
        case expired
        /// The server's certificate is not valid yet (or the clock is wrong).
        case notYetValid
        /// The certificate does not name the host connected to (subjectAltName / CN).
        case wrongHost
        /// libpq's "certificate verify failed": untrusted, expired or not yet valid (libpq does not
        /// say which).
        case verifyFailed
        /// The server refused the client's certificate, or asked for one that was not given.
        case clientCertificateRefused
        /// A CA, certificate or key file named in the settings is missing or unreadable.
        case unreadableFile
        /// The server does not speak TLS where the settings require it.
        case serverWithoutTLS
    }

    public var kind: Kind

    public init(kind: Kind) { self.kind = kind }

    /// The problem described by `message`, or nil when it is not a TLS problem.
    public init?(message: String) {
        let m = message.lowercased()
        func has(_ phrases: String...) -> Bool { phrases.contains { m.contains($0) } }
        if has("certificate has expired") {
            kind = .expired
        } else if has("certificate is not yet valid") {
            kind = .notYetValid
        } else if has("does not match host name", "no alternative certificate subject name matches",
                      "subject name does not match", "ssl: certificate subject name") {
            kind = .wrongHost
        } else if has("self-signed certificate", "self signed certificate", "unable to get local issuer certificate",
                      "unable to get issuer certificate", "certificate signature failure", "unknown ca") {
            kind = .untrusted
        } else if has("certificate required", "bad certificate", "certificate unknown", "handshake failure") && has("alert") {
            kind = .clientCertificateRefused
        } else if has("root certificate file", "could not open certificate file", "could not load private key file",
                      "could not read root certificate file", "certificate present, but not private key",
                      "error setting certificate", "unable to set private key file", "could not load pem client certificate",
                      "problem with the local ssl certificate", "error reading ca") {
            kind = .unreadableFile
        } else if has("server does not support ssl", "ssl: wrong version number", "wrong version number", "packet length too long") {
            kind = .serverWithoutTLS
        } else if has("certificate verify failed", "ssl certificate problem", "ssl peer certificate") {
            kind = .verifyFailed
        } else {
            return nil
        }
    }

    /// The problem in `messages`, the first one recognised.
    public static func first(in messages: some Sequence<String>) -> CertificateProblem? {
        for message in messages { if let problem = CertificateProblem(message: message) { return problem } }
        return nil
    }

    public var description: String {
        switch kind {
        case .untrusted: "its certificate is not signed by the trusted CA"
        case .expired: "its certificate has expired"
        case .notYetValid: "its certificate is not valid yet"
        case .wrongHost: "its certificate does not name the host connected to"
        case .verifyFailed: "its certificate did not verify (another CA, expired or not yet valid)"
        case .clientCertificateRefused: "it refused the client certificate (or wanted one)"
        case .unreadableFile: "a CA, certificate or key file cannot be read"
        case .serverWithoutTLS: "it does not speak TLS there"
        }
    }

    /// What to do, for the server `host:port` reached with the CA file `caFile` (named by the
    /// setting `caSetting`, e.g. `source.sslrootcert` or `PATRONI_API_CAFILE`). `probe` is the
    /// command that shows the server's certificate (`openssl s_client …`).
    public func advice(server: String, caSetting: String, caFile: String?, certSetting: String, postgres: Bool) -> String {
        let ca = caFile.map { "\(caSetting) (\($0))" } ?? caSetting
        let probe = "openssl s_client -connect \(server)\(postgres ? " -starttls postgres" : "")\(caFile.map { " -CAfile \($0)" } ?? "") </dev/null"
        switch kind {
        case .untrusted:
            return "the certificate of \(server) is not signed by the CA in \(ca): set \(caSetting) to the CA that signed the server's certificate (`\(probe)` shows its issuer)"
        case .expired:
            return "the certificate of \(server) has expired: renew it on the server, then reload it (`\(probe) | openssl x509 -noout -dates` shows its dates)"
        case .notYetValid:
            return "the certificate of \(server) is not valid yet: check the clocks of both machines (`date -u`), or reissue it (`\(probe) | openssl x509 -noout -dates`)"
        case .wrongHost:
            return "the certificate of \(server) does not name that host: reissue it with the address in its subjectAltName, or connect by a name it holds (`\(probe) | openssl x509 -noout -ext subjectAltName`)"
        case .verifyFailed:
            return "the certificate of \(server) did not verify against \(ca): signed by another CA, expired or not valid yet (`\(probe)` says which: see its \"Verify return code\")"
        case .clientCertificateRefused:
            return "\(server) refused the client certificate: set \(certSetting) to a certificate signed by the CA the server trusts (its ssl_ca_file / restapi cafile), with its key"
        case .unreadableFile:
            return "a TLS file named in the settings cannot be read: check that \(ca) and \(certSetting) (and the key) exist and are readable by this user"
        case .serverWithoutTLS:
            return "\(server) does not speak TLS: enable TLS on the server, or lower the sslmode / use http if it is not meant to"
        }
    }
}
