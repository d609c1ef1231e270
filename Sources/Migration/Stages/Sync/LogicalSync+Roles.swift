import Foundation
import PGClient
import PlainText

/// The roles a logical copy needs on a freshly initialised cluster: the migrated databases'
/// schema names them (owners, grantees, default privileges, the database's owner) and the
/// application logs in as `source.user` / `source.shared_user`. `pg_dump --schema-only` restores
/// only onto a cluster that has them, so each one the cluster lacks is created first
/// (`role:<name>`, undone last: `DROP ROLE` once the databases are gone) with the single node's
/// attributes — LOGIN, INHERIT, CREATEDB, CREATEROLE, REPLICATION, CONNECTION LIMIT; SUPERUSER is
/// never copied (said so); then (`role-memberships`) their memberships in roles the cluster has. Passwords only when the
/// playbook asks (`sync.role_passwords: copy`: the single node's hash, as `pg_dumpall` would;
/// never shown or journaled); otherwise the role has none and the cutover's guardrails name the
/// application roles that cannot log in.
extension LogicalSync {
    static let neededRolesSQL = """
        WITH user_ns AS (
            SELECT oid, nspowner, nspacl FROM pg_namespace
            WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'
        ), needed AS (
            SELECT c.relowner AS role FROM pg_class c JOIN user_ns n ON n.oid = c.relnamespace
            UNION SELECT (aclexplode(c.relacl)).grantee FROM pg_class c JOIN user_ns n ON n.oid = c.relnamespace WHERE c.relacl IS NOT NULL
            UNION SELECT nspowner FROM user_ns
            UNION SELECT (aclexplode(nspacl)).grantee FROM user_ns WHERE nspacl IS NOT NULL
            UNION SELECT p.proowner FROM pg_proc p JOIN user_ns n ON n.oid = p.pronamespace
            UNION SELECT t.typowner FROM pg_type t JOIN user_ns n ON n.oid = t.typnamespace
            UNION SELECT defaclrole FROM pg_default_acl
            UNION SELECT (aclexplode(defaclacl)).grantee FROM pg_default_acl
            UNION SELECT datdba FROM pg_database WHERE datname = current_database()
            UNION SELECT oid FROM pg_roles WHERE rolname = ANY($1::text[])
        )
        SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolconnlimit, r.rolsuper
        FROM pg_roles r WHERE r.oid IN (SELECT role FROM needed) AND r.rolname NOT LIKE 'pg\\_%'
        ORDER BY 1
        """

    struct RoleSpec: Sendable, Equatable {
        var name: String
        var login, inherit, createDB, createRole, replication, superuser: Bool
        var connectionLimit: Int

        /// `CREATE ROLE` without the password clause.
        var createSQL: String {
            var options = [login ? "LOGIN" : "NOLOGIN", inherit ? "INHERIT" : "NOINHERIT"]
            if createDB { options.append("CREATEDB") }
            if createRole { options.append("CREATEROLE") }
            if replication { options.append("REPLICATION") }
            if connectionLimit >= 0 { options.append("CONNECTION LIMIT \(connectionLimit)") }
            return "CREATE ROLE \(SQLQuoting.quotedIdentifier(name)) " + options.joined(separator: " ")
        }
    }

