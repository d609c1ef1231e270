import Foundation

/// TLS material for `pgha sandbox up --tls`, made with the `openssl` command-line tool:
/// a self-signed CA, one server certificate per server (the single node, each member of the
/// sandbox's cluster, and one shared by the migration's target members `ha1`…; the SAN holds the
/// servers' IP addresses, so `sslmode=verify-full` works) used by PostgreSQL and by Patroni's
/// REST API, and one client certificate (CN = the application role).
///
/// Keys are P-256 EC keys. Server and client keys are owned by `postgres` with mode 0600 (what
/// PostgreSQL demands); the CA key stays root-only. Existing files are kept.
enum SandboxTLS {
    static let openssl = "/usr/bin/openssl"

    /// Creates whatever is missing. Returns the names of the files it created.
    @discardableResult
    static func ensure(_ configuration: SandboxConfiguration, postgres: OSUser) async throws -> [String] {
        guard let tls = configuration.tls else { return [] }
        try FileSystem.makeDirectory(tls.directory, mode: 0o755)
        let environment = Processes.minimalEnvironment(home: "/root")
        var created: [String] = []

        func openssl(_ arguments: [String]) async throws {
            let output = try await Processes.run(
                Self.openssl, arguments, environment: environment, workingDirectory: tls.directory,
                timeout: .seconds(30))
            guard output.succeeded else {
                throw SandboxError(
                    .commandFailed,
                    "openssl \(arguments.first ?? "") failed: \(output.stderr.trimmingCharacters(in: .whitespacesAndNewlines))",
                    advice: "install it with `apt-get install -y openssl`")
            }
        }

        if !FileSystem.exists(tls.caCertificate) || !FileSystem.exists(tls.caKey) {
            try await openssl([
                "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", tls.caKey, "-out", tls.caCertificate, "-days", "3650",
                "-subj", "/CN=pgha sandbox CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
            try FileSystem.setMode(tls.caKey, 0o600)
            try FileSystem.setMode(tls.caCertificate, 0o644)
            created += [tls.caCertificate, tls.caKey]
        }

        var leaves: [(name: String, pair: SandboxConfiguration.KeyPair, extensions: String)] = []
        let hosts = serverHosts(configuration)
        for (name, pair) in tls.serverCertificates.sorted(by: { $0.key < $1.key }) {
            leaves.append((name, pair, serverExtensions(ips: hosts[name] ?? [])))
        }
        leaves.append((configuration.users.application, tls.client, clientExtensions()))

        for leaf in leaves where !FileSystem.exists(leaf.pair.certificate) || !FileSystem.exists(leaf.pair.key) {
            let csr = leaf.pair.certificate + ".csr"
            let extFile = leaf.pair.certificate + ".ext"
            defer {
                unlink(csr)
                unlink(extFile)
            }
            try FileSystem.writeFile(extFile, contents: leaf.extensions, mode: 0o600)
            try await openssl([
                "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", leaf.pair.key, "-out", csr, "-subj", "/CN=\(leaf.name)",
            ])
            try await openssl([
                "x509", "-req", "-in", csr, "-CA", tls.caCertificate, "-CAkey", tls.caKey,
                "-CAcreateserial", "-out", leaf.pair.certificate, "-days", "825", "-extfile", extFile,
            ])
            try FileSystem.setMode(leaf.pair.key, 0o600)
            try FileSystem.setOwner(leaf.pair.key, postgres)
            try FileSystem.setMode(leaf.pair.certificate, 0o644)
            created += [leaf.pair.certificate, leaf.pair.key]
        }
        return created
    }

    /// The name of the certificate the target cluster's members (`ha1`…) share.
    static let targetCertificate = "ha"

    /// The IP addresses each server certificate is for: the single node, each member of the
    /// sandbox's cluster (`node1`…), and all the target members (`ha`).
    static func serverHosts(_ configuration: SandboxConfiguration) -> [String: [String]] {
        var hosts = ["single": [configuration.single.host], targetCertificate: configuration.target.members.map(\.host)]
        for member in configuration.cluster.members { hosts[member.name] = [member.host] }
        return hosts
    }

    /// X.509 v3 extensions of a server certificate: SAN = the server's IPs (plus 127.0.0.1, where
    /// HAProxy listens in front of the cluster, and localhost).
    static func serverExtensions(ips: [String]) -> String {
        let names = (ips.filter { $0 != "127.0.0.1" }.map { "IP:\($0)" } + ["IP:127.0.0.1", "DNS:localhost"]).joined(separator: ", ")
        return """
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature, keyEncipherment
        extendedKeyUsage = serverAuth, clientAuth
        subjectAltName = \(names)

        """
    }

    /// X.509 v3 extensions of the client certificate.
    static func clientExtensions() -> String {
        """
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature, keyEncipherment
        extendedKeyUsage = clientAuth

        """
    }
}
