//! One simulated machine: power, firmware boot order and BMC override, network boot through
//! iPXE, the PXE-booted installer, the disk's bootloader reading the OEM `grub.cfg`, Ignition
//! on first boot, the running OS with its sshd and oneshot units, reboots and faults.

use std::collections::VecDeque;
use std::fs;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::Digest;
use tokio::sync::{mpsc, watch};

use crate::ignition::{self, Config};
use crate::ipxe::{self, Outcome};
use crate::net::{Agent, Http};
use crate::os::{clear_dir, seed_root};
use crate::sandbox::{Layout, Sandbox};
use crate::spec::{BootDevice, Durations, Faults, MachineSpec};
use crate::ssh::{self, OsContext, OsEvent};
use crate::systemd;
use crate::tree::Tree;

/// Lab-wide things every machine uses.
pub struct Env {
    /// HTTP client of the lab network.
    pub http: Http,
    /// Command isolation.
    pub sandbox: Sandbox,
    /// Shim programs.
    pub shims: PathBuf,
    /// Stage durations (unscaled).
    pub durations: Durations,
    /// Scale of every duration.
    pub time_factor: f64,
    /// DHCP boot file URL.
    pub boot_url: String,
}

/// Loopback address and ports of one machine.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ports {
    /// The machine's own loopback address (`127.1.0.1` for the first machine): its sshd
    /// listens there as well as on `127.0.0.1`, so every machine can have a domain of its
    /// own, as a cluster file requires.
    pub address: std::net::Ipv4Addr,
    /// Redfish BMC.
    pub bmc: u16,
    /// The installed OS's sshd ("port 22").
    pub ssh: u16,
    /// The installer's sshd ("port 2222").
    pub ssh_installer: u16,
}

/// A power or boot request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Power on (no-op when on).
    On,
    /// Cut power.
    ForceOff,
    /// OS shutdown, then off.
    GracefulShutdown,
    /// Hard reset.
    ForceRestart,
    /// OS reboot.
    GracefulRestart,
    /// The fleet is stopping.
    Exit,
}

/// How the BMC's boot override applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum OverrideMode {
    /// No override.
    Disabled,
    /// Next boot only.
    Once,
    /// Every boot.
    Continuous,
}

/// The firmware's boot settings.
#[derive(Debug, Clone, Serialize)]
pub struct BootSettings {
    /// Order tried when there is no override.
    pub order: Vec<BootDevice>,
    /// Override target.
    pub override_target: Option<BootDevice>,
    /// Override mode.
    pub override_mode: OverrideMode,
}

/// One Ignition run.
#[derive(Debug, Clone, Serialize)]
pub struct IgnitionRun {
    /// Where the config came from.
    pub url: String,
    /// SHA-256 of the config as fetched.
    pub sha256: String,
    /// `yes` (PXE) or `detected` (first_boot flag on disk).
    pub first_boot: String,
    /// When.
    pub at: String,
}

/// What the machine is doing.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `on` or `off`.
    pub power: &'static str,
    /// `off`, `firmware`, `netboot`, `kernel`, `ignition`, `running`, `hung`, `failed`,
    /// `no-boot-device`, `shutting-down`.
    pub phase: &'static str,
    /// `installer` or `installed` while an OS runs.
    pub os: Option<&'static str>,
    /// Logical sshd ports listening (22, 2222).
    pub ssh_listening: Vec<u16>,
    /// The last failure, with its reason.
    pub last_error: Option<String>,
    /// Boots since the fleet started.
    pub boots: u32,
    /// `flatcar-install` runs.
    pub installs: u32,
    /// Ignition runs.
    pub ignition_runs: u32,
    /// The last Ignition run.
    pub last_ignition: Option<IgnitionRun>,
    /// Kernel command line of the running OS.
    pub cmdline: Option<String>,
    #[serde(skip)]
    log: VecDeque<String>,
}

/// A row of the machine table.
#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// MAC.
    pub mac: String,
    /// Name.
    pub name: String,
    /// SMBIOS UUID.
    pub uuid: String,
    /// Power, phase, counters.
    #[serde(flatten)]
    pub status: Status,
    /// Firmware boot settings.
    pub boot: BootSettings,
    /// Disk contents, e.g. `sda: flatcar stable 3975.2.0` or `sda: blank`.
    pub disks: Vec<String>,
    /// The machine's own loopback address; its sshd answers there too (same ports).
    pub address: String,
    /// `127.0.0.1:PORT` of the installed OS's sshd.
    pub ssh: String,
    /// `127.0.0.1:PORT` of the installer's sshd.
    pub ssh_installer: String,
    /// BMC base URL.
    pub bmc_url: String,
    /// Faults in force.
    pub faults: Faults,
}

