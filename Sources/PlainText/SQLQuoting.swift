/// Quoting for the few SQL statements pgha builds from names — the playbook's, the catalog's, the
/// sandbox's settings — never from an application's data (that goes in as parameters). One place
/// for the cutover, the rollback, the complete stage and the sandbox's set-up scripts.
public enum SQLQuoting {
    /// `name` as an identifier: bare when PostgreSQL keeps it as written (lower-case ASCII letters,
    /// digits and `_`, not starting with a digit), else double-quoted with `"` doubled.
    public static func identifier(_ name: String) -> String {
        let bare = name.first.map { $0 == "_" || ("a"..."z").contains($0) } == true
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
        return bare ? name : quotedIdentifier(name)
    }

    /// `name` double-quoted, `"` doubled (case and every character kept).
    public static func quotedIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A string literal, `'` doubled (with `standard_conforming_strings`, on since PostgreSQL 9.1).
    public static func literal(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
