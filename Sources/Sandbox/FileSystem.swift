import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An OS account (the `postgres` user every server runs as).
struct OSUser: Sendable, Equatable {
    var name: String
    var uid: uid_t
    var gid: gid_t
    var home: String

    /// Looks the user up with `getpwnam_r`.
    static func lookup(_ name: String) -> OSUser? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let status = getpwnam_r(name, &entry, &buffer, buffer.count, &result)
        guard status == 0, result != nil else { return nil }
        return OSUser(
            name: name, uid: entry.pw_uid, gid: entry.pw_gid,
            home: entry.pw_dir.map { String(cString: $0) } ?? "/")
    }
}

/// Small file-system helpers with explicit modes and owners.
enum FileSystem {
    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func isExecutable(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }

    /// Creates `path` (and parents) if missing, then sets its mode and, if given, its owner.
    static func makeDirectory(_ path: String, mode: mode_t, owner: OSUser? = nil) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw SandboxError(.fileSystem, "cannot create directory \(path)", underlying: error)
        }
        try setMode(path, mode)
        if let owner { try setOwner(path, owner) }
    }

    /// Writes `contents` atomically-enough for the sandbox: a temporary file in the same directory
    /// created with `mode` from the start (so a secret is never readable by others), then renamed.
    static func writeFile(_ path: String, contents: String, mode: mode_t, owner: OSUser? = nil) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw SandboxError(.fileSystem, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(contents.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw SandboxError(.fileSystem, "cannot write \(path): \(reason)")
            }
            written += count
        }
        close(fd)
        try setMode(temporary, mode)
        if let owner { try setOwner(temporary, owner) }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw SandboxError(.fileSystem, "cannot write \(path): \(reason)")
        }
    }

    static func setMode(_ path: String, _ mode: mode_t) throws {
        guard chmod(path, mode) == 0 else {
            throw SandboxError(.fileSystem, "chmod \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func setOwner(_ path: String, _ owner: OSUser) throws {
        guard chown(path, owner.uid, owner.gid) == 0 else {
            throw SandboxError(.fileSystem, "chown \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func remove(_ path: String) throws {
        guard exists(path) else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw SandboxError(.fileSystem, "cannot remove \(path)", underlying: error)
        }
    }

    static func readText(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
}

/// An exclusive `flock` on a file, so that `up` and `down` of one sandbox never run at the same
/// time (two callers starting the same member would make one Patroni exit on a busy port).
/// Released by `unlock()`, by `deinit`, or when the process exits.
final class FileLock {
    private var fd: Int32

    /// Waits (polling every 100 ms, never blocking a thread) until the lock is ours or `timeout`
    /// passed. Wraps `open` and `flock(LOCK_EX | LOCK_NB)`.
    static func acquire(_ path: String, timeout: Duration) async throws -> FileLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SandboxError(.fileSystem, "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, clock.now < deadline else {
                close(fd)
                throw SandboxError(
                    .timeout, "another `pgha sandbox up/down` holds \(path)",
                    advice: "wait for it to finish, or find it with `fuser \(path)`")
            }
            do {
                try await Task.sleep(for: .milliseconds(100))
            } catch {
                close(fd)
                throw error
            }
        }
        return FileLock(fd: fd)
    }

    private init(fd: Int32) { self.fd = fd }

    /// Releases the lock (idempotent).
    func unlock() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { unlock() }
}