pub(crate) struct Shared {
    pub spec: MachineSpec,
    pub uuid: String,
    pub dir: PathBuf,
    pub ports: Ports,
    pub status: Mutex<Status>,
    pub faults: Mutex<Faults>,
    pub boot: Mutex<BootSettings>,
    pub cmds: mpsc::UnboundedSender<Cmd>,
    pub changed: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handle on one machine.
#[derive(Clone)]
pub struct Machine {
    pub(crate) shared: Arc<Shared>,
}

impl Machine {
    pub(crate) fn new(
        spec: MachineSpec,
        dir: PathBuf,
        ports: Ports,
    ) -> (Machine, mpsc::UnboundedReceiver<Cmd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let order = if spec.boot_order.is_empty() {
            vec![BootDevice::Disk, BootDevice::Pxe]
        } else {
            spec.boot_order.clone()
        };
        let shared = Shared {
            uuid: spec.mac.derived_uuid(),
            faults: Mutex::new(spec.faults.clone()),
            boot: Mutex::new(BootSettings {
                order,
                override_target: None,
                override_mode: OverrideMode::Disabled,
            }),
            status: Mutex::new(Status {
                power: "off",
                phase: "off",
                os: None,
                ssh_listening: Vec::new(),
                last_error: None,
                boots: 0,
                installs: 0,
                ignition_runs: 0,
                last_ignition: None,
                cmdline: None,
                log: VecDeque::new(),
            }),
            spec,
            dir,
            ports,
            cmds: tx,
            changed: watch::channel(0).0,
        };
        (
            Machine {
                shared: Arc::new(shared),
            },
            rx,
        )
    }

    /// The MAC.
    pub fn mac(&self) -> crate::mac::Mac {
        self.shared.spec.mac
    }

    /// The machine's ports.
    pub fn ports(&self) -> Ports {
        self.shared.ports
    }

    /// Where its disks and logs live.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Sends a power request (what the BMC does after its delay).
    pub fn send(&self, c: Cmd) {
        let _ = self.shared.cmds.send(c);
    }

    /// Powers on.
    pub fn power_on(&self) {
        self.send(Cmd::On)
    }

    /// Cuts power.
    pub fn power_off(&self) {
        self.send(Cmd::ForceOff)
    }

    /// Hard reset.
    pub fn reset(&self) {
        self.send(Cmd::ForceRestart)
    }

    /// Sets the firmware's boot override (what Redfish `Boot` PATCH does).
    pub fn set_boot_override(&self, target: Option<BootDevice>, mode: OverrideMode) {
        let mut b = lock(&self.shared.boot);
        b.override_target = target;
        b.override_mode = if target.is_none() {
            OverrideMode::Disabled
        } else {
            mode
        };
        drop(b);
        self.shared.bump();
    }

    /// Sets the persistent boot order.
    pub fn set_boot_order(&self, order: Vec<BootDevice>) {
        lock(&self.shared.boot).order = order;
        self.shared.bump();
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, f: Faults) {
        *lock(&self.shared.faults) = f;
        self.shared.bump();
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).clone()
    }

    /// A table row.
    pub fn info(&self) -> MachineInfo {
        let s = &self.shared;
        MachineInfo {
            mac: s.spec.mac.to_string(),
            name: s
                .spec
                .name
                .clone()
                .unwrap_or_else(|| s.spec.mac.to_string()),
            uuid: s.uuid.clone(),
            status: lock(&s.status).clone(),
            boot: lock(&s.boot).clone(),
            disks: disk_states(&s.dir.join("disks")),
            address: s.ports.address.to_string(),
            ssh: format!("127.0.0.1:{}", s.ports.ssh),
            ssh_installer: format!("127.0.0.1:{}", s.ports.ssh_installer),
            bmc_url: format!("http://127.0.0.1:{}", s.ports.bmc),
            faults: lock(&s.faults).clone(),
        }
    }

    /// The machine's recent log lines.
    pub fn log(&self) -> Vec<String> {
        lock(&self.shared.status).log.iter().cloned().collect()
    }

    /// Waits until `pred` holds for the machine's status, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&MachineInfo) -> bool,
    ) -> Result<MachineInfo, MachineInfo> {
        let mut rx = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let info = self.info();
            if pred(&info) {
                return Ok(info);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(self.info()),
            }
        }
    }
}

impl Shared {
    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
        self.bump();
    }

    fn log(&self, msg: impl Into<String>) {
        let line = format!("{} {}", crate::clock::rfc3339_now(), msg.into());
        tracing::debug!(mac = %self.spec.mac, "{line}");
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("console.log"))
        {
            let _ = writeln!(f, "{line}");
        }
        let mut s = lock(&self.status);
        if s.log.len() >= 64 {
            s.log.pop_front();
        }
        s.log.push_back(line);
    }

    fn fail(&self, msg: String) {
        self.log(format!("error: {msg}"));
        self.set(|s| s.last_error = Some(msg));
    }
}

