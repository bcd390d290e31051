//! The StateStore contract, run against every backend: the embedded store in both open modes,
//! the in-memory one, and PostgreSQL (a throwaway server the tests start; without Debian's
//! postgresql-15 these tests fail, naming the package). Plus durability: what was committed
//! is there after reopening. Each run prints how long each backend took (`--nocapture`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use bootdata::Mac;
use roundhouse_plan::{AppliedDigest, Intent, IntentStage, NodeState, ProvisionPath, Timestamp};
use roundhouse_store::{
    Change, EventQuery, FetchRecord, MemoryStore, OpenMode, RedbStore, StateDir, StateStore,
    StoreError,
};
use roundhouse_store_pg::PgStore;
use roundhouse_store_pg::testing::TestServer;

fn t(s: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_764_064_980_000 + s * 1000)
}

fn mac(n: u8) -> Mac {
    Mac::parse(&format!("52:54:00:00:00:{n:02x}")).unwrap()
}

fn intent(path: ProvisionPath, digest: &str, at: Timestamp) -> Intent {
    Intent {
        path,
        digest: digest.into(),
        domain: "n1.example".into(),
        kernel_args: vec!["console=ttyS0".into()],
        started_at: at,
        stage: IntentStage::Started,
    }
}

fn fetch(m: Mac, at: Timestamp, digest: &str) -> FetchRecord {
    FetchRecord {
        mac: m,
        client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
        route: "/ignition".into(),
        group: Some("w1".into()),
        digest: Some(digest.into()),
        at,
    }
}

type Open = fn(&Path, &TestServer) -> Box<dyn StateStore>;

/// Every backend, by name, with how to open a fresh, empty store of it.
fn backends() -> Vec<(&'static str, Open)> {
    vec![
        ("memory", |_, _| Box::new(MemoryStore::new())),
        ("redb held", |dir, _| {
            Box::new(
                StateDir::new(dir.join("held"))
                    .open_store(OpenMode::Held)
                    .unwrap(),
            )
        }),
        ("redb per-operation", |dir, _| {
            Box::new(
                StateDir::new(dir.join("perop"))
                    .open_store(OpenMode::PerOperation {
                        wait: Duration::from_secs(5),
                    })
                    .unwrap(),
            )
        }),
        // A new database on the shared test server for each store.
        ("postgres", |_, pg| {
            Box::new(PgStore::open(&pg.create_database()).unwrap())
        }),
    ]
}

/// Runs `check` on a fresh store of every backend, and says how long each took.
fn each_backend(test: &str, check: impl Fn(&str, &dyn StateStore)) {
    let tmp = tempfile::tempdir().unwrap();
    let pg = TestServer::shared();
    for (name, open) in backends() {
        let start = Instant::now();
        let store = open(tmp.path(), &pg);
        let opened = start.elapsed();
        check(name, &*store);
        drop(store);
        eprintln!(
            "{test} on {name}: open {:.1} ms, contract {:.1} ms",
            opened.as_secs_f64() * 1e3,
            (start.elapsed() - opened).as_secs_f64() * 1e3
        );
    }
}

