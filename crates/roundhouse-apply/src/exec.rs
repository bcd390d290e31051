//! The executor: carries out a plan's changes, node by node, under rollout limits.
//!
//! Per node the order is always: journal the intent, touch the machine, journal that it was
//! triggered, wait for proof, record the result. Proof is two independent observations: the
//! boot server's fetch journal shows the node's MAC fetched the exact bytes of its new final
//! config after the intent was journaled, and the node, reached over SSH with its pinned host
//! key, has `/ignition_ran` (which every final config creates and roundhouse removes after each
//! success). See docs/reconciler.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bootdata::Mac;
use roundhouse_boot::state::Netboot;
use roundhouse_config::{Hook, Role, Upload};
use roundhouse_plan::{
    Action, Intent, IntentStage, Plan, PlanItem, ProvisionPath, Timestamp, short_digest,
};
use roundhouse_ssh::{PrivateKey, PublicKey, Reboot, Session, SshError, Target, Timeouts};
use roundhouse_store::{Change, StateStore, now};
use tokio::sync::Semaphore;

use crate::bootserver::BootProbe;
use crate::journal::JournalReader;
use crate::netboot::NetbootWriter;
use crate::power::{PowerDriver, PowerTarget};
use crate::publish::Published;

/// Waits, timeouts and rollout limits. The defaults suit real hardware: a PXE install
/// (firmware POST, PXE, download, install, reboot, Ignition) takes many minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// User to log in as (`core` on Flatcar).
    pub ssh_user: String,
    /// TCP connect + SSH handshake + authentication, per attempt.
    pub connect_timeout: Duration,
    /// One remote command.
    pub command_timeout: Duration,
    /// How long the in-place preparation keeps trying to reach the node before giving up.
    pub reach_deadline: Duration,
    /// How long after its power action a PXE-installed node may take to prove it runs the new
    /// config.
    pub pxe_deadline: Duration,
    /// The same after an in-place reboot.
    pub in_place_deadline: Duration,
    /// First pause between polls; doubled after each poll up to `poll_max`.
    pub poll_initial: Duration,
    /// Longest pause between polls.
    pub poll_max: Duration,
    /// Nodes worked on at once, over all roles.
    pub max_parallel: usize,
    /// Workers worked on at once (controllers are always one at a time).
    pub max_parallel_workers: usize,
    /// After this many failures no new node is started (running ones finish). `None`: never
    /// stop.
    pub max_failures: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ssh_user: "core".into(),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(60),
            reach_deadline: Duration::from_secs(120),
            pxe_deadline: Duration::from_secs(45 * 60),
            in_place_deadline: Duration::from_secs(20 * 60),
            poll_initial: Duration::from_secs(2),
            poll_max: Duration::from_secs(30),
            max_parallel: 10,
            max_parallel_workers: 10,
            max_failures: None,
        }
    }
}

/// Everything the executor needs to know about one desired node.
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Its MAC.
    pub mac: Mac,
    /// Its role.
    pub role: Role,
    /// Where SSH reaches it.
    pub domain: String,
    /// SSH port of the installed OS.
    pub ssh_port: u16,
    /// Desired config digest.
    pub digest: String,
    /// SHA-256 of the final config's bytes as published (what the fetch journal records).
    pub final_sha256: String,
    /// Kernel arguments (journaled with the intent).
    pub kernel_args: Vec<String>,
    /// `linux_append` for the OEM grub.cfg.
    pub linux_append: String,
    /// `linux_console` for the OEM grub.cfg.
    pub linux_console: String,
    /// Host keys accepted from this node (its managed key; during a migration also the key it
    /// had before).
    pub host_keys: Vec<PublicKey>,
    /// How to PXE-boot it.
    pub power: Arc<dyn PowerDriver>,
    /// Its post-provision hooks, in the order they run.
    pub hooks: Vec<HookSpec>,
}

/// A post-provision hook as the executor runs it.
#[derive(Debug, Clone)]
pub struct HookSpec {
    /// The hook from the cluster file.
    pub hook: Arc<Hook>,
    /// Its input digest, recorded when it succeeds.
    pub digest: String,
}

impl HookSpec {
    /// The hook with its digest computed.
    pub fn new(hook: Hook) -> HookSpec {
        HookSpec {
            digest: hook.input_digest(),
            hook: Arc::new(hook),
        }
    }
}

/// What happened, as it happens: one line per step per node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Progress {
    /// When.
    pub at: Timestamp,
    /// Node name.
    pub node: String,
    /// Its MAC.
    pub mac: Mac,
    /// `queued`, `started`, `step`, `succeeded`, `failed` or `not-started`.
    pub kind: &'static str,
    /// Words for people.
    pub message: String,
}

/// Where progress goes (stderr lines, JSON lines, a test's vector).
pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a node ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "reason")]
pub enum NodeResult {
    /// Confirmed: the node runs the new config.
    Succeeded,
    /// Failed; the reason names the node and the step.
    Failed(String),
    /// Never started (too many failures elsewhere).
    NotStarted(String),
}

/// One node's outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Node name.
    pub node: String,
    /// The planned action.
    pub action: Action,
    /// The result.
    #[serde(flatten)]
    pub result: NodeResult,
}

