//! roundhouse's state store: per-node lifecycle records, the intent journal, an event history
//! that never expires, and the boot server's fetch journal, behind the small [`StateStore`]
//! trait so a shared backend can follow the embedded one.
//!
//! # API
//!
//! - [`StateDir`]: the cluster's state directory. [`StateDir::open_store`] opens (or creates)
//!   the embedded store, `state.redb` (see [`RedbStore`]); [`StateDir::lock`] takes the apply
//!   lock, an OS file lock on `apply.lock`, so two `apply`s on one state dir cannot both write:
//!   the second gets [`LockError::Held`] naming the holder (pid, host, since, purpose).
//! - [`StateStore`]: read records ([`StateStore::node`], [`StateStore::nodes`],
//!   [`StateStore::observed`] for the planner), change them only through lifecycle transitions
//!   ([`StateStore::apply`] with a [`Change`]: the new record and the event explaining it are
//!   written in one transaction), add notes, page through history ([`StateStore::events`],
//!   newest first), and keep the fetch journal ([`StateStore::record_fetch`],
//!   [`StateStore::last_fetch`], [`StateStore::last_fetches`], [`StateStore::fetches_since`]).
//! - [`start_changes`]: the journal entries (abandon a superseded attempt, begin the new one)
//!   that start carrying out a plan item; write them with [`StateStore::apply_batch`] before
//!   touching the machine.
//! - [`MemoryStore`]: the same contract in memory, for tests of the executor and CLI.
//! - [`import_lokomotive`]: adopts Lokomotive's `<asset_dir>/cluster-assets/<MAC>` flag files
//!   as nodes installed by PXE with an unknown applied digest.
//!
//! Timestamps are always passed in (use [`now`] at the edge), which keeps tests exact.

#![deny(missing_docs)]

use std::path::PathBuf;

use bootdata::Mac;
use roundhouse_plan::{Observed, Timestamp, TransitionError};

mod export;
mod lock;
mod lokomotive;
mod memory;
mod record;
mod redb_store;

