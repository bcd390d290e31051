//! The decision: desired state + observed state + `now` → one [`PlanItem`] per node.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bootdata::Mac;
use roundhouse_config::model::{ChangePolicy, Cluster, Node, Policy, Role};
use serde::{Deserialize, Serialize};

use crate::state::{
    AppliedDigest, Installed, Intent, IntentStage, NodeState, ProvisionPath, short_digest,
};
use crate::time::{Timestamp, human_duration};

/// One node as the cluster file wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredNode {
    /// Node name (unique in the cluster).
    pub name: String,
    /// The MAC it boots with; the key that ties it to observed state.
    pub mac: Mac,
    /// Where SSH reaches it.
    pub domain: String,
    /// Its role, which selects the change policy.
    pub role: Role,
    /// Digest of its re-provisioning inputs (`sha256:<hex>`, from the renderer).
    pub digest: String,
    /// The post-provision hooks that apply to it, in the order they run.
    pub hooks: Vec<DesiredHook>,
    /// Parts of roundhouse's contract its snippets are allowed to change
    /// (`allow_snippet_overrides`: `root-wipe`, `ignition-ran`, `host-keys`,
    /// `authorized-keys`); the plan shows them.
    pub snippet_overrides: Vec<String>,
}

/// A post-provision hook as the planner sees it: a name and the digest of its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredHook {
    /// The hook's name (its `hook` block's label).
    pub name: String,
    /// Its input digest (`sha256:<hex>`, see `roundhouse_config::Hook::input_digest`).
    pub digest: String,
}

impl DesiredNode {
    /// The desired state of a configured node whose rendered digest is `digest`.
    pub fn from_config(node: &Node, digest: impl Into<String>) -> DesiredNode {
        DesiredNode {
            name: node.name.clone(),
            mac: node.mac,
            domain: node.domain.clone(),
            role: node.role,
            digest: digest.into(),
            hooks: Vec::new(),
            snippet_overrides: Vec::new(),
        }
    }

    /// Like [`DesiredNode::from_config`], with the cluster's hooks for the node's role.
    pub fn from_cluster(cluster: &Cluster, node: &Node, digest: impl Into<String>) -> DesiredNode {
        DesiredNode {
            hooks: cluster
                .hooks_for(node.role)
                .map(|h| DesiredHook {
                    name: h.name.clone(),
                    digest: h.input_digest(),
                })
                .collect(),
            snippet_overrides: node
                .effective_snippet_overrides(cluster)
                .iter()
                .map(|o| o.as_str().to_string())
                .collect(),
            ..DesiredNode::from_config(node, digest)
        }
    }
}

/// Everything the cluster file says that the planner needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Per-role change policy.
    pub policy: Policy,
    /// The nodes, in any order (the plan sorts them).
    pub nodes: Vec<DesiredNode>,
}

/// `roundhouse recreate NODE` as recorded in the state store: force the PXE path next time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecreateRequest {
    /// When it was requested.
    pub requested_at: Timestamp,
    /// `--allow-controllers` was given. Without it a controller's request is an error in the
    /// plan, never a silent skip.
    pub allow_controller: bool,
}

/// What the state store knows about one MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNode {
    /// Lifecycle state.
    pub state: NodeState,
    /// A pending `recreate`, cleared by the store when a PXE install is confirmed.
    pub recreate: Option<RecreateRequest>,
    /// Hook name → input digest of its last successful run since the node's last confirmed
    /// installation (an installation wipes what hooks put there, so the store clears this
    /// when it confirms one).
    pub hooks: BTreeMap<String, String>,
}

