import CCrypto
import Foundation

/// Creates, keeps and reads the sandbox's password files.
///
/// Passwords are 32 characters from [A-Za-z0-9], drawn with libcrypto's `RAND_bytes` (rejection
/// sampling, so every character is equally likely). They are generated on the first `up` and kept
/// afterwards; files are mode 0600 in a 0700 directory owned by the caller (root).
public enum SandboxSecrets {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)

    /// A new random password of `length` characters (wraps `RAND_bytes`).
    public static func generatePassword(length: Int = 32) throws -> String {
        var result: [UInt8] = []
        result.reserveCapacity(length)
        var buffer = [UInt8](repeating: 0, count: 64)
        while result.count < length {
            let status = buffer.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) }
            guard status == 1 else {
                throw SandboxError(.fileSystem, "RAND_bytes failed: cannot generate a password")
            }
            // 62 * 4 = 248: bytes >= 248 are dropped so that each character is equally likely.
            for byte in buffer where byte < 248 && result.count < length {
                result.append(alphabet[Int(byte) % alphabet.count])
            }
        }
        return String(decoding: result, as: UTF8.self)
    }

    /// Reads a password file, without its trailing newline.
    public static func read(_ path: String) throws -> String {
        do {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            return text.trimmingCharacters(in: .newlines)
        } catch {
            throw SandboxError(.fileSystem, "cannot read password file \(path)", underlying: error)
        }
    }

    /// Makes sure the secrets directory and every password file exist (creating missing ones with
    /// new random passwords, keeping existing ones) and rewrites the `pgpass` file.
    static func ensure(_ configuration: SandboxConfiguration) throws -> Passwords {
        let files = configuration.secrets
        try FileSystem.makeDirectory(files.directory, mode: 0o700)
        func ensureOne(_ path: String) throws -> String {
            if FileManager.default.fileExists(atPath: path) {
                let existing = try read(path)
                if !existing.isEmpty {
                    try FileSystem.setMode(path, 0o600)
                    return existing
                }
            }
            let password = try generatePassword()
            try FileSystem.writeFile(path, contents: password + "\n", mode: 0o600)
            return password
        }
        let passwords = Passwords(
            superuser: try ensureOne(files.superuser), replication: try ensureOne(files.replication),
            rewind: try ensureOne(files.rewind), application: try ensureOne(files.application),
            restAPI: try ensureOne(files.restAPI))
        try FileSystem.writeFile(files.pgpass, contents: pgpassText(configuration, passwords), mode: 0o600)
        return passwords
    }

    /// Loads the existing passwords (for `down`/`status` nothing needs them; `up` uses `ensure`).
    static func load(_ configuration: SandboxConfiguration) throws -> Passwords {
        let files = configuration.secrets
        return Passwords(
            superuser: try read(files.superuser), replication: try read(files.replication),
            rewind: try read(files.rewind), application: try read(files.application),
            restAPI: try read(files.restAPI))
    }

    /// The libpq password file: every server, for the superuser, replication and application roles.
    static func pgpassText(_ configuration: SandboxConfiguration, _ passwords: Passwords) -> String {
        var lines: [String] = ["# pgha sandbox: hostname:port:database:username:password"]
        // PgBouncer (the application's way in, and its admin console) and HAProxy's listeners
        // (on 127.0.0.1, any port) reach the same roles.
        let servers = [(configuration.single.host, String(configuration.single.port)),
                       (configuration.pgbouncer.host, String(configuration.pgbouncer.port)),
                       ("127.0.0.1", "*")]
            + configuration.allMembers.map { ($0.host, String($0.pgPort)) }
        let users = configuration.users
        for (host, port) in servers {
            lines.append("\(host):\(port):*:\(users.application):\(passwords.application)")
            lines.append("\(host):\(port):*:\(users.superuser):\(passwords.superuser)")
            lines.append("\(host):\(port):*:\(users.replication):\(passwords.replication)")
            lines.append("\(host):\(port):*:\(users.rewind):\(passwords.rewind)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The passwords themselves, in memory only while `up` renders configs and SQL.
struct Passwords: Sendable, Equatable {
    var superuser: String
    var replication: String
    var rewind: String
    var application: String
    var restAPI: String
}

extension Passwords: CustomStringConvertible, CustomDebugStringConvertible {
    var description: String { "Passwords(<redacted>)" }
    var debugDescription: String { description }
}
