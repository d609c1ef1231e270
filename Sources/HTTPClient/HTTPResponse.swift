/// A complete HTTP answer. Any status is an answer; see ``HTTPClient/sendExpectingSuccess(_:timeout:)``
/// for the variant that turns non-2xx into ``HTTPError/Code/httpStatus``.
public struct HTTPResponse: Sendable {
    /// The status of the final response (`CURLINFO_RESPONSE_CODE`).
    public var status: Int
    /// Header fields of the final response (interim `100 Continue` headers are dropped).
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Wall time from the start of the request to the end of the body.
    public var elapsed: Duration

    public init(status: Int, headers: HTTPHeaders = [:], body: [UInt8] = [], elapsed: Duration = .zero) {
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed
    }

    /// Whether `status` is 2xx.
    public var isSuccess: Bool { (200..<300).contains(status) }

    /// The body decoded as UTF-8 (invalid sequences become U+FFFD).
    public var text: String { String(decoding: body, as: UTF8.self) }

    /// A short, single-line excerpt of the body for error messages: HTML tags dropped,
    /// whitespace collapsed, at most `limit` characters.
    public func bodyExcerpt(limit: Int = 200) -> String {
        var out = ""
        var inTag = false
        var lastWasSpace = true
        for ch in text {
            if ch == "<" { inTag = true; continue }
            if ch == ">" && inTag { inTag = false; if !lastWasSpace { out.append(" "); lastWasSpace = true }; continue }
            if inTag { continue }
            if ch.isWhitespace || ch.isNewline {
                if !lastWasSpace { out.append(" "); lastWasSpace = true }
                continue
            }
            if ch.asciiValue.map({ $0 < 0x20 || $0 == 0x7f }) ?? false { continue }
            out.append(ch)
            lastWasSpace = false
            if out.count >= limit { out.append("…"); break }
        }
        return out.trimmingTrailingSpace()
    }
}

extension String {
    fileprivate func trimmingTrailingSpace() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
