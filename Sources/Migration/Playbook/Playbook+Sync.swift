import Foundation

/// How the data moves (`sync:`), as validated from the playbook.
extension Playbook {
    /// How the data moves (`sync:`).
    public struct Sync: Hashable, Sendable {
        public enum Method: String, Hashable, Sendable, CaseIterable {
            /// The cluster is bootstrapped as a Patroni standby cluster of the single node and follows
            /// it by physical streaming replication (same major version).
            case physical
            /// Publication on the single node, subscription on an independently initialised cluster
            /// (a major-version change or a freshly initialised cluster; the shadow stage does not apply).
            case logical
        }

        public var method: Method
        /// The physical replication slot on the single node that the standby cluster streams from.
        public var slot: String
        /// WAL the slot may hold back on the single node before the stage stops (a vanished
        /// cluster must not fill the source's disk).
        public var maxWALRetentionBytes: Int64
        /// Replay lag on every member that counts as caught up (default `thresholds.max_lag_bytes`).
        public var caughtUpLagBytes: Int64
        /// How long the stage waits for the cluster to appear (its REST API to answer).
        public var clusterTimeoutSeconds: Double
        /// How long the copy or the catch-up may make no progress before the stage fails.
        public var stallTimeoutSeconds: Double
        /// A command that starts the cluster's members (run by `/bin/sh -c` once the slot exists);
        /// without one, pgha waits for the operator to start them.
        public var startCluster: String?
        /// A command that stops them, run by undo before the slot is dropped.
        public var stopCluster: String?
        /// Longest a hook may run.
        public var hookTimeoutSeconds: Double
        /// Logical method: the role the cluster's subscriptions log in to the single node as
        /// (REPLICATION, and reading every table for the initial copy), and its password. The
        /// password is written into the subscription's connection string on the cluster
        /// (`pg_subscription`, readable by superusers only).
        public var publisherUser: String?
        public var publisherPassword: EnvironmentReference?
        /// Logical method: the publication on the single node (one per database, same name).
        public var publication: String
        /// Logical method: Patroni's `synchronous_mode` switched on while the subscriptions copy
        /// and stream (with their `synchronous_commit = on` the leader's commit waits for a
        /// synchronous standby, so a crash of the whole leader node loses no applied row); put
        /// back as it was after the cutover, or by the sync's undo.
        public var synchronousMode: Bool
        /// Logical method: whether the roles pgha creates on the cluster get the single node's
        /// password hashes (`copy`) or none (`none`, the default: the operator sets them).
        public var rolePasswords: RolePasswords
        /// Logical method: with `true` the cluster's secondary indexes (neither a constraint's,
        /// unique nor the replica identity) are dropped before the initial copy and built once
        /// every table is copied, as pg_restore does. Off by default: not faster on the measured
        /// data (docs/BENCHMARKS.md).
        public var deferIndexes: Bool
        /// Logical method: who copies the tables before the subscription streams (`snapshot`, the
        /// default: pgha, at the exported snapshot of the subscription's slot, keys and indexes
        /// built after the data; `subscription`: PostgreSQL's table sync workers).
        public var initialCopy: InitialCopy
        /// Logical method, snapshot copy: tables copied at once (sessions on each side).
        public var copyJobs: Int

        public enum InitialCopy: String, Sendable, Hashable, CaseIterable {
            /// pgha copies every table with COPY at the slot's exported snapshot (binary where both
            /// servers read it the same way), then restores the keys, indexes, constraints and
            /// triggers (`pg_dump --section=post-data`), then subscribes with `copy_data = false`.
            case snapshot
            /// `CREATE SUBSCRIPTION ... copy_data = true`: PostgreSQL's table sync workers copy.
            case subscription
        }

        public enum RolePasswords: String, Sendable, Hashable, CaseIterable {
            case none
            case copy
        }

        public init(
            method: Method = .physical, slot: String = "pgha_standby", maxWALRetentionBytes: Int64 = 10 << 30,
            caughtUpLagBytes: Int64 = 1 << 20, clusterTimeoutSeconds: Double = 3600, stallTimeoutSeconds: Double = 600,
            startCluster: String? = nil, stopCluster: String? = nil, hookTimeoutSeconds: Double = 600,
            publisherUser: String? = nil, publisherPassword: EnvironmentReference? = nil, publication: String = "pgha_sync",
            synchronousMode: Bool = true, rolePasswords: RolePasswords = .none, deferIndexes: Bool = false,
            initialCopy: InitialCopy = .snapshot, copyJobs: Int = 2
        ) {
            self.copyJobs = copyJobs
            self.initialCopy = initialCopy
            self.deferIndexes = deferIndexes
            self.synchronousMode = synchronousMode
            self.rolePasswords = rolePasswords
            self.publisherUser = publisherUser
            self.publisherPassword = publisherPassword
            self.publication = publication
            self.method = method
            self.slot = slot
            self.maxWALRetentionBytes = maxWALRetentionBytes
            self.caughtUpLagBytes = caughtUpLagBytes
            self.clusterTimeoutSeconds = clusterTimeoutSeconds
            self.stallTimeoutSeconds = stallTimeoutSeconds
            self.startCluster = startCluster
            self.stopCluster = stopCluster
            self.hookTimeoutSeconds = hookTimeoutSeconds
        }
    }
}
