//! Where a cluster's state lives, chosen from its cluster file: the embedded store
//! (`<asset_dir>/state.redb`, the default) or a PostgreSQL database (`state_url`,
//! `ROUNDHOUSE_STATE_URL`). The commands open it through here, so each of them treats both
//! backends alike: reading commands never create, initialise or migrate anything; writing
//! commands hold the apply lock (the file lock, or the database's advisory lock) first.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use roundhouse_store::{
    ApplyLock, LockError, OpenMode, RedbStore, StateDir, StateStore, StoreError, now,
};

use crate::{ConfigError, PgConfig, PgLock, PgLockError, PgStore};

/// The configured backend.
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// `<asset_dir>/state.redb`.
    Embedded(StateDir),
    /// A PostgreSQL database.
    Postgres(Box<PgConfig>),
}

/// The held apply lock of either backend; dropping it releases the lock.
#[derive(Debug)]
pub enum StateLock {
    /// The file lock `<asset_dir>/apply.lock`.
    File(ApplyLock),
    /// The database's advisory lock.
    Postgres(PgLock),
}

/// How long an embedded store that another process has open is waited for.
const WAIT: Duration = Duration::from_secs(30);

impl StateLocation {
    /// The location for a cluster: `state_url` (with the password file, if any) or the
    /// embedded store under `asset_dir`. The URL was checked when the cluster file was
    /// loaded; this parses it fully (TLS parameters and all).
    pub fn new(
        asset_dir: &Path,
        state_url: Option<&str>,
        password_file: Option<&Path>,
    ) -> Result<StateLocation, ConfigError> {
        Ok(match state_url {
            None => StateLocation::Embedded(StateDir::new(asset_dir)),
            Some(url) => {
                let mut config = PgConfig::parse(url)?;
                if let Some(file) = password_file {
                    config = config.with_password_file(file);
                }
                StateLocation::Postgres(Box::new(config))
            }
        })
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, StateLocation::Postgres(_))
    }

    /// Opens the store only to read it: `None` when there is no embedded store file yet. A
    /// database without roundhouse's schema, or an older one, is refused
    /// ([`PgStore::open_existing`]); nothing is created or migrated.
    pub fn open_existing(&self) -> Result<Option<Arc<dyn StateStore>>, StoreError> {
        match self {
            StateLocation::Embedded(dir) => {
                if !dir.store_path().exists() {
                    return Ok(None);
                }
                let store = RedbStore::open(dir.store_path(), OpenMode::ReadOnly { wait: WAIT })?;
                Ok(Some(Arc::new(store)))
            }
            StateLocation::Postgres(config) => Ok(Some(Arc::new(PgStore::open_existing(config)?))),
        }
    }

    /// Takes the apply lock for `purpose` and returns the session that writes under it. On
    /// PostgreSQL this connects first and brings the schema up to date (the first use of a
    /// database creates it); an unreachable database fails here, before anything is done.
    pub fn begin_write(&self, purpose: &str) -> Result<WriteSession, PgLockError> {
        match self {
            StateLocation::Embedded(dir) => {
                let lock = dir.lock(purpose, now()).map_err(|e| match e {
                    e @ LockError::Held { .. } => PgLockError::Held(e),
                    e => PgLockError::File(e),
                })?;
                Ok(WriteSession {
                    _lock: StateLock::File(lock),
                    store: Backend::Embedded(dir.clone()),
                })
            }
            StateLocation::Postgres(config) => {
                let store = Arc::new(PgStore::open(config)?);
                let lock = store.try_lock(purpose)?;
                Ok(WriteSession {
                    _lock: StateLock::Postgres(lock),
                    store: Backend::Postgres(store),
                })
            }
        }
    }
}

/// `state.redb`'s path, or the database's URL without a password.
impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Embedded(dir) => write!(f, "{}", dir.store_path().display()),
            StateLocation::Postgres(config) => write!(f, "{config}"),
        }
    }
}

enum Backend {
    Embedded(StateDir),
    Postgres(Arc<PgStore>),
}

/// A writing command's hold on the store: the apply lock, and the store it writes.
pub struct WriteSession {
    store: Backend,
    // Dropped after the store (fields drop in order): the lock outlives every write.
    _lock: StateLock,
}

impl WriteSession {
    /// The store, to read before deciding what to write (`None`: no embedded store yet). The
    /// embedded store is opened read-only: a damaged file is refused and never rewritten.
    pub fn read(&self) -> Result<Option<Arc<dyn StateStore>>, StoreError> {
        match &self.store {
            Backend::Embedded(dir) => StateLocation::Embedded(dir.clone()).open_existing(),
            Backend::Postgres(store) => Ok(Some(Arc::clone(store) as Arc<dyn StateStore>)),
        }
    }

    /// The store, to write (the embedded one is created if missing).
    pub fn write(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        match &self.store {
            Backend::Embedded(dir) => Ok(Arc::new(
                dir.open_store(OpenMode::PerOperation { wait: WAIT })?,
            )),
            Backend::Postgres(store) => Ok(Arc::clone(store) as Arc<dyn StateStore>),
        }
    }

    /// Keeps one generation back before writing (`state.redb.1`; the embedded store only: a
    /// database has its own backups). Returns whether a copy was made.
    pub fn keep_previous(&self) -> Result<bool, StoreError> {
        match &self.store {
            Backend::Embedded(dir) => dir.keep_previous(),
            Backend::Postgres(_) => Ok(false),
        }
    }

    /// The embedded store's path, if that is the backend.
    pub fn embedded_path(&self) -> Option<PathBuf> {
        match &self.store {
            Backend::Embedded(dir) => Some(dir.store_path()),
            Backend::Postgres(_) => None,
        }
    }
}