#[test]
fn lifecycle_changes_and_history() {
    each_backend("lifecycle_changes_and_history", |name, store| {
        let m = mac(1);
        assert_eq!(store.node(&m).unwrap(), None, "{name}");
        store
            .apply(
                &m,
                Change::RequestRecreate {
                    allow_controller: false,
                },
                t(0),
            )
            .unwrap();
        store
            .apply(
                &m,
                Change::BeginInstall(intent(ProvisionPath::Pxe, "sha256:aa", t(1))),
                t(1),
            )
            .unwrap();
        store.apply(&m, Change::MarkTriggered, t(2)).unwrap();
        store.note(&m, "waiting for /ignition_ran", t(3)).unwrap();
        let r = store.apply(&m, Change::Confirm, t(4)).unwrap();
        assert_eq!(r.state.name(), "installed", "{name}");
        assert_eq!(
            r.applied_digest(),
            Some(&AppliedDigest::Known("sha256:aa".into())),
            "{name}"
        );
        assert_eq!(r.last_path(), Some(ProvisionPath::Pxe), "{name}");
        assert_eq!(
            r.kernel_args(),
            Some(&["console=ttyS0".to_string()][..]),
            "{name}"
        );
        assert_eq!(r.domain(), Some("n1.example"), "{name}");
        assert_eq!(
            r.recreate, None,
            "{name}: a confirmed PXE install consumes the recreate request"
        );
        assert_eq!(r.version, 4, "{name}");
        assert_eq!(store.node(&m).unwrap().as_ref(), Some(&r), "{name}");

        // A refused transition writes nothing: no record change, no event.
        let err = store.apply(&m, Change::Confirm, t(5)).unwrap_err();
        assert!(
            matches!(err, StoreError::Transition { .. }),
            "{name}: {err}"
        );
        assert_eq!(
            err.to_string(),
            "node 52:54:00:00:00:01: cannot confirm a node that is installed"
        );
        assert_eq!(store.node(&m).unwrap().unwrap().version, 4, "{name}");

        let all = store.events(&m, EventQuery::newest(100)).unwrap();
        let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "confirmed",
                "note",
                "triggered",
                "begin-install",
                "recreate-requested"
            ],
            "{name}"
        );
        assert!(
            all.windows(2).all(|w| w[0].seq > w[1].seq),
            "{name}: newest first"
        );
        assert_eq!(all[0].digest.as_deref(), Some("sha256:aa"));
        assert_eq!(all[1].message, "waiting for /ignition_ran");

        // Paging with the cursor walks the same history in pages.
        let p1 = store.events(&m, EventQuery::newest(2)).unwrap();
        let p2 = store
            .events(
                &m,
                EventQuery {
                    before: Some(p1[1].seq),
                    limit: 2,
                },
            )
            .unwrap();
        let p3 = store
            .events(
                &m,
                EventQuery {
                    before: Some(p2[1].seq),
                    limit: 2,
                },
            )
            .unwrap();
        let paged: Vec<_> = p1.iter().chain(&p2).chain(&p3).cloned().collect();
        assert_eq!(paged, all, "{name}");

        // Another node's history is separate; forgetting keeps history.
        store
            .apply(
                &mac(2),
                Change::BeginInstall(intent(ProvisionPath::Pxe, "sha256:bb", t(6))),
                t(6),
            )
            .unwrap();
        store.apply(&mac(2), Change::Forget, t(7)).unwrap();
        assert_eq!(
            store.node(&mac(2)).unwrap().unwrap().state,
            NodeState::Unknown
        );
        assert_eq!(
            store.events(&mac(2), EventQuery::newest(10)).unwrap().len(),
            2,
            "{name}"
        );
        assert_eq!(
            store.events(&m, EventQuery::newest(100)).unwrap().len(),
            5,
            "{name}"
        );

        let observed = store.observed().unwrap();
        assert_eq!(observed.nodes.len(), 2, "{name}");
        assert_eq!(observed.nodes[&m].state, r.state);
        let macs: Vec<Mac> = store.nodes().unwrap().iter().map(|r| r.mac).collect();
        assert_eq!(macs, [mac(1), mac(2)], "{name}");
    });
}

#[test]
fn fetch_journal_queries() {
    each_backend("fetch_journal_queries", |name, store| {
        let (a, b) = (mac(1), mac(2));
        assert_eq!(store.last_fetch(&a).unwrap(), None);
        store.record_fetch(&fetch(a, t(10), "sha256:01")).unwrap();
        store.record_fetch(&fetch(b, t(11), "sha256:0b")).unwrap();
        store.record_fetch(&fetch(a, t(30), "sha256:03")).unwrap();
        // A late-arriving older record must not replace the latest.
        store.record_fetch(&fetch(a, t(20), "sha256:02")).unwrap();
        assert_eq!(
            store.last_fetch(&a).unwrap().unwrap().digest.as_deref(),
            Some("sha256:03"),
            "{name}"
        );
        let since: Vec<_> = store
            .fetches_since(&a, t(20))
            .unwrap()
            .into_iter()
            .map(|f| f.digest.unwrap())
            .collect();
        assert_eq!(
            since,
            ["sha256:02", "sha256:03"],
            "{name}: oldest first, inclusive"
        );
        assert!(store.fetches_since(&a, t(31)).unwrap().is_empty());
        assert_eq!(store.fetches_since(&b, t(0)).unwrap().len(), 1, "{name}");
        let last: Vec<_> = store
            .last_fetches()
            .unwrap()
            .into_iter()
            .map(|f| (f.mac, f.at))
            .collect();
        assert_eq!(last, [(a, t(30)), (b, t(11))], "{name}");
        // Fetches before the epoch (a broken clock upstream) still order and query.
        store
            .record_fetch(&fetch(
                mac(3),
                Timestamp::from_unix_millis(-5000),
                "sha256:ff",
            ))
            .unwrap();
        assert_eq!(
            store
                .fetches_since(&mac(3), Timestamp::from_unix_millis(-6000))
                .unwrap()
                .len(),
            1
        );
    });
}

