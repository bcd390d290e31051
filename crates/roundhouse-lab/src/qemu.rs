//! `lab up --qemu N`: real machines instead of simulated ones. Each is a QEMU VM (UEFI
//! firmware, iPXE, GRUB, a Debian kernel, the real CoreOS Ignition; docs/qemu-lab.md) behind
//! its own OpenIPMI `ipmi_sim` BMC, netbooting from the lab's `roundhouse serve`.
//!
//! The shell scripts in `lab/qemu/` do the machine work (image build with its input-hash
//! cache, `bmc.sh` for the BMC and the VM supervisor, `run-vm.sh` for QEMU); this module
//! checks the host, runs them, writes the cluster file and records everything in `lab.json`
//! so `lab down` and `lab status` find it.
//!
//! Instead of the Debian-built image, `--image-dir` serves Flatcar's own release files (see
//! the README's "The same lab with real Flatcar"); [`ImageDir`] checks such a directory.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster;
use crate::error::LabError;
use crate::layout::{LabDir, LabMachine, LabState, Proc};
use crate::procs;
use crate::up::{Started, bmc_password, progress, start_serve};

/// The `os_version` the cluster file names: the directory the lab image is served from under
/// `/assets/flatcar/` (the image is not a Flatcar release, so no real version number).
pub const OS_VERSION: &str = "9999.0.0";

/// Most QEMU machines `lab up --qemu` starts: each takes 1 GiB of memory and, under TCG, a
/// good part of a core while it boots.
pub const MAX_QEMU_MACHINES: usize = 16;

/// Memory of each machine unless `--memory` says otherwise: plenty for the lab image, whose
/// PXE initrd is 14 MB.
pub const DEFAULT_MEMORY_MIB: u32 = 1024;

/// Below this, `lab up` warns for a real Flatcar image: its PXE initrd holds the whole OS and
/// unpacks into RAM (Fedora CoreOS, built the same way, documents 2 GiB as its floor).
pub const FLATCAR_MEMORY_MIB: u32 = 3072;

/// Size of each machine's (sparse) disk unless `--disk-size` says otherwise: the lab image is
/// about 230 MiB, ROOT gets the rest.
pub const DEFAULT_DISK_BYTES: u64 = 2 << 30;

/// Smallest disk `lab up` accepts: the lab image's partitions end at 227 MiB.
pub const MIN_DISK_BYTES: u64 = 256 << 20;

/// Smallest disk `lab up` accepts for a real Flatcar image: `flatcar-install` writes the whole
/// image, whose partitions (flatcar/scripts' `disk_layout.json`) end at about 7.8 GiB, and a
/// smaller disk fails minutes later inside the installer with "No space left on device".
pub const FLATCAR_MIN_DISK_BYTES: u64 = 9 << 30;

/// Longest password both ends take: IPMI v2.0 allows 20 bytes, but ipmi_sim keeps 16 (an
/// IPMI 1.5 password) and then fails every login.
const IPMI_PASSWORD_MAX: usize = 16;

/// The image files `roundhouse serve` hands to the installer and the PXE boot.
const IMAGE_FILES: [&str; 3] = [
    "flatcar_production_image.bin.bz2",
    "flatcar_production_pxe.vmlinuz",
    "flatcar_production_pxe_image.cpio.gz",
];

/// The image's detached signature. Flatcar's `flatcar-install` always fetches it from beside
/// the image (roundhouse's installer passes `-b`, never `-f`) and refuses an image it cannot
/// verify; the lab image's installer checks no signature.
const SIGNATURE_FILE: &str = "flatcar_production_image.bin.bz2.sig";

/// A Flatcar release directory's version file (`FLATCAR_VERSION=…`), which
/// `flatcar-install -V current` also reads.
const VERSION_FILE: &str = "version.txt";

/// What `lab/qemu/build-image.sh` writes beside its image: how a lab-built directory is told
/// from a Flatcar release.
const INPUT_HASH_FILE: &str = "input-hash";

/// What `lab up --qemu` is asked to do.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// The lab directory.
    pub dir: PathBuf,
    /// Number of machines.
    pub machines: usize,
    /// How many of them are controllers (the first ones).
    pub controllers: usize,
    /// The roundhouse binary (runs the boot server; asked for the BMCs' power state).
    pub binary: PathBuf,
    /// A directory holding the image to serve as it is (Flatcar's release files, or what
    /// `lab/qemu/build-image.sh` wrote): nothing is built. `None`: what a restarted lab used,
    /// else build the lab image in `image_cache`.
    pub image_dir: Option<PathBuf>,
    /// Where the lab image is built and cached (`lab/qemu/build-image.sh OUT_DIR`) when
    /// `image_dir` is not given: `None` is a restarted lab's, else [`default_image_dir`].
    pub image_cache: Option<PathBuf>,
    /// The `os_version` of the cluster file and the served directory: `None` takes the image
    /// directory's `version.txt`, or [`OS_VERSION`] for the lab image.
    pub os_version: Option<String>,
    /// Memory per machine in MiB: `None` is a restarted lab's, else [`DEFAULT_MEMORY_MIB`].
    pub memory_mib: Option<u32>,
    /// Disk size per machine in bytes: `None` is a restarted lab's, else
    /// [`DEFAULT_DISK_BYTES`].
    pub disk_bytes: Option<u64>,
    /// The `lab/qemu` directory of a roundhouse checkout.
    pub scripts: PathBuf,
    /// The address the boot server listens on, which the VMs reach through QEMU's NAT:
    /// `None` picks the host's first non-loopback IPv4 address.
    pub host_ip: Option<String>,
}

/// A QEMU machine of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuMachine {
    /// Node name.
    pub name: String,
    /// UDP port of its BMC on 127.0.0.1.
    pub bmc_port: u16,
    /// The BMC's directory (`bmc.sh` state: lan.conf, boot device, calls, logs).
    pub bmc_dir: PathBuf,
    /// The VM's directory (disk, UEFI variables, serial consoles, qemu.pid).
    pub vm_dir: PathBuf,
}

/// The QEMU part of `lab.json`. The fields after `machines` came later: a `lab.json` without
/// them is a lab of that time (lab image built, 1 GiB, 2 GiB disks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuLab {
    /// The `lab/qemu` scripts the machines run (`lab down` calls `bmc.sh stop`).
    pub scripts: PathBuf,
    /// The image directory.
    pub image_dir: PathBuf,
    /// The machines, in the order of the lab's `machines`.
    pub machines: Vec<QemuMachine>,
    /// Whether `lab up` builds the image in `image_dir` (false: served as it is, `--image-dir`).
    #[serde(default = "built_default")]
    pub image_built: bool,
    /// The `os_version` the cluster file names.
    #[serde(default = "os_version_default")]
    pub os_version: String,
    /// Memory per machine, MiB.
    #[serde(default = "memory_default")]
    pub memory_mib: u32,
    /// Size of each machine's sparse disk, bytes.
    #[serde(default = "disk_default")]
    pub disk_bytes: u64,
}

