public import Foundation

/// The state of a migration as one JSON document: for `pgha status --json` and the final line of
/// `pgha run --json`. Built from the (secret-free) state file.
public struct MigrationReport: Codable, Sendable, Hashable {
    public var outcome: MigrationOutcome?
    public var exitCode: Int32?
    public var message: String?
    public var stateFile: String
    public var toolVersion: String
    public var playbook: MigrationState.PlaybookReference
    public var direction: MigrationState.Direction
    public var updatedAt: Date
    public var stages: [MigrationState.StageState]
    /// Files currently in place (written and not undone).
    public var filesInPlace: [MigrationState.FileRecord]
    /// The runner holding the lock right now, if any.
    public var lockedBy: LockHolder?
    /// The shadow stage's last report (`<state-dir>/shadow/report.json`), once it ran.
    public var shadow: ShadowReport?
    /// The cutover's facts (write pause, final LSN, promotion, the way back), once it ran.
    public var cutover: MigrationState.CutoverRecord?

    public init(state: MigrationState, store: StateStore, outcome: MigrationOutcome? = nil) {
        let outcome = outcome ?? state.lastOutcome
        self.outcome = outcome
        self.exitCode = outcome?.exitCode.rawValue
        self.message = outcome?.description
        self.stateFile = store.stateFile
        self.toolVersion = state.toolVersion
        self.playbook = state.playbook
        self.direction = state.direction
        self.updatedAt = state.updatedAt
        self.stages = state.stages
        self.filesInPlace = state.filesInPlace
        self.lockedBy = StateLock.currentHolder(path: store.lockFile)
        self.shadow = ShadowReport.load(from: store)
        self.cutover = state.cutover
    }

    /// Pretty JSON with sorted keys.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        guard let data = try? encoder.encode(self), let text = String(data: data, encoding: .utf8) else { return "{}" }
        return text
    }
}
