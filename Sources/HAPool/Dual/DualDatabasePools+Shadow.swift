import Logging

/// Shadow mode of `DualDatabasePools` (`init(config:shadow:)`): each database's read-only
/// statements are also sent to the same database in the other mode and compared (`ShadowReads`).
extension DualDatabasePools {
    /// Builds the other mode's pools and attaches a `ShadowReads` to each handle.
    static func attachShadow(
        _ shadow: ShadowReadConfiguration?, config: DualPoolsConfig, project: inout DatabaseHandle, shared: inout DatabaseHandle?, logger: Logger
    ) throws(ConfigurationError) -> (DualDatabasePools?, [ShadowReads]) {
        guard let shadow else { return (nil, []) }
        var other = config
        switch config.mode {
        case .singleNode:
            guard config.patroni != nil else {
                throw ConfigurationError(.missing, key: "PATRONI_HOSTS", "shadow mode from single-node mode needs the PATRONI_* variables of the cluster to compare with")
            }
            other.mode = .patroni
        case .patroni:
            guard config.project != nil else {
                throw ConfigurationError(.missing, key: "PROJECT_DB_NAME", "shadow mode from Patroni mode needs the PROJECT_DB_* variables of the single node to compare with")
            }
            other.mode = .singleNode
        }
        var shadowLogger = logger
        shadowLogger[metadataKey: "shadow"] = "\(other.mode)"
        let pools = try DualDatabasePools(config: other, logger: shadowLogger)
        var reads: [ShadowReads] = []
        let p = ShadowReads(role: "project", target: pools.project, configuration: shadow, logger: shadowLogger)
        project.shadow = p
        reads.append(p)
        if var s = shared, let target = pools.shared {
            let r = ShadowReads(role: "shared", target: target, configuration: shadow, logger: shadowLogger)
            s.shadow = r
            shared = s
            reads.append(r)
        }
        return (pools, reads)
    }

    /// Starts the other mode's pools and the shadow tasks. A failure is logged, never thrown: the
    /// shadow must not stop the application (shadowed reads then count as `shadowUnavailable`).
    func startShadow() async {
        guard let shadowPools else { return }
        do {
            try await shadowPools.start()
        } catch {
            logger.warning("shadow mode: the other mode's pools did not start; shadowed reads count as unavailable", metadata: ["error": "\(error.code)"])
        }
        for s in shadows { s.start() }
    }

    /// Lets the queued shadow reads finish, then closes the other mode's pools.
    func closeShadow() async {
        for s in shadows { await s.finish() }
        await shadowPools?.close()
    }

    /// What the shadow mode saw (project and shared together); nil without shadow mode.
    public var shadowStatistics: ShadowReadStatistics? {
        guard !shadows.isEmpty else { return nil }
        var total = ShadowReadStatistics()
        for s in shadows {
            let one = s.statistics
            total.add(one)
            if shadows.count == 1 {
                total.primaryLatency = one.primaryLatency
                total.shadowLatency = one.shadowLatency
            }
        }
        if shadows.count > 1 {
            // Latencies are per database; the project database's stand for both.
            total.primaryLatency = shadows[0].statistics.primaryLatency
            total.shadowLatency = shadows[0].statistics.shadowLatency
        }
        return total
    }

    /// Shadow statistics per database role.
    public var shadowStatisticsByRole: [String: ShadowReadStatistics] {
        Dictionary(uniqueKeysWithValues: shadows.map { ($0.role, $0.statistics) })
    }
}