fn built_default() -> bool {
    true
}

fn os_version_default() -> String {
    OS_VERSION.to_string()
}

fn memory_default() -> u32 {
    DEFAULT_MEMORY_MIB
}

fn disk_default() -> u64 {
    DEFAULT_DISK_BYTES
}

/// Parses a disk size: a whole number with a binary unit, `K`, `M`, `G` or `T` (also written
/// `KiB`, `MiB`, …; any case), as `qemu-img` and `truncate` read them. A bare number is
/// refused rather than taken as bytes: `--disk-size 12` meaning 12 bytes is never intended.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        "" if !number.is_empty() => {
            return Err(format!(
                "{text:?} has no unit: write e.g. 12G or 2048M (K, M, G, T; powers of 1024)"
            ));
        }
        _ => {
            return Err(format!(
                "{text:?} is not a size: write a whole number and a unit, e.g. 12G or 2048M (K, M, G, T; powers of 1024)"
            ));
        }
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a size: write a whole number and a unit, e.g. 12G or 2048M")
    })?;
    if n == 0 {
        return Err(format!("{text:?}: a disk needs more than 0 bytes"));
    }
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A size for messages: whole GiB or MiB when it is one, else bytes.
pub fn format_size(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 30) {
        format!("{}G", bytes >> 30)
    } else if bytes.is_multiple_of(1 << 20) {
        format!("{}M", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Checks an OS version: it names a directory under `boot-assets/flatcar/` and goes into URLs
/// and the installer's command line, so only what Flatcar versions are made of is taken.
pub fn parse_os_version(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_+".contains(&b));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not an OS version: letters, digits, '.', '-', '_', '+', starting with a letter or digit (e.g. 4230.2.4)"
        ))
    }
}

/// `FLATCAR_VERSION` of a release's `version.txt`.
fn version_in(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("FLATCAR_VERSION="))
        .map(|v| v.trim().trim_matches(['"', '\'']))
        .filter(|v| !v.is_empty())
}

/// An image directory given with `--image-dir`, as `lab up` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDir {
    /// The directory, absolute.
    pub dir: PathBuf,
    /// Written by `lab/qemu/build-image.sh` (it has `input-hash`): its installer checks no
    /// signature. Otherwise the files are taken to be Flatcar's own.
    pub lab_built: bool,
    /// The version to serve it as, when known (`--os-version`, `version.txt`, or the lab
    /// image's [`OS_VERSION`]).
    pub version: Option<String>,
    /// One line per missing file: which, and where to get it.
    pub missing: Vec<String>,
}

impl ImageDir {
    /// Looks at `dir`: which of the files `lab up` serves are there, and which version they
    /// are. Reads only `version.txt`.
    pub fn inspect(dir: &Path, os_version: Option<&str>) -> Result<ImageDir, LabError> {
        let dir = std::path::absolute(dir).map_err(LabError::io(dir))?;
        let lab_built = dir.join(INPUT_HASH_FILE).is_file();
        let mut missing = Vec::new();
        let from_file = match std::fs::read_to_string(dir.join(VERSION_FILE)) {
            Ok(text) => match version_in(&text) {
                Some(v) => Some(parse_os_version(v).map_err(|e| {
                    LabError::Other(format!("{}: {e}", dir.join(VERSION_FILE).display()))
                })?),
                None => {
                    return Err(LabError::Other(format!(
                        "{} has no FLATCAR_VERSION= line: pass --os-version",
                        dir.join(VERSION_FILE).display()
                    )));
                }
            },
            Err(_) => None,
        };
        let version = os_version
            .map(str::to_string)
            .or(from_file)
            .or_else(|| lab_built.then(|| OS_VERSION.to_string()));
        let release = format!(
            "https://stable.release.flatcar-linux.net/amd64-usr/{}",
            version.as_deref().unwrap_or("current")
        );
        if !dir.is_dir() {
            missing.push(format!(
                "  - directory `{}` does not exist: download Flatcar's files into it (README.md, \"The same lab with real Flatcar\"), or build the lab image there with lab/qemu/build-image.sh",
                dir.display()
            ));
            return Ok(ImageDir {
                dir,
                lab_built,
                version,
                missing,
            });
        }
        if version.is_none() {
            missing.push(format!(
                "  - file `{}` is missing (it names the Flatcar version): download {release}/{VERSION_FILE}, or pass --os-version",
                dir.join(VERSION_FILE).display()
            ));
        }
        let needed = IMAGE_FILES
            .iter()
            .chain((!lab_built).then_some(&SIGNATURE_FILE));
        for f in needed {
            let path = dir.join(f);
            let there = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0);
            if there {
                continue;
            }
            let how = if lab_built {
                format!("rebuild it with lab/qemu/build-image.sh {}", dir.display())
            } else if *f == SIGNATURE_FILE {
                format!(
                    "download {release}/{f} (Flatcar's flatcar-install refuses an image without its signature)"
                )
            } else {
                format!("download {release}/{f}")
            };
            let what = if std::fs::metadata(&path).is_ok() {
                "is empty"
            } else {
                "is missing"
            };
            missing.push(format!("  - file `{}` {what}: {how}", path.display()));
        }
        Ok(ImageDir {
            dir,
            lab_built,
            version,
            missing,
        })
    }
}

/// The `lab/qemu` directory: `ROUNDHOUSE_LAB_QEMU_SCRIPTS`, else the checkout this binary was
/// built from (the lab is a developer tool that runs from a checkout).
pub fn default_scripts() -> PathBuf {
    if let Some(p) = std::env::var_os("ROUNDHOUSE_LAB_QEMU_SCRIPTS") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/qemu")
}

/// The default image cache: `$XDG_CACHE_HOME/roundhouse/qemu-image`, else
/// `~/.cache/roundhouse/qemu-image`, shared by every lab of the user.
pub fn default_image_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("roundhouse/qemu-image")
}

/// A program or file the QEMU lab needs and the Debian package that has it.
struct Needed {
    what: &'static str,
    package: &'static str,
    file: bool,
}

const fn prog(what: &'static str, package: &'static str) -> Needed {
    Needed {
        what,
        package,
        file: false,
    }
}

const fn file(what: &'static str, package: &'static str) -> Needed {
    Needed {
        what,
        package,
        file: true,
    }
}