/// A sign, found outside the state store, that a machine was installed before. "No record"
/// is not "new machine": a node without a record but with any evidence is planned
/// [`Action::StateLost`], never [`Action::Provision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Evidence {
    /// The boot server's netboot gating lists the MAC (`installed`, or `install-pending`: an
    /// installation was at least started).
    Gating {
        /// `installed` or `install-pending`.
        netboot: String,
    },
    /// The boot server's fetch journal shows the MAC fetched its final (installed) config.
    FinalConfigFetch {
        /// When.
        at: Timestamp,
    },
    /// The node answers SSH on its address with its managed (pinned) host key: it runs a
    /// config roundhouse rendered.
    SshManagedHostKey {
        /// `SHA256:…`.
        fingerprint: String,
    },
    /// Something answers SSH on the node's address with another host key: an OS is installed
    /// there, whoever installed it.
    SshOtherHostKey {
        /// `SHA256:…`.
        fingerprint: String,
    },
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::Gating { netboot } => {
                write!(f, "the boot server's netboot gating marks it {netboot}")
            }
            Evidence::FinalConfigFetch { at } => {
                write!(
                    f,
                    "the fetch journal shows it fetched its final config at {at}"
                )
            }
            Evidence::SshManagedHostKey { fingerprint } => {
                write!(f, "it answers SSH with its managed host key {fingerprint}")
            }
            Evidence::SshOtherHostKey { fingerprint } => {
                write!(f, "it answers SSH with another host key {fingerprint}")
            }
        }
    }
}

/// Observed state of the whole cluster, keyed by MAC (as Lokomotive's flag files were).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// One entry per MAC with a record. A missing entry means [`NodeState::Unknown`].
    pub nodes: BTreeMap<Mac, ObservedNode>,
    /// Evidence of earlier installations, by MAC, gathered for nodes without a record (see
    /// [`Evidence`]). Ignored for MACs that have a record.
    pub evidence: BTreeMap<Mac, Vec<Evidence>>,
}

/// What the executor should do with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// PXE install (wipes the machine).
    Provision,
    /// In-place re-provision over SSH (wipes the root filesystem).
    ReprovisionInPlace,
    /// Config changed but the role's policy keeps the old one: drift, no action, no state
    /// change.
    Hold,
    /// An attempt was journaled but never confirmed: continue it (see [`PlanItem::intent`]).
    Resume,
    /// The installation stays; only post-provision hooks whose inputs changed (or that never
    /// succeeded since the last installation) run (see [`PlanItem::hooks`]).
    RunHooks,
    /// Nothing to do.
    None,
    /// The plan refuses this node (see the reason); `apply` must not run a plan with errors.
    Error,
    /// No state is recorded for the node but there is evidence that it was installed (see
    /// [`PlanItem::evidence`]): the records were lost, emptied or replaced. `apply` refuses to
    /// run such a plan; `roundhouse state recover` rebuilds the records, `recreate` asks for
    /// a reinstall on purpose.
    StateLost,
}

impl Action {
    /// Every action, in summary order.
    pub const ALL: [Action; 8] = [
        Action::StateLost,
        Action::Provision,
        Action::ReprovisionInPlace,
        Action::Resume,
        Action::RunHooks,
        Action::Hold,
        Action::None,
        Action::Error,
    ];

