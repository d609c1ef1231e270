import PlainText
import Foundation
import HAPool

/// The limits the prerequisites gate holds the observations to (from the playbook's
/// `thresholds`, plus what the sync stage will need).
public struct PrerequisiteLimits: Sendable, Hashable {
    /// Members that must be running, leader included (`thresholds.min_members`).
    public var minMembers: Int
    /// Largest replication lag allowed on a replica (`thresholds.max_lag_bytes`).
    public var maxLagBytes: Int64
    /// Longest open transaction tolerated on the source (`thresholds.max_transaction_age`).
    public var maxTransactionAgeSeconds: Double
    /// Lowest PostgreSQL major version on every node (`thresholds.min_server_version`).
    public var minServerVersion: Int
    /// Replication slots and WAL senders the sync stage takes on the source: one per database.
    public var slotsNeeded: Int
    /// Free slots and WAL senders wanted beyond `slotsNeeded` (the initial copy's table-sync
    /// workers use temporary slots); fewer gives a WARN.
    public var slotsMargin: Int
    /// A member whose `dcs_last_seen` is older than this is cut off from the DCS, when `/config`
    /// gave no `ttl`.
    public var defaultDCSStaleSeconds: Int
    /// Where each login's password comes from, for advice: `source.application` →
    /// `source.password (${PROJECT_DB_PASSWORD})`. Keys: `source.application`, `source.shared`,
    /// `source.admin`, `target.application`, `target.admin`.
    public var credentialHints: [String: String]
    /// How the data will move (`sync.method`): the physical method checks what a standby cluster
    /// needs from the single node, and the cluster only once it exists.
    public var method: Playbook.Sync.Method
    /// `target.replication_user`.
    public var replicationUser: String
    /// `sync.slot`.
    public var slot: String
    /// The members the playbook names (the physical method checks pg_hba.conf for each host).
    public var members: [Playbook.Member]
    /// The CA files the playbook names, for advice on a certificate that does not verify. Keys:
    /// `source.sslrootcert`, `target.sslrootcert`, `target.api_cafile`.
    public var caFiles: [String: String] = [:]

    public init(
        minMembers: Int = 3, maxLagBytes: Int64 = 1 << 20, maxTransactionAgeSeconds: Double = 300, minServerVersion: Int = 13,
        slotsNeeded: Int = 2, slotsMargin: Int = 2, defaultDCSStaleSeconds: Int = 30, credentialHints: [String: String] = [:],
        method: Playbook.Sync.Method = .logical, replicationUser: String = "replicator", slot: String = "pgha_standby",
        members: [Playbook.Member] = []
    ) {
        self.method = method
        self.replicationUser = replicationUser
        self.slot = slot
        self.members = members
        self.minMembers = minMembers
        self.maxLagBytes = maxLagBytes
        self.maxTransactionAgeSeconds = maxTransactionAgeSeconds
        self.minServerVersion = minServerVersion
        self.slotsNeeded = slotsNeeded
        self.slotsMargin = slotsMargin
        self.defaultDCSStaleSeconds = defaultDCSStaleSeconds
        self.credentialHints = credentialHints
    }

    /// The playbook's thresholds; one slot per source database.
    public init(playbook: Playbook) {
        let t = playbook.thresholds
        let s = playbook.source
        var hints = ["source.application": "source.password (\(s.password))", "target.application": "target.password (\(playbook.target.password))"]
        hints["source.shared"] = s.sharedPassword.map { "source.shared_password (\($0))" } ?? "source.password (\(s.password))"
        hints["source.admin"] = s.adminPassword.map { "source.admin_password (\($0))" } ?? "the password file (PGPASSFILE or ~/.pgpass)"
        hints["target.admin"] = playbook.target.adminPassword.map { "target.admin_password (\($0))" } ?? "the password file (PGPASSFILE or ~/.pgpass)"
        let physical = playbook.sync.method == .physical
        self.init(
            minMembers: t.minMembers, maxLagBytes: t.maxLagBytes, maxTransactionAgeSeconds: t.maxTransactionAgeSeconds,
            minServerVersion: t.minServerVersion, slotsNeeded: physical ? 1 : (s.databases.shared == nil ? 1 : 2), credentialHints: hints,
            method: playbook.sync.method, replicationUser: playbook.target.replicationUser, slot: playbook.sync.slot,
            members: playbook.target.members)
        caFiles["source.sslrootcert"] = s.sslrootcert
        caFiles["target.sslrootcert"] = playbook.target.sslrootcert
        caFiles["target.api_cafile"] = playbook.target.apiCAFile
    }
}

