/// Line diffs (Myers' O(ND) algorithm) and their unified rendering, for showing what the config
/// stage is about to change before it writes anything. Pure: strings in, strings out.
public enum TextDiff {
    /// One line of an edit script.
    public enum Edit: Hashable, Sendable {
        case same(String)
        case removed(String)
        case added(String)
    }

    /// Splits text into lines, each keeping its `\n` (the last one lacks it when the text does not
    /// end with a newline), so "no newline at end of file" is a difference like any other.
    public static func lines(_ text: String) -> [String] {
        var result: [String] = []
        var current = ""
        for character in text {
            current.append(character)
            if character == "\n" {
                result.append(current)
                current = ""
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    /// A shortest edit script turning `old` into `new` (Myers 1986, with a saved trace for the
    /// backtrack; O((N+M)·D) time and space, plenty for configuration files).
    public static func edits(from old: [String], to new: [String]) -> [Edit] {
        let n = old.count, m = new.count
        let limit = n + m
        let offset = limit + 1
        var v = [Int](repeating: 0, count: 2 * limit + 3)
        var trace: [[Int]] = []
        search: for d in 0...limit {
            trace.append(v)
            for k in stride(from: -d, through: d, by: 2) {
                var x: Int
                if k == -d || (k != d && v[k - 1 + offset] < v[k + 1 + offset]) {
                    x = v[k + 1 + offset]
                } else {
                    x = v[k - 1 + offset] + 1
                }
                var y = x - k
                while x < n, y < m, old[x] == new[y] {
                    x += 1
                    y += 1
                }
                v[k + offset] = x
                if x >= n, y >= m { break search }
            }
        }

        var script: [Edit] = []
        var x = n, y = m
        for d in stride(from: trace.count - 1, through: 0, by: -1) {
            let v = trace[d]
            let k = x - y
            let previousK = (k == -d || (k != d && v[k - 1 + offset] < v[k + 1 + offset])) ? k + 1 : k - 1
            let previousX = v[previousK + offset]
            let previousY = previousX - previousK
            while x > previousX, y > previousY {
                script.append(.same(old[x - 1]))
                x -= 1
                y -= 1
            }
            if d > 0 {
                if x == previousX {
                    script.append(.added(new[y - 1]))
                    y -= 1
                } else {
                    script.append(.removed(old[x - 1]))
                    x -= 1
                }
            }
        }
        return script.reversed()
    }

    /// A unified diff (`--- a`, `+++ b`, `@@ -l,s +l,s @@` hunks with `context` lines around each
    /// change), or "" when the texts are equal. A line without a final newline is followed by
    /// `\ No newline at end of file`, as in GNU diff.
    public static func unified(old: String, new: String, oldName: String, newName: String, context: Int = 3) -> String {
        guard old != new else { return "" }
        let script = edits(from: lines(old), to: lines(new))
        // Positions of the changes in the script.
        let changes = script.indices.filter { if case .same = script[$0] { return false } else { return true } }
        guard !changes.isEmpty else { return "" }

        // Group changes whose context would touch into hunks: [first, last] script indices.
        var hunks: [(Int, Int)] = []
        var start = max(0, changes[0] - context)
        var end = min(script.count - 1, changes[0] + context)
        for change in changes.dropFirst() {
            if change - context <= end + 1 {
                end = min(script.count - 1, change + context)
            } else {
                hunks.append((start, end))
                start = max(0, change - context)
                end = min(script.count - 1, change + context)
            }
        }
        hunks.append((start, end))

        // Line numbers before each script index.
        var oldBefore = [Int](repeating: 0, count: script.count + 1)
        var newBefore = [Int](repeating: 0, count: script.count + 1)
        for (i, edit) in script.enumerated() {
            oldBefore[i + 1] = oldBefore[i]
            newBefore[i + 1] = newBefore[i]
            switch edit {
            case .same:
                oldBefore[i + 1] += 1
                newBefore[i + 1] += 1
            case .removed:
                oldBefore[i + 1] += 1
            case .added:
                newBefore[i + 1] += 1
            }
        }

        var out = "--- \(oldName)\n+++ \(newName)\n"
        for (first, last) in hunks {
            let oldCount = oldBefore[last + 1] - oldBefore[first]
            let newCount = newBefore[last + 1] - newBefore[first]
            let oldStart = oldCount == 0 ? oldBefore[first] : oldBefore[first] + 1
            let newStart = newCount == 0 ? newBefore[first] : newBefore[first] + 1
            out += "@@ -\(range(oldStart, oldCount)) +\(range(newStart, newCount)) @@\n"
            for edit in script[first...last] {
                switch edit {
                case .same(let line): out += render(" ", line)
                case .removed(let line): out += render("-", line)
                case .added(let line): out += render("+", line)
                }
            }
        }
        return out
    }

    private static func range(_ start: Int, _ count: Int) -> String {
        count == 1 ? "\(start)" : "\(start),\(count)"
    }

    private static func render(_ prefix: String, _ line: String) -> String {
        line.hasSuffix("\n") ? prefix + line : prefix + line + "\n\\ No newline at end of file\n"
    }
}
