//! Nothing lost, emptied or damaged may turn into a wipe: a real server on a loopback port,
//! real files changed under it, real HTTP requests.
//!
//! - `netboot.json` removed or broken at run time: installed machines keep getting "boot from
//!   disk", `/healthz` and `/metrics` say so, and a good file clears it;
//! - `groups/` removed: the previous index keeps serving, and the damage is reported;
//! - at start-up the same damage is an error, as are configs others can modify, and a missing
//!   `netboot.json` when the journal shows gating was on.

mod common;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use roundhouse_boot::{ServeConfig, Server, ServerError};

const INSTALLED: &str = "/ipxe?mac=52:54:00:00:00:01";
const NETBOOT: &str = r#"{"format":"roundhouse-netboot/v1","nodes":{"52:54:00:00:00:01":{"netboot":"installed","name":"node-1"}}}"#;

fn config(data: &Path) -> ServeConfig {
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    config.data_path = Some(data.to_path_buf());
    config.reload_interval = Duration::from_millis(50);
    config
}

/// The gating fixture with its state in the default place, `<data>/roundhouse/`.
fn gated_data(tmp: &Path) -> std::path::PathBuf {
    let data = tmp.join("data");
    common::copy_tree(&common::fixtures().join("compat/gating/data"), &data);
    std::fs::create_dir(data.join("roundhouse")).unwrap();
    write_atomic(&data.join("roundhouse/netboot.json"), NETBOOT, 0o644);
    data
}

