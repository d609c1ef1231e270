import Foundation
import PlainText

/// Renders every configuration file and SQL script of the sandbox. Pure functions of the
/// configuration (and, where a file must embed one, of the passwords): unit-tested without servers.
enum SandboxRendering {
    /// A YAML single-quoted scalar (`'` doubled), safe for any string.
    static func yamlQuoted(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// The three pg_hba rules shared by the single node and the Patroni members.
    static func hbaRules(_ configuration: SandboxConfiguration) -> [String] {
        [
            "local all all peer",
            "host replication \(configuration.users.replication) 127.0.0.0/8 md5",
            "host all all 127.0.0.0/8 md5",
        ]
    }

    // MARK: Single node

    /// Settings appended to the single node's `postgresql.conf` after `initdb`.
    static func singleNodeSettings(_ configuration: SandboxConfiguration) -> String {
        let single = configuration.single
        var lines = [
            "# --- pgha sandbox (single node) ---",
            "listen_addresses = '\(single.host)'",
            "port = \(single.port)",
            "unix_socket_directories = '\(single.socketDir)'",
            "cluster_name = 'pgha-sandbox-single'",
            "wal_level = logical",
            "max_wal_senders = 10",
            "max_replication_slots = 10",
            "shared_buffers = 32MB",
            "work_mem = 4MB",
            "maintenance_work_mem = 32MB",
            "max_connections = 100",
            "password_encryption = 'scram-sha-256'",
            "logging_collector = off",
        ]
        if let tls = configuration.tls, let pair = tls.serverCertificates["single"] {
            lines += [
                "ssl = on",
                "ssl_cert_file = '\(pair.certificate)'",
                "ssl_key_file = '\(pair.key)'",
                "ssl_ca_file = '\(tls.caCertificate)'",
            ]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The single node's `pg_hba.conf` (replaces the one initdb wrote).
    static func singleNodeHBA(_ configuration: SandboxConfiguration) -> String {
        (["# pgha sandbox (single node)"] + hbaRules(configuration) + ["host replication all 127.0.0.0/8 md5"])
            .joined(separator: "\n") + "\n"
    }

    /// Roles and databases on the single node, idempotent (run on every `up`). Runs as the
    /// `postgres` OS user over the unix socket (peer authentication).
    static func singleNodeRolesSQL(_ configuration: SandboxConfiguration, _ passwords: Passwords) -> String {
        let replication = configuration.users.replication
        // The replication role a standby cluster streams with (the physical method's members log in
        // to the single node as it).
        return applicationRoleAndDatabasesSQL(configuration, passwords, superuserPassword: passwords.superuser) + [
            "SELECT 'CREATE ROLE \(SQLQuoting.quotedIdentifier(replication)) LOGIN REPLICATION' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = \(SQLQuoting.literal(replication))) \\gexec",
            "ALTER ROLE \(SQLQuoting.quotedIdentifier(replication)) LOGIN REPLICATION PASSWORD \(SQLQuoting.literal(passwords.replication));",
            // The logical method's subscriptions log in as it too (playbooks/sandbox-logical.yml's
            // sync.publisher): the initial copy reads every table.
            "GRANT pg_read_all_data TO \(SQLQuoting.quotedIdentifier(replication));",
        ].joined(separator: "\n") + "\n"
    }

    /// The role `dpg_cluster` (LOGIN, password from secrets) and both databases owned by it,
    /// idempotently: psql's `\gexec` runs a CREATE only when the object is missing.
    static func applicationRoleAndDatabasesSQL(
        _ configuration: SandboxConfiguration, _ passwords: Passwords, superuserPassword: String?
    ) -> String {
        let app = configuration.users.application
        var sql = [
            "\\set ON_ERROR_STOP on",
            "SET client_min_messages = warning;",
        ]
        if let superuserPassword {
            sql.append("ALTER ROLE \(SQLQuoting.quotedIdentifier(configuration.users.superuser)) PASSWORD \(SQLQuoting.literal(superuserPassword));")
        }
        sql += [
            "SELECT 'CREATE ROLE \(SQLQuoting.quotedIdentifier(app)) LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = \(SQLQuoting.literal(app))) \\gexec",
            "ALTER ROLE \(SQLQuoting.quotedIdentifier(app)) LOGIN PASSWORD \(SQLQuoting.literal(passwords.application));",
        ]
        for database in [configuration.single.projectDatabase, configuration.single.sharedDatabase] {
            sql.append(
                "SELECT 'CREATE DATABASE \(SQLQuoting.quotedIdentifier(database)) OWNER \(SQLQuoting.quotedIdentifier(app))' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = \(SQLQuoting.literal(database))) \\gexec"
            )
        }
        return sql.joined(separator: "\n") + "\n"
    }

    /// Sample data of the project database (run once, right after the database was created), as
    /// the application role so that it owns every object.
    static func projectSampleSQL(_ configuration: SandboxConfiguration) -> String {
        """
        \\set ON_ERROR_STOP on
        SET ROLE \(SQLQuoting.quotedIdentifier(configuration.users.application));
        BEGIN;
        CREATE TABLE IF NOT EXISTS projects (
            id          bigserial PRIMARY KEY,
            name        text NOT NULL UNIQUE,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS tasks (
            id          bigserial PRIMARY KEY,
            project_id  bigint NOT NULL REFERENCES projects(id),
            title       text NOT NULL,
            done        boolean NOT NULL DEFAULT false,
            updated_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS tasks_project_id_idx ON tasks (project_id);
        CREATE SEQUENCE IF NOT EXISTS ticket_number_seq START 1000;
        INSERT INTO projects (name) VALUES ('alpha'), ('beta'), ('gamma') ON CONFLICT (name) DO NOTHING;
        INSERT INTO tasks (project_id, title, done)
            SELECT p.id, 'task ' || g || ' of ' || p.name, g % 3 = 0
            FROM projects p CROSS JOIN generate_series(1, 20) AS g
            WHERE NOT EXISTS (SELECT 1 FROM tasks);
        SELECT nextval('ticket_number_seq') FROM generate_series(1, 5);
        -- A large object (physical replication carries it; logical replication does not).
        CREATE TABLE IF NOT EXISTS attachments (
            id          bigserial PRIMARY KEY,
            name        text NOT NULL,
            content     oid NOT NULL
        );
        INSERT INTO attachments (name, content) SELECT 'readme.txt', lo_from_bytea(0, convert_to('pgha sandbox large object', 'UTF8'))
            WHERE NOT EXISTS (SELECT 1 FROM attachments);
        COMMIT;

        """
    }

    /// Sample data of the shared database (run once, right after the database was created).
    static func sharedSampleSQL(_ configuration: SandboxConfiguration) -> String {
        """
        \\set ON_ERROR_STOP on
        SET ROLE \(SQLQuoting.quotedIdentifier(configuration.users.application));
        BEGIN;
        CREATE TABLE IF NOT EXISTS knowledge_items (
            id          bigserial PRIMARY KEY,
            topic       text NOT NULL,
            body        text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS item_tags (
            item_id     bigint NOT NULL REFERENCES knowledge_items(id),
            tag         text NOT NULL,
            PRIMARY KEY (item_id, tag)
        );
        CREATE INDEX IF NOT EXISTS knowledge_items_topic_idx ON knowledge_items (topic);
        CREATE SEQUENCE IF NOT EXISTS revision_seq;
        INSERT INTO knowledge_items (topic, body)
            SELECT 'topic ' || (g % 5), 'shared note number ' || g
            FROM generate_series(1, 50) AS g
            WHERE NOT EXISTS (SELECT 1 FROM knowledge_items);
        INSERT INTO item_tags (item_id, tag)
            SELECT id, CASE WHEN id % 2 = 0 THEN 'even' ELSE 'odd' END FROM knowledge_items
            ON CONFLICT DO NOTHING;
        SELECT nextval('revision_seq') FROM generate_series(1, 3);
        COMMIT;

        """
    }

    /// After `pgbench -i` (run as the superuser): the pgbench tables belong to the application role,
    /// like the rest of the project database. pgbench_history has no primary key: it gets
    /// REPLICA IDENTITY FULL, the fix `source.primary_keys` advises, so that logical replication
    /// (the logical method, and the way back of both methods) can apply its updates and deletes.
    static func pgbenchOwnershipSQL(_ configuration: SandboxConfiguration) -> String {
        let app = SQLQuoting.quotedIdentifier(configuration.users.application)
        return (["\\set ON_ERROR_STOP on"]
            + ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"].map { "ALTER TABLE \($0) OWNER TO \(app);" }
            + ["ALTER TABLE pgbench_history REPLICA IDENTITY FULL;"])
            .joined(separator: "\n") + "\n"
    }

    // MARK: etcd

    /// Command-line arguments of `/usr/bin/etcd` (single member, v3 API, loopback only).
    static func etcdArguments(_ configuration: SandboxConfiguration) -> [String] {
        let etcd = configuration.etcd
        return [
            "--name", etcd.name,
            "--data-dir", (etcd.dataDir as NSString).appendingPathComponent("data"),
            "--listen-client-urls", etcd.clientURL,
            "--advertise-client-urls", etcd.clientURL,
            "--listen-peer-urls", etcd.peerURL,
            "--initial-advertise-peer-urls", etcd.peerURL,
            "--initial-cluster", "\(etcd.name)=\(etcd.peerURL)",
            "--initial-cluster-token", "pgha-sandbox",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "100",
            "--election-timeout", "1000",
            "--quota-backend-bytes", String(256 * 1024 * 1024),
            "--log-level", "warn",
            "--logger", "zap",
        ]
    }

    // MARK: Patroni

    /// The member's own file beside the rendered patroni.yml in its `conf.d/` (Patroni merges the
    /// files of a configuration directory in name order): its name, addresses, data directory,
    /// socket directory, password file and the passwords — everything an operator gives each
    /// member, nothing the playbook decides (TLS is the playbook's `target.member_tls`; with
    /// `--tls` the sandbox made the certificate it can name, tls/ha.crt). Mode 0600.
    static func targetMemberYAML(
        _ configuration: SandboxConfiguration, member: SandboxConfiguration.Member, passwords: Passwords
    ) -> String {
        let q = yamlQuoted
        var yaml: [String] = [
            "# Generated by `pgha sandbox start-cluster`: this member's own values, merged over 00-patroni.yml",
            "# (the config stage's patroni.yml, copied byte for byte). Holds passwords: mode 0600.",
            "name: \(q(member.name))",
            "log:",
            "  level: INFO",
        ]
        yaml += restAPILines(configuration, member: member, passwords: passwords)
        yaml += ["postgresql:"] + postgresqlLocationLines(configuration, member: member) + [
            "  authentication:",
            "    superuser:",
            "      password: \(q(passwords.superuser))",
            "    replication:",
            "      password: \(q(passwords.replication))",
            "  parameters:",
            "    unix_socket_directories: \(q(member.socketDir))",
        ]
        return yaml.joined(separator: "\n") + "\n"
    }

    /// The REST API's addresses and credentials, the same in both of a member's files.
    private static func restAPILines(
        _ configuration: SandboxConfiguration, member: SandboxConfiguration.Member, passwords: Passwords
    ) -> [String] {
        let q = yamlQuoted
        return [
            "restapi:",
            "  listen: \(q("\(member.host):\(member.restPort)"))",
            "  connect_address: \(q("\(member.host):\(member.restPort)"))",
            "  authentication:",
            "    username: \(q(configuration.users.restAPI))",
            "    password: \(q(passwords.restAPI))",
        ]
    }

    /// Where a member's PostgreSQL listens and lives (under `postgresql:`).
    private static func postgresqlLocationLines(_ configuration: SandboxConfiguration, member: SandboxConfiguration.Member) -> [String] {
        let q = yamlQuoted
        return [
            "  listen: \(q("\(member.host):\(member.pgPort)"))",
            "  connect_address: \(q("\(member.host):\(member.pgPort)"))",
            "  data_dir: \(q(member.dataDir))",
            "  bin_dir: \(q(configuration.postgresBinDir))",
            "  pgpass: \(q((member.dir as NSString).appendingPathComponent("pgpass")))",
        ]
    }

    /// `patroni.yml` of one member. It embeds passwords (Patroni has no password-file option), so
    /// the file is written mode 0600, owned by `postgres`.
    static func patroniYAML(
        _ configuration: SandboxConfiguration, member: SandboxConfiguration.Member, passwords: Passwords
    ) -> String {
        let users = configuration.users
        let q = yamlQuoted
        var yaml: [String] = [
            "# Generated by `pgha sandbox up`. Holds passwords: mode 0600.",
            "scope: \(q(configuration.cluster.scope))",
            "namespace: '/service/'",
            "name: \(q(member.name))",
            "",
            "log:",
            "  level: INFO",
            "",
        ]
        yaml += restAPILines(configuration, member: member, passwords: passwords)
        if let tls = configuration.tls, let pair = tls.serverCertificates[member.name] {
            yaml += [
                "  certfile: \(q(pair.certificate))",
                "  keyfile: \(q(pair.key))",
                "  cafile: \(q(tls.caCertificate))",
                "",
                "ctl:",
                "  cacert: \(q(tls.caCertificate))",
                "  certfile: \(q(tls.client.certificate))",
                "  keyfile: \(q(tls.client.key))",
            ]
        }
        yaml += [
            "",
            "etcd3:",
            "  hosts: \(q("\(configuration.etcd.host):\(configuration.etcd.clientPort)"))",
            "",
            "bootstrap:",
            "  dcs:",
            "    ttl: 20",
            "    loop_wait: 1",
            "    retry_timeout: 5",
            "    maximum_lag_on_failover: 1048576",
            "    postgresql:",
            "      use_pg_rewind: true",
            "      use_slots: true",
            "      parameters:",
            "        wal_level: logical",
            "        wal_log_hints: 'on'",
            "        hot_standby: 'on'",
            "        max_wal_senders: 10",
            "        max_replication_slots: 10",
            "        max_connections: 100",
            "        shared_buffers: 32MB",
            "        password_encryption: scram-sha-256",
            "  initdb:",
            "    - encoding: UTF8",
            "    - locale: C.UTF-8",
            "    - data-checksums",
            "",
        ]
        yaml += ["postgresql:"] + postgresqlLocationLines(configuration, member: member)
        yaml += [
            "  use_unix_socket: true",
            "  basebackup:",
            "    - checkpoint: 'fast'",
            "  authentication:",
            "    superuser:",
            "      username: \(q(users.superuser))",
            "      password: \(q(passwords.superuser))",
            "    replication:",
            "      username: \(q(users.replication))",
            "      password: \(q(passwords.replication))",
            "    rewind:",
            "      username: \(q(users.rewind))",
            "      password: \(q(passwords.rewind))",
            "  pg_hba:",
        ]
        yaml += hbaRules(configuration).map { "    - \($0)" }
        yaml += [
            "  parameters:",
            "    unix_socket_directories: \(q(member.socketDir))",
        ]
        if let tls = configuration.tls, let pair = tls.serverCertificates[member.name] {
            yaml += [
                "    ssl: 'on'",
                "    ssl_cert_file: \(q(pair.certificate))",
                "    ssl_key_file: \(q(pair.key))",
                "    ssl_ca_file: \(q(tls.caCertificate))",
            ]
        }
        yaml += [
            "",
            "tags:",
            "  nofailover: false",
            "  noloadbalance: false",
            "  clonefrom: false",
            "  nosync: false",
        ]
        return yaml.joined(separator: "\n") + "\n"
    }
}