/// Each disk's state: `sda: blank`, `sda: flatcar stable 3975.2.0`.
pub fn disk_states(disks: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(disks)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let d = disks.join(&n);
            match fs::read_to_string(d.join(".image")) {
                Ok(img) => {
                    let get = |k: &str| {
                        img.lines()
                            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
                            .unwrap_or_default()
                    };
                    format!("{n}: flatcar {} {}", get("channel"), get("version"))
                }
                Err(_) if d.join("EFI-SYSTEM").exists() => format!("{n}: partitioned"),
                Err(_) => format!("{n}: blank"),
            }
        })
        .collect()
}

/// Why a boot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    Off,
    Reset,
    Reboot,
    Exit,
}

/// Value of `key=` on a kernel command line.
pub fn cmdline_param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Reads `set linux_append="..."` and `set linux_console="..."` from an OEM `grub.cfg` as
/// Flatcar's GRUB does when it sources the file (later settings win; `$var` expands).
pub fn read_oem_grub(text: &str) -> (String, Option<String>) {
    let mut append = String::new();
    let mut console: Option<String> = None;
    for line in text.lines() {
        let l = line.trim();
        let Some(rest) = l.strip_prefix("set ") else {
            continue;
        };
        let Some((name, value)) = rest.split_once('=') else {
            continue;
        };
        let v = value.trim();
        let v = if (v.starts_with('"') && v.ends_with('"') && v.len() >= 2)
            || (v.starts_with('\'') && v.ends_with('\'') && v.len() >= 2)
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        let expand = |s: &str| {
            s.replace("${linux_append}", &append)
                .replace("$linux_append", &append)
                .replace("${linux_console}", console.as_deref().unwrap_or(""))
                .replace("$linux_console", console.as_deref().unwrap_or(""))
        };
        match name.trim() {
            "linux_append" => append = expand(v),
            "linux_console" => console = Some(expand(v)),
            _ => {}
        }
    }
    (append, console)
}

pub(crate) struct Runner {
    pub env: Arc<Env>,
    pub m: Arc<Shared>,
    pub rx: mpsc::UnboundedReceiver<Cmd>,
}

impl Runner {
    fn scale(&self, secs: f64) -> Duration {
        let slow = lock(&self.m.faults).slow_boot.max(1.0);
        Duration::from_secs_f64((secs * self.env.time_factor * slow).max(0.0))
    }

    /// Runs `f` unless a power request interrupts it.
    async fn guard<F: Future>(&mut self, f: F) -> Result<F::Output, Interrupt> {
        tokio::pin!(f);
        loop {
            tokio::select! {
                out = &mut f => return Ok(out),
                c = self.rx.recv() => match c {
                    Some(Cmd::On) => {}
                    Some(c) => return Err(self.interrupt_for(c).await),
                    None => return Err(Interrupt::Exit),
                },
            }
        }
    }

    async fn interrupt_for(&mut self, c: Cmd) -> Interrupt {
        match c {
            Cmd::ForceOff => Interrupt::Off,
            Cmd::ForceRestart => Interrupt::Reset,
            Cmd::GracefulShutdown | Cmd::GracefulRestart => {
                self.m.set(|s| s.phase = "shutting-down");
                tokio::time::sleep(self.scale(self.env.durations.shutdown)).await;
                if c == Cmd::GracefulShutdown {
                    Interrupt::Off
                } else {
                    Interrupt::Reboot
                }
            }
            Cmd::Exit => Interrupt::Exit,
            Cmd::On => Interrupt::Reset,
        }
    }

    async fn pause(&mut self, secs: f64) -> Result<(), Interrupt> {
        let d = self.scale(secs);
        self.guard(tokio::time::sleep(d)).await
    }

    /// Waits for a power request, forever.
    async fn halt(&mut self) -> Interrupt {
        match self.guard(std::future::pending::<()>()).await {
            Err(i) => i,
            Ok(()) => Interrupt::Exit,
        }
    }

