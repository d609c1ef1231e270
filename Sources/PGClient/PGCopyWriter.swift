/// Writes the data of a `COPY ... FROM STDIN` (PQputCopyData) inside `PGConnection.copyIn`'s body.
///
/// Data is COPY's format as the statement names it (text by default: one line per row, columns
/// separated by tabs, `\N` for NULL); chunks need not end at row boundaries. Each write returns
/// once libpq has handed the data to the kernel, so a slow server slows the writer down instead of
/// filling memory. Writes honour the call's timeout and task cancellation; once a write has failed
/// every later one fails too, and the COPY is ended with an error (the server keeps nothing).
///
/// The writer is `~Copyable` and passed `inout`: it cannot outlive the body.
public struct PGCopyWriter: ~Copyable {
    var run: StatementRun
    /// The largest piece handed to PQputCopyData at once.
    private static let pieceSize = 1 << 20

    init(run: consuming StatementRun) {
        self.run = run
    }

    /// Sends `bytes` as COPY data. Throws `.timeout` / `.cancelled` after an interruption, or the
    /// libpq error when the data cannot be sent (typically `.connectionBroken`); stop writing then
    /// (rethrowing is fine: `copyIn` reports the statement's own outcome).
    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws(PGError) {
        guard !bytes.isEmpty else { return }
        var offset = 0
        repeat {
            let count = min(bytes.count - offset, Self.pieceSize)
            let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
            try writePiece(piece)
            offset += count
        } while offset < bytes.count
    }

    /// Sends `bytes` as COPY data.
    public mutating func write(_ bytes: [UInt8]) throws(PGError) {
        let outcome = bytes.withUnsafeBytes { buffer in Result { () throws(PGError) in try write(buffer) } }
        try outcome.get()
    }

    /// Sends `text`'s UTF-8 as COPY data.
    public mutating func write(_ text: String) throws(PGError) {
        var text = text
        let outcome = text.withUTF8 { buffer in
            Result { () throws(PGError) in try write(UnsafeRawBufferPointer(buffer)) }
        }
        try outcome.get()
    }

    private mutating func writePiece(_ piece: UnsafeRawBufferPointer) throws(PGError) {
        if let invalid = run.invalid { throw run.owner.internalError(invalid.description) }
        let request = QueryStateMachine.Event.writeRequested(now: monotonicNow(), cancelRequested: run.cancelRequested)
        var action = run.advance(request)
        while true {
            switch action {
            case .putCopyData:
                let outcome = run.putCopyData(piece)
                action = run.advance(.put(outcome))
            case .writeFinished(.written):
                return
            case .writeFinished(let outcome):
                throw run.owner.writeError(outcome, run)
            case .invalidEvent(let invalid):
                run.invalid = invalid
                throw run.owner.internalError(invalid.description)
            case .flush, .wait, .consumeInput, .readResult, .keepResult, .discardResult, .deliverRow,
                .readCopyData, .deliverCopyData, .runCopyInBody, .putCopyEnd, .sendCancel, .awaitCancel, .finish:
                let invalid = QueryStateMachine.InvalidEvent(event: request, state: run.machine.state)
                run.invalid = invalid
                throw run.owner.internalError("\(action) during a COPY write (\(invalid))")
            }
        }
    }
}
