//! roundhouse's state store on PostgreSQL: the [`StateStore`] contract (node records, intent
//! journal, events, fetch journal, export/import) in a database several operators and boot
//! servers can share.
//!
//! # API
//!
//! - [`PgConfig`]: a `postgres://user@host:port/db?sslmode=verify-full&sslrootcert=…` URL and
//!   where the password comes from; it never prints the password.
//! - [`PgStore::open`]: connects, applies the schema migrations the database lacks (see
//!   [`SCHEMA_VERSION`]), and returns a store.
//! - [`PgStore::open_existing`]: for reading commands; creates and migrates nothing, refuses a
//!   database without the schema or at an older version ("run `roundhouse state migrate`").
//! - [`PgStore::migrate`]: `roundhouse state migrate`.
//! - [`PgStore::try_lock`]: the apply lock, a session advisory lock naming its holder.
//! - [`StateLocation`]: the cluster's backend (embedded file or PostgreSQL), opened the same
//!   way by every command; [`WriteSession`] holds the apply lock while a command writes.
//! - [`testing::TestServer`]: a throwaway PostgreSQL for tests.
//!
//! # Design
//!
//! The trait is synchronous and its callers may be inside a tokio runtime (apply's executor
//! calls it from async tasks through `block_in_place`, or directly on a current-thread
//! runtime), where blocking on a runtime panics. So the store owns a small runtime of its own
//! (one worker thread, `roundhouse-pg`): each call spawns its work there and waits on a plain
//! channel, which is legal from any thread, async or not. Dropping the store anywhere is fine
//! too (the runtime is shut down in the background).
//!
//! Every write is one transaction. `apply_batch` locks the rows of the MACs it touches
//! (`SELECT … FOR UPDATE`, in MAC order; a missing record's row is inserted first so that it
//! can be locked), runs the lifecycle's guarded transitions ([`apply_change`], shared with
//! every backend), and writes records and events together: a refused change rolls the whole
//! batch back. Event numbers come from a sequence, so they increase store-wide across
//! processes. A deadlock or serialisation failure is retried.
//!
//! Once open, the store rides out a restart of the server: a call whose connection breaks is
//! run again on a new one, with backoff, for up to [`PgConfig::reconnect_wait`]; a write whose
//! connection broke after `COMMIT` was sent is read back (record versions, event numbers) and
//! run again only if it did not commit (see `resilience.rs` and docs/state.md).

#![deny(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bootdata::Mac;
use roundhouse_plan::{NodeState, Timestamp};
use roundhouse_store::{
    Change, EXPORT_FORMAT, Event, EventQuery, Export, FetchRecord, NodeRecord, StateStore,
    StoreError, apply_change, note_event,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_postgres::{Client, IsolationLevel, Transaction};

mod config;
mod location;
mod lock;
mod resilience;
mod schema;
pub mod testing;

pub use config::{
    ConfigError, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RECONNECT_WAIT, Host, PasswordSource, PgConfig,
    SslMode,
};
pub use location::{StateLocation, StateLock, WriteSession};
pub use lock::{PgLock, PgLockError};
use resilience::{COMMITTING, Verdict, Waiter, verdict};
pub use schema::SCHEMA_VERSION;

/// The [`StateStore`] on PostgreSQL.
pub struct PgStore {
    inner: Arc<Inner>,
    runtime: Arc<Rt>,
}

/// The store's runtime, shared with the apply locks it hands out (their connections live on
/// it). Shut down in the background when the last owner goes: blocking there would panic
/// inside another runtime.
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    /// The store's name in errors: the URL without a password.
    label: String,
    endpoint: String,
    user: String,
    client_config: tokio_postgres::Config,
    password_source: PasswordSource,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    connect_timeout: Duration,
    /// How long a call waits for the server to come back; see [`Inner::wait`].
    reconnect_wait: Duration,
    /// Set once the store is open: before that, a database that cannot be reached fails at
    /// once (a command starting against a database that is down stops right away).
    armed: AtomicBool,
    idle: std::sync::Mutex<Vec<Client>>,
    slots: Semaphore,
    /// The apply lock's session, while this store holds it (see lock.rs).
    held: std::sync::Mutex<Option<lock::Held>>,
    /// One write at a time takes a lost apply lock again.
    retake: tokio::sync::Mutex<()>,
}

/// How often a transaction that lost a deadlock or serialisation race is tried again.
const RETRIES: usize = 8;

impl PgStore {
    /// Connects to the database and brings its schema up to [`SCHEMA_VERSION`] (creating it
    /// on first use). A database written by a newer roundhouse is [`StoreError::Schema`]; an
    /// unreachable one is [`StoreError::Backend`] naming `host:port`, after at most the
    /// connect timeout.
    pub fn open(config: &PgConfig) -> Result<PgStore, StoreError> {
        let store = PgStore::connect(config)?;
        store.run(|inner| async move { inner.migrate().await.map(|_| ()) })?;
        store.inner.armed.store(true, Ordering::Relaxed);
        Ok(store)
    }

