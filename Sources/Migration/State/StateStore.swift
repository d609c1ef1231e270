public import Foundation
import PlainText

/// The state directory (`--state-dir`, default `.pgha/`): `state.json`, the `lock` file and
/// `backups/<stage>/<n>-<name>`.
///
/// `save` writes atomically and durably (temporary file in the same directory, `fsync`, `rename`,
/// directory `fsync`), after masking every known secret. `load` turns every way a file can be
/// unreadable into a clear error: missing, empty, truncated or corrupt JSON (naming the byte offset,
/// line and column: bytes that are not UTF-8, a key written twice, nesting deeper than 512 levels),
/// written by a newer pgha (naming its version and schema), or not matching the schema (naming the
/// key path). Each says what to do.
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
        // ISO 8601 with milliseconds: a cutover's steps take tens of milliseconds each, and the
        // journal is where their times are read back (files from before hold whole seconds).
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Self.dateWithMilliseconds.format(date))
        }
        return encoder
    }

    static let dateWithMilliseconds = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// An ISO 8601 date with or without fractional seconds.
    static func parseDate(_ text: String) -> Date? {
        (try? dateWithMilliseconds.parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text))
    }

    /// The JSON bytes of `state` (pretty, sorted keys, ISO 8601 dates with milliseconds, trailing newline).
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

    /// Decodes state bytes; `path` is used in messages. Every error names the file, the place
    /// (byte offset, line and column, or the key path) and what to do.
    public static func decode(_ data: Data, path: String) throws(MigrationError) -> MigrationState {
        let advice = "Restore it from a backup, or move it aside to start over (then check the generated files by hand)."
        guard !data.isEmpty else {
            throw MigrationError(.stateCorrupt, "state file \(path) is empty (0 bytes), probably cut short by a crash or a full disk. \(advice)", path: path)
        }
        // The syntax check runs first: it also refuses what Foundation would read by guessing
        // (a key written twice, an unpaired surrogate).
        if let failure = JSONSyntaxCheck.firstError(in: Array(data)) {
            let truncated = failure.offset >= data.count ? " The file is \(data.count) bytes long and ends in the middle of the document: it was probably cut short." : ""
            throw MigrationError(.stateCorrupt, "state file \(path) is not valid JSON at \(failure).\(truncated) \(advice)", path: path)
        }
        let decoder = JSONDecoder()
        // As `.iso8601`, but a bad date names its key (Foundation's own error stops at the parent).
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = parseDate(text) else {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "expected a date such as 2027-01-15T08:00:00Z, got \(UTF8Text.quoted(text, limit: 40))"
                )
            }
            return date
        }
        let header: Header
        do {
            header = try decoder.decode(Header.self, from: data)
        } catch let error as DecodingError {
            if case .typeMismatch(_, let context) = error, context.codingPath.isEmpty {
                throw MigrationError(.stateCorrupt, "state file \(path) is not a pgha state file: the top level is not a JSON object with schemaVersion. \(advice)", path: path)
            }
            throw MigrationError(.stateCorrupt, "state file \(path) is not a pgha state file: \(describe(error)). \(advice)", path: path)
        } catch {
            throw MigrationError(.stateCorrupt, "state file \(path) cannot be read at the top level: \(UTF8Text.escaped("\(error)")). \(advice)", path: path)
        }
        guard let schema = header.schemaVersion else {
            throw MigrationError(.stateCorrupt, "state file \(path) has no schemaVersion at the top level: it is not a pgha state file. \(advice)", path: path)
        }
        guard schema <= MigrationState.currentSchemaVersion else {
            let writer = header.toolVersion.map { "pgha \(UTF8Text.escaped($0, limit: 40))" } ?? "a newer pgha"
            throw MigrationError(
                .stateTooNew,
                "state file \(path) was written by \(writer) with schema \(schema) (schemaVersion at the top level); this pgha reads schema \(MigrationState.currentSchemaVersion) or older. Use that pgha (or a newer one) to continue, resume or roll back.",
                path: path
            )
        }
        guard schema >= 1 else {
            throw MigrationError(.stateCorrupt, "state file \(path) has an invalid schemaVersion \(schema) at the top level. \(advice)", path: path)
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
            throw MigrationError(.stateCorrupt, "state file \(path) cannot be read at the top level: \(UTF8Text.escaped("\(error)")). \(advice)", path: path)
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func keyPath(_ path: [any CodingKey]) -> String {
            var out = ""
            for key in path {
                if let index = key.intValue { out += "[\(index)]" } else { out += out.isEmpty ? key.stringValue : "." + key.stringValue }
            }
            return out.isEmpty ? "the top level" : UTF8Text.escaped(out, limit: 120)
        }
        func name(_ type: Any.Type) -> String {
            switch type {
            case is String.Type: return "a string"
            case is Int.Type, is Int64.Type, is UInt32.Type: return "a whole number"
            case is Double.Type: return "a number"
            case is Bool.Type: return "true or false"
            case is [String: Any].Type: return "an object"
            case is [Any].Type: return "a list"
            default: return "\(type)"
            }
        }
        switch error {
        case .keyNotFound(let key, let context):
            let parent = keyPath(context.codingPath)
            return "missing key \"\(key.stringValue)\"" + (context.codingPath.isEmpty ? " at the top level" : " in \(parent)")
        case .typeMismatch(let type, let context):
            return "\(keyPath(context.codingPath)): expected \(name(type))"
        case .valueNotFound(let type, let context):
            return "\(keyPath(context.codingPath)): expected \(name(type)), found null"
        case .dataCorrupted(let context):
            // The description may quote the file's value: shortened, control characters escaped.
            return "\(keyPath(context.codingPath)): \(UTF8Text.escaped(context.debugDescription, limit: 160))"
        @unknown default:
            return "\(error)"
        }
    }
}