/// A temporary file with `mode`, renamed into place.
fn write_atomic(path: &Path, text: &str, mode: u32) {
    let tmp = path.with_extension("tmp~");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metric(s: &common::Running, name: &str) -> String {
    s.get("/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn boots_from_disk(s: &common::Running) -> bool {
    let r = s.get(INSTALLED);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().contains("sanboot")
}

fn healthy(s: &common::Running) -> bool {
    let r = s.get("/healthz");
    match r.status {
        200 => {
            assert_eq!(r.text(), "ok\n");
            true
        }
        503 => {
            assert!(r.text().starts_with("degraded\n"), "{}", r.text());
            false
        }
        other => panic!("/healthz answered {other}"),
    }
}

#[test]
fn gating_survives_netboot_json_disappearing_or_breaking() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gated_data(tmp.path());
    let netboot = data.join("roundhouse/netboot.json");
    let s = common::Running::start(config(&data));
    assert!(boots_from_disk(&s));
    assert!(healthy(&s));
    assert_eq!(metric(&s, "roundhouse_boot_netboot_state_ok"), "1");

    // Removed: fail closed.
    std::fs::remove_file(&netboot).unwrap();
    wait_for("the degraded state", || !healthy(&s));
    let health = s.get("/healthz");
    assert_eq!(health.status, 503);
    assert!(
        health.text().contains("netboot.json disappeared"),
        "{}",
        health.text()
    );
    assert_eq!(metric(&s, "roundhouse_boot_netboot_state_ok"), "0");
    assert_eq!(metric(&s, "roundhouse_boot_netboot_gating"), "1");
    assert!(
        boots_from_disk(&s),
        "an installed machine must not get the installer"
    );
    // A change to the data meanwhile is not applied without its gating either.
    std::fs::remove_file(data.join("groups/install-3.json")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(boots_from_disk(&s));
    assert_eq!(s.get("/ipxe?mac=52:54:00:00:00:03").status, 200);

    // Restored: healthy again, and the held-back data change goes through with it.
    write_atomic(&netboot, NETBOOT, 0o644);
    wait_for("recovery", || healthy(&s));
    assert_eq!(metric(&s, "roundhouse_boot_netboot_state_ok"), "1");
    assert!(boots_from_disk(&s));
    wait_for("the held-back change", || {
        s.get("/ipxe?mac=52:54:00:00:00:03").status == 404
    });

    // Broken (invalid JSON): the same.
    write_atomic(
        &netboot,
        r#"{"format":"roundhouse-netboot/v1","nodes":{"#,
        0o644,
    );
    wait_for("the degraded state", || !healthy(&s));
    assert!(s.get("/healthz").text().contains("parsing"));
    assert_eq!(metric(&s, "roundhouse_boot_netboot_state_ok"), "0");
    assert!(boots_from_disk(&s));

    // Writable by others: whoever can write it decides which machines are reinstalled.
    write_atomic(&netboot, NETBOOT, 0o666);
    wait_for("the insecure file to be noticed", || {
        s.get("/healthz")
            .text()
            .contains("writable by group or others")
    });
    assert!(boots_from_disk(&s));

    // Gating is turned off on purpose by saying so, not by removing the file.
    write_atomic(
        &netboot,
        r#"{"format":"roundhouse-netboot/v1","nodes":{}}"#,
        0o644,
    );
    wait_for("recovery", || healthy(&s));
    wait_for("gating off for the machine", || !boots_from_disk(&s));
    assert!(s.get(INSTALLED).text().contains("kernel /assets/vmlinuz"));
}

#[test]
fn no_netboot_json_from_the_start_is_gating_off_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::copy_tree(&common::fixtures().join("compat/gating/data"), &data);
    let s = common::Running::start(config(&data));
    assert!(!boots_from_disk(&s), "matchbox semantics: the installer");
    std::fs::remove_file(data.join("groups/install-3.json")).unwrap();
    wait_for("the reload", || {
        s.get("/ipxe?mac=52:54:00:00:00:03").status == 404
    });
    assert!(healthy(&s));
    assert_eq!(metric(&s, "roundhouse_boot_netboot_state_ok"), "1");
    assert_eq!(metric(&s, "roundhouse_boot_netboot_gating"), "0");
}

#[test]
fn a_missing_groups_directory_keeps_the_last_index() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::copy_tree(&common::fixtures().join("compat/gating/data"), &data);
    let s = common::Running::start(config(&data));
    let q = "/ipxe?mac=52:54:00:00:00:03";
    assert_eq!(s.get(q).status, 200);
    let failures: u64 = metric(&s, "roundhouse_boot_index_load_failures_total")
        .parse()
        .unwrap();

    std::fs::rename(data.join("groups"), tmp.path().join("groups.aside")).unwrap();
    wait_for("the rejected load", || !healthy(&s));
    let health = s.get("/healthz").text();
    assert!(health.contains("groups/"), "{health}");
    assert!(health.contains("directory is missing"), "{health}");
    assert_eq!(metric(&s, "roundhouse_boot_data_ok"), "0");
    assert_eq!(metric(&s, "roundhouse_boot_index_groups"), "6");
    assert!(
        metric(&s, "roundhouse_boot_index_load_failures_total")
            .parse::<u64>()
            .unwrap()
            > failures
    );
    assert_eq!(s.get(q).status, 200, "the previous index keeps serving");

    // An empty directory is valid: a fleet with no groups.
    std::fs::create_dir(data.join("groups")).unwrap();
    wait_for("the empty directory to load", || healthy(&s));
    assert_eq!(metric(&s, "roundhouse_boot_data_ok"), "1");
    assert_eq!(metric(&s, "roundhouse_boot_index_groups"), "0");
    assert_eq!(s.get(q).status, 404);
}

