//! Riding out a PostgreSQL restart: which failures may be retried, and how long to wait.
//!
//! A call whose connection breaks (the server restarts: `57P01 admin_shutdown`, a closed or
//! reset connection, a refused connect or `57P03 cannot_connect_now` while it comes back) is
//! run again on a new connection, with backoff, until it succeeds or the store's reconnect
//! wait ([`crate::PgConfig::reconnect_wait`], default 30 s) is used up. A read is always safe
//! to run again, and so is a write transaction that failed before its `COMMIT` was sent: the
//! server rolls back a transaction whose session ends. A write whose connection broke after
//! `COMMIT` was sent may or may not have committed; the store reads back what it wrote (record
//! versions, event numbers) to decide, and runs it again only if it did not commit.

use std::time::{Duration, Instant};

use roundhouse_store::StoreError;
use tokio_postgres::error::SqlState;

use crate::PgError;

/// The `what` of an error from sending `COMMIT`: the one step whose failure is ambiguous.
pub(crate) const COMMITTING: &str = "committing";

/// Where in a call the failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connecting, or any statement before `COMMIT` was sent (nothing committed).
    BeforeCommit,
    /// `COMMIT` was sent (or the statement committed on its own).
    Commit,
}

/// What a failure looks like, taken apart from the client's error (so the classification is a
/// pure function that can be tested as a table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal<'a> {
    /// The server answered with this SQLSTATE.
    Sql(&'a str),
    /// The client saw its connection closed.
    Closed,
    /// An I/O error of this kind (connect, read, write, or the connect timeout).
    Io(std::io::ErrorKind),
    /// Anything else (decoding, a refused transition, configuration).
    Other,
}

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Lost a deadlock or serialisation race: rolled back; run it again now.
    Race,
    /// The connection broke and nothing committed: run it again on a new connection.
    Reconnect,
    /// The connection broke after `COMMIT` was sent: read back whether it committed first.
    Ambiguous,
    /// Not a transient failure: report it.
    Fail,
}

/// Classifies a failure. Pure: see the table test.
pub(crate) fn classify(signal: Signal<'_>, phase: Phase) -> Verdict {
    use std::io::ErrorKind as K;
    let broken = match signal {
        Signal::Sql(code) => {
            if code == SqlState::T_R_DEADLOCK_DETECTED.code()
                || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
            {
                return Verdict::Race;
            }
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, and class
            // 08 (connection exception).
            matches!(code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
        }
        Signal::Closed => true,
        Signal::Io(kind) => matches!(
            kind,
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::TimedOut
                // A unix socket whose file is gone: the server is between stop and start.
                | K::NotFound
        ),
        Signal::Other => false,
    };
    match (broken, phase) {
        (false, _) => Verdict::Fail,
        (true, Phase::BeforeCommit) => Verdict::Reconnect,
        (true, Phase::Commit) => Verdict::Ambiguous,
    }
}

/// Whether a write batch whose `COMMIT` was cut off committed, from what the database shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// All its events exist and every record is at least at the version it wrote.
    Committed,
    /// None of its events exists and every record is at its version before the batch.
    NotCommitted,
    /// Neither: an error, never a guess.
    Unknown,
}

/// Decides [`Outcome`] from the number of the batch's events found (of `written`) and, per
/// record, its version before the batch, after it, and now (0: no record). Pure: see the
/// table test.
///
/// The events decide: they are written in the batch's own transaction, with sequence numbers
/// no other transaction can hold, and never deleted. None of them → the transaction did not
/// commit, whatever the records show now (other writers may have moved them on meanwhile: a
/// test with concurrent writers and restarts hit exactly that). All of them → it committed;
/// the records must then be at least at the versions it wrote. Anything else cannot happen
/// to one transaction and is not guessed at.
pub(crate) fn batch_outcome(found: i64, written: i64, versions: &[(i64, i64, i64)]) -> Outcome {
    if found == 0 {
        Outcome::NotCommitted
    } else if found == written && versions.iter().all(|&(_, after, now)| now >= after) {
        Outcome::Committed
    } else {
        Outcome::Unknown
    }
}

/// The signal and phase of a store error.
pub(crate) fn inspect(e: &StoreError) -> (Signal<'_>, Phase) {
    let StoreError::Backend { source, what, .. } = e else {
        return (Signal::Other, Phase::BeforeCommit);
    };
    let phase = if what == COMMITTING {
        Phase::Commit
    } else {
        Phase::BeforeCommit
    };
    let signal = if let Some(pg) = source.downcast_ref::<PgError>() {
        if let Some(code) = pg.0.code() {
            Signal::Sql(code.code())
        } else if pg.0.is_closed() {
            Signal::Closed
        } else {
            let mut cause = std::error::Error::source(&pg.0);
            let mut found = Signal::Other;
            while let Some(c) = cause {
                if let Some(io) = c.downcast_ref::<std::io::Error>() {
                    found = Signal::Io(io.kind());
                    break;
                }
                cause = c.source();
            }
            found
        }
    } else if let Some(io) = source.downcast_ref::<std::io::Error>() {
        Signal::Io(io.kind())
    } else {
        Signal::Other
    };
    (signal, phase)
}

/// The verdict on a store error.
pub(crate) fn verdict(e: &StoreError) -> Verdict {
    let (signal, phase) = inspect(e);
    classify(signal, phase)
}

