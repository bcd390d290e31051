//! The embedded backend: one redb file. redb commits are atomic and durable (copy-on-write
//! pages, checksummed commit slots, fsync before a commit returns), so a crash at any point
//! leaves either the old or the new transaction, never a mix; the next open repairs its
//! allocator state if the process died with the file open.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use bootdata::Mac;
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use roundhouse_plan::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::export::{EXPORT_FORMAT, Export};
use crate::lock::holder_suffix;
use crate::record::{Change, Event, EventQuery, FetchRecord, NodeRecord, apply_change, note_event};
use crate::{StateStore, StoreError};

/// MAC (colon form) → JSON [`NodeRecord`].
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// (MAC, seq) → JSON [`Event`]. Append-only: nothing ever deletes from it.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// (MAC, unix millis, seq) → JSON [`FetchRecord`].
const FETCHES: TableDefinition<(&str, i64, u64), &[u8]> = TableDefinition::new("fetches");
/// MAC → JSON [`FetchRecord`]: the latest fetch, so `status` need not scan the journal.
const LAST_FETCH: TableDefinition<&str, &[u8]> = TableDefinition::new("last_fetch");
/// `schema_version`, `next_seq`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const SCHEMA_VERSION: u64 = 1;

/// How long the store keeps the file open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open once and keep it open until the store is dropped: fastest, but redb locks the file
    /// exclusively, so no other process can open the store meanwhile.
    Held,
    /// Open for each operation and close right after, so several processes (an `apply`, a
    /// `status`, a boot server writing its fetch journal) can take turns. When another
    /// process has it open, retry for up to `wait` before failing with
    /// [`StoreError::Busy`]. Operations within this process are serialised.
    PerOperation {
        /// How long to keep retrying.
        wait: Duration,
    },
    /// For commands that only read (`plan`, `status`, `state export`): opened per operation
    /// like [`OpenMode::PerOperation`], but never created, initialised, repaired or written.
    /// A missing, empty, truncated or foreign file is [`StoreError::Unreadable`]; every write
    /// is [`StoreError::ReadOnly`]. A file whose last writer was killed (it needs a repair
    /// that only a writer may do) is read from a repaired private copy, so the file itself is
    /// left exactly as it was.
    ReadOnly {
        /// How long to keep retrying while another process has it open.
        wait: Duration,
    },
}

enum Handle {
    Held(Database),
    PerOperation {
        wait: Duration,
        gate: Mutex<()>,
    },
    ReadOnly {
        wait: Duration,
        gate: Mutex<()>,
        snapshot: Mutex<Option<Snapshot>>,
    },
}

/// A repaired copy of a store file that needed a repair, read instead of the file.
struct Snapshot {
    db: Database,
    _dir: tempfile::TempDir,
}

/// The embedded [`StateStore`]: a single redb file.
///
/// Writes from many threads are *group-committed*: a writer queues its request and the first
/// one to get the commit lock writes every queued request in one transaction, so one fsync
/// covers them all. Each request stays atomic on its own (a refused transition drops only
/// that request), and every caller returns only after the commit that holds its changes is
/// durable: "intent journaled before acting" holds for each of them.
pub struct RedbStore {
    path: PathBuf,
    handle: Handle,
    queue: Mutex<Vec<Arc<Request>>>,
    /// Held by the writer committing a group.
    leader: Mutex<()>,
    commits: AtomicU64,
}

/// A queued write.
enum Op {
    Batch(Vec<(Mac, Change)>, Timestamp),
    Note(Mac, String, Timestamp),
}

enum Reply {
    Records(Vec<NodeRecord>),
    Event(Event),
}

