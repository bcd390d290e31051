//! The cluster's state directory and its apply lock.
//!
//! The lock is an OS advisory lock (`flock` on Unix, via `std::fs::File::try_lock`) on
//! `apply.lock`, so it is released by the kernel when the holder exits or is killed: there is
//! no stale lock to clean up after a crash. The holder writes who it is into the file so the
//! refused process can say whom it waits for.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use roundhouse_plan::Timestamp;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::redb_store::{OpenMode, RedbStore};

const STORE_FILE: &str = "state.redb";
const LOCK_FILE: &str = "apply.lock";

/// Who holds the apply lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Process id.
    pub pid: u32,
    /// Host name of the machine it runs on.
    pub host: String,
    /// When it took the lock.
    pub since: Timestamp,
    /// What it is doing (`apply`, `import-lokomotive`, …).
    pub purpose: String,
}

impl LockHolder {
    /// This process (its pid and host name) taking a lock for `purpose` at `at`.
    pub fn current(purpose: &str, at: Timestamp) -> LockHolder {
        LockHolder {
            pid: std::process::id(),
            host: host_name(),
            since: at,
            purpose: purpose.to_string(),
        }
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {}, `{}` since {}",
            self.pid, self.host, self.purpose, self.since
        )
    }
}

/// Why the apply lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another roundhouse is already writing to {}: {}; wait for it to finish (the lock is released \
         automatically when that process exits)",
        dir.display(),
        holder.as_ref().map_or_else(|| "holder not recorded yet".to_string(), |h| h.to_string())
    )]
    Held {
        /// The state directory (for the PostgreSQL backend: the database's URL, without a
        /// password).
        dir: PathBuf,
        /// The holder, as it recorded itself (`None` if it has not written yet).
        holder: Option<LockHolder>,
    },
    /// The lock file could not be created or written.
    #[error("taking the apply lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The held apply lock. Dropping it releases the lock.
#[derive(Debug)]
pub struct ApplyLock {
    file: File,
    holder: LockHolder,
}

impl ApplyLock {
    /// Who holds it (this process).
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        // Clear the holder so nobody reads a stale name; the kernel releases the lock when the
        // file is closed right after. Errors here only leave stale text, which readers ignore
        // unless the lock is actually held.
        let _ = self.file.set_len(0);
    }
}

/// A cluster's state directory: the store file and the apply lock live here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// The state directory at `path` (created on first use).
    pub fn new(path: impl Into<PathBuf>) -> StateDir {
        StateDir { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<dir>/state.redb`.
    pub fn store_path(&self) -> PathBuf {
        self.path.join(STORE_FILE)
    }

    /// `<dir>/apply.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.path.join(LOCK_FILE)
    }

    /// Opens (creating if needed) the embedded store.
    pub fn open_store(&self, mode: OpenMode) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(&self.path).map_err(|e| StoreError::Db {
            path: self.store_path(),
            source: Box::new(redb::Error::Io(e)),
        })?;
        RedbStore::open(self.store_path(), mode)
    }

    /// `<dir>/state.redb.1`: the store as it was before the last writing command.
    pub fn previous_path(&self) -> PathBuf {
        self.path.join(format!("{STORE_FILE}.1"))
    }

    /// Copies the store to [`StateDir::previous_path`] (0600; written beside it, synced and
    /// renamed into place, so a crash leaves the old copy or the new one), so that a store
    /// damaged later can be rolled back one generation. Returns `false` when there is no
    /// store yet. Call it under the apply lock, after the store was read successfully.
    pub fn keep_previous(&self) -> Result<bool, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let from = self.store_path();
        let to = self.previous_path();
        let io = |e: std::io::Error| StoreError::Db {
            path: to.clone(),
            source: Box::new(redb::Error::Io(e)),
        };
        if !from.exists() {
            return Ok(false);
        }
        let tmp = self.path.join(format!("{STORE_FILE}.1.tmp"));
        let _ = std::fs::remove_file(&tmp);
        // Created owner-only first, then filled by the kernel's copy (no copy of a large store
        // in this process's memory).
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        let mut src = std::fs::File::open(&from).map_err(io)?;
        let mut dst = &file;
        std::io::copy(&mut src, &mut dst).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &to).map_err(io)?;
        Ok(true)
    }

    /// Takes the apply lock for `purpose`, or fails at once with [`LockError::Held`] naming the
    /// holder. Never waits: a second `apply` should refuse, not queue behind the first.
    pub fn lock(&self, purpose: &str, at: Timestamp) -> Result<ApplyLock, LockError> {
        let path = self.lock_path();
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.path).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: self.path.clone(),
                    holder: read_holder(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = LockHolder::current(purpose, at);
        let text = serde_json::to_string(&holder).unwrap_or_default();
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(ApplyLock { file, holder })
    }

    /// The current holder of the apply lock, or `None` if nobody holds it (stale text left by
    /// a crashed holder is ignored because the lock itself is free).
    pub fn lock_holder(&self) -> Option<LockHolder> {
        let mut file = File::open(self.lock_path()).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None, // free; closing the file drops our shared lock
            Err(TryLockError::WouldBlock) => read_holder(&mut file),
            Err(TryLockError::Error(_)) => None,
        }
    }
}

fn read_holder(file: &mut File) -> Option<LockHolder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    // The holder's record is a few hundred bytes; cap the read so a garbage file cannot
    // balloon memory.
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// `" (apply lock held by pid …)"` for the store's busy error, or empty.
pub(crate) fn holder_suffix(dir: &Path) -> String {
    StateDir::new(dir)
        .lock_holder()
        .map(|h| format!(" (apply lock held by {h})"))
        .unwrap_or_default()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown host".to_string())
}