#[test]
fn a_config_others_can_modify_is_not_loaded_at_run_time() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::copy_tree(&common::fixtures().join("compat/gating/data"), &data);
    let s = common::Running::start(config(&data));
    let q = "/ignition?mac=52:54:00:00:00:01&os=installed";
    let before = s.get(q).text();
    write_atomic(
        &data.join("ignition/node.ign"),
        r#"{"ignition":{"version":"3.4.0"},"storage":{}}"#,
        0o664,
    );
    wait_for("the rejected load", || !healthy(&s));
    let health = s.get("/healthz").text();
    assert!(health.contains("ignition/node.ign"), "{health}");
    assert!(health.contains("chmod go-w"), "{health}");
    assert_eq!(s.get(q).text(), before, "the previous config keeps serving");
    std::fs::set_permissions(
        data.join("ignition/node.ign"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // A mode change alone is not a change the reload loop looks for; touch the directory.
    std::fs::write(
        data.join("ignition/other.ign"),
        r#"{"ignition":{"version":"3.4.0"}}"#,
    )
    .unwrap();
    std::fs::set_permissions(
        data.join("ignition/other.ign"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    wait_for("recovery", || healthy(&s));
    assert!(s.get(q).text().contains("storage"));
}

fn bind_error(config: ServeConfig) -> ServerError {
    match Server::bind(config) {
        Ok(_) => panic!("the server started"),
        Err(e) => e,
    }
}

#[test]
fn damage_at_start_up_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();

    // An empty data directory (nothing published yet) serves nothing, and is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    Server::bind(config(&empty)).expect("an empty data directory");

    // A published directory without groups/.
    let data = tmp.path().join("data");
    common::copy_tree(&common::fixtures().join("compat/gating/data"), &data);
    std::fs::remove_dir_all(data.join("groups")).unwrap();
    let e = bind_error(config(&data));
    assert!(matches!(e, ServerError::MissingDir { .. }), "{e}");
    assert!(e.to_string().contains("no groups/ directory"), "{e}");
    std::fs::create_dir(data.join("groups")).unwrap();
    Server::bind(config(&data)).expect("an empty groups/ is valid");

    // An Ignition config its group can write.
    std::fs::set_permissions(
        data.join("ignition/node.ign"),
        std::fs::Permissions::from_mode(0o620),
    )
    .unwrap();
    let e = bind_error(config(&data));
    assert!(matches!(e, ServerError::Insecure(_)), "{e}");
    let text = e.to_string();
    assert!(text.contains("ignition/node.ign"), "{text}");
    assert!(
        text.contains(&format!(
            "chmod go-w {}",
            data.join("ignition/node.ign").display()
        )),
        "{text}"
    );
    // World-readable (matchbox data directories written by other tools): served.
    std::fs::set_permissions(
        data.join("ignition/node.ign"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    Server::bind(config(&data)).expect("a world-readable config is served");
    // A world-writable group file.
    std::fs::write(data.join("groups/x.json"), r#"{"id":"x","profile":"node"}"#).unwrap();
    std::fs::set_permissions(
        data.join("groups/x.json"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let e = bind_error(config(&data));
    assert!(e.to_string().contains("chmod o-w"), "{e}");
}

#[test]
fn start_up_without_netboot_json_after_gating_was_on_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gated_data(tmp.path());
    {
        // A server with gating answers an installed machine: the journal records it.
        let s = common::Running::start(config(&data));
        assert!(boots_from_disk(&s));
        let journal = data.join("roundhouse/fetch-journal.jsonl");
        wait_for("the journal", || {
            std::fs::read_to_string(&journal).is_ok_and(|t| t.contains("\"local_boot\":true"))
        });
    }
    std::fs::remove_file(data.join("roundhouse/netboot.json")).unwrap();
    let e = bind_error(config(&data));
    assert!(matches!(e, ServerError::NetbootMissing { .. }), "{e}");
    assert!(e.to_string().contains("would reinstall"), "{e}");

    // Turning gating off on purpose is saying so.
    write_atomic(
        &data.join("roundhouse/netboot.json"),
        r#"{"format":"roundhouse-netboot/v1","nodes":{}}"#,
        0o644,
    );
    let s = common::Running::start(config(&data));
    assert!(!boots_from_disk(&s));

    // A broken netboot.json at start-up stays an error.
    write_atomic(&data.join("roundhouse/netboot.json"), "{", 0o644);
    drop(s);
    assert!(matches!(bind_error(config(&data)), ServerError::State(_)));
}