/// The outcomes of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// One per changed node, in plan order.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// Nodes confirmed.
    pub fn succeeded(&self) -> usize {
        self.count(|r| matches!(r, NodeResult::Succeeded))
    }
    /// Nodes failed.
    pub fn failed(&self) -> usize {
        self.count(|r| matches!(r, NodeResult::Failed(_)))
    }
    /// Nodes not started.
    pub fn not_started(&self) -> usize {
        self.count(|r| matches!(r, NodeResult::NotStarted(_)))
    }
    fn count(&self, f: impl Fn(&NodeResult) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(&o.result)).count()
    }
}

/// The executor for one apply.
pub struct Executor {
    /// The state store (intent journal, records, events).
    pub store: Arc<dyn StateStore>,
    /// The boot server's fetch journal.
    pub journal: Arc<JournalReader>,
    /// The boot server's netboot state; `None` when the cluster turned gating off.
    pub netboot: Option<Arc<NetbootWriter>>,
    /// The operator key apply logs in with.
    pub operator_key: Arc<PrivateKey>,
    /// Config digest → published final-config SHA-256, including earlier publications (a
    /// resumed attempt may be for a config that is no longer the desired one).
    pub published: Published,
    /// The cluster's asset directory (for power commands).
    pub asset_dir: PathBuf,
    /// Waits and limits.
    pub settings: Settings,
    /// Progress output.
    pub progress: ProgressSink,
    /// The boot server, to wait until it serves a change before a machine boots; `None` when
    /// it cannot be asked (HTTPS).
    pub boot: Option<BootProbe>,
}

type StepResult<T = ()> = Result<T, String>;

impl Executor {
    fn emit(&self, spec: &NodeSpec, kind: &'static str, message: impl Into<String>) {
        let p = Progress {
            at: now(),
            node: spec.name.clone(),
            mac: spec.mac,
            kind,
            message: message.into(),
        };
        (self.progress)(&p);
    }

    /// Emits a step and notes it in the node's history.
    fn step(&self, spec: &NodeSpec, message: impl Into<String>) {
        let message = message.into();
        let _ = blocking(|| self.store.note(&spec.mac, &message, now()));
        self.emit(spec, "step", message);
    }

    /// Emits a routine step without writing it to the history: every store write is a durable
    /// commit, and they are serialised, so routine chatter would slow a large rollout (the
    /// transitions around it are recorded anyway).
    fn progress(&self, spec: &NodeSpec, message: impl Into<String>) {
        self.emit(spec, "step", message.into());
    }

    fn change(&self, spec: &NodeSpec, change: Change) -> StepResult {
        blocking(|| self.store.apply(&spec.mac, change, now()))
            .map(|_| ())
            .map_err(|e| format!("recording state: {e}"))
    }

    /// Runs every change of `plan` whose node has a spec. Never fails as a whole: each node's
    /// result is in the report.
    pub async fn run(
        self: Arc<Self>,
        plan: &Plan,
        specs: Arc<BTreeMap<String, NodeSpec>>,
    ) -> Report {
        let s = &self.settings;
        let global = Arc::new(Semaphore::new(s.max_parallel.max(1)));
        let controllers = Arc::new(Semaphore::new(1));
        let workers = Arc::new(Semaphore::new(s.max_parallel_workers.max(1)));
        let failures = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for item in plan.items.iter().filter(|i| i.action.is_change()) {
            let Some(spec) = specs.get(&item.name) else {
                continue;
            };
            self.emit(spec, "queued", format!("{}: {}", item.action, item.reason));
            let (me, specs, item) = (Arc::clone(&self), Arc::clone(&specs), item.clone());
            let role_sem = match item.role {
                Role::Controller => Arc::clone(&controllers),
                Role::Worker => Arc::clone(&workers),
            };
            let (global, failures) = (Arc::clone(&global), Arc::clone(&failures));
            tasks.push(tokio::spawn(async move {
                // Role permit first, then the global one, always in this order: no deadlock,
                // and a queued controller never holds a global slot while it waits its turn.
                let _role = role_sem.acquire_owned().await.ok();
                let _slot = global.acquire_owned().await.ok();
                let spec = &specs[&item.name];
                let result = match me.settings.max_failures {
                    Some(max) if failures.load(Ordering::SeqCst) >= max => {
                        let why =
                            format!("{max} node(s) failed: not starting more (--max-failures)");
                        me.emit(spec, "not-started", why.clone());
                        NodeResult::NotStarted(why)
                    }
                    _ => {
                        me.emit(spec, "started", item.action.as_str());
                        match me.run_node(&item, spec).await {
                            Ok(()) => {
                                // A resumed attempt confirms the config it started, which may
                                // not be the desired one any more.
                                let applied = blocking(|| me.store.node(&spec.mac))
                                    .ok()
                                    .flatten()
                                    .and_then(|r| r.applied_digest().and_then(|d| d.known().map(str::to_string)))
                                    .unwrap_or_else(|| spec.digest.clone());
                                let mut msg = format!("runs config {}", short_digest(&applied));
                                if applied != spec.digest {
                                    msg.push_str(&format!(
                                        "; the desired config is now {}: the next apply re-plans it",
                                        short_digest(&spec.digest)
                                    ));
                                }
                                me.emit(spec, "succeeded", msg);
                                NodeResult::Succeeded
                            }
                            Err(why) => {
                                failures.fetch_add(1, Ordering::SeqCst);
                                let why = format!("node {}: {why}", spec.name);
                                if let Ok(Some(r)) = blocking(|| me.store.node(&spec.mac))
                                    && r.state.pending_intent().is_some()
                                {
                                    let _ =
                                        blocking(|| me.store.apply(&spec.mac, Change::Fail(why.clone()), now()));
                                }
                                me.emit(spec, "failed", why.clone());
                                NodeResult::Failed(why)
                            }
                        }
                    }
                };
                Outcome {
                    node: item.name.clone(),
                    action: item.action,
                    result,
                }
            }));
        }
        let mut report = Report::default();
        for t in tasks {
            match t.await {
                Ok(o) => report.outcomes.push(o),
                Err(e) => report.outcomes.push(Outcome {
                    node: "?".into(),
                    action: Action::Error,
                    result: NodeResult::Failed(format!("executor task ended abnormally: {e}")),
                }),
            }
        }
        report
    }

