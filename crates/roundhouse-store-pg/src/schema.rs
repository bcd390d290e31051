//! The database schema and its versioned migrations.
//!
//! Everything lives in the PostgreSQL schema `roundhouse`, so the store can share a database
//! with other things. `roundhouse.schema_migrations` has one row per applied migration; the
//! highest `version` is the schema's version. Migrations run on first use, in one transaction
//! holding a transaction-level advisory lock, so two processes starting at once do not race:
//! the second waits and then finds nothing left to do. A database whose version is higher
//! than this build knows is refused ([`roundhouse_store::StoreError::Schema`]); it was written
//! by a newer roundhouse.

/// `roundhouse.schema_migrations` itself (created, if missing, under the migration lock).
pub(crate) const BOOTSTRAP: &str = "
CREATE SCHEMA IF NOT EXISTS roundhouse;
CREATE TABLE IF NOT EXISTS roundhouse.schema_migrations (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
";

/// The advisory lock key migrations hold (`pg_advisory_xact_lock(bigint)`): "rh-schem".
pub(crate) const MIGRATION_LOCK: i64 = 0x7268_2d73_6368_656d;

/// One migration: its version, what it does, and its SQL.
pub(crate) struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Never edit one that was released: add the next.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "node records, events, fetch journal",
        sql: r#"
-- One row per MAC: the NodeRecord as JSON, plus the columns queries need. MACs are the
-- colon form, lower case, so "C" order is the MAC order.
CREATE TABLE roundhouse.nodes (
    mac           text COLLATE "C" PRIMARY KEY,
    record        jsonb NOT NULL,
    version       bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- Store-wide event sequence numbers: increasing, never reused.
CREATE SEQUENCE roundhouse.event_seq AS bigint;

-- Each node's history. Append-only: a trigger refuses UPDATE and DELETE.
CREATE TABLE roundhouse.events (
    seq   bigint PRIMARY KEY,
    mac   text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL,
    kind  text NOT NULL,
    event jsonb NOT NULL
);
CREATE INDEX events_by_mac ON roundhouse.events (mac, seq);
CREATE FUNCTION roundhouse.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'roundhouse.% is append-only', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON roundhouse.events
    FOR EACH ROW EXECUTE FUNCTION roundhouse.refuse_change();

-- The boot server's fetch journal; id orders fetches with the same timestamp.
CREATE TABLE roundhouse.fetches (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mac   text COLLATE "C" NOT NULL,
    at_ms bigint NOT NULL,
    body  jsonb NOT NULL
);
CREATE INDEX fetches_by_mac ON roundhouse.fetches (mac, at_ms, id);

-- The latest fetch per MAC (by time, then insertion), so status need not scan the journal.
CREATE TABLE roundhouse.last_fetch (
    mac   text COLLATE "C" PRIMARY KEY,
    at_ms bigint NOT NULL,
    body  jsonb NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        description: "apply lock holder",
        sql: r#"
-- Who holds the apply lock (a session-level advisory lock): one row, rewritten by each
-- holder; a row whose backend no longer holds the lock is stale and ignored.
CREATE TABLE roundhouse.apply_lock (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    backend_pid integer NOT NULL,
    holder      jsonb NOT NULL
);
"#,
    },
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = 2;