/// The prerequisites gate as a pure function: observations in, checks out: exactly
/// `PrerequisiteCheck.checks(for:)` of the playbook's method, plus `credentials.<member>` for every
/// member in the logical method.
public enum PrerequisitesEvaluation {
    public static func evaluate(_ o: PrerequisiteObservations, limits: PrerequisiteLimits) -> [CheckResult] {
        var results = sourceChecks(o.source, limits: limits).map { timed($0, o.source.elapsedMs) }
        if limits.method == .physical {
            results += physicalSourceChecks(o.source, limits: limits).map { timed($0, o.source.elapsedMs) }
            results += physicalClusterChecks(o, limits: limits).map { timed($0, o.cluster.elapsedMs) }
        } else {
            results += clusterChecks(o, limits: limits).map { timed($0, o.cluster.elapsedMs) }
        }
        return results
    }

    static func timed(_ check: CheckResult, _ ms: Double) -> CheckResult {
        var check = check
        check.durationMs = ms
        return check
    }

    // MARK: - The single node

    static func sourceChecks(_ s: SourceObservation, limits: PrerequisiteLimits) -> [CheckResult] {
        var results: [CheckResult] = []
        let connected = s.logins.contains { $0.error == nil }
        let answered = connected || s.logins.contains(where: \.serverAnswered)
        let version = s.serverVersionNum.map(versionText)

        // source.reachable
        if connected {
            results.append(.pass(.sourceReachable, observed: "PostgreSQL \(s.serverVersion ?? version ?? "?") answers at \(s.address)", expected: "the single node answers"))
        } else if answered {
            results.append(.pass(.sourceReachable, observed: "\(s.address) answers, but no login succeeded (see credentials.source)", expected: "the single node answers"))
        } else {
            let why = s.logins.compactMap(\.error).first ?? "no login was tried"
            if let advice = certificateAdvice(why, server: s.address, side: "source", rest: false, limits: limits) {
                results.append(.fail(.sourceReachable, observed: "\(s.address) answers, but its TLS does not verify: \(why)", expected: "the single node answers",
                                     advice: advice + ", then `pgha resume`"))
            } else {
                results.append(.fail(.sourceReachable, observed: "\(s.address) does not answer: \(why)", expected: "the single node answers",
                                     advice: "check that PostgreSQL runs on the single node and that source.host/source.port are right (pg_isready -h \(hostPart(s.address)) -p \(portPart(s.address))), then `pgha resume`"))
            }
        }

        // source.version
        let wanted = "≥ \(limits.minServerVersion)"
        if let num = s.serverVersionNum {
            if majorVersion(num) >= limits.minServerVersion {
                results.append(.pass(.sourceVersion, observed: versionText(num), expected: wanted))
            } else {
                results.append(.fail(.sourceVersion, observed: versionText(num), expected: wanted,
                                     advice: "the single node runs PostgreSQL \(majorVersion(num)), older than thresholds.min_server_version (\(limits.minServerVersion)): upgrade it first, or lower the threshold if you know pgha's logical sync works with it"))
            }
        } else {
            results.append(.fail(.sourceVersion, observed: "unknown (no login succeeded)", expected: wanted, advice: "fix source.reachable / credentials.source first"))
        }

        // credentials.source
        results.append(credentialsCheck(PrerequisiteCheck.credentialsSource.name, logins: s.logins, side: "source", missingDatabaseIsFine: false, limits: limits,
                                        place: "the single node \(s.address)", server: s.address))

        // source.wal_level
        switch s.settings {
        case .failed(let why):
            results.append(.fail(.sourceWalLevel, observed: "could not read the settings: \(why)", expected: "logical", advice: "fix the source logins first, then `pgha resume`"))
            results.append(.fail(.sourceReplicationSlots, observed: "could not read the settings: \(why)", expected: "≥ \(limits.slotsNeeded) free", advice: "fix the source logins first, then `pgha resume`"))
            results.append(.fail(.sourceWalSenders, observed: "could not read the settings: \(why)", expected: "≥ \(limits.slotsNeeded) free", advice: "fix the source logins first, then `pgha resume`"))
        case .observed(let settings):
            results.append(walLevelCheck(settings))
            results.append(headroomCheck(PrerequisiteCheck.sourceReplicationSlots.name, max: settings.maxReplicationSlots, used: settings.usedReplicationSlots,
                                         setting: "max_replication_slots", what: "replication slots", limits: limits,
                                         freeing: "drop slots nobody uses (SELECT slot_name, active FROM pg_replication_slots; SELECT pg_drop_replication_slot('name'))"))
            results.append(headroomCheck(PrerequisiteCheck.sourceWalSenders.name, max: settings.maxWalSenders, used: settings.usedWalSenders,
                                         setting: "max_wal_senders", what: "WAL senders", limits: limits,
                                         freeing: "stop replication clients that are no longer needed (SELECT application_name, client_addr FROM pg_stat_replication)"))
        }

        results.append(primaryKeysCheck(s.databases, method: limits.method))
        results.append(longTransactionsCheck(s.transactions, limits: limits))
        results.append(largeObjectsCheck(s.databases, method: limits.method))
        results.append(unloggedTablesCheck(s.databases))
        return results
    }

