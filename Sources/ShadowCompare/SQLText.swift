/// A statement's text as PostgreSQL's lexer sees it, for what shadowing needs to know without a
/// parser: its fingerprint (literals and parameters replaced by `?`), whether its outermost query
/// orders its result, and whether it can write.
///
/// The lexer knows what hides words from a naive search: comments (`--`, nested `/* */`), string
/// literals (`'…'` with `''`, `E'…'` with backslash escapes, `B''`, `X''`, `U&''`), dollar-quoted
/// strings (`$tag$…$tag$`) and quoted identifiers (`"…"`).
public struct SQLText: Sendable, Hashable {
    public enum Token: Sendable, Hashable {
        /// An unquoted identifier or keyword, lower-cased.
        case word(String)
        /// A quoted identifier, as written inside the quotes.
        case quotedIdentifier(String)
        /// A string or number literal.
        case literal
        /// `$1`, `$2`…
        case parameter(Int)
        /// Punctuation and operators: `(`, `)`, `,`, `;`, `=`, `::`, …
        case symbol(String)
    }

    public let text: String
    public let tokens: [Token]

    public init(_ text: String) {
        self.text = text
        self.tokens = Self.lex(text)
    }

    // MARK: - Fingerprint

    /// The statement with every literal and parameter replaced by `?`, keywords and identifiers
    /// lower-cased, whitespace and comments dropped, and a list of placeholders (`IN (?, ?, ?)`)
    /// collapsed to one: statements that differ only in their values share it.
    public var normalized: String {
        var parts: [String] = []
        for token in tokens {
            switch token {
            case .word(let w): parts.append(w)
            case .quotedIdentifier(let q): parts.append("\"" + q.replacing("\"", with: "\"\"") + "\"")
            case .literal, .parameter: parts.append("?")
            case .symbol(let s): parts.append(s)
            }
            // `?, ?` → `?`
            while parts.count >= 3, parts[parts.count - 1] == "?", parts[parts.count - 2] == ",", parts[parts.count - 3] == "?" {
                parts.removeLast(2)
            }
        }
        while parts.last == ";" { parts.removeLast() }
        var out = ""
        for (i, part) in parts.enumerated() {
            if i > 0, Self.needsSpace(parts[i - 1], part) { out += " " }
            out += part
        }
        return out
    }

    /// A short stable identifier of `normalized` (FNV-1a, 64 bits, hex).
    public var fingerprint: String { Self.fingerprint(of: normalized) }

