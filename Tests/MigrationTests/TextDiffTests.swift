import Testing
@testable import Migration

@Suite("TextDiff")
struct TextDiffTests {
    /// Applies an edit script: the old text must come out of the same/removed lines, the new one
    /// out of same/added lines.
    func check(_ old: [String], _ new: [String]) {
        let script = TextDiff.edits(from: old, to: new)
        var fromOld: [String] = []
        var fromNew: [String] = []
        for edit in script {
            switch edit {
            case .same(let l): fromOld.append(l); fromNew.append(l)
            case .removed(let l): fromOld.append(l)
            case .added(let l): fromNew.append(l)
            }
        }
        #expect(fromOld == old)
        #expect(fromNew == new)
    }

    @Test("edit scripts reproduce both sides", arguments: [
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

    @Test("pseudo-random inputs round-trip")
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