    /// Connects to a database roundhouse already set up, for commands that only read
    /// (`plan`, `status`, `state export`): creates and migrates nothing. A database without
    /// the schema, or at an older version, is [`StoreError::Schema`] (its `path` says to run
    /// `roundhouse state migrate`); a newer one is refused as by [`PgStore::open`].
    pub fn open_existing(config: &PgConfig) -> Result<PgStore, StoreError> {
        let store = PgStore::connect(config)?;
        let found = store.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(store.inner.too_new(found));
        }
        if found < SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path: format!(
                    "{} ({}; run `roundhouse state migrate`)",
                    store.inner.label,
                    if found == 0 {
                        "no roundhouse schema yet"
                    } else {
                        "an older roundhouse's schema"
                    }
                )
                .into(),
                found: u64::try_from(found).unwrap_or(0),
                supported: SCHEMA_VERSION as u64,
            });
        }
        store.inner.armed.store(true, Ordering::Relaxed);
        Ok(store)
    }

    /// Brings the database's schema to [`SCHEMA_VERSION`] (`roundhouse state migrate`):
    /// returns the version it was at (0: none) and the version it is at now.
    pub fn migrate(config: &PgConfig) -> Result<(i32, i32), StoreError> {
        let store = PgStore::connect(config)?;
        let before = store.run(|inner| async move { inner.migrate().await })?;
        Ok((before, store.schema_version()?))
    }

    fn connect(config: &PgConfig) -> Result<PgStore, StoreError> {
        let label = config.to_string();
        let (password, password_source) =
            config
                .resolve_password()
                .map_err(|reason| StoreError::Backend {
                    store: label.clone(),
                    what: "cannot find the password".into(),
                    source: reason.into(),
                })?;
        let tls = config.tls().map_err(|reason| StoreError::Backend {
            store: label.clone(),
            what: "TLS setup".into(),
            source: reason.into(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("roundhouse-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend {
                store: label.clone(),
                what: "starting the client runtime".into(),
                source: Box::new(e),
            })?;
        let inner = Arc::new(Inner {
            endpoint: config.endpoint(),
            user: config.user().to_string(),
            client_config: config.client_config(password.as_deref()),
            password_source,
            tls,
            connect_timeout: config.connect_timeout(),
            reconnect_wait: config.reconnect_wait(),
            armed: AtomicBool::new(false),
            idle: std::sync::Mutex::new(Vec::new()),
            slots: Semaphore::new(config.pool_size()),
            held: std::sync::Mutex::new(None),
            retake: tokio::sync::Mutex::new(()),
            label,
        });
        Ok(PgStore {
            inner,
            runtime: Arc::new(Rt(Some(runtime))),
        })
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i32, StoreError> {
        self.run(|inner| async move {
            let conn = inner.get().await?;
            inner.current_version(&conn).await.map(|v| v.unwrap_or(0))
        })
    }

    /// The store's name: its URL without the password.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Runs `f` on the store's runtime and waits for its result. Safe from any thread,
    /// including a tokio worker or a current-thread runtime.
    fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(Arc::clone(&self.inner));
        let Some(runtime) = &self.runtime.0 else {
            unreachable!("the runtime lives as long as the store")
        };
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(self.inner.backend(
                "the PostgreSQL client task stopped",
                std::io::Error::other("task panicked or was cancelled"),
            ))
        })
    }
}

/// A pooled connection; back to the pool on drop unless it broke.
struct Conn<'a> {
    client: Option<Client>,
    inner: &'a Inner,
    _slot: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a live connection")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a live connection")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            lock(&self.inner.idle).push(c);
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(t: Timestamp) -> i64 {
    t.unix_millis()
}