struct Request {
    op: Mutex<Option<Op>>,
    reply: Mutex<Option<Result<Reply, StoreError>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding one of these leaves plain data behind, still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RedbStore {
    /// Opens the store at `path`, creating the file and its tables if needed, and checks the
    /// schema version.
    ///
    /// With [`OpenMode::ReadOnly`] nothing is created or written: the file must exist and be
    /// a roundhouse store of a schema this build reads.
    pub fn open(path: impl AsRef<Path>, mode: OpenMode) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let handle = match mode {
            OpenMode::ReadOnly { wait } => {
                match std::fs::metadata(&path) {
                    Ok(m) if m.len() == 0 => return Err(empty_file(&path)),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(unreadable(&path, "the file does not exist"));
                    }
                    Err(e) => return Err(db_err(&path, e)),
                }
                Handle::ReadOnly {
                    wait,
                    gate: Mutex::new(()),
                    snapshot: Mutex::new(None),
                }
            }
            OpenMode::Held | OpenMode::PerOperation { .. } => {
                let wait = match mode {
                    OpenMode::PerOperation { wait } => wait,
                    _ => Duration::ZERO,
                };
                let db = open_db(&path, wait)?;
                contained(&path, || init(&path, &db))?;
                match mode {
                    OpenMode::PerOperation { wait } => {
                        drop(db);
                        Handle::PerOperation {
                            wait,
                            gate: Mutex::new(()),
                        }
                    }
                    _ => Handle::Held(db),
                }
            }
        };
        let store = RedbStore {
            path,
            handle,
            queue: Mutex::new(Vec::new()),
            leader: Mutex::new(()),
            commits: AtomicU64::new(0),
        };
        if matches!(store.handle, Handle::ReadOnly { .. }) {
            store.check_schema()?;
        }
        Ok(store)
    }

    /// Whether this store was opened with [`OpenMode::ReadOnly`].
    pub fn is_read_only(&self) -> bool {
        matches!(self.handle, Handle::ReadOnly { .. })
    }

    /// Reads the schema version without writing: the read-only open's check.
    fn check_schema(&self) -> Result<(), StoreError> {
        let found = self.with_read(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let meta = match txn.open_table(META) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(self.err(e)),
            };
            Ok(meta
                .get("schema_version")
                .map_err(|e| self.err(e))?
                .map(|v| v.value()))
        })?;
        match found {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(found) => Err(StoreError::Schema {
                path: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            }),
            None => Err(unreadable(
                &self.path,
                "it holds no roundhouse tables (not a roundhouse state store, or one that was \
                 never written)",
            )),
        }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write transactions committed by [`StateStore::apply_batch`] and [`StateStore::note`]
    /// so far: fewer than the calls when concurrent writers were grouped.
    pub fn group_commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues `op` and waits until a commit holding it is durable (or it was refused).
    fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        let request = Arc::new(Request {
            op: Mutex::new(Some(op)),
            reply: Mutex::new(None),
        });
        lock(&self.queue).push(Arc::clone(&request));
        let _leader = lock(&self.leader);
        // The previous leader may have taken our request along: it answers before it lets go
        // of the leader lock, so the answer is here by now.
        if let Some(reply) = lock(&request.reply).take() {
            return reply;
        }
        let queued: Vec<Arc<Request>> = std::mem::take(&mut *lock(&self.queue));
        // An op is missing only if a leader panicked after taking it; its caller gets an
        // error below instead of waiting forever.
        let (group, ops): (Vec<Arc<Request>>, Vec<Op>) = queued
            .into_iter()
            .filter_map(|r| {
                let op = lock(&r.op).take()?;
                Some((r, op))
            })
            .unzip();
        let replies = match self.with_db(|db| self.commit_group(db, ops)) {
            Ok(replies) => replies,
            // The whole group failed to commit; every request gets the error.
            Err(e) => {
                let text = e.to_string();
                let mut first = Some(e);
                (0..group.len())
                    .map(|_| {
                        Err(first.take().unwrap_or_else(|| {
                            db_err(
                                &self.path,
                                redb::Error::Io(std::io::Error::other(text.clone())),
                            )
                        }))
                    })
                    .collect()
            }
        };
        for (r, reply) in group.iter().zip(replies) {
            *lock(&r.reply) = Some(reply);
        }
        lock(&request.reply).take().unwrap_or_else(|| {
            Err(db_err(
                &self.path,
                redb::Error::Io(std::io::Error::other(
                    "a concurrent write to the store failed before committing this one",
                )),
            ))
        })
    }

    /// Writes `ops` in one transaction. Each op is checked against the records as the ops
    /// before it left them; a refused op writes nothing and gets its error, the rest commit.
    /// The outer error is a failure of the transaction itself.
    fn commit_group(
        &self,
        db: &Database,
        ops: Vec<Op>,
    ) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        let mut replies = Vec::with_capacity(ops.len());
        let wrote;
        {
            let mut nodes = txn.open_table(NODES).map_err(|e| self.err(e))?;
            let mut events = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let mut seq = meta
                .get("next_seq")
                .map_err(|e| self.err(e))?
                .map_or(0, |v| v.value());
            let mut current: HashMap<Mac, NodeRecord> = HashMap::new();
            let load = |mac: Mac,
                        current: &HashMap<Mac, NodeRecord>,
                        nodes: &redb::Table<&str, &[u8]>,
                        at: Timestamp|
             -> Result<NodeRecord, StoreError> {
                if let Some(r) = current.get(&mac) {
                    return Ok(r.clone());
                }
                let found = nodes
                    .get(mac.to_string().as_str())
                    .map_err(|e| self.err(e))?;
                Ok(match found {
                    Some(v) => {
                        self.decode::<NodeRecord>(v.value(), || format!("the record of {mac}"))?
                    }
                    None => NodeRecord::empty(mac, at),
                })
            };
            let mut write_event =
                |mut event: Event, events: &mut redb::Table<(&str, u64), &[u8]>| {
                    seq += 1;
                    event.seq = seq;
                    let key = event.mac.to_string();
                    events
                        .insert((key.as_str(), event.seq), encode(&event).as_slice())
                        .map_err(|e| self.err(e))?;
                    Ok::<Event, StoreError>(event)
                };
            for op in ops {
                match op {
                    Op::Batch(changes, at) => {
                        // Tentative records and events of this batch alone.
                        let mut touched: Vec<NodeRecord> = Vec::new();
                        let mut batch_events = Vec::new();
                        let mut refused = None;
                        for (mac, change) in changes {
                            let mut record = match touched.iter().rposition(|r| r.mac == mac) {
                                Some(i) => touched[i].clone(),
                                None => load(mac, &current, &nodes, at)?,
                            };
                            match apply_change(&mut record, change, at) {
                                Ok(event) => {
                                    batch_events.push(event);
                                    touched.push(record);
                                }
                                Err(source) => {
                                    refused = Some(StoreError::Transition { mac, source });
                                    break;
                                }
                            }
                        }
                        if let Some(e) = refused {
                            replies.push(Err(e));
                            continue;
                        }
                        for event in batch_events {
                            write_event(event, &mut events)?;
                        }
                        for r in &touched {
                            current.insert(r.mac, r.clone());
                        }
                        replies.push(Ok(Reply::Records(touched)));
                    }
                    Op::Note(mac, message, at) => {
                        let state = match current.get(&mac) {
                            Some(r) => r.state.clone(),
                            None => nodes
                                .get(mac.to_string().as_str())
                                .map_err(|e| self.err(e))?
                                .map(|v| {
                                    self.decode::<NodeRecord>(v.value(), || {
                                        format!("the record of {mac}")
                                    })
                                })
                                .transpose()?
                                .map_or(roundhouse_plan::NodeState::Unknown, |r| r.state),
                        };
                        let event =
                            write_event(note_event(mac, &message, &state, at), &mut events)?;
                        replies.push(Ok(Reply::Event(event)));
                    }
                }
            }
            for (mac, record) in &current {
                nodes
                    .insert(mac.to_string().as_str(), encode(record).as_slice())
                    .map_err(|e| self.err(e))?;
            }
            meta.insert("next_seq", seq).map_err(|e| self.err(e))?;
            wrote = !current.is_empty() || replies.iter().any(|r| matches!(r, Ok(Reply::Event(_))));
        }
        if !wrote {
            // Only refused requests: nothing to make durable.
            txn.abort().map_err(|e| self.err(e))?;
            return Ok(replies);
        }
        txn.commit().map_err(|e| self.err(e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(replies)
    }

    fn with_db<R>(
        &self,
        f: impl FnOnce(&Database) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match &self.handle {
            Handle::Held(db) => f(db),
            Handle::PerOperation { wait, gate } => {
                let _serial: MutexGuard<'_, ()> = gate.lock().unwrap_or_else(|p| p.into_inner());
                let db = open_db(&self.path, *wait)?;
                contained(&self.path, || f(&db))
            }
            Handle::ReadOnly { .. } => Err(StoreError::ReadOnly {
                path: self.path.clone(),
            }),
        }
    }

    /// Like `with_db` for read-only work. In per-operation mode it opens the file read-only,
    /// which is much cheaper than a writable open (closing a writable handle commits and syncs
    /// allocator state), and falls back to a writable open when the file needs the repair that
    /// only a writer can do (its last writer was killed).
    fn with_read<R>(
        &self,
        f: impl FnOnce(&dyn ReadableDatabase) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match &self.handle {
            Handle::Held(db) => f(db),
            Handle::PerOperation { wait, gate } => {
                let _serial: MutexGuard<'_, ()> = gate.lock().unwrap_or_else(|p| p.into_inner());
                match open_read_only(&self.path, *wait)? {
                    Some(db) => contained(&self.path, || f(&db)),
                    None => {
                        let db = open_db(&self.path, *wait)?;
                        contained(&self.path, || f(&db))
                    }
                }
            }
            Handle::ReadOnly {
                wait,
                gate,
                snapshot,
            } => {
                let _serial: MutexGuard<'_, ()> = gate.lock().unwrap_or_else(|p| p.into_inner());
                let mut snapshot = lock(snapshot);
                if let Some(s) = snapshot.as_ref() {
                    return contained(&self.path, || f(&s.db));
                }
                match open_read_only(&self.path, *wait)? {
                    Some(db) => contained(&self.path, || f(&db)),
                    None => {
                        let s = snapshot.insert(Snapshot::take(&self.path)?);
                        contained(&self.path, || f(&s.db))
                    }
                }
            }
        }
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    /// Every value of a MAC-keyed table, decoded; `what` prefixes the key in decode errors.
    fn read_table<T: DeserializeOwned>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.with_read(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(definition).map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                out.push(self.decode(v.value(), || format!("{what} {}", k.value()))?);
            }
            Ok(out)
        })
    }

    fn decode<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
            path: self.path.clone(),
            what: what(),
            source,
        })
    }

    fn next_seq(&self, txn: &WriteTransaction) -> Result<u64, StoreError> {
        let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
        let seq = meta
            .get("next_seq")
            .map_err(|e| self.err(e))?
            .map_or(0, |v| v.value())
            + 1;
        meta.insert("next_seq", seq).map_err(|e| self.err(e))?;
        Ok(seq)
    }

    fn read_node(
        &self,
        db: &dyn ReadableDatabase,
        mac: &Mac,
    ) -> Result<Option<NodeRecord>, StoreError> {
        let txn = db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(NODES).map_err(|e| self.err(e))?;
        let found = table
            .get(mac.to_string().as_str())
            .map_err(|e| self.err(e))?;
        found
            .map(|v| self.decode(v.value(), || format!("the record of {mac}")))
            .transpose()
    }
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Only this crate's plain data types are encoded (string-keyed, no fallible custom
    // serialisers), so this cannot fail; writing empty bytes instead would corrupt the store.
    serde_json::to_vec(value).expect("encoding a store record as JSON")
}

