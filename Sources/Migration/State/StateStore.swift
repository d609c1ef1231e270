public import Foundation

/// The state directory (`--state-dir`, default `.pgha/`): `state.json`, the `lock` file and
/// `backups/<stage>/<n>-<name>`.
///
/// `save` writes atomically and durably (temporary file in the same directory, `fsync`, `rename`,
/// directory `fsync`), after masking every known secret. `load` turns every way a file can be
/// unreadable into a clear error: missing, empty, truncated or corrupt JSON (naming the byte offset,
/// line and column), written by a newer pgha (naming its version and schema), or not matching the
/// schema (naming the key path).
public struct StateStore: Sendable {
    /// The state directory.
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// `<dir>/state.json`.
    public var stateFile: String { directory + "/state.json" }
    /// `<dir>/lock`.
    public var lockFile: String { directory + "/lock" }
    /// `<dir>/backups`.
    public var backupsDirectory: String { directory + "/backups" }

    /// Whether a state file exists.
    public var hasState: Bool { FileIO.exists(stateFile) }

    /// Creates the directory (mode 0700: backups may hold secrets) if needed.
    public func prepare() throws(MigrationError) {
        try FileIO.makeDirectories(directory, mode: 0o700)
    }

    /// Writes `state` durably, with every secret `redactor` knows masked.
    public func save(_ state: MigrationState, redactor: SecretRedactor) throws(MigrationError) {
        try prepare()
        let data = try Self.encode(state.redacted(by: redactor))
        try FileIO.writeAtomically(data, to: stateFile, mode: 0o600)
    }

    /// Reads the state.
    /// - Throws: `.stateNotFound`, `.stateCorrupt`, `.stateTooNew`, `.io`.
    public func load() throws(MigrationError) -> MigrationState {
        guard let snapshot = try FileIO.read(stateFile) else {
            throw MigrationError(
                .stateNotFound,
                "no migration state in \(directory) (no state.json): nothing has run with this --state-dir yet",
                path: stateFile
            )
        }
        return try Self.decode(snapshot.contents, path: stateFile)
    }

    /// Reads the state, or nil when there is none.
    public func loadIfPresent() throws(MigrationError) -> MigrationState? {
        guard hasState else { return nil }
        return try load()
    }

    /// Takes the lock of this state directory (see `StateLock`).
    public func lock(command: String, toolVersion: String, clock: any MigrationClock) throws(MigrationError) -> StateLock {
        try prepare()
        return try StateLock.acquire(path: lockFile, command: command, toolVersion: toolVersion, now: clock.now())
    }

    // MARK: - Encoding

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    /// The JSON bytes of `state` (pretty, sorted keys, ISO 8601 dates, trailing newline).
    public static func encode(_ state: MigrationState) throws(MigrationError) -> Data {
        do {
            var data = try encoder().encode(state)
            data.append(UInt8(ascii: "\n"))
            return data
        } catch {
            throw MigrationError(.io, "cannot encode the migration state: \(error)")
        }
    }

    private struct Header: Decodable {
        var schemaVersion: Int?
        var toolVersion: String?
    }

    /// Decodes state bytes; `path` is used in messages.
    public static func decode(_ data: Data, path: String) throws(MigrationError) -> MigrationState {
        let advice = "Restore it from a backup, or move it aside to start over (then check the generated files by hand)."
        guard !data.isEmpty else {
            throw MigrationError(.stateCorrupt, "state file \(path) is empty (0 bytes), probably cut short by a crash or a full disk. \(advice)", path: path)
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let header: Header
        do {
            header = try decoder.decode(Header.self, from: data)
        } catch {
            if let failure = JSONSyntaxCheck.firstError(in: Array(data)) {
                let truncated = failure.offset >= data.count ? " The file is \(data.count) bytes long and ends in the middle of the document: it was probably cut short." : ""
                throw MigrationError(.stateCorrupt, "state file \(path) is not valid JSON at \(failure).\(truncated) \(advice)", path: path)
            }
            throw MigrationError(.stateCorrupt, "state file \(path) is not a pgha state file (expected a JSON object with schemaVersion). \(advice)", path: path)
        }
        guard let schema = header.schemaVersion else {
            throw MigrationError(.stateCorrupt, "state file \(path) has no schemaVersion: it is not a pgha state file. \(advice)", path: path)
        }
        guard schema <= MigrationState.currentSchemaVersion else {
            let writer = header.toolVersion.map { "pgha \($0)" } ?? "a newer pgha"
            throw MigrationError(
                .stateTooNew,
                "state file \(path) was written by \(writer) with schema \(schema); this pgha reads schema \(MigrationState.currentSchemaVersion) or older. Use that pgha (or a newer one) to continue, resume or roll back.",
                path: path
            )
        }
        guard schema >= 1 else {
            throw MigrationError(.stateCorrupt, "state file \(path) has an invalid schemaVersion \(schema). \(advice)", path: path)
        }
        do {
            decoder.userInfo[StepUndo.schemaVersionKey] = schema
            var state = try decoder.decode(MigrationState.self, from: data)
            // Schema 1 → 2: undo information became typed (`StepUndo`; schema-1 maps are read as
            // `.legacy`) and stages may record what they wait for. The next save writes schema 2.
            state.schemaVersion = MigrationState.currentSchemaVersion
            return state
        } catch let error as DecodingError {
            throw MigrationError(.stateCorrupt, "state file \(path) does not match schema \(schema): \(describe(error)). \(advice)", path: path)
        } catch {
            throw MigrationError(.stateCorrupt, "state file \(path) cannot be read: \(error). \(advice)", path: path)
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func keyPath(_ path: [any CodingKey]) -> String {
            var out = ""
            for key in path {
                if let index = key.intValue { out += "[\(index)]" } else { out += out.isEmpty ? key.stringValue : "." + key.stringValue }
            }
            return out.isEmpty ? "the top level" : out
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = keyPath(context.codingPath)
            return "missing key \"\(key.stringValue)\"" + (context.codingPath.isEmpty ? "" : " in \(parent)")
        case .typeMismatch(let type, let context):
            return "\(keyPath(context.codingPath)): expected \(type)"
        case .valueNotFound(let type, let context):
            return "\(keyPath(context.codingPath)): expected \(type), found null"
        case .dataCorrupted(let context):
            return "\(keyPath(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
