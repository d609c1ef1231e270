import Foundation
import PGClient

/// What the physical method needs from the single node, before the standby cluster exists: the
/// replication role the members stream with, pg_hba.conf rules that let them, `postgresql.conf`
/// inside the data directory (Patroni needs it after the basebackup), and the slot.
public struct PhysicalSourceFacts: Sendable, Hashable, Codable {
    /// The replication role (`target.replication_user`), if it exists.
    public var replicationRole: RoleFacts?
    /// `pg_hba_file_rules` (superuser only), or why they could not be read.
    public var hbaRules: Probe<[HBARule]>
    public var configFile: String
    public var dataDirectory: String
    /// The slot named `sync.slot`, if it exists.
    public var slot: SlotFacts?

    public init(replicationRole: RoleFacts?, hbaRules: Probe<[HBARule]>, configFile: String, dataDirectory: String, slot: SlotFacts?) {
        self.replicationRole = replicationRole
        self.hbaRules = hbaRules
        self.configFile = configFile
        self.dataDirectory = dataDirectory
        self.slot = slot
    }

    public struct RoleFacts: Sendable, Hashable, Codable {
        public var name: String
        public var canLogin: Bool
        public var replication: Bool
        public var superuser: Bool
        public init(name: String, canLogin: Bool, replication: Bool, superuser: Bool) {
            self.name = name
            self.canLogin = canLogin
            self.replication = replication
            self.superuser = superuser
        }
    }

    /// One line of pg_hba.conf as PostgreSQL parsed it.
    public struct HBARule: Sendable, Hashable, Codable {
        public var line: Int
        /// `local`, `host`, `hostssl`, `hostnossl`, …
        public var type: String
        public var databases: [String]
        public var users: [String]
        /// An address, `all`, `samehost`, `samenet` or a host name; nil for `local`.
        public var address: String?
        public var netmask: String?
        public var method: String
        public init(line: Int, type: String, databases: [String], users: [String], address: String?, netmask: String?, method: String) {
            self.line = line
            self.type = type
            self.databases = databases
            self.users = users
            self.address = address
            self.netmask = netmask
            self.method = method
        }
    }

    public struct SlotFacts: Sendable, Hashable, Codable {
        public var name: String
        /// `physical` or `logical`.
        public var type: String
        public var active: Bool
        public init(name: String, type: String, active: Bool) {
            self.name = name
            self.type = type
            self.active = active
        }
    }
}

extension PhysicalSourceFacts.HBARule {
    /// Whether the rule lets `user` open a replication connection from `host` (an IPv4 address):
    /// `.yes`, `.no`, or `.unknown` (a host name, `samenet`, a `+group`, IPv6…) — pg_hba.conf is
    /// matched first to last, and the first matching line decides (its method may be `reject`).
    public enum Match: Sendable, Hashable { case yes, no, unknown }

    public func matchesReplication(user: String, from host: String) -> Match {
        guard ["host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"].contains(type) else { return .no }
        guard databases.contains("replication") else { return .no }
        var userMatch = Match.no
        for u in users {
            if u == "all" || u == user { userMatch = .yes; break }
            if u.hasPrefix("+") || u.hasPrefix("@") { userMatch = .unknown }
        }
        guard userMatch != .no else { return .no }
        let addressMatch: Match
        switch address {
        case nil: addressMatch = .no
        case "all"?: addressMatch = .yes
        case "samehost"?, "samenet"?: addressMatch = .unknown
        case let text?:
            if let network = IPv4Address(text), let ip = IPv4Address(host) {
                let mask = netmask.flatMap(IPv4Address.init)?.value ?? 0xFFFF_FFFF
                addressMatch = (network.value & mask) == (ip.value & mask) ? .yes : .no
            } else {
                addressMatch = .unknown
            }
        }
        if userMatch == .yes && addressMatch == .yes { return .yes }
        if addressMatch == .no { return .no }
        return .unknown
    }
}

/// A dotted IPv4 address as a 32-bit value.
struct IPv4Address: Hashable {
    let value: UInt32

    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard let octet = UInt8(part) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        self.value = value
    }
}

extension SourceInspector {
    /// The physical method's facts, read with the catalog connection (pg_hba_file_rules needs a
    /// superuser; without one the rules are reported as unreadable, not as missing).
    func physicalFacts(_ connection: PGConnection, replicationUser: String, slot: String) async -> Probe<PhysicalSourceFacts> {
        let sql = """
            SELECT current_setting('config_file'), current_setting('data_directory'),
                   (SELECT rolcanlogin FROM pg_roles WHERE rolname = $1),
                   (SELECT rolreplication FROM pg_roles WHERE rolname = $1),
                   (SELECT rolsuper FROM pg_roles WHERE rolname = $1),
                   (SELECT slot_type FROM pg_replication_slots WHERE slot_name = $2),
                   (SELECT active FROM pg_replication_slots WHERE slot_name = $2)
            """
        let facts: PhysicalSourceFacts
        do {
            let r = try await connection.query(sql, [.text(replicationUser), .text(slot)], timeout: connections.connectTimeout * 4)
            let role: PhysicalSourceFacts.RoleFacts? = try r.bool(0, 2).map { canLogin in
                .init(name: replicationUser, canLogin: canLogin, replication: try r.bool(0, 3) ?? false, superuser: try r.bool(0, 4) ?? false)
            }
            let slotFacts = r.string(0, 5).map { PhysicalSourceFacts.SlotFacts(name: slot, type: $0, active: ((try? r.bool(0, 6)) ?? nil) ?? false) }
            facts = PhysicalSourceFacts(
                replicationRole: role, hbaRules: .failed("not read"), configFile: r.string(0, 0) ?? "?",
                dataDirectory: r.string(0, 1) ?? "?", slot: slotFacts)
        } catch {
            return .failed(connections.describe(String(describing: error)))
        }
        var result = facts
        let rulesSQL = """
            SELECT line_number, type, coalesce(database, '{}'), coalesce(user_name, '{}'), address, netmask, coalesce(auth_method, '')
            FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number
            """
        do {
            let r = try await connection.query(rulesSQL, timeout: connections.connectTimeout * 4)
            var rules: [PhysicalSourceFacts.HBARule] = []
            for row in 0..<r.rowCount {
                rules.append(.init(
                    line: Int(try r.int(row, 0) ?? 0), type: r.string(row, 1) ?? "",
                    databases: Self.textArray(r.string(row, 2)), users: Self.textArray(r.string(row, 3)),
                    address: r.string(row, 4), netmask: r.string(row, 5), method: r.string(row, 6) ?? ""))
            }
            result.hbaRules = .observed(rules)
        } catch {
            result.hbaRules = .failed(connections.describe(String(describing: error)))
        }
        return .observed(result)
    }

    /// `{a,b,"c d"}` → `["a", "b", "c d"]` (PostgreSQL's text-array output).
    static func textArray(_ text: String?) -> [String] {
        guard var text, text.hasPrefix("{"), text.hasSuffix("}") else { return [] }
        text = String(text.dropFirst().dropLast())
        var items: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for character in text {
            if escaped { current.append(character); escaped = false; continue }
            switch character {
            case "\\" where quoted: escaped = true
            case "\"": quoted.toggle()
            case "," where !quoted: items.append(current); current = ""
            default: current.append(character)
            }
        }
        if !current.isEmpty || !items.isEmpty { items.append(current) }
        return items
    }
}