fn unreadable(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Unreadable {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn empty_file(path: &Path) -> StoreError {
    unreadable(
        path,
        "the file is empty (0 bytes): it was emptied or replaced; roundhouse does not start a \
         new store over it",
    )
}

thread_local! {
    /// How deep this thread is inside [`contained`]; the panic hook stays quiet while > 0.
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`, turning a panic inside the database engine into [`StoreError::Unreadable`].
///
/// redb asserts on some damaged files (a truncated file fails `raw_file_len() >= layout len`)
/// instead of returning an error; a damaged state file must be a clear error, never exit 101.
/// The panic's default report is suppressed on this thread while `f` runs (the hook wraps the
/// previous one and is installed once), so the user sees only the error.
fn contained<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
    CONTAINED.with(|c| c.set(c.get() + 1));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get().saturating_sub(1)));
    result.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no detail".into());
        Err(unreadable(
            path,
            format!("the file is damaged or truncated (the database engine stopped: {what})"),
        ))
    })
}

impl Snapshot {
    /// Copies `path` into a private temporary directory and opens (so repairs) the copy.
    fn take(path: &Path) -> Result<Snapshot, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("roundhouse-state-")
            .tempdir()
            .map_err(|e| db_err(path, e))?;
        let copy = dir.path().join("state.redb");
        std::fs::copy(path, &copy).map_err(|e| db_err(path, e))?;
        let db = contained(path, || {
            Database::create(&copy).map_err(|e| match e {
                DatabaseError::Storage(s) => unreadable(path, s.to_string()),
                e => db_err(path, e),
            })
        })?;
        Ok(Snapshot { db, _dir: dir })
    }
}

fn open_db(path: &Path, wait: Duration) -> Result<Database, StoreError> {
    // redb would initialise an empty file as a new store: an emptied state file must not
    // silently become "no machine was ever installed".
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Err(empty_file(path));
    }
    let new = !path.exists();
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match contained(path, || Ok(Database::create(path)))? {
            Ok(db) => {
                if new {
                    // The store holds every node's history: owner only, whatever the umask.
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| db_err(path, e))?;
                }
                return Ok(db);
            }
            Err(DatabaseError::DatabaseAlreadyOpen) if start.elapsed() < wait => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Busy {
                    path: path.to_path_buf(),
                    holder: path.parent().map(holder_suffix).unwrap_or_default(),
                });
            }
            Err(DatabaseError::Storage(e)) => return Err(unreadable(path, e.to_string())),
            Err(e) => return Err(db_err(path, e)),
        }
    }
}

/// `None` when the file must be repaired by a writable open first.
fn open_read_only(path: &Path, wait: Duration) -> Result<Option<ReadOnlyDatabase>, StoreError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match contained(path, || Ok(ReadOnlyDatabase::open(path)))? {
            Ok(db) => return Ok(Some(db)),
            Err(DatabaseError::RepairAborted) => return Ok(None),
            Err(DatabaseError::Storage(e)) => return Err(unreadable(path, e.to_string())),
            Err(DatabaseError::DatabaseAlreadyOpen) if start.elapsed() < wait => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Busy {
                    path: path.to_path_buf(),
                    holder: path.parent().map(holder_suffix).unwrap_or_default(),
                });
            }
            Err(e) => return Err(db_err(path, e)),
        }
    }
}

fn init(path: &Path, db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(|e| db_err(path, e))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| db_err(path, e))?;
        let found = meta
            .get("schema_version")
            .map_err(|e| db_err(path, e))?
            .map(|v| v.value());
        match found {
            None => {
                meta.insert("schema_version", SCHEMA_VERSION)
                    .map_err(|e| db_err(path, e))?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(StoreError::Schema {
                    path: path.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
        txn.open_table(NODES).map_err(|e| db_err(path, e))?;
        txn.open_table(EVENTS).map_err(|e| db_err(path, e))?;
        txn.open_table(FETCHES).map_err(|e| db_err(path, e))?;
        txn.open_table(LAST_FETCH).map_err(|e| db_err(path, e))?;
    }
    txn.commit().map_err(|e| db_err(path, e))
}

impl StateStore for RedbStore {
    fn node(&self, mac: &Mac) -> Result<Option<NodeRecord>, StoreError> {
        self.with_read(|db| self.read_node(db, mac))
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let mut out: Vec<NodeRecord> = self.read_table(NODES, "the record of")?;
        // Keys sort as text; order by the MAC value like the other backends.
        out.sort_by_key(|r| r.mac);
        Ok(out)
    }

    fn apply_batch(
        &self,
        changes: Vec<(Mac, Change)>,
        at: Timestamp,
    ) -> Result<Vec<NodeRecord>, StoreError> {
        match self.submit(Op::Batch(changes, at))? {
            Reply::Records(records) => Ok(records),
            Reply::Event(_) => unreachable!("a batch is answered with records"),
        }
    }

    fn note(&self, mac: &Mac, message: &str, at: Timestamp) -> Result<Event, StoreError> {
        match self.submit(Op::Note(*mac, message.to_string(), at))? {
            Reply::Event(event) => Ok(event),
            Reply::Records(_) => unreachable!("a note is answered with its event"),
        }
    }

    fn events(&self, mac: &Mac, query: EventQuery) -> Result<Vec<Event>, StoreError> {
        self.with_read(|db| {
            let key = mac.to_string();
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
            let end = query.before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            let range = table
                .range((key.as_str(), 0u64)..(key.as_str(), end))
                .map_err(|e| self.err(e))?;
            for entry in range.rev().take(query.limit) {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                let seq = k.value().1;
                out.push(self.decode(v.value(), || format!("event {seq} of {mac}"))?);
            }
            Ok(out)
        })
    }

    fn record_fetch(&self, fetch: &FetchRecord) -> Result<(), StoreError> {
        self.with_db(|db| {
            let key = fetch.mac.to_string();
            let bytes = encode(fetch);
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            {
                let seq = self.next_seq(&txn)?;
                let mut fetches = txn.open_table(FETCHES).map_err(|e| self.err(e))?;
                fetches
                    .insert(
                        (key.as_str(), fetch.at.unix_millis(), seq),
                        bytes.as_slice(),
                    )
                    .map_err(|e| self.err(e))?;
                let mut last = txn.open_table(LAST_FETCH).map_err(|e| self.err(e))?;
                let newer = match last.get(key.as_str()).map_err(|e| self.err(e))? {
                    Some(v) => {
                        self.decode::<FetchRecord>(v.value(), || format!("last fetch of {key}"))?
                            .at
                            <= fetch.at
                    }
                    None => true,
                };
                if newer {
                    last.insert(key.as_str(), bytes.as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            txn.commit().map_err(|e| self.err(e))
        })
    }

    fn last_fetch(&self, mac: &Mac) -> Result<Option<FetchRecord>, StoreError> {
        self.with_read(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(LAST_FETCH).map_err(|e| self.err(e))?;
            let found = table
                .get(mac.to_string().as_str())
                .map_err(|e| self.err(e))?;
            found
                .map(|v| self.decode(v.value(), || format!("last fetch of {mac}")))
                .transpose()
        })
    }

    fn last_fetches(&self) -> Result<Vec<FetchRecord>, StoreError> {
        let mut out: Vec<FetchRecord> = self.read_table(LAST_FETCH, "last fetch of")?;
        out.sort_by_key(|f| f.mac);
        Ok(out)
    }

    fn fetches_since(&self, mac: &Mac, since: Timestamp) -> Result<Vec<FetchRecord>, StoreError> {
        self.with_read(|db| {
            let key = mac.to_string();
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(FETCHES).map_err(|e| self.err(e))?;
            let range = table
                .range(
                    (key.as_str(), since.unix_millis(), 0u64)..=(key.as_str(), i64::MAX, u64::MAX),
                )
                .map_err(|e| self.err(e))?;
            let mut out = Vec::new();
            for entry in range {
                let (_, v) = entry.map_err(|e| self.err(e))?;
                out.push(self.decode(v.value(), || format!("a fetch of {mac}"))?);
            }
            Ok(out)
        })
    }

    fn export(&self, at: Timestamp) -> Result<Export, StoreError> {
        self.with_read(|db| {
            let txn = db.begin_read().map_err(|e| self.err(e))?;
            let mut nodes: Vec<NodeRecord> = Vec::new();
            for entry in txn
                .open_table(NODES)
                .map_err(|e| self.err(e))?
                .iter()
                .map_err(|e| self.err(e))?
            {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                nodes.push(self.decode(v.value(), || format!("the record of {}", k.value()))?);
            }
            nodes.sort_by_key(|r| r.mac);
            let mut events: Vec<Event> = Vec::new();
            for entry in txn
                .open_table(EVENTS)
                .map_err(|e| self.err(e))?
                .iter()
                .map_err(|e| self.err(e))?
            {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                let (mac, seq) = k.value();
                events.push(self.decode(v.value(), || format!("event {seq} of {mac}"))?);
            }
            events.sort_by_key(|e| e.seq);
            let mut fetches: Vec<((i64, u64), FetchRecord)> = Vec::new();
            for entry in txn
                .open_table(FETCHES)
                .map_err(|e| self.err(e))?
                .iter()
                .map_err(|e| self.err(e))?
            {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                let (mac, ms, seq) = k.value();
                fetches.push((
                    (ms, seq),
                    self.decode(v.value(), || format!("a fetch of {mac}"))?,
                ));
            }
            fetches.sort_by_key(|(k, _)| *k);
            Ok(Export {
                format: EXPORT_FORMAT.to_string(),
                exported_at: at,
                nodes,
                events,
                fetches: fetches.into_iter().map(|(_, f)| f).collect(),
            })
        })
    }

    fn import(&self, export: &Export) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut nodes = txn.open_table(NODES).map_err(|e| self.err(e))?;
                let mut events = txn.open_table(EVENTS).map_err(|e| self.err(e))?;
                let (n, e) = (
                    nodes.len().map_err(|e| self.err(e))?,
                    events.len().map_err(|e| self.err(e))?,
                );
                if n > 0 || e > 0 {
                    return Err(StoreError::NotEmpty {
                        path: self.path.clone(),
                        nodes: usize::try_from(n).unwrap_or(usize::MAX),
                        events: usize::try_from(e).unwrap_or(usize::MAX),
                    });
                }
                for r in &export.nodes {
                    nodes
                        .insert(r.mac.to_string().as_str(), encode(r).as_slice())
                        .map_err(|e| self.err(e))?;
                }
                for ev in &export.events {
                    events
                        .insert((ev.mac.to_string().as_str(), ev.seq), encode(ev).as_slice())
                        .map_err(|e| self.err(e))?;
                }
                let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
                let mut seq = meta
                    .get("next_seq")
                    .map_err(|e| self.err(e))?
                    .map_or(0, |v| v.value())
                    .max(export.max_seq());
                let mut fetches = txn.open_table(FETCHES).map_err(|e| self.err(e))?;
                let mut last = txn.open_table(LAST_FETCH).map_err(|e| self.err(e))?;
                let mut latest: HashMap<Mac, &FetchRecord> = HashMap::new();
                for f in &export.fetches {
                    seq += 1;
                    let key = f.mac.to_string();
                    fetches
                        .insert(
                            (key.as_str(), f.at.unix_millis(), seq),
                            encode(f).as_slice(),
                        )
                        .map_err(|e| self.err(e))?;
                    let newer = latest.get(&f.mac).is_none_or(|l| l.at <= f.at);
                    if newer {
                        latest.insert(f.mac, f);
                    }
                }
                for (mac, f) in latest {
                    last.insert(mac.to_string().as_str(), encode(f).as_slice())
                        .map_err(|e| self.err(e))?;
                }
                meta.insert("next_seq", seq).map_err(|e| self.err(e))?;
            }
            txn.commit().map_err(|e| self.err(e))?;
            self.commits.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
}
