import CCrypto
public import Foundation

/// SHA-256 digests through libcrypto's one-shot `EVP_Digest` with `EVP_sha256()`.
///
/// Used for the playbook checksum and for every file the migration writes (before/after), so that
/// resume and undo can tell "already written", "untouched" and "changed by someone else" apart.
public enum SHA256 {
    /// The lowercase hex SHA-256 of `data` (64 characters). Wraps `EVP_Digest(3)`.
    public static func hex(_ data: some DataProtocol) throws(MigrationError) -> String {
        let bytes = Array(data)
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        guard ok == 1, length == 32 else {
            throw MigrationError(.crypto, "EVP_Digest(SHA-256) failed")
        }
        return digest.prefix(Int(length)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The SHA-256 of a string's UTF-8 bytes.
    public static func hex(_ string: String) throws(MigrationError) -> String {
        try hex(Array(string.utf8))
    }
}