    static func walLevelCheck(_ settings: SourceSettings) -> CheckResult {
        if settings.walLevel == "logical" {
            return .pass(.sourceWalLevel, observed: "logical", expected: "logical")
        }
        if settings.walLevelPendingRestart || settings.walLevelConfigured == "logical" {
            let configured = settings.walLevelConfigured.map { "\($0) configured" } ?? "a new value configured"
            return .fail(.sourceWalLevel, observed: "\(settings.walLevel) in effect; \(configured), waiting for a restart", expected: "logical",
                         advice: "restart PostgreSQL on the single node (e.g. `pg_ctlcluster 15 main restart` or `systemctl restart postgresql`; a short outage for the application): wal_level only changes at a restart. Then `pgha resume`.")
        }
        return .fail(.sourceWalLevel, observed: settings.walLevel, expected: "logical",
                     advice: "logical replication needs wal_level = logical: run `ALTER SYSTEM SET wal_level = logical;` as a superuser on the single node, then restart PostgreSQL there (a short outage), then `pgha resume`")
    }

    static func headroomCheck(_ name: String, max: Int, used: Int, setting: String, what: String, limits: PrerequisiteLimits, freeing: String) -> CheckResult {
        let free = max - used
        let observed = "\(free) free of \(max) (\(used) in use)"
        let expected = "≥ \(limits.slotsNeeded) free (one per source database), ideally ≥ \(limits.slotsNeeded + limits.slotsMargin)"
        if free < limits.slotsNeeded {
            return .fail(name, observed: observed, expected: expected,
                         advice: "the sync stage needs \(limits.slotsNeeded) \(what) on the single node: raise \(setting) (`ALTER SYSTEM SET \(setting) = \(used + limits.slotsNeeded + limits.slotsMargin);`, then restart PostgreSQL) or \(freeing); then `pgha resume`")
        }
        if free < limits.slotsNeeded + limits.slotsMargin {
            return .warn(name, observed: observed, expected: expected,
                         advice: "the initial copy's table-sync workers take \(what) for a while too: consider raising \(setting) to \(used + limits.slotsNeeded + limits.slotsMargin) (needs a restart)")
        }
        return .pass(name, observed: observed, expected: expected)
    }

    static func primaryKeysCheck(_ databases: [SourceDatabaseObservation], method: Playbook.Sync.Method = .logical) -> CheckResult {
        let expected = "every table has a primary key or a replica identity"
        var failures: [String] = []
        var missing: [String] = []
        var checked = 0
        for database in databases {
            switch database.tables {
            case .failed(let why): failures.append("\(database.name): \(why)")
            case .observed(let tables):
                checked += tables.checked
                missing += tables.withoutIdentity.map { "\(database.name).\($0)" }
            }
        }
        if !failures.isEmpty {
            return .fail(.sourcePrimaryKeys, observed: "could not list the tables: " + failures.joined(separator: "; "), expected: expected,
                         advice: "fix the source logins (a superuser in source.admin_user sees every schema), then `pgha resume`")
        }
        if !missing.isEmpty, method == .physical {
            return .warn(.sourcePrimaryKeys, observed: "\(missing.count) of \(checked) tables without one: " + list(missing, limit: 10), expected: expected,
                         advice: "physical replication copies them as they are; the way back after cutover is logical, so cutover gives each of them REPLICA IDENTITY FULL (journaled, undone by rollback) before the application writes on the cluster. A primary key is better: `ALTER TABLE schema.table ADD PRIMARY KEY (col)`")
        }
        if !missing.isEmpty {
            return .fail(.sourcePrimaryKeys, observed: "\(missing.count) of \(checked) tables without one: " + list(missing, limit: 10), expected: expected,
                         advice: "logical replication cannot apply UPDATE or DELETE to these tables: add a primary key (`ALTER TABLE schema.table ADD PRIMARY KEY (col)`) or, if there is no unique key, `ALTER TABLE schema.table REPLICA IDENTITY FULL` (slower on the cluster); then `pgha resume`")
        }
        let names = databases.map(\.name).joined(separator: ", ")
        return .pass(.sourcePrimaryKeys, observed: "\(checked) tables in \(names): all have a primary key or replica identity", expected: expected)
    }

