//! The PostgreSQL backend against a real server started by the tests (the shared contract
//! suite runs in crates/roundhouse-store/tests/contract.rs): reopening, schema versions and
//! migrations, concurrent writers, TLS with SCRAM, an unreachable database, and calls from
//! inside async runtimes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bootdata::Mac;
use roundhouse_plan::{Intent, IntentStage, ProvisionPath, Timestamp};
use roundhouse_store::{Change, EventQuery, StateStore, StoreError};
use roundhouse_store_pg::testing::TestServer;
use roundhouse_store_pg::{PgConfig, PgStore, SCHEMA_VERSION};

fn t(s: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_764_064_980_000 + s * 1000)
}

fn mac(n: u16) -> Mac {
    Mac::parse(&format!("52:54:00:00:{:02x}:{:02x}", n >> 8, n & 0xff)).unwrap()
}

fn intent(at: Timestamp) -> Intent {
    Intent {
        path: ProvisionPath::Pxe,
        digest: "sha256:aa".into(),
        domain: "n1.example".into(),
        kernel_args: vec![],
        started_at: at,
        stage: IntentStage::Started,
    }
}

/// Writes, drops the store, opens the database again: everything is there and sequence
/// numbers continue.
#[test]
fn reopen_keeps_everything_and_seq_continues() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    let m = mac(7);
    {
        let store = PgStore::open(&config).unwrap();
        store
            .apply(&m, Change::BeginInstall(intent(t(0))), t(0))
            .unwrap();
        store.apply(&m, Change::MarkTriggered, t(1)).unwrap();
        store.note(&m, "x", t(2)).unwrap();
    }
    let store = PgStore::open(&config).unwrap();
    let r = store.node(&m).unwrap().unwrap();
    assert_eq!(
        r.state.pending_intent().unwrap().stage,
        IntentStage::Triggered { at: t(1) }
    );
    assert_eq!(store.events(&m, EventQuery::newest(10)).unwrap().len(), 3);
    assert_eq!(store.note(&m, "after reopen", t(3)).unwrap().seq, 4);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        pg.psql(
            config.dbname(),
            "SELECT version, description FROM roundhouse.schema_migrations ORDER BY version"
        ),
        "1|node records, events, fetch journal\n2|apply lock holder\n"
    );
}

/// A database written by a newer roundhouse is refused, clearly, and left alone.
#[test]
fn a_newer_schema_is_refused() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    drop(PgStore::open(&config).unwrap());
    pg.psql(
        config.dbname(),
        "INSERT INTO roundhouse.schema_migrations (version, description) VALUES (99, 'future')",
    );
    let err = PgStore::open(&config).err().expect("refused");
    assert!(
        matches!(err, StoreError::Schema { found: 99, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "schema version 99; this roundhouse reads version {SCHEMA_VERSION}"
        )) && text.contains("newer roundhouse")
            && text.contains(config.dbname()),
        "{text}"
    );
}

/// Several processes (here: threads with their own stores) opening a new database at once:
/// the advisory lock makes one migrate and the others find it done.
#[test]
fn concurrent_first_opens_migrate_once() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || PgStore::open(&config).map(|s| s.schema_version()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap().unwrap(), SCHEMA_VERSION);
    }
    assert_eq!(
        pg.psql(
            config.dbname(),
            "SELECT count(*) FROM roundhouse.schema_migrations"
        ),
        format!("{SCHEMA_VERSION}\n")
    );
}

