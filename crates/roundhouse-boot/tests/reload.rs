//! Reloading without restart: changes are picked up, a broken change keeps the previous data
//! in service, and requests never see a half-written directory.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use roundhouse_boot::ServeConfig;

fn start(data: &Path) -> common::Running {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    config.data_path = Some(data.to_path_buf());
    config.reload_interval = Duration::from_millis(50);
    common::Running::start(config)
}

/// Writes a file the way careful tools do: a temporary name, then a rename.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kernel(r: &common::Response) -> String {
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("kernel /"))
        .unwrap_or("<none>")
        .to_string()
}

fn metric(s: &common::Running, name: &str) -> u64 {
    s.get("/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

#[test]
fn changes_are_picked_up_and_broken_ones_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::copy_tree(&common::fixtures().join("compat/selection/data"), &data);
    let s = start(&data);
    assert_eq!(kernel(&s.get("/ipxe?uuid=new")), "default");

    write_atomic(
        &data.join("groups/new.json"),
        r#"{"id":"new","profile":"one","selector":{"uuid":"new"}}"#,
    );
    wait_for("the new group", || {
        kernel(&s.get("/ipxe?uuid=new")) == "one"
    });

    // A half-written group plus another change: neither is applied.
    let failures = metric(&s, "roundhouse_boot_index_load_failures_total");
    std::fs::write(data.join("groups/half.json"), r#"{"id":"half","prof"#).unwrap();
    std::fs::remove_file(data.join("groups/new.json")).unwrap();
    wait_for("a rejected load", || {
        metric(&s, "roundhouse_boot_index_load_failures_total") > failures
    });
    assert_eq!(
        kernel(&s.get("/ipxe?uuid=new")),
        "one",
        "previous data kept"
    );

    // Finishing the write lets the whole change through.
    write_atomic(
        &data.join("groups/half.json"),
        r#"{"id":"half","profile":"two","selector":{"uuid":"half"}}"#,
    );
    wait_for("the fixed group", || {
        kernel(&s.get("/ipxe?uuid=half")) == "two"
    });
    assert_eq!(kernel(&s.get("/ipxe?uuid=new")), "default");

    // The whole directory swapped for another, as `roundhouse render` does it.
    let staging = tmp.path().join("staging");
    common::copy_tree(&data, &staging);
    write_atomic(
        &staging.join("groups/swapped.json"),
        r#"{"id":"swapped","profile":"dual","selector":{"uuid":"swapped"}}"#,
    );
    std::fs::rename(&data, tmp.path().join("old")).unwrap();
    std::fs::rename(&staging, &data).unwrap();
    wait_for("the swapped directory", || {
        kernel(&s.get("/ipxe?uuid=swapped")) == "dual"
    });
}

/// matchbox's weakness: while a group is rewritten in place, a request can skip it and fall
/// through to the MAC-only install group (an unwanted reinstall). Here the installed group is
/// rewritten non-atomically over and over while a client keeps asking; every answer must come
/// from it.
#[test]
fn rewrites_never_fall_through() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::copy_tree(&common::fixtures().join("compat/selection/data"), &data);
    let s = Arc::new(start(&data));
    let q = "/ipxe?mac=52:54:00:00:00:01&os=installed";
    assert_eq!(kernel(&s.get(q)), "installed");

    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let client = {
        let (s, stop, asked) = (s.clone(), stop.clone(), asked.clone());
        std::thread::spawn(move || {
            let mut wrong = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let k = kernel(&s.get(q));
                asked.fetch_add(1, Ordering::Relaxed);
                if k != "installed" {
                    wrong.push(k);
                }
            }
            wrong
        })
    };
    let group = data.join("groups/installed.json");
    let text = std::fs::read_to_string(&group).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut i = 0u32;
    while Instant::now() < deadline {
        // Truncate, write half, pause, write the rest: readers can catch every stage.
        let (a, b) = text.split_at(text.len() / 2);
        std::fs::write(&group, a).unwrap();
        // Long enough, now and then, for a full scan (every 5 polls) to see the half file.
        let pause = if i.is_multiple_of(3) { 400 } else { 5 };
        std::thread::sleep(Duration::from_millis(pause));
        std::fs::write(&group, format!("{a}{b}")).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let wrong = client.join().unwrap();
    assert!(
        asked.load(Ordering::Relaxed) > 50,
        "client made too few requests"
    );
    assert!(
        wrong.is_empty(),
        "fell through to {:?}",
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        metric(&s, "roundhouse_boot_index_load_failures_total") > 0,
        "the test never caught a half-written file"
    );
}
