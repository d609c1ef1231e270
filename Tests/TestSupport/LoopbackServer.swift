import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 (port chosen by the kernel) for tests: one thread accepts,
/// one thread per connection reads requests and answers with whatever the handler says.
public final class LoopbackServer: Sendable {
    public struct Request: Sendable {
        public var method: String
        public var target: String
        public var headers: [(String, String)]
        public var body: [UInt8]

        public func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }
    }

    public enum Reply: Sendable {
        /// Write these bytes; keep the connection open for the next request unless `close`.
        case bytes([UInt8], close: Bool)
        /// Never answer; hold the connection until the server stops.
        case silence
        /// Close the connection without writing anything.
        case hangUp
        /// Write these bytes, then say nothing more and never close (until the server stops):
        /// a body that stalls mid-transfer (fewer bytes than its Content-Length), or a
        /// close-delimited answer from a server that never closes.
        case stall([UInt8])
        /// Write these bytes, then one more byte every `interval`, forever: a server that keeps
        /// the transfer alive without ever finishing it.
        case trickle([UInt8], every: Duration, byte: UInt8)
    }

    public let port: Int
    private let listener: Int32
    private let stopping = Atomic<Bool>(false)
    private let state = Mutex(State())
    private let group = DispatchGroup()

    private struct State {
        var requests: [Request] = []
        var connections = 0
        var open = 0
        var peakOpen = 0
    }

    /// - Parameters:
    ///   - greeting: bytes written as soon as a connection is accepted, after which it is closed
    ///     (to play a server that does not speak the client's protocol).
    ///   - handler: the answer to each request.
    public init(greeting: [UInt8]? = nil, handler: @escaping @Sendable (Request) -> Reply) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.port = Int(UInt16(bigEndian: addr.sin_port))
        self.listener = fd
        group.enter()
        let thread = Thread { [self] in
            acceptLoop(greeting: greeting, handler: handler)
            group.leave()
        }
        thread.start()
    }

    /// A server that answers every request with `reply`.
    public convenience init(reply: Reply) throws {
        try self.init { _ in reply }
    }

    public var baseURL: String { "http://127.0.0.1:\(port)" }
    public var requests: [Request] { state.withLock { $0.requests } }
    public var connectionCount: Int { state.withLock { $0.connections } }
    /// The most connections that were open at the same time (a client that piles requests on a
    /// server that never answers shows here, whatever the timing).
    public var peakOpenConnections: Int { state.withLock { $0.peakOpen } }

    /// Waits (bounded) until at least `count` requests have arrived.
    public func waitForRequests(_ count: Int, within limit: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if state.withLock({ $0.requests.count }) >= count { return true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return false
    }

    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        group.wait()
        close(listener)
    }

    deinit { stop() }

    private func acceptLoop(greeting: [UInt8]?, handler: @escaping @Sendable (Request) -> Reply) {
        while !stopping.load(ordering: .acquiring) {
            guard waitReadable(listener) else { continue }
            let conn = accept(listener, nil, nil)
            if conn < 0 { continue }
            var one: Int32 = 1
            setsockopt(conn, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            state.withLock {
                $0.connections += 1
                $0.open += 1
                $0.peakOpen = max($0.peakOpen, $0.open)
            }
            group.enter()
            let thread = Thread { [self] in
                if let greeting { writeAll(conn, greeting) } else { serve(conn, handler: handler) }
                close(conn)
                state.withLock { $0.open -= 1 }
                group.leave()
            }
            thread.start()
        }
    }

    /// Polls with a short timeout so the loops notice `stop()`.
    private func waitReadable(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 20) > 0
    }

    private func serve(_ conn: Int32, handler: @Sendable (Request) -> Reply) {
        var buffer: [UInt8] = []
        while !stopping.load(ordering: .acquiring) {
            guard let request = readRequest(conn, buffer: &buffer) else { return }
            state.withLock { $0.requests.append(request) }
            switch handler(request) {
            case .bytes(let bytes, let close):
                writeAll(conn, bytes)
                if close { return }
            case .silence:
                holdOpen(conn)
                return
            case .stall(let bytes):
                writeAll(conn, bytes)
                holdOpen(conn)
                return
            case .trickle(let bytes, let interval, let byte):
                writeAll(conn, bytes)
                let milliseconds = Int32(max(1, interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000))
                while !stopping.load(ordering: .acquiring) {
                    var p = pollfd(fd: conn, events: Int16(POLLIN), revents: 0)
                    if poll(&p, 1, milliseconds) > 0 {
                        var scratch = [UInt8](repeating: 0, count: 512)
                        if read(conn, &scratch, 512) <= 0 { return }
                    }
                    if send(conn, [byte], 1, Int32(MSG_NOSIGNAL)) <= 0 { return }
                }
                return
            case .hangUp:
                return
            }
        }
    }

    /// Keeps a connection open, discarding what the client sends, until the client closes it or
    /// the server stops.
    private func holdOpen(_ conn: Int32) {
        while !stopping.load(ordering: .acquiring) {
            var scratch = [UInt8](repeating: 0, count: 512)
            if waitReadable(conn) && read(conn, &scratch, 512) <= 0 { return }
        }
    }

    private func readRequest(_ conn: Int32, buffer: inout [UInt8]) -> Request? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int? = nil
        while headEnd == nil {
            if let r = buffer.firstRange(of: separator) { headEnd = r.upperBound; break }
            guard fill(conn, &buffer) else { return nil }
        }
        let head = String(decoding: buffer[..<(headEnd! - 4)], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { return nil }
        let headers: [(String, String)] = lines.compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        while buffer.count < headEnd! + length {
            guard fill(conn, &buffer) else { return nil }
        }
        let body = Array(buffer[headEnd!..<(headEnd! + length)])
        buffer.removeFirst(headEnd! + length)
        return Request(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers, body: body)
    }

    private func fill(_ conn: Int32, _ buffer: inout [UInt8]) -> Bool {
        while !stopping.load(ordering: .acquiring) {
            guard waitReadable(conn) else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(conn, &chunk, chunk.count)
            if n <= 0 { return false }
            buffer.append(contentsOf: chunk[..<n])
            return true
        }
        return false
    }

    private func writeAll(_ conn: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(conn, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }
}

/// Canned HTTP answers.
public enum Canned {
    public static func response(
        status: Int = 200, reason: String = "OK", headers: [(String, String)] = [], body: [UInt8], close: Bool = false,
        contentLength: Int? = nil
    ) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(contentLength ?? body.count)\r\n"
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    public static func json(_ text: String, status: Int = 200, close: Bool = false) -> [UInt8] {
        response(status: status, headers: [("Content-Type", "application/json")], body: Array(text.utf8), close: close)
    }

    /// An HTTP/1.0-style answer whose body ends when the connection closes (no Content-Length).
    public static func closeDelimited(_ body: [UInt8], status: Int = 200) -> [UInt8] {
        Array("HTTP/1.0 \(status) OK\r\nContent-Type: application/json\r\n\r\n".utf8) + body
    }

    /// A chunked answer whose last chunk never comes.
    public static func unfinishedChunks(_ body: [UInt8], status: Int = 200) -> [UInt8] {
        Array("HTTP/1.1 \(status) OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            + Array(String(body.count, radix: 16).utf8) + [0x0D, 0x0A] + body + [0x0D, 0x0A]
    }
}
