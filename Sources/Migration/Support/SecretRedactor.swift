import Foundation

/// Replaces every known secret value in a text with `<redacted>`.
///
/// Built from the resolved `${VAR}` values of a playbook's credential fields. The runner passes
/// every free text that goes into the state file, a log line or a report (failure reasons, check
/// observations, diffs) through it, and the state store applies it to the whole state before
/// writing, as a last line of defence.
public struct SecretRedactor: Sendable, Hashable {
    /// What replaces a secret.
    public static let mask = "<redacted>"

    /// The secret values, longest first (so a secret containing another is masked whole).
    public private(set) var secrets: [String]

    /// Secrets shorter than 3 characters are ignored: masking every "a" would make text unreadable
    /// and such a password protects nothing anyway.
    public init(secrets: some Sequence<String>) {
        self.secrets = Array(Set(secrets.filter { $0.count >= 3 })).sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    /// No secrets: `redact` returns its input.
    public static let none = SecretRedactor(secrets: [])

    /// A redactor that knows the secrets of both.
    public func merging(_ other: SecretRedactor) -> SecretRedactor {
        SecretRedactor(secrets: secrets + other.secrets)
    }

    /// `text` with every occurrence of every secret replaced by `<redacted>`.
    public func redact(_ text: String) -> String {
        guard !secrets.isEmpty else { return text }
        var result = text
        for secret in secrets where result.contains(secret) {
            result = result.replacingOccurrences(of: secret, with: Self.mask)
        }
        return result
    }

    /// True when `text` contains any secret.
    public func containsSecret(_ text: String) -> Bool {
        secrets.contains { text.contains($0) }
    }
}