    pub async fn run(mut self) {
        let mut powered = self.m.spec.power_on;
        loop {
            if !powered {
                self.m.set(|s| {
                    s.power = "off";
                    s.phase = "off";
                    s.os = None;
                    s.ssh_listening.clear();
                    s.cmdline = None;
                });
                loop {
                    match self.rx.recv().await {
                        Some(Cmd::On) => break,
                        Some(Cmd::Exit) | None => return,
                        Some(_) => {}
                    }
                }
                self.m.log("power on");
            }
            let mut after_reboot = false;
            loop {
                self.m.set(|s| {
                    s.power = "on";
                    s.boots += 1;
                    s.os = None;
                    s.ssh_listening.clear();
                    s.cmdline = None;
                });
                let why = self.boot(after_reboot).await;
                match why {
                    Interrupt::Off => {
                        self.m.log("power off");
                        powered = false;
                        break;
                    }
                    Interrupt::Reset | Interrupt::Reboot => {
                        self.m.log(if why == Interrupt::Reset {
                            "reset"
                        } else {
                            "reboot"
                        });
                        after_reboot = true;
                    }
                    Interrupt::Exit => return,
                }
            }
        }
    }

    async fn boot(&mut self, after_reboot: bool) -> Interrupt {
        self.m.set(|s| s.phase = "firmware");
        if let Err(i) = self.pause(self.env.durations.firmware).await {
            return i;
        }
        if after_reboot && lock(&self.m.faults).hang_after_reboot {
            self.m
                .fail("hung in firmware after reboot (simulated fault)".into());
            self.m.set(|s| s.phase = "hung");
            return self.halt().await;
        }
        let devices = {
            let mut b = lock(&self.m.boot);
            match (b.override_target, b.override_mode) {
                (Some(t), OverrideMode::Once) => {
                    b.override_mode = OverrideMode::Disabled;
                    b.override_target = None;
                    // One-shot: if the override device fails, firmware falls back to its order.
                    let mut v = vec![t];
                    v.extend(b.order.iter().copied().filter(|d| *d != t));
                    v
                }
                (Some(t), OverrideMode::Continuous) => vec![t],
                _ => b.order.clone(),
            }
        };
        self.m.bump();
        for dev in devices {
            match dev {
                BootDevice::Pxe => {
                    if lock(&self.m.faults).netboot_fails {
                        self.m.fail("PXE: no DHCP offer (simulated fault)".into());
                        continue;
                    }
                    self.m.set(|s| s.phase = "netboot");
                    if let Err(i) = self.pause(self.env.durations.dhcp).await {
                        return i;
                    }
                    let env = self.env.clone();
                    let m = self.m.clone();
                    let netboot = async move {
                        let mut settings = ipxe::Settings::new(
                            m.spec.mac,
                            &m.uuid,
                            &format!("SIM-{}", m.spec.mac.with_sep("")),
                            m.spec.arch.as_deref().unwrap_or("x86_64"),
                            "",
                        );
                        ipxe::netboot(&env.http, &mut settings, &env.boot_url).await
                    };
                    let (outcome, log) = match self.guard(netboot).await {
                        Ok(x) => x,
                        Err(i) => return i,
                    };
                    for r in &log {
                        self.m
                            .log(format!("ipxe: GET {} ({}): {}", r.url, r.kind, r.result));
                    }
                    match outcome {
                        Outcome::Kernel { cmdline, .. } => return self.run_live(cmdline).await,
                        Outcome::LocalBoot => {
                            self.m.log("ipxe: boot from local disk");
                            if let Some(disk) = self.boot_disk_dir() {
                                return self.run_disk(disk).await;
                            }
                            self.m
                                .fail("ipxe: local boot requested but no disk is bootable".into());
                        }
                        Outcome::Failed(e) => self.m.fail(format!("PXE: {e}")),
                    }
                }
                BootDevice::Disk => {
                    if let Some(disk) = self.boot_disk_dir() {
                        return self.run_disk(disk).await;
                    }
                    self.m.log("firmware: no bootable disk");
                }
            }
        }
        self.m.set(|s| s.phase = "no-boot-device");
        self.halt().await
    }

    fn boot_disk_dir(&self) -> Option<PathBuf> {
        let disks = self.m.dir.join("disks");
        let mut names: Vec<String> = self.m.spec_disks().into_iter().map(|d| d.name).collect();
        names.dedup();
        names
            .into_iter()
            .map(|n| disks.join(n))
            .find(|d| d.join("EFI-SYSTEM/flatcar").is_dir())
    }

    /// The PXE-booted live OS (Flatcar's PXE image): Ignition from the kernel command line
    /// into a RAM root, then its units.
    async fn run_live(&mut self, cmdline: String) -> Interrupt {
        self.m.set(|s| {
            s.phase = "kernel";
            s.cmdline = Some(cmdline.clone());
        });
        self.m.log(format!("kernel (network): {cmdline}"));
        let live = self.m.dir.join("live");
        if let Err(e) = clear_dir(&live).and_then(|_| seed_root(&live)) {
            self.m.fail(format!("preparing the live root: {e}"));
            return self.halt().await;
        }
        if let Err(i) = self.pause(self.env.durations.kernel).await {
            return i;
        }
        let tree = Tree::new(&live);
        if cmdline_param(&cmdline, "flatcar.first_boot").is_some()
            || cmdline_param(&cmdline, "ignition.config.url").is_some()
        {
            match self.ignition(&cmdline, &tree, None, "yes").await {
                Ok(()) => {}
                Err(Some(i)) => return i,
                Err(None) => {
                    self.m.set(|s| s.phase = "failed");
                    return self.halt().await;
                }
            }
        }
        if let Err(i) = self.pause(self.env.durations.userspace).await {
            return i;
        }
        self.run_os("installer", tree).await
    }

