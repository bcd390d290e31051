//! The apply lock on PostgreSQL: one writing command (apply, recreate, import, recover) per
//! database at a time, until per-node leases exist.
//!
//! A session-level advisory lock (`pg_try_advisory_lock`) held by a connection of its own for
//! as long as the [`PgLock`] lives: PostgreSQL releases it when that session ends, however the
//! process ends, so there is no stale lock to clean up. The holder records who it is
//! (`roundhouse.apply_lock`: pid, host, purpose, since, and its server-side backend pid) so a
//! refused process can name it; a row whose backend no longer holds the lock is ignored.
//!
//! A restart of the server ends that session and so releases the lock. Before every write
//! (each attempt of `apply_batch`, `note`, `record_fetch`, `import`) the store checks the lock's
//! connection; if it broke, the store connects again (waiting as for any call) and takes the
//! lock again. If another process took it meanwhile, the write fails, naming that holder:
//! the command stops rather than write unprotected.

use std::sync::Arc;

use roundhouse_store::{LockError, LockHolder, StoreError, now};
use tokio_postgres::Client;

use crate::{Inner, PgError, PgStore, Rt};

/// The advisory lock key: "rh-apply".
pub(crate) const APPLY_LOCK: i64 = 0x7268_2d61_7070_6c79;

/// Why the apply lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PgLockError {
    /// Another process holds it ([`LockError::Held`], naming the holder).
    #[error(transparent)]
    Held(LockError),
    /// The embedded store's lock file could not be created or written.
    #[error(transparent)]
    File(LockError),
    /// The database failed or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The held apply lock; dropping it ends its session, which releases the lock.
pub struct PgLock {
    // The lock's connection lives in `inner.held`, where the store's writes check it.
    inner: Arc<Inner>,
    holder: LockHolder,
    // The connection's task runs here: keep it alive while the lock is held.
    _runtime: Arc<Rt>,
}

impl PgLock {
    /// Who holds it (this process).
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }
}

impl std::fmt::Debug for PgLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLock")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl Drop for PgLock {
    fn drop(&mut self) {
        // Dropping the client closes its connection (on the store's runtime): the session
        // ends and PostgreSQL releases the advisory lock.
        drop(crate::lock(&self.inner.held).take());
    }
}

impl PgStore {
    /// Takes the database's apply lock for `purpose` on a connection of its own, or fails at
    /// once with [`PgLockError::Held`] naming the holder. Never waits.
    pub fn try_lock(&self, purpose: &str) -> Result<PgLock, PgLockError> {
        let holder = LockHolder::current(purpose, now());
        let body = serde_json::to_string(&holder).unwrap_or_default();
        let sent = body.clone();
        let (client, other) = self.run(move |inner| async move {
            let client = inner.connect().await?;
            if !take(&inner, &client, &sent).await? {
                let other = read_holder(&inner, &client).await?;
                return Ok((None, Some(other)));
            }
            Ok((Some(client), None))
        })?;
        match (client, other) {
            (Some(client), _) => {
                *crate::lock(&self.inner.held) = Some(Held {
                    client: Some(client),
                    body,
                });
                Ok(PgLock {
                    inner: Arc::clone(&self.inner),
                    holder,
                    _runtime: Arc::clone(&self.runtime),
                })
            }
            (None, other) => Err(PgLockError::Held(LockError::Held {
                dir: self.label().into(),
                holder: other.flatten(),
            })),
        }
    }

    /// The current holder of the apply lock, if any process holds it.
    pub fn lock_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        self.run(|inner| async move {
            let client = inner.get().await?;
            read_holder(&inner, &client).await
        })
    }
}

/// The recorded holder, if its session still holds the lock.
async fn read_holder(inner: &Inner, client: &Client) -> Result<Option<LockHolder>, StoreError> {
    let row = client
        .query_opt(
            "SELECT h.holder::text FROM roundhouse.apply_lock h WHERE EXISTS ( \
               SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
               AND l.pid = h.backend_pid AND l.objsubid = 1 \
               AND l.classid = (($1::int8 >> 32) & 4294967295)::oid \
               AND l.objid = ($1::int8 & 4294967295)::oid)",
            &[&APPLY_LOCK],
        )
        .await
        .map_err(|e| inner.backend("reading the apply lock's holder", PgError(e)))?;
    Ok(row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
}

/// The apply lock's session, while a [`PgLock`] of this store lives.
pub(crate) struct Held {
    /// `None` while it is being taken again.
    client: Option<Client>,
    /// The holder, as recorded in `roundhouse.apply_lock`.
    body: String,
}

/// Tries to take the lock on `client`'s session and records the holder.
async fn take(inner: &Inner, client: &Client, body: &str) -> Result<bool, StoreError> {
    let taken: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&APPLY_LOCK])
        .await
        .map_err(inner.err("taking the apply lock"))?
        .get(0);
    if taken {
        client
            .execute(
                "INSERT INTO roundhouse.apply_lock (id, backend_pid, holder) \
                 VALUES (true, pg_backend_pid(), $1::text::jsonb) \
                 ON CONFLICT (id) DO UPDATE SET backend_pid = EXCLUDED.backend_pid, \
                 holder = EXCLUDED.holder",
                &[&body],
            )
            .await
            .map_err(inner.err("recording the apply lock's holder"))?;
    }
    Ok(taken)
}

impl Inner {
    /// Before a write: if this store holds the apply lock and its session broke (the server
    /// restarted), takes it again on a new connection. A connection error is returned as is
    /// (the call waits and tries again); another holder is an error naming it.
    pub(crate) async fn ensure_lock(&self) -> Result<(), StoreError> {
        let intact = |held: &Option<Held>| match held {
            None => true,
            Some(h) => h.client.as_ref().is_some_and(|c| !c.is_closed()),
        };
        if intact(&crate::lock(&self.held)) {
            return Ok(());
        }
        let _one = self.retake.lock().await;
        let body = {
            let mut held = crate::lock(&self.held);
            if intact(&held) {
                return Ok(());
            }
            let Some(h) = held.as_mut() else {
                return Ok(());
            };
            h.client = None;
            h.body.clone()
        };
        let client = self.connect().await?;
        if !take(self, &client, &body).await? {
            let other = read_holder(self, &client).await?;
            return Err(self.backend(
                "the apply lock was lost",
                format!(
                    "its connection broke (PostgreSQL restarted?) and {} holds it now; \
                     stopping rather than writing without it",
                    other.map_or_else(|| "another session".to_string(), |h| h.to_string())
                ),
            ));
        }
        if let Some(h) = crate::lock(&self.held).as_mut() {
            h.client = Some(client);
        }
        Ok(())
    }
}
