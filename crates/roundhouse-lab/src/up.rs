//! `lab up` and `lab down`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster;
use crate::error::LabError;
use crate::fleet::READY_FILE;
use crate::layout::{LabDir, LabMachine, LabState, Proc};
use crate::procs;

/// What `lab up` builds.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The lab directory.
    pub dir: PathBuf,
    /// Number of controllers.
    pub controllers: usize,
    /// Number of workers.
    pub workers: usize,
    /// The simulator's time factor (1 = real Flatcar timings).
    pub time_scale: f64,
    /// The roundhouse binary to run (`std::env::current_exe()`).
    pub binary: PathBuf,
    /// How the cluster file powers machines.
    pub power: cluster::PowerMode,
    /// Run the processes in their own process groups, to outlive the caller (`lab up`); the
    /// demo keeps them in its own, so a Ctrl-C stops everything.
    pub detach: bool,
}

/// Most machines `lab up` starts: the lab is for trying roundhouse, the simulator's own
/// scale runs go through its library.
pub const MAX_MACHINES: usize = 200;

/// Progress lines go to stderr so stdout stays for results.
pub(crate) fn progress(msg: impl std::fmt::Display) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "lab: {msg}");
}

/// The lab's recorded state (`None` for a new lab), refusing while any process it recorded
/// still runs: a second `lab up` must not start a second fleet on the same ports.
pub(crate) fn stopped_state(lab: &LabDir) -> Result<Option<LabState>, LabError> {
    let state = match lab.load() {
        Ok(s) => s,
        Err(LabError::NoLab(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let run = running(lab, &state);
    if !run.is_empty() {
        return Err(LabError::Running {
            dir: lab.root().to_path_buf(),
            pids: run
                .iter()
                .map(|(w, p)| format!("{w} {p}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Some(state))
}

/// Which lab processes of `state` run now.
pub fn running(lab: &LabDir, state: &LabState) -> Vec<(&'static str, u32)> {
    let mut out = Vec::new();
    for (what, p) in [("boot server", &state.serve), ("simulator", &state.fleet)] {
        if let Some(p) = p
            && procs::alive(p.pid, lab.root())
        {
            out.push((what, p.pid));
        }
    }
    if let Some(q) = &state.qemu {
        out.extend(crate::qemu::running(lab, q));
    }
    out
}

/// Creates (or restarts) the lab in `opts.dir`: writes the cluster file and its inputs,
/// starts the boot server and the simulated fleet in the background, and records them in
/// `lab.json`. On failure, whatever it started is stopped again.
pub fn up(opts: &UpOptions) -> Result<LabState, LabError> {
    let total = opts.controllers + opts.workers;
    if total == 0 || total > MAX_MACHINES || opts.controllers == 0 {
        return Err(LabError::Other(format!(
            "a lab has at least one controller and at most {MAX_MACHINES} machines"
        )));
    }
    if !(opts.time_scale.is_finite() && opts.time_scale > 0.0) {
        return Err(LabError::Other(
            "--time-scale must be a positive number".into(),
        ));
    }
    let runtime = runtime()?;
    let notes = runtime.block_on(crate::preflight::check(total))?;
    for n in notes {
        progress(format!("note: {n}"));
    }
    let lab = LabDir::new(&opts.dir)?;
    let previous = stopped_state(&lab)?;
    if let Some(prev) = &previous {
        let c = prev
            .machines
            .iter()
            .filter(|m| m.role == "controller")
            .count();
        let w = prev.machines.len() - c;
        if (c, w) != (opts.controllers, opts.workers) {
            return Err(LabError::Other(format!(
                "the lab in {} has {c} controllers and {w} workers; `roundhouse lab down --purge --dir {}` first to change that",
                lab.root().display(),
                lab.root().display()
            )));
        }
    } else if lab.root().exists()
        && std::fs::read_dir(lab.root())
            .map_err(LabError::io(lab.root()))?
            .flatten()
            // Marker files of the lab's own tools (the demo's) do not make it someone else's.
            .any(|e| {
                !e.file_name()
                    .to_string_lossy()
                    .starts_with(".roundhouse-lab")
            })
    {
        return Err(LabError::Other(format!(
            "{} exists, is not empty and holds no lab (no {}): choose another --dir",
            lab.root().display(),
            crate::layout::LAB_FILE
        )));
    }
    std::fs::create_dir_all(lab.root()).map_err(LabError::io(lab.root()))?;
    // Leftovers of a simulator that was killed would otherwise shadow the new one's mounts.
    procs::unmount_all(lab.root())?;
    cluster::write_inputs(&lab)?;
    let password = bmc_password(&lab)?;

    let mut started = Started {
        lab: lab.clone(),
        procs: Vec::new(),
    };
    let serve_port = previous
        .as_ref()
        .and_then(|p| p.boot_url.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let (serve, boot_url) = start_serve(&lab, &opts.binary, "127.0.0.1", serve_port, opts.detach)?;
    started.procs.push(serve.clone());
    progress(format!(
        "boot server listening on {boot_url} (pid {})",
        serve.pid
    ));

    let names = cluster::machine_names(opts.controllers, opts.workers);
    let control_port = previous
        .as_ref()
        .and_then(|p| p.control.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok());
    let spec = cluster::fleet_spec(
        &lab,
        &boot_url,
        opts.time_scale,
        previous.as_ref().map(|p| p.port_base),
        control_port,
        &names,
        &password,
    );
    let spec_path = lab.fleet_spec();
    std::fs::write(
        &spec_path,
        serde_json::to_string_pretty(&spec).unwrap_or_default(),
    )
    .map_err(LabError::io(&spec_path))?;
    let (fleet, ready) = start_fleet(&lab, &opts.binary, total, opts.detach)?;
    started.procs.push(fleet.clone());
    let control = ready["control"].as_str().unwrap_or_default().to_string();
    progress(format!(
        "simulator running {total} machines, control API http://{control} (pid {})",
        fleet.pid
    ));
    let machines = machines_from_ready(&ready, &names)?;
    let port_base = ready["machines"][0]["bmc_url"]
        .as_str()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| LabError::Other("the simulator's ready line has no BMC port".into()))?;
    if let Some(prev) = &previous
        && prev.machines != machines
    {
        return Err(LabError::Other(
            "the restarted simulator gave the machines other addresses or ports than the cluster file names; `roundhouse lab down --purge` and start afresh".into(),
        ));
    }
    if !lab.cluster_file().exists() {
        let text = cluster::cluster_file(
            &lab,
            &boot_url,
            &opts.binary,
            &machines,
            opts.power,
            roundhouse_sim::sandbox::is_root(),
        );
        let path = lab.cluster_file();
        std::fs::write(&path, text).map_err(LabError::io(&path))?;
    }
    let state = LabState {
        binary: opts.binary.clone(),
        time_scale: opts.time_scale,
        boot_url,
        control,
        port_base,
        bmc_username: "admin".into(),
        machines,
        serve: Some(serve),
        fleet: Some(fleet),
        qemu: None,
    };
    lab.save(&state)?;
    started.procs.clear();
    Ok(state)
}

/// Stops what `up` started if it returns early.
pub(crate) struct Started {
    pub(crate) lab: LabDir,
    pub(crate) procs: Vec<Proc>,
}

impl Started {
    /// Keeps the processes running: they were handed on.
    pub(crate) fn disarm(mut self) {
        self.procs.clear();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        for p in self.procs.iter().rev() {
            procs::stop(p, self.lab.root(), Duration::from_secs(10));
        }
        if !self.procs.is_empty() {
            let _ = procs::unmount_all(self.lab.root());
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, LabError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Other(format!("starting the async runtime: {e}")))
}

pub(crate) fn bmc_password(lab: &LabDir) -> Result<String, LabError> {
    let path = lab.bmc_password_file();
    if let Ok(p) = std::fs::read_to_string(&path)
        && !p.trim().is_empty()
    {
        return Ok(p.trim().to_string());
    }
    // Any unguessable text will do; the kernel's UUID source needs no extra crate.
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map_err(LabError::io("/proc/sys/kernel/random/uuid"))?;
    let password = uuid.trim().replace('-', "");
    std::fs::write(&path, format!("{password}\n")).map_err(LabError::io(&path))?;
    Ok(password)
}

/// Offset of the end of `log` now, so a wait reads only what a new process writes.
fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

fn read_from(log: &Path, offset: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = (offset as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Waits for `ready` to return something while `proc` lives, printing a progress line every
/// few seconds.
fn wait_for<T>(
    lab: &LabDir,
    what: &str,
    proc: &Proc,
    timeout: Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Result<T, LabError> {
    let start = Instant::now();
    let mut next_note = Duration::from_secs(3);
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if !procs::alive(proc.pid, lab.root()) {
            return Err(LabError::Process {
                what: what.to_string(),
                why: "exited before it was ready".into(),
                log: Some(proc.log.clone()),
            });
        }
        let waited = start.elapsed();
        if waited > timeout {
            return Err(LabError::Process {
                what: what.to_string(),
                why: format!("not ready after {} s", timeout.as_secs()),
                log: Some(proc.log.clone()),
            });
        }
        if waited > next_note {
            progress(format!("waiting for the {what} ({} s)", waited.as_secs()));
            next_note += Duration::from_secs(3);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `roundhouse serve` on `host:port` (port 0: any) and returns it and its base URL.
pub(crate) fn start_serve(
    lab: &LabDir,
    binary: &Path,
    host: &str,
    port: u16,
    detach: bool,
) -> Result<(Proc, String), LabError> {
    let log = lab.logs().join("serve.log");
    let offset = log_len(&log);
    let mut cmd = Command::new(binary);
    cmd.arg("serve")
        .arg("--address")
        .arg(format!("{host}:{port}"))
        .arg("--data-path")
        .arg(lab.data_dir())
        .arg("--state-path")
        .arg(lab.boot_state_dir())
        .arg("--assets-path")
        .arg(lab.boot_assets())
        // Apply waits for the boot server to load each publication; poll often.
        .arg("--reload-interval")
        .arg("0.2");
    let proc = procs::spawn(cmd, "boot server", &log, detach)?;
    let url = {
        let started = Started {
            lab: lab.clone(),
            procs: vec![proc.clone()],
        };
        let url = wait_for(lab, "boot server", &proc, Duration::from_secs(30), || {
            read_from(&log, offset)
                .lines()
                .find_map(|l| l.split("listening on ").nth(1))
                .map(|u| u.trim().to_string())
        })?;
        started.disarm();
        url
    };
    Ok((proc, url))
}

fn start_fleet(
    lab: &LabDir,
    binary: &Path,
    machines: usize,
    detach: bool,
) -> Result<(Proc, serde_json::Value), LabError> {
    let ready_path = lab.sim_dir().join(READY_FILE);
    let _ = std::fs::remove_file(&ready_path);
    let log = lab.logs().join("fleet.log");
    let mut cmd = Command::new(binary);
    cmd.args(["lab", "fleet-run"]).arg(lab.fleet_spec());
    let proc = procs::spawn(cmd, "simulator", &log, detach)?;
    let guard = Started {
        lab: lab.clone(),
        procs: vec![proc.clone()],
    };
    let timeout = Duration::from_secs(30 + machines as u64 / 10);
    let ready = wait_for(lab, "simulator", &proc, timeout, || {
        std::fs::read(&ready_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    })?;
    guard.disarm();
    Ok((proc, ready))
}

fn machines_from_ready(
    ready: &serde_json::Value,
    names: &[(String, &'static str, String)],
) -> Result<Vec<LabMachine>, LabError> {
    let rows = ready["machines"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (name, role, mac) in names {
        let row = rows
            .iter()
            .find(|r| r["name"].as_str() == Some(name))
            .ok_or_else(|| LabError::Other(format!("the simulator does not list {name}")))?;
        let text = |k: &str| row[k].as_str().unwrap_or_default().to_string();
        let ssh_port = text("ssh")
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| LabError::Other(format!("no SSH port for {name}")))?;
        let address = text("address");
        if address.is_empty() {
            return Err(LabError::Other(format!(
                "the simulator gives {name} no address of its own (an older roundhouse-sim?)"
            )));
        }
        out.push(LabMachine {
            name: name.clone(),
            role: role.to_string(),
            mac: mac.clone(),
            address,
            ssh_port,
            bmc_url: text("bmc_url"),
        });
    }
    Ok(out)
}

/// What `lab down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    /// Processes stopped (name, pid, whether it had to be killed).
    pub stopped: Vec<(&'static str, u32, bool)>,
    /// Mounts removed.
    pub unmounted: usize,
    /// The directory was deleted.
    pub purged: bool,
}

/// Stops the lab in `dir` (simulator first, so machines power off while the boot server
/// still answers), removes its mounts, and with `purge` deletes the directory.
pub fn down(dir: &Path, purge: bool) -> Result<DownReport, LabError> {
    let lab = LabDir::new(dir)?;
    let mut state = lab.load()?;
    let mut report = DownReport::default();
    if let Some(q) = &state.qemu {
        report.stopped.extend(crate::qemu::stop_machines(&lab, q));
    }
    for (what, slot) in [
        ("simulator", &mut state.fleet),
        ("boot server", &mut state.serve),
    ] {
        if let Some(p) = slot.take() {
            let was_alive = procs::alive(p.pid, lab.root());
            let killed = procs::stop(&p, lab.root(), Duration::from_secs(20));
            if was_alive {
                report.stopped.push((what, p.pid, killed));
            }
        }
    }
    report.unmounted = procs::unmount_all(lab.root())?;
    if purge {
        // Never recurse through a mount: unmount_all just proved there is none.
        std::fs::remove_dir_all(lab.root()).map_err(LabError::io(lab.root()))?;
        report.purged = true;
    } else {
        let _ = std::fs::remove_file(lab.sim_dir().join(READY_FILE));
        lab.save(&state)?;
    }
    Ok(report)
}
