import Foundation
import PlainText
import ShadowCompare
import Yams

/// The `shadow:` section and the shadow stage's workload file.
extension PlaybookReader {
    func shadow(_ node: Node?) -> Playbook.Shadow? {
        let d = Playbook.Shadow()
        guard let node else { return d }
        guard let m = mapping(node, path: "shadow", allowed: [
            "workload", "capture", "duration", "queries", "concurrency", "statement_timeout", "max_p99_ratio", "p99_slack",
            "lag_budget", "lag_recheck", "report_mismatches",
        ], required: []) else { return nil }
        let workload = m["workload"] == nil ? nil : path(m, "workload")
        if m["workload"] != nil, workload == nil { return nil }
        var capture: Playbook.Shadow.Capture?
        if let c = m["capture"] {
            guard let cm = mapping(c, path: "shadow.capture", allowed: ["window", "max_statements", "max_bytes"], required: []) else { return nil }
            let cd = Playbook.Shadow.Capture()
            capture = Playbook.Shadow.Capture(
                windowSeconds: duration(cm, "window") ?? cd.windowSeconds,
                maxStatements: int(cm, "max_statements", range: 1...1_000_000) ?? cd.maxStatements,
                maxBytes: bytes(cm, "max_bytes") ?? cd.maxBytes)
        }
        if workload == nil, capture == nil {
            issue(m.node, "shadow", "needs a traffic source: add workload: (a file of read-only statements) and/or capture: {window: 30s} (docs/PLAYBOOKS.md)")
            return nil
        }
        var ratio = d.maxP99Ratio
        if let r = m["max_p99_ratio"] {
            guard let text = r.scalar?.string, let value = Double(text), value.isFinite, value >= 1 else {
                issue(r, "shadow.max_p99_ratio", "expected a number of at least 1 (the cluster's p99 over the single node's), got \(describe(r))")
                return nil
            }
            ratio = value
        }
        return Playbook.Shadow(
            workload: workload, capture: capture,
            durationSeconds: duration(m, "duration") ?? d.durationSeconds,
            queries: int(m, "queries", range: 1...100_000_000) ?? d.queries,
            concurrency: int(m, "concurrency", range: 1...64) ?? d.concurrency,
            statementTimeoutSeconds: duration(m, "statement_timeout") ?? d.statementTimeoutSeconds,
            maxP99Ratio: ratio,
            p99SlackSeconds: duration(m, "p99_slack") ?? d.p99SlackSeconds,
            lagBudgetSeconds: duration(m, "lag_budget") ?? d.lagBudgetSeconds,
            lagRecheckSeconds: duration(m, "lag_recheck") ?? d.lagRecheckSeconds,
            reportMismatches: int(m, "report_mismatches", range: 0...10_000) ?? d.reportMismatches,
            configured: true)
    }

    /// A statement: a string that may span lines (newlines and tabs allowed, other control or
    /// invisible characters not).
    func sqlText(_ m: Fields, _ key: String) -> String? {
        guard let node = m[key] else { return nil }
        guard let scalar = node.scalar, node.null == nil, node.bool == nil || scalar.style != .plain else {
            issue(node, m.keyPath(key), "expected a SQL statement, got \(kind(of: node))")
            return nil
        }
        let text = scalar.string.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else {
            issue(node, m.keyPath(key), "expected a SQL statement, got an empty string")
            return nil
        }
        if let hidden = text.unicodeScalars.first(where: { UTF8Text.isHidden($0) && !["\n", "\r", "\t"].contains($0) }) {
            issue(node, m.keyPath(key), "the statement contains the control or invisible character \(UTF8Text.codePoint(hidden)): remove it (an editor may not show it)")
            return nil
        }
        return text
    }

    func workload(_ root: Node?) -> ShadowWorkload? {
        guard let root else {
            issue(nil, "", "the workload file is empty: write statements: with at least one {sql: …}")
            return nil
        }
        guard let top = mapping(root, path: "", allowed: ["statements"], required: ["statements"]),
              let list = top["statements"], let items = sequence(list, path: "statements", what: "a list of statements ({sql[, name, weight, params]})")
        else { return nil }
        if items.isEmpty { issue(list, "statements", "expected at least one statement") }
        var statements: [ShadowWorkload.Statement] = []
        for (i, item) in items.enumerated() {
            let path = "statements[\(i)]"
            guard let m = mapping(item, path: path, allowed: ["name", "sql", "weight", "params"], required: ["sql"]),
                  let sql = sqlText(m, "sql") else { continue }
            let name = m["name"] == nil ? nil : string(m, "name")
            let weight = int(m, "weight", range: 1...1_000_000) ?? 1
            let text = SQLText(sql)
            if case .refused(let why) = text.safety {
                issue(m["sql"], "\(path).sql", "is not a read-only statement (\(why)): shadowing runs only statements that cannot write")
                continue
            }
            let highest = text.tokens.reduce(0) { if case .parameter(let n) = $1 { return max($0, n) }; return $0 }
            var params: [[String?]] = []
            if let p = m["params"] {
                guard let sets = sequence(p, path: "\(path).params", what: "a list of parameter lists, e.g. [[1], [2]]") else { continue }
                for (j, set) in sets.enumerated() {
                    guard let values = sequence(set, path: "\(path).params[\(j)]", what: "a list of values for $1…$\(max(1, highest))") else { continue }
                    if values.count != highest {
                        issue(set, "\(path).params[\(j)]", "has \(values.count) value\(values.count == 1 ? "" : "s") but the statement uses $1…$\(highest): give exactly \(highest)")
                        continue
                    }
                    params.append(values.map { v in v.null != nil ? nil : v.scalar?.string })
                }
            }
            if highest > 0, params.isEmpty, m["params"] == nil {
                issue(m.node, path, "the statement uses $1…$\(highest): add params: [[…], …] with \(highest) value\(highest == 1 ? "" : "s") each")
                continue
            }
            if highest > 0, params.isEmpty { continue }
            if highest == 0, !params.isEmpty, params.contains(where: { !$0.isEmpty }) {
                issue(m["params"], "\(path).params", "the statement has no $n parameters: remove params")
                continue
            }
            statements.append(ShadowWorkload.Statement(name: name, sql: sql, weight: weight, params: params))
        }
        return ShadowWorkload(statements: statements)
    }
}