    /// Boots the disk: GRUB reads the OEM grub.cfg and the first_boot flag; Ignition runs on
    /// first boot and the flag is removed.
    async fn run_disk(&mut self, disk: PathBuf) -> Interrupt {
        let grub = fs::read_to_string(disk.join("OEM/grub.cfg")).unwrap_or_default();
        let (append, console) = read_oem_grub(&grub);
        let console = console
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "console=tty0 console=ttyS0,115200n8".into());
        let flag = disk.join("EFI-SYSTEM/flatcar/first_boot");
        let first_boot = if flag.exists() {
            "flatcar.first_boot=detected"
        } else {
            ""
        };
        let cmdline = format!(
            "rootflags=rw mount.usrflags=ro BOOT_IMAGE=/flatcar/vmlinuz-a mount.usr=LABEL=USR-A root=LABEL=ROOT {console} {first_boot} {append}"
        )
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
        self.m.set(|s| {
            s.phase = "kernel";
            s.cmdline = Some(cmdline.clone());
        });
        self.m.log(format!("kernel (disk): {cmdline}"));
        if let Err(i) = self.pause(self.env.durations.kernel).await {
            return i;
        }
        let tree = Tree::new(disk.join("ROOT"))
            .mount("/usr", disk.join("USR-A"))
            .mount("/usr/share/oem", disk.join("OEM"))
            .mount("/boot", disk.join("EFI-SYSTEM"));
        if !first_boot.is_empty() {
            match self
                .ignition(&cmdline, &tree, Some(&disk), "detected")
                .await
            {
                Ok(()) => {
                    let _ = fs::remove_file(&flag);
                }
                Err(Some(i)) => return i,
                Err(None) => {
                    self.m.set(|s| s.phase = "failed");
                    return self.halt().await;
                }
            }
        } else if let Err(e) = seed_root(&disk.join("ROOT")) {
            self.m.fail(format!("root filesystem: {e}"));
        }
        if let Err(i) = self.pause(self.env.durations.userspace).await {
            return i;
        }
        self.run_os("installed", tree).await
    }

    /// Ignition: fetch, wipe, base layout, apply, presets. `Err(None)` means Ignition failed
    /// (the machine drops to an emergency shell).
    async fn ignition(
        &mut self,
        cmdline: &str,
        tree: &Tree,
        disk: Option<&Path>,
        first_boot: &str,
    ) -> Result<(), Option<Interrupt>> {
        self.m.set(|s| s.phase = "ignition");
        let url = cmdline_param(cmdline, "ignition.config.url").map(str::to_string);
        let env = self.env.clone();
        let oem_config = disk.map(|d| d.join("OEM/config.ign"));
        let factor = self.scale(1.0);
        let fetch = async move {
            match &url {
                Some(u) => fetch_config(&env.http, u, factor)
                    .await
                    .map(|(c, raw)| (c, raw, u.clone())),
                None => match oem_config.as_ref().and_then(|p| fs::read(p).ok()) {
                    Some(raw) => Config::parse(&raw)
                        .map(|c| (c, raw, "oem:///config.ign".to_string()))
                        .map_err(|e| e.to_string()),
                    None => Ok((Config::default(), Vec::new(), String::new())),
                },
            }
        };
        let (cfg, raw, url) = match self.guard(fetch).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                self.m.fail(format!("Ignition: {e}"));
                return Err(None);
            }
            Err(i) => return Err(Some(i)),
        };
        let env = self.env.clone();
        let sources_cfg = cfg.clone();
        let sources = self
            .guard(async move {
                let mut out = ignition::Sources::new();
                for s in sources_cfg.remote_sources() {
                    let u = reqwest::Url::parse(&s).map_err(|e| format!("{s}: {e}"))?;
                    out.insert(s, env.http.get_bytes(&u, Agent::Ignition).await?);
                }
                Ok::<_, String>(out)
            })
            .await
            .map_err(Some)?;
        let sources = match sources {
            Ok(s) => s,
            Err(e) => {
                self.m
                    .fail(format!("Ignition: fetching a file source: {e}"));
                return Err(None);
            }
        };
        // The disks stage: wipe the filesystems the config asks for, by label.
        let disks_dir = self.m.dir.join("disks");
        for label in cfg.wiped_labels() {
            for d in fs::read_dir(&disks_dir).into_iter().flatten().flatten() {
                let p = d.path().join(&label);
                if p.is_dir() {
                    if let Err(e) = clear_dir(&p) {
                        self.m.fail(format!("Ignition: wiping {label}: {e}"));
                        return Err(None);
                    }
                    self.m.log(format!(
                        "ignition: wiped filesystem {label} on {}",
                        d.file_name().to_string_lossy()
                    ));
                }
            }
        }
        let applied = seed_root(tree.root())
            .map_err(|e| e.to_string())
            .and_then(|_| {
                ignition::apply(&cfg, tree, &sources, crate::clock::days_since_epoch())
                    .map_err(|e| e.to_string())
            });
        match applied {
            Ok(a) => {
                let enabled = systemd::apply_presets(tree);
                self.m.log(format!(
                    "ignition: applied {} ({} paths, enabled {:?})",
                    if url.is_empty() {
                        "an empty config"
                    } else {
                        &url
                    },
                    a.written.len(),
                    enabled
                ));
                let run = IgnitionRun {
                    url,
                    sha256: hex::encode(sha2::Sha256::digest(&raw)),
                    first_boot: first_boot.to_string(),
                    at: crate::clock::rfc3339_now(),
                };
                self.m.set(|s| {
                    s.ignition_runs += 1;
                    s.last_ignition = Some(run);
                });
            }
            Err(e) => {
                self.m.fail(format!("Ignition: {e}"));
                return Err(None);
            }
        }
        match self.pause(self.env.durations.ignition).await {
            Ok(()) => Ok(()),
            Err(i) => Err(Some(i)),
        }
    }

    /// The running OS: sshd on the ports `sshd.socket` names, oneshot units of
    /// `multi-user.target`, and whatever reboot they or SSH commands ask for.
    async fn run_os(&mut self, kind: &'static str, tree: Tree) -> Interrupt {
        let run_dir = self.m.dir.join("run");
        let faults = lock(&self.m.faults).clone();
        let prep = clear_dir(&run_dir).and_then(|_| {
            fs::create_dir_all(run_dir.join("sim/units"))?;
            fs::create_dir_all(run_dir.join("sim/faults"))?;
            if faults.installer_fails {
                fs::write(run_dir.join("sim/faults/installer_fails"), "")?;
            }
            Ok(())
        });
        if let Err(e) = prep {
            self.m.fail(format!("preparing /run: {e}"));
            return self.halt().await;
        }
        let layout = Layout {
            tree: tree.clone(),
            run_dir: run_dir.clone(),
            shims: self.env.shims.clone(),
            disks: self.m.dir.join("disks"),
            mnt: self.m.dir.join("mnt"),
            ns: None,
        };
        let boots = lock(&self.m.status).boots;
        // Held for as long as this OS runs; dropping it unmounts the namespace.
        let _ns = self
            .env
            .sandbox
            .enter(&layout, &format!("{}-{boots}", self.m.spec.mac.hexhyp()))
            .await;
        let mut layout = layout;
        layout.ns = _ns.as_ref().map(|n| n.path().to_path_buf());
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(OsContext {
            tree: tree.clone(),
            layout,
            sandbox: self.env.sandbox.clone(),
            events: ev_tx,
        });
        let (mut servers, mut listening) = if faults.ssh_refused {
            self.m.log("sshd: not started (simulated fault)");
            (Vec::new(), Vec::new())
        } else {
            self.start_sshd(&tree, &ctx).await
        };
        let mut changed = self.m.changed.subscribe();
        let wanted = systemd::wanted_by(&tree, "multi-user.target");
        let mut oneshots = Vec::new();
        for name in &wanted {
            let _ = fs::write(run_dir.join("sim/units").join(name), "active\n");
            if let Some((_, unit)) = systemd::load_unit(&tree, name)
                && unit.get("Service", "Type").as_deref() == Some("oneshot")
                && !unit.exec_start().is_empty()
            {
                oneshots.push((name.clone(), unit));
            }
        }
        self.m.set(|s| {
            s.phase = "running";
            s.os = Some(kind);
            s.ssh_listening = listening.clone();
        });
        self.m.log(format!(
            "{kind} OS up; sshd on {listening:?}; units {wanted:?}"
        ));
        let pre = if kind == "installer" && !oneshots.is_empty() {
            self.scale(self.env.durations.install_download)
        } else {
            Duration::ZERO
        };
        let units = run_oneshots(ctx.clone(), oneshots, pre, self.scale(1.0), self.m.clone());
        tokio::pin!(units);
        let mut units_done = false;
        loop {
            tokio::select! {
                c = self.rx.recv() => match c {
                    Some(Cmd::On) => {}
                    Some(c) => return self.interrupt_for(c).await,
                    None => return Interrupt::Exit,
                },
                ev = ev_rx.recv() => match ev {
                    Some(OsEvent::Reboot) => {
                        self.m.log("systemctl reboot");
                        for srv in servers.drain(..) {
                            srv.stop().await;
                        }
                        self.m.set(|s| { s.phase = "shutting-down"; s.ssh_listening.clear(); });
                        tokio::time::sleep(self.scale(self.env.durations.shutdown)).await;
                        return Interrupt::Reboot;
                    }
                    Some(OsEvent::Poweroff) => {
                        for srv in servers.drain(..) {
                            srv.stop().await;
                        }
                        return Interrupt::Off;
                    }
                    Some(OsEvent::Note(n)) => {
                        if n.starts_with("flatcar-install") {
                            self.m.set(|s| s.installs += 1);
                        }
                        self.m.log(n);
                    }
                    None => {}
                },
                _ = &mut units, if !units_done => units_done = true,
                // Faults changed at run time: sshd goes away or comes back now, and the
                // shims see installer_fails from their next run.
                Ok(()) = changed.changed() => {
                    let f = lock(&self.m.faults).clone();
                    let marker = run_dir.join("sim/faults/installer_fails");
                    if f.installer_fails {
                        let _ = fs::write(&marker, "");
                    } else {
                        let _ = fs::remove_file(&marker);
                    }
                    if f.ssh_refused && !servers.is_empty() {
                        for srv in servers.drain(..) {
                            srv.stop().await;
                        }
                        listening.clear();
                        self.m.log("sshd: stopped (simulated fault)");
                        self.m.set(|s| s.ssh_listening.clear());
                    } else if !f.ssh_refused && servers.is_empty() {
                        (servers, listening) = self.start_sshd(&tree, &ctx).await;
                        let l = listening.clone();
                        self.m.set(|s| s.ssh_listening = l);
                    }
                },
            }
        }
    }
}