#[test]
fn reopen_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::new(tmp.path().join("state"));
    let m = mac(7);
    {
        let store = dir.open_store(OpenMode::Held).unwrap();
        store
            .apply(
                &m,
                Change::BeginInstall(intent(ProvisionPath::Pxe, "sha256:aa", t(0))),
                t(0),
            )
            .unwrap();
        store.apply(&m, Change::MarkTriggered, t(1)).unwrap();
        store.record_fetch(&fetch(m, t(2), "sha256:aa")).unwrap();
    }
    let store = dir.open_store(OpenMode::Held).unwrap();
    let r = store.node(&m).unwrap().unwrap();
    // The intent journal survives: a new process sees the triggered, unconfirmed attempt.
    assert_eq!(
        r.state.pending_intent().unwrap().stage,
        IntentStage::Triggered { at: t(1) }
    );
    assert_eq!(store.events(&m, EventQuery::newest(10)).unwrap().len(), 2);
    assert_eq!(store.last_fetch(&m).unwrap().unwrap().at, t(2));
    // Sequence numbers continue after reopening rather than restarting.
    let e = store.note(&m, "after reopen", t(3)).unwrap();
    assert_eq!(e.seq, 4);
}

#[test]
fn schema_version_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("schema_version", 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = roundhouse_store::RedbStore::open(&path, OpenMode::Held)
        .err()
        .unwrap();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn batch_is_all_or_nothing() {
    each_backend("batch_is_all_or_nothing", |name, store| {
        let ok = vec![
            (
                mac(1),
                Change::BeginInstall(intent(ProvisionPath::Pxe, "sha256:aa", t(0))),
            ),
            (mac(1), Change::MarkTriggered),
            (
                mac(2),
                Change::RequestRecreate {
                    allow_controller: true,
                },
            ),
        ];
        let records = store.apply_batch(ok, t(1)).unwrap();
        assert_eq!(records.len(), 3, "{name}");
        assert_eq!(
            records[1].version, 2,
            "{name}: later changes see earlier ones in the batch"
        );
        let before_events = store.events(&mac(1), EventQuery::newest(100)).unwrap();

        // The third change is refused (node 3 was never installed): the first two are not
        // written either.
        let bad = vec![
            (mac(1), Change::Confirm),
            (mac(2), Change::CancelRecreate),
            (
                mac(3),
                Change::BeginReprovision(intent(ProvisionPath::InPlace, "sha256:bb", t(2))),
            ),
        ];
        let err = store.apply_batch(bad, t(2)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("node 52:54:00:00:00:03: cannot begin an in-place"),
            "{name}: {err}"
        );
        assert_eq!(
            store.node(&mac(1)).unwrap().unwrap().state.name(),
            "installing",
            "{name}"
        );
        assert!(
            store.node(&mac(2)).unwrap().unwrap().recreate.is_some(),
            "{name}"
        );
        assert_eq!(store.node(&mac(3)).unwrap(), None, "{name}");
        assert_eq!(
            store.events(&mac(1), EventQuery::newest(100)).unwrap(),
            before_events,
            "{name}"
        );
    });
}

/// Many threads writing at once (as apply's node tasks do) are group-committed: fewer commits
/// than writes, and every write is there afterwards, with its own event and version, in a
/// store that reopens. A refused transition in one thread's batch costs only that batch.
#[test]
fn concurrent_writers_share_commits_and_lose_nothing() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = Arc::new(RedbStore::open(&path, OpenMode::Held).unwrap());
    let threads = 40u8;
    let rounds = 10u64;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let m = Mac::parse(&format!("52:54:00:00:01:{i:02x}")).unwrap();
                for r in 0..rounds {
                    let at = Timestamp::from_unix_millis(1_000 + r as i64);
                    let op = if r % 2 == 0 {
                        Change::RequestRecreate {
                            allow_controller: false,
                        }
                    } else {
                        Change::CancelRecreate
                    };
                    store.apply(&m, op, at).unwrap();
                    // Refused (nothing is in flight): must not disturb the others' writes.
                    assert!(store.apply(&m, Change::Confirm, at).is_err());
                    store.note(&m, &format!("round {r}"), at).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let writes = u64::from(threads) * rounds * 2;
    let commits = store.group_commits();
    assert!(commits < writes, "{commits} commits for {writes} writes");
    drop(store);
    let store = RedbStore::open(&path, OpenMode::Held).unwrap();
    let records = store.nodes().unwrap();
    assert_eq!(records.len(), threads as usize);
    let mut seqs = Vec::new();
    for r in &records {
        assert_eq!(r.version, rounds, "{r:?}");
        assert_eq!(r.recreate, None, "the last change per node was a cancel");
        let events = store.events(&r.mac, EventQuery::newest(100)).unwrap();
        assert_eq!(events.len() as u64, rounds * 2);
        assert_eq!(events[0].message, format!("round {}", rounds - 1));
        seqs.extend(events.iter().map(|e| e.seq));
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len() as u64, writes, "sequence numbers are unique");
}
