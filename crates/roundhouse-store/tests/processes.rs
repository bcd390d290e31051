//! Tests with real second processes: this test binary re-runs itself as the child (selected
//! by an environment variable), so the crash is a real SIGKILL of a process in the middle of
//! writing, and the lock is really held by another pid.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bootdata::Mac;
use roundhouse_plan::{Intent, IntentStage, ProvisionPath, Timestamp};
use roundhouse_store::{Change, EventQuery, LockError, OpenMode, StateDir, StateStore, StoreError};

const CHILD_ROLE: &str = "ROUNDHOUSE_STORE_TEST_CHILD";
const CHILD_DIR: &str = "ROUNDHOUSE_STORE_TEST_DIR";
const READY: &str = "ROUNDHOUSE-TEST-CHILD-READY";

fn mac(n: u32) -> Mac {
    Mac::parse(&format!("52:54:00:00:{:02x}:{:02x}", n >> 8, n & 0xff)).unwrap()
}

/// Runs `test` of this binary as a child in `role`, and waits until it prints [`READY`].
fn spawn_child(test: &str, role: &str, dir: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, role)
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // libtest prints "test <name> ... " without a newline before the child's own output, so
    // look for a marker anywhere in a line. Read on a thread so a silent child cannot hang
    // the test past the deadline.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(READY) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("child {role} did not print {READY} within 60 s");
    }
    child
}

fn child_role() -> Option<(String, std::path::PathBuf)> {
    let role = std::env::var(CHILD_ROLE).ok()?;
    let dir = std::env::var(CHILD_DIR).ok()?;
    Some((role, dir.into()))
}

/// The child's work for the crash test: cycle nodes through their lifecycle as fast as it can,
/// forever, so a kill almost always lands inside a transaction (or its fsync).
fn churn(dir: &Path) -> ! {
    let store = StateDir::new(dir).open_store(OpenMode::Held).unwrap();
    let mut i: u64 = 0;
    loop {
        let m = mac((i % 40) as u32);
        let at = Timestamp::from_unix_millis(i as i64);
        let state = store.node(&m).unwrap().map(|r| r.state);
        let change = match state.as_ref().map(|s| s.name()) {
            None | Some("unknown") | Some("failed") => Change::BeginInstall(Intent {
                path: ProvisionPath::Pxe,
                digest: format!("sha256:{i:064x}"),
                domain: format!("n{}.example", i % 40),
                kernel_args: vec![],
                started_at: at,
                stage: IntentStage::Started,
            }),
            Some("installing")
                if state.as_ref().unwrap().pending_intent().unwrap().stage
                    == IntentStage::Started =>
            {
                Change::MarkTriggered
            }
            Some("installing") if i.is_multiple_of(3) => Change::Fail("simulated".into()),
            Some("installing") => Change::Confirm,
            _ => Change::Forget,
        };
        store.apply(&m, change, at).unwrap();
        store.note(&m, "progress", at).unwrap();
        if i == 20 {
            println!("{READY}");
        }
        i += 1;
    }
}

/// Kill -9 a writer mid-transaction, several times on the same file, and check after each
/// crash that the store opens, and that every record agrees with its history: a record's
/// version equals the number of its lifecycle events (written in the same transaction), and
/// its state is the state the newest such event says.
#[test]
fn crash_mid_transaction_leaves_a_consistent_store() {
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "churn");
        churn(&dir);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let mut last_total = 0;
    for (round, delay_ms) in [37u64, 150, 5, 420, 90].into_iter().enumerate() {
        let mut child = spawn_child(
            "crash_mid_transaction_leaves_a_consistent_store",
            "churn",
            &dir,
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: child should have died from the kill"
        );

        let store = StateDir::new(&dir).open_store(OpenMode::Held).unwrap();
        let records = store.nodes().unwrap();
        assert!(
            !records.is_empty(),
            "round {round}: the child committed before it was ready"
        );
        let mut total = 0;
        for r in &records {
            let history = store
                .events(&r.mac, EventQuery::newest(usize::MAX))
                .unwrap();
            let lifecycle: Vec<_> = history.iter().filter(|e| e.kind != "note").collect();
            assert_eq!(
                r.version as usize,
                lifecycle.len(),
                "round {round}: {} version vs history",
                r.mac
            );
            assert_eq!(
                lifecycle[0].state,
                r.state.name(),
                "round {round}: {}",
                r.mac
            );
            assert!(history.windows(2).all(|w| w[0].seq > w[1].seq));
            total += history.len();
        }
        assert!(
            total > last_total,
            "round {round}: the child made progress ({total} events)"
        );
        last_total = total;
    }
}

