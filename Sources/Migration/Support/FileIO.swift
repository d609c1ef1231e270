#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
public import Foundation

/// What is on disk at a path: its bytes and permission bits, or nothing.
public struct FileSnapshot: Hashable, Sendable {
    public var contents: Data
    /// Permission bits (`st_mode & 0o7777`).
    public var mode: UInt16

    public init(contents: Data, mode: UInt16) {
        self.contents = contents
        self.mode = mode
    }
}

/// The few POSIX file operations the migration needs, with durable semantics and clear errors.
///
/// Every C call is here (`open`, `write`, `fsync`, `fchmod`, `rename`, `unlink`, `mkdir`,
/// `stat`, `read`): the rest of the module never touches file descriptors.
public enum FileIO {
    /// Reads the file at `path`; nil when it does not exist. Wraps `open(2)`, `fstat(2)`, `read(2)`.
    public static func read(_ path: String) throws(MigrationError) -> FileSnapshot? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw failure("cannot open", path)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure("cannot stat", path) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw MigrationError(.io, "\(path) is not a regular file", path: path)
        }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { posixRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("cannot read", path)
            }
            if n == 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        return FileSnapshot(contents: data, mode: UInt16(info.st_mode & 0o7777))
    }

    /// True when something (file, directory, link) exists at `path`. Wraps `lstat(2)`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Creates `path` and its missing parents with `mode` (existing directories are left as they
    /// are). Wraps `mkdir(2)`.
    public static func makeDirectories(_ path: String, mode: UInt16 = 0o700) throws(MigrationError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode_t(mode)) != 0 && errno != EEXIST {
                throw failure("cannot create directory", current)
            }
        }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw MigrationError(.io, "\(path) exists and is not a directory", path: path)
        }
    }

    /// Replaces `path` with `contents` and exactly `mode`, durably: a temporary file in the same
    /// directory is written, `fchmod`ed (so the umask does not matter), `fsync`ed, `rename`d over
    /// the target, and the directory is `fsync`ed. A crash leaves either the old or the new file,
    /// never a mix; at worst a stray `.pgha-tmp-*` file next to it.
    ///
    /// A temporary file left next to `path` by a process that was killed mid-write (its PID, in the
    /// name, is gone) is removed first: kill -9 at any point leaves no litter behind for long.
    public static func writeAtomically(_ contents: Data, to path: String, mode: UInt16) throws(MigrationError) {
        let directory = parentDirectory(of: path)
        let name = (path as NSString).lastPathComponent
        removeStrayTemporaries(of: name, in: directory)
        var temporary = ""
        var fd: Int32 = -1
        for attempt in 0..<100 {
            temporary = directory + "/" + temporaryPrefix + "\(getpid())-\(attempt)-" + name
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(0o600))
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw failure("cannot create a temporary file for", path) }
        var ok = false
        defer {
            if !ok { unlink(temporary) }
        }
        do {
            defer { close(fd) }
            let written = contents.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Bool in
                var offset = 0
                while offset < raw.count {
                    let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    offset += n
                }
                return true
            }
            guard written else { throw failure("cannot write", path) }
            guard fchmod(fd, mode_t(mode)) == 0 else { throw failure("cannot set the mode of", path) }
            guard fsync(fd) == 0 else { throw failure("cannot fsync", path) }
        }
        guard rename(temporary, path) == 0 else { throw failure("cannot rename a temporary file onto", path) }
        ok = true
        try syncDirectory(directory)
    }

    /// The name prefix of `writeAtomically`'s temporary files: `.pgha-tmp-<pid>-<attempt>-<name>`.
    static let temporaryPrefix = ".pgha-tmp-"

    /// Removes the temporary files of `writeAtomically(…, to: directory/name)` whose writer process
    /// no longer exists (`kill(pid, 0)` = ESRCH); a live writer's file is left alone.
    /// - Returns: the paths removed.
    @discardableResult
    public static func removeStrayTemporaries(of name: String, in directory: String) -> [String] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        var removed: [String] = []
        for entry in entries where entry.hasPrefix(temporaryPrefix) && entry.hasSuffix("-" + name) {
            let rest = entry.dropFirst(temporaryPrefix.count)
            guard let pidText = rest.split(separator: "-", maxSplits: 1).first, let pid = Int32(pidText) else { continue }
            guard pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            let stray = directory + "/" + entry
            if unlink(stray) == 0 { removed.append(stray) }
        }
        return removed
    }

    /// Removes the file at `path` (nothing happens when it does not exist) and syncs its directory.
    /// Wraps `unlink(2)`.
    public static func remove(_ path: String) throws(MigrationError) {
        if unlink(path) != 0 {
            if errno == ENOENT { return }
            throw failure("cannot remove", path)
        }
        try syncDirectory(parentDirectory(of: path))
    }

    /// `fsync(2)` on a directory, so a rename or unlink in it survives a power loss.
    public static func syncDirectory(_ directory: String) throws(MigrationError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open directory", directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("cannot fsync directory", directory) }
    }

    /// The directory part of `path` ("." for a bare name).
    public static func parentDirectory(of path: String) -> String {
        let parent = (path as NSString).deletingLastPathComponent
        return parent.isEmpty ? "." : parent
    }

    static func failure(_ what: String, _ path: String) -> MigrationError {
        let code = errno
        return MigrationError(.io, "\(what) \(path): \(String(cString: strerror(code)))", path: path)
    }
}

/// `read(2)`, outside `FileIO` so the name does not resolve to `FileIO.read`.
private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}
