import Foundation

/// How the application moves (`cutover:`) and what `complete` removes, as validated from the playbook.
extension Playbook {
    /// How the application moves (`cutover:`).
    public struct Cutover: Hashable, Sendable {
        public enum Method: String, Hashable, Sendable, CaseIterable {
            /// PgBouncer in front of the database: PAUSE, repoint, RELOAD, RESUME (a pause, not errors).
            case pgbouncer
            /// Commands that deploy the Patroni-mode .env and restart the application.
            case hook
        }

        /// PgBouncer's admin console and configuration.
        public struct PgBouncer: Hashable, Sendable {
            public var adminHost: String
            public var adminPort: Int
            public var adminUser: String
            public var adminPassword: EnvironmentReference?
            /// The pgbouncer.ini whose `[databases]` lines pgha rewrites (it must be on this machine).
            public var iniFile: String
            /// Where those lines point after cutover (default: HAProxy's primary listener).
            public var target: HostPort

            public init(adminHost: String, adminPort: Int = 6432, adminUser: String = "pgbouncer", adminPassword: EnvironmentReference? = nil, iniFile: String, target: HostPort) {
                self.adminHost = adminHost
                self.adminPort = adminPort
                self.adminUser = adminUser
                self.adminPassword = adminPassword
                self.iniFile = iniFile
                self.target = target
            }
        }

        public var method: Method
        public var pgbouncer: PgBouncer?
        /// Hook method: the command that deploys the Patroni-mode .env and restarts the application.
        public var switchApplication: String?
        /// Hook method: the command that switches it back (rollback after cutover).
        public var switchBack: String?
        /// Hook method: the application's `.env`, which cutover replaces by `outputs.env_file`
        /// (backed up; rollback restores it).
        public var applicationEnv: String?
        /// Longest catch-up after the freeze; beyond it the single node is unfrozen and the stage fails.
        public var timeoutSeconds: Double
        /// Longest PgBouncer PAUSE may take (a long transaction holds it); then resumed, stage failed.
        public var pauseTimeoutSeconds: Double
        /// Hook method: how long to wait for the application's first writes on the cluster.
        public var applicationWaitSeconds: Double
        public var hookTimeoutSeconds: Double
        /// The role the single node subscribes to the cluster with (the way back) and its password.
        public var wayBackUser: String
        public var wayBackPassword: EnvironmentReference?
        /// Publication, subscription and slot names of the way back (a database suffix is added).
        public var wayBackName: String
        /// Logical method: how far ahead of the single node's value every sequence is set on the
        /// cluster at cutover (values the single node handed out but had not yet committed).
        public var sequenceMargin: Int64

        public init(
            method: Method = .pgbouncer, pgbouncer: PgBouncer? = nil, switchApplication: String? = nil, switchBack: String? = nil,
            applicationEnv: String? = nil, timeoutSeconds: Double = 30, pauseTimeoutSeconds: Double = 10,
            applicationWaitSeconds: Double = 60, hookTimeoutSeconds: Double = 300, wayBackUser: String = "replicator",
            wayBackPassword: EnvironmentReference? = nil, wayBackName: String = "pgha_way_back", sequenceMargin: Int64 = 1000
        ) {
            self.method = method
            self.pgbouncer = pgbouncer
            self.switchApplication = switchApplication
            self.switchBack = switchBack
            self.applicationEnv = applicationEnv
            self.timeoutSeconds = timeoutSeconds
            self.pauseTimeoutSeconds = pauseTimeoutSeconds
            self.applicationWaitSeconds = applicationWaitSeconds
            self.hookTimeoutSeconds = hookTimeoutSeconds
            self.wayBackUser = wayBackUser
            self.wayBackPassword = wayBackPassword
            self.wayBackName = wayBackName
            self.sequenceMargin = sequenceMargin
        }
    }

    /// The end of the migration (`complete:`).
    public struct Complete: Hashable, Sendable {
        /// Soak: how long after cutover the way back stays before it is dropped.
        public var afterSeconds: Double
        /// A command that stops the single node (else it stays, frozen read-only).
        public var stopSource: String?
        public var hookTimeoutSeconds: Double

        public init(afterSeconds: Double = 0, stopSource: String? = nil, hookTimeoutSeconds: Double = 300) {
            self.afterSeconds = afterSeconds
            self.stopSource = stopSource
            self.hookTimeoutSeconds = hookTimeoutSeconds
        }
    }
}