    /// The action's name as the table and JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Provision => "provision",
            Action::ReprovisionInPlace => "reprovision-in-place",
            Action::Hold => "hold",
            Action::Resume => "resume",
            Action::RunHooks => "run-hooks",
            Action::None => "none",
            Action::Error => "error",
            Action::StateLost => "state-lost",
        }
    }

    /// Whether `apply` would touch the machine.
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Action::Provision | Action::ReprovisionInPlace | Action::Resume | Action::RunHooks
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    /// Node name.
    pub name: String,
    /// Its MAC.
    pub mac: Mac,
    /// Its role.
    #[serde(serialize_with = "ser_role")]
    pub role: Role,
    /// Its (desired) domain.
    pub domain: String,
    /// What to do.
    pub action: Action,
    /// Why, in words, for people.
    pub reason: String,
    /// The digest of the last confirmed installation (`unknown` if adopted); `None` if there
    /// is none.
    pub old_digest: Option<AppliedDigest>,
    /// The desired digest.
    pub new_digest: String,
    /// For `resume`: the attempt to continue (its path, digest and stage tell the executor to
    /// wait for a triggered reboot rather than trigger again). For `provision`: an in-flight
    /// attempt that this plan abandons (the executor records that before starting).
    pub intent: Option<Intent>,
    /// This action carries out a `recreate` request.
    pub recreate: bool,
    /// The hooks `apply` runs on the node, in order: every hook of the node after an
    /// installation (provision, reprovision-in-place, resume), the pending ones for
    /// `run-hooks`, none otherwise.
    pub hooks: Vec<DesiredHook>,
    /// The node runs something other than the desired config and the plan leaves it so.
    pub drift: bool,
    /// What the cluster file lets this node's snippets change of roundhouse's contract.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snippet_overrides: Vec<String>,
    /// For `state-lost`: the evidence that the node was installed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

fn ser_role<S: serde::Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

/// Counts per action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// Nodes to PXE-install.
    pub provision: usize,
    /// Nodes to re-provision in place.
    pub reprovision_in_place: usize,
    /// Nodes whose unconfirmed attempt continues.
    pub resume: usize,
    /// Nodes that only run post-provision hooks.
    pub run_hooks: usize,
    /// Nodes held with drift.
    pub hold: usize,
    /// Nodes left alone.
    pub none: usize,
    /// Nodes the plan refuses.
    pub error: usize,
    /// Nodes without records but with evidence of an installation.
    pub state_lost: usize,
}

impl Summary {
    /// The count for `action`.
    pub fn count(&self, action: Action) -> usize {
        match action {
            Action::Provision => self.provision,
            Action::ReprovisionInPlace => self.reprovision_in_place,
            Action::Resume => self.resume,
            Action::RunHooks => self.run_hooks,
            Action::Hold => self.hold,
            Action::None => self.none,
            Action::Error => self.error,
            Action::StateLost => self.state_lost,
        }
    }

    fn add(&mut self, action: Action) {
        let slot = match action {
            Action::Provision => &mut self.provision,
            Action::ReprovisionInPlace => &mut self.reprovision_in_place,
            Action::Resume => &mut self.resume,
            Action::RunHooks => &mut self.run_hooks,
            Action::Hold => &mut self.hold,
            Action::None => &mut self.none,
            Action::Error => &mut self.error,
            Action::StateLost => &mut self.state_lost,
        };
        *slot += 1;
    }

    /// Nodes that `apply` would touch.
    pub fn changes(&self) -> usize {
        self.provision + self.reprovision_in_place + self.resume + self.run_hooks
    }
}

/// State recorded for a MAC that no node in the cluster file has. The planner never acts on
/// it (the machine may have been repurposed); it is reported so the operator can `forget` it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Orphan {
    /// The MAC.
    pub mac: Mac,
    /// The recorded state's name.
    pub state: &'static str,
    /// The domain the record was made for.
    pub domain: Option<String>,
}

/// A complete plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The `now` the plan was computed for.
    pub generated_at: Timestamp,
    /// One item per desired node: controllers first, then workers; by name within a role.
    pub items: Vec<PlanItem>,
    /// Counts per action.
    pub summary: Summary,
    /// Things the operator should read before applying (controller majority, orphans).
    pub warnings: Vec<String>,
    /// Records without a desired node.
    pub orphans: Vec<Orphan>,
}

impl Plan {
    /// Whether `apply` would touch any machine (`--detailed-exitcode` 2).
    pub fn has_changes(&self) -> bool {
        self.summary.changes() > 0
    }

    /// Whether any node is refused; `apply` must not run such a plan.
    pub fn has_errors(&self) -> bool {
        self.summary.error > 0
    }

    /// Whether records are missing for machines that were installed; `apply` must not run
    /// such a plan (it would publish gating without their installed marks).
    pub fn has_state_lost(&self) -> bool {
        self.summary.state_lost > 0
    }