fn json<T: Serialize>(value: &T) -> String {
    // This crate's plain data types only: encoding cannot fail.
    serde_json::to_string(value).expect("encoding a store record as JSON")
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The client's error, displayed with what the server said (`tokio_postgres::Error` alone
/// shows only "db error") or with its causes (the I/O or TLS error); the client's error is
/// its source.
#[derive(Debug)]
pub struct PgError(pub tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(
                f,
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            )?;
            if let Some(d) = db.detail() {
                write!(f, "; {d}")?;
            }
            if let Some(h) = db.hint() {
                write!(f, "; hint: {h}")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(&self.0);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Runs a call (`$body`, using `$client`, a pooled connection) until it succeeds: again at
/// once if it lost a deadlock or serialisation race, again on a new connection (with backoff,
/// within the reconnect wait) if the connection broke before `COMMIT` was sent. If it broke
/// after, `$check` (using `$conn`, a new connection) reads back whether the call committed:
/// `Some(result)` if it did, `None` to run it again. (A macro: an async closure borrowing the
/// connection is not `Send` for every lifetime, which the runtime needs.)
macro_rules! resilient {
    ($inner:expr, |$client:ident| $body:expr) => {
        resilient!($inner, |$client| $body, check: |_conn| async { Ok(None) })
    };
    ($inner:expr, |$client:ident| $body:expr, check: |$conn:ident| $check:expr) => {{
        let inner: &Inner = $inner;
        let mut waiter = Waiter::new(inner.wait());
        let mut races = 0usize;
        'call: loop {
            let result = async {
                let mut conn = inner.get().await?;
                let $client: &mut Client = &mut conn;
                $body.await
            }
            .await;
            let e = match result {
                Ok(v) => break 'call Ok(v),
                Err(e) => e,
            };
            match verdict(&e) {
                Verdict::Race if races + 1 < RETRIES => {
                    races += 1;
                    tokio::time::sleep(Duration::from_millis(2 << races)).await;
                }
                Verdict::Reconnect => {
                    if !waiter.pause().await {
                        break 'call Err(waiter.gave_up(e));
                    }
                }
                Verdict::Ambiguous => loop {
                    let checked = async {
                        let conn = inner.get().await?;
                        let $conn: &Client = &conn;
                        $check.await
                    }
                    .await;
                    match checked {
                        Ok(Some(v)) => break 'call Ok(v),
                        // Not committed: run it again.
                        Ok(None) => break,
                        Err(e) if matches!(verdict(&e), Verdict::Reconnect | Verdict::Ambiguous) => {
                            if !waiter.pause().await {
                                break 'call Err(waiter.gave_up(e));
                            }
                        }
                        Err(e) => break 'call Err(e),
                    }
                },
                _ => break 'call Err(e),
            }
        }
    }};
}

/// What a write transaction wrote, noted just before it sends `COMMIT`: what the store reads
/// back if the connection breaks after that.
struct BatchMemo {
    /// Per MAC: its record's version before the batch and after it.
    versions: Vec<(String, i64, i64)>,
    /// The numbers of the batch's events.
    seqs: Vec<i64>,
    /// What the call returns.
    out: Vec<NodeRecord>,
}

impl Inner {
    /// How long a call waits for the server to come back: none until the store is open.
    fn wait(&self) -> Duration {
        if self.armed.load(Ordering::Relaxed) {
            self.reconnect_wait
        } else {
            Duration::ZERO
        }
    }

    fn backend(
        &self,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Backend {
            store: self.label.clone(),
            what: what.into(),
            source: source.into(),
        }
    }

    /// A closure for `map_err` on a query.
    fn err<'a>(&'a self, what: &'a str) -> impl Fn(tokio_postgres::Error) -> StoreError + 'a {
        move |e| self.backend(what, PgError(e))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        text: &str,
        what: impl FnOnce() -> String,
    ) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|source| StoreError::Decode {
            path: self.label.clone().into(),
            what: what(),
            source,
        })
    }

    async fn get(&self) -> Result<Conn<'_>, StoreError> {
        let slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| self.backend("connection pool closed", e))?;
        let idle = {
            let mut idle = lock(&self.idle);
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Conn {
            client: Some(client),
            inner: self,
            _slot: slot,
        })
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        let what = || {
            format!(
                "cannot connect to PostgreSQL at {} as user {} ({})",
                self.endpoint, self.user, self.password_source
            )
        };
        let attempt = self.client_config.connect(self.tls.clone());
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Err(_) => Err(self.backend(
                what(),
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {} s (connect timeout)",
                        self.connect_timeout.as_secs_f64()
                    ),
                ),
            )),
            Ok(Err(e)) => Err(self.backend(what(), PgError(e))),
            Ok(Ok((client, connection))) => {
                tokio::spawn(async move {
                    // Ends when the client is dropped or the server goes away; the client
                    // then reports itself closed and is not reused.
                    let _ = connection.await;
                });
                Ok(client)
            }
        }
    }

    async fn current_version(&self, conn: &Client) -> Result<Option<i32>, StoreError> {
        let row = conn
            .query_one(
                "SELECT to_regclass('roundhouse.schema_migrations') IS NOT NULL",
                &[],
            )
            .await
            .map_err(self.err("reading the schema version"))?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        let row = conn
            .query_one("SELECT max(version) FROM roundhouse.schema_migrations", &[])
            .await
            .map_err(self.err("reading the schema version"))?;
        Ok(row.get(0))
    }

    fn too_new(&self, found: i32) -> StoreError {
        StoreError::Schema {
            path: format!("{} (written by a newer roundhouse)", self.label).into(),
            found: u64::try_from(found).unwrap_or(0),
            supported: SCHEMA_VERSION as u64,
        }
    }

    /// Applies the missing migrations; returns the version found first (0: none).
    async fn migrate(&self) -> Result<i32, StoreError> {
        let mut conn = self.get().await?;
        match self.current_version(&conn).await? {
            Some(v) if v == SCHEMA_VERSION => return Ok(v),
            Some(v) if v > SCHEMA_VERSION => return Err(self.too_new(v)),
            _ => {}
        }
        let what = "migrating the schema";
        let tx = conn.transaction().await.map_err(self.err(what))?;
        tx.batch_execute("SET LOCAL lock_timeout = '60s'")
            .await
            .map_err(self.err(what))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::MIGRATION_LOCK],
        )
        .await
        .map_err(self.err("waiting for the schema migration lock"))?;
        tx.batch_execute(schema::BOOTSTRAP)
            .await
            .map_err(self.err(what))?;
        let found: Option<i32> = tx
            .query_one("SELECT max(version) FROM roundhouse.schema_migrations", &[])
            .await
            .map_err(self.err(what))?
            .get(0);
        let found = found.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(self.too_new(found));
        }
        for m in schema::MIGRATIONS.iter().filter(|m| m.version > found) {
            let what = format!("migration {} ({})", m.version, m.description);
            tx.batch_execute(m.sql)
                .await
                .map_err(|e| self.backend(what.clone(), PgError(e)))?;
            tx.execute(
                "INSERT INTO roundhouse.schema_migrations (version, description) VALUES ($1, $2)",
                &[&m.version, &m.description],
            )
            .await
            .map_err(|e| self.backend(what.clone(), PgError(e)))?;
        }
        tx.commit().await.map_err(self.err(what))?;
        Ok(found)
    }

    /// Locks the rows of `macs` (sorted, distinct) for this transaction, inserting a
    /// placeholder row for each MAC without a record (it is overwritten before commit, or
    /// rolled back). Returns the current records; missing ones are empty.
    async fn lock_nodes(
        &self,
        tx: &Transaction<'_>,
        macs: &[Mac],
        at: Timestamp,
    ) -> Result<HashMap<Mac, NodeRecord>, StoreError> {
        let what = "locking node records";
        let mut records = HashMap::with_capacity(macs.len());
        let mut want: Vec<String> = macs.iter().map(Mac::to_string).collect();
        for _ in 0..RETRIES {
            let rows = tx
                .query(
                    "SELECT mac, record::text FROM roundhouse.nodes WHERE mac = ANY($1::text[]) \
                     ORDER BY mac FOR UPDATE",
                    &[&want],
                )
                .await
                .map_err(self.err(what))?;
            for row in rows {
                let key: &str = row.get(0);
                let record: NodeRecord =
                    self.decode(row.get(1), || format!("the record of {key}"))?;
                records.insert(record.mac, record);
            }
            let missing: Vec<String> = macs
                .iter()
                .filter(|m| !records.contains_key(m))
                .map(Mac::to_string)
                .collect();
            if missing.is_empty() {
                return Ok(records);
            }
            let inserted = tx
                .query(
                    "INSERT INTO roundhouse.nodes (mac, record, version, updated_at_ms) \
                     SELECT m, '{}'::jsonb, 0, 0 FROM unnest($1::text[]) AS m \
                     ON CONFLICT (mac) DO NOTHING RETURNING mac",
                    &[&missing],
                )
                .await
                .map_err(self.err(what))?;
            for row in inserted {
                let key: &str = row.get(0);
                let mac = Mac::parse(key)
                    .map_err(|e| self.backend(format!("record key {key:?}"), e.to_string()))?;
                records.insert(mac, NodeRecord::empty(mac, at));
            }
            // A MAC neither found nor inserted was created by a concurrent transaction that
            // has committed since: read and lock it on the next round.
            want = macs
                .iter()
                .filter(|m| !records.contains_key(m))
                .map(Mac::to_string)
                .collect();
            if want.is_empty() {
                return Ok(records);
            }
        }
        Err(self.backend(what, "records kept being created concurrently"))
    }

    /// Assigns store-wide sequence numbers to `events` (in order) and inserts them.
    async fn insert_events(
        &self,
        tx: &Transaction<'_>,
        events: &mut [Event],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let what = "writing events";
        let n = i32::try_from(events.len()).unwrap_or(i32::MAX);
        let mut seqs: Vec<i64> = tx
            .query(
                "SELECT nextval('roundhouse.event_seq') FROM generate_series(1, $1::int4)",
                &[&n],
            )
            .await
            .map_err(self.err(what))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        seqs.sort_unstable();
        for (e, s) in events.iter_mut().zip(&seqs) {
            e.seq = u64::try_from(*s).unwrap_or(0);
        }
        self.write_events(tx, events).await
    }

    /// Inserts events that already have their sequence numbers.
    async fn write_events(&self, tx: &Transaction<'_>, events: &[Event]) -> Result<(), StoreError> {
        let seqs: Vec<i64> = events
            .iter()
            .map(|e| i64::try_from(e.seq).unwrap_or(i64::MAX))
            .collect();
        let macs: Vec<String> = events.iter().map(|e| e.mac.to_string()).collect();
        let ats: Vec<i64> = events.iter().map(|e| ms(e.at)).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let bodies: Vec<String> = events.iter().map(json).collect();
        tx.execute(
            "INSERT INTO roundhouse.events (seq, mac, at_ms, kind, event) \
             SELECT s, m, a, k, e::jsonb \
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[]) AS u(s, m, a, k, e)",
            &[&seqs, &macs, &ats, &kinds, &bodies],
        )
        .await
        .map_err(self.err("writing events"))?;
        Ok(())
    }

    async fn write_nodes(
        &self,
        tx: &Transaction<'_>,
        records: &[&NodeRecord],
        insert: bool,
    ) -> Result<(), StoreError> {
        let macs: Vec<String> = records.iter().map(|r| r.mac.to_string()).collect();
        let bodies: Vec<String> = records.iter().map(json).collect();
        let versions: Vec<i64> = records
            .iter()
            .map(|r| i64::try_from(r.version).unwrap_or(i64::MAX))
            .collect();
        let ats: Vec<i64> = records.iter().map(|r| ms(r.updated_at)).collect();
        let sql = if insert {
            "INSERT INTO roundhouse.nodes (mac, record, version, updated_at_ms) \
             SELECT m, r::jsonb, v, t FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) AS u(m, r, v, t)"
        } else {
            "UPDATE roundhouse.nodes AS n SET record = u.r::jsonb, version = u.v, updated_at_ms = u.t \
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) AS u(m, r, v, t) \
             WHERE n.mac = u.m"
        };
        tx.execute(sql, &[&macs, &bodies, &versions, &ats])
            .await
            .map_err(self.err("writing node records"))?;
        Ok(())
    }

    async fn apply_batch(
        &self,
        client: &mut Client,
        changes: Vec<(Mac, Change)>,
        at: Timestamp,
        memo: &mut Option<BatchMemo>,
    ) -> Result<Vec<NodeRecord>, StoreError> {
        self.ensure_lock().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("starting a transaction"))?;
        let mut macs: Vec<Mac> = changes.iter().map(|(m, _)| *m).collect();
        macs.sort();
        macs.dedup();
        let mut current = self.lock_nodes(&tx, &macs, at).await?;
        let before: HashMap<Mac, u64> = current.iter().map(|(m, r)| (*m, r.version)).collect();
        let mut out = Vec::with_capacity(changes.len());
        let mut events = Vec::with_capacity(changes.len());
        for (mac, change) in changes {
            let record = current
                .entry(mac)
                .or_insert_with(|| NodeRecord::empty(mac, at));
            // Refused: returning drops the transaction, which rolls everything back.
            let event = apply_change(record, change, at)
                .map_err(|source| StoreError::Transition { mac, source })?;
            events.push(event);
            out.push(record.clone());
        }
        self.insert_events(&tx, &mut events).await?;
        let touched: Vec<&NodeRecord> = macs.iter().filter_map(|m| current.get(m)).collect();
        self.write_nodes(&tx, &touched, false).await?;
        let version = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        *memo = Some(BatchMemo {
            versions: touched
                .iter()
                .map(|r| {
                    let was = before.get(&r.mac).copied().unwrap_or(0);
                    (r.mac.to_string(), version(was), version(r.version))
                })
                .collect(),
            seqs: events.iter().map(|e| version(e.seq)).collect(),
            out: out.clone(),
        });
        tx.commit().await.map_err(self.err(COMMITTING))?;
        Ok(out)
    }

    async fn note(
        &self,
        client: &mut Client,
        mac: Mac,
        message: &str,
        at: Timestamp,
        memo: &mut Option<Event>,
    ) -> Result<Event, StoreError> {
        self.ensure_lock().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("starting a transaction"))?;
        let state = match tx
            .query_opt(
                "SELECT record::text FROM roundhouse.nodes WHERE mac = $1",
                &[&mac.to_string()],
            )
            .await
            .map_err(self.err("reading a node record"))?
        {
            Some(row) => {
                self.decode::<NodeRecord>(row.get(0), || format!("the record of {mac}"))?
                    .state
            }
            None => NodeState::Unknown,
        };
        let mut events = [note_event(mac, message, &state, at)];
        self.insert_events(&tx, &mut events).await?;
        *memo = Some(events[0].clone());
        tx.commit().await.map_err(self.err(COMMITTING))?;
        let [event] = events;
        Ok(event)
    }

    fn read_events(&self, rows: Vec<tokio_postgres::Row>) -> Result<Vec<Event>, StoreError> {
        rows.iter()
            .map(|row| {
                let seq: i64 = row.get(0);
                let mut e: Event = self.decode(row.get(1), || format!("event {seq}"))?;
                e.seq = u64::try_from(seq).unwrap_or(0);
                Ok(e)
            })
            .collect()
    }

    async fn export(&self, client: &mut Client, at: Timestamp) -> Result<Export, StoreError> {
        let what = "exporting";
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.err(what))?;
        let mut nodes: Vec<NodeRecord> = Vec::new();
        for row in tx
            .query(
                "SELECT mac, record::text FROM roundhouse.nodes ORDER BY mac",
                &[],
            )
            .await
            .map_err(self.err(what))?
        {
            let key: &str = row.get(0);
            nodes.push(self.decode(row.get(1), || format!("the record of {key}"))?);
        }
        nodes.sort_by_key(|r| r.mac);
        let rows = tx
            .query(
                "SELECT seq, event::text FROM roundhouse.events ORDER BY seq",
                &[],
            )
            .await
            .map_err(self.err(what))?;
        let events = self.read_events(rows)?;
        let mut fetches = Vec::new();
        for row in tx
            .query(
                "SELECT body::text FROM roundhouse.fetches ORDER BY at_ms, id",
                &[],
            )
            .await
            .map_err(self.err(what))?
        {
            fetches.push(self.decode(row.get(0), || "a fetch".to_string())?);
        }
        tx.commit().await.map_err(self.err(what))?;
        Ok(Export {
            format: EXPORT_FORMAT.to_string(),
            exported_at: at,
            nodes,
            events,
            fetches,
        })
    }

    async fn import(&self, client: &mut Client, export: &Export) -> Result<(), StoreError> {
        let what = "importing";
        self.ensure_lock().await?;
        let tx = client.transaction().await.map_err(self.err(what))?;
        // Writers wait until the import is committed, so "empty" stays true meanwhile.
        tx.batch_execute(
            "LOCK TABLE roundhouse.nodes, roundhouse.events, roundhouse.fetches, \
             roundhouse.last_fetch IN SHARE ROW EXCLUSIVE MODE",
        )
        .await
        .map_err(self.err(what))?;
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM roundhouse.nodes), (SELECT count(*) FROM roundhouse.events)",
                &[],
            )
            .await
            .map_err(self.err(what))?;
        let (nodes, events): (i64, i64) = (row.get(0), row.get(1));
        if nodes > 0 || events > 0 {
            return Err(StoreError::NotEmpty {
                path: self.label.clone().into(),
                nodes: usize::try_from(nodes).unwrap_or(usize::MAX),
                events: usize::try_from(events).unwrap_or(usize::MAX),
            });
        }
        let records: Vec<&NodeRecord> = export.nodes.iter().collect();
        self.write_nodes(&tx, &records, true).await?;
        self.write_events(&tx, &export.events).await?;
        if export.max_seq() > 0 {
            let max = i64::try_from(export.max_seq()).unwrap_or(i64::MAX);
            tx.execute(
                "SELECT setval('roundhouse.event_seq', GREATEST($1::int8, \
                 (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM roundhouse.event_seq)))",
                &[&max],
            )
            .await
            .map_err(self.err(what))?;
        }
        let macs: Vec<String> = export.fetches.iter().map(|f| f.mac.to_string()).collect();
        let ats: Vec<i64> = export.fetches.iter().map(|f| ms(f.at)).collect();
        let bodies: Vec<String> = export.fetches.iter().map(json).collect();
        tx.execute(
            "INSERT INTO roundhouse.fetches (mac, at_ms, body) \
             SELECT m, a, f::jsonb FROM unnest($1::text[], $2::int8[], $3::text[]) \
             WITH ORDINALITY AS u(m, a, f, o) ORDER BY o",
            &[&macs, &ats, &bodies],
        )
        .await
        .map_err(self.err(what))?;
        // The latest per MAC by time, then by position: what record_fetch keeps.
        let mut latest: BTreeMap<Mac, &FetchRecord> = BTreeMap::new();
        for f in &export.fetches {
            if latest.get(&f.mac).is_none_or(|l| l.at <= f.at) {
                latest.insert(f.mac, f);
            }
        }
        let macs: Vec<String> = latest.keys().map(Mac::to_string).collect();
        let ats: Vec<i64> = latest.values().map(|f| ms(f.at)).collect();
        let bodies: Vec<String> = latest.values().map(json).collect();
        tx.execute(
            "INSERT INTO roundhouse.last_fetch (mac, at_ms, body) \
             SELECT m, a, f::jsonb FROM unnest($1::text[], $2::int8[], $3::text[]) AS u(m, a, f)",
            &[&macs, &ats, &bodies],
        )
        .await
        .map_err(self.err(what))?;
        tx.commit().await.map_err(self.err(COMMITTING))
    }

    /// After a broken `COMMIT` of `apply_batch`: `Some` if it committed (its events exist and
    /// its records are at least at the versions it wrote), `None` if it did not (no event,
    /// every record at its version before), an error if the database says neither.
    async fn batch_committed(
        &self,
        client: &Client,
        memo: Option<&BatchMemo>,
    ) -> Result<Option<Vec<NodeRecord>>, StoreError> {
        let Some(memo) = memo else { return Ok(None) };
        let what = "reading back a write whose commit was cut off";
        let macs: Vec<&str> = memo.versions.iter().map(|(m, _, _)| m.as_str()).collect();
        let found: HashMap<String, i64> = client
            .query(
                "SELECT mac, version FROM roundhouse.nodes WHERE mac = ANY($1::text[])",
                &[&macs],
            )
            .await
            .map_err(self.err(what))?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        let events: i64 = client
            .query_one(
                "SELECT count(*) FROM roundhouse.events WHERE seq = ANY($1::int8[])",
                &[&memo.seqs],
            )
            .await
            .map_err(self.err(what))?
            .get(0);
        let versions: Vec<(i64, i64, i64)> = memo
            .versions
            .iter()
            .map(|(m, was, after)| (*was, *after, found.get(m).copied().unwrap_or(0)))
            .collect();
        match resilience::batch_outcome(events, count(memo.seqs.len()), &versions) {
            resilience::Outcome::Committed => return Ok(Some(memo.out.clone())),
            resilience::Outcome::NotCommitted => return Ok(None),
            resilience::Outcome::Unknown => {}
        }
        Err(self.backend(
            what,
            format!(
                "the connection broke after COMMIT was sent and the database shows only part of \
                 the batch ({events} of {} events found)",
                memo.seqs.len()
            ),
        ))
    }

    /// After a broken `COMMIT` of `note`: `Some` if its event exists.
    async fn note_committed(
        &self,
        client: &Client,
        memo: Option<&Event>,
    ) -> Result<Option<Event>, StoreError> {
        let Some(event) = memo else { return Ok(None) };
        let seq = i64::try_from(event.seq).unwrap_or(i64::MAX);
        let found: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM roundhouse.events WHERE seq = $1)",
                &[&seq],
            )
            .await
            .map_err(self.err("reading back a note whose commit was cut off"))?
            .get(0);
        Ok(found.then(|| event.clone()))
    }
}

