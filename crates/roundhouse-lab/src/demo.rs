//! `lab demo`: the narrated scenario. Provision every machine by PXE; change a worker
//! snippet and a controller snippet; plan (workers in place, controllers held); apply;
//! status; re-create one controller by PXE with its post-provision hook; then log in to every
//! node over SSH and check that it runs what `roundhouse status` says.
//!
//! Every step runs the roundhouse binary as a user would type it, shows what it printed, and
//! checks its JSON output; the verdicts go to `<dir>/demo-report.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::{self, HOOK_DESTINATION, HOOK_MARKER, HOOK_NAME, RELEASE_FILE};
use crate::error::LabError;
use crate::layout::{LabDir, LabState};
use crate::status::bare_hex;
use crate::up::{UpOptions, down, running, up};

/// What `lab demo` runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The lab directory (a fresh one; a previous demo's is replaced).
    pub dir: PathBuf,
    /// The simulator's time factor.
    pub time_scale: f64,
    /// Leave the lab running afterwards.
    pub keep: bool,
    /// The roundhouse binary.
    pub binary: PathBuf,
}

/// Name of the file that marks a directory as a demo's, so a later demo may replace it.
const DEMO_MARKER: &str = ".roundhouse-lab-demo";

/// The report file.
pub const REPORT_FILE: &str = "demo-report.json";

/// The node the demo re-creates.
pub const RECREATED: &str = "controller-1";

/// What the demo found on one node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeCheck {
    /// Node name.
    pub node: String,
    /// Its role.
    pub role: String,
    /// Applied digest per `roundhouse status`.
    pub status_applied: String,
    /// Desired digest per `roundhouse status`.
    pub status_desired: String,
    /// The role snippet revision whose digest that is.
    pub revision: Option<u32>,
    /// What [`RELEASE_FILE`] should hold for that revision.
    pub expected_release: String,
    /// What it holds, read over SSH.
    pub found_release: String,
    /// `/etc/hostname` over SSH.
    pub hostname: String,
    /// The simulator saw the machine apply the bytes published for the applied digest.
    pub ignition_bytes_match: bool,
    /// Controllers: the hook's upload is in place with the expected content (and mode).
    pub hook_upload_ok: Option<bool>,
    /// Controllers: the hook's command left its marker.
    pub hook_ran: Option<bool>,
    /// PXE installations the simulator counted for the machine.
    pub pxe_installs: u64,
    /// Everything above agrees.
    pub ok: bool,
    /// What disagreed.
    pub problems: Vec<String>,
}

/// `<dir>/demo-report.json`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Seconds from start to the end of the verification.
    pub seconds: f64,
    /// Step name → seconds it took.
    pub steps: Vec<(String, f64)>,
    /// Per-node actions of the plan after the snippet change.
    pub plan_after_change: BTreeMap<String, String>,
    /// Per-node actions of the plan after the re-create request.
    pub plan_recreate: BTreeMap<String, String>,
    /// Workers `status` showed on the new digest after the second apply.
    pub workers_on_new_digest: Vec<String>,
    /// Controllers `status` showed drifted and held after the second apply.
    pub controllers_held: Vec<String>,
    /// Per-node verification over SSH.
    pub nodes: Vec<NodeCheck>,
    /// Every check passed.
    pub passed: bool,
}

struct Narrator {
    start: Instant,
    step_start: Instant,
    steps: Vec<(String, f64)>,
    current: Option<String>,
    total: usize,
    n: usize,
}

impl Narrator {
    fn step(&mut self, title: &str) {
        self.finish();
        self.n += 1;
        println!(
            "\n[{:>5.1} s] {}/{} {title}",
            self.start.elapsed().as_secs_f64(),
            self.n,
            self.total
        );
        self.current = Some(title.to_string());
        self.step_start = Instant::now();
    }

    fn finish(&mut self) {
        if let Some(t) = self.current.take() {
            self.steps
                .push((t, self.step_start.elapsed().as_secs_f64()));
        }
    }

    fn say(&self, text: &str) {
        for l in text.lines() {
            println!("          {l}");
        }
    }
}