    /// The item for node `name`.
    pub fn item(&self, name: &str) -> Option<&PlanItem> {
        self.items.iter().find(|i| i.name == name)
    }
}

/// Desired state that cannot be planned: two nodes claim one identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanInputError {
    /// Two nodes share a MAC, so observed state cannot be attributed.
    #[error("nodes {first:?} and {second:?} both have MAC {mac}")]
    DuplicateMac {
        /// The shared MAC.
        mac: Mac,
        /// One node.
        first: String,
        /// The other.
        second: String,
    },
    /// Two nodes share a name.
    #[error("two nodes are named {0:?}")]
    DuplicateName(String),
}

/// Plans every desired node. Pure: the result depends only on the arguments.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    now: Timestamp,
) -> Result<Plan, PlanInputError> {
    let mut by_mac: BTreeMap<Mac, &str> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for n in &desired.nodes {
        if let Some(first) = by_mac.insert(n.mac, &n.name) {
            return Err(PlanInputError::DuplicateMac {
                mac: n.mac,
                first: first.to_string(),
                second: n.name.clone(),
            });
        }
        if !names.insert(n.name.as_str()) {
            return Err(PlanInputError::DuplicateName(n.name.clone()));
        }
    }

    let mut items: Vec<PlanItem> = desired
        .nodes
        .iter()
        .map(|n| {
            let evidence = observed.evidence.get(&n.mac).map_or(&[][..], Vec::as_slice);
            decide(n, observed.nodes.get(&n.mac), evidence, desired.policy, now)
        })
        .collect();
    // Controllers first: they are the riskiest rows and the ones a reader must not miss, and
    // control-plane-first is the usual rollout order. Name, then MAC, make the order total.
    items.sort_by(|a, b| (a.role, &a.name, a.mac).cmp(&(b.role, &b.name, b.mac)));

    let mut summary = Summary::default();
    for item in &items {
        summary.add(item.action);
    }

    let mut warnings = Vec::new();
    if let Some(w) = majority_warning(&items, observed) {
        warnings.push(w);
    }
    warnings.extend(override_warnings(&items));
    let orphans: Vec<Orphan> = observed
        .nodes
        .iter()
        .filter(|(mac, _)| !by_mac.contains_key(mac))
        .map(|(mac, o)| Orphan {
            mac: *mac,
            state: o.state.name(),
            domain: o.state.recorded_domain().map(str::to_string),
        })
        .collect();
    for o in &orphans {
        warnings.push(format!(
            "state is recorded for MAC {} ({}{}) but no node in the cluster file has that MAC; \
             roundhouse leaves it alone (forget it if the machine is gone)",
            o.mac,
            o.state,
            o.domain
                .as_deref()
                .map(|d| format!(", domain {d}"))
                .unwrap_or_default()
        ));
    }

    Ok(Plan {
        generated_at: now,
        items,
        summary,
        warnings,
        orphans,
    })
}

/// Warns when controller wipes would leave fewer than a majority of controllers untouched
/// (etcd needs a majority of members to keep quorum). First installs do not count: a controller
/// that never ran holds no data to lose.
fn majority_warning(items: &[PlanItem], observed: &Observed) -> Option<String> {
    let controllers: Vec<&PlanItem> = items
        .iter()
        .filter(|i| i.role == Role::Controller)
        .collect();
    let total = controllers.len();
    let disrupted = controllers
        .iter()
        .filter(|i| match i.action {
            Action::ReprovisionInPlace | Action::Resume => true,
            // A PXE install wipes a controller that held an installation (re-creation, domain
            // change, failed re-creation) or had an attempt in flight.
            Action::Provision => observed.nodes.get(&i.mac).is_some_and(|o| {
                o.state.last_installed().is_some() || o.state.pending_intent().is_some()
            }),
            Action::RunHooks | Action::Hold | Action::None | Action::Error | Action::StateLost => {
                false
            }
        })
        .count();
    // Hooks do not wipe anything: a controller that only runs hooks keeps its etcd data.
    let untouched = controllers
        .iter()
        .filter(|i| {
            matches!(
                i.action,
                Action::None | Action::Hold | Action::Error | Action::RunHooks | Action::StateLost
            )
        })
        .count();
    let majority = total / 2 + 1;
    if disrupted == 0 || untouched >= majority {
        return None;
    }
    Some(if total == 1 {
        "this plan wipes the cluster's only controller: its etcd data is lost unless backed up"
            .to_string()
    } else {
        format!(
            "this plan wipes {disrupted} of {total} controllers and leaves {untouched} untouched, fewer than \
             a majority ({majority}): etcd loses quorum while they are down, even one at a time if another \
             fails"
        )
    })
}