    static func longTransactionsCheck(_ probe: Probe<OpenTransactions>, limits: PrerequisiteLimits) -> CheckResult {
        let limit = Int(limits.maxTransactionAgeSeconds.rounded())
        let expected = "none open longer than \(limit) s"
        switch probe {
        case .failed(let why):
            return .fail(.sourceLongTransactions, observed: "could not read pg_stat_activity: \(why)", expected: expected, advice: "fix the source logins first, then `pgha resume`")
        case .observed(let transactions):
            let old = transactions.oldest.filter { $0.ageSeconds > limits.maxTransactionAgeSeconds }
            if !old.isEmpty {
                let pids = old.compactMap(\.pid).map(String.init)
                let terminate = pids.isEmpty ? "" : " (`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN (\(pids.joined(separator: ", ")))`)"
                let prepared = old.contains { $0.preparedGID != nil } ? "; finish prepared transactions with COMMIT PREPARED or ROLLBACK PREPARED 'gid'" : ""
                return .fail(.sourceLongTransactions, observed: "\(old.count) open longer than \(limit) s: " + list(old.map(\.summary), limit: 5), expected: expected,
                             advice: "creating the sync stage's replication slots waits for every open transaction, and old ones hold back vacuum: let them finish or end them\(terminate)\(prepared); then `pgha resume`")
            }
            let oldest = transactions.oldest.first.map { "oldest open transaction \(Int($0.ageSeconds.rounded())) s" } ?? "no open transaction"
            if !transactions.seesAllSessions {
                return .warn(.sourceLongTransactions, observed: "\(oldest) among the sessions this login can see (not a superuser)", expected: expected,
                             advice: "set source.admin_user to a superuser (or grant pg_read_all_stats) so that every session is checked")
            }
            return .pass(.sourceLongTransactions, observed: oldest, expected: expected)
        }
    }

    /// Unlogged tables: their rows never reach the cluster, by either method (a standby has them
    /// empty; publications leave them out), so the cluster would start without them.
    static func unloggedTablesCheck(_ databases: [SourceDatabaseObservation]) -> CheckResult {
        let expected = "none (their rows are not written to WAL: no replication carries them)"
        var found: [String] = []
        var failures: [String] = []
        for database in databases {
            switch database.unloggedTables {
            case .observed(let tables)?: found += tables.map { "\(database.name): \($0)" }
            case .failed(let why)?: failures.append("\(database.name): \(why)")
            case nil: failures.append("\(database.name): not looked at")
            }
        }
        if !found.isEmpty {
            return .fail(.sourceUnloggedTables, observed: list(found, limit: 5), expected: expected,
                         advice: "make them logged on the single node before sync (`ALTER TABLE … SET LOGGED`: it rewrites the table into WAL), or accept that the cluster starts with them empty; then `pgha resume`")
        }
        if !failures.isEmpty {
            return .warn(.sourceUnloggedTables, observed: "could not look: " + failures.joined(separator: "; "), expected: expected, advice: "fix the source logins first, then `pgha resume`")
        }
        return .pass(.sourceUnloggedTables, observed: "none in " + databases.map(\.name).joined(separator: ", "), expected: expected)
    }

