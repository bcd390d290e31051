//! The embedded backend: one redb file. redb commits are atomic and durable (copy-on-write
//! pages, checksummed commit slots, fsync before a commit returns), so a crash at any point
//! leaves either the old or the new transaction, never a mix; the next open repairs its
//! allocator state if the process died with the file open.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bootdata::Mac;
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use roundhouse_plan::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

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
}

enum Handle {
    Held(Database),
    PerOperation { wait: Duration, gate: Mutex<()> },
}

/// The embedded [`StateStore`]: a single redb file.
pub struct RedbStore {
    path: PathBuf,
    handle: Handle,
}

impl RedbStore {
    /// Opens the store at `path`, creating the file and its tables if needed, and checks the
    /// schema version.
    pub fn open(path: impl AsRef<Path>, mode: OpenMode) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let wait = match mode {
            OpenMode::Held => Duration::ZERO,
            OpenMode::PerOperation { wait } => wait,
        };
        let db = open_db(&path, wait)?;
        init(&path, &db)?;
        let handle = match mode {
            OpenMode::Held => Handle::Held(db),
            OpenMode::PerOperation { wait } => {
                drop(db);
                Handle::PerOperation {
                    wait,
                    gate: Mutex::new(()),
                }
            }
        };
        Ok(RedbStore { path, handle })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
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
                f(&db)
            }
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
                    Some(db) => f(&db),
                    None => f(&open_db(&self.path, *wait)?),
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

    fn append_event(&self, txn: &WriteTransaction, mut event: Event) -> Result<Event, StoreError> {
        event.seq = self.next_seq(txn)?;
        let key = event.mac.to_string();
        txn.open_table(EVENTS)
            .map_err(|e| self.err(e))?
            .insert((key.as_str(), event.seq), encode(&event).as_slice())
            .map_err(|e| self.err(e))?;
        Ok(event)
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

fn open_db(path: &Path, wait: Duration) -> Result<Database, StoreError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match Database::create(path) {
            Ok(db) => return Ok(db),
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

/// `None` when the file must be repaired by a writable open first.
fn open_read_only(path: &Path, wait: Duration) -> Result<Option<ReadOnlyDatabase>, StoreError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match ReadOnlyDatabase::open(path) {
            Ok(db) => return Ok(Some(db)),
            Err(DatabaseError::RepairAborted) => return Ok(None),
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
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            let mut out = Vec::with_capacity(changes.len());
            for (mac, change) in changes {
                let key = mac.to_string();
                let mut nodes = txn.open_table(NODES).map_err(|e| self.err(e))?;
                let current = match nodes.get(key.as_str()).map_err(|e| self.err(e))? {
                    Some(v) => Some(
                        self.decode::<NodeRecord>(v.value(), || format!("the record of {mac}"))?,
                    ),
                    None => None,
                };
                let mut record = current.unwrap_or_else(|| NodeRecord::empty(mac, at));
                // On a refused transition the transaction is dropped uncommitted: nothing of
                // the batch is written, not even the events.
                let event = apply_change(&mut record, change, at)
                    .map_err(|source| StoreError::Transition { mac, source })?;
                nodes
                    .insert(key.as_str(), encode(&record).as_slice())
                    .map_err(|e| self.err(e))?;
                drop(nodes);
                self.append_event(&txn, event)?;
                out.push(record);
            }
            txn.commit().map_err(|e| self.err(e))?;
            Ok(out)
        })
    }

    fn note(&self, mac: &Mac, message: &str, at: Timestamp) -> Result<Event, StoreError> {
        self.with_db(|db| {
            let state = self
                .read_node(db, mac)?
                .map(|r| r.state)
                .unwrap_or(roundhouse_plan::NodeState::Unknown);
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            let event = self.append_event(&txn, note_event(*mac, message, &state, at))?;
            txn.commit().map_err(|e| self.err(e))?;
            Ok(event)
        })
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
}
