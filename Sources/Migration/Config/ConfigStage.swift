import Foundation
import HAPool

/// Stage `config`: renders templates/ into the playbook's outputs.
///
/// - The application's `.env`, twice: the single-node variant (`ENABLE_PATRONI=false`, what the
///   application keeps running with) and the Patroni variant (`ENABLE_PATRONI=true`, switched in at
///   cutover). Both hold the resolved passwords the application needs, so both are written 0600.
/// - The seed's `memory.postgresql` YAML block (`mode: patroni-ha`), passwords as `${VAR}`.
/// - haproxy.cfg, routing by Patroni's REST checks `/primary` and `/replica`.
/// - patroni.yml, for reference.
///
/// Plan: a unified diff per file (secret values masked). Run: writes only files whose bytes or mode
/// differ, backing up every file it overwrites (see `ManagedFiles`); re-running writes nothing.
/// Gate: every file on disk is byte for byte what the playbook renders, with its mode; the `.env`
/// variants carry the right `ENABLE_PATRONI`. Undo: every file back as it was, byte for byte, or
/// removed if it did not exist.
public struct ConfigStage: MigrationStageExecutor {
    public let stage = MigrationStage.config
    public let makesChanges = true
    public var templates: TemplateSet

    public init(templates: TemplateSet) {
        self.templates = templates
    }

    /// With the templates compiled into pgha.
    public init() throws(MigrationError) {
        self.templates = try TemplateSet.builtin()
    }

    func renderer(_ context: StageContext) -> ConfigRenderer {
        ConfigRenderer(playbook: context.playbook, templates: templates, workingDirectory: context.workingDirectory)
    }

    public func plan(_ context: StageContext) async throws -> StagePlan {
        let files = try renderer(context).render(environment: context.environment, placeholdersForMissingSecrets: true)
        var planned: [PlannedFile] = []
        for file in files {
            let current = try FileIO.read(file.path)
            let action: PlannedFile.Action
            if let current {
                action = current.contents == Data(file.contents.utf8) && current.mode == file.mode ? .unchanged : .update
            } else {
                action = .create
            }
            let old = current.flatMap { String(data: $0.contents, encoding: .utf8) } ?? ""
            var diff = Self.diff(old: old, new: file.contents, path: file.path, exists: current != nil, holdsSecrets: file.holdsSecrets, redactor: context.redactor)
            if let current, current.mode != file.mode {
                diff = "mode \(FileMode(current.mode)) -> \(FileMode(file.mode))\n" + diff
            }
            planned.append(PlannedFile(key: file.key, path: file.path, action: action, mode: FileMode(file.mode), holdsSecrets: file.holdsSecrets, diff: diff))
        }
        // The admin credentials are for later stages; these files do not need them.
        let missing = context.playbook.missingCredentials(in: context.environment)
            .filter { $0.key != "source.admin_password" && $0.key != "target.admin_password" }
        return StagePlan(
            stage: stage, makesChanges: true,
            checks: ["every ${VAR} credential the files need is set"],
            changes: planned.map { file in
                switch file.action {
                case .create: return "create \(file.path) (mode \(file.mode))"
                case .update: return "update \(file.path) (mode \(file.mode)); the current file is backed up first"
                case .unchanged: return "leave \(file.path) as it is (already up to date)"
                }
            },
            undo: ["restore every file this stage overwrote from its backup, byte for byte with its mode; remove the files it created"],
            files: planned,
            warnings: missing.map { "\($0.key) refers to \($0.reference), which is not set: the run will stop at this stage until it is exported" }
        )
    }

    public func run(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let files = try renderer(context).render(environment: context.environment)
        let managed = ManagedFiles(journal: journal, stage: stage, backupsDirectory: context.store.backupsDirectory)
        try managed.resolvePending()
        for file in files {
            try context.checkCancellation()
            let result = try managed.write(key: file.key, path: file.path, contents: Data(file.contents.utf8), mode: file.mode)
            switch result {
            case .created: context.progress("created \(file.path) (mode \(FileMode(file.mode)))")
            case .updated: context.progress("updated \(file.path) (mode \(FileMode(file.mode))); previous version backed up")
            case .unchanged: context.progress("\(file.path) is up to date")
            }
        }
    }

