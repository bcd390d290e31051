//! `lab up --qemu N`: real machines instead of simulated ones. Each is a QEMU VM (UEFI
//! firmware, iPXE, GRUB, a Debian kernel, the real CoreOS Ignition; docs/qemu-lab.md) behind
//! its own OpenIPMI `ipmi_sim` BMC, netbooting from the lab's `roundhouse serve`.
//!
//! The shell scripts in `lab/qemu/` do the machine work (image build with its input-hash
//! cache, `bmc.sh` for the BMC and the VM supervisor, `run-vm.sh` for QEMU); this module
//! checks the host, runs them, writes the cluster file and records everything in `lab.json`
//! so `lab down` and `lab status` find it.

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

/// Size of each machine's (sparse) disk: the image is about 230 MiB, ROOT gets the rest.
const DISK_BYTES: u64 = 2 << 30;

/// Longest password both ends take: IPMI v2.0 allows 20 bytes, but ipmi_sim keeps 16 (an
/// IPMI 1.5 password) and then fails every login.
const IPMI_PASSWORD_MAX: usize = 16;

/// The image files `roundhouse serve` hands to the installer and the PXE boot.
const IMAGE_FILES: [&str; 3] = [
    "flatcar_production_image.bin.bz2",
    "flatcar_production_pxe.vmlinuz",
    "flatcar_production_pxe_image.cpio.gz",
];

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
    /// Where the image is built and cached (`lab/qemu/build-image.sh OUT_DIR`).
    pub image_dir: PathBuf,
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

/// The QEMU part of `lab.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuLab {
    /// The `lab/qemu` scripts the machines run (`lab down` calls `bmc.sh stop`).
    pub scripts: PathBuf,
    /// The image directory.
    pub image_dir: PathBuf,
    /// The machines, in the order of the lab's `machines`.
    pub machines: Vec<QemuMachine>,
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

/// The machines' needs, then lab/qemu/build-image.sh's (it runs even when its cache is
/// current: the input hash needs apt).
const NEEDED: &[Needed] = &[
    prog("bash", "bash"),
    prog("setsid", "util-linux"),
    prog("qemu-system-x86_64", "qemu-system-x86"),
    file("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf"),
    file("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
    prog("ipmi_sim", "openipmi"),
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

/// The lines for everything `present` says is missing, and the packages to install.
fn missing(present: impl Fn(&Needed) -> bool) -> Option<String> {
    let mut lines = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    for n in NEEDED.iter().filter(|n| !present(n)) {
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

/// Checks the host before anything starts: programs, files, the scripts.
fn preflight(scripts: &Path) -> Result<(), LabError> {
    let mut msg = missing(|n| {
        if n.file {
            Path::new(n.what).exists()
        } else {
            crate::preflight::on_path(n.what)
        }
    })
    .unwrap_or_default();
    for s in ["build-image.sh", "bmc.sh", "run-vm.sh"] {
        if !scripts.join(s).is_file() {
            if !msg.is_empty() {
                msg.push('\n');
            }
            msg.push_str(&format!(
                "  - {} is missing: run from a roundhouse checkout or set ROUNDHOUSE_LAB_QEMU_SCRIPTS to its lab/qemu",
                scripts.join(s).display()
            ));
        }
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(LabError::Prerequisites(msg))
    }
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
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(LabError::io(log))?;
    let err = out.try_clone().map_err(LabError::io(log))?;
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
    preflight(&scripts)?;
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

    let image_dir = std::path::absolute(&opts.image_dir).map_err(LabError::io(&opts.image_dir))?;
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
        }),
    };
    // Recorded before anything starts, so a failed start (an image build that fails, say) can
    // be retried with the same command, or cleaned with `lab down --purge`.
    lab.save(&state)?;
    progress(format!(
        "building the machine image (or finding it cached) in {}",
        opts.image_dir.display()
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
    let served = lab.boot_assets().join("flatcar").join(OS_VERSION);
    std::fs::create_dir_all(&served).map_err(LabError::io(&served))?;
    for f in IMAGE_FILES {
        let link = served.join(f);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(image_dir.join(f), &link).map_err(LabError::io(&link))?;
    }

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
        let text = cluster_file(&lab, &boot_url, &machines, &qemu_machines);
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
            f.set_len(DISK_BYTES).map_err(LabError::io(&disk))?;
        }
        std::fs::create_dir_all(&q.bmc_dir).map_err(LabError::io(&q.bmc_dir))?;
        let port = q.bmc_port.to_string();
        let ssh_port = m.ssh_port.to_string();
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
) -> String {
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
  os_version     = "{OS_VERSION}"  # the lab image (lab/qemu/build-image.sh), served from boot-assets/
  cached_install = true
  install_disk   = "/dev/vda"
  kernel_console = ["console=ttyS0,115200n8"]

  on_controller_change = "hold"
  on_worker_change     = "reprovision"
}}

# Lokomotive's copy-controller-secrets, generalised: runs after every install of a controller.
hook "{hook}" {{
  roles = ["controller"]
  upload {{
    source      = "secrets/etcd-ca.crt"
    destination = "{dest}"
    mode        = "0600"
  }}
  run     = ["sudo sh -c 'sha256sum {dest} > {marker}'"]
  timeout = 60
}}
"#,
        cluster = lab.cluster_file().display(),
        dir = lab.root().display(),
        key = cluster::PLACEHOLDER_KEY,
        hook = cluster::HOOK_NAME,
        dest = cluster::HOOK_DESTINATION,
        marker = cluster::HOOK_MARKER,
    );
    for (m, q) in machines.iter().zip(qemu) {
        s.push_str(&format!(
            r#"
node "{name}" {{
  role     = "{role}"
  mac      = "{mac}"
  domain   = "{address}"
  ssh_port = {port}
  snippets = [file("snippets/{role}.bu")]
  power {{
    driver        = "ipmi"
    address       = "127.0.0.1"
    port          = {bmc}
    username      = "admin"
    password_file = "bmc-password"
  }}
}}
"#,
            name = m.name,
            role = m.role,
            mac = m.mac,
            address = m.address,
            port = m.ssh_port,
            bmc = q.bmc_port,
        ));
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
        let msg = missing(|_| false).expect("everything is missing");
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
        let msg = missing(|n| n.what != "ipmi_sim").expect("ipmi_sim is missing");
        assert_eq!(msg.lines().count(), 2, "{msg}");
        assert!(msg.ends_with("apt-get install openipmi"), "{msg}");
        assert!(missing(|_| true).is_none());
    }

    #[test]
    fn the_cluster_file_powers_every_node_by_ipmi() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = LabDir::new(dir.path()).expect("lab dir");
        let (machines, qemu) = plan_machines(&lab, 1, 2).expect("plan");
        assert_eq!(machines[0].role, "controller");
        assert_eq!(machines[1].role, "worker");
        assert_ne!(machines[0].address, machines[1].address);
        let text = cluster_file(&lab, "http://192.0.2.1:8080", &machines, &qemu);
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
}
