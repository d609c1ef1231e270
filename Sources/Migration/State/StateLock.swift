#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
public import Foundation
import Synchronization

/// Who holds (or held) a state directory's lock. Written as JSON into the lock file.
public struct LockHolder: Codable, Hashable, Sendable, CustomStringConvertible {
    public var pid: Int32
    public var hostname: String
    public var startedAt: Date
    public var command: String
    public var toolVersion: String

    public init(pid: Int32, hostname: String, startedAt: Date, command: String, toolVersion: String) {
        self.pid = pid
        self.hostname = hostname
        self.startedAt = startedAt
        self.command = command
        self.toolVersion = toolVersion
    }

    /// `pgha run (pid 1234 on db-admin-1, since 2026-11-26T10:00:00Z)`
    public var description: String {
        "pgha \(command) (pid \(pid) on \(hostname), since \(startedAt.formatted(.iso8601)))"
    }

    /// Whether the process is alive, when it runs on this host (`kill(pid, 0)`: ESRCH means gone);
    /// nil for another host.
    public var isAliveOnThisHost: Bool? {
        guard hostname == StateLock.hostName() else { return nil }
        if kill(pid, 0) == 0 { return true }
        return errno != ESRCH
    }
}

/// One runner at a time per state directory.
///
/// The lock is an exclusive `flock(2)` on `<state-dir>/lock`, held for the whole run; the file's
/// content names the holder (PID, host, start time, command) for error messages and `pgha status`.
/// The kernel releases a `flock` when its process dies, even by `kill -9`, so a lock file left by a
/// crashed runner is stale by construction: the next runner takes it over and reports the previous
/// holder (`replacedHolder`, whose PID `kill(pid, 0)` shows gone). A live holder gives a clear
/// `.locked` error naming it.
public final class StateLock: Sendable {
    public let path: String
    /// This process's entry.
    public let holder: LockHolder
    /// The holder recorded in a stale lock file that was taken over, if any.
    public let replacedHolder: LockHolder?
    private let descriptor: Mutex<Int32>

    private init(path: String, descriptor: Int32, holder: LockHolder, replacedHolder: LockHolder?) {
        self.path = path
        self.descriptor = Mutex(descriptor)
        self.holder = holder
        self.replacedHolder = replacedHolder
    }

    deinit {
        release()
    }

    /// Whether this object still holds the lock.
    public var isHeld: Bool { descriptor.withLock { $0 >= 0 } }

    /// Releases the lock and removes the lock file. Safe to call more than once.
    public func release() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            // Unlink while still holding the lock: a waiter that opened the old file notices the
            // path changed and retries (see `acquire`).
            unlink(path)
            close(fd)
            fd = -1
        }
    }

    /// Takes the lock at `path`. Wraps `open(2)`, `flock(2)`, `fstat(2)`/`stat(2)`, `ftruncate(2)`,
    /// `pwrite(2)`, `fsync(2)`.
    static func acquire(path: String, command: String, toolVersion: String, now: Date) throws(MigrationError) -> StateLock {
        let me = LockHolder(pid: getpid(), hostname: hostName(), startedAt: now, command: command, toolVersion: toolVersion)
        for _ in 0..<50 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode_t(0o600))
            guard fd >= 0 else { throw FileIO.failure("cannot open the lock file", path) }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let code = errno
                let holder = readHolder(fd)
                close(fd)
                guard code == EWOULDBLOCK else {
                    throw MigrationError(.io, "cannot lock \(path): \(String(cString: strerror(code)))", path: path)
                }
                let who = holder.map { "\($0)" } ?? "another pgha process"
                throw MigrationError(
                    .locked,
                    "the state directory is in use by \(who). Wait for it to finish or stop it (Ctrl-C saves its state); the lock frees itself when that process exits. Lock file: \(path)",
                    path: path
                )
            }
            // The file may have been unlinked (and replaced) between our open and flock.
            var opened = stat()
            var current = stat()
            guard fstat(fd, &opened) == 0, stat(path, &current) == 0,
                  opened.st_ino == current.st_ino, opened.st_dev == current.st_dev else {
                close(fd)
                continue
            }
            let previous = readHolder(fd)
            guard let data = try? JSONEncoder.lockEncoder.encode(me) else {
                close(fd)
                throw MigrationError(.io, "cannot encode the lock holder", path: path)
            }
            let ok = ftruncate(fd, 0) == 0 && data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) == $0.count } && fsync(fd) == 0
            guard ok else {
                let error = FileIO.failure("cannot write the lock file", path)
                close(fd)
                throw error
            }
            return StateLock(path: path, descriptor: fd, holder: me, replacedHolder: previous)
        }
        throw MigrationError(.locked, "cannot take the lock \(path): it keeps being replaced by other processes", path: path)
    }

    /// Reads who holds the lock at `path` without taking it (for `pgha status`); nil when unlocked.
    public static func currentHolder(path: String) -> LockHolder? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // A shared lock succeeds only when nobody holds the exclusive one.
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return readHolder(fd)
    }

    private static func readHolder(_ fd: Int32) -> LockHolder? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(LockHolder.self, from: Data(buffer[0..<n]))
    }

    /// This machine's host name (`gethostname(2)`).
    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown-host" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension JSONEncoder {
    fileprivate static var lockEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }
}