impl StateStore for PgStore {
    fn node(&self, mac: &Mac) -> Result<Option<NodeRecord>, StoreError> {
        let mac = *mac;
        self.run(|inner| async move {
            resilient!(&inner, |conn| async {
                let row = conn
                    .query_opt(
                        "SELECT record::text FROM roundhouse.nodes WHERE mac = $1",
                        &[&mac.to_string()],
                    )
                    .await
                    .map_err(inner.err("reading a node record"))?;
                row.map(|r| inner.decode(r.get(0), || format!("the record of {mac}")))
                    .transpose()
            })
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.run(|inner| async move {
            resilient!(&inner, |conn| async {
                let rows = conn
                    .query(
                        "SELECT mac, record::text FROM roundhouse.nodes ORDER BY mac",
                        &[],
                    )
                    .await
                    .map_err(inner.err("reading node records"))?;
                let mut out: Vec<NodeRecord> = rows
                    .iter()
                    .map(|r| {
                        let key: &str = r.get(0);
                        inner.decode(r.get(1), || format!("the record of {key}"))
                    })
                    .collect::<Result<_, _>>()?;
                out.sort_by_key(|r| r.mac);
                Ok(out)
            })
        })
    }

    fn apply_batch(
        &self,
        changes: Vec<(Mac, Change)>,
        at: Timestamp,
    ) -> Result<Vec<NodeRecord>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|inner| async move {
            let mut memo = None;
            resilient!(
                &inner,
                |client| inner.apply_batch(client, changes.clone(), at, &mut memo),
                check: |conn| inner.batch_committed(conn, memo.as_ref())
            )
        })
    }

