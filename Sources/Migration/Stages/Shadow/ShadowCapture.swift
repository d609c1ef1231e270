import ShadowCompare

/// A statement the single node ran during the capture window, with its parameters.
public struct CapturedStatement: Sendable, Hashable {
    public var sql: String
    /// `$1…` as the log wrote them (nil for NULL).
    public var params: [String?]

    public init(sql: String, params: [String?] = []) {
        self.sql = sql
        self.params = params
    }
}

/// The capture of the single node's own traffic, as pure values: which settings the window
/// changes and how they are put back, and what the csvlog lines say.
///
/// During the window the single node runs with `log_min_duration_statement = 0` (every statement
/// logged with its duration, and in the extended protocol with its parameters in the entry's
/// `detail`) and `csvlog` added to `log_destination`, set with `ALTER SYSTEM` and a reload; the
/// previous `postgresql.auto.conf` values are journaled first, and put back (`ALTER SYSTEM SET` the
/// old value, or `RESET`) after the window, on resume after a crash, and by rollback. csvlog needs
/// `logging_collector = on`, which only a restart changes: pgha does not restart the single node,
/// so without it the capture is refused (use a workload file instead).
public enum ShadowCapture {
    /// A setting as the single node reports it (`pg_settings` and `pg_file_settings`).
    public struct ObservedSetting: Sendable, Hashable {
        public var name: String
        /// The value in effect.
        public var value: String
        /// What `postgresql.auto.conf` sets it to, if anything.
        public var autoConf: String?

        public init(name: String, value: String, autoConf: String?) {
            self.name = name
            self.value = value
            self.autoConf = autoConf
        }
    }

    public static let settingNames = ["log_min_duration_statement", "log_destination"]

    /// The `ALTER SYSTEM` statements that open the window, and the undo record; or why not.
    public static func plan(loggingCollector: String, observed: [ObservedSetting]) -> Result<(statements: [String], undo: [StepUndo.ServerSettings.Setting]), CaptureRefusal> {
        guard loggingCollector == "on" else {
            return .failure(CaptureRefusal(
                reason: "the single node runs with logging_collector = \(loggingCollector): csvlog needs it on, and only a restart changes it",
                advice: "set logging_collector = on and restart the single node at a quiet moment, or replay a workload file (shadow.workload) instead of shadow.capture"))
        }
        var statements: [String] = []
        var undo: [StepUndo.ServerSettings.Setting] = []
        for name in settingNames {
            guard let setting = observed.first(where: { $0.name == name }) else {
                return .failure(CaptureRefusal(reason: "the single node does not report \(name)", advice: "shadow.capture needs PostgreSQL 10 or later"))
            }
            undo.append(.init(name: name, previousAutoConf: setting.autoConf))
            switch name {
            case "log_min_duration_statement":
                statements.append("ALTER SYSTEM SET log_min_duration_statement = 0")
            default:
                let destinations = setting.value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                let wanted = destinations.contains("csvlog") ? destinations : destinations + ["csvlog"]
                statements.append("ALTER SYSTEM SET log_destination = " + quoted(wanted.joined(separator: ",")))
            }
        }
        return .success((statements, undo))
    }

    /// What puts the settings back as they were.
    public static func restore(_ saved: [StepUndo.ServerSettings.Setting]) -> [String] {
        saved.map { s in
            s.previousAutoConf.map { "ALTER SYSTEM SET \(s.name) = \(quoted($0))" } ?? "ALTER SYSTEM RESET \(s.name)"
        }
    }

    public struct CaptureRefusal: Error, Sendable, Hashable {
        public var reason: String
        public var advice: String
    }

    static func quoted(_ value: String) -> String { "'" + value.replacing("'", with: "''") + "'" }

    // MARK: - csvlog

    /// What a window's log held.
    public struct Parsed: Sendable, Hashable {
        public var statements: [CapturedStatement]
        /// Log entries that were statements of the project database (before the read-only filter).
        public var seen: Int
        /// Statements left out, by reason (`UPDATE statement`, `calls nextval()`…).
        public var refused: [String: Int]
        /// Kept statements beyond `limit`, dropped.
        public var overLimit: Int
    }