impl Runner {
    /// Starts sshd on the ports `sshd.socket` listens on, mapped to the machine's loopback
    /// ports.
    async fn start_sshd(
        &self,
        tree: &Tree,
        ctx: &Arc<OsContext>,
    ) -> (Vec<ssh::SshServer>, Vec<u16>) {
        let mut servers = Vec::new();
        let mut listening = Vec::new();
        let key = match ssh::host_key(tree) {
            Ok(k) => k,
            Err(e) => {
                self.m.fail(format!("sshd: {e}"));
                return (servers, listening);
            }
        };
        for port in systemd::sshd_ports(tree) {
            let real = match port {
                22 => self.m.ports.ssh,
                2222 => self.m.ports.ssh_installer,
                other => {
                    self.m
                        .log(format!("sshd: port {other} is not mapped in the lab"));
                    continue;
                }
            };
            let addrs = [std::net::Ipv4Addr::LOCALHOST, self.m.ports.address];
            match ssh::serve_on(&addrs, real, ctx.clone(), key.clone()).await {
                Ok(s) => {
                    servers.push(s);
                    listening.push(port);
                }
                Err(e) => self.m.fail(format!(
                    "sshd: binding 127.0.0.1:{real} and {}:{real}: {e}",
                    self.m.ports.address
                )),
            }
        }
        (servers, listening)
    }
}