/// One line per node whose snippets may change roundhouse's contract, louder where it bites:
/// a re-provision without the root wipe does not start from a fresh root, and one whose
/// `/ignition_ran` or host keys come from a snippet may not be provable.
fn override_warnings(items: &[PlanItem]) -> Vec<String> {
    items
        .iter()
        .filter(|i| !i.snippet_overrides.is_empty())
        .map(|i| {
            let mut w = format!(
                "node {}: its snippets may change {} (allow_snippet_overrides)",
                i.name,
                i.snippet_overrides.join(", ")
            );
            let wipes = matches!(
                i.action,
                Action::Provision | Action::ReprovisionInPlace | Action::Resume
            );
            if wipes && i.snippet_overrides.iter().any(|o| o == "root-wipe") {
                w.push_str(
                    "; this plan re-provisions it, and without the ROOT wipe its root filesystem \
                     keeps what was there",
                );
            }
            w
        })
        .collect()
}

fn role_plural(role: Role) -> &'static str {
    match role {
        Role::Controller => "controllers",
        Role::Worker => "workers",
    }
}

fn attempt_words(path: ProvisionPath) -> &'static str {
    match path {
        ProvisionPath::Pxe => "PXE install",
        ProvisionPath::InPlace => "in-place re-provision",
    }
}

struct Decision {
    action: Action,
    reason: String,
    intent: Option<Intent>,
    recreate: bool,
}

/// The node's hooks that have not succeeded with their current inputs since its last
/// installation, each with words for why.
fn pending_hooks<'a>(
    node: &'a DesiredNode,
    done: Option<&BTreeMap<String, String>>,
) -> Vec<(&'a DesiredHook, String)> {
    node.hooks
        .iter()
        .filter_map(|h| match done.and_then(|d| d.get(&h.name)) {
            Some(d) if *d == h.digest => None,
            Some(d) => Some((
                h,
                format!(
                    "hook {} inputs changed ({}→{})",
                    h.name,
                    short_digest(d),
                    short_digest(&h.digest)
                ),
            )),
            None => Some((
                h,
                format!("hook {} has not run since the last installation", h.name),
            )),
        })
        .collect()
}