    /// The statements of `database` in csvlog `text`, read-only ones only, at most `limit`.
    /// The migration's own sessions (`application_name` pgha-shadow, pgha-sync…) are left out.
    public static func parse(csv text: String, database: String, limit: Int) -> Parsed {
        var parsed = Parsed(statements: [], seen: 0, refused: [:], overLimit: 0)
        for record in CSV.records(text) {
            guard record.count >= 23, record[2] == database, record[11] == "LOG" else { continue }
            if record[22].hasPrefix("pgha-") { continue }
            guard let sql = statementText(record[13]) else { continue }
            parsed.seen += 1
            if case .refused(let why) = SQLText(sql).safety {
                parsed.refused[why, default: 0] += 1
                continue
            }
            let params = parameters(record[14]) ?? []
            if parsed.statements.count >= limit {
                parsed.overLimit += 1
                continue
            }
            parsed.statements.append(CapturedStatement(sql: sql, params: params))
        }
        return parsed
    }

    /// The statement of a `duration: … ms  statement: …` or `duration: … ms  execute <name>: …`
    /// message (parse and bind entries are skipped: each execution is logged once as `execute`).
    static func statementText(_ message: String) -> String? {
        guard message.hasPrefix("duration: "), let gap = message.range(of: " ms  ") else { return nil }
        let rest = message[gap.upperBound...]
        if rest.hasPrefix("statement: ") { return String(rest.dropFirst("statement: ".count)) }
        if rest.hasPrefix("execute "), let colon = rest.range(of: ": ") {
            let name = rest[rest.index(rest.startIndex, offsetBy: "execute ".count)..<colon.lowerBound]
            if name.hasPrefix("fetch from") { return nil }
            return String(rest[colon.upperBound...])
        }
        return nil
    }

    /// `parameters: $1 = '5', $2 = NULL, $3 = 'it''s'` → ["5", nil, "it's"]; nil when the detail is
    /// not a parameter list.
    static func parameters(_ detail: String) -> [String?]? {
        guard detail.hasPrefix("parameters: ") else { return nil }
        let s = Array(detail.dropFirst("parameters: ".count).unicodeScalars)
        var values: [String?] = []
        var i = 0
        while i < s.count {
            guard s[i] == "$" else { return nil }
            while i < s.count, s[i] != "=" { i += 1 }
            i += 2  // "= "
            guard i < s.count else { return nil }
            if s[i] == "'" {
                var value = String.UnicodeScalarView()
                i += 1
                while i < s.count {
                    if s[i] == "'" {
                        if i + 1 < s.count, s[i + 1] == "'" { value.append("'"); i += 2; continue }
                        i += 1
                        break
                    }
                    value.append(s[i])
                    i += 1
                }
                values.append(String(value))
            } else if i + 4 <= s.count, String(String.UnicodeScalarView(s[i..<(i + 4)])) == "NULL" {
                values.append(nil)
                i += 4
            } else {
                return nil
            }
            if i < s.count {
                guard s[i] == ",", i + 1 < s.count, s[i + 1] == " " else { return nil }
                i += 2
            }
        }
        return values
    }
}

/// RFC 4180 records, as PostgreSQL's csvlog writes them (quoted fields with `""`, newlines inside
/// quotes).
enum CSV {
    static func records(_ text: String) -> [[String]] {
        var records: [[String]] = []
        var record: [String] = []
        var field = String.UnicodeScalarView()
        var quoted = false
        var it = Array(text.unicodeScalars)[...]
        var atFieldStart = true
        while let c = it.popFirst() {
            if quoted {
                if c == "\"" {
                    if it.first == "\"" { field.append("\""); it = it.dropFirst() } else { quoted = false }
                } else {
                    field.append(c)
                }
                continue
            }
            switch c {
            case "\"" where atFieldStart:
                quoted = true
                atFieldStart = false
            case ",":
                record.append(String(field))
                field = String.UnicodeScalarView()
                atFieldStart = true
            case "\n":
                record.append(String(field))
                records.append(record)
                record = []
                field = String.UnicodeScalarView()
                atFieldStart = true
            case "\r":
                continue
            default:
                field.append(c)
                atFieldStart = false
            }
        }
        if !field.isEmpty || !record.isEmpty {
            record.append(String(field))
            records.append(record)
        }
        return records
    }
}
