public import Foundation

/// What the extensions stage looked at: the extensions installed in every source database, and
/// what every cluster member offers (`pg_available_extensions`, `pg_available_extension_versions`),
/// each member connected to directly. Plain values; no secrets.
public struct ExtensionObservations: Sendable, Hashable, Codable {
    public var observedAt: Date
    /// One entry per source database.
    public var source: [SourceExtensions]
    /// One entry per member of `/cluster`, leader and replicas.
    public var members: [MemberExtensions]
    /// Why the member list could not be read; nil when it could.
    public var clusterError: String?
    public var elapsedMs: Double

    public init(observedAt: Date, source: [SourceExtensions], members: [MemberExtensions], clusterError: String? = nil, elapsedMs: Double = 0) {
        self.observedAt = observedAt
        self.source = source
        self.members = members
        self.clusterError = clusterError
        self.elapsedMs = elapsedMs
    }
}

/// `pg_extension` of one source database: extension name → installed version.
public struct SourceExtensions: Sendable, Hashable, Codable {
    public var database: String
    public var installed: Probe<[String: String]>

    public init(database: String, installed: Probe<[String: String]>) {
        self.database = database
        self.installed = installed
    }
}

/// What one member offers.
public struct MemberExtensions: Sendable, Hashable, Codable {
    public var name: String
    /// Patroni's role (`leader`, `replica`, …).
    public var role: String
    /// `host:port` of its PostgreSQL.
    public var address: String
    /// Extension name → availability, or why the member could not be asked.
    public var available: Probe<[String: AvailableExtension]>

    public init(name: String, role: String, address: String, available: Probe<[String: AvailableExtension]>) {
        self.name = name
        self.role = role
        self.address = address
        self.available = available
    }
}

/// One row of `pg_available_extensions` with its installable versions.
public struct AvailableExtension: Sendable, Hashable, Codable {
    /// `default_version`: what `CREATE EXTENSION` without `VERSION` installs.
    public var defaultVersion: String?
    /// Every version `pg_available_extension_versions` lists.
    public var versions: [String]
    /// Installed in the database the member was asked in (`postgres`), if at all.
    public var installedVersion: String?

    public init(defaultVersion: String?, versions: [String], installedVersion: String? = nil) {
        self.defaultVersion = defaultVersion
        self.versions = versions
        self.installedVersion = installedVersion
    }
}

/// The extensions gate as a pure function. Checks: `extensions.source` (every source database's
/// `pg_extension` was read), `extensions.members` (every member was connected to), and one
/// `extension.<name>` per extension used by the source or required by the playbook, whose
/// `observed` is the matrix row (`source=1.6; node1=1.6; node2=missing; node3=1.6`, see
/// `ExtensionMatrix`).
///
/// An extension FAILs when a member is unreachable, lacks it, lacks the version installed on the
/// source, or has no version ≥ `extensions.min_versions`; it WARNs when the members' default
/// versions differ (from each other or from the source's installed version).
public enum ExtensionsEvaluation {
    /// The extensions to check: the playbook's required ones (in its order), then the ones the
    /// source uses (by name).
    public static func extensionNames(_ o: ExtensionObservations, required: [String]) -> [String] {
        var names: [String] = []
        for name in required where !names.contains(name) { names.append(name) }
        let used = Set(o.source.compactMap(\.installed.value).flatMap(\.keys))
        for name in used.sorted() where !names.contains(name) { names.append(name) }
        return names
    }

