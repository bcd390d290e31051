//! `roundhouse lab` end to end through the binary: `lab up`/`status`/`power`/`down` (and a
//! restart keeping ports), the prerequisite check, and `lab demo` with what it verified.
//!
//! Every lab lives in its own temporary directory; a guard stops whatever runs there and
//! removes its mounts even when an assertion fails, so no process or mount is left behind.
//! The simulator needs util-linux (`unshare`, `nsenter`), `mount`, coreutils and bash; as
//! root it uses mount namespaces, otherwise user namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_roundhouse");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running roundhouse")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pids of processes whose command line mentions `dir`.
fn processes_in(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes().to_vec();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie && cmd.windows(needle.len()).any(|w| w == needle.as_slice())
        })
        .collect()
}

fn mounts_in(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// A lab directory that is cleaned up however the test ends.
struct LabDirGuard {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl LabDirGuard {
    fn new() -> LabDirGuard {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lab");
        LabDirGuard { _tmp: tmp, dir }
    }

    fn arg(&self) -> &str {
        self.dir.to_str().unwrap()
    }
}

impl Drop for LabDirGuard {
    fn drop(&mut self) {
        if self.dir.join("lab.json").exists() {
            let _ = Command::new(BIN)
                .args(["lab", "down", "--dir", self.arg()])
                .output();
        }
        // Whatever `lab down` could not stop (a test that failed half-way through `up`).
        for pid in processes_in(&self.dir) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for m in mounts_in(&self.dir).iter().rev() {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}

fn status_json(lab: &LabDirGuard) -> Vec<serde_json::Value> {
    let out = run(&["lab", "status", "--dir", lab.arg(), "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(rows: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row for {name}: {rows:?}"))
}

fn wait_for_power(lab: &LabDirGuard, name: &str, want: &str) {
    let start = Instant::now();
    loop {
        let rows = status_json(lab);
        if row(&rows, name)["power"] == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name} not {want}: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn up_status_power_down_and_restart() {
    let lab = LabDirGuard::new();
    // The command driver here (`roundhouse lab power NODE pxe`); the demo uses Redfish.
    let out = run(&[
        "lab",
        "up",
        "--dir",
        lab.arg(),
        "--controllers",
        "1",
        "--workers",
        "2",
        "--power",
        "command",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.dir.join("lab.json")).unwrap()).unwrap();
    let machines = state["machines"].as_array().unwrap().clone();
    assert_eq!(machines.len(), 3);
    let pids = [
        state["serve"]["pid"].as_u64().unwrap() as u32,
        state["fleet"]["pid"].as_u64().unwrap() as u32,
    ];
    let running = processes_in(&lab.dir);
    for pid in pids {
        assert!(running.contains(&pid), "pid {pid} not running: {running:?}");
    }
    // The cluster file names each machine by its own address and port, and loads.
    let cluster = std::fs::read_to_string(lab.dir.join("cluster.hcl")).unwrap();
    for m in &machines {
        assert!(cluster.contains(&format!(
            "domain   = \"{}\"",
            m["address"].as_str().unwrap()
        )));
        assert!(cluster.contains(&format!("ssh_port = {}", m["ssh_port"])));
    }
    let plan = run(&["plan", lab.dir.join("cluster.hcl").to_str().unwrap()]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("3 provision"),
        "{}",
        text(&plan)
    );

    let rows = status_json(&lab);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r["power"], "off", "{r}");
        assert_eq!(r["disks"][0], "sda: blank", "{r}");
    }

    // A second `up` on a running lab refuses and names the pids.
    let again = run(&[
        "lab",
        "up",
        "--dir",
        lab.arg(),
        "--controllers",
        "1",
        "--workers",
        "2",
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("running already"),
        "{}",
        text(&again)
    );

    // Power through the BMC.
    let on = run(&["lab", "power", "--dir", lab.arg(), "worker-1", "on"]);
    assert!(on.status.success(), "{}", text(&on));
    wait_for_power(&lab, "worker-1", "on");
    let off = run(&["lab", "power", "--dir", lab.arg(), "worker-1", "off"]);
    assert!(off.status.success(), "{}", text(&off));
    wait_for_power(&lab, "worker-1", "off");
    let unknown = run(&["lab", "power", "--dir", lab.arg(), "worker-9", "on"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("controller-1, worker-1, worker-2"),
        "{}",
        text(&unknown)
    );

    // apply through the command driver; `lab status` then shows the config each machine
    // runs, which is what `roundhouse status` recorded.
    let cluster_file = lab.dir.join("cluster.hcl");
    let cluster_arg = cluster_file.to_str().unwrap();
    let apply = run(&[
        "apply",
        cluster_arg,
        "--yes",
        "--poll-initial",
        "0.2",
        "--poll-max",
        "0.5",
        "--pxe-timeout",
        "120",
    ]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert!(
        String::from_utf8_lossy(&apply.stderr).contains("network boot once, restarted"),
        "the power command's output is in apply's log: {}",
        text(&apply)
    );
    let recorded = run(&["status", cluster_arg, "--output", "json"]);
    assert!(recorded.status.success(), "{}", text(&recorded));
    let recorded: serde_json::Value = serde_json::from_slice(&recorded.stdout).unwrap();
    let rows = status_json(&lab);
    for node in recorded["nodes"].as_array().unwrap() {
        let r = row(&rows, node["name"].as_str().unwrap());
        assert_eq!(r["power"], "on", "{r}");
        assert_eq!(r["os"], "installed", "{r}");
        assert_eq!(r["config_digest"], node["applied_digest"], "{r} vs {node}");
        assert_eq!(r["installs"], 1, "{r}");
    }

    // Faults on demand: ssh-refused closes the installed OS's sshd at once.
    let worker2 = machines.iter().find(|m| m["name"] == "worker-2").unwrap();
    let ssh_addr = format!(
        "{}:{}",
        worker2["address"].as_str().unwrap(),
        worker2["ssh_port"]
    );
    assert!(
        std::net::TcpStream::connect(&ssh_addr).is_ok(),
        "sshd answers on {ssh_addr}"
    );
    let fault = run(&[
        "lab",
        "fault",
        "--dir",
        lab.arg(),
        "worker-2",
        "ssh-refused",
    ]);
    assert!(fault.status.success(), "{}", text(&fault));
    assert_eq!(
        row(&status_json(&lab), "worker-2")["faults"],
        serde_json::json!(["ssh-refused"])
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(&ssh_addr).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sshd still answers"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let clear = run(&["lab", "fault", "--dir", lab.arg(), "worker-2", "none"]);
    assert!(clear.status.success(), "{}", text(&clear));
    assert_eq!(
        row(&status_json(&lab), "worker-2")["faults"],
        serde_json::json!([])
    );
    let bad = run(&[
        "lab",
        "fault",
        "--dir",
        lab.arg(),
        "worker-2",
        "disk-on-fire",
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));

    let down = run(&["lab", "down", "--dir", lab.arg()]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        processes_in(&lab.dir).is_empty(),
        "{:?}",
        processes_in(&lab.dir)
    );
    assert!(mounts_in(&lab.dir).is_empty(), "{:?}", mounts_in(&lab.dir));
    let status = run(&["lab", "status", "--dir", lab.arg()]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    assert!(String::from_utf8_lossy(&status.stderr).contains("not running"));

    // A restart keeps the machines' addresses and ports (the cluster file names them).
    let up = run(&[
        "lab",
        "up",
        "--dir",
        lab.arg(),
        "--controllers",
        "1",
        "--workers",
        "2",
    ]);
    assert!(up.status.success(), "{}", text(&up));
    // Disks persist: the restarted machines are still installed.
    let rows = status_json(&lab);
    assert!(
        rows.iter()
            .all(|r| r["disks"][0] == "sda: flatcar stable 3975.2.0"),
        "{rows:?}"
    );
    let state2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.dir.join("lab.json")).unwrap()).unwrap();
    assert_eq!(state2["machines"], state["machines"]);
    assert_eq!(state2["boot_url"], state["boot_url"]);

    let purge = run(&["lab", "down", "--dir", lab.arg(), "--purge"]);
    assert!(purge.status.success(), "{}", text(&purge));
    assert!(!lab.dir.exists());
    assert!(processes_in(&lab.dir).is_empty());
}

#[test]
fn missing_programs_are_named_with_their_packages() {
    let lab = LabDirGuard::new();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["lab", "up", "--dir", lab.arg()])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "`unshare`",
        "`chroot`",
        "`bash`",
        "apt-get install",
        "util-linux",
    ] {
        assert!(err.contains(needle), "{needle} missing in:\n{err}");
    }
    assert!(
        !lab.dir.exists(),
        "nothing is created before the check passes"
    );
}

#[test]
fn demo_runs_the_scenario_and_verifies_every_node() {
    let lab = LabDirGuard::new();
    let out = run(&["lab", "demo", "--dir", lab.arg()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("6 of 6 nodes run what `roundhouse status` says"),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.dir.join("demo-report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    // How long it takes is a benchmark's business (docs/benchmarks.md), not a test's: a loaded
    // CI machine must not fail a demo that did everything right.
    assert!(
        report["seconds"].as_f64().is_some_and(|s| s > 0.0),
        "the report records its duration: {report:#}"
    );
    // The plan after the snippet change: workers in place, controllers held.
    for (node, action) in [
        ("controller-1", "hold"),
        ("controller-2", "hold"),
        ("controller-3", "hold"),
        ("worker-1", "reprovision-in-place"),
        ("worker-2", "reprovision-in-place"),
        ("worker-3", "reprovision-in-place"),
    ] {
        assert_eq!(report["plan_after_change"][node], action, "{report:#}");
    }
    assert_eq!(report["plan_recreate"]["controller-1"], "provision");
    assert_eq!(report["workers_on_new_digest"].as_array().unwrap().len(), 3);
    assert_eq!(report["controllers_held"].as_array().unwrap().len(), 3);

    // What was found on each node over SSH.
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6);
    for n in nodes {
        let name = n["node"].as_str().unwrap();
        assert_eq!(n["ok"], true, "{n:#}");
        assert_eq!(n["hostname"], name);
        assert_eq!(n["ignition_bytes_match"], true, "{n:#}");
        let (revision, installs) = match name {
            "controller-1" => (2, 2),
            "controller-2" | "controller-3" => (1, 1),
            _ => (2, 1),
        };
        assert_eq!(n["revision"], revision, "{n:#}");
        assert_eq!(n["pxe_installs"], installs, "{n:#}");
        let role = n["role"].as_str().unwrap();
        assert_eq!(
            n["found_release"],
            format!("role={role} revision={revision}"),
            "{n:#}"
        );
        if role == "controller" {
            assert_eq!(n["hook_upload_ok"], true, "{n:#}");
            assert_eq!(n["hook_ran"], true, "{n:#}");
        } else {
            assert!(n["hook_ran"].is_null(), "{n:#}");
        }
        assert_eq!(
            n["status_applied"] == n["status_desired"],
            name != "controller-2" && name != "controller-3"
        );
    }

    // The demo stopped its lab: nothing runs, nothing is mounted.
    assert!(
        processes_in(&lab.dir).is_empty(),
        "{:?}",
        processes_in(&lab.dir)
    );
    assert!(mounts_in(&lab.dir).is_empty(), "{:?}", mounts_in(&lab.dir));
}

#[test]
fn a_simulator_that_cannot_start_takes_the_boot_server_down_with_it() {
    let lab = LabDirGuard::new();
    let up = |lab: &LabDirGuard| {
        run(&[
            "lab",
            "up",
            "--dir",
            lab.arg(),
            "--controllers",
            "1",
            "--workers",
            "0",
        ])
    };
    let first = up(&lab);
    assert!(first.status.success(), "{}", text(&first));
    let down = run(&["lab", "down", "--dir", lab.arg()]);
    assert!(down.status.success(), "{}", text(&down));
    // The simulator's state directory becomes a file: the fleet cannot start.
    let sim = lab.dir.join("sim");
    std::fs::remove_dir_all(&sim).unwrap();
    std::fs::write(&sim, "not a directory").unwrap();
    let second = up(&lab);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("simulator"), "{err}");
    assert!(
        err.contains("last lines of"),
        "the error shows the log's tail: {err}"
    );
    assert!(
        processes_in(&lab.dir).is_empty(),
        "the boot server was stopped again: {:?}",
        processes_in(&lab.dir)
    );
    assert!(mounts_in(&lab.dir).is_empty(), "{:?}", mounts_in(&lab.dir));
}

#[test]
fn the_demo_refuses_a_directory_that_is_not_a_previous_demo() {
    let lab = LabDirGuard::new();
    std::fs::create_dir_all(&lab.dir).unwrap();
    std::fs::write(lab.dir.join("notes.txt"), "mine").unwrap();
    let out = run(&["lab", "demo", "--dir", lab.arg()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a previous demo's directory"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(lab.dir.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(processes_in(&lab.dir).is_empty());
}
