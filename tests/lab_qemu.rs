//! `roundhouse lab up --qemu 1` end to end: one real QEMU machine (UEFI, iPXE, GRUB, a
//! Debian kernel, CoreOS Ignition) behind its own `ipmi_sim` BMC. `apply --yes` PXE-installs
//! it over IPMI; `lab status` shows it powered on with its SSH forward; `roundhouse status`
//! says installed; SSH with the pinned host key reaches the installed OS, where the
//! controller hook ran; `lab down` leaves no process behind. The lab runs with the knobs a
//! real Flatcar image needs set to non-default values (`--image-dir` on the image
//! `lab/qemu/build-image.sh` built, `--os-version`, `--memory`, `--disk-size`), and a restart
//! without them keeps them.
//!
//! Ignored by default: a PXE install under TCG takes minutes (docs/lab.md). Run it with
//! `cargo test --test lab_qemu -- --ignored`. Needs the Debian packages that
//! `scripts/install-test-deps` installs (QEMU, OVMF, iPXE, OpenIPMI, the image build tools,
//! openssh-client); `lab up` names any that are missing. The image is built or reused from
//! `<target>/qemu-lab/image` (shared with tests/qemu_flatcar.rs); the lab directory,
//! consoles included, is kept in `<target>/qemu-lab/lab-up` after a run.
//!
//! The tests that are not ignored need no QEMU: what `lab up --qemu` refuses before it starts
//! anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod pinned_ssh;

const BIN: &str = env!("CARGO_BIN_EXE_roundhouse");

/// `<target dir>/qemu-lab`: the binary under test lives in `<target dir>/<profile>/`.
fn lab_cache() -> PathBuf {
    Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("qemu-lab"))
        .expect("the roundhouse binary lives in a target directory")
}

fn text(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn roundhouse(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run roundhouse")
}

/// Pids of processes (other than this one) whose command line mentions `dir`.
fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.as_os_str().as_encoded_bytes().to_vec();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmd.windows(needle.len())
                .any(|w| w == needle)
                .then(|| (pid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect()
}

/// Stops the lab even when an assertion fails, so no VM or BMC outlives the test.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if self.0.join("lab.json").exists() {
            let _ = Command::new(BIN)
                .args(["lab", "down", "--dir"])
                .arg(self.0)
                .output();
        }
    }
}