    fn note(&self, mac: &Mac, message: &str, at: Timestamp) -> Result<Event, StoreError> {
        let (mac, message) = (*mac, message.to_string());
        self.run(|inner| async move {
            let mut memo = None;
            resilient!(
                &inner,
                |client| inner.note(client, mac, &message, at, &mut memo),
                check: |conn| inner.note_committed(conn, memo.as_ref())
            )
        })
    }

    fn events(&self, mac: &Mac, query: EventQuery) -> Result<Vec<Event>, StoreError> {
        let mac = *mac;
        self.run(|inner| async move {
            resilient!(&inner, |conn| async {
                let before = query
                    .before
                    .map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
                let rows = conn
                    .query(
                        "SELECT seq, event::text FROM roundhouse.events \
                     WHERE mac = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                        &[&mac.to_string(), &before, &count(query.limit)],
                    )
                    .await
                    .map_err(inner.err("reading events"))?;
                inner.read_events(rows)
            })
        })
    }

    fn record_fetch(&self, fetch: &FetchRecord) -> Result<(), StoreError> {
        let fetch = fetch.clone();
        self.run(|inner| async move {
            resilient!(&inner, |client| async {
            inner.ensure_lock().await?;
            let tx = client.transaction().await.map_err(inner.err("recording a fetch"))?;
            // One statement: the journal row and the latest-fetch row.
            tx.execute(
                "WITH journal AS (\
                   INSERT INTO roundhouse.fetches (mac, at_ms, body) VALUES ($1, $2, $3::text::jsonb)) \
                 INSERT INTO roundhouse.last_fetch (mac, at_ms, body) VALUES ($1, $2, $3::text::jsonb) \
                 ON CONFLICT (mac) DO UPDATE SET at_ms = EXCLUDED.at_ms, body = EXCLUDED.body \
                 WHERE roundhouse.last_fetch.at_ms <= EXCLUDED.at_ms",
                &[&fetch.mac.to_string(), &ms(fetch.at), &json(&fetch)],
            )
            .await
            .map_err(inner.err("recording a fetch"))?;
            tx.commit().await.map_err(inner.err(COMMITTING))
            }, check: |conn| async {
                // An identical journal row (same MAC, time and body) means it committed.
                let found: bool = conn
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM roundhouse.fetches \
                         WHERE mac = $1 AND at_ms = $2 AND body = $3::text::jsonb)",
                        &[&fetch.mac.to_string(), &ms(fetch.at), &json(&fetch)],
                    )
                    .await
                    .map_err(inner.err("reading back a fetch whose commit was cut off"))?
                    .get(0);
                Ok(found.then_some(()))
            })
        })
    }

    fn last_fetch(&self, mac: &Mac) -> Result<Option<FetchRecord>, StoreError> {
        let mac = *mac;
        self.run(|inner| async move {
            resilient!(&inner, |conn| async {
                let row = conn
                    .query_opt(
                        "SELECT body::text FROM roundhouse.last_fetch WHERE mac = $1",
                        &[&mac.to_string()],
                    )
                    .await
                    .map_err(inner.err("reading the last fetch"))?;
                row.map(|r| inner.decode(r.get(0), || format!("last fetch of {mac}")))
                    .transpose()
            })
        })
    }

    fn last_fetches(&self) -> Result<Vec<FetchRecord>, StoreError> {
        self.run(|inner| async move {
            resilient!(&inner, |conn| async {
                let rows = conn
                    .query(
                        "SELECT mac, body::text FROM roundhouse.last_fetch ORDER BY mac",
                        &[],
                    )
                    .await
                    .map_err(inner.err("reading the last fetches"))?;
                let mut out: Vec<FetchRecord> = rows
                    .iter()
                    .map(|r| {
                        let key: &str = r.get(0);
                        inner.decode(r.get(1), || format!("last fetch of {key}"))
                    })
                    .collect::<Result<_, _>>()?;
                out.sort_by_key(|f| f.mac);
                Ok(out)
            })
        })
    }

    fn fetches_since(&self, mac: &Mac, since: Timestamp) -> Result<Vec<FetchRecord>, StoreError> {
        let mac = *mac;
        self.run(|inner| async move {
            resilient!(&inner, |conn| async {
                let rows = conn
                    .query(
                        "SELECT body::text FROM roundhouse.fetches \
                     WHERE mac = $1 AND at_ms >= $2 ORDER BY at_ms, id",
                        &[&mac.to_string(), &ms(since)],
                    )
                    .await
                    .map_err(inner.err("reading fetches"))?;
                rows.iter()
                    .map(|r| inner.decode(r.get(0), || format!("a fetch of {mac}")))
                    .collect()
            })
        })
    }

    fn export(&self, at: Timestamp) -> Result<Export, StoreError> {
        self.run(|inner| async move { resilient!(&inner, |client| inner.export(client, at)) })
    }

    fn import(&self, export: &Export) -> Result<(), StoreError> {
        let export = export.clone();
        self.run(|inner| async move {
            resilient!(&inner, |client| inner.import(client, &export), check: |conn| async {
                // Committed if the store holds exactly what was imported; not if it is empty.
                let row = conn
                    .query_one(
                        "SELECT (SELECT count(*) FROM roundhouse.nodes), \
                         (SELECT count(*) FROM roundhouse.events)",
                        &[],
                    )
                    .await
                    .map_err(inner.err("reading back an import whose commit was cut off"))?;
                let (nodes, events): (i64, i64) = (row.get(0), row.get(1));
                if nodes == count(export.nodes.len()) && events == count(export.events.len()) {
                    Ok(Some(()))
                } else if nodes == 0 && events == 0 {
                    Ok(None)
                } else {
                    Err(inner.backend(
                        "reading back an import whose commit was cut off",
                        format!("the store holds {nodes} records and {events} events"),
                    ))
                }
            })
        })
    }
}
