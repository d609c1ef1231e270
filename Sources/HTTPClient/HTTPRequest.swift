public import Foundation

/// The HTTP methods pgha sends (`CURLOPT_HTTPGET`, `CURLOPT_POST` or `CURLOPT_CUSTOMREQUEST`).
public enum HTTPMethod: String, Sendable, Hashable, CaseIterable {
    case get = "GET"
    case post = "POST"
    case patch = "PATCH"
    case put = "PUT"
    case delete = "DELETE"
}

/// One header line: a name and its value.
public struct HTTPHeaderField: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// An ordered list of header fields; names compare case-insensitively (RFC 9110 §5.1).
public struct HTTPHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [HTTPHeaderField] = []

    public init() {}

    public init(_ fields: [HTTPHeaderField]) { self.fields = fields }

    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { HTTPHeaderField(name: $0.0, value: $0.1) }
    }

    /// Appends a field, keeping fields of the same name that are already there.
    public mutating func add(name: String, value: String) {
        fields.append(HTTPHeaderField(name: name, value: value))
    }

    /// Replaces every field called `name` by one field with `value`.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    /// Removes every field called `name`.
    public mutating func remove(name: String) {
        fields.removeAll { $0.name.caseInsensitiveCompare(name) == .orderedSame }
    }

    /// The value of the first field called `name`.
    public subscript(name: String) -> String? {
        fields.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// The values of every field called `name`, in order.
    public func values(for name: String) -> [String] {
        fields.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }

    public var count: Int { fields.count }

    public func makeIterator() -> IndexingIterator<[HTTPHeaderField]> { fields.makeIterator() }
}

/// A request to send with ``HTTPClient``.
///
/// Credentials never belong in `url`: configure ``HTTPBasicAuth`` instead. A URL that carries a
/// user or password is refused with ``HTTPError/Code/invalidRequest``.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]?

    public init(method: HTTPMethod = .get, url: String, headers: HTTPHeaders = [:], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    /// A request whose body is `value` encoded with `JSONEncoder`, with
    /// `Content-Type: application/json`.
    ///
    /// - Throws: ``HTTPError/Code/invalidRequest`` when `value` cannot be encoded.
    public static func json<T: Encodable>(
        _ method: HTTPMethod = .post, url: String, body value: T, headers: HTTPHeaders = [:],
        encoder: JSONEncoder = JSONEncoder()
    ) throws(HTTPError) -> HTTPRequest {
        let data: Data
        do {
            data = try encoder.encode(value)
        } catch {
            throw HTTPError(
                code: .invalidRequest, url: url,
                message: "the request body could not be encoded as JSON (\(type(of: value)))")
        }
        var headers = headers
        headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        return HTTPRequest(method: method, url: url, headers: headers, body: [UInt8](data))
    }
}
