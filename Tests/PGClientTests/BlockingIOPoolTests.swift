import BlockingIO
import Synchronization
import Testing

/// The pool's hand-off: every job runs exactly once however submissions race with a spinning
/// thread's end, with one thread or many, spinning or not.
@Suite struct BlockingIOPoolTests {
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    @Test(arguments: [(1, 50), (1, 0), (4, 50), (128, 50)])
    func everyJobRunsExactlyOnce(threads: Int, spinMicroseconds: Int) async throws {
        let pool = BlockingIOPool(maximumThreads: threads, spinDuration: .microseconds(spinMicroseconds))
        let ran = Counter()
        // Tasks that each run jobs one after another (the statement pattern: the next is
        // submitted as the previous one resumes its task), all at once.
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var sum = 0
                    for i in 0..<500 {
                        sum += try await pool.run { () throws -> Int in
                            ran.value.add(1, ordering: .relaxed)
                            return i
                        }
                    }
                    return sum
                }
            }
            var total = 0
            for try await sum in group { total += sum }
            #expect(total == 8 * (0..<500).reduce(0, +))
        }
        #expect(ran.value.load(ordering: .relaxed) == 8 * 500)
        #expect(pool.threadCount <= threads)
    }

    @Test func bursts() async {
        // Jobs submitted without waiting (submit), more at once than threads: each runs once.
        let pool = BlockingIOPool(maximumThreads: 2, spinDuration: .microseconds(50))
        let ran = Counter()
        for _ in 0..<20 {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<50 {
                    group.addTask { await pool.run { () -> Void in ran.value.add(1, ordering: .relaxed) } }
                }
            }
        }
        #expect(ran.value.load(ordering: .relaxed) == 1000)
        #expect(pool.threadCount == 2)
    }

    @Test func aSequentialCallerKeepsOneThread() async {
        let pool = BlockingIOPool(maximumThreads: 8)
        for i in 0..<2000 { #expect(await pool.run { i } == i) }
        #expect(pool.threadCount == 1)
    }
}