/// What the machines need.
const MACHINE_NEEDS: &[Needed] = &[
    prog("bash", "bash"),
    prog("setsid", "util-linux"),
    prog("qemu-system-x86_64", "qemu-system-x86"),
    file("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
    file("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
    prog("ipmi_sim", "openipmi"),
];

/// What lab/qemu/build-image.sh needs (it runs even when its cache is current: the input
/// hash needs apt). Not needed with `--image-dir`.
const BUILD_NEEDS: &[Needed] = &[
    prog("apt-get", "apt"),
    prog("dpkg-deb", "dpkg"),
    prog("fakeroot", "fakeroot"),
    prog("mkfs.ext4", "e2fsprogs"),
    prog("debugfs", "e2fsprogs"),
    prog("mkfs.vfat", "dosfstools"),
    prog("mcopy", "mtools"),
    prog("sgdisk", "gdisk"),
    prog("grub-mkstandalone", "grub-common"),
    file("/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin"),
    prog("cpio", "cpio"),
    prog("zstd", "zstd"),
    prog("bzip2", "bzip2"),
    prog("readelf", "binutils"),
    prog("depmod", "kmod"),
    prog("cargo", "cargo"),
];

/// The lines for everything of `needs` that `present` says is missing, and the packages to
/// install.
fn missing<'a>(
    needs: impl IntoIterator<Item = &'a Needed>,
    present: impl Fn(&Needed) -> bool,
) -> Option<String> {
    let mut lines = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    for n in needs.into_iter().filter(|n| !present(n)) {
        let kind = if n.file { "file" } else { "program" };
        lines.push(format!(
            "  - {kind} `{}` is missing: apt-get install {}",
            n.what, n.package
        ));
        if !packages.contains(&n.package) {
            packages.push(n.package);
        }
    }
    if lines.is_empty() {
        return None;
    }
    lines.push(format!(
        "  all at once (Debian): apt-get install {}",
        packages.join(" ")
    ));
    Some(lines.join("\n"))
}

/// Checks the host before anything starts: programs, files, the scripts; the image build's
/// tools only when `build`. Returns the lines of what is missing.
fn preflight(scripts: &Path, build: bool) -> Vec<String> {
    let needs = MACHINE_NEEDS
        .iter()
        .chain(if build { BUILD_NEEDS } else { &[] });
    let mut lines: Vec<String> = missing(needs, |n| {
        if n.file {
            Path::new(n.what).exists()
        } else {
            crate::preflight::on_path(n.what)
        }
    })
    .into_iter()
    .collect();
    let scripts_needed: &[&str] = if build {
        &["build-image.sh", "bmc.sh", "run-vm.sh"]
    } else {
        &["bmc.sh", "run-vm.sh"]
    };
    for s in scripts_needed {
        if !scripts.join(s).is_file() {
            lines.push(format!(
                "  - {} is missing: run from a roundhouse checkout or set ROUNDHOUSE_LAB_QEMU_SCRIPTS to its lab/qemu",
                scripts.join(s).display()
            ));
        }
    }
    lines
}

/// The address QEMU's user network reaches the boot server on: the host's address towards
/// the default route (connecting a UDP socket sends nothing).
fn host_ip() -> Result<String, LabError> {
    let sock =
        UdpSocket::bind("0.0.0.0:0").map_err(|e| LabError::Other(format!("a UDP socket: {e}")))?;
    let ip = sock
        .connect("203.0.113.1:9")
        .or_else(|_| sock.connect("10.255.255.254:9"))
        .and_then(|_| sock.local_addr())
        .map(|a| a.ip())
        .map_err(|e| {
            LabError::Other(format!(
                "no route to pick the host's address from ({e}): pass --host-ip"
            ))
        })?;
    if ip.is_loopback() || ip.is_unspecified() {
        return Err(LabError::Other(format!(
            "the host's address is {ip}, which QEMU's user network cannot reach: pass --host-ip"
        )));
    }
    Ok(ip.to_string())
}

fn free_tcp_port(addr: &str) -> Result<u16, LabError> {
    TcpListener::bind(format!("{addr}:0"))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LabError::Other(format!("a free TCP port on {addr}: {e}")))
}

fn free_udp_port() -> Result<u16, LabError> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| LabError::Other(format!("a free UDP port on 127.0.0.1: {e}")))
}

/// Runs a script of `lab/qemu`, its output appended to `log`; fails with the log's tail.
fn script(
    scripts: &Path,
    args: &[&std::ffi::OsStr],
    what: &str,
    log: &Path,
) -> Result<(), LabError> {
    let (out, err) = procs::append_log(log)?;
    let status = Command::new("bash")
        .arg(scripts.join(args[0]))
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| LabError::Process {
            what: what.to_string(),
            why: format!("could not run bash: {e}"),
            log: None,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(LabError::Process {
            what: what.to_string(),
            why: format!("failed ({status})"),
            log: Some(log.to_path_buf()),
        })
    }
}

/// Stops the BMCs and VMs started so far if `up` returns early.
struct BmcGuard {
    lab: LabDir,
    scripts: PathBuf,
    machines: Vec<QemuMachine>,
}

impl Drop for BmcGuard {
    fn drop(&mut self) {
        let q = QemuLab {
            scripts: self.scripts.clone(),
            image_dir: PathBuf::new(),
            machines: std::mem::take(&mut self.machines),
            image_built: true,
            os_version: String::new(),
            memory_mib: 0,
            disk_bytes: 0,
        };
        stop_machines(&self.lab, &q);
    }
}

