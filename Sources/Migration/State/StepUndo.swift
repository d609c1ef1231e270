import Foundation

/// What undoing one journaled step needs, captured before the step's side effect (never
/// reconstructed after). One case per kind of side effect; each is written to the state file as an
/// object with a `kind` and its fields, e.g.
/// `{"kind": "replication-slot", "server": "source", "name": "pgha_ha", "createdByPGHA": true}`.
///
/// State files of schema 1 stored a string map here; they are read as `.legacy` (schema 1 had no
/// stage that journaled steps, so no undo of that shape is ever acted on, only kept).
public enum StepUndo: Hashable, Sendable {
    /// Nothing to undo (the step only records a fact a resumed run needs).
    case nothing
    /// A replication slot on a server; undo drops it, once nothing uses it, if pgha created it.
    case replicationSlot(ReplicationSlot)
    /// A command the playbook gave (a hook) ran; undo runs its counterpart, if the playbook has one.
    case hook(Hook)
    /// A schema-1 string map, kept as read.
    case legacy([String: String])

    /// A replication slot.
    public struct ReplicationSlot: Codable, Hashable, Sendable {
        /// `source` (the single node) or a cluster member's name.
        public var server: String
        public var name: String
        /// `physical` or `logical`.
        public var type: String
        /// False when the slot existed before pgha looked: undo leaves it alone.
        public var createdByPGHA: Bool

        public init(server: String, name: String, type: String = "physical", createdByPGHA: Bool) {
            self.server = server
            self.name = name
            self.type = type
            self.createdByPGHA = createdByPGHA
        }
    }

    /// A hook that ran.
    public struct Hook: Codable, Hashable, Sendable {
        /// The playbook key of the command that ran (`sync.start_cluster`).
        public var key: String
        /// The playbook key of the command that undoes it (`sync.stop_cluster`), if any.
        public var undoKey: String?

        public init(key: String, undoKey: String?) {
            self.key = key
            self.undoKey = undoKey
        }
    }

    /// The `kind` written to the state file.
    public var kind: String {
        switch self {
        case .nothing: return "nothing"
        case .replicationSlot: return "replication-slot"
        case .hook: return "hook"
        case .legacy: return "legacy"
        }
    }
}

extension StepUndo: Codable {
    private enum CodingKeys: String, CodingKey { case kind, values }

    /// `decoder.userInfo[StepUndo.schemaVersionKey]`: the schema of the file being read (1 allows
    /// the schema-1 string map).
    public static let schemaVersionKey = CodingUserInfoKey(rawValue: "pgha.schemaVersion")!

    public init(from decoder: any Decoder) throws {
        let schema = decoder.userInfo[Self.schemaVersionKey] as? Int ?? MigrationState.currentSchemaVersion
        if schema < 2 {
            self = .legacy(try decoder.singleValueContainer().decode([String: String].self))
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try container.decode(String.self, forKey: .kind)
        switch kind {
        case "nothing": self = .nothing
        case "replication-slot": self = .replicationSlot(try ReplicationSlot(from: decoder))
        case "hook": self = .hook(try Hook(from: decoder))
        case "legacy": self = .legacy(try container.decode([String: String].self, forKey: .values))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .kind, in: container,
                debugDescription: "unknown undo kind \"\(kind)\" (expected nothing, replication-slot, hook or legacy; written by a newer pgha?)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        switch self {
        case .nothing: break
        case .replicationSlot(let slot): try slot.encode(to: encoder)
        case .hook(let hook): try hook.encode(to: encoder)
        case .legacy(let values): try container.encode(values, forKey: .values)
        }
    }

    /// Every free text, masked (the state's last line of defence against a secret).
    func redacted(by redactor: SecretRedactor) -> StepUndo {
        switch self {
        case .nothing, .replicationSlot, .hook: return self
        case .legacy(let values):
            return .legacy(Dictionary(values.map { (redactor.redact($0.key), redactor.redact($0.value)) }, uniquingKeysWith: { first, _ in first }))
        }
    }
}
