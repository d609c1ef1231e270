public import Foundation

/// Writes, backs up and restores the files of one stage, write-ahead through the journal.
///
/// Writing a file: if it already has the wanted bytes and mode, nothing happens (re-running writes
/// nothing). Otherwise the intent is saved (path, SHA-256 and mode before, backup path, SHA-256 and
/// mode after), the old file is copied byte for byte with its mode to
/// `<state-dir>/backups/<stage>/<id>-<name>`, the new content is written atomically with its mode,
/// and the record is marked written.
///
/// Undo restores, for every path, the state before the stage's *first* write to it (from that
/// record's backup, or by removing a file that did not exist), verifies the result byte for byte,
/// and marks the records restored. Both operations are idempotent and resume cleanly from a crash
/// at any point: an intent without completion is resolved by comparing the file on disk with the
/// recorded before/after checksums.
public struct ManagedFiles: Sendable {
    public let journal: StateJournal
    public let stage: MigrationStage
    /// `<state-dir>/backups`.
    public let backupsDirectory: String

    public init(journal: StateJournal, stage: MigrationStage, backupsDirectory: String) {
        self.journal = journal
        self.stage = stage
        self.backupsDirectory = backupsDirectory
    }

    /// What `write` did.
    public enum WriteResult: String, Hashable, Sendable {
        /// The file did not exist and was created.
        case created
        /// The file existed with other content or mode; it was backed up and replaced.
        case updated
        /// The file already had the wanted content and mode; nothing was written.
        case unchanged
    }

    /// What undo did to one path.
    public struct RestoreResult: Hashable, Sendable {
        public var path: String
        /// True: the original was put back; false: the file did not exist before and was removed.
        public var restored: Bool
        /// Set when the file had been changed by someone else after pgha wrote it: that content
        /// was saved here before restoring.
        public var savedExternalChangesAt: String?
    }

    /// Makes `path` hold exactly `contents` with `mode`.
    @discardableResult
    public func write(key: String, path: String, contents: Data, mode: UInt16) throws(MigrationError) -> WriteResult {
        try resolvePending()
        let current = try FileIO.read(path)
        if let current, current.contents == contents, current.mode == mode {
            return .unchanged
        }
        let now = journal.clock.now()
        let after = try SHA256.hex(contents)
        let before = try current.map { (c: FileSnapshot) throws(MigrationError) -> String in try SHA256.hex(c.contents) }
        let record: MigrationState.FileRecord = try journal.update { s in
            let id = s.nextRecordID
            s.nextRecordID += 1
            let backup = current == nil ? nil : backupPath(id: id, path: path)
            let record = MigrationState.FileRecord(
                id: id, stage: stage, key: key, path: path, existedBefore: current != nil,
                sha256Before: before, modeBefore: current.map { FileMode($0.mode) }, backupPath: backup,
                sha256After: after, modeAfter: FileMode(mode), phase: .intent, intendedAt: now
            )
            s.files.append(record)
            return record
        }
        if let current, let backup = record.backupPath {
            try FileIO.makeDirectories(FileIO.parentDirectory(of: backup), mode: 0o700)
            try FileIO.writeAtomically(current.contents, to: backup, mode: current.mode)
        }
        try FileIO.makeDirectories(FileIO.parentDirectory(of: path), mode: 0o700)
        try FileIO.writeAtomically(contents, to: path, mode: mode)
        try setPhase(record.id, .written)
        return current == nil ? .created : .updated
    }

    /// Resolves this stage's file intents left by an interrupted run: written if the file holds the
    /// wanted content, abandoned if it still holds the old one.
    /// - Throws: `.fileChangedExternally` when the file holds neither.
    public func resolvePending() throws(MigrationError) {
        for record in journal.snapshot.files where record.stage == stage && record.phase == .intent {
            let current = try FileIO.read(record.path)
            if try matches(current, sha: record.sha256After, mode: record.modeAfter) {
                try setPhase(record.id, .written)
            } else if try matchesBefore(current, record) {
                if let backup = record.backupPath { try FileIO.remove(backup) }
                try setPhase(record.id, .abandoned)
            } else {
                throw MigrationError(
                    .fileChangedExternally,
                    "\(record.path) changed while pgha was interrupted: it holds neither its previous content nor what pgha was writing. Check it by hand; the previous content is in \(record.backupPath ?? "(no backup: the file did not exist)").",
                    path: record.path
                )
            }
        }
    }