fn decide(
    node: &DesiredNode,
    observed: Option<&ObservedNode>,
    evidence: &[Evidence],
    policy: Policy,
    now: Timestamp,
) -> PlanItem {
    let unknown = NodeState::Unknown;
    let state = observed.map_or(&unknown, |o| &o.state);
    let recreate = observed.and_then(|o| o.recreate);
    let previous = state.last_installed();
    let mut d = decide_state(node, state, recreate, evidence, policy, now);
    let evidence = if d.action == Action::StateLost {
        evidence.to_vec()
    } else {
        Vec::new()
    };
    // An installation leaves the node's config alone but may leave hooks to run: hooks are
    // re-run when their inputs change, on held nodes too (the held config stays; what the
    // hooks put on the node is not part of it).
    let mut drift = d.action == Action::Hold;
    let hooks = match d.action {
        Action::Provision | Action::ReprovisionInPlace | Action::Resume => node.hooks.clone(),
        Action::None | Action::Hold => {
            let pending = pending_hooks(node, observed.map(|o| &o.hooks));
            if !pending.is_empty() {
                let words: Vec<&str> = pending.iter().map(|(_, w)| w.as_str()).collect();
                d.reason = format!(
                    "{}; {}: run {} only",
                    d.reason,
                    words.join(", "),
                    if pending.len() == 1 {
                        "that hook"
                    } else {
                        "those hooks"
                    }
                );
                drift = d.action == Action::Hold;
                d.action = Action::RunHooks;
            }
            pending.into_iter().map(|(h, _)| h.clone()).collect()
        }
        Action::RunHooks | Action::Error | Action::StateLost => Vec::new(),
    };
    PlanItem {
        name: node.name.clone(),
        mac: node.mac,
        role: node.role,
        domain: node.domain.clone(),
        drift,
        hooks,
        action: d.action,
        reason: d.reason,
        old_digest: previous.map(|p| p.digest.clone()),
        new_digest: node.digest.clone(),
        intent: d.intent,
        recreate: d.recreate,
        evidence,
        snippet_overrides: node.snippet_overrides.clone(),
    }
}

fn decide_state(
    node: &DesiredNode,
    state: &NodeState,
    recreate: Option<RecreateRequest>,
    evidence: &[Evidence],
    policy: Policy,
    now: Timestamp,
) -> Decision {
    let provision = |reason: String, recreate: bool| Decision {
        action: Action::Provision,
        reason,
        intent: state.pending_intent().cloned(),
        recreate,
    };
    let abandons = |text: &mut String| {
        if let Some(i) = state.pending_intent() {
            text.push_str(&format!(
                "; abandons the unconfirmed {} of {} started at {}",
                attempt_words(i.path),
                short_digest(&i.digest),
                i.started_at
            ));
        }
    };

    // Row R1/R2: an explicit recreate beats everything, including a pending attempt.
    if let Some(req) = recreate {
        if node.role == Role::Controller && !req.allow_controller {
            return Decision {
                action: Action::Error,
                reason: format!(
                    "recreate requested at {} for a controller without --allow-controllers: a PXE install \
                     wipes its etcd member; request it again with --allow-controllers, or cancel it",
                    req.requested_at
                ),
                intent: None,
                recreate: false,
            };
        }
        let mut reason = format!("recreate requested at {}: PXE install", req.requested_at);
        if matches!(state, NodeState::Unknown) {
            reason.push_str(" (no state recorded anyway)");
        }
        abandons(&mut reason);
        return provision(reason, true);
    }

    // R3: nothing recorded. Only a machine with no evidence of an installation is fresh
    // (never installed, or a failed first PXE that left no trace); one with evidence lost its
    // records (emptied, deleted or replaced state): R3b, never a wipe.
    let fresh = || {
        if evidence.is_empty() {
            return provision("no state recorded for this MAC: PXE install".into(), false);
        }
        let words: Vec<String> = evidence.iter().map(ToString::to_string).collect();
        Decision {
            action: Action::StateLost,
            reason: format!(
                "no state recorded for this MAC, but it was installed before ({}): its records were \
                 lost; roundhouse will not reinstall it: rebuild them with `roundhouse state \
                 recover`, or `roundhouse recreate {}` to reinstall it on purpose",
                words.join("; "),
                node.name
            ),
            intent: None,
            recreate: false,
        }
    };
    let Some(recorded_domain) = state.recorded_domain() else {
        return fresh();
    };

    // R4: Lokomotive's "a flag file with another domain counts as missing".
    if recorded_domain != node.domain {
        let mut reason = format!(
            "state was recorded for domain {recorded_domain}, the node's domain is {}: counts as not \
             installed, PXE install",
            node.domain
        );
        abandons(&mut reason);
        return provision(reason, false);
    }

    match state {
        NodeState::Unknown => fresh(),
        // R5/R6: crash recovery.
        NodeState::Installing { intent, .. } | NodeState::Reprovisioning { intent, .. } => {
            let age = human_duration(now.millis_since(intent.started_at));
            let mut reason = match intent.stage {
                IntentStage::Triggered { at } => format!(
                    "{} of {} was triggered at {at} but never confirmed: wait for it, do not trigger again",
                    attempt_words(intent.path),
                    short_digest(&intent.digest)
                ),
                IntentStage::Started => format!(
                    "{} of {} was journaled {age} ago but not recorded as triggered: redo its preparation \
                     and trigger, then wait",
                    attempt_words(intent.path),
                    short_digest(&intent.digest)
                ),
            };
            if intent.digest != node.digest {
                reason.push_str(&format!(
                    "; the desired config has since changed to {}: that change is planned once this one \
                     is confirmed",
                    short_digest(&node.digest)
                ));
            }
            Decision {
                action: Action::Resume,
                reason,
                intent: Some(intent.clone()),
                recreate: false,
            }
        }
        // R7: a failed first install recorded no installation: PXE again (Lokomotive wrote the
        // flag file only after success, so it retried PXE too).
        NodeState::Failed {
            intent,
            error,
            at,
            previous: None,
        } => provision(
            format!(
                "the {} of {} failed at {at} ({error}) and no installation was ever confirmed: PXE install again",
                attempt_words(intent.path),
                short_digest(&intent.digest)
            ),
            false,
        ),
        // R8: a failed attempt over a confirmed installation: decide as for that installation,
        // but say what failed.
        NodeState::Failed {
            intent,
            error,
            at,
            previous: Some(prev),
        } => {
            let mut d = decide_installed(node, prev, policy);
            d.reason = format!(
                "the {} of {} failed at {at} ({error}); {}",
                attempt_words(intent.path),
                short_digest(&intent.digest),
                d.reason
            );
            if d.action == Action::None {
                d.reason.push_str(
                    " (if the failure came after the reboot the node may not run it: recreate it to be sure)",
                );
            }
            d
        }
        // R9–R13.
        NodeState::Installed(inst) => decide_installed(node, inst, policy),
    }
}

