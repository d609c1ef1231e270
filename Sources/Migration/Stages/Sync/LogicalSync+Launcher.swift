import PGClient
import PlainText

/// The pace of PostgreSQL's logical replication launcher while the subscriptions start.
///
/// The launcher starts the apply workers of every enabled subscription that lacks one, but at
/// most one round per `wal_retrieve_retry_interval` (5 s by default): a database's subscription
/// created less than that after the previous one's waits the rest of the interval for its worker
/// (measured: 5.1 s of a 11.8 s sync of 524 MiB in two databases, scripts/bench-logical). pgha
/// lowers the setting on the leader (`ALTER SYSTEM`, journaled with what `postgresql.auto.conf`
/// held, then a reload) before the first subscription, and puts it back once every subscription's
/// worker runs; a rollback puts it back too. Only the launcher's and the apply workers' retries use
/// it on a primary. After a leader change during the sync the new leader starts at its own
/// setting (slower, not wrong); the old one is put back wherever it runs.
extension LogicalSync {
    static let launcherStep = "launcher-interval"
    /// The interval while the subscriptions start.
    static let quickLauncherInterval = "100ms"

    func quickenLauncher(on leader: (name: String, host: String, port: Int)) async throws {
        guard journal.step(stage, named: Self.launcherStep) == nil else { return }
        let postgres = try await db.member(host: leader.host, port: leader.port, database: "postgres")
        let previous = try await db.autoConfSetting(postgres, "wal_retrieve_retry_interval")
        try await step(Self.launcherStep, "ALTER SYSTEM SET wal_retrieve_retry_interval = \(Self.quickLauncherInterval) on \(leader.name) while the subscriptions start (PostgreSQL starts their apply workers one round per interval; put back once each runs)",
                       undo: .serverSettings(.init(server: leader.name, settings: [.init(name: "wal_retrieve_retry_interval", previousAutoConf: previous)]))) {
            try await db.alterSystem(postgres, "wal_retrieve_retry_interval", to: Self.quickLauncherInterval)
        }
    }

    /// Puts the interval back once the subscriptions run; a failure (that member down) is a
    /// warning: the setting only paces retries, and a rollback tries again.
    func restoreLauncher() async {
        do { try await restoreLauncher(throwing: false) } catch {}
    }

    /// Puts the interval back as the journal says it was, on the member it was changed on, and marks
    /// the step undone. Without `throwing`, a failure is reported as a warning instead.
    func restoreLauncher(throwing: Bool) async throws(MigrationError) {
        guard let step = journal.step(stage, named: Self.launcherStep), step.phase == .done || step.phase == .intent,
              case .serverSettings(let saved) = step.undo
        else { return }
        do throws(MigrationError) {
            guard let member = db.members.first(where: { $0.name == saved.server }) else {
                throw MigrationError(.stageFailed, "member \(saved.server) is not in the playbook's target.members")
            }
            let postgres = try await db.member(host: member.host, port: member.port, database: "postgres")
            for setting in saved.settings {
                try await db.alterSystem(postgres, setting.name, to: setting.previousAutoConf)
            }
            do { try journal.markStepUndone(step.id) } catch {
                throw MigrationError(.stageFailed, "journaling that wal_retrieve_retry_interval is back failed: \(error)")
            }
            context.progress("wal_retrieve_retry_interval put back on \(saved.server) (" + (saved.settings.first?.previousAutoConf ?? "its default") + ")")
        } catch {
            guard throwing else {
                context.progress("warning: wal_retrieve_retry_interval could not be put back on \(saved.server) yet (\(error.message)): `pgha rollback` or the next `pgha resume` tries again; by hand: ALTER SYSTEM RESET wal_retrieve_retry_interval; SELECT pg_reload_conf();")
                return
            }
            throw error
        }
    }
}