/// The child's work for the lock test: take the apply lock and hold it until killed.
fn hold_lock(dir: &Path) -> ! {
    let _lock = StateDir::new(dir)
        .lock("apply", Timestamp::from_unix_millis(1_764_064_980_000))
        .unwrap();
    let _store = StateDir::new(dir).open_store(OpenMode::Held).unwrap();
    println!("{READY}");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn second_apply_is_refused_naming_the_holder() {
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "hold-lock");
        hold_lock(&dir);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::new(tmp.path().join("state"));
    let mut child = spawn_child(
        "second_apply_is_refused_naming_the_holder",
        "hold-lock",
        dir.path(),
    );

    let err = dir
        .lock("apply", Timestamp::from_unix_millis(0))
        .unwrap_err();
    let LockError::Held {
        holder: Some(holder),
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(holder.pid, child.id());
    assert_eq!(holder.purpose, "apply");
    assert_eq!(holder.since.to_string(), "2025-11-25T10:03:00Z");
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {} on ", child.id()))
            && text.contains("`apply` since 2025-11-25T10:03:00Z"),
        "{text}"
    );
    assert_eq!(dir.lock_holder().as_ref(), Some(holder));

    // The child also holds the store open: a reader fails fast with a message naming it.
    let busy = dir
        .open_store(OpenMode::PerOperation {
            wait: Duration::from_millis(200),
        })
        .err()
        .unwrap();
    assert!(matches!(busy, StoreError::Busy { .. }), "{busy}");
    assert!(
        busy.to_string()
            .contains(&format!("apply lock held by pid {}", child.id())),
        "{busy}"
    );

    // A killed holder releases the lock without any cleanup.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        dir.lock_holder(),
        None,
        "stale holder text must not count as held"
    );
    let lock = dir.lock("apply", Timestamp::from_unix_millis(0)).unwrap();
    assert_eq!(lock.holder().pid, std::process::id());
    assert!(dir.open_store(OpenMode::Held).is_ok());
}

#[test]
fn lock_is_exclusive_within_a_process_too_and_released_on_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::new(tmp.path());
    let first = dir.lock("apply", Timestamp::from_unix_millis(0)).unwrap();
    assert!(matches!(
        dir.lock("recreate", Timestamp::from_unix_millis(0)),
        Err(LockError::Held { .. })
    ));
    drop(first);
    assert_eq!(dir.lock_holder(), None);
    dir.lock("recreate", Timestamp::from_unix_millis(0))
        .unwrap();
}

/// Per-operation mode lets two processes share the store: the child writes while this
/// process reads and writes, each waiting its turn.
#[test]
fn per_operation_mode_shares_the_file_between_processes() {
    if let Some((role, dir)) = child_role() {
        assert_eq!(role, "share");
        let store = StateDir::new(&dir)
            .open_store(OpenMode::PerOperation {
                wait: Duration::from_secs(30),
            })
            .unwrap();
        for i in 0..60u32 {
            store
                .note(
                    &mac(1),
                    &format!("child {i}"),
                    Timestamp::from_unix_millis(i64::from(i)),
                )
                .unwrap();
            if i == 0 {
                println!("{READY}");
            }
        }
        std::process::exit(0);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::new(tmp.path().join("state"));
    let store = dir
        .open_store(OpenMode::PerOperation {
            wait: Duration::from_secs(30),
        })
        .unwrap();
    let mut child = spawn_child(
        "per_operation_mode_shares_the_file_between_processes",
        "share",
        dir.path(),
    );
    for i in 0..60u32 {
        store
            .note(
                &mac(2),
                &format!("parent {i}"),
                Timestamp::from_unix_millis(i64::from(i)),
            )
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(
        store
            .events(&mac(1), EventQuery::newest(1000))
            .unwrap()
            .len(),
        60
    );
    assert_eq!(
        store
            .events(&mac(2), EventQuery::newest(1000))
            .unwrap()
            .len(),
        60
    );
}