fn decide_installed(node: &DesiredNode, inst: &Installed, policy: Policy) -> Decision {
    let role_policy = policy.for_role(node.role);
    let roles = role_plural(node.role);
    let (action, reason) = match (&inst.digest, role_policy) {
        (AppliedDigest::Known(d), _) if *d == node.digest => {
            (Action::None, "applied config is current".to_string())
        }
        (AppliedDigest::Known(d), ChangePolicy::Reprovision) => (
            Action::ReprovisionInPlace,
            format!(
                "config digest changed ({}→{}) and {roles} reprovision in place",
                short_digest(d),
                short_digest(&node.digest)
            ),
        ),
        (AppliedDigest::Known(d), ChangePolicy::Hold) => (
            Action::Hold,
            format!(
                "config digest changed ({}→{}) but {roles} keep their config (policy hold): drift, state \
                 unchanged",
                short_digest(d),
                short_digest(&node.digest)
            ),
        ),
        (AppliedDigest::Unknown, ChangePolicy::Reprovision) => (
            Action::ReprovisionInPlace,
            format!(
                "applied config unknown (adopted from Lokomotive, never confirmed by roundhouse) and {roles} \
                 reprovision in place: re-provision to a known config"
            ),
        ),
        (AppliedDigest::Unknown, ChangePolicy::Hold) => (
            Action::Hold,
            format!(
                "applied config unknown (adopted from Lokomotive, never confirmed by roundhouse) and {roles} \
                 keep their config (policy hold): drift until a policy change or recreate"
            ),
        ),
    };
    Decision {
        action,
        reason,
        intent: None,
        recreate: false,
    }
}
