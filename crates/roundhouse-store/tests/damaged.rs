//! What the store does with files it cannot trust: emptied, truncated, foreign, needing a
//! repair; the read-only mode's promise to write nothing; export and import on every backend.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use bootdata::Mac;
use roundhouse_plan::{AppliedDigest, Installed, ProvisionPath, Timestamp};
use roundhouse_store::{
    Change, EventQuery, Export, FetchRecord, MemoryStore, OpenMode, RedbStore, StateStore,
    StoreError,
};
use roundhouse_store_pg::PgStore;
use roundhouse_store_pg::testing::TestServer;

fn t(s: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_764_064_980_000 + s * 1000)
}

fn mac(n: u8) -> Mac {
    Mac::parse(&format!("52:54:00:00:01:{n:02x}")).unwrap()
}

const RO: OpenMode = OpenMode::ReadOnly {
    wait: Duration::from_secs(2),
};

/// Fills a store with `n` adopted nodes, a note each and a fetch each.
fn fill(store: &dyn StateStore, n: u8) {
    for i in 0..n {
        let installed = Installed {
            digest: AppliedDigest::Known(format!("sha256:{i:064x}")),
            path: ProvisionPath::Pxe,
            domain: format!("n{i}.example"),
            kernel_args: Some(vec!["console=ttyS0".into()]),
            at: t(i.into()),
        };
        store
            .apply(&mac(i), Change::Adopt(installed), t(i.into()))
            .unwrap();
        store.note(&mac(i), "hello", t(i.into())).unwrap();
        store
            .record_fetch(&FetchRecord {
                mac: mac(i),
                client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                route: "/ignition".into(),
                group: Some(format!("n{i}")),
                digest: Some("sha256:ab".into()),
                at: t(100 + i64::from(i)),
            })
            .unwrap();
    }
}

fn written_store(dir: &Path, n: u8) -> std::path::PathBuf {
    let path = dir.join("state.redb");
    let store = RedbStore::open(&path, OpenMode::Held).unwrap();
    fill(&store, n);
    path
}

fn unreadable(r: Result<RedbStore, StoreError>) -> String {
    match r {
        Err(e @ StoreError::Unreadable { .. }) => e.to_string(),
        Err(e) => panic!("expected Unreadable, got {e:?}"),
        Ok(_) => panic!("expected Unreadable, the store opened"),
    }
}

#[test]
fn truncated_files_are_an_error_in_every_mode_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_store(dir.path(), 40);
    let full = std::fs::read(&path).unwrap();
    for len in [100usize, 4096, 65536, full.len() / 2, full.len() - 4096] {
        let damaged = dir.path().join(format!("t{len}.redb"));
        std::fs::write(&damaged, &full[..len]).unwrap();
        for mode in [
            RO,
            OpenMode::Held,
            OpenMode::PerOperation {
                wait: Duration::from_secs(1),
            },
        ] {
            // Some truncations open and fail on the first read instead: both are fine, a
            // panic or a silently empty answer is not.
            let result = RedbStore::open(&damaged, mode).and_then(|s| s.nodes().map(|_| s));
            match result {
                Err(StoreError::Unreadable { reason, .. }) => {
                    assert!(!reason.is_empty(), "{len} {mode:?}");
                }
                Err(StoreError::Db { .. }) => {}
                Err(e) => panic!("truncated to {len}, {mode:?}: unexpected {e:?}"),
                Ok(s) => {
                    let n = s.nodes().unwrap().len();
                    assert_eq!(n, 40, "truncated to {len}, {mode:?}: read {n} records");
                }
            }
        }
        if len < full.len() / 2 {
            // The read-only mode must not have touched the file.
            assert_eq!(std::fs::metadata(&damaged).unwrap().len() as usize, len);
        }
    }
}

#[test]
fn an_emptied_file_is_never_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_store(dir.path(), 3);
    std::fs::write(&path, b"").unwrap();
    let text = unreadable(RedbStore::open(&path, RO));
    assert!(text.contains("empty (0 bytes)"), "{text}");
    let text = unreadable(RedbStore::open(&path, OpenMode::Held));
    assert!(text.contains("empty (0 bytes)"), "{text}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "nothing written"
    );
}

