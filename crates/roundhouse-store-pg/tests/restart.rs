//! PostgreSQL restarting (`pg_ctl restart -m fast`: every session ended with `57P01`, the socket
//! gone for a while) under store calls running from several threads: every call waits,
//! reconnects and succeeds within the reconnect wait, and nothing is lost or written twice.
//! A server that stays down fails a call after the wait, naming it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bootdata::Mac;
use roundhouse_plan::Timestamp;
use roundhouse_store::{Change, EventQuery, FetchRecord, StateStore};
use roundhouse_store_pg::testing::TestServer;
use roundhouse_store_pg::{PgLockError, PgStore};

fn mac(n: u16) -> Mac {
    Mac::parse(&format!("52:54:00:01:{:02x}:{:02x}", n >> 8, n & 0xff)).unwrap()
}

#[test]
fn restarts_during_calls_lose_and_duplicate_nothing() {
    let pg = TestServer::start();
    let config = pg
        .create_database()
        .with_reconnect_wait(Duration::from_secs(30));
    let stores = [
        Arc::new(PgStore::open(&config).unwrap()),
        Arc::new(PgStore::open(&config).unwrap()),
    ];
    let threads = 6u16;
    let nodes = 4u16;
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    let fetches = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let store = Arc::clone(&stores[usize::from(i % 2)]);
            let (stop, batches, fetches) = (
                Arc::clone(&stop),
                Arc::clone(&batches),
                Arc::clone(&fetches),
            );
            std::thread::spawn(move || {
                let mut r = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    let (a, b) = (mac(i % nodes), mac((i + 1 + r) % nodes));
                    let at = Timestamp::from_unix_millis(1_000 + i64::from(r));
                    let started = Instant::now();
                    store
                        .apply_batch(
                            vec![
                                (
                                    b,
                                    Change::RequestRecreate {
                                        allow_controller: false,
                                    },
                                ),
                                (a, Change::CancelRecreate),
                            ],
                            at,
                        )
                        .unwrap_or_else(|e| panic!("thread {i} round {r}: {e}"));
                    batches.fetch_add(1, Ordering::Relaxed);
                    store
                        .note(&a, &format!("t{i} r{r}"), at)
                        .unwrap_or_else(|e| panic!("thread {i} round {r}: {e}"));
                    store
                        .record_fetch(&FetchRecord {
                            mac: a,
                            at: Timestamp::from_unix_millis(
                                1_000_000 * i64::from(i) + i64::from(r),
                            ),
                            client_ip: "10.0.0.9".parse().unwrap(),
                            route: "/ignition".into(),
                            group: None,
                            digest: None,
                        })
                        .unwrap_or_else(|e| panic!("thread {i} round {r}: {e}"));
                    fetches.fetch_add(1, Ordering::Relaxed);
                    store.node(&a).unwrap_or_else(|e| panic!("read: {e}"));
                    store.nodes().unwrap_or_else(|e| panic!("read: {e}"));
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "a round took {:?}",
                        started.elapsed()
                    );
                    r = r.wrapping_add(1);
                }
            })
        })
        .collect();
    // Three restarts: at once, with the socket gone for half a second, and for two seconds.
    for down in [0u64, 500, 2000] {
        std::thread::sleep(Duration::from_millis(700));
        let before = batches.load(Ordering::Relaxed);
        pg.restart(Duration::from_millis(down));
        eprintln!("restarted (down {down} ms) after {before} batches");
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let store = &stores[0];
    let writes = batches.load(Ordering::Relaxed);
    assert!(writes > 20, "the threads kept writing: {writes}");
    let mut all = Vec::new();
    let mut versions = 0;
    let mut journal = 0;
    for r in store.nodes().unwrap() {
        let events = store.events(&r.mac, EventQuery::newest(100_000)).unwrap();
        let changes = events.iter().filter(|e| e.kind != "note").count() as u64;
        assert_eq!(r.version, changes, "{}", r.mac);
        versions += r.version;
        all.extend(events.into_iter().map(|e| e.seq));
        journal += store
            .fetches_since(&r.mac, Timestamp::from_unix_millis(0))
            .unwrap()
            .len() as u64;
    }
    eprintln!("{writes} batches, {} events", all.len());
    assert_eq!(versions, writes * 2, "every change of every batch, once");
    assert_eq!(all.len() as u64, writes * 3, "every event, once");
    all.sort();
    all.dedup();
    assert_eq!(all.len() as u64, writes * 3, "sequence numbers are unique");
    assert_eq!(
        journal,
        fetches.load(Ordering::Relaxed),
        "every fetch, once"
    );
}

#[test]
fn a_database_that_stays_down_fails_after_the_wait() {
    let pg = TestServer::start();
    let config = pg
        .create_database()
        .with_reconnect_wait(Duration::from_secs(2));
    let store = PgStore::open(&config).unwrap();
    store
        .note(&mac(1), "up", Timestamp::from_unix_millis(0))
        .unwrap();
    pg.stop();
    let start = Instant::now();
    let err = store.nodes().unwrap_err().to_string();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert!(err.contains("gave up after waiting"), "{err}");
    assert!(
        err.contains("cannot connect to PostgreSQL at /tmp/rhpg"),
        "{err}"
    );
}

/// The apply lock's session ends with the restart: the next write takes the lock again, or,
/// if another process took it first, fails naming it and writes nothing.
#[test]
fn the_apply_lock_is_taken_again_after_a_restart_or_the_write_stops() {
    let pg = TestServer::start();
    let config = pg.create_database();
    let store = PgStore::open(&config).unwrap();
    let other = PgStore::open(&config).unwrap();
    let at = Timestamp::from_unix_millis(0);
    let lock = store.try_lock("apply").unwrap();
    pg.restart(Duration::from_millis(200));
    store.note(&mac(1), "after the restart", at).unwrap();
    // Held again, by this process: another is refused, naming it.
    assert!(matches!(
        other.try_lock("recreate"),
        Err(PgLockError::Held(_))
    ));
    let holder = other.lock_holder().unwrap().expect("held again");
    assert_eq!(holder.pid, std::process::id());

    // Restarted again, and another process takes the lock before the next write.
    pg.restart(Duration::ZERO);
    let theirs = other.try_lock("recreate").unwrap();
    let err = store
        .note(&mac(1), "without the lock", at)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the apply lock was lost"), "{err}");
    assert!(err.contains("recreate"), "{err}");
    let notes = other.events(&mac(1), EventQuery::newest(10)).unwrap();
    assert_eq!(
        notes.len(),
        1,
        "nothing written without the lock: {notes:?}"
    );
    drop(theirs);
    drop(lock);
}
