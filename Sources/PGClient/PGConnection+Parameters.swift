import CLibPQ

/// Sending a statement's parameters.
extension PGConnection {
    /// PQsendQueryParams with every value in text format and its type OID. The values are laid out
    /// in one temporary buffer (on the stack when small), NUL-terminated.
    static func sendWithParameters(
        _ conn: OpaquePointer, _ sql: String, _ params: [PGValue]
    ) -> Result<Int32, PGError> {
        guard params.count <= 65535 else {
            return .failure(
                PGError(
                    code: .invalidArgument, message: "too many parameters (\(params.count), at most 65535)",
                    isConnectionLevel: false))
        }
        let texts = params.map(\.textRepresentation)
        var total = 0
        for (index, text) in texts.enumerated() {
            guard let text else { continue }
            if case .text = params[index], text.utf8.contains(0) {
                return .failure(
                    PGError(
                        code: .invalidArgument,
                        message: "parameter $\(index + 1) contains a NUL character, which PostgreSQL text cannot hold",
                        isConnectionLevel: false))
            }
            total += text.utf8.count + 1
        }
        let count = params.count
        return .success(
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(total, 1)) { bytes in
                withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: count) { values in
                    withUnsafeTemporaryAllocation(of: Oid.self, capacity: count) { types in
                        var offset = 0
                        for index in 0..<count {
                            types.initializeElement(at: index, to: params[index].typeOID)
                            guard let text = texts[index] else {
                                values.initializeElement(at: index, to: nil)
                                continue
                            }
                            let start = bytes.baseAddress! + offset
                            var written = 0
                            let copied: Void? = text.utf8.withContiguousStorageIfAvailable { utf8 in
                                UnsafeMutableRawPointer(start).copyMemory(
                                    from: utf8.baseAddress!, byteCount: utf8.count)
                                written = utf8.count
                            }
                            if copied == nil {
                                for byte in text.utf8 {
                                    start[written] = CChar(bitPattern: byte)
                                    written += 1
                                }
                            }
                            start[written] = 0
                            values.initializeElement(at: index, to: UnsafePointer(start))
                            offset += written + 1
                        }
                        return PQsendQueryParams(
                            conn, sql, Int32(count), types.baseAddress, values.baseAddress, nil, nil, 0)
                    }
                }
            })
    }
}
