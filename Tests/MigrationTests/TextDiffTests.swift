import Testing
@testable import Migration

@Suite("TextDiff")
struct TextDiffTests {
    /// The fewest insertions plus deletions that turn `old` into `new`: `n + m - 2·LCS`, with the
    /// longest common subsequence from the textbook O(n·m) table (independent of Myers' algorithm
    /// in TextDiff).
    static func minimalEditCount(_ old: [String], _ new: [String]) -> Int {
        var table = [[Int]](repeating: [Int](repeating: 0, count: new.count + 1), count: old.count + 1)
        for i in stride(from: old.count - 1, through: 0, by: -1) {
            for j in stride(from: new.count - 1, through: 0, by: -1) {
                table[i][j] = old[i] == new[j] ? table[i + 1][j + 1] + 1 : max(table[i + 1][j], table[i][j + 1])
            }
        }
        return old.count + new.count - 2 * table[0][0]
    }

    static func changes(_ script: [TextDiff.Edit]) -> Int {
        script.filter { if case .same = $0 { return false } else { return true } }.count
    }

    /// Whether an edit script turns `old` into `new` with the fewest changes: the old text must come
    /// out of the same/removed lines, the new one out of same/added lines, and the count of added
    /// and removed lines must be the minimum.
    static func problems(_ script: [TextDiff.Edit], _ old: [String], _ new: [String]) -> [String] {
        var fromOld: [String] = []
        var fromNew: [String] = []
        for edit in script {
            switch edit {
            case .same(let l): fromOld.append(l); fromNew.append(l)
            case .removed(let l): fromOld.append(l)
            case .added(let l): fromNew.append(l)
            }
        }
        var found: [String] = []
        if fromOld != old { found.append("the old side is \(fromOld), not \(old)") }
        if fromNew != new { found.append("the new side is \(fromNew), not \(new)") }
        let minimum = minimalEditCount(old, new)
        if changes(script) != minimum { found.append("\(changes(script)) changes where \(minimum) suffice") }
        return found
    }

    func check(_ old: [String], _ new: [String]) {
        let script = TextDiff.edits(from: old, to: new)
        #expect(Self.problems(script, old, new) == [], "\(old) → \(new)")
    }

    @Test("the check rejects a script that deletes everything and adds it back")
    func checkCanFail() {
        let old = ["a", "b", "c"]
        let new = ["a", "x", "c"]
        let wasteful = old.map(TextDiff.Edit.removed) + new.map(TextDiff.Edit.added)
        #expect(Self.problems(wasteful, old, new) == ["6 changes where 2 suffice"])
        #expect(Self.minimalEditCount(Array("ABCABBA").map(String.init), Array("CBABAC").map(String.init)) == 5)
    }

    @Test("edit scripts reproduce both sides with the fewest changes", arguments: [
        ([], []), ([], ["a"]), (["a"], []), (["a", "b", "c"], ["a", "b", "c"]), (["a", "b", "c"], ["a", "x", "c"]),
        (["a", "b", "c", "a", "b", "b", "a"], ["c", "b", "a", "b", "a", "c"]), (["x"], ["y"]), (["a", "a", "a"], ["a"]),
    ] as [([String], [String])])
    func reproduces(_ old: [String], _ new: [String]) {
        check(old, new)
    }

    @Test("the script is minimal (Myers' classic example has D = 5)")
    func minimal() {
        let script = TextDiff.edits(from: Array("ABCABBA").map(String.init), to: Array("CBABAC").map(String.init))
        let changes = script.filter { if case .same = $0 { return false } else { return true } }
        #expect(changes.count == 5)
    }

    @Test("pseudo-random inputs round-trip with the fewest changes")
    func randomized() {
        var seed: UInt64 = 0x2545_F491_4F6C_DD1D
        func next() -> Int {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
            return Int(seed % 4)
        }
        for _ in 0..<200 {
            let old = (0..<(next() * 3)).map { _ in ["a", "b", "c", "d"][next()] }
            let new = (0..<(next() * 3)).map { _ in ["a", "b", "c", "d"][next()] }
            check(old, new)
        }
        // Longer texts where most lines survive: a non-minimal script shows here.
        for _ in 0..<50 {
            var old = (0..<40).map { _ in ["a", "b", "c", "d"][next()] }
            var new = old
            for _ in 0..<(1 + next()) {
                let at = next() * 9
                if next() % 2 == 0, at < new.count { new.remove(at: at) } else { new.insert(["x", "a"][next() % 2], at: min(at, new.count)) }
            }
            if next() == 0 { old.reverse() }
            check(old, new)
        }
    }

    @Test("unified output with hunks, context and counts")
    func unified() {
        let old = (1...12).map { "line \($0)\n" }.joined()
        let new = old.replacingOccurrences(of: "line 2\n", with: "line two\n").replacingOccurrences(of: "line 12\n", with: "line 12\nline 13\n")
        let diff = TextDiff.unified(old: old, new: new, oldName: "a/f", newName: "b/f")
        #expect(diff == """
        --- a/f
        +++ b/f
        @@ -1,5 +1,5 @@
         line 1
        -line 2
        +line two
         line 3
         line 4
         line 5
        @@ -10,3 +10,4 @@
         line 10
         line 11
         line 12
        +line 13

        """)
    }

    @Test("new files, deleted content, equal texts and missing final newlines")
    func edgeCases() {
        #expect(TextDiff.unified(old: "same\n", new: "same\n", oldName: "a", newName: "b") == "")
        #expect(TextDiff.unified(old: "", new: "x\ny\n", oldName: "/dev/null", newName: "b") == "--- /dev/null\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n")
        #expect(TextDiff.unified(old: "x\n", new: "", oldName: "a", newName: "b") == "--- a\n+++ b\n@@ -1 +0,0 @@\n-x\n")
        #expect(TextDiff.unified(old: "x\n", new: "x", oldName: "a", newName: "b") == "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+x\n\\ No newline at end of file\n")
        #expect(TextDiff.lines("a\nb") == ["a\n", "b"])
        #expect(TextDiff.lines("") == [])
    }
}