    /// Undoes every write of this stage. Returns what was done per path.
    @discardableResult
    public func undo() throws(MigrationError) -> [RestoreResult] {
        try resolvePending()
        let written = journal.snapshot.files.filter { $0.stage == stage && $0.phase == .written }
        var paths: [String] = []
        for record in written where !paths.contains(record.path) { paths.append(record.path) }
        var results: [RestoreResult] = []
        // Last written first, as a stack.
        for path in paths.reversed() {
            let records = written.filter { $0.path == path }.sorted { $0.id < $1.id }
            let first = records[0]
            let last = records[records.count - 1]
            let current = try FileIO.read(path)
            var saved: String?
            if try matchesBefore(current, first) {
                // Already restored (a crash after restoring, before recording it).
            } else {
                if !(try matches(current, sha: last.sha256After, mode: last.modeAfter)), let current {
                    // Someone edited the file after pgha wrote it: keep their version before restoring.
                    let keep = backupPath(id: last.id, path: path) + ".changed-before-undo"
                    try FileIO.makeDirectories(FileIO.parentDirectory(of: keep), mode: 0o700)
                    try FileIO.writeAtomically(current.contents, to: keep, mode: current.mode)
                    saved = keep
                }
                try restore(first)
            }
            let now = journal.clock.now()
            try journal.update { s in
                for i in s.files.indices where s.files[i].stage == stage && s.files[i].path == path && s.files[i].phase == .written {
                    s.files[i].phase = .restored
                    s.files[i].restoredAt = now
                }
            }
            results.append(RestoreResult(path: path, restored: first.existedBefore, savedExternalChangesAt: saved))
        }
        return results
    }

    /// Puts back the content `record` replaced, and checks it byte for byte.
    private func restore(_ record: MigrationState.FileRecord) throws(MigrationError) {
        guard record.existedBefore else {
            try FileIO.remove(record.path)
            return
        }
        guard let backupPath = record.backupPath, let before = record.sha256Before, let mode = record.modeBefore else {
            throw MigrationError(.stateCorrupt, "the state records no backup for \(record.path) (record \(record.id))", path: record.path)
        }
        guard let backup = try FileIO.read(backupPath) else {
            throw MigrationError(.io, "the backup \(backupPath) of \(record.path) is missing; cannot restore it", path: backupPath)
        }
        guard try SHA256.hex(backup.contents) == before else {
            throw MigrationError(.io, "the backup \(backupPath) of \(record.path) does not match its recorded checksum; not restoring it", path: backupPath)
        }
        try FileIO.makeDirectories(FileIO.parentDirectory(of: record.path), mode: 0o700)
        try FileIO.writeAtomically(backup.contents, to: record.path, mode: mode.rawValue)
        guard let check = try FileIO.read(record.path), try SHA256.hex(check.contents) == before, check.mode == mode.rawValue else {
            throw MigrationError(.io, "\(record.path) does not match its backup after restoring it", path: record.path)
        }
    }

    private func matches(_ snapshot: FileSnapshot?, sha: String, mode: FileMode) throws(MigrationError) -> Bool {
        guard let snapshot, snapshot.mode == mode.rawValue else { return false }
        return try SHA256.hex(snapshot.contents) == sha
    }

    private func matchesBefore(_ snapshot: FileSnapshot?, _ record: MigrationState.FileRecord) throws(MigrationError) -> Bool {
        guard record.existedBefore else { return snapshot == nil }
        guard let sha = record.sha256Before, let mode = record.modeBefore else { return false }
        return try matches(snapshot, sha: sha, mode: mode)
    }

    private func setPhase(_ id: Int, _ phase: MigrationState.FilePhase) throws(MigrationError) {
        let now = journal.clock.now()
        try journal.update { s in
            guard let i = s.files.firstIndex(where: { $0.id == id }) else { return }
            s.files[i].phase = phase
            if phase == .written { s.files[i].writtenAt = now }
        }
    }

    /// `<backups>/<stage>/<id>-<file name>`.
    func backupPath(id: Int, path: String) -> String {
        "\(backupsDirectory)/\(stage.rawValue)/\(id)-\((path as NSString).lastPathComponent)"
    }
}
