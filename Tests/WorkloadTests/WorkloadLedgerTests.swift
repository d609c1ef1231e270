import Foundation
import Testing
@testable import Workload

@Suite("Workload ledger: what the application saw against what the database kept")
struct WorkloadLedgerTests {
    typealias Key = WorkloadLedger.Key

    @Test("acknowledged rows missing are lost, repeated keys are duplicated, unknown outcomes are counted with how many were applied, failed writes are neither")
    func judgement() {
        var ledger = WorkloadLedger()
        for seq in 1...5 { ledger.record(Key(writer: 0, seq: Int64(seq)), .acknowledged) }
        ledger.record(Key(writer: 1, seq: 1), .unknown)
        ledger.record(Key(writer: 1, seq: 2), .unknown)
        ledger.record(Key(writer: 1, seq: 3), .failed)
        let rows: [Key: Int] = [
            Key(writer: 0, seq: 1): 1, Key(writer: 0, seq: 2): 2, Key(writer: 0, seq: 4): 1, Key(writer: 0, seq: 5): 1,
            Key(writer: 1, seq: 1): 1,
        ]
        let j = ledger.judge(rows: rows)
        #expect(ledger.acknowledged == 5)
        #expect(j.missing == [Key(writer: 0, seq: 3)])
        #expect(j.duplicated == [Key(writer: 0, seq: 2)])
        #expect(j.unknown == 2 && j.unknownApplied == 1)
        // A clean run.
        let clean = ledger.judge(rows: Dictionary(uniqueKeysWithValues: (1...5).map { (Key(writer: 0, seq: Int64($0)), 1) }))
        #expect(clean.missing.isEmpty && clean.duplicated.isEmpty && clean.unknownApplied == 0)
    }
}
