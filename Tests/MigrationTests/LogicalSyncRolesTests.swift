import Testing
@testable import Migration

@Suite("Logical sync: the roles it creates")
struct LogicalSyncRolesTests {
    typealias Spec = LogicalSync.RoleSpec

    @Test("CREATE ROLE carries the single node's attributes, never SUPERUSER, and quotes the name")
    func createSQL() {
        let owner = Spec(name: "app owner", login: true, inherit: true, createDB: true, createRole: false, replication: true, superuser: true, connectionLimit: 7)
        #expect(owner.createSQL == #"CREATE ROLE "app owner" LOGIN INHERIT CREATEDB REPLICATION CONNECTION LIMIT 7"#)
        let reader = Spec(name: "reader", login: false, inherit: false, createDB: false, createRole: true, replication: false, superuser: false, connectionLimit: -1)
        #expect(reader.createSQL == #"CREATE ROLE "reader" NOLOGIN NOINHERIT CREATEROLE"#)
        #expect(!owner.createSQL.contains("SUPERUSER") && !owner.createSQL.contains("PASSWORD"))
    }
}