/// Runs `roundhouse ARGS…` and returns its output; shows the command line and (with `show`)
/// what it printed.
fn roundhouse(opts: &DemoOptions, args: &[&str], show: bool) -> Result<Output, LabError> {
    println!("          $ roundhouse {}", args.join(" "));
    let out = Command::new(&opts.binary)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .map_err(|e| LabError::Demo(format!("running {}: {e}", opts.binary.display())))?;
    if show {
        for stream in [&out.stdout, &out.stderr] {
            for l in String::from_utf8_lossy(stream).lines() {
                println!("          │ {l}");
            }
        }
    }
    Ok(out)
}

fn require_success(out: &Output, what: &str) -> Result<(), LabError> {
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Demo(format!(
        "`{what}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

fn json(out: &Output, what: &str) -> Result<serde_json::Value, LabError> {
    // `apply --output json` and friends print one JSON document; take the last line that
    // parses when there are several.
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text)
        .or_else(|_| {
            text.lines()
                .rev()
                .find_map(|l| serde_json::from_str(l).ok())
                .ok_or(())
        })
        .map_err(|_| LabError::Demo(format!("`{what}` printed no JSON:\n{text}")))
}

/// `plan --output json` → node → (action, new digest).
fn plan_actions(
    opts: &DemoOptions,
    cluster: &str,
) -> Result<BTreeMap<String, (String, String)>, LabError> {
    let out = roundhouse(opts, &["plan", cluster, "--output", "json"], false)?;
    require_success(&out, "roundhouse plan")?;
    let v = json(&out, "roundhouse plan")?;
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_string(),
                (
                    i["action"].as_str().unwrap_or_default().to_string(),
                    i["new_digest"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect())
}

/// `status --output json` → node → row.
fn status_rows(
    opts: &DemoOptions,
    cluster: &str,
    show: bool,
) -> Result<BTreeMap<String, serde_json::Value>, LabError> {
    if show {
        let out = roundhouse(opts, &["status", cluster], true)?;
        require_success(&out, "roundhouse status")?;
    }
    let out = Command::new(&opts.binary)
        .args(["status", cluster, "--output", "json"])
        .output()
        .map_err(|e| LabError::Demo(format!("running roundhouse status: {e}")))?;
    require_success(&out, "roundhouse status --output json")?;
    let v = json(&out, "roundhouse status")?;
    Ok(v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_string(),
                n.clone(),
            )
        })
        .collect())
}

const APPLY_FLAGS: &[&str] = &[
    "--yes",
    "--max-parallel",
    "10",
    "--poll-initial",
    "0.2",
    "--poll-max",
    "0.5",
    "--connect-timeout",
    "5",
    "--reach-timeout",
    "60",
    "--pxe-timeout",
    "180",
    "--in-place-timeout",
    "180",
];

fn apply(opts: &DemoOptions, cluster: &str) -> Result<(), LabError> {
    let mut args = vec!["apply", cluster];
    args.extend_from_slice(APPLY_FLAGS);
    let out = roundhouse(opts, &args, false)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    for l in String::from_utf8_lossy(&out.stderr).lines() {
        if let Some(shown) = apply_line(l) {
            println!("          │ {shown}");
        }
    }
    require_success(&out, "roundhouse apply")
}

/// Condenses apply's progress for the narration: per node when it started, its hooks, and
/// how it ended (the waiting steps and the power command's output are left out); the plan
/// table and the summary are kept. `None` drops the line.
fn apply_line(line: &str) -> Option<String> {
    let is_progress = line.len() > 25
        && line.as_bytes()[4] == b'-'
        && line.as_bytes()[10] == b'T'
        && line.as_bytes()[23] == b'Z';
    if !is_progress {
        return (!line.trim_start().starts_with('|')).then(|| line.to_string());
    }
    let time = &line[11..23];
    let rest = line[24..].trim_start();
    let kind = rest.split_whitespace().nth(1).unwrap_or_default();
    let keep = match kind {
        "queued" => false,
        "step" => rest.contains("hook"),
        _ => true,
    };
    keep.then(|| format!("{time} {rest}"))
}

/// Stops the lab when the demo ends, however it ends (unless `--keep`).
struct LabGuard {
    dir: PathBuf,
    keep: bool,
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = down(&self.dir, false) {
            eprintln!("lab demo: stopping the lab: {e}");
        }
    }
}