    /// - Parameter membersDeferred: the cluster may not exist yet (the physical method builds it
    ///   during sync, whose gate checks the members): with no member list, the member checks are
    ///   SKIP instead of FAIL.
    public static func evaluate(_ o: ExtensionObservations, required: [String], minVersions: [String: String] = [:], membersDeferred: Bool = false) -> [CheckResult] {
        var results: [CheckResult] = []
        // extensions.source
        let sourceFailures = o.source.compactMap { s in s.installed.failure.map { "\(s.database): \($0)" } }
        let sourceSummary = o.source.compactMap { s in
            s.installed.value.map { installed in
                "\(s.database): " + (installed.isEmpty ? "none" : installed.keys.sorted().map { "\($0) \(installed[$0] ?? "")" }.joined(separator: ", "))
            }
        }.joined(separator: "; ")
        if sourceFailures.isEmpty {
            results.append(.pass("extensions.source", observed: sourceSummary, expected: "pg_extension of every source database read"))
        } else {
            results.append(.fail("extensions.source", observed: "could not read: " + sourceFailures.joined(separator: "; "), expected: "pg_extension of every source database read",
                                 advice: "fix the logins to the single node (see the prerequisites stage's credentials.source), then `pgha resume`"))
        }

        // extensions.members
        let memberExpected = "every member of /cluster connected to directly"
        let deferred = membersDeferred && o.members.isEmpty
        let deferral = "the cluster does not exist yet (physical method): the sync stage's gate checks every member once it runs"
        if deferred {
            results.append(CheckResult(name: "extensions.members", verdict: .skip, observed: deferral, expected: memberExpected))
        } else if o.members.isEmpty {
            results.append(.fail("extensions.members", observed: o.clusterError.map { "no member list: \($0)" } ?? "/cluster lists no member", expected: memberExpected,
                                 advice: "the Patroni REST API must answer (see the prerequisites stage's cluster.rest_hosts), then `pgha resume`"))
        } else {
            let failed = o.members.compactMap { m in m.available.failure.map { "\(m.name) (\(m.address)): \($0)" } }
            if failed.isEmpty {
                results.append(.pass("extensions.members", observed: o.members.map { "\($0.name) (\($0.role))" }.joined(separator: ", "), expected: memberExpected))
            } else {
                results.append(.fail("extensions.members", observed: "not reachable: " + failed.joined(separator: "; "), expected: memberExpected,
                                     advice: "every member must be checked, replicas included: bring the named members back (see the prerequisites stage), then `pgha resume`"))
            }
        }

        let matrix = self.matrix(o, required: required, minVersions: minVersions)
        for row in matrix.rows {
            if deferred {
                let source = sourceVersions(o, row.extensionName)
                results.append(CheckResult(
                    name: "extension.\(row.extensionName)", verdict: .skip,
                    observed: "source=\(source.isEmpty ? "—" : source.joined(separator: "/")); members: \(deferral)"))
                continue
            }
            results.append(check(name: row.extensionName, row: row, columns: matrix.columns, o: o, required: required, minVersions: minVersions))
        }
        return results.map { check in
            var check = check
            check.durationMs = o.elapsedMs
            return check
        }
    }

    /// The installed versions of `name` across the source databases.
    static func sourceVersions(_ o: ExtensionObservations, _ name: String) -> [String] {
        var versions: [String] = []
        for s in o.source {
            if let v = s.installed.value?[name], !versions.contains(v) { versions.append(v) }
        }
        return versions
    }

    /// The node × extension matrix of an observation (columns `source`, then the members).
    public static func matrix(_ o: ExtensionObservations, required: [String], minVersions: [String: String] = [:]) -> ExtensionMatrix {
        let columns = ["source"] + o.members.map(\.name)
        var rows: [ExtensionMatrix.Row] = []
        for name in extensionNames(o, required: required) {
            let wanted = sourceVersions(o, name)
            var cells = [wanted.isEmpty ? "—" : wanted.joined(separator: "/")]
            var verdict = Verdict.pass
            var defaults: Set<String> = []
            for member in o.members {
                let (cell, ok) = memberCell(member, name: name, sourceVersions: wanted, minVersion: minVersions[name])
                cells.append(cell)
                if !ok { verdict = .fail }
                if let d = member.available.value?[name]?.defaultVersion { defaults.insert(d) }
            }
            if verdict == .pass {
                let mismatch = defaults.count > 1 || (!wanted.isEmpty && !defaults.isEmpty && !defaults.isSubset(of: Set(wanted)))
                if mismatch { verdict = .warn }
            }
            rows.append(ExtensionMatrix.Row(extensionName: name, verdict: verdict, cells: cells))
        }
        return ExtensionMatrix(columns: columns, rows: rows)
    }