    static func largeObjectsCheck(_ databases: [SourceDatabaseObservation], method: Playbook.Sync.Method = .logical) -> CheckResult {
        var counts: [String] = []
        var failures: [String] = []
        for database in databases {
            switch database.largeObjects {
            case .failed(let why): failures.append("\(database.name): \(why)")
            case .observed(let n) where n > 0: counts.append("\(database.name): \(n) large object\(n == 1 ? "" : "s")")
            case .observed: break
            }
        }
        if !failures.isEmpty {
            return .warn(.sourceLargeObjects, observed: "could not count: " + failures.joined(separator: "; "), expected: "none (reported)",
                         advice: "fix the source logins to get this report")
        }
        if !counts.isEmpty, method == .physical {
            return CheckResult(name: PrerequisiteCheck.sourceLargeObjects.name, verdict: .pass, observed: counts.joined(separator: "; "), expected: "none (reported)",
                         advice: "physical replication copies them; the logical way back after cutover does not carry large objects written on the cluster: a rollback after cutover reports them")
        }
        if !counts.isEmpty {
            return .warn(.sourceLargeObjects, observed: counts.joined(separator: "; "), expected: "none (reported)",
                         advice: "logical replication does not copy large objects (pg_largeobject): copy them separately before cutover (pg_dump --large-objects --data-only … | pg_restore on the leader), or move them into bytea columns")
        }
        return .pass(.sourceLargeObjects, observed: "none in " + databases.map(\.name).joined(separator: ", "), expected: "none (reported)")
    }

    /// One check over a set of logins: PASS when every one was accepted.
    /// The fix for a certificate problem in `message` (a libpq or libcurl error) of `server`, with
    /// the playbook's key for it (`side`.sslrootcert, or target.api_cafile for the REST API).
    static func certificateAdvice(_ message: String?, server: String, side: String, rest: Bool, limits: PrerequisiteLimits) -> String? {
        guard let message, let problem = CertificateProblem(message: message) else { return nil }
        let caSetting = rest ? "target.api_cafile" : "\(side).sslrootcert"
        return problem.advice(server: server, caSetting: caSetting, caFile: limits.caFiles[caSetting],
                              certSetting: rest ? "target.api_cert" : "\(side).sslcert", postgres: !rest)
    }

    static func credentialsCheck(_ name: String, logins: [LoginObservation], side: String, missingDatabaseIsFine: Bool, limits: PrerequisiteLimits, place: String, server: String? = nil) -> CheckResult {
        let expected = "every configured login is accepted"
        guard !logins.isEmpty else {
            return .fail(name, observed: "no login tried", expected: expected, advice: "the playbook names no user for \(place)")
        }
        var parts: [String] = []
        var bad: [LoginObservation] = []
        var unreachable = true
        for login in logins {
            if login.error == nil {
                parts.append("\(login.label) ok")
                unreachable = false
            } else if login.databaseMissing && missingDatabaseIsFine {
                parts.append("\(login.user) ok (database \(login.database) does not exist yet: the sync stage creates it)")
                unreachable = false
            } else {
                parts.append("\(login.label) failed: \(login.error ?? "?")")
                bad.append(login)
                if login.serverAnswered { unreachable = false }
            }
        }
        if bad.isEmpty { return .pass(name, observed: parts.joined(separator: "; "), expected: expected) }
        if let server, let advice = certificateAdvice(bad.compactMap(\.error).first, server: server, side: side, rest: false, limits: limits) {
            return .fail(name, observed: "not checked, the TLS of \(place) does not verify: " + parts.joined(separator: "; "), expected: expected,
                         advice: advice + ", then `pgha resume`")
        }
        if unreachable {
            return .fail(name, observed: "not checked, \(place) cannot be reached: " + parts.joined(separator: "; "), expected: expected,
                         advice: "bring \(place) back first (see the checks above), then `pgha resume`")
        }
        let sources = bad.map { login in
            let hint = limits.credentialHints["\(side).\(login.purpose)"] ?? "the playbook's \(side) credentials"
            return "\(login.user): \(hint)"
        }
        return .fail(name, observed: parts.joined(separator: "; "), expected: expected,
                     advice: "check the password (\(unique(sources).joined(separator: "; "))), that the role exists and may log in on \(place), and pg_hba.conf there; then `pgha resume`")
    }

    // MARK: - Formatting

    /// The first `limit` items, then `(+N more)`.
    static func list(_ items: [String], limit: Int) -> String {
        let shown = items.prefix(limit).joined(separator: ", ")
        return items.count > limit ? shown + " (+\(items.count - limit) more)" : shown
    }

    static func unique(_ items: [String]) -> [String] {
        var seen: [String] = []
        for item in items where !seen.contains(item) { seen.append(item) }
        return seen
    }

    static func hostPart(_ address: String) -> String {
        guard let colon = address.lastIndex(of: ":") else { return address }
        return String(address[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    }

    static func portPart(_ address: String) -> String {
        guard let colon = address.lastIndex(of: ":") else { return "5432" }
        return String(address[address.index(after: colon)...])
    }
}
