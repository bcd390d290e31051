//! `roundhouse power` end to end: cluster file → node's `power` block → IPMI driver → OpenIPMI's
//! `ipmi_sim` (Debian `openipmi`), whose chassis script records every call.

#[path = "../crates/roundhouse-power/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{PASSWORD, Sim, USER};

const PW_VAR: &str = "ROUNDHOUSE_TEST_POWER_CLI_PW";

fn cluster(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"cluster {{
  name             = "lab"
  asset_dir        = "assets"
  ssh_pubkeys      = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@lab"]
  boot_server_http = "http://10.0.0.2:8080"
}}

node "n1" {{
  role   = "controller"
  mac    = "52:54:00:00:00:01"
  domain = "10.0.0.11"
  power {{
    driver       = "ipmi"
    address      = "127.0.0.1"
    port         = {port}
    username     = "{USER}"
    password_env = "{PW_VAR}"
  }}
}}

node "n2" {{
  role   = "worker"
  mac    = "52:54:00:00:00:02"
  domain = "10.0.0.12"
  power {{
    driver  = "command"
    command = "echo pxe for $name"
  }}
}}
"#
    );
    let path = dir.join("cluster.hcl");
    std::fs::write(&path, text).unwrap();
    path
}

fn roundhouse(cluster: &std::path::Path, args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roundhouse"));
    cmd.arg("power")
        .arg(cluster)
        .args(args)
        .args(["--request-timeout", "1", "--retries", "1", "--settle", "15"])
        .env_remove(PW_VAR);
    if let Some(p) = password {
        cmd.env(PW_VAR, p);
    }
    cmd.output().expect("running roundhouse")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn pxe_then_disk_reach_the_chassis_and_status_reads_back() {
    let sim = Sim::start(true);
    let file = cluster(sim.dir.path(), sim.port);

    let on = roundhouse(&file, &["n1", "on"], Some(PASSWORD));
    assert!(on.status.success(), "{}", text(&on.stderr));
    assert!(
        text(&on.stdout).contains("power: on"),
        "{}",
        text(&on.stdout)
    );

    let pxe = roundhouse(&file, &["n1", "pxe"], Some(PASSWORD));
    assert!(pxe.status.success(), "{}", text(&pxe.stderr));
    let out = text(&pxe.stdout);
    assert!(
        out.contains("next boot set to PXE next boot only (EFI)")
            && out.contains("power was on: power cycle"),
        "{out}"
    );

    let disk = roundhouse(&file, &["n1", "disk"], Some(PASSWORD));
    assert!(disk.status.success(), "{}", text(&disk.stderr));

    // ipmi_sim calls a hard-drive boot `default`.
    assert_eq!(
        sim.sets(),
        [
            "set power 1",
            "set boot pxe",
            "set power 0",
            "set power 1",
            "set boot default"
        ]
    );

    let status = roundhouse(&file, &["n1", "status", "--output", "json"], Some(PASSWORD));
    assert!(status.status.success(), "{}", text(&status.stderr));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["node"], "n1");
    assert_eq!(v["power"], "on");
    assert_eq!(v["boot"]["device"], "disk");
}

#[test]
fn credentials_problems_name_the_node_and_never_the_password() {
    let sim = Sim::start(true);
    let file = cluster(sim.dir.path(), sim.port);

    let unset = roundhouse(&file, &["n1", "status"], None);
    assert_eq!(unset.status.code(), Some(1));
    let err = text(&unset.stderr);
    assert!(err.contains("node n1") && err.contains(PW_VAR), "{err}");

    let wrong = roundhouse(&file, &["n1", "on"], Some("Zz-not-it-42"));
    assert_eq!(wrong.status.code(), Some(1));
    let err = text(&wrong.stderr);
    assert!(
        err.contains("node n1") && err.contains("wrong password") && !err.contains("Zz-not-it-42"),
        "{err}"
    );
    assert!(sim.sets().is_empty(), "{:?}", sim.calls());
}

#[test]
fn command_driver_can_only_pxe_and_unknown_nodes_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = cluster(dir.path(), 9);

    let pxe = roundhouse(&file, &["n2", "pxe"], None);
    assert!(pxe.status.success(), "{}", text(&pxe.stderr));
    assert_eq!(text(&pxe.stdout), "pxe for n2\n");

    let on = roundhouse(&file, &["n2", "on"], None);
    assert_eq!(on.status.code(), Some(1));
    assert!(
        text(&on.stderr).contains("can only `pxe`"),
        "{}",
        text(&on.stderr)
    );

    let none = roundhouse(&file, &["n9", "status"], None);
    assert_eq!(none.status.code(), Some(64));
    assert!(
        text(&none.stderr).contains("nodes: n1, n2"),
        "{}",
        text(&none.stderr)
    );
}