/// Prepares a fresh directory: refuses one that is not a previous demo's, replaces one that
/// is (when it is not running).
fn fresh_dir(dir: &Path) -> Result<(), LabError> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)
        .map_err(LabError::io(dir))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    if !dir.join(DEMO_MARKER).exists() {
        return Err(LabError::Other(format!(
            "{} exists and is not a previous demo's directory; choose another --dir",
            dir.display()
        )));
    }
    let lab = LabDir::new(dir)?;
    if let Ok(state) = lab.load()
        && !running(&lab, &state).is_empty()
    {
        return Err(LabError::Running {
            dir: lab.root().to_path_buf(),
            pids: running(&lab, &state)
                .iter()
                .map(|(w, p)| format!("{w} {p}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if lab.state_file().exists() {
        down(dir, true)?;
    } else {
        // Never delete through a mount.
        crate::procs::unmount_all(&std::path::absolute(dir).map_err(LabError::io(dir))?)?;
        std::fs::remove_dir_all(dir).map_err(LabError::io(dir))?;
    }
    Ok(())
}

/// Runs the demo. Fails (after stopping the lab) when any check fails.
pub fn run(opts: &DemoOptions) -> Result<(), LabError> {
    let mut n = Narrator {
        start: Instant::now(),
        step_start: Instant::now(),
        steps: Vec::new(),
        current: None,
        total: 6,
        n: 0,
    };
    let mut report = Report::default();
    println!("roundhouse lab demo: 3 controllers and 3 workers on simulated bare metal");
    fresh_dir(&opts.dir)?;
    // Marked first, so the next demo may replace this directory even if this one fails.
    std::fs::create_dir_all(&opts.dir).map_err(LabError::io(&opts.dir))?;
    let marker = opts.dir.join(DEMO_MARKER);
    std::fs::write(&marker, b"").map_err(LabError::io(&marker))?;

    n.step(&format!(
        "Start the lab in {}: a boot server and 6 simulated machines (time scale {})",
        opts.dir.display(),
        opts.time_scale
    ));
    let state = up(&UpOptions {
        dir: opts.dir.clone(),
        controllers: 3,
        workers: 3,
        time_scale: opts.time_scale,
        binary: opts.binary.clone(),
        power: cluster::PowerMode::Redfish,
        detach: false,
    })?;
    let _guard = LabGuard {
        dir: opts.dir.clone(),
        keep: opts.keep,
    };
    let lab = LabDir::new(&opts.dir)?;
    n.say(&up_summary(&lab, &state));
    let cluster_path = lab.cluster_file();
    let cluster = cluster_path.to_string_lossy().into_owned();

    n.step("Provision every machine by PXE (all disks are blank)");
    let rev1 = plan_actions(opts, &cluster)?;
    let fresh: Vec<&String> = rev1
        .iter()
        .filter(|(_, (a, _))| a != "provision")
        .map(|(k, _)| k)
        .collect();
    if !fresh.is_empty() {
        return Err(LabError::Demo(format!(
            "expected every node planned for provision, not {fresh:?}"
        )));
    }
    apply(opts, &cluster)?;
    n.say("every machine was powered on through its BMC, network-booted, ran the installer, rebooted into Flatcar and applied its config");

    n.step("Change the worker snippet and the controller snippet, then plan");
    for role in ["worker", "controller"] {
        let path = cluster::snippet_path(&lab, role);
        std::fs::write(&path, cluster::role_snippet(role, 2)).map_err(LabError::io(&path))?;
        n.say(&format!(
            "{}: {} -> {}",
            path.strip_prefix(lab.root()).unwrap_or(&path).display(),
            cluster::release_line(role, 1),
            cluster::release_line(role, 2)
        ));
    }
    let out = roundhouse(opts, &["plan", &cluster], true)?;
    require_success(&out, "roundhouse plan")?;
    let rev2 = plan_actions(opts, &cluster)?;
    report.plan_after_change = rev2
        .iter()
        .map(|(k, (a, _))| (k.clone(), a.clone()))
        .collect();
    let mut problems = Vec::new();
    for m in &state.machines {
        let want = if m.role == "worker" {
            "reprovision-in-place"
        } else {
            "hold"
        };
        let got = rev2.get(&m.name).map(|x| x.0.as_str()).unwrap_or("missing");
        if got != want {
            problems.push(format!("{}: planned {got}, expected {want}", m.name));
        }
    }
    if !problems.is_empty() {
        return Err(LabError::Demo(problems.join("; ")));
    }
    n.say("checked: workers are re-provisioned in place, controllers are held (on_controller_change = \"hold\")");

    n.step("Apply: workers re-provisioned in place over SSH, controllers left alone");
    apply(opts, &cluster)?;
    let rows = status_rows(opts, &cluster, true)?;
    for m in &state.machines {
        let row = &rows[&m.name];
        let applied = row["applied_digest"].as_str().unwrap_or_default();
        let new = &rev2[&m.name].1;
        let old = &rev1[&m.name].1;
        if m.role == "worker" && applied == new && row["drift"] == false {
            report.workers_on_new_digest.push(m.name.clone());
        }
        if m.role == "controller" && applied == old && row["drift"] == true {
            report.controllers_held.push(m.name.clone());
        }
    }
    let workers = state.machines.iter().filter(|m| m.role == "worker").count();
    let controllers = state.machines.len() - workers;
    if report.workers_on_new_digest.len() != workers || report.controllers_held.len() != controllers
    {
        return Err(LabError::Demo(format!(
            "status after apply: workers on the new digest {:?}, controllers held {:?}",
            report.workers_on_new_digest, report.controllers_held
        )));
    }
    n.say("checked: every worker runs the new digest; every controller runs the old one and shows drift");

    n.step(&format!(
        "Re-create {RECREATED} by PXE; its post-provision hook \"{HOOK_NAME}\" runs after the install"
    ));
    let out = roundhouse(
        opts,
        &["recreate", &cluster, RECREATED, "--allow-controllers"],
        true,
    )?;
    require_success(&out, "roundhouse recreate")?;
    let plan3 = plan_actions(opts, &cluster)?;
    report.plan_recreate = plan3
        .iter()
        .map(|(k, (a, _))| (k.clone(), a.clone()))
        .collect();
    if plan3.get(RECREATED).map(|x| x.0.as_str()) != Some("provision") {
        return Err(LabError::Demo(format!(
            "after `recreate`, {RECREATED} is planned {:?}, not provision",
            plan3.get(RECREATED)
        )));
    }
    apply(opts, &cluster)?;

    n.step("Status, then log in to every node over SSH and compare");
    let rows = status_rows(opts, &cluster, true)?;
    let mut revisions: BTreeMap<(String, String), u32> = BTreeMap::new();
    for (node, (_, d)) in &rev1 {
        revisions.insert((node.clone(), d.clone()), 1);
    }
    for (node, (_, d)) in &rev2 {
        revisions.insert((node.clone(), d.clone()), 2);
    }
    report.nodes = verify_nodes(&lab, &state, &rows, &revisions)?;
    print_checks(&report.nodes);
    report.passed = report.nodes.iter().all(|c| c.ok);

    n.finish();
    report.steps = n.steps.clone();
    report.seconds = n.start.elapsed().as_secs_f64();
    let path = lab.root().join(REPORT_FILE);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    )
    .map_err(LabError::io(&path))?;
    let ok = report.nodes.iter().filter(|c| c.ok).count();
    println!(
        "\n[{:>5.1} s] {ok} of {} nodes run what `roundhouse status` says; report in {}",
        report.seconds,
        report.nodes.len(),
        path.display()
    );
    if opts.keep {
        println!(
            "          the lab keeps running: roundhouse lab status --dir {0}; roundhouse lab down --dir {0}",
            opts.dir.display()
        );
    } else {
        println!(
            "          stopping the lab (files stay in {})",
            opts.dir.display()
        );
    }
    if !report.passed {
        return Err(LabError::Demo(format!(
            "{} of {} nodes do not run what status says (see {})",
            report.nodes.len() - ok,
            report.nodes.len(),
            path.display()
        )));
    }
    Ok(())
}

fn print_checks(checks: &[NodeCheck]) {
    println!(
        "          {:<14} {:<10} {:<13} {:<34} {:<6} {:<5} RESULT",
        "NODE", "ROLE", "STATUS SAYS", "ON THE NODE (over SSH)", "HOOK", "PXE"
    );
    for c in checks {
        let hook = match (c.hook_upload_ok, c.hook_ran) {
            (Some(true), Some(true)) => "ran",
            (Some(_), Some(_)) => "NO",
            _ => "-",
        };
        println!(
            "          {:<14} {:<10} {:<13} {:<34} {:<6} {:<5} {}",
            c.node,
            c.role,
            crate::status::short(&c.status_applied),
            c.found_release,
            hook,
            c.pxe_installs,
            if c.ok {
                "ok".to_string()
            } else {
                format!("MISMATCH: {}", c.problems.join("; "))
            }
        );
    }
}

fn verify_nodes(
    lab: &LabDir,
    state: &LabState,
    rows: &BTreeMap<String, serde_json::Value>,
    revisions: &BTreeMap<(String, String), u32>,
) -> Result<Vec<NodeCheck>, LabError> {
    let key_path = lab.operator_key();
    let key_text = std::fs::read_to_string(&key_path).map_err(LabError::io(&key_path))?;
    let key = Arc::new(
        roundhouse_ssh::parse_private_key(&key_text)
            .map_err(|e| LabError::Demo(format!("{}: {e}", key_path.display())))?,
    );
    let secret_path = lab.secrets().join("etcd-ca.crt");
    let secret = std::fs::read_to_string(&secret_path).map_err(LabError::io(&secret_path))?;
    let published: BTreeMap<String, String> =
        std::fs::read(lab.asset_dir().join("published-configs.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let sim = crate::status::collect(lab, state)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Other(format!("starting the async runtime: {e}")))?;
    let mut out = Vec::new();
    for m in &state.machines {
        let row = rows.get(&m.name).cloned().unwrap_or_default();
        let applied = row["applied_digest"].as_str().unwrap_or("none").to_string();
        let desired = row["desired_digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let revision = revisions.get(&(m.name.clone(), applied.clone())).copied();
        let expected_release = revision
            .map(|r| cluster::release_line(&m.role, r))
            .unwrap_or_else(|| "(unknown digest)".into());
        let mut problems = Vec::new();
        if revision.is_none() {
            problems.push(format!(
                "status shows applied digest {applied}, which the demo never rendered"
            ));
        }
        let sim_row = sim.iter().find(|s| s.name == m.name);
        let sim_sha = sim_row.and_then(|s| s.config_sha256.clone());
        let pxe_installs = sim_row.map_or(0, |s| s.installs);
        let want_installs = if m.name == RECREATED { 2 } else { 1 };
        if pxe_installs != want_installs {
            problems.push(format!(
                "the simulator counted {pxe_installs} PXE installations, expected {want_installs}"
            ));
        }
        let ignition_bytes_match = match (&sim_sha, published.get(&applied)) {
            (Some(seen), Some(sha)) => bare_hex(seen) == bare_hex(sha),
            _ => false,
        };
        if !ignition_bytes_match {
            problems.push(format!(
                "the machine last applied Ignition bytes {:?}, published for {applied}: {:?}",
                sim_sha,
                published.get(&applied)
            ));
        }
        let host_key_path = lab.host_key_pub(&m.name);
        let host_key = std::fs::read_to_string(&host_key_path)
            .map_err(LabError::io(&host_key_path))
            .and_then(|t| {
                roundhouse_ssh::parse_public_key(t.trim())
                    .map_err(|e| LabError::Demo(format!("{}: {e}", host_key_path.display())))
            })?;
        let controller = m.role == "controller";
        let remote = runtime.block_on(read_node(m, key.clone(), host_key, controller));
        let (found_release, hostname, hook_upload_ok, hook_ran) = match remote {
            Ok(r) => {
                let upload_ok = controller.then(|| {
                    r.upload.as_deref() == Some(secret.as_str())
                        && (!roundhouse_sim::sandbox::is_root()
                            || r.upload_meta.as_deref().map(str::trim) == Some("600 etcd:etcd"))
                });
                let ran = controller.then(|| {
                    r.marker
                        .as_deref()
                        .is_some_and(|t| t.contains(HOOK_DESTINATION))
                });
                (r.release, r.hostname, upload_ok, ran)
            }
            Err(e) => {
                problems.push(e);
                (String::new(), String::new(), None, None)
            }
        };
        if found_release != expected_release {
            problems.push(format!(
                "{RELEASE_FILE} holds {found_release:?}, expected {expected_release:?}"
            ));
        }
        if hostname != m.name {
            problems.push(format!("/etc/hostname is {hostname:?}"));
        }
        if hook_upload_ok == Some(false) {
            problems.push(format!(
                "the hook's {HOOK_DESTINATION} is missing or different"
            ));
        }
        if hook_ran == Some(false) {
            problems.push(format!("the hook's command did not write {HOOK_MARKER}"));
        }
        out.push(NodeCheck {
            node: m.name.clone(),
            role: m.role.clone(),
            status_applied: applied,
            status_desired: desired,
            revision,
            expected_release,
            found_release,
            hostname,
            ignition_bytes_match,
            hook_upload_ok,
            hook_ran,
            pxe_installs,
            ok: problems.is_empty(),
            problems,
        });
    }
    Ok(out)
}

struct Remote {
    release: String,
    hostname: String,
    upload: Option<String>,
    upload_meta: Option<String>,
    marker: Option<String>,
}

async fn read_node(
    m: &crate::layout::LabMachine,
    key: Arc<roundhouse_ssh::PrivateKey>,
    host_key: roundhouse_ssh::PublicKey,
    controller: bool,
) -> Result<Remote, String> {
    let target = roundhouse_ssh::Target {
        host: m.address.clone(),
        port: m.ssh_port,
        user: "core".into(),
    };
    let session = roundhouse_ssh::Session::connect(
        &target,
        key,
        vec![host_key],
        roundhouse_ssh::Timeouts {
            connect: Duration::from_secs(10),
            command: Duration::from_secs(20),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let read = |cmd: String| {
        let s = &session;
        async move {
            match s.exec(&cmd).await {
                Ok(o) if o.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
                _ => None,
            }
        }
    };
    let release = read(format!("cat {RELEASE_FILE}"))
        .await
        .unwrap_or_default()
        .trim()
        .to_string();
    let hostname = read("cat /etc/hostname".into())
        .await
        .unwrap_or_default()
        .trim()
        .to_string();
    let (upload, upload_meta, marker) = if controller {
        (
            read(format!("sudo cat {HOOK_DESTINATION}")).await,
            read(format!("sudo stat -c '%a %U:%G' {HOOK_DESTINATION}")).await,
            read(format!("sudo cat {HOOK_MARKER}")).await,
        )
    } else {
        (None, None, None)
    };
    session.close().await;
    Ok(Remote {
        release,
        hostname,
        upload,
        upload_meta,
        marker,
    })
}

/// What `lab up` prints: where things are and what to run next.
pub fn up_summary(lab: &LabDir, state: &LabState) -> String {
    let machines = match &state.qemu {
        Some(q) => format!(
            "QEMU machines ({} MiB, {} disk each), {} {} from {}",
            q.memory_mib,
            crate::qemu::format_size(q.disk_bytes),
            if q.image_built { "lab image" } else { "image" },
            q.os_version,
            q.image_dir.display()
        ),
        None => format!("http://{} (simulator control API)", state.control),
    };
    let mut s = format!(
        "lab running in {}\n  boot server  {}\n  machines     {machines}\n  cluster file {}\n\n",
        lab.root().display(),
        state.boot_url,
        lab.cluster_file().display()
    );
    s.push_str(&format!(
        "  {:<14} {:<10} {:<17} {:<22} {}\n",
        "MACHINE", "ROLE", "MAC", "SSH (domain:port)", "BMC"
    ));
    for m in &state.machines {
        s.push_str(&format!(
            "  {:<14} {:<10} {:<17} {:<22} {}\n",
            m.name,
            m.role,
            m.mac,
            format!("{}:{}", m.address, m.ssh_port),
            m.bmc_url
        ));
    }
    s.push_str(&format!(
        "\nnext: roundhouse plan {c}\n      roundhouse apply {c} --yes\n      roundhouse lab status --dir {d}\n      roundhouse lab down --dir {d}",
        c = lab.cluster_file().display(),
        d = lab.root().display()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_progress_is_condensed() {
        let keep =
            "2026-11-25T12:48:02.322Z controller-1         succeeded    runs config 7cf637ac4c13";
        assert_eq!(
            apply_line(keep).as_deref(),
            Some("12:48:02.322 controller-1         succeeded    runs config 7cf637ac4c13")
        );
        let wait = "2026-11-25T12:48:02.322Z worker-1             step         fetched its new final config";
        assert_eq!(apply_line(wait), None);
        let queued =
            "2026-11-25T12:48:00.392Z worker-1             queued       provision: PXE install";
        assert_eq!(apply_line(queued), None);
        assert_eq!(apply_line("                         | power output"), None);
        assert_eq!(
            apply_line("apply: 6 succeeded, 0 failed, 0 not started").as_deref(),
            Some("apply: 6 succeeded, 0 failed, 0 not started")
        );
    }
}