    /// Every role of the migrated databases the cluster lacks, created (journaled one by one).
    func createRoles(on leader: (name: String, host: String, port: Int)) async throws {
        var needed: [String: RoleSpec] = [:]
        let appRoles = [playbook.source.user, playbook.source.sharedUser].compactMap { $0 }
        let list = "{" + appRoles.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
        for database in db.databases {
            let source = try await db.source(database.source)
            let r = try await db.run(source, Self.neededRolesSQL, [.text(list)], what: "listing the roles \(database.source) needs")
            for i in 0..<r.rowCount {
                guard let name = r.string(i, 0) else { continue }
                needed[name] = RoleSpec(name: name, login: try r.bool(i, 1) == true, inherit: try r.bool(i, 2) == true, createDB: try r.bool(i, 3) == true,
                                        createRole: try r.bool(i, 4) == true, replication: try r.bool(i, 5) == true, superuser: try r.bool(i, 7) == true,
                                        connectionLimit: Int(try r.int(i, 6) ?? -1))
            }
        }
        let postgres = try await db.member(host: leader.host, port: leader.port, database: "postgres")
        let existing = try await db.run(postgres, "SELECT rolname FROM pg_roles", what: "listing the cluster's roles")
        let present = Set((0..<existing.rowCount).compactMap { existing.string($0, 0) })
        let missing = needed.values.filter { !present.contains($0.name) || journal.step(stage, named: "role:\($0.name)")?.phase == .intent }.sorted { $0.name < $1.name }
        if missing.isEmpty {
            if journal.steps(of: stage).allSatisfy({ !$0.name.hasPrefix("role:") }) {
                context.progress("every role the databases need exists on the cluster (\(needed.count): \(needed.keys.sorted().joined(separator: ", ")))")
            }
            return
        }
        for role in missing {
            try await step("role:\(role.name)", "CREATE ROLE \(role.name) on the cluster (the single node's attributes\(sync.rolePasswords == .copy ? " and password hash" : ", no password"))",
                           undo: .createdObject(.init(server: "cluster", database: "postgres", kind: "role", name: role.name))) {
                let exists = try await db.run(postgres, "SELECT 1 FROM pg_roles WHERE rolname = $1", [.text(role.name)], what: "looking for role \(role.name)")
                if exists.rowCount == 0 {
                    var sql = role.createSQL
                    if sync.rolePasswords == .copy, let hash = try await passwordHash(role.name) {
                        sql += " PASSWORD " + SQLQuoting.literal(hash)
                    }
                    try await db.run(postgres, sql, what: "CREATE ROLE \(role.name)")
                }
            }
            context.progress("role \(role.name) created on the cluster (\(role.login ? "LOGIN" : "NOLOGIN")\(sync.rolePasswords == .copy ? ", password copied" : ", no password: set one before the cutover")\(role.superuser ? "; a superuser on the single node, created WITHOUT SUPERUSER" : ""))")
        }
        // Once every role exists: their memberships (dropping a role drops them too).
        try await step("role-memberships", "the created roles' memberships (GRANT … TO) as on the single node") {
            for role in missing { try await copyMemberships(of: role.name, into: postgres) }
        }
    }

    /// The role's password hash on the single node (nil: none).
    func passwordHash(_ role: String) async throws -> String? {
        let source = try await db.source(playbook.source.databases.project)
        let r = try await db.run(source, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", [.text(role)], what: "reading the password hash of \(role)")
        return r.rowCount == 1 ? r.string(0, 0) : nil
    }

    /// `GRANT parent TO role` on the cluster for each membership the single node has and the
    /// cluster can express (the parent exists there).
    func copyMemberships(of role: String, into cluster: PGConnection) async throws {
        let source = try await db.source(playbook.source.databases.project)
        let r = try await db.run(source, "SELECT m.roleid::regrole::text FROM pg_auth_members m WHERE m.member = to_regrole($1)", [.text(role)], what: "reading the memberships of \(role)")
        for i in 0..<r.rowCount {
            guard let parent = r.string(i, 0) else { continue }
            let name = parent.hasPrefix("\"") ? String(parent.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"") : parent
            let exists = try await db.run(cluster, "SELECT 1 FROM pg_roles WHERE rolname = $1", [.text(name)], what: "looking for role \(name)")
            if exists.rowCount == 1 {
                try await db.run(cluster, "GRANT \(SQLQuoting.quotedIdentifier(name)) TO \(SQLQuoting.quotedIdentifier(role))", what: "GRANT \(name) TO \(role)")
            }
        }
    }

    /// Undo of `role:<name>`: dropped once the databases are gone; a role that still owns
    /// something elsewhere on the cluster is kept, and said so.
    func dropRole(_ name: String) async {
        guard let leader = await db.writableLeader(),
              let postgres = try? await db.member(host: leader.host, port: leader.port, database: "postgres") else {
            context.progress("warning: role \(name) kept on the cluster: no writable leader")
            return
        }
        do {
            try await db.run(postgres, "DROP ROLE IF EXISTS \(SQLQuoting.quotedIdentifier(name))", what: "dropping role \(name)")
            context.progress("role \(name) dropped on the cluster")
        } catch {
            context.progress("warning: role \(name) kept on the cluster: \(error.message)")
        }
    }
}