impl Shared {
    fn spec_disks(&self) -> Vec<crate::spec::DiskSpec> {
        if self.spec.disks.is_empty() {
            vec![crate::spec::DiskSpec {
                name: "sda".into(),
                size_gib: 100,
            }]
        } else {
            self.spec.disks.clone()
        }
    }
}

/// Creates the machine's disk directories (each with its `.size`).
pub(crate) fn prepare_disks(m: &Machine) -> std::io::Result<()> {
    for d in m.shared.spec_disks() {
        let p = m.shared.dir.join("disks").join(&d.name);
        fs::create_dir_all(&p)?;
        fs::write(
            p.join(".size"),
            (d.size_gib * 1024 * 1024 * 1024).to_string(),
        )?;
    }
    fs::create_dir_all(m.shared.dir.join("mnt"))?;
    Ok(())
}

/// Runs oneshot units in order, like systemd starting `multi-user.target`; failed units with
/// `Restart=on-failure` are retried up to five times after `RestartSec`.
async fn run_oneshots(
    ctx: Arc<OsContext>,
    units: Vec<(String, systemd::UnitFile)>,
    pre: Duration,
    scale: Duration,
    m: Arc<Shared>,
) {
    if units.is_empty() {
        return;
    }
    tokio::time::sleep(pre).await;
    for (name, unit) in units {
        let restart = unit.get("Service", "Restart").unwrap_or_default();
        let restart_sec = unit
            .get("Service", "RestartSec")
            .map(|s| s.trim_end_matches('s').parse::<f64>().unwrap_or(0.1))
            .unwrap_or(0.1);
        for attempt in 1..=5 {
            let mut ok = true;
            for exec in unit.exec_start() {
                let cmdline = exec.trim_start_matches(['-', '@', '+', '!', ':']);
                let out = ctx
                    .sandbox
                    .command(&ctx.layout, cmdline, &[("HOME", "/root"), ("USER", "root")])
                    .output()
                    .await;
                let events = ssh::take_events(&ctx.layout.run_dir);
                let stop = events
                    .iter()
                    .any(|e| matches!(e, OsEvent::Reboot | OsEvent::Poweroff));
                match &out {
                    Ok(o) => {
                        let text = format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        );
                        for l in text
                            .lines()
                            .rev()
                            .take(40)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                        {
                            m.log(format!("{name}: {l}"));
                        }
                        if !o.status.success() && !exec.starts_with('-') {
                            ok = false;
                        }
                    }
                    Err(e) => {
                        m.log(format!("{name}: cannot start: {e}"));
                        ok = false;
                    }
                }
                for e in events {
                    let _ = ctx.events.send(e);
                }
                if stop {
                    return;
                }
                if !ok {
                    break;
                }
            }
            let _ = fs::write(
                ctx.layout.run_dir.join("sim/units").join(&name),
                if ok { "active\n" } else { "failed\n" },
            );
            if ok {
                break;
            }
            m.fail(format!("{name} failed (attempt {attempt})"));
            if restart != "on-failure" && restart != "always" {
                break;
            }
            tokio::time::sleep(scale.mul_f64(restart_sec)).await;
        }
    }
}