    /// A member's cell and whether it satisfies the requirements.
    static func memberCell(_ member: MemberExtensions, name: String, sourceVersions: [String], minVersion: String?) -> (String, Bool) {
        guard let available = member.available.value else { return ("unreachable", false) }
        guard let ext = available[name] else { return ("missing", false) }
        var cell = ext.defaultVersion ?? "available"
        var ok = true
        let lacking = sourceVersions.filter { !ext.versions.contains($0) }
        if !lacking.isEmpty {
            cell += " (lacks " + lacking.joined(separator: ", ") + ")"
            ok = false
        }
        if let minVersion, !ext.versions.contains(where: { compareVersions($0, minVersion) >= 0 }) {
            cell += " (< \(minVersion))"
            ok = false
        }
        return (cell, ok)
    }

    static func check(name: String, row: ExtensionMatrix.Row, columns: [String], o: ExtensionObservations, required: [String], minVersions: [String: String]) -> CheckResult {
        let checkName = "extension.\(name)"
        let observed = ExtensionMatrix.observedText(columns: columns, cells: row.cells)
        let wanted = sourceVersions(o, name)
        var expected = "available on every member"
        if !wanted.isEmpty { expected += ", version \(wanted.joined(separator: "/")) (installed on the single node)" }
        if let min = minVersions[name] { expected += ", ≥ \(min)" }
        if required.contains(name) { expected += " (extensions.required)" }
        switch row.verdict {
        case .pass, .skip:
            return .pass(checkName, observed: observed, expected: expected)
        case .warn:
            return .warn(checkName, observed: observed, expected: expected,
                         advice: "the members' default versions of \(name) differ: align the packages on every node; the sync stage creates extensions with an explicit VERSION so the cluster matches the single node")
        case .fail:
            var advice: [String] = []
            let cells = Array(zip(columns.dropFirst(), row.cells.dropFirst()))
            let missing = cells.filter { $0.1 == "missing" }.map(\.0)
            let unreachable = cells.filter { $0.1 == "unreachable" }.map(\.0)
            let lacking = cells.filter { $0.1.contains("(lacks") }.map(\.0)
            let tooOld = cells.filter { $0.1.contains("(< ") }.map(\.0)
            if !missing.isEmpty {
                advice.append("install the package providing \(name) on \(missing.joined(separator: ", ")) (e.g. postgresql-NN-\(name), or postgresql-contrib for contrib modules): every member needs the same extension files, replicas included")
            }
            if !lacking.isEmpty {
                advice.append("\(lacking.joined(separator: ", ")) cannot install \(name) \(wanted.joined(separator: "/")), the version on the single node: install that package version there, or update the extension on the single node (`ALTER EXTENSION \(name) UPDATE TO 'x'`) to a version every member offers")
            }
            if !tooOld.isEmpty, let min = minVersions[name] {
                advice.append("\(tooOld.joined(separator: ", ")) offer\(tooOld.count == 1 ? "s" : "") no \(name) ≥ \(min) (extensions.min_versions): upgrade the package there")
            }
            if !unreachable.isEmpty {
                advice.append("\(unreachable.joined(separator: ", ")) could not be asked (see extensions.members)")
            }
            return .fail(checkName, observed: observed, expected: expected, advice: advice.joined(separator: "; ") + "; then `pgha resume`")
        }
    }

    /// Compares extension versions component by component (`1.10` > `1.9`, `2.0.1` > `2.0`);
    /// non-numeric components compare as text.
    public static func compareVersions(_ a: String, _ b: String) -> Int {
        let left = a.split(whereSeparator: { $0 == "." || $0 == "-" })
        let right = b.split(whereSeparator: { $0 == "." || $0 == "-" })
        for i in 0..<max(left.count, right.count) {
            let l = i < left.count ? String(left[i]) : "0"
            let r = i < right.count ? String(right[i]) : "0"
            if let ln = Int(l), let rn = Int(r) {
                if ln != rn { return ln < rn ? -1 : 1 }
            } else if l != r {
                return l < r ? -1 : 1
            }
        }
        return 0
    }
}