pub use export::{EXPORT_FORMAT, Export, ExportError};
pub use lock::{ApplyLock, LockError, LockHolder, StateDir};
pub use lokomotive::{ImportError, ImportReport, import_lokomotive};
pub use memory::MemoryStore;
pub use record::{
    Change, Event, EventQuery, FetchRecord, HookRun, NodeRecord, apply_change, note_event,
    start_changes,
};
pub use redb_store::{OpenMode, RedbStore};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store file open (redb locks it exclusively).
    #[error("state store {} is in use by another process{holder}; try again when it finishes", path.display())]
    Busy {
        /// The store file.
        path: PathBuf,
        /// `" (apply lock: pid …)"` when the apply lock names a holder, else empty.
        holder: String,
    },
    /// The database reported an error (I/O, corruption it detected, …).
    #[error("state store {}: {source}", path.display())]
    Db {
        /// The store file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored value does not decode: written by a newer roundhouse, or damaged.
    #[error("state store {}: cannot decode {what}: {source}", path.display())]
    Decode {
        /// The store file.
        path: PathBuf,
        /// Which value.
        what: String,
        /// The decoder's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// The store was written by an incompatible roundhouse.
    #[error("state store {} has schema version {found}; this roundhouse reads version {supported}", path.display())]
    Schema {
        /// The store file.
        path: PathBuf,
        /// Version found.
        found: u64,
        /// Version this build reads.
        supported: u64,
    },
    /// The file cannot be read as a state store: emptied, truncated, damaged, or not a store.
    /// roundhouse never guesses what it held and never rewrites it.
    #[error("state store {} cannot be read: {reason}", path.display())]
    Unreadable {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A write through a store opened read-only (`plan`, `status`).
    #[error("state store {} is open read-only", path.display())]
    ReadOnly {
        /// The store file.
        path: PathBuf,
    },
    /// An import into a store that already holds records or history.
    #[error("state store {} is not empty ({nodes} records, {events} events); import only into an empty store", path.display())]
    NotEmpty {
        /// The store file.
        path: PathBuf,
        /// Records in it.
        nodes: usize,
        /// Events in it.
        events: usize,
    },
    /// A database server (the PostgreSQL backend) failed, refused, or could not be reached.
    /// `store` names it without credentials; `source` is the client's error, kept whole.
    #[error("state store {store}: {what}: {source}")]
    Backend {
        /// The store, as `postgres://user@host:port/db` (never with a password).
        store: String,
        /// What was being done, and where (`cannot connect to PostgreSQL at db1:5432`).
        what: String,
        /// The client's or server's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The change is not allowed from the node's current state.
    #[error("node {mac}: {source}")]
    Transition {
        /// The node.
        mac: Mac,
        /// Which transition from which state.
        #[source]
        source: TransitionError,
    },
}

/// The state store's contract. Implementations are safe to share between threads; every
/// method is one atomic transaction.
pub trait StateStore: Send + Sync {
    /// The record for `mac`, if any.
    fn node(&self, mac: &Mac) -> Result<Option<NodeRecord>, StoreError>;

    /// Every record, ordered by MAC.
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Applies `change` to `mac`'s record (creating an empty one if needed) through the
    /// lifecycle's guarded transitions, and appends the matching event, atomically. Returns
    /// the new record.
    fn apply(&self, mac: &Mac, change: Change, at: Timestamp) -> Result<NodeRecord, StoreError> {
        let mut records = self.apply_batch(vec![(*mac, change)], at)?;
        // One change in, one record out; the fallback only guards a broken backend.
        Ok(records.pop().unwrap_or_else(|| NodeRecord::empty(*mac, at)))
    }

    /// Applies several changes, in order, in one transaction: all are written or none (the
    /// first refused transition aborts the batch). Returns the new records in order. One
    /// commit (one fsync) for the lot, which is what makes importing thousands of nodes fast.
    fn apply_batch(
        &self,
        changes: Vec<(Mac, Change)>,
        at: Timestamp,
    ) -> Result<Vec<NodeRecord>, StoreError>;

    /// Appends a free-form note to `mac`'s history without changing its record.
    fn note(&self, mac: &Mac, message: &str, at: Timestamp) -> Result<Event, StoreError>;

    /// A page of `mac`'s history, newest first.
    fn events(&self, mac: &Mac, query: EventQuery) -> Result<Vec<Event>, StoreError>;

    /// Appends a fetch-journal record.
    fn record_fetch(&self, fetch: &FetchRecord) -> Result<(), StoreError>;

    /// The latest fetch by `mac` (by `at`, then by insertion).
    fn last_fetch(&self, mac: &Mac) -> Result<Option<FetchRecord>, StoreError>;

    /// The latest fetch of every MAC that ever fetched, ordered by MAC.
    fn last_fetches(&self) -> Result<Vec<FetchRecord>, StoreError>;

    /// Fetches by `mac` at or after `since`, oldest first.
    fn fetches_since(&self, mac: &Mac, since: Timestamp) -> Result<Vec<FetchRecord>, StoreError>;

    /// Everything the store holds, for a backup or a move to another backend.
    fn export(&self, at: Timestamp) -> Result<Export, StoreError>;

    /// Writes `export` (records, events with their sequence numbers, fetch journal) into this
    /// store in one transaction. Refused with [`StoreError::NotEmpty`] unless the store holds
    /// no record and no event.
    fn import(&self, export: &Export) -> Result<(), StoreError>;

    /// The planner's input: every record as an [`roundhouse_plan::ObservedNode`].
    fn observed(&self) -> Result<Observed, StoreError> {
        let mut o = Observed::default();
        for r in self.nodes()? {
            o.nodes.insert(r.mac, r.observed());
        }
        Ok(o)
    }
}

/// The current time from the system clock, for callers at the edge (CLI, executor). Before
/// the epoch (a broken clock) counts as the epoch.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(ms)
}