/// Fetches an Ignition config with Ignition's patience (a few tries), resolving
/// `ignition.config.replace` and `merge`.
async fn fetch_config(
    http: &Http,
    url: &str,
    scale: Duration,
) -> Result<(Config, Vec<u8>), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("ignition.config.url {url}: {e}"))?;
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(scale.mul_f64(2.0)).await;
        }
        match http.get_text(&u, Agent::Ignition).await {
            Ok((200..=299, body)) => {
                let raw = body.into_bytes();
                let mut cfg = Config::parse(&raw).map_err(|e| format!("{url}: {e}"))?;
                if let Some(r) = cfg.ignition.config.replace.clone()
                    && let Some(src) = r.source
                {
                    cfg = Config::parse(&resource(http, &src).await?)
                        .map_err(|e| format!("{src}: {e}"))?;
                }
                for r in cfg.ignition.config.merge.clone() {
                    if let Some(src) = r.source {
                        let child = Config::parse(&resource(http, &src).await?)
                            .map_err(|e| format!("{src}: {e}"))?;
                        cfg = cfg.merge(child);
                    }
                }
                return Ok((cfg, raw));
            }
            Ok((status, _)) => last = format!("GET {url}: HTTP {status}"),
            Err(e) => last = format!("GET {url}: {e}"),
        }
    }
    Err(last)
}

async fn resource(http: &Http, src: &str) -> Result<Vec<u8>, String> {
    if src.starts_with("data:") {
        return ignition::decode_data_url(src);
    }
    let u = reqwest::Url::parse(src).map_err(|e| format!("{src}: {e}"))?;
    http.get_bytes(&u, Agent::Ignition).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oem_grub_as_flatcar_reads_it() {
        let (a, c) = read_oem_grub(
            "\nset linux_append=\"flatcar.autologin ignition.config.url=http://h/ignition?mac=52:54:00:00:00:01&os=installed\"\nset linux_console=\"console=ttyS0,115200n8\"\n",
        );
        assert_eq!(
            a,
            "flatcar.autologin ignition.config.url=http://h/ignition?mac=52:54:00:00:00:01&os=installed"
        );
        assert_eq!(c.as_deref(), Some("console=ttyS0,115200n8"));
        let (a, c) =
            read_oem_grub("set linux_append=\"a\"\nset linux_append=\"$linux_append b\"\n");
        assert_eq!(a, "a b");
        assert!(c.is_none());
    }

    #[test]
    fn cmdline_params() {
        let c = "initrd=x ignition.config.url=http://h/ignition?uuid=u&mac=52-54-00-00-00-01 flatcar.first_boot=yes";
        assert_eq!(
            cmdline_param(c, "ignition.config.url"),
            Some("http://h/ignition?uuid=u&mac=52-54-00-00-00-01")
        );
        assert_eq!(cmdline_param(c, "flatcar.first_boot"), Some("yes"));
        assert_eq!(cmdline_param(c, "flatcar"), None);
    }
}