fn serial_tail(dir: &Path) -> String {
    let s = std::fs::read(dir.join("vm/controller-1/serial.log"))
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
#[ignore = "boots a real VM under TCG: minutes; run with --ignored (docs/lab.md)"]
fn lab_up_qemu_installs_over_ipmi_and_down_cleans_up() {
    let ssh_found = Command::new("sh")
        .args(["-c", "command -v ssh"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ssh_found,
        "ssh not found: install the Debian package openssh-client"
    );
    let dir = lab_cache().join("lab-up");
    if dir.join("lab.json").exists() {
        // A killed earlier run may have left its machines on.
        let _ = roundhouse(
            &lab_cache(),
            &["lab", "down", "--purge", "--dir", &dir.to_string_lossy()],
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove the previous run's lab");
    }
    let dir_s = dir.to_string_lossy().to_string();
    let image = lab_cache().join("image");
    std::fs::create_dir_all(&image).expect("create the image cache");
    let _down = Down(&dir);

    // The image is built (or found cached) here, and lab up serves it as it is, the way it
    // serves Flatcar's own files: the --image-dir path is the one that runs.
    let started = Instant::now();
    let build = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/qemu/build-image.sh"))
        .arg(&image)
        .stdin(Stdio::null())
        .output()
        .expect("run lab/qemu/build-image.sh");
    assert!(
        build.status.success(),
        "lab/qemu/build-image.sh (it names a missing Debian package): {}",
        text(&build)
    );
    eprintln!("image build took {:.1} s", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let up = roundhouse(
        &lab_cache(),
        &[
            "lab",
            "up",
            "--qemu",
            "1",
            "--dir",
            &dir_s,
            "--image-dir",
            &image.to_string_lossy(),
            "--os-version",
            OS_VERSION,
            "--memory",
            "1536",
            "--disk-size",
            "3G",
        ],
    );
    assert!(
        up.status.success(),
        "lab up --qemu 1 (exit 69 means a Debian package is missing; the message names it): {}",
        text(&up)
    );
    eprintln!("lab up took {:.1} s", started.elapsed().as_secs_f64());
    let cluster = std::fs::read_to_string(dir.join("cluster.hcl")).expect("the cluster file");
    assert!(cluster.contains("driver        = \"ipmi\""), "{cluster}");
    assert!(
        cluster.contains(&format!("os_version     = \"{OS_VERSION}\"")),
        "{cluster}"
    );
    let served = dir.join("boot-assets/flatcar").join(OS_VERSION);
    assert_eq!(
        std::fs::read_link(served.join("flatcar_production_image.bin.bz2")).expect("served"),
        image.join("flatcar_production_image.bin.bz2")
    );
    let disk = dir.join("vm/controller-1/disk.img");
    assert_eq!(
        std::fs::metadata(&disk).expect("the disk").len(),
        3 << 30,
        "--disk-size 3G"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("lab.json")).expect("lab.json"))
            .expect("lab.json is JSON");
    assert_eq!(state["qemu"]["memory_mib"], 1536, "{state}");
    assert_eq!(state["qemu"]["disk_bytes"], 3u64 << 30, "{state}");
    assert_eq!(state["qemu"]["os_version"], OS_VERSION, "{state}");
    assert_eq!(state["qemu"]["image_built"], false, "{state}");
    let bmc_dir = PathBuf::from(
        state["qemu"]["machines"][0]["bmc_dir"]
            .as_str()
            .expect("lab.json records the BMC"),
    );

    let started = Instant::now();
    let mut apply = Command::new(BIN)
        .args(["apply", "cluster.hcl", "--yes"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roundhouse apply");
    // A PXE install takes 65–150 s under TCG; well past that something hangs.
    let deadline = Duration::from_secs(900);
    while apply.try_wait().expect("wait for apply").is_none() {
        if started.elapsed() > deadline {
            let _ = apply.kill();
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = apply.wait_with_output().expect("apply output");
    assert!(
        out.status.success(),
        "apply failed after {:.0} s: {}\n--- console (tail) ---\n{}",
        started.elapsed().as_secs_f64(),
        text(&out),
        serial_tail(&dir)
    );
    eprintln!(
        "apply (PXE install over IPMI) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The machine runs with --memory's size.
    let qemu_pid = std::fs::read_to_string(dir.join("vm/controller-1/qemu.pid"))
        .expect("qemu.pid of the running machine");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", qemu_pid.trim()))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .expect("QEMU's command line");
    assert!(cmdline.contains(" -m 1536 "), "{cmdline}");
    // The install went through the BMC: PXE chosen and the power switched by ipmi_sim.
    let calls = std::fs::read_to_string(bmc_dir.join("calls")).unwrap_or_default();
    assert!(calls.contains("set boot pxe"), "BMC calls:\n{calls}");
    assert!(calls.contains("set power 1"), "BMC calls:\n{calls}");

    let status = roundhouse(
        &dir,
        &["lab", "status", "--dir", &dir_s, "--output", "json"],
    );
    assert!(status.status.success(), "lab status: {}", text(&status));
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let row = &rows[0];
    assert_eq!(row["name"], "controller-1", "{rows}");
    assert_eq!(row["power"], "on", "{rows}");
    assert_eq!(row["phase"], "running", "{rows}");
    assert_eq!(row["disks"][0], "vda: partitioned", "{rows}");
    let ssh_addr = row["ssh"].as_str().expect("an SSH forward").to_string();
    let (addr, port) = ssh_addr.rsplit_once(':').expect("ADDRESS:PORT");

    let rs = roundhouse(&dir, &["status", "cluster.hcl", "--output", "json"]);
    assert!(rs.status.success(), "status: {}", text(&rs));
    let v: serde_json::Value = serde_json::from_slice(&rs.stdout).expect("JSON");
    let node = &v["nodes"][0];
    assert_eq!(node["state"], "installed", "{v}");
    assert_eq!(node["applied_digest"], node["desired_digest"], "{v}");

    // SSH with the operator key, accepting only the host key roundhouse pinned.
    let port: u16 = port.parse().expect("a port number");
    let ssh = pinned_ssh::ssh(
        &dir.join("assets"),
        "controller-1",
        addr,
        port,
        "hostname; cat /etc/roundhouse-lab/release; cat /etc/roundhouse-lab/secrets-installed",
    );
    assert!(ssh.status.success(), "ssh: {}", text(&ssh));
    let seen = String::from_utf8_lossy(&ssh.stdout).into_owned();
    let mut lines = seen.lines();
    assert_eq!(lines.next(), Some("controller-1"), "{seen}");
    assert_eq!(lines.next(), Some("role=controller revision=1"), "{seen}");
    assert!(
        lines
            .next()
            .is_some_and(|l| l.ends_with("/etc/ssl/etcd/ca.crt")),
        "the hook's marker: {seen}"
    );

    let down = roundhouse(&lab_cache(), &["lab", "down", "--dir", &dir_s]);
    assert!(down.status.success(), "lab down: {}", text(&down));
    let said = String::from_utf8_lossy(&down.stdout);
    for what in ["QEMU machine", "BMC (ipmi_sim)", "boot server"] {
        assert!(
            said.contains(what),
            "lab down did not stop the {what}:\n{said}"
        );
    }
    // bmc.sh's supervisor and QEMU may take a moment to be reaped.
    let gone = Instant::now();
    let mut left = processes_in(&dir);
    while !left.is_empty() && gone.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        left = processes_in(&dir);
    }
    assert!(left.is_empty(), "processes left after lab down: {left:?}");
    let after = roundhouse(&dir, &["lab", "status", "--dir", &dir_s]);
    assert!(
        !after.status.success(),
        "lab status after down: {}",
        text(&after)
    );

    // A restart without the knobs keeps them: same image, version, memory, disk.
    let again = roundhouse(&lab_cache(), &["lab", "up", "--qemu", "1", "--dir", &dir_s]);
    assert!(again.status.success(), "lab up again: {}", text(&again));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("not built: --image-dir"), "{said}");
    let vm_args = std::fs::read_to_string(bmc_dir.join("run-vm-args")).expect("run-vm-args");
    assert!(vm_args.contains("--memory 1536"), "{vm_args}");
    assert_eq!(std::fs::metadata(&disk).expect("the disk").len(), 3 << 30);
    let down = roundhouse(&lab_cache(), &["lab", "down", "--dir", &dir_s]);
    assert!(down.status.success(), "lab down: {}", text(&down));
    // The disks are not resized: a restart asking for another size is refused, starting nothing.
    let resized = roundhouse(
        &lab_cache(),
        &[
            "lab",
            "up",
            "--qemu",
            "1",
            "--dir",
            &dir_s,
            "--disk-size",
            "4G",
        ],
    );
    assert_eq!(resized.status.code(), Some(1), "{}", text(&resized));
    let said = String::from_utf8_lossy(&resized.stderr);
    assert!(said.contains("were made 3G"), "{said}");
    assert!(processes_in(&dir).is_empty(), "{:?}", processes_in(&dir));
}

/// The version the test serves the lab image as: not the default 9999.0.0, so the served
/// directory and the installer's download URL follow `--os-version`.
const OS_VERSION: &str = "4459.1.0";

/// `--image-dir` missing one of Flatcar's files: exit 69 naming the file and where to
/// download it, before anything is created (no QEMU needed: the image is checked first and
/// missing host programs are listed with it).
#[test]
fn an_image_dir_missing_a_file_is_named_before_anything_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    let image = tmp.path().join("flatcar");
    std::fs::create_dir(&image).expect("mkdir");
    for f in [
        "flatcar_production_pxe.vmlinuz",
        "flatcar_production_pxe_image.cpio.gz",
        "flatcar_production_image.bin.bz2",
    ] {
        std::fs::write(image.join(f), "not really Flatcar").expect("write");
    }
    std::fs::write(image.join("version.txt"), "FLATCAR_VERSION=4230.2.4\n").expect("write");
    let out = Command::new(BIN)
        .args(["lab", "up", "--qemu", "1", "--dir"])
        .arg(&dir)
        .arg("--image-dir")
        .arg(&image)
        .args(["--memory", "3072", "--disk-size", "12G"])
        .stdin(Stdio::null())
        .output()
        .expect("run roundhouse");
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let sig = image.join("flatcar_production_image.bin.bz2.sig");
    assert!(
        err.contains(&format!(
            "file `{}` is missing: download https://stable.release.flatcar-linux.net/amd64-usr/4230.2.4/flatcar_production_image.bin.bz2.sig",
            sig.display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("flatcar_production_pxe.vmlinuz`"),
        "only the missing file is named: {err}"
    );
    assert!(!dir.exists(), "lab up created {}", dir.display());
    assert!(
        processes_in(tmp.path()).is_empty(),
        "processes left: {:?}",
        processes_in(tmp.path())
    );
}

/// A size that is not one is refused by the command line (exit 64), naming the value.
#[test]
fn a_bad_disk_size_is_a_command_line_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    let out = Command::new(BIN)
        .args(["lab", "up", "--qemu", "1", "--disk-size", "12Q", "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run roundhouse");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"12Q\" is not a size"), "{err}");
    assert!(!dir.exists(), "lab up created {}", dir.display());
}

/// Missing packages are named before anything starts: exit 69, nothing created.
#[test]
fn missing_packages_are_named_before_anything_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    let out = Command::new(BIN)
        .args(["lab", "up", "--qemu", "1", "--dir"])
        .arg(&dir)
        // Nothing is found on an empty PATH.
        .env("PATH", "")
        .output()
        .expect("run roundhouse");
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for package in ["qemu-system-x86", "openipmi", "grub-common", "e2fsprogs"] {
        assert!(err.contains(&format!("apt-get install {package}")), "{err}");
    }
    assert!(
        !dir.exists(),
        "lab up created {} before failing",
        dir.display()
    );
}
