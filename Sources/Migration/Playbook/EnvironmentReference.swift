import Foundation

/// A `${VAR}` reference in a playbook: the name of an environment variable, never its value.
public struct EnvironmentReference: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The variable's name, e.g. `PATRONI_PASSWORD`.
    public var variable: String

    public init(_ variable: String) { self.variable = variable }

    /// `${PATRONI_PASSWORD}`.
    public var description: String { "${\(variable)}" }

    /// Parses exactly `${NAME}` (NAME: letters, digits, underscores, not starting with a digit).
    public init?(parsing text: String) {
        guard text.hasPrefix("${"), text.hasSuffix("}"), text.count > 3 else { return nil }
        let name = String(text.dropFirst(2).dropLast())
        guard Self.isValidName(name) else { return nil }
        self.variable = name
    }

    /// True for a POSIX-style variable name.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { $0 == "_" || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) }
    }

    /// The value from `environment`.
    /// - Throws: `.environmentVariableMissing`, naming the variable and the playbook key, never a value.
    public func resolve(in environment: some EnvironmentProviding, key: String) throws(MigrationError) -> String {
        guard let value = environment.value(of: variable), !value.isEmpty else {
            throw MigrationError(.environmentVariableMissing, "\(key) refers to ${\(variable)}, which is not set; export it before running pgha")
        }
        return value
    }
}

/// Where `${VAR}` values come from.
public protocol EnvironmentProviding: Sendable {
    /// The variable's value, or nil when unset.
    func value(of name: String) -> String?
}

/// The process environment (`ProcessInfo.processInfo.environment`, read at each lookup).
public struct ProcessEnvironment: EnvironmentProviding {
    public init() {}
    public func value(of name: String) -> String? { ProcessInfo.processInfo.environment[name] }
}

/// A fixed set of variables (tests, or an environment merged from several sources by the CLI).
public struct StaticEnvironment: EnvironmentProviding {
    public var variables: [String: String]
    public init(_ variables: [String: String]) { self.variables = variables }
    public func value(of name: String) -> String? { variables[name] }
}