    public func gate(_ context: StageContext) async throws -> [CheckResult] {
        let files = try renderer(context).render(environment: context.environment)
        var results: [CheckResult] = []
        for file in files {
            let name = "file.\(file.key)"
            guard let current = try FileIO.read(file.path) else {
                results.append(.fail(name, observed: "missing", expected: file.path, advice: "run the config stage again (pgha resume)"))
                continue
            }
            let want = try SHA256.hex(Data(file.contents.utf8))
            let have = try SHA256.hex(current.contents)
            if have == want {
                results.append(.pass(name, observed: "sha256 \(have.prefix(12))…", expected: "sha256 \(want.prefix(12))…"))
            } else {
                results.append(.fail(name, observed: "sha256 \(have.prefix(12))…", expected: "sha256 \(want.prefix(12))…",
                                     advice: "\(file.path) differs from what the playbook renders (edited by hand, or the playbook changed): run the config stage again"))
            }
            let modeName = "mode.\(file.key)"
            if current.mode == file.mode {
                results.append(.pass(modeName, observed: FileMode(current.mode).description, expected: FileMode(file.mode).description))
            } else {
                results.append(.fail(modeName, observed: FileMode(current.mode).description, expected: FileMode(file.mode).description,
                                     advice: file.holdsSecrets ? "\(file.path) holds passwords: chmod 600 it" : "chmod \(FileMode(file.mode)) \(file.path)"))
            }
            if file.key == "env_file" || file.key == "env_single_node_file" {
                let wanted = file.key == "env_file" ? "true" : "false"
                // Read with the parser the application's pool uses (DualDatabasePools, `pgha
                // workload --env-file`): a file it would refuse fails here, with its line and column.
                let check = "enable_patroni.\(file.key)"
                let value: String?
                do {
                    value = try DotEnv.entries(bytes: Array(current.contents), file: file.path).last { $0.key == "ENABLE_PATRONI" }?.value
                } catch {
                    results.append(.fail(check, observed: "\(error)", expected: "ENABLE_PATRONI=\(wanted) in a .env the pool reads",
                                         advice: "fix templates/app.env.mustache (or the playbook values it renders), then `pgha resume`"))
                    continue
                }
                if value == wanted {
                    results.append(.pass(check, observed: "ENABLE_PATRONI=\(wanted)", expected: "ENABLE_PATRONI=\(wanted)"))
                } else {
                    results.append(.fail(check, observed: value.map { "ENABLE_PATRONI=\($0)" } ?? "ENABLE_PATRONI not set",
                                         expected: "ENABLE_PATRONI=\(wanted)", advice: "templates/app.env.mustache must set ENABLE_PATRONI={{enable_patroni}}"))
                }
            }
        }
        return results
    }

    public func undo(_ context: StageContext) async throws {
        let journal = try context.requireJournal()
        let managed = ManagedFiles(journal: journal, stage: stage, backupsDirectory: context.store.backupsDirectory)
        for result in try managed.undo() {
            context.progress(result.restored ? "restored \(result.path) from its backup" : "removed \(result.path) (it did not exist before)")
            if let saved = result.savedExternalChangesAt {
                context.progress("\(result.path) had been edited after pgha wrote it; that version is saved as \(saved)")
            }
        }
    }

    // MARK: - Helpers

    /// A unified diff safe to show: in files holding secrets, the value of every variable whose
    /// name says it is a secret is masked on both sides (marked "changed" when it differs), and
    /// every known secret is masked anywhere.
    static func diff(old: String, new: String, path: String, exists: Bool, holdsSecrets: Bool, redactor: SecretRedactor) -> String {
        var old = old
        var new = new
        if holdsSecrets {
            let oldValues = secretAssignments(in: old)
            old = maskSecretAssignments(in: old) { _, _ in SecretRedactor.mask }
            new = maskSecretAssignments(in: new) { key, value in
                if let previous = oldValues[key], previous != value { return "<redacted, changed>" }
                return SecretRedactor.mask
            }
        }
        let diff = TextDiff.unified(old: old, new: new, oldName: exists ? path + " (on disk)" : "/dev/null", newName: path + " (generated)")
        return redactor.redact(diff)
    }

    static func isSecretName(_ key: String) -> Bool {
        let upper = key.uppercased()
        return ["PASSWORD", "SECRET", "TOKEN", "PASSWD", "PWD", "_KEY"].contains { upper.contains($0) } && !upper.hasSuffix("SSLKEY") && !upper.hasSuffix("KEYFILE")
    }

    static func secretAssignments(in text: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let (key, value) = assignment(String(line)), isSecretName(key) else { continue }
            result[key] = value
        }
        return result
    }

    static func maskSecretAssignments(in text: String, mask: (String, String) -> String) -> String {
        TextDiff.lines(text).map { line in
            let body = line.hasSuffix("\n") ? String(line.dropLast()) : line
            guard let (key, value) = assignment(body), isSecretName(key) else { return line }
            let prefix = body.hasPrefix("export ") ? "export " : ""
            return prefix + key + "=" + mask(key, value) + (line.hasSuffix("\n") ? "\n" : "")
        }.joined()
    }

    static func assignment(_ line: String) -> (String, String)? {
        var l = line.trimmingCharacters(in: .whitespaces)
        guard !l.hasPrefix("#") else { return nil }
        if l.hasPrefix("export ") { l = String(l.dropFirst(7)) }
        guard let eq = l.firstIndex(of: "=") else { return nil }
        let key = l[..<eq].trimmingCharacters(in: .whitespaces)
        guard EnvironmentReference.isValidName(key) else { return nil }
        return (key, String(l[l.index(after: eq)...]))
    }
}
