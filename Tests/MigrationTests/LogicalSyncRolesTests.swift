import Foundation
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

@Suite("Logical sync: the snapshot copy's statements")
struct SnapshotCopyStatementTests {
    typealias Table = LogicalSync.CopyTable

    @Test("a plain table is read ONLY (its inheritance children are tables of their own) with its column list, binary when allowed")
    func plainTable() {
        let t = Table(name: #""public"."pgbench_accounts""#, columns: "aid, bid, abalance, filler", partitioned: false, bytes: 1, binary: true)
        #expect(t.copyOut == #"COPY (SELECT aid, bid, abalance, filler FROM ONLY "public"."pgbench_accounts") TO STDOUT (FORMAT binary)"#)
        #expect(t.copyIn == #"COPY "public"."pgbench_accounts" (aid, bid, abalance, filler) FROM STDIN (FORMAT binary)"#)
    }

    @Test("a partitioned root is read with its partitions and written through the root; text when binary is not safe")
    func partitionedText() {
        let t = Table(name: "public.events", columns: "id, at", partitioned: true, bytes: 1, binary: false)
        #expect(t.copyOut == "COPY (SELECT id, at FROM public.events) TO STDOUT")
        #expect(t.copyIn == "COPY public.events (id, at) FROM STDIN")
    }

    @Test("a large plain table is copied in one piece per job, by ranges of heap blocks, the last one open; small and partitioned tables whole")
    func pieces() {
        let big = Table(name: "public.big", columns: "id", partitioned: false, bytes: 100 << 20, binary: true)
        let small = Table(name: "public.small", columns: "id", partitioned: false, bytes: 1 << 20, binary: true)
        let events = Table(name: "public.events", columns: "id", partitioned: true, bytes: 200 << 20, binary: true)
        let pieces = Table.pieces([events, big, small], jobs: 3, blockSize: 8192)
        #expect(pieces.map(\.name) == ["public.events", "public.big", "public.big", "public.big", "public.small"])
        let blocks = Int64(100 << 20) / 8192
        #expect(pieces[1].copyOut == "COPY (SELECT id FROM ONLY public.big WHERE ctid < '(\(blocks / 3),0)'::tid) TO STDOUT (FORMAT binary)")
        #expect(pieces[2].copyOut == "COPY (SELECT id FROM ONLY public.big WHERE ctid >= '(\(blocks / 3),0)'::tid AND ctid < '(\(blocks * 2 / 3),0)'::tid) TO STDOUT (FORMAT binary)")
        #expect(pieces[3].copyOut == "COPY (SELECT id FROM ONLY public.big WHERE ctid >= '(\(blocks * 2 / 3),0)'::tid) TO STDOUT (FORMAT binary)")
        #expect(pieces[0] == events && pieces[4] == small)
        #expect(pieces[1].copyIn == big.copyIn, "every piece goes into the whole table")
        #expect(Table.pieces([big], jobs: 1, blockSize: 8192) == [big], "one job: nothing to split")
    }

    @Test("the copy's watchdog: a stall of sync.stall_timeout stops it; a leader that stops answering stops it after 15 s only if nothing moves")
    func watchdog() {
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        var watch = CopyWatch(started: t0)
        watch.moved(0, at: t0)
        watch.moved(1000, at: t0 + 5)
        #expect(watch.verdict(at: t0 + 60, stallSeconds: 120) == nil)
        #expect(watch.verdict(at: t0 + 125, stallSeconds: 120)?.contains("no byte copied for 120 s") == true)
        // The leader silent from t0+10: nothing said before 15 s of silence.
        watch.answered(false, at: t0 + 10)
        watch.answered(false, at: t0 + 20)
        #expect(watch.verdict(at: t0 + 20, stallSeconds: 120) == nil)
        #expect(watch.verdict(at: t0 + 25, stallSeconds: 120)?.contains("has not answered for 15 s") == true)
        // Bytes still moving: a REST hiccup is not a dead leader.
        watch.moved(2000, at: t0 + 24)
        #expect(watch.verdict(at: t0 + 26, stallSeconds: 120) == nil)
        // Answering again clears it.
        watch.answered(true, at: t0 + 27)
        #expect(watch.unansweredSince == nil)
        #expect(watch.verdict(at: t0 + 45, stallSeconds: 120) == nil)
    }

    @Test("a table without a column to copy (every one generated, or none) keeps its row count")
    func noColumns() {
        let t = Table(name: "public.marks", columns: "", partitioned: false, bytes: 0, binary: false)
        #expect(t.copyOut == "COPY (SELECT  FROM ONLY public.marks) TO STDOUT")
        #expect(t.copyIn == "COPY public.marks FROM STDIN")
    }
}