    public static func fingerprint(of normalized: String) -> String {
        let hex = String(FNV1a.hash(normalized), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    private static func needsSpace(_ previous: String, _ next: String) -> Bool {
        if next == "," || next == ")" || next == ";" || next == "." || next == "::" { return false }
        if previous == "(" || previous == "." || previous == "::" { return false }
        if next == "(" { return !(previous.first.map { $0.isLetter || $0 == "_" || $0 == "\"" } ?? false) }
        return true
    }

    // MARK: - Shape

    /// The outermost query ends with `ORDER BY` (not one inside a subquery, a window or an
    /// aggregate): its rows come in a defined order, and are compared in order.
    public var ordersResult: Bool { topLevelWords.contains(pair: "order", "by") }

    /// The outermost query has `LIMIT`, `OFFSET` or `FETCH` without `ORDER BY`: which rows it returns
    /// is not defined (a synchronised sequential scan may start anywhere), so different answers are
    /// expected noise.
    public var hasUnorderedLimit: Bool {
        guard !ordersResult else { return false }
        let words = topLevelWords
        return words.contains("limit") || words.contains("offset") || words.contains(pair: "fetch", "first") || words.contains(pair: "fetch", "next")
    }

    private var topLevelWords: [String] {
        var depth = 0
        var words: [String] = []
        for token in tokens {
            switch token {
            case .symbol("("), .symbol("["): depth += 1
            case .symbol(")"), .symbol("]"): depth = max(0, depth - 1)
            case .word(let w) where depth == 0: words.append(w)
            default: break
            }
        }
        return words
    }

    // MARK: - Read-only

    /// Whether shadowing may run the statement: `.readOnly`, or why not.
    public enum Safety: Sendable, Hashable {
        case readOnly
        case refused(String)
    }

    /// Conservative: a single `SELECT`, `WITH`, `VALUES`, `TABLE` or `SHOW` statement with no
    /// data-changing or locking clause (`INSERT`/`UPDATE`/`DELETE`/`MERGE` in a `WITH`, `SELECT
    /// INTO`, `FOR UPDATE`/`SHARE`) and no call of a function with a side effect that a read-only
    /// transaction does not stop (advisory locks, `pg_terminate_backend`, `set_config`, `dblink`,
    /// slot and large-object functions, `nextval`…). Everything else is refused: shadowing never
    /// needs it. The read-only transaction each statement runs in is the second line of defence.
    public var safety: Safety {
        guard let first = tokens.first else { return .refused("empty statement") }
        var statements = 1
        for (i, token) in tokens.enumerated() where token == .symbol(";") {
            if tokens[(i + 1)...].contains(where: { $0 != .symbol(";") }) { statements += 1 }
        }
        if statements > 1 { return .refused("more than one statement") }
        switch first {
        case .word("select"), .word("with"), .word("values"), .word("table"), .word("show"), .symbol("("): break
        case .word(let w): return .refused("\(w.uppercased()) statement (only SELECT, WITH, VALUES, TABLE and SHOW are shadowed)")
        default: return .refused("does not start with a keyword")
        }
        for (i, token) in tokens.enumerated() {
            guard case .word(let w) = token else { continue }
            if Self.writingWords.contains(w) { return .refused("contains \(w.uppercased())") }
            if w == "for", i + 1 < tokens.count, case .word(let next) = tokens[i + 1],
               ["update", "share", "no", "key"].contains(next) {
                return .refused("locks rows (FOR \(next.uppercased()) …)")
            }
            if i + 1 < tokens.count, tokens[i + 1] == .symbol("("), Self.isSideEffectFunction(w) {
                return .refused("calls \(w)(), which has a side effect")
            }
        }
        return .readOnly
    }

    /// Words that make a statement starting with SELECT or WITH write: a data-changing CTE, or
    /// `SELECT … INTO` (creates a table). Other commands are refused by their first word.
    static let writingWords: Set<String> = ["insert", "update", "delete", "merge", "into"]

    static let sideEffectFunctions: Set<String> = [
        "nextval", "setval", "set_config", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
        "pg_rotate_logfile", "pg_switch_wal", "pg_promote", "pg_notify", "txid_current", "pg_current_xact_id",
        "pg_log_backend_memory_contexts", "pg_export_snapshot", "pg_import_system_collations", "pg_file_write",
        "pg_file_rename", "pg_file_unlink", "lowrite", "pg_sleep_until",
    ]

    static let sideEffectPrefixes = [
        "pg_advisory", "pg_try_advisory", "pg_create_", "pg_drop_", "pg_replication_", "pg_logical_", "pg_copy_",
        "pg_stat_reset", "pg_wal_replay_", "pg_backup_", "pg_start_backup", "pg_stop_backup", "lo_", "dblink",
    ]

    /// Read-only functions under a refused prefix.
    static let readOnlyExceptions: Set<String> = ["lo_get"]

    static func isSideEffectFunction(_ name: String) -> Bool {
        guard !readOnlyExceptions.contains(name) else { return false }
        return sideEffectFunctions.contains(name) || sideEffectPrefixes.contains { name.hasPrefix($0) }
    }

    // MARK: - Lexer

    static func lex(_ text: String) -> [Token] {
        let s = Array(text.unicodeScalars)
        var tokens: [Token] = []
        var i = 0
        func isIdentStart(_ c: Unicode.Scalar) -> Bool { c == "_" || c.properties.isAlphabetic }
        func isIdentPart(_ c: Unicode.Scalar) -> Bool { isIdentStart(c) || ("0"..."9").contains(c) || c == "$" }
        func at(_ k: Int) -> Unicode.Scalar? { k < s.count ? s[k] : nil }

        /// Skips a quoted run starting at `i` (the opening quote); `backslash`: `\` escapes.
        func skipQuoted(_ quote: Unicode.Scalar, backslash: Bool) {
            i += 1
            while i < s.count {
                if backslash, s[i] == "\\" { i += 2; continue }
                if s[i] == quote {
                    if at(i + 1) == quote { i += 2; continue }
                    i += 1
                    return
                }
                i += 1
            }
        }

        while i < s.count {
            let c = s[i]
            if c.properties.isWhitespace { i += 1; continue }
            if c == "-", at(i + 1) == "-" {
                while i < s.count, s[i] != "\n" { i += 1 }
                continue
            }
            if c == "/", at(i + 1) == "*" {
                var depth = 0
                while i < s.count {
                    if s[i] == "/", at(i + 1) == "*" { depth += 1; i += 2; continue }
                    if s[i] == "*", at(i + 1) == "/" { depth -= 1; i += 2; if depth == 0 { break }; continue }
                    i += 1
                }
                continue
            }
            if c == "'" {
                skipQuoted("'", backslash: false)
                tokens.append(.literal)
                continue
            }
            // E'…', B'…', X'…', N'…', U&'…'
            if "eEbBxXnN".unicodeScalars.contains(c), at(i + 1) == "'" {
                i += 1
                skipQuoted("'", backslash: c == "e" || c == "E")
                tokens.append(.literal)
                continue
            }
            if (c == "u" || c == "U"), at(i + 1) == "&", at(i + 2) == "'" || at(i + 2) == "\"" {
                let quote = s[i + 2]
                i += 2
                let start = i + 1
                skipQuoted(quote, backslash: false)
                if quote == "'" {
                    tokens.append(.literal)
                } else {
                    tokens.append(.quotedIdentifier(String(String.UnicodeScalarView(s[start..<max(start, i - 1)]))))
                }
                continue
            }
            if c == "\"" {
                let start = i + 1
                skipQuoted("\"", backslash: false)
                let end = max(start, i - 1)
                tokens.append(.quotedIdentifier(String(String.UnicodeScalarView(s[start..<end])).replacing("\"\"", with: "\"")))
                continue
            }
            if c == "$" {
                // $1 parameter
                if let d = at(i + 1), ("0"..."9").contains(d) {
                    var j = i + 1
                    var n = 0
                    while j < s.count, ("0"..."9").contains(s[j]) { n = n &* 10 &+ Int(s[j].value - 48); j += 1 }
                    tokens.append(.parameter(n))
                    i = j
                    continue
                }
                // $tag$ … $tag$
                var j = i + 1
                while j < s.count, s[j] != "$", isIdentPart(s[j]), s[j] != "$" { j += 1 }
                if j < s.count, s[j] == "$" {
                    let tag = Array(s[i...j])
                    var k = j + 1
                    var closed = false
                    while k + tag.count <= s.count {
                        if Array(s[k..<(k + tag.count)]) == tag { k += tag.count; closed = true; break }
                        k += 1
                    }
                    i = closed ? k : s.count
                    tokens.append(.literal)
                    continue
                }
                tokens.append(.symbol("$"))
                i += 1
                continue
            }
            if ("0"..."9").contains(c) || (c == "." && at(i + 1).map { ("0"..."9").contains($0) } == true) {
                var j = i
                while j < s.count {
                    let d = s[j]
                    if ("0"..."9").contains(d) || d == "." || d == "_" || d.properties.isAlphabetic {
                        j += 1
                    } else if (d == "+" || d == "-"), j > i, s[j - 1] == "e" || s[j - 1] == "E" {
                        j += 1
                    } else {
                        break
                    }
                }
                tokens.append(.literal)
                i = j
                continue
            }
            if isIdentStart(c) {
                var j = i
                while j < s.count, isIdentPart(s[j]) { j += 1 }
                tokens.append(.word(String(String.UnicodeScalarView(s[i..<j])).lowercased()))
                i = j
                continue
            }
            if c == ":", at(i + 1) == ":" {
                tokens.append(.symbol("::"))
                i += 2
                continue
            }
            // Operators: a run of operator characters is one symbol; brackets and commas alone.
            let operatorChars = "+-*/<>=~!@#%^&|`?".unicodeScalars
            if operatorChars.contains(c) {
                var j = i
                while j < s.count, operatorChars.contains(s[j]) {
                    if s[j] == "-", at(j + 1) == "-" { break }
                    if s[j] == "/", at(j + 1) == "*" { break }
                    j += 1
                }
                tokens.append(.symbol(String(String.UnicodeScalarView(s[i..<max(j, i + 1)]))))
                i = max(j, i + 1)
                continue
            }
            tokens.append(.symbol(String(c)))
            i += 1
        }
        return tokens
    }
}

extension Array where Element == String {
    func contains(pair first: String, _ second: String) -> Bool {
        guard count >= 2 else { return false }
        for i in 0..<(count - 1) where self[i] == first && self[i + 1] == second { return true }
        return false
    }
}

/// FNV-1a, 64 bits: a fast, stable, non-cryptographic hash (fingerprints, row digests).
public enum FNV1a {
    public static let offset: UInt64 = 0xcbf2_9ce4_8422_2325
    public static let prime: UInt64 = 0x0000_0100_0000_01b3

    public static func hash(_ text: String, seed: UInt64 = offset) -> UInt64 {
        var h = seed
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* prime
        }
        return h
    }
}
