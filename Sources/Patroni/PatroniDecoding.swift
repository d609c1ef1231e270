import Foundation

/// Tolerant field readers: a missing field, `null`, or a value of the wrong type reads as `nil`.
///
/// Each tries the expected type first, so a well-formed answer decodes without a single thrown
/// error (a thrown `DecodingError` costs microseconds); only odd values take the slow path.
extension KeyedDecodingContainer {
    func lenientJSON(_ key: Key) -> JSONValue? {
        guard let value = try? decodeIfPresent(JSONValue.self, forKey: key) else { return nil }
        if case .null = value { return nil }
        return value
    }

    func lenientString(_ key: Key) -> String? {
        if let value = try? decodeIfPresent(String.self, forKey: key) { return value }
        return nil
    }

    /// Integers, whole doubles and digit strings; `nil` for `"unknown"` and anything else.
    func lenientInt64(_ key: Key) -> Int64? {
        if let value = try? decodeIfPresent(Int64.self, forKey: key) { return value }
        guard contains(key) else { return nil }
        return lenientJSON(key)?.intValue
    }

    func lenientInt(_ key: Key) -> Int? { lenientInt64(key).flatMap { Int(exactly: $0) } }

    func lenientBool(_ key: Key) -> Bool? {
        if let value = try? decodeIfPresent(Bool.self, forKey: key) { return value }
        guard contains(key) else { return nil }
        switch lenientJSON(key) {
        case .string(let text)?:
            switch text.lowercased() {
            case "true": return true
            case "false": return false
            default: return nil
            }
        default: return nil
        }
    }

    /// An LSN string; `nil` for `"unknown"`, empty, or non-strings.
    func lenientLSN(_ key: Key) -> String? {
        guard let text = lenientString(key), !text.isEmpty, text != "unknown" else { return nil }
        return text
    }
}

/// Entry points that turn Patroni's bytes into models, never crashing, always naming what was
/// wrong. Every one of them catches everything `JSONDecoder` can throw.
public enum PatroniDecoder {
    /// Decodes and validates a `/cluster` answer (see ``PatroniCluster/validate(endpoint:)``).
    public static func cluster(_ bytes: [UInt8], endpoint: PatroniEndpoint? = nil) throws(PatroniError) -> PatroniCluster {
        let cluster = try decode(PatroniCluster.self, bytes, path: "/cluster", endpoint: endpoint)
        try cluster.validate(endpoint: endpoint)
        return cluster
    }

    /// Decodes a `/patroni` (or health endpoint) body.
    public static func nodeStatus(_ bytes: [UInt8], path: String = "/patroni", endpoint: PatroniEndpoint? = nil) throws(PatroniError) -> PatroniNodeStatus {
        try decode(PatroniNodeStatus.self, bytes, path: path, endpoint: endpoint)
    }

    /// Decodes a `/history` answer.
    public static func history(_ bytes: [UInt8], endpoint: PatroniEndpoint? = nil) throws(PatroniError) -> [PatroniHistoryEntry] {
        try decode([PatroniHistoryEntry].self, bytes, path: "/history", endpoint: endpoint)
    }

    /// Decodes a `/config` answer, which must be a JSON object.
    public static func config(_ bytes: [UInt8], endpoint: PatroniEndpoint? = nil) throws(PatroniError) -> JSONValue {
        let value = try decode(JSONValue.self, bytes, path: "/config", endpoint: endpoint)
        guard case .object = value else {
            throw PatroniError(
                code: .malformedAnswer, endpoint: endpoint, path: "/config", field: "(document)",
                message: "(document): wrong type (expected an object, found \(kind(of: value)))")
        }
        return value
    }

    /// Decodes any `Decodable` from Patroni's bytes, mapping every failure to
    /// ``PatroniError/Code/malformedAnswer`` with the field path and the reason.
    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], path: String, endpoint: PatroniEndpoint? = nil) throws(PatroniError) -> T {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            throw PatroniError(code: .malformedAnswer, endpoint: endpoint, path: path, field: "(document)", message: "(document): empty answer")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            let described = describe(error)
            let field = described.field
            var reason = described.reason
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty,
                (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
            {
                // JSONDecoder says "not valid JSON" for a number that does not fit its field.
                reason = "a number does not fit its field (e.g. a fraction or an out-of-range value where an integer belongs)"
            }
            throw PatroniError(
                code: .malformedAnswer, endpoint: endpoint, path: path, field: field,
                message: "\(field): \(reason)")
        } catch {
            throw PatroniError(
                code: .malformedAnswer, endpoint: endpoint, path: path, field: "(document)",
                message: "(document): \(error)")
        }
    }

    /// The field path (`members[1].name`) and a short reason for a `DecodingError`.
    static func describe(_ error: DecodingError) -> (field: String, reason: String) {
        switch error {
        case .typeMismatch(let type, let context):
            let expected = type == JSONValue.self ? context.debugDescription : "expected \(typeName(type))"
            return (fieldPath(context.codingPath), "wrong type (\(expected))")
        case .valueNotFound(let type, let context):
            if type == JSONValue.self { return (fieldPath(context.codingPath), "missing (\(context.debugDescription))") }
            return (fieldPath(context.codingPath), "null or missing (expected \(typeName(type)))")
        case .keyNotFound(let key, let context):
            return (fieldPath(context.codingPath + [key]), "missing")
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                return ("(document)", "not valid JSON: truncated, corrupt or not UTF-8 (\(shortDetail(context)))")
            }
            return (fieldPath(context.codingPath), "unreadable value (\(shortDetail(context)))")
        @unknown default:
            return ("(document)", "undecodable")
        }
    }

    static func fieldPath(_ path: [any CodingKey]) -> String {
        guard !path.isEmpty else { return "(document)" }
        var out = ""
        for key in path {
            if let index = key.intValue, key.stringValue.hasPrefix("Index ") || key.stringValue == String(index) {
                out += "[\(index)]"
            } else {
                out += out.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return out
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Bool.Type: return "a boolean"
        case is Double.Type: return "a number"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") || name.hasPrefix("Patroni") || name == "JSONValue" { return "an object" }
            return name
        }
    }

    private static func shortDetail(_ context: DecodingError.Context) -> String {
        var text = context.debugDescription
        if let underlying = context.underlyingError { text += ": \(underlying)" }
        if text.count > 160 { text = String(text.prefix(160)) + "…" }
        return text
    }

    static func kind(of value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