/// Reads a pid file.
fn pid_in(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The lab's QEMU pieces that run now: each machine's `ipmi_sim`, VM supervisor and QEMU.
pub fn running(lab: &LabDir, q: &QemuLab) -> Vec<(&'static str, u32)> {
    let mut out = Vec::new();
    for m in &q.machines {
        for (what, file) in [
            ("BMC (ipmi_sim)", m.bmc_dir.join("ipmi_sim.pid")),
            ("VM supervisor", m.bmc_dir.join("machine.pid")),
            ("QEMU machine", m.vm_dir.join("qemu.pid")),
        ] {
            if let Some(pid) = pid_in(&file)
                && procs::alive(pid, lab.root())
            {
                out.push((what, pid));
            }
        }
    }
    out
}

/// Powers every machine off through `bmc.sh stop` (which also ends its `ipmi_sim`), then ends
/// whatever of them still runs. Returns what was running, with whether it had to be killed.
pub fn stop_machines(lab: &LabDir, q: &QemuLab) -> Vec<(&'static str, u32, bool)> {
    let before = running(lab, q);
    for m in &q.machines {
        let log = m.bmc_dir.join("bmc.log");
        if m.bmc_dir.exists() {
            let _ = script(
                &q.scripts,
                &["bmc.sh".as_ref(), "stop".as_ref(), m.bmc_dir.as_os_str()],
                "bmc.sh stop",
                &log,
            );
        }
    }
    let mut report = Vec::new();
    for (what, pid) in before {
        // Only what bmc.sh left running is signalled: a pid that ended may already be reused.
        let killed = procs::alive(pid, lab.root())
            && procs::stop(
                &Proc {
                    pid,
                    log: PathBuf::new(),
                },
                lab.root(),
                Duration::from_secs(10),
            );
        report.push((what, pid, killed));
    }
    report
}

/// Starts the QEMU lab; see the module documentation. On failure whatever it started is
/// stopped again.
pub fn up(opts: &QemuOptions) -> Result<LabState, LabError> {
    if opts.machines == 0 || opts.machines > MAX_QEMU_MACHINES {
        return Err(LabError::Other(format!(
            "--qemu takes 1 to {MAX_QEMU_MACHINES} machines"
        )));
    }
    if opts.controllers == 0 || opts.controllers > opts.machines {
        return Err(LabError::Other(format!(
            "--controllers must be between 1 and the number of machines ({})",
            opts.machines
        )));
    }
    let scripts = std::path::absolute(&opts.scripts).map_err(LabError::io(&opts.scripts))?;
    let lab = LabDir::new(&opts.dir)?;
    let previous = crate::up::stopped_state(&lab)?;
    if let Some(prev) = &previous {
        let controllers = prev
            .machines
            .iter()
            .filter(|m| m.role == "controller")
            .count();
        if prev.qemu.is_none()
            || prev.machines.len() != opts.machines
            || controllers != opts.controllers
        {
            return Err(LabError::Other(format!(
                "the lab in {} is another lab (simulated, or other machines); `roundhouse lab down --purge --dir {}` first",
                lab.root().display(),
                lab.root().display()
            )));
        }
    } else if lab.root().exists()
        && std::fs::read_dir(lab.root())
            .map_err(LabError::io(lab.root()))?
            .next()
            .is_some()
    {
        return Err(LabError::Other(format!(
            "{} exists, is not empty and holds no lab (no {}): choose another --dir",
            lab.root().display(),
            crate::layout::LAB_FILE
        )));
    }
    let plan = resolve(
        opts,
        previous.as_ref().and_then(|p| p.qemu.as_ref()),
        &lab,
        |build| preflight(&scripts, build),
    )?;
    let host = match &opts.host_ip {
        Some(h) => h.clone(),
        None => host_ip()?,
    };
    std::fs::create_dir_all(lab.root()).map_err(LabError::io(lab.root()))?;
    cluster::write_inputs(&lab)?;
    let password = bmc_password(&lab)?;
    // The simulated lab's passwords are longer than ipmi_sim keeps.
    let password: String = password.chars().take(IPMI_PASSWORD_MAX).collect();
    std::fs::write(lab.bmc_password_file(), format!("{password}\n"))
        .map_err(LabError::io(lab.bmc_password_file()))?;

    let image_dir = plan.image_dir.clone();
    let (machines, qemu_machines) = match &previous {
        Some(prev) => (
            prev.machines.clone(),
            prev.qemu
                .as_ref()
                .map(|q| q.machines.clone())
                .unwrap_or_default(),
        ),
        None => plan_machines(&lab, opts.controllers, opts.machines)?,
    };
    let mut state = LabState {
        binary: opts.binary.clone(),
        time_scale: 1.0,
        boot_url: previous
            .as_ref()
            .map(|p| p.boot_url.clone())
            .unwrap_or_default(),
        control: String::new(),
        port_base: 0,
        bmc_username: "admin".into(),
        machines: machines.clone(),
        serve: None,
        fleet: None,
        qemu: Some(QemuLab {
            scripts: scripts.clone(),
            image_dir: image_dir.clone(),
            machines: qemu_machines.clone(),
            image_built: plan.image_built,
            os_version: plan.os_version.clone(),
            memory_mib: plan.memory_mib,
            disk_bytes: plan.disk_bytes,
        }),
    };
    // Recorded before anything starts, so a failed start (an image build that fails, say) can
    // be retried with the same command, or cleaned with `lab down --purge`.
    lab.save(&state)?;
    if plan.image_built {
        progress(format!(
            "building the machine image (or finding it cached) in {}",
            image_dir.display()
        ));
        let started_build = Instant::now();
        script(
            &scripts,
            &["build-image.sh".as_ref(), image_dir.as_os_str()],
            "lab/qemu/build-image.sh",
            &lab.logs().join("build-image.log"),
        )?;
        progress(format!(
            "image ready ({:.0} s)",
            started_build.elapsed().as_secs_f64()
        ));
    } else {
        progress(format!(
            "serving the image in {} as OS version {} (not built: --image-dir)",
            image_dir.display(),
            plan.os_version
        ));
    }
    link_image(&lab, &image_dir, &plan.os_version)?;

    let serve_port = previous
        .as_ref()
        .and_then(|p| p.boot_url.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let (serve, boot_url) = start_serve(&lab, &opts.binary, &host, serve_port, true)?;
    let serve_guard = Started {
        lab: lab.clone(),
        procs: vec![serve.clone()],
    };
    progress(format!(
        "boot server listening on {boot_url} (pid {})",
        serve.pid
    ));

    if !lab.cluster_file().exists() {
        let text = cluster_file(&lab, &boot_url, &machines, &qemu_machines, &plan);
        let path = lab.cluster_file();
        std::fs::write(&path, text).map_err(LabError::io(&path))?;
    }
    let mut bmcs = BmcGuard {
        lab: lab.clone(),
        scripts: scripts.clone(),
        machines: Vec::new(),
    };
    for (m, q) in machines.iter().zip(&qemu_machines) {
        std::fs::create_dir_all(&q.vm_dir).map_err(LabError::io(&q.vm_dir))?;
        let disk = q.vm_dir.join("disk.img");
        if !disk.exists() {
            // Blank and sparse: the firmware finds nothing to boot and falls through to iPXE.
            let f = std::fs::File::create(&disk).map_err(LabError::io(&disk))?;
            f.set_len(plan.disk_bytes).map_err(LabError::io(&disk))?;
        }
        std::fs::create_dir_all(&q.bmc_dir).map_err(LabError::io(&q.bmc_dir))?;
        let port = q.bmc_port.to_string();
        let ssh_port = m.ssh_port.to_string();
        let memory = plan.memory_mib.to_string();
        let pxe = format!("{boot_url}/boot.ipxe");
        let args: Vec<&std::ffi::OsStr> = vec![
            "bmc.sh".as_ref(),
            "start".as_ref(),
            q.bmc_dir.as_os_str(),
            port.as_ref(),
            "admin".as_ref(),
            password.as_ref(),
            "--".as_ref(),
            "--dir".as_ref(),
            q.vm_dir.as_os_str(),
            "--disk".as_ref(),
            disk.as_os_str(),
            "--mac".as_ref(),
            m.mac.as_ref(),
            "--ssh-addr".as_ref(),
            m.address.as_ref(),
            "--ssh-port".as_ref(),
            ssh_port.as_ref(),
            "--pxe".as_ref(),
            pxe.as_ref(),
            "--memory".as_ref(),
            memory.as_ref(),
        ];
        bmcs.machines.push(q.clone());
        script(
            &scripts,
            &args,
            &format!("the BMC of {}", m.name),
            &q.bmc_dir.join("bmc.log"),
        )?;
    }
    // ipmi_sim answers once it has read its configuration: ask it as apply will.
    for m in &machines {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match bmc_power(&lab, &opts.binary, &m.name) {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(LabError::Other(format!(
                        "the BMC of {} does not answer: {e}",
                        m.name
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
        progress(format!(
            "{} ({}): BMC on udp 127.0.0.1:{}, SSH forwarded from {}:{}",
            m.name,
            m.role,
            m.bmc_url.rsplit(':').next().unwrap_or_default(),
            m.address,
            m.ssh_port
        ));
    }
    state.boot_url = boot_url;
    state.serve = Some(serve);
    lab.save(&state)?;
    bmcs.machines.clear();
    serve_guard.disarm();
    Ok(state)
}

/// The image a lab serves and the machines' sizes: the options merged with a restarted lab's
/// record, and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    image_dir: PathBuf,
    image_built: bool,
    os_version: String,
    memory_mib: u32,
    disk_bytes: u64,
    /// The image is Flatcar's own (not the lab image).
    real_flatcar: bool,
}

/// Merges `opts` with `previous` (what a restarted lab recorded; options not given keep its
/// values) and checks everything before anything is created: image files and what `host`
/// says is missing for a lab that builds its image or not ([`LabError::Prerequisites`], exit
/// 69, all at once), then sizes and what a restart cannot change.
fn resolve(
    opts: &QemuOptions,
    previous: Option<&QemuLab>,
    lab: &LabDir,
    host: impl Fn(bool) -> Vec<String>,
) -> Result<Plan, LabError> {
    let memory_mib = opts
        .memory_mib
        .or(previous.map(|q| q.memory_mib))
        .unwrap_or(DEFAULT_MEMORY_MIB);
    let disk_bytes = opts
        .disk_bytes
        .or(previous.map(|q| q.disk_bytes))
        .unwrap_or(DEFAULT_DISK_BYTES);
    // A restart that names no image keeps the recorded one, and with it the version it was
    // served as (which may have come from --os-version).
    let same_image = opts.image_dir.is_none() && opts.image_cache.is_none();
    let os_version = opts.os_version.clone().or_else(|| {
        previous
            .filter(|_| same_image)
            .map(|q| q.os_version.clone())
    });
    let given_dir = opts.image_dir.clone().or_else(|| {
        previous
            .filter(|q| !q.image_built && opts.image_cache.is_none())
            .map(|q| q.image_dir.clone())
    });
    let mut problems = Vec::new();
    let (image_dir, image_built, version, real_flatcar) = match given_dir {
        Some(dir) => {
            let found = ImageDir::inspect(&dir, os_version.as_deref())?;
            problems.extend(found.missing);
            (found.dir, false, found.version, !found.lab_built)
        }
        None => {
            let cache = opts
                .image_cache
                .clone()
                .or_else(|| {
                    previous
                        .filter(|q| q.image_built)
                        .map(|q| q.image_dir.clone())
                })
                .unwrap_or_else(default_image_dir);
            let cache = std::path::absolute(&cache).map_err(LabError::io(&cache))?;
            let version = os_version.as_deref().unwrap_or(OS_VERSION);
            (cache, true, Some(version.to_string()), false)
        }
    };
    problems.extend(host(image_built));
    if !problems.is_empty() {
        return Err(LabError::Prerequisites(problems.join("\n")));
    }
    let Some(os_version) = version else {
        // inspect() reports an unknown version as a missing version.txt.
        return Err(LabError::Other(format!(
            "cannot tell the OS version of {}: pass --os-version",
            image_dir.display()
        )));
    };
    let purge = format!(
        "`roundhouse lab down --purge --dir {}` first",
        lab.root().display()
    );
    if let Some(prev) = previous {
        if disk_bytes != prev.disk_bytes {
            return Err(LabError::Other(format!(
                "--disk-size {}: the lab's disks were made {} (lab.json) and are not resized; leave --disk-size out, or {purge}",
                format_size(disk_bytes),
                format_size(prev.disk_bytes)
            )));
        }
        if os_version != prev.os_version {
            return Err(LabError::Other(format!(
                "the image is version {os_version}, but the lab's cluster file (kept across restarts) names os_version {}; {purge}",
                prev.os_version
            )));
        }
    }
    let (min, what) = if real_flatcar {
        (
            FLATCAR_MIN_DISK_BYTES,
            "a Flatcar image (about 7.8 GiB written)",
        )
    } else {
        (MIN_DISK_BYTES, "the lab image")
    };
    if disk_bytes < min {
        let default = if opts.disk_bytes.is_none() && previous.is_none() {
            " (the default)"
        } else {
            ""
        };
        return Err(LabError::Other(format!(
            "--disk-size {}{default} is too small for {what}: give at least {}, e.g. --disk-size 12G (the disks are sparse)",
            format_size(disk_bytes),
            format_size(min)
        )));
    }
    if memory_mib < 256 {
        return Err(LabError::Other(format!(
            "--memory {memory_mib}: each machine needs at least 256 MiB"
        )));
    }
    if real_flatcar && memory_mib < FLATCAR_MEMORY_MIB {
        progress(format!(
            "warning: --memory {memory_mib} MiB is likely too little for Flatcar's PXE boot (the whole OS unpacks into RAM; the installer then fails or the kernel panics): use --memory {FLATCAR_MEMORY_MIB} or more"
        ));
    }
    Ok(Plan {
        image_dir,
        image_built,
        os_version,
        memory_mib,
        disk_bytes,
        real_flatcar,
    })
}

/// Links the image's files into `boot-assets/flatcar/VERSION/`, where the boot server serves
/// them under `/assets/flatcar/VERSION/` (`cached_install`): the kernel, initrd and image,
/// and the signature and `version.txt` when the directory has them (links of a previous start
/// that the directory no longer has are removed).
fn link_image(lab: &LabDir, image_dir: &Path, os_version: &str) -> Result<(), LabError> {
    let served = lab.boot_assets().join("flatcar").join(os_version);
    std::fs::create_dir_all(&served).map_err(LabError::io(&served))?;
    for f in IMAGE_FILES.iter().chain(&[SIGNATURE_FILE, VERSION_FILE]) {
        let link = served.join(f);
        let _ = std::fs::remove_file(&link);
        let source = image_dir.join(f);
        if IMAGE_FILES.contains(f) || source.is_file() {
            std::os::unix::fs::symlink(&source, &link).map_err(LabError::io(&link))?;
        }
    }
    Ok(())
}

/// Names, MACs, SSH forwards and BMC ports of a new QEMU lab.
fn plan_machines(
    lab: &LabDir,
    controllers: usize,
    total: usize,
) -> Result<(Vec<LabMachine>, Vec<QemuMachine>), LabError> {
    let mut machines = Vec::new();
    let mut qemu = Vec::new();
    for (i, (name, role, mac)) in cluster::machine_names(controllers, total - controllers)
        .into_iter()
        .enumerate()
    {
        // Each node needs a domain of its own; all of 127/8 is loopback on Linux.
        let address = format!("127.0.1.{}", i + 1);
        let ssh_port = free_tcp_port(&address)?;
        let bmc_port = free_udp_port()?;
        machines.push(LabMachine {
            name: name.clone(),
            role: role.to_string(),
            mac,
            address,
            ssh_port,
            bmc_url: format!("ipmi://127.0.0.1:{bmc_port}"),
        });
        qemu.push(QemuMachine {
            bmc_port,
            bmc_dir: lab.root().join("bmc").join(&name),
            vm_dir: lab.root().join("vm").join(&name),
            name,
        });
    }
    Ok((machines, qemu))
}

/// The cluster file of a QEMU lab: the simulated lab's snippets and hook, the IPMI driver.
fn cluster_file(
    lab: &LabDir,
    boot_url: &str,
    machines: &[LabMachine],
    qemu: &[QemuMachine],
    plan: &Plan,
) -> String {
    let image = if plan.real_flatcar {
        format!("Flatcar's files from {}", plan.image_dir.display())
    } else {
        "the lab image (lab/qemu/build-image.sh)".to_string()
    };
    let mut s = format!(
        r#"# The lab's cluster, written by `roundhouse lab up --qemu` (docs/lab.md). Each machine is a
# QEMU VM behind its own IPMI BMC (OpenIPMI's ipmi_sim on 127.0.0.1), netbooting from the
# lab's boot server with UEFI iPXE; its SSH is forwarded from its loopback address.
#
#   roundhouse apply  {cluster} --yes
#   roundhouse status {cluster}
#   roundhouse lab status --dir {dir}

cluster {{
  name             = "qemu-lab"
  asset_dir        = "assets"
  # Nobody holds this key's private half: log in with assets/keys/operator_ed25519
  # (generated by the first plan) or put your own public key here.
  ssh_pubkeys      = ["{key}"]
  boot_server_http = "{boot_url}"

  os_channel     = "stable"
  os_version     = "{version}"  # {image}, served from boot-assets/
  cached_install = true
  install_disk   = "/dev/vda"
  # QEMU's first serial port is the VM's serial.log: the console Flatcar's kernel, GRUB's
  # linux_console and the lab image all write to.
  kernel_console = ["console=ttyS0,115200n8"]

  on_controller_change = "hold"
  on_worker_change     = "reprovision"
}}
"#,
        cluster = lab.cluster_file().display(),
        dir = lab.root().display(),
        key = cluster::PLACEHOLDER_KEY,
        version = plan.os_version,
    );
    s.push_str(&cluster::hook_block(""));
    for (m, q) in machines.iter().zip(qemu) {
        let power = format!(
            r#"  power {{
    driver        = "ipmi"
    address       = "127.0.0.1"
    port          = {bmc}
    username      = "admin"
    password_file = "bmc-password"
  }}
"#,
            bmc = q.bmc_port,
        );
        s.push_str(&cluster::node_block(m, &power));
    }
    s
}

/// `roundhouse power CLUSTER NODE status` against the node's BMC: its power and boot device.
fn bmc_power(lab: &LabDir, binary: &Path, node: &str) -> Result<(String, String), String> {
    let out = Command::new(binary)
        .arg("power")
        .arg(lab.cluster_file())
        .arg(node)
        .args(["status", "--output", "json", "--retries", "0"])
        .current_dir(lab.root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let power = v["power"].as_str().unwrap_or("?").to_string();
    // The boot setting as the BMC holds it: its device, and `once` for a one-time override.
    let b = &v["boot"];
    let boot = match b["device"].as_str() {
        Some(d) if b["valid"] == true && b["persistent"] == false => format!("{d} once"),
        Some(d) => d.to_string(),
        None => "?".into(),
    };
    Ok((power, boot))
}

/// `lab status` of a QEMU lab: power and boot device from each BMC, whether QEMU runs, the
/// SSH forward.
pub fn status(
    lab: &LabDir,
    state: &LabState,
    q: &QemuLab,
) -> Result<Vec<crate::status::MachineStatus>, LabError> {
    if !state
        .serve
        .as_ref()
        .is_some_and(|p| procs::alive(p.pid, lab.root()))
    {
        return Err(LabError::NotRunning(lab.root().to_path_buf()));
    }
    let mut out = Vec::new();
    for (m, qm) in state.machines.iter().zip(&q.machines) {
        let (power, boot, last_error) = match bmc_power(lab, &state.binary, &m.name) {
            Ok((p, b)) => (p, b, None),
            Err(e) => ("?".into(), "?".into(), Some(format!("BMC: {e}"))),
        };
        let qemu_runs =
            pid_in(&qm.vm_dir.join("qemu.pid")).is_some_and(|pid| procs::alive(pid, lab.root()));
        out.push(crate::status::MachineStatus {
            name: m.name.clone(),
            role: m.role.clone(),
            power,
            phase: if qemu_runs { "running" } else { "off" }.into(),
            boot,
            disks: vec![format!("vda: {}", disk_state(&qm.vm_dir.join("disk.img")))],
            os: None,
            config_sha256: None,
            config_digest: None,
            ssh: format!("{}:{}", m.address, m.ssh_port),
            last_error,
            installs: 0,
            faults: Vec::new(),
        });
    }
    Ok(out)
}

/// `blank` while nothing was ever written at the start of the disk (where GPT lives).
fn disk_state(disk: &Path) -> &'static str {
    use std::io::Read;
    let mut head = [0u8; 4096];
    match std::fs::File::open(disk).and_then(|mut f| f.read_exact(&mut head)) {
        Ok(()) if head.iter().all(|b| *b == 0) => "blank",
        Ok(()) => "partitioned",
        Err(_) => "missing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_installed_names_each_package_once() {
        let msg = missing(MACHINE_NEEDS.iter().chain(BUILD_NEEDS), |_| false)
            .expect("everything is missing");
        assert!(msg.contains("program `ipmi_sim` is missing: apt-get install openipmi"));
        assert!(msg.contains("file `/usr/share/OVMF/OVMF_CODE_4M.fd` is missing"));
        let all = msg.lines().last().unwrap_or_default();
        assert_eq!(all.matches("e2fsprogs").count(), 1, "{all}");
        assert!(
            all.contains("qemu-system-x86 ovmf ipxe-qemu openipmi"),
            "{all}"
        );
    }

    #[test]
    fn only_what_is_missing_is_listed() {
        let msg = missing(MACHINE_NEEDS, |n| n.what != "ipmi_sim").expect("ipmi_sim is missing");
        assert_eq!(msg.lines().count(), 2, "{msg}");
        assert!(msg.ends_with("apt-get install openipmi"), "{msg}");
        assert!(missing(MACHINE_NEEDS.iter().chain(BUILD_NEEDS), |_| true).is_none());
    }

    #[test]
    fn the_cluster_file_powers_every_node_by_ipmi() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(dir.path()).expect("lab dir");
        let (machines, qemu) = plan_machines(&lab, 1, 2).expect("plan");
        assert_eq!(machines[0].role, "controller");
        assert_eq!(machines[1].role, "worker");
        assert_ne!(machines[0].address, machines[1].address);
        let plan = Plan {
            image_dir: PathBuf::from("/srv/flatcar"),
            image_built: false,
            os_version: "4230.2.4".into(),
            memory_mib: 3072,
            disk_bytes: 12 << 30,
            real_flatcar: true,
        };
        let text = cluster_file(&lab, "http://192.0.2.1:8080", &machines, &qemu, &plan);
        assert!(text.contains("os_version     = \"4230.2.4\""), "{text}");
        // Real Flatcar's kernel writes to the VM's serial.log only with this console.
        assert!(
            text.contains("kernel_console = [\"console=ttyS0,115200n8\"]"),
            "{text}"
        );
        assert_eq!(
            text.matches("driver        = \"ipmi\"").count(),
            2,
            "{text}"
        );
        for q in &qemu {
            assert!(text.contains(&format!("port          = {}", q.bmc_port)));
        }
        assert!(text.contains("boot_server_http = \"http://192.0.2.1:8080\""));
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("12G"), Ok(12 << 30));
        assert_eq!(parse_size("2048M"), Ok(2 << 30));
        assert_eq!(parse_size("2048mib"), Ok(2 << 30));
        assert_eq!(parse_size(" 1T "), Ok(1 << 40));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(format_size(12 << 30), "12G");
        assert_eq!(format_size(2560 << 20), "2560M");
        assert_eq!(format_size(1000), "1000 bytes");
    }

    #[test]
    fn bad_sizes_are_refused_naming_the_value() {
        for bad in [
            "12",
            "",
            "G",
            "1.5G",
            "12Q",
            "-1G",
            "12 G",
            "0G",
            "99999999999T",
        ] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        assert!(parse_size("12").unwrap_err().contains("no unit"));
    }

    #[test]
    fn os_versions_are_path_and_url_safe() {
        assert_eq!(parse_os_version("4230.2.4").as_deref(), Ok("4230.2.4"));
        assert!(parse_os_version("current").is_ok());
        for bad in ["", "..", "../etc", "1.0/x", "a b", ".hidden", "4230.2.4\n"] {
            assert!(parse_os_version(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            version_in("FLATCAR_BUILD=4230\nFLATCAR_VERSION=4230.2.4\nFLATCAR_SDK_VERSION=1\n"),
            Some("4230.2.4")
        );
        assert_eq!(version_in("FLATCAR_VERSION=\n"), None);
    }

    /// A Flatcar release directory with `files` (each a few bytes).
    fn release_dir(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in files {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        dir
    }

    const RELEASE: [&str; 4] = [
        "flatcar_production_image.bin.bz2",
        "flatcar_production_pxe.vmlinuz",
        "flatcar_production_pxe_image.cpio.gz",
        "flatcar_production_image.bin.bz2.sig",
    ];

    fn options(dir: &Path, image_dir: Option<&Path>) -> QemuOptions {
        QemuOptions {
            dir: dir.join("lab"),
            machines: 1,
            controllers: 1,
            binary: PathBuf::from("/bin/false"),
            image_dir: image_dir.map(Path::to_path_buf),
            image_cache: Some(dir.join("cache")),
            os_version: None,
            memory_mib: None,
            disk_bytes: None,
            scripts: dir.join("scripts"),
            host_ip: None,
        }
    }

    #[test]
    fn a_complete_release_is_served_with_its_version() {
        let rel = release_dir(&RELEASE);
        std::fs::write(rel.path().join("version.txt"), "FLATCAR_VERSION=4230.2.4\n")
            .expect("write");
        let found = ImageDir::inspect(rel.path(), None).expect("inspect");
        assert!(found.missing.is_empty(), "{:?}", found.missing);
        assert!(!found.lab_built);
        assert_eq!(found.version.as_deref(), Some("4230.2.4"));
        // --os-version wins over version.txt.
        let found = ImageDir::inspect(rel.path(), Some("4100.0.0")).expect("inspect");
        assert_eq!(found.version.as_deref(), Some("4100.0.0"));
    }

    #[test]
    fn each_missing_file_is_named_with_where_to_get_it() {
        let rel = release_dir(&RELEASE[..2]);
        std::fs::write(rel.path().join(RELEASE[2]), "").expect("write");
        let found = ImageDir::inspect(rel.path(), Some("4230.2.4")).expect("inspect");
        let text = found.missing.join("\n");
        assert_eq!(found.missing.len(), 2, "{text}");
        assert!(
            text.contains("flatcar_production_pxe_image.cpio.gz` is empty: download https://stable.release.flatcar-linux.net/amd64-usr/4230.2.4/flatcar_production_pxe_image.cpio.gz"),
            "{text}"
        );
        assert!(
            text.contains("flatcar_production_image.bin.bz2.sig` is missing: download https://stable.release.flatcar-linux.net/amd64-usr/4230.2.4/flatcar_production_image.bin.bz2.sig"),
            "{text}"
        );
        // Without a version, version.txt is what is missing.
        let found = ImageDir::inspect(release_dir(&RELEASE).path(), None).expect("inspect");
        assert_eq!(found.version, None);
        assert!(
            found.missing[0].contains("version.txt` is missing"),
            "{found:?}"
        );
    }

    #[test]
    fn a_lab_built_directory_needs_no_signature_or_version() {
        let built = release_dir(&[RELEASE[0], RELEASE[1], RELEASE[2], "input-hash"]);
        let found = ImageDir::inspect(built.path(), None).expect("inspect");
        assert!(found.missing.is_empty(), "{:?}", found.missing);
        assert!(found.lab_built);
        assert_eq!(found.version.as_deref(), Some(OS_VERSION));
        std::fs::remove_file(built.path().join(RELEASE[1])).expect("rm");
        let found = ImageDir::inspect(built.path(), None).expect("inspect");
        assert!(
            found.missing[0].contains("rebuild it with lab/qemu/build-image.sh"),
            "{found:?}"
        );
    }

    #[test]
    fn missing_image_files_and_programs_are_reported_together() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rel = release_dir(&RELEASE[1..]);
        let lab = LabDir::new(&tmp.path().join("lab")).expect("lab dir");
        let opts = options(tmp.path(), Some(rel.path()));
        let mut opts = opts;
        opts.os_version = Some("4230.2.4".into());
        let err = resolve(&opts, None, &lab, |build| {
            assert!(!build, "a served image needs no build tools");
            vec!["  - program `ipmi_sim` is missing: apt-get install openipmi".into()]
        })
        .expect_err("a file is missing");
        assert_eq!(err.exit_code(), crate::EXIT_PREREQUISITES);
        let msg = err.to_string();
        assert!(
            msg.contains("flatcar_production_image.bin.bz2` is missing"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install openipmi"), "{msg}");
        assert!(!lab.root().exists(), "resolve created the lab directory");
    }

    #[test]
    fn real_flatcar_needs_a_big_disk_and_gets_the_knobs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rel = release_dir(&RELEASE);
        std::fs::write(rel.path().join("version.txt"), "FLATCAR_VERSION=4230.2.4\n")
            .expect("write");
        let lab = LabDir::new(&tmp.path().join("lab")).expect("lab dir");
        let mut opts = options(tmp.path(), Some(rel.path()));
        let err = resolve(&opts, None, &lab, |_| Vec::new()).expect_err("2G is too small");
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string()
                .contains("--disk-size 2G (the default) is too small for a Flatcar image"),
            "{err}"
        );
        opts.disk_bytes = Some(12 << 30);
        opts.memory_mib = Some(3072);
        let plan = resolve(&opts, None, &lab, |_| Vec::new()).expect("resolve");
        assert_eq!(
            plan,
            Plan {
                image_dir: std::path::absolute(rel.path()).expect("absolute"),
                image_built: false,
                os_version: "4230.2.4".into(),
                memory_mib: 3072,
                disk_bytes: 12 << 30,
                real_flatcar: true,
            }
        );
    }

    #[test]
    fn a_restart_keeps_the_recorded_knobs_and_refuses_a_new_disk_size() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(&tmp.path().join("lab")).expect("lab dir");
        let recorded = QemuLab {
            scripts: tmp.path().join("scripts"),
            image_dir: tmp.path().join("built"),
            machines: Vec::new(),
            image_built: true,
            os_version: OS_VERSION.into(),
            memory_mib: 1536,
            disk_bytes: 4 << 30,
        };
        let mut opts = options(tmp.path(), None);
        opts.image_cache = None;
        let plan = resolve(&opts, Some(&recorded), &lab, |build| {
            assert!(build, "the recorded lab builds its image");
            Vec::new()
        })
        .expect("resolve");
        assert_eq!(plan.image_dir, tmp.path().join("built"));
        assert_eq!((plan.memory_mib, plan.disk_bytes), (1536, 4 << 30));
        // Memory may change at a restart, the disks' size may not.
        opts.memory_mib = Some(2048);
        let plan = resolve(&opts, Some(&recorded), &lab, |_| Vec::new()).expect("resolve");
        assert_eq!(plan.memory_mib, 2048);
        opts.disk_bytes = Some(8 << 30);
        let err = resolve(&opts, Some(&recorded), &lab, |_| Vec::new()).expect_err("resize");
        assert!(err.to_string().contains("--disk-size 8G"), "{err}");
        assert!(err.to_string().contains("made 4G"), "{err}");
    }

    #[test]
    fn a_restart_keeps_the_version_the_image_was_served_as() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(&tmp.path().join("lab")).expect("lab dir");
        let built = release_dir(&[RELEASE[0], RELEASE[1], RELEASE[2], "input-hash"]);
        let recorded = QemuLab {
            scripts: tmp.path().join("scripts"),
            image_dir: built.path().to_path_buf(),
            machines: Vec::new(),
            image_built: false,
            os_version: "4459.1.0".into(),
            memory_mib: 1024,
            disk_bytes: 2 << 30,
        };
        let mut opts = options(tmp.path(), None);
        opts.image_cache = None;
        let plan = resolve(&opts, Some(&recorded), &lab, |_| Vec::new()).expect("restart");
        assert_eq!(plan.os_version, "4459.1.0");
        assert_eq!(plan.image_dir, built.path());
        assert!(!plan.image_built);
        // Another image directory is looked at afresh: its version is its own.
        let other = release_dir(&[RELEASE[0], RELEASE[1], RELEASE[2], "input-hash"]);
        opts.image_dir = Some(other.path().to_path_buf());
        let err = resolve(&opts, Some(&recorded), &lab, |_| Vec::new()).expect_err("version");
        assert!(
            err.to_string().contains("names os_version 4459.1.0"),
            "{err}"
        );
    }

    #[test]
    fn a_lab_json_of_before_the_knobs_reads_with_the_old_defaults() {
        let q: QemuLab =
            serde_json::from_str(r#"{"scripts": "/s", "image_dir": "/i", "machines": []}"#)
                .expect("parse");
        assert!(q.image_built);
        assert_eq!(q.os_version, OS_VERSION);
        assert_eq!((q.memory_mib, q.disk_bytes), (1024, 2 << 30));
    }

    #[test]
    fn served_links_follow_the_image_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(tmp.path()).expect("lab dir");
        let rel = release_dir(&RELEASE);
        link_image(&lab, rel.path(), "4230.2.4").expect("link");
        let served = lab.boot_assets().join("flatcar/4230.2.4");
        for f in RELEASE {
            assert_eq!(
                std::fs::read_link(served.join(f)).expect("a link"),
                rel.path().join(f)
            );
        }
        // Served again from a directory without a signature: no stale link to the old one.
        let built = release_dir(&RELEASE[..3]);
        link_image(&lab, built.path(), "4230.2.4").expect("link");
        assert!(std::fs::symlink_metadata(served.join(RELEASE[3])).is_err());
        assert!(served.join(RELEASE[0]).exists());
    }
}