/// The bounded wait of one call: backoff from 50 ms doubling to 1 s, until the deadline.
pub(crate) struct Waiter {
    start: Instant,
    bound: Duration,
    delay: Duration,
}

impl Waiter {
    pub(crate) fn new(bound: Duration) -> Waiter {
        Waiter {
            start: Instant::now(),
            bound,
            delay: Duration::from_millis(50),
        }
    }

    /// Sleeps before the next try and returns true, or returns false if the wait is used up.
    pub(crate) async fn pause(&mut self) -> bool {
        let left = self.bound.saturating_sub(self.start.elapsed());
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(self.delay.min(left)).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(1));
        true
    }

    /// Adds "gave up after waiting N s" to a connection error, if the store waited at all.
    pub(crate) fn gave_up(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Backend {
                store,
                what,
                source,
            } if !self.bound.is_zero() => StoreError::Backend {
                store,
                what: format!(
                    "{what} (PostgreSQL unreachable; gave up after waiting {:.1} s, the reconnect wait)",
                    self.start.elapsed().as_secs_f64()
                ),
                source,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;
    use Verdict::*;
    use std::io::ErrorKind as K;

    #[test]
    fn classification_table() {
        let table: &[(Signal<'_>, Phase, Verdict)] = &[
            // Races: rolled back, whatever the phase.
            (Signal::Sql("40P01"), BeforeCommit, Race),
            (Signal::Sql("40001"), BeforeCommit, Race),
            (Signal::Sql("40001"), Commit, Race),
            // The server shutting down or starting: safe before COMMIT, ambiguous after.
            (Signal::Sql("57P01"), BeforeCommit, Reconnect),
            (Signal::Sql("57P01"), Commit, Ambiguous),
            (Signal::Sql("57P02"), BeforeCommit, Reconnect),
            (Signal::Sql("57P03"), BeforeCommit, Reconnect),
            (Signal::Sql("08006"), BeforeCommit, Reconnect),
            (Signal::Sql("08006"), Commit, Ambiguous),
            (Signal::Sql("08001"), BeforeCommit, Reconnect),
            (Signal::Closed, BeforeCommit, Reconnect),
            (Signal::Closed, Commit, Ambiguous),
            (Signal::Io(K::ConnectionRefused), BeforeCommit, Reconnect),
            (Signal::Io(K::ConnectionReset), BeforeCommit, Reconnect),
            (Signal::Io(K::ConnectionReset), Commit, Ambiguous),
            (Signal::Io(K::BrokenPipe), Commit, Ambiguous),
            (Signal::Io(K::UnexpectedEof), BeforeCommit, Reconnect),
            (Signal::Io(K::NotFound), BeforeCommit, Reconnect),
            (Signal::Io(K::TimedOut), BeforeCommit, Reconnect),
            // Not transient: the query or the data is wrong, or access is refused.
            (Signal::Sql("42P01"), BeforeCommit, Fail),
            (Signal::Sql("23505"), Commit, Fail),
            (Signal::Sql("28P01"), BeforeCommit, Fail),
            (Signal::Sql("3D000"), BeforeCommit, Fail),
            (Signal::Sql("57014"), BeforeCommit, Fail),
            (Signal::Io(K::PermissionDenied), BeforeCommit, Fail),
            (Signal::Io(K::InvalidData), Commit, Fail),
            (Signal::Other, BeforeCommit, Fail),
            (Signal::Other, Commit, Fail),
        ];
        for &(signal, phase, want) in table {
            assert_eq!(classify(signal, phase), want, "{signal:?} {phase:?}");
        }
    }

    #[test]
    fn cut_off_batches_are_read_back() {
        use Outcome::*;
        // Events found, events written, per record (before, after, now), the outcome.
        type Row = (i64, i64, &'static [(i64, i64, i64)], Outcome);
        let table: &[Row] = &[
            // Committed: every event there, records at the versions written (or later, if
            // another writer followed).
            (2, 2, &[(3, 4, 4), (0, 1, 1)], Committed),
            (2, 2, &[(3, 4, 5)], Committed),
            // Not committed: no event, records as before (a new record: still none)...
            (0, 2, &[(3, 4, 3), (0, 1, 0)], NotCommitted),
            // ... or moved on by other writers since (the events alone decide).
            (0, 2, &[(3, 4, 4)], NotCommitted),
            (0, 1, &[(3, 4, 5)], NotCommitted),
            // Neither: some of the events, or all of them with records gone back.
            (1, 2, &[(3, 4, 4)], Unknown),
            (2, 2, &[(3, 4, 3)], Unknown),
        ];
        for &(found, written, versions, want) in table {
            assert_eq!(
                batch_outcome(found, written, versions),
                want,
                "{found}/{written} {versions:?}"
            );
        }
    }

    #[test]
    fn errors_are_taken_apart() {
        let io = |kind: K, what: &str| StoreError::Backend {
            store: "s".into(),
            what: what.into(),
            source: Box::new(std::io::Error::new(kind, "x")),
        };
        assert_eq!(
            inspect(&io(K::ConnectionRefused, "cannot connect")),
            (Signal::Io(K::ConnectionRefused), BeforeCommit)
        );
        assert_eq!(verdict(&io(K::ConnectionReset, COMMITTING)), Ambiguous);
        assert_eq!(verdict(&io(K::Other, "reading")), Fail);
    }
}
