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
    /// Server settings changed with `ALTER SYSTEM` (the shadow stage's capture, the cutover's
    /// freeze); undo puts back what `postgresql.auto.conf` held before and reloads.
    case serverSettings(ServerSettings)
    /// A table pgha created (the shadow stage's write canary); undo drops it.
    case table(Table)
    /// Roles whose LOGIN was taken away (the freeze); undo gives it back.
    case roleLogins(RoleLogins)
    /// A table's replica identity changed; undo restores it.
    case replicaIdentity(ReplicaIdentity)
    /// PgBouncer paused these databases; undo resumes them.
    case pgbouncerPause(PgBouncerPause)
    /// An object pgha created (a publication, a subscription, a table); undo drops it.
    case createdObject(CreatedObject)
    /// A Patroni permanent slot declared in the dynamic configuration; undo removes it.
    case patroniSlot(PatroniSlot)
    /// A key of Patroni's dynamic configuration changed (`PATCH /config`); undo puts back its
    /// previous value (or removes it).
    case patroniSetting(PatroniSetting)
    /// The cluster was promoted: cannot be undone (the cluster is rebuilt: sync's undo stops and
    /// empties it).
    case promotion(Promotion)
    /// A schema-1 string map, kept as read.
    case legacy([String: String])

    /// Settings as `postgresql.auto.conf` had them before pgha changed them.
    public struct ServerSettings: Codable, Hashable, Sendable {
        /// `source` (the single node) or a cluster member's name.
        public var server: String
        public var settings: [Setting]

        public struct Setting: Codable, Hashable, Sendable {
            public var name: String
            /// The value `ALTER SYSTEM` had set, or nil when auto.conf did not set it (undo: `RESET`).
            public var previousAutoConf: String?

            public init(name: String, previousAutoConf: String?) {
                self.name = name
                self.previousAutoConf = previousAutoConf
            }
        }

        public init(server: String, settings: [Setting]) {
            self.server = server
            self.settings = settings
        }
    }

    /// A table on a server.
    public struct Table: Codable, Hashable, Sendable {
        public var server: String
        public var database: String
        /// Schema-qualified name.
        public var name: String

        public init(server: String, database: String, name: String) {
            self.server = server
            self.database = database
            self.name = name
        }
    }

    public struct RoleLogins: Codable, Hashable, Sendable {
        public var server: String
        public var roles: [String]
        public init(server: String, roles: [String]) {
            self.server = server
            self.roles = roles
        }
    }

    public struct ReplicaIdentity: Codable, Hashable, Sendable {
        public var database: String
        /// `schema.table`, quoted as needed.
        public var table: String
        /// `relreplident` before: `d`, `n`, `f` or `i`.
        public var previous: String
        public init(database: String, table: String, previous: String) {
            self.database = database
            self.table = table
            self.previous = previous
        }
    }

    public struct PgBouncerPause: Codable, Hashable, Sendable {
        public var databases: [String]
        public init(databases: [String]) { self.databases = databases }
    }

    public struct CreatedObject: Codable, Hashable, Sendable {
        /// `source`, `cluster`, or `local` (a file on this machine).
        public var server: String
        /// The database; for a `file-backup`, the path of the file that was replaced.
        public var database: String
        /// `publication`, `subscription`, `table`, or `file-backup` (a backup of a file pgha
        /// replaced; undo puts it back). Written as `object` (`kind` names the undo's case).
        public var objectKind: String
        /// Its name; for a `file-backup`, the backup's path.
        public var name: String

        private enum CodingKeys: String, CodingKey { case server, database, objectKind = "object", name }

        public init(server: String, database: String, kind: String, name: String) {
            self.server = server
            self.database = database
            self.objectKind = kind
            self.name = name
        }
    }

    public struct PatroniSlot: Codable, Hashable, Sendable {
        public var name: String
        public var database: String
        public init(name: String, database: String) {
            self.name = name
            self.database = database
        }
    }

    public struct PatroniSetting: Codable, Hashable, Sendable {
        /// The key (`synchronous_mode`).
        public var key: String
        /// Its value before, as JSON text (`false`), or nil when the configuration did not have it.
        public var previous: String?
        public init(key: String, previous: String?) {
            self.key = key
            self.previous = previous
        }
    }

    public struct Promotion: Codable, Hashable, Sendable {
        /// The standby leader that was promoted.
        public var member: String
        public init(member: String) { self.member = member }
    }

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
        case .serverSettings: return "server-settings"
        case .table: return "table"
        case .roleLogins: return "role-logins"
        case .replicaIdentity: return "replica-identity"
        case .pgbouncerPause: return "pgbouncer-pause"
        case .createdObject: return "created-object"
        case .patroniSlot: return "patroni-slot"
        case .patroniSetting: return "patroni-setting"
        case .promotion: return "promotion"
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
        case "server-settings": self = .serverSettings(try ServerSettings(from: decoder))
        case "table": self = .table(try Table(from: decoder))
        case "role-logins": self = .roleLogins(try RoleLogins(from: decoder))
        case "replica-identity": self = .replicaIdentity(try ReplicaIdentity(from: decoder))
        case "pgbouncer-pause": self = .pgbouncerPause(try PgBouncerPause(from: decoder))
        case "created-object": self = .createdObject(try CreatedObject(from: decoder))
        case "patroni-slot": self = .patroniSlot(try PatroniSlot(from: decoder))
        case "patroni-setting": self = .patroniSetting(try PatroniSetting(from: decoder))
        case "promotion": self = .promotion(try Promotion(from: decoder))
        case "legacy": self = .legacy(try container.decode([String: String].self, forKey: .values))
        default:
            throw DecodingError.dataCorruptedError(
                forKey: .kind, in: container,
                debugDescription: "unknown undo kind \"\(kind)\" (expected nothing, replication-slot, hook, server-settings, table, role-logins, replica-identity, pgbouncer-pause, created-object, patroni-slot, patroni-setting, promotion or legacy; written by a newer pgha?)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        switch self {
        case .nothing: break
        case .replicationSlot(let slot): try slot.encode(to: encoder)
        case .hook(let hook): try hook.encode(to: encoder)
        case .serverSettings(let v): try v.encode(to: encoder)
        case .table(let v): try v.encode(to: encoder)
        case .roleLogins(let v): try v.encode(to: encoder)
        case .replicaIdentity(let v): try v.encode(to: encoder)
        case .pgbouncerPause(let v): try v.encode(to: encoder)
        case .createdObject(let v): try v.encode(to: encoder)
        case .patroniSlot(let v): try v.encode(to: encoder)
        case .patroniSetting(let v): try v.encode(to: encoder)
        case .promotion(let v): try v.encode(to: encoder)
        case .legacy(let values): try container.encode(values, forKey: .values)
        }
    }

    /// Every free text, masked (the state's last line of defence against a secret).
    func redacted(by redactor: SecretRedactor) -> StepUndo {
        switch self {
        case .nothing, .replicationSlot, .hook, .serverSettings, .table, .roleLogins, .replicaIdentity, .pgbouncerPause, .createdObject, .patroniSlot, .patroniSetting, .promotion:
            return self
        case .legacy(let values):
            return .legacy(Dictionary(values.map { (redactor.redact($0.key), redactor.redact($0.value)) }, uniquingKeysWith: { first, _ in first }))
        }
    }
}