#[test]
fn read_only_never_creates_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.redb");
    let text = unreadable(RedbStore::open(&missing, RO));
    assert!(text.contains("does not exist"), "{text}");
    assert!(!missing.exists());

    let path = written_store(dir.path(), 2);
    let before = std::fs::read(&path).unwrap();
    let store = RedbStore::open(&path, RO).unwrap();
    assert!(store.is_read_only());
    assert_eq!(store.nodes().unwrap().len(), 2);
    assert!(matches!(
        store.note(&mac(0), "x", t(5)),
        Err(StoreError::ReadOnly { .. })
    ));
    assert!(matches!(
        store.apply(&mac(9), Change::Forget, t(5)),
        Err(StoreError::ReadOnly { .. })
    ));
    drop(store);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is unchanged"
    );
}

#[test]
fn a_foreign_redb_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("other");
        txn.open_table(def).unwrap().insert("x", 1).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    let text = unreadable(RedbStore::open(&path, RO));
    assert!(text.contains("no roundhouse tables"), "{text}");
}

#[test]
fn export_import_round_trip_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let source = RedbStore::open(dir.path().join("src.redb"), OpenMode::Held).unwrap();
    fill(&source, 5);
    let export = source.export(t(1000)).unwrap();
    assert_eq!(export.nodes.len(), 5);
    assert_eq!(export.events.len(), 10);
    assert_eq!(export.fetches.len(), 5);
    // Through the JSON form, as a backup file would go.
    let export = Export::from_json(&export.to_json()).unwrap();

    let pg = TestServer::shared();
    let targets: Vec<(&str, Box<dyn StateStore>)> = vec![
        ("memory", Box::new(MemoryStore::new())),
        (
            "redb",
            Box::new(RedbStore::open(dir.path().join("dst.redb"), OpenMode::Held).unwrap()),
        ),
        (
            "postgres",
            Box::new(PgStore::open(&pg.create_database()).unwrap()),
        ),
    ];
    for (name, target) in targets {
        target.import(&export).unwrap();
        let again = target.export(t(1000)).unwrap();
        assert_eq!(again, export, "{name}");
        assert_eq!(target.nodes().unwrap(), source.nodes().unwrap(), "{name}");
        assert_eq!(
            target.events(&mac(3), EventQuery::newest(10)).unwrap(),
            source.events(&mac(3), EventQuery::newest(10)).unwrap(),
            "{name}"
        );
        assert_eq!(
            target.last_fetch(&mac(4)).unwrap(),
            source.last_fetch(&mac(4)).unwrap()
        );
        // New events continue after the imported ones.
        let e = target.note(&mac(0), "after", t(2000)).unwrap();
        assert!(e.seq > export.max_seq(), "{name}: seq {}", e.seq);
        // A second import would merge two histories: refused.
        assert!(
            matches!(target.import(&export), Err(StoreError::NotEmpty { .. })),
            "{name}"
        );
        // And back: this backend's export (with the new note) into a fresh embedded store.
        let out = target.export(t(3000)).unwrap();
        let back =
            RedbStore::open(dir.path().join(format!("back-{name}.redb")), OpenMode::Held).unwrap();
        back.import(&out).unwrap();
        assert_eq!(back.export(t(3000)).unwrap(), out, "{name} -> redb");
    }
}

#[test]
fn export_documents_are_checked() {
    assert!(Export::from_json(b"{}").is_err());
    let e = Export::from_json(br#"{"format":"roundhouse-state/v9","nodes":[]}"#).unwrap_err();
    assert!(e.to_string().contains("roundhouse-state/v9"), "{e}");
    let mut ok = MemoryStore::new().export(t(0)).unwrap();
    let store = MemoryStore::new();
    fill(&store, 1);
    let one = store.export(t(0)).unwrap();
    ok.nodes = vec![one.nodes[0].clone(), one.nodes[0].clone()];
    let e = Export::from_json(&ok.to_json()).unwrap_err();
    assert!(e.to_string().contains("two records"), "{e}");
}

#[test]
fn a_new_store_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = written_store(dir.path(), 1);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[test]
fn keep_previous_copies_the_store_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = roundhouse_store::StateDir::new(dir.path());
    assert!(
        !state.keep_previous().unwrap(),
        "no store yet: nothing to keep"
    );
    written_store(dir.path(), 3);
    assert!(state.keep_previous().unwrap());
    let copy = std::fs::read(state.previous_path()).unwrap();
    assert_eq!(copy, std::fs::read(state.store_path()).unwrap());
    let mode = std::fs::metadata(state.previous_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // The copy is a store of its own.
    let store = RedbStore::open(state.previous_path(), RO).unwrap();
    assert_eq!(store.nodes().unwrap().len(), 3);
}