    async fn run_node(&self, item: &PlanItem, spec: &NodeSpec) -> StepResult {
        match item.action {
            Action::Provision | Action::ReprovisionInPlace | Action::Resume => {
                self.install(item, spec).await?;
            }
            Action::RunHooks => {}
            other => return Err(format!("{other} is not something to execute")),
        }
        self.run_hooks(item, spec).await
    }

    /// Runs the item's hooks in order, recording each success; the first failure stops the
    /// rest (they stay pending, as does the failed one).
    async fn run_hooks(&self, item: &PlanItem, spec: &NodeSpec) -> StepResult {
        for planned in &item.hooks {
            let Some(h) = spec.hooks.iter().find(|h| h.hook.name == planned.name) else {
                return Err(format!(
                    "hook {} was planned but is not configured for this node (planner bug)",
                    planned.name
                ));
            };
            let name = &h.hook.name;
            let limit = Duration::from_secs(h.hook.timeout_secs);
            self.progress(spec, format!("running hook {name}"));
            let result =
                match tokio::time::timeout(limit, self.run_hook(spec, &h.hook, limit)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "did not finish within {} (its `timeout`)",
                        secs(limit)
                    )),
                };
            match result {
                Ok(()) => {
                    self.change(
                        spec,
                        Change::HookSucceeded {
                            name: name.clone(),
                            digest: h.digest.clone(),
                        },
                    )?;
                    self.progress(spec, format!("hook {name} succeeded"));
                }
                Err(e) => {
                    let _ = self.change(
                        spec,
                        Change::HookFailed {
                            name: name.clone(),
                            digest: h.digest.clone(),
                            error: e.clone(),
                        },
                    );
                    return Err(format!("hook {name}: {e}"));
                }
            }
        }
        Ok(())
    }

    /// One hook: uploads (each to a temporary file, then into place), then its commands.
    async fn run_hook(&self, spec: &NodeSpec, hook: &Hook, limit: Duration) -> StepResult {
        let session = self
            .reach_with(
                spec,
                self.settings.reach_deadline,
                "reaching the node",
                limit,
            )
            .await?;
        let result = async {
            for u in &hook.uploads {
                let what = format!(
                    "uploading {} (mode {:04o}, owner {}:{})",
                    u.destination, u.mode, u.user, u.group
                );
                let out = session
                    .exec_with_input(&upload_command(u), &u.content)
                    .await
                    .map_err(|e| format!("{what}: {e}"))?;
                if !out.success() {
                    return Err(format!(
                        "{what}: exited with status {}: {}",
                        out.exit_status,
                        output_tail(&out)
                    ));
                }
            }
            for command in &hook.run {
                let out = session
                    .exec(command)
                    .await
                    .map_err(|e| format!("`{command}`: {e}"))?;
                if !out.success() {
                    return Err(format!(
                        "`{command}` exited with status {}: {}",
                        out.exit_status,
                        output_tail(&out)
                    ));
                }
            }
            Ok(())
        }
        .await;
        session.close().await;
        result
    }

    async fn install(&self, item: &PlanItem, spec: &NodeSpec) -> StepResult {
        match item.action {
            Action::Provision => {
                if item.intent.is_some() {
                    self.change(
                        spec,
                        Change::Abandon(format!("superseded by a PXE install: {}", item.reason)),
                    )?;
                }
                let intent = self.new_intent(spec, ProvisionPath::Pxe);
                let started = intent.started_at;
                self.change(spec, Change::BeginInstall(intent))?;
                self.pxe_trigger(spec, started).await?;
                self.change(spec, Change::MarkTriggered)?;
                self.finish(spec, ProvisionPath::Pxe, started, &spec.digest)
                    .await
            }
            Action::ReprovisionInPlace => {
                let intent = self.new_intent(spec, ProvisionPath::InPlace);
                let started = intent.started_at;
                self.change(spec, Change::BeginReprovision(intent))?;
                let session = self
                    .reach(
                        spec,
                        self.settings.reach_deadline,
                        "preparing the in-place re-provision",
                    )
                    .await?;
                self.in_place_trigger(spec, session).await?;
                self.change(spec, Change::MarkTriggered)?;
                self.finish(spec, ProvisionPath::InPlace, started, &spec.digest)
                    .await
            }
            Action::Resume => {
                let Some(intent) = &item.intent else {
                    return Err("resume planned without an intent (planner bug)".into());
                };
                self.resume(spec, intent).await
            }
            other => Err(format!("{other} is not something to execute")),
        }
    }

    fn new_intent(&self, spec: &NodeSpec, path: ProvisionPath) -> Intent {
        Intent {
            path,
            digest: spec.digest.clone(),
            domain: spec.domain.clone(),
            kernel_args: spec.kernel_args.clone(),
            started_at: now(),
            stage: IntentStage::Started,
        }
    }

    fn deadline_for(&self, path: ProvisionPath) -> Duration {
        match path {
            ProvisionPath::Pxe => self.settings.pxe_deadline,
            ProvisionPath::InPlace => self.settings.in_place_deadline,
        }
    }

    async fn resume(&self, spec: &NodeSpec, intent: &Intent) -> StepResult {
        let deadline = self.deadline_for(intent.path);
        if let IntentStage::Triggered { at } = intent.stage {
            self.step(spec, format!(
                "resuming: the {} of {} was triggered at {at}; waiting for it, not triggering again",
                match intent.path {
                    ProvisionPath::Pxe => "PXE install",
                    ProvisionPath::InPlace => "in-place re-provision",
                },
                short_digest(&intent.digest)
            ));
            return self
                .finish(spec, intent.path, intent.started_at, &intent.digest)
                .await;
        }
        // Started but not marked triggered: the trigger may or may not have happened. Look
        // for evidence before doing anything destructive again.
        let expected = self.expected_sha(&intent.digest)?;
        if self.fetched(spec, intent.started_at, &expected).is_some() {
            self.step(
                spec,
                "resuming: the node already fetched the new config; waiting for it to come up",
            );
            return self
                .finish(spec, intent.path, intent.started_at, &intent.digest)
                .await;
        }
        match intent.path {
            ProvisionPath::Pxe => {
                let booted = self.journal.fetches_since(&spec.mac, intent.started_at);
                if booted.is_empty() {
                    self.step(spec, "resuming: no boot request from the node since the intent was journaled; running the power action again");
                    self.pxe_trigger(spec, intent.started_at).await?;
                } else {
                    self.step(spec, format!(
                        "resuming: the node has been network-booting since {} (the power action ran); not running it again",
                        booted[0].at
                    ));
                }
            }
            ProvisionPath::InPlace => {
                let session = self
                    .reach(spec, deadline, "resuming the in-place re-provision")
                    .await?;
                // Reaching it may have taken a reboot's time: look again.
                if self.fetched(spec, intent.started_at, &expected).is_some() {
                    session.close().await;
                    self.step(spec, "resuming: the node rebooted and fetched the new config; not rebooting it again");
                    self.change(spec, Change::MarkTriggered)?;
                    return self
                        .finish(spec, intent.path, intent.started_at, &intent.digest)
                        .await;
                }
                self.step(
                    spec,
                    "resuming: no sign the reboot happened; preparing and rebooting again",
                );
                self.in_place_trigger(spec, session).await?;
            }
        }
        self.change(spec, Change::MarkTriggered)?;
        self.finish(spec, intent.path, intent.started_at, &intent.digest)
            .await
    }

    /// `begun`: when the install's intent was journaled.
    async fn pxe_trigger(&self, spec: &NodeSpec, begun: Timestamp) -> StepResult {
        let written = std::time::SystemTime::now();
        if let Some(nb) = &self.netboot
            && nb
                .ensure_pending(spec.mac, &spec.name, begun, now())
                .map_err(|e| format!("marking it install-pending: {e}"))?
        {
            // The machine must get the installer, not "boot from disk", when it PXE-boots.
            if let Some(boot) = &self.boot
                && let Err(e) = boot
                    .wait_loaded_after(written, Duration::from_secs(30))
                    .await
            {
                self.step(spec, format!("warning: {e}"));
            }
        }
        let target = PowerTarget {
            name: spec.name.clone(),
            mac: spec.mac.to_string(),
            domain: spec.domain.clone(),
            asset_dir: self.asset_dir.clone(),
        };
        self.progress(spec, "running the power action (PXE boot)");
        match spec.power.pxe_boot(&target).await {
            Ok(out) => {
                if !out.text.trim().is_empty() {
                    self.step(
                        spec,
                        format!("power action output:\n{}", out.text.trim_end()),
                    );
                }
                Ok(())
            }
            Err(e) => Err(format!("power action: {e}")),
        }
    }

    /// The install is proven: the node's power driver settles the boot device (disk,
    /// persistent, unless its policy is "network"). Only a warning when it fails: the boot
    /// server already answers this machine with "boot from disk", so it cannot loop into the
    /// installer, and failing a node that runs its new config would invite a reinstall.
    async fn boot_device_after_install(&self, spec: &NodeSpec) {
        let target = PowerTarget {
            name: spec.name.clone(),
            mac: spec.mac.to_string(),
            domain: spec.domain.clone(),
            asset_dir: self.asset_dir.clone(),
        };
        match spec.power.after_install(&target).await {
            Ok(out) if !out.text.trim().is_empty() => self.step(spec, out.text.trim_end()),
            Ok(_) => {}
            Err(e) => self.step(
                spec,
                format!("warning: setting the boot device after the install: {e}"),
            ),
        }
    }

    fn target(&self, spec: &NodeSpec) -> Target {
        Target {
            host: spec.domain.clone(),
            port: spec.ssh_port,
            user: self.settings.ssh_user.clone(),
        }
    }

    async fn connect(&self, spec: &NodeSpec) -> Result<Session, SshError> {
        self.connect_with(spec, self.settings.command_timeout).await
    }

    async fn connect_with(&self, spec: &NodeSpec, command: Duration) -> Result<Session, SshError> {
        Session::connect(
            &self.target(spec),
            Arc::clone(&self.operator_key),
            spec.host_keys.clone(),
            Timeouts {
                connect: self.settings.connect_timeout,
                command,
            },
        )
        .await
    }

    /// Connects, retrying transient failures with backoff until `deadline`.
    async fn reach(&self, spec: &NodeSpec, deadline: Duration, step: &str) -> StepResult<Session> {
        self.reach_with(spec, deadline, step, self.settings.command_timeout)
            .await
    }

    /// [`Self::reach`] with `command` as the session's per-command timeout.
    async fn reach_with(
        &self,
        spec: &NodeSpec,
        deadline: Duration,
        step: &str,
        command: Duration,
    ) -> StepResult<Session> {
        let start = Instant::now();
        let mut pause = self.settings.poll_initial;
        loop {
            match self.connect_with(spec, command).await {
                Ok(s) => return Ok(s),
                Err(e) if !e.is_transient() => return Err(format!("{step}: {e}")),
                Err(e) => {
                    if start.elapsed() + pause > deadline {
                        return Err(format!(
                            "{step}: cannot reach {} over SSH within {}: {e}",
                            self.target(spec),
                            secs(deadline)
                        ));
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.settings.poll_max);
        }
    }

    async fn run_checked(&self, session: &Session, command: &str, step: &str) -> StepResult {
        let out = session
            .exec(command)
            .await
            .map_err(|e| format!("{step}: {e}"))?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "{step}: `{command}` exited with status {}: {}",
                out.exit_status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Lokomotive's in-place steps, each checked: set `first_boot`, rewrite the OEM
    /// grub.cfg (kernel arguments are not part of Ignition), remove a stale `/ignition_ran`,
    /// reboot (a dropped connection is the reboot happening).
    async fn in_place_trigger(&self, spec: &NodeSpec, session: Session) -> StepResult {
        self.progress(
            spec,
            format!("connected to {}; setting first_boot", self.target(spec)),
        );
        self.run_checked(
            &session,
            "sudo touch /boot/flatcar/first_boot",
            "creating /boot/flatcar/first_boot",
        )
        .await?;
        let grub = grub_cfg_command(&spec.linux_append, &spec.linux_console);
        self.run_checked(&session, &grub, "writing /usr/share/oem/grub.cfg")
            .await?;
        self.run_checked(
            &session,
            "sudo rm -f /ignition_ran",
            "removing a stale /ignition_ran",
        )
        .await?;
        self.progress(spec, "rebooting");
        match session.exec_reboot("sudo systemctl reboot").await {
            Ok(Reboot::ConnectionDropped) => Ok(()),
            Ok(Reboot::Exited(out)) if out.success() => {
                session.close().await;
                Ok(())
            }
            Ok(Reboot::Exited(out)) => Err(format!(
                "rebooting: `sudo systemctl reboot` exited with status {}: {}",
                out.exit_status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("rebooting: {e}")),
        }
    }

    fn expected_sha(&self, digest: &str) -> StepResult<String> {
        self.published.sha_for(digest).ok_or_else(|| {
            format!(
                "cannot tell which bytes config {} was published as (no record in {}): cannot verify the node fetched it",
                short_digest(digest),
                self.published.path().display()
            )
        })
    }

    /// The first fetch by the node of its final config with body `sha` since `since`.
    fn fetched(&self, spec: &NodeSpec, since: Timestamp, sha: &str) -> Option<Timestamp> {
        self.journal
            .fetches_since(&spec.mac, since)
            .into_iter()
            .find(|f| {
                f.route == "ignition"
                    && f.group.as_deref() == Some(spec.name.as_str())
                    && f.digest.as_deref() == Some(sha)
            })
            .map(|f| f.at)
    }

    /// Waits for proof that the node runs config `digest` (fetch after `since`, then
    /// `/ignition_ran` over SSH), removes the flag, marks the node installed on the boot
    /// server, settles the boot device after a PXE install and confirms.
    async fn finish(
        &self,
        spec: &NodeSpec,
        path: ProvisionPath,
        since: Timestamp,
        digest: &str,
    ) -> StepResult {
        let deadline = self.deadline_for(path);
        let sha = self.expected_sha(digest)?;
        let start = Instant::now();
        let mut pause = self.settings.poll_initial;
        let mut seen_fetch = None;
        let mut last_ssh = String::from("not tried yet (waiting for the fetch first)");
        self.progress(
            spec,
            format!(
                "waiting up to {} for the node to fetch config {} (final config {}) and come up",
                secs(deadline),
                short_digest(digest),
                short_digest(&sha)
            ),
        );
        loop {
            self.gate_after_install(spec, since)?;
            if seen_fetch.is_none()
                && let Some(at) = self.fetched(spec, since, &sha)
            {
                seen_fetch = Some(at);
                self.step(spec, format!("fetched its new final config at {at}"));
            }
            if seen_fetch.is_some() {
                match self.connect(spec).await {
                    Ok(session) => {
                        let out = session.exec("test -f /ignition_ran").await;
                        match out {
                            Ok(o) if o.success() => {
                                if let Some(nb) = &self.netboot {
                                    nb.set_installed(spec.mac, &spec.name)
                                        .map_err(|e| format!("marking it installed: {e}"))?;
                                }
                                // An in-place re-provision reboots over SSH and never
                                // touches the BMC.
                                if path == ProvisionPath::Pxe {
                                    self.boot_device_after_install(spec).await;
                                }
                                // Confirm before removing the flag: the flag is this attempt's
                                // only proof, and a crash between removing it and confirming
                                // would leave a resume that can never see it again (it would
                                // fail, and the next apply would wipe the node a second time).
                                // A flag left by a crash after confirming is harmless: every
                                // trigger removes a stale one before rebooting.
                                self.change(spec, Change::Confirm)?;
                                if let Err(e) = self
                                    .run_checked(
                                        &session,
                                        "sudo rm -f /ignition_ran",
                                        "removing /ignition_ran after success",
                                    )
                                    .await
                                {
                                    self.step(spec, format!("warning: {e}"));
                                }
                                session.close().await;
                                return Ok(());
                            }
                            Ok(_) => {
                                last_ssh = "reachable, but /ignition_ran does not exist yet".into()
                            }
                            Err(e) => last_ssh = e.to_string(),
                        }
                        session.close().await;
                    }
                    Err(e) if !e.is_transient() => {
                        return Err(format!("waiting for the node: {e}"));
                    }
                    Err(e) => last_ssh = e.to_string(),
                }
            }
            if start.elapsed() + pause > deadline {
                return Err(match seen_fetch {
                    None => self.no_fetch_error(spec, since, digest, &sha, deadline),
                    Some(at) => format!(
                        "fetched config {} at {at} but did not show /ignition_ran over SSH within {} (last: {last_ssh})",
                        short_digest(digest),
                        secs(deadline)
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.settings.poll_max);
        }
    }

    /// Once the PXE installer has fetched its config, the install is under way: from then on
    /// the boot server must tell this machine to boot from its disk, or a machine whose
    /// firmware tries the network first would reinstall itself in a loop after the installer
    /// reboots it.
    fn gate_after_install(&self, spec: &NodeSpec, since: Timestamp) -> StepResult {
        let Some(nb) = &self.netboot else {
            return Ok(());
        };
        if nb.get(&spec.mac) != Some(Netboot::InstallPending) {
            return Ok(());
        }
        let install_group = format!("install-{}", spec.name);
        let installing = self
            .journal
            .fetches_since(&spec.mac, since)
            .into_iter()
            .find(|f| {
                f.route == "ignition"
                    && matches!(f.group.as_deref(), Some(g) if g == install_group || g == spec.name)
            });
        if let Some(f) = installing {
            nb.set_installed(spec.mac, &spec.name)
                .map_err(|e| format!("marking it installed after the installer started: {e}"))?;
            self.step(
                spec,
                format!(
                    "the installer fetched its config at {}: the boot server now tells this machine to boot from its disk",
                    f.at
                ),
            );
        }
        Ok(())
    }

    fn no_fetch_error(
        &self,
        spec: &NodeSpec,
        since: Timestamp,
        digest: &str,
        sha: &str,
        deadline: Duration,
    ) -> String {
        let mut msg = format!(
            "did not fetch its new final config (config {}, bytes {}) from the boot server within {}",
            short_digest(digest),
            short_digest(sha),
            secs(deadline)
        );
        let fetches = self.journal.fetches_since(&spec.mac, since);
        match fetches
            .iter()
            .rev()
            .find(|f| f.route == "ignition" && f.group.as_deref() == Some(spec.name.as_str()))
        {
            Some(f) => msg.push_str(&format!(
                "; it fetched other bytes ({}) at {}: is the boot server serving the published data directory?",
                f.digest.as_deref().map(short_digest).unwrap_or("?"),
                f.at
            )),
            None if fetches.is_empty() => msg.push_str(&format!(
                "; the boot server's journal ({}) shows no request from {} since the action started",
                self.journal.path().display(),
                spec.mac
            )),
            None => msg.push_str(&format!(
                "; it made {} other request(s) (last: {} at {}) but never fetched its final config",
                fetches.len(),
                fetches[fetches.len() - 1].route,
                fetches[fetches.len() - 1].at
            )),
        }
        msg
    }
}

/// Runs a synchronous store call. Store calls are short transactions, but one may wait for the
/// file while another process (`status`) has it open; on a multi-threaded runtime that wait
/// must not hold up the other nodes' tasks on the same worker thread.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && d.as_secs().is_multiple_of(60) {
        format!("{}m", d.as_secs() / 60)
    } else {
        format!("{s}s")
    }
}

/// The shell command that puts standard input at `u.destination`: first into a temporary
/// file of the login user, then `sudo install` (mode, owner) next to the destination, then a
/// rename, which is atomic within one directory: the destination never holds a half-written
/// file, and `install -D` creates missing parent directories.
pub fn upload_command(u: &Upload) -> String {
    let dest = sh_quote(&u.destination);
    let staged = sh_quote(&format!("{}.roundhouse-new", u.destination));
    format!(
        "set -e; t=$(mktemp); trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; \
         sudo install -D -m {:04o} -o {} -g {} \"$t\" {staged}; sudo mv -f {staged} {dest}",
        u.mode,
        sh_quote(&u.user),
        sh_quote(&u.group)
    )
}

/// The last lines of a command's output (stdout, then stderr), for error messages.
fn output_tail(out: &roundhouse_ssh::Output) -> String {
    const LINES: usize = 20;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(LINES);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "(no output)".into()
    } else {
        tail
    }
}

/// Quotes `s` for a POSIX shell as one word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command that rewrites the OEM grub.cfg, as Lokomotive did (`printf … | sudo tee`).
pub fn grub_cfg_command(linux_append: &str, linux_console: &str) -> String {
    format!(
        "printf '%s\\n' {} {} | sudo tee /usr/share/oem/grub.cfg >/dev/null",
        sh_quote(&format!("set linux_append=\"{linux_append}\"")),
        sh_quote(&format!("set linux_console=\"{linux_console}\""))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_command_writes_both_lines_through_a_shell() {
        let cmd = grub_cfg_command(
            "a=1 ignition.config.url=http://b/ignition?mac=52:54:00:00:00:01&os=installed",
            "console=ttyS0",
        );
        // Run it with a `sudo` that just runs its arguments and a tee redirected to a file.
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let out = tmp.path().join("grub.cfg");
        std::fs::write(
            bin.join("sudo"),
            format!(
                "#!/bin/sh\n[ \"$1\" = tee ] && exec tee {} \nexec \"$@\"\n",
                out.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("sudo"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "set linux_append=\"a=1 ignition.config.url=http://b/ignition?mac=52:54:00:00:00:01&os=installed\"\n\
             set linux_console=\"console=ttyS0\"\n"
        );
    }

    /// The upload command, run by a real shell with a `sudo` that runs its arguments, leaves
    /// the exact bytes at the destination with the mode, creates missing directories, and
    /// removes its temporary file.
    #[test]
    fn upload_command_installs_the_bytes_with_their_mode() {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("sudo"), "#!/bin/sh\nexec \"$@\"\n").unwrap();
        std::fs::set_permissions(bin.join("sudo"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let scratch = tmp.path().join("tmp");
        std::fs::create_dir(&scratch).unwrap();
        let dest = tmp.path().join("etc/ssl/it's here/ca.crt");
        let me = |flag: &str| {
            let out = std::process::Command::new("id").arg(flag).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let upload = Upload {
            content: b"line 1\n\x00binary\xff".to_vec(),
            source: None,
            destination: dest.display().to_string(),
            mode: 0o640,
            user: me("-u"),
            group: me("-g"),
        };
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(upload_command(&upload))
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("TMPDIR", &scratch)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&upload.content)
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(std::fs::read(&dest).unwrap(), upload.content);
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::read_dir(&scratch).unwrap().count(),
            0,
            "temp file left"
        );
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            1,
            "staged file left"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(secs(Duration::from_secs(1200)), "20m");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
    }
}

/// Rollout control without machines: a fake power driver records how many nodes it drives at
/// once; nodes then fail their wait quickly (nobody fetches anything).
#[cfg(test)]
mod rollout_tests {
    use std::sync::Mutex;

    use roundhouse_config::model::{ChangePolicy, Policy};
    use roundhouse_plan::{Desired, DesiredNode, Observed};
    use roundhouse_store::MemoryStore;

    use super::*;
    use crate::power::{PowerError, PowerFuture, PowerOutput};

    #[derive(Default)]
    struct Counts {
        running: [usize; 2],
        max: [usize; 2],
        max_total: usize,
        calls: Vec<String>,
    }

    struct FakePower {
        counts: Arc<Mutex<Counts>>,
        store: Arc<MemoryStore>,
        fail: bool,
    }

    fn role_index(name: &str) -> usize {
        usize::from(name.starts_with('w'))
    }

    impl PowerDriver for FakePower {
        fn pxe_boot<'a>(&'a self, t: &'a PowerTarget) -> PowerFuture<'a> {
            Box::pin(async move {
                // The intent must be journaled before the machine is touched.
                let mac = Mac::parse(&t.mac).unwrap();
                let rec = self
                    .store
                    .node(&mac)
                    .unwrap()
                    .expect("a record before power");
                assert_eq!(rec.state.name(), "installing", "{}", t.name);
                let r = role_index(&t.name);
                {
                    let mut c = self.counts.lock().unwrap();
                    c.running[r] += 1;
                    c.max[r] = c.max[r].max(c.running[r]);
                    let total = c.running[0] + c.running[1];
                    c.max_total = c.max_total.max(total);
                    c.calls.push(t.name.clone());
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
                self.counts.lock().unwrap().running[r] -= 1;
                if self.fail {
                    Err(PowerError::Unsupported("fake"))
                } else {
                    Ok(PowerOutput::default())
                }
            })
        }
    }

    fn setup(names: &[&str], fail: bool, settings: Settings) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new());
        let counts = Arc::new(Mutex::new(Counts::default()));
        let power: Arc<dyn PowerDriver> = Arc::new(FakePower {
            counts: Arc::clone(&counts),
            store: Arc::clone(&store),
            fail,
        });
        let mut published = Published::default();
        let mut specs = BTreeMap::new();
        let mut desired = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mac = Mac::parse(&format!("52:54:00:00:01:{:02x}", i)).unwrap();
            let role = if role_index(name) == 0 {
                Role::Controller
            } else {
                Role::Worker
            };
            let digest = format!("sha256:{:064x}", i);
            published.insert(&digest, &format!("sha256:{:064x}", 1000 + i));
            desired.push(DesiredNode {
                name: name.to_string(),
                mac,
                domain: format!("{name}.example"),
                role,
                digest: digest.clone(),
                hooks: vec![],
                snippet_overrides: vec![],
            });
            specs.insert(
                name.to_string(),
                NodeSpec {
                    name: name.to_string(),
                    mac,
                    role,
                    domain: format!("{name}.example"),
                    ssh_port: 22,
                    digest,
                    final_sha256: String::new(),
                    kernel_args: vec![],
                    linux_append: String::new(),
                    linux_console: String::new(),
                    host_keys: vec![],
                    power: Arc::clone(&power),
                    hooks: vec![],
                },
            );
        }
        let plan = roundhouse_plan::plan(
            &Desired {
                policy: Policy {
                    controllers: ChangePolicy::Hold,
                    workers: ChangePolicy::Reprovision,
                },
                nodes: desired,
            },
            &Observed::default(),
            now(),
        )
        .unwrap();
        let keys = crate::keys::KeyStore::new(tmp.path())
            .load_or_generate("t", [])
            .unwrap();
        let exec = Arc::new(Executor {
            store: Arc::clone(&store) as Arc<dyn StateStore>,
            journal: Arc::new(JournalReader::new(tmp.path())),
            netboot: None,
            operator_key: keys.operator.private(),
            published,
            asset_dir: tmp.path().to_path_buf(),
            settings,
            progress: Arc::new(|_: &Progress| {}),
            boot: None,
        });
        Rig {
            exec,
            plan,
            specs: Arc::new(specs),
            counts,
            store,
            _tmp: tmp,
        }
    }

    struct Rig {
        exec: Arc<Executor>,
        plan: Plan,
        specs: Arc<BTreeMap<String, NodeSpec>>,
        counts: Arc<Mutex<Counts>>,
        store: Arc<MemoryStore>,
        _tmp: tempfile::TempDir,
    }

    fn quick() -> Settings {
        Settings {
            pxe_deadline: Duration::from_millis(200),
            poll_initial: Duration::from_millis(20),
            poll_max: Duration::from_millis(50),
            ..Settings::default()
        }
    }

    #[tokio::test]
    async fn controllers_one_at_a_time_workers_and_total_capped_everything_queued() {
        let names = ["c1", "c2", "c3", "w1", "w2", "w3", "w4", "w5", "w6"];
        let settings = Settings {
            max_parallel: 3,
            max_parallel_workers: 2,
            ..quick()
        };
        let Rig {
            exec,
            plan,
            specs,
            counts,
            store,
            _tmp,
        } = setup(&names, false, settings);
        let report = exec.run(&plan, specs).await;
        let c = counts.lock().unwrap();
        assert_eq!(c.calls.len(), names.len(), "every node ran: {:?}", c.calls);
        assert_eq!(c.max[0], 1, "controllers one at a time");
        assert!(c.max[1] <= 2 && c.max[1] >= 1, "workers {:?}", c.max);
        assert!(c.max_total <= 3, "total {}", c.max_total);
        assert_eq!(report.failed(), names.len());
        for o in &report.outcomes {
            let NodeResult::Failed(why) = &o.result else {
                panic!("{o:?}")
            };
            assert!(
                why.starts_with(&format!(
                    "node {}: did not fetch its new final config",
                    o.node
                )),
                "{why}"
            );
        }
        let rec = store
            .node(&Mac::parse("52:54:00:00:01:00").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(rec.state.name(), "failed");
    }

    #[tokio::test]
    async fn max_failures_stops_starting_new_nodes() {
        let names = ["w1", "w2", "w3", "w4"];
        let settings = Settings {
            max_parallel: 1,
            max_failures: Some(2),
            ..quick()
        };
        let Rig {
            exec,
            plan,
            specs,
            counts,
            store,
            _tmp,
        } = setup(&names, true, settings);
        let report = exec.run(&plan, specs).await;
        assert_eq!(report.failed(), 2);
        assert_eq!(report.not_started(), 2);
        assert_eq!(counts.lock().unwrap().calls.len(), 2);
        let failed = report
            .outcomes
            .iter()
            .find(|o| matches!(o.result, NodeResult::Failed(_)))
            .unwrap();
        let NodeResult::Failed(why) = &failed.result else {
            unreachable!()
        };
        assert!(why.contains("power action"), "{why}");
        // Nodes never started have no intent journaled: the next plan provisions them afresh.
        let untouched = report
            .outcomes
            .iter()
            .filter(|o| matches!(o.result, NodeResult::NotStarted(_)))
            .map(|o| specs_mac(&o.node))
            .collect::<Vec<_>>();
        for mac in untouched {
            assert!(store.node(&mac).unwrap().is_none());
        }
    }

    fn specs_mac(name: &str) -> Mac {
        let i = ["w1", "w2", "w3", "w4"]
            .iter()
            .position(|n| *n == name)
            .unwrap();
        Mac::parse(&format!("52:54:00:00:01:{:02x}", i)).unwrap()
    }
}