/// Many threads, two stores (as two processes would be), writing to overlapping nodes: no
/// write is lost, every record's version equals its non-note events, and sequence numbers are
/// unique and increase along each node's history.
#[test]
fn concurrent_writers_lose_nothing() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    let stores = [
        Arc::new(PgStore::open(&config).unwrap()),
        Arc::new(PgStore::open(&config).unwrap()),
    ];
    let threads = 16u16;
    let rounds = 15u64;
    let nodes = 6u16;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let store = Arc::clone(&stores[usize::from(i % 2)]);
            std::thread::spawn(move || {
                for r in 0..rounds {
                    // Each batch touches two nodes shared with other threads, in either order.
                    let (a, b) = (mac(i % nodes), mac((i + 1 + r as u16) % nodes));
                    let at = Timestamp::from_unix_millis(1_000 + r as i64);
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
                        .unwrap();
                    assert!(store.apply(&a, Change::Confirm, at).is_err());
                    store.note(&a, &format!("t{i} r{r}"), at).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    eprintln!(
        "{} batches + {} notes from {threads} threads in {:?}",
        u64::from(threads) * rounds,
        u64::from(threads) * rounds,
        start.elapsed()
    );
    let store = &stores[0];
    let mut all = Vec::new();
    let mut versions = 0;
    for r in store.nodes().unwrap() {
        let events = store.events(&r.mac, EventQuery::newest(10_000)).unwrap();
        assert!(
            events.windows(2).all(|w| w[0].seq > w[1].seq),
            "{}: newest first, strictly",
            r.mac
        );
        let changes = events.iter().filter(|e| e.kind != "note").count() as u64;
        assert_eq!(r.version, changes, "{}", r.mac);
        versions += r.version;
        all.extend(events.into_iter().map(|e| e.seq));
    }
    let writes = u64::from(threads) * rounds;
    assert_eq!(versions, writes * 2, "every change of every batch");
    assert_eq!(all.len() as u64, writes * 3, "every event");
    all.sort();
    all.dedup();
    assert_eq!(all.len() as u64, writes * 3, "sequence numbers are unique");
}

/// TLS with a CA file (verify-full and verify-ca) and a SCRAM password from a password file
/// or a pgpass file. Wrong password, wrong CA and plain text are refused, and no error shows
/// the password.
#[test]
fn tls_with_ca_file_and_scram() {
    let pg = TestServer::start_tls();
    let tls = pg.tls().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, format!("{}\n", tls.password)).unwrap();
    let nopass = dir.path().join("none");
    for host in ["localhost", "127.0.0.1"] {
        let url = format!(
            "postgres://{}@{host}:{}/{}?sslmode=verify-full&sslrootcert={}",
            tls.user,
            tls.port,
            tls.dbname,
            tls.ca.display()
        );
        let config = PgConfig::parse(&url)
            .unwrap()
            .with_pgpass_file(&nopass)
            .with_password_file(&pwfile);
        let store = PgStore::open(&config).unwrap();
        store.note(&mac(1), "over TLS", t(0)).unwrap();
        assert_eq!(
            store.events(&mac(1), EventQuery::newest(5)).unwrap().len(),
            if host == "localhost" { 1 } else { 2 }
        );
        assert!(!format!("{config:?}{config}").contains(&tls.password));
        // The pool's idle connection is the app role's, over TLS.
        assert_eq!(
            pg.psql(
                "postgres",
                "SELECT count(*) > 0 AND bool_and(ssl) FROM pg_stat_ssl \
                 JOIN pg_stat_activity USING (pid) WHERE usename = 'app'"
            ),
            "t\n"
        );
    }
    // A pgpass file works too, and so does verify-ca (chain only).
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{}:{}:{}:{}\n",
            tls.port, tls.dbname, tls.user, tls.password
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{}?sslmode=verify-ca&sslrootcert={}",
        tls.user,
        tls.port,
        tls.dbname,
        tls.ca.display()
    );
    let store = PgStore::open(&PgConfig::parse(&url).unwrap().with_pgpass_file(&pgpass)).unwrap();
    assert_eq!(
        store.events(&mac(1), EventQuery::newest(5)).unwrap().len(),
        2
    );
    drop(store);

    // Wrong password: refused, and the error names the server but not the password.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let url = format!(
        "postgres://{}@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        tls.user,
        tls.port,
        tls.dbname,
        tls.ca.display()
    );
    let err = PgStore::open(
        &PgConfig::parse(&url)
            .unwrap()
            .with_pgpass_file(&nopass)
            .with_password_file(&wrong),
    )
    .err()
    .unwrap();
    let text = format!("{err} {err:?}");
    assert!(text.contains(&format!("localhost:{}", tls.port)), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        !text.contains("not-the-password") && !text.contains(&tls.password),
        "{text}"
    );

    // A CA that did not sign the server's certificate: the handshake fails.
    let other_ca = dir.path().join("other-ca.crt");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
        ])
        .arg("-keyout")
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(out.status.success());
    let url = format!(
        "postgres://{}@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        tls.user,
        tls.port,
        tls.dbname,
        other_ca.display()
    );
    let err = PgStore::open(&PgConfig::parse(&url).unwrap().with_password_file(&pwfile))
        .err()
        .unwrap();
    let text = format!("{err:?}");
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "{text}"
    );

    // Plain text over TCP: pg_hba rejects it.
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{}?sslmode=disable",
        tls.user, tls.port, tls.dbname
    );
    let err = PgStore::open(&PgConfig::parse(&url).unwrap().with_password_file(&pwfile))
        .err()
        .unwrap();
    assert!(err.to_string().contains("no encryption"), "{err}");
}

/// Nothing listening, a server that never answers, a server stopped under an open store:
/// each is a clear error naming where, within the connect timeout, not a hang.
#[test]
fn an_unreachable_database_is_a_clear_error_not_a_hang() {
    // Refused: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://roundhouse@127.0.0.1:{port}/state?connect_timeout=2");
    let start = Instant::now();
    let err = PgStore::open(&PgConfig::parse(&url).unwrap())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );

    // Accepts TCP, never speaks (a hung server, a black-holing proxy): the timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://roundhouse@127.0.0.1:{port}/state?connect_timeout=1");
    let start = Instant::now();
    let err = PgStore::open(&PgConfig::parse(&url).unwrap())
        .err()
        .unwrap();
    let waited = start.elapsed();
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("within 1 s"), "{text}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    drop(silent);

    // The server goes away under an open store: the next call waits for it (here 1 s, the
    // reconnect wait), then fails clearly.
    let pg = TestServer::start();
    let config = pg
        .create_database()
        .with_reconnect_wait(Duration::from_secs(1));
    let store = PgStore::open(&config).unwrap();
    store.note(&mac(1), "up", t(0)).unwrap();
    pg.stop();
    let start = Instant::now();
    let err = store.note(&mac(1), "down", t(1)).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(11),
        "{:?}",
        start.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains(&config.to_string()), "{text}");
    assert!(text.contains("gave up after waiting"), "{text}");
    let err = store.nodes().unwrap_err().to_string();
    assert!(
        err.contains("cannot connect to PostgreSQL at /tmp/rhpg"),
        "{err}"
    );
}

/// apply's executor calls the store from async tasks: through block_in_place on a
/// multi-thread runtime, directly on a current-thread one. Neither may panic or deadlock, and
/// dropping the store inside a runtime is fine.
#[test]
fn callable_and_droppable_inside_async_runtimes() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = config.clone();
    rt.block_on(async move {
        let store = PgStore::open(&c).unwrap();
        store
            .note(&mac(1), "from a current-thread runtime", t(0))
            .unwrap();
        drop(store);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn StateStore> = Arc::new(PgStore::open(&config).unwrap());
    rt.block_on(async move {
        let tasks: Vec<_> = (0..8u16)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    tokio::task::block_in_place(|| store.note(&mac(i), "from a task", t(1)))
                        .unwrap();
                    // And without block_in_place: blocking a worker briefly, but no panic.
                    store.node(&mac(i)).unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // The last reference dropped inside the runtime.
        drop(store);
    });
}

/// Reading commands open a database without creating or migrating anything: an empty
/// database, or one at an older version, is refused with the way forward (`state migrate`),
/// and `migrate` brings it up to date.
#[test]
fn open_existing_never_creates_and_migrate_does() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    let err = PgStore::open_existing(&config).err().expect("refused");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Schema { found: 0, .. })
            && text.contains("no roundhouse schema yet")
            && text.contains("roundhouse state migrate"),
        "{text}"
    );
    assert_eq!(
        pg.psql(
            config.dbname(),
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'roundhouse'"
        ),
        "0\n",
        "nothing created"
    );
    assert_eq!(PgStore::migrate(&config).unwrap(), (0, SCHEMA_VERSION));
    assert_eq!(
        PgStore::migrate(&config).unwrap(),
        (SCHEMA_VERSION, SCHEMA_VERSION)
    );
    let store = PgStore::open_existing(&config).unwrap();
    assert!(store.nodes().unwrap().is_empty());

    // An older schema: the last migration undone by hand.
    pg.psql(
        config.dbname(),
        &format!(
            "DROP TABLE roundhouse.apply_lock; DELETE FROM roundhouse.schema_migrations WHERE version = {SCHEMA_VERSION}"
        ),
    );
    let text = PgStore::open_existing(&config).err().unwrap().to_string();
    assert!(
        text.contains("older roundhouse") && text.contains("state migrate"),
        "{text}"
    );
    assert_eq!(
        PgStore::migrate(&config).unwrap(),
        (SCHEMA_VERSION - 1, SCHEMA_VERSION)
    );
}

/// The apply lock: a second taker is refused at once, naming the holder; the lock is free
/// again when the holder drops it (its session ends), and a stale holder row is not named.
#[test]
fn apply_lock_is_exclusive_and_names_its_holder() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    let a = PgStore::open(&config).unwrap();
    let b = PgStore::open(&config).unwrap();
    assert_eq!(a.lock_holder().unwrap(), None);
    let held = a.try_lock("apply").unwrap();
    assert_eq!(held.holder().purpose, "apply");
    let err = b.try_lock("recreate").expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("another roundhouse is already writing to postgres://")
            && text.contains(&format!("pid {}", std::process::id()))
            && text.contains("`apply`"),
        "{text}"
    );
    assert_eq!(b.lock_holder().unwrap().unwrap().purpose, "apply");
    drop(held);
    // The server notices the closed session right away; allow it a moment.
    let start = Instant::now();
    let again = loop {
        match b.try_lock("recreate") {
            Ok(l) => break l,
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the lock was not released: {e}"),
        }
    };
    assert_eq!(a.lock_holder().unwrap().unwrap().purpose, "recreate");
    // Dropping the store that took it does not release it early.
    drop(b);
    assert!(a.try_lock("apply").is_err());
    drop(again);
}
