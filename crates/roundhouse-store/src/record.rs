//! What the store keeps, and the one function that turns a [`Change`] into a new record plus
//! the event that explains it (shared by every backend so they cannot disagree).

use std::collections::BTreeMap;
use std::net::IpAddr;

use bootdata::Mac;
use roundhouse_plan::{
    Action, AppliedDigest, Installed, Intent, IntentStage, NodeState, ObservedNode, PlanItem,
    ProvisionPath, RecreateRequest, Timestamp, TransitionError,
};
use serde::{Deserialize, Serialize};

/// Everything recorded about one MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The MAC (the record's key).
    pub mac: Mac,
    /// Lifecycle state: domain, how it was last provisioned, the applied digest, kernel args
    /// and any in-flight intent live here.
    pub state: NodeState,
    /// A pending `recreate`; cleared when a PXE install is confirmed.
    pub recreate: Option<RecreateRequest>,
    /// How many changes were applied to this record; equals the number of non-note events in
    /// its history (the crash test checks exactly that).
    pub version: u64,
    /// When the last change was applied.
    pub updated_at: Timestamp,
    /// Post-provision hooks that succeeded since the last confirmed installation, by name.
    /// Absent in records written before hooks existed, which reads as "none ran".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<String, HookRun>,
}

/// A hook's last successful run on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    /// The hook's input digest when it ran.
    pub digest: String,
    /// When it finished.
    pub at: Timestamp,
}

impl NodeRecord {
    /// A record for a MAC with nothing known yet.
    pub fn empty(mac: Mac, at: Timestamp) -> NodeRecord {
        NodeRecord {
            mac,
            state: NodeState::Unknown,
            recreate: None,
            version: 0,
            updated_at: at,
            hooks: BTreeMap::new(),
        }
    }

    /// The domain of the record (see [`NodeState::recorded_domain`]).
    pub fn domain(&self) -> Option<&str> {
        self.state.recorded_domain()
    }

    /// The last confirmed installation's digest.
    pub fn applied_digest(&self) -> Option<&AppliedDigest> {
        self.state.last_installed().map(|i| &i.digest)
    }

    /// How the node was last provisioned (confirmed).
    pub fn last_path(&self) -> Option<ProvisionPath> {
        self.state.last_installed().map(|i| i.path)
    }

    /// Kernel arguments of the last confirmed installation, if recorded.
    pub fn kernel_args(&self) -> Option<&[String]> {
        self.state
            .last_installed()
            .and_then(|i| i.kernel_args.as_deref())
    }

    /// The planner's view of this record.
    pub fn observed(&self) -> ObservedNode {
        ObservedNode {
            state: self.state.clone(),
            recreate: self.recreate,
            hooks: self
                .hooks
                .iter()
                .map(|(name, run)| (name.clone(), run.digest.clone()))
                .collect(),
        }
    }
}

/// A change to a node's record. Lifecycle changes go through [`NodeState`]'s guarded
/// transitions, so a change the current state does not allow is refused, not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// [`NodeState::begin_install`].
    BeginInstall(Intent),
    /// [`NodeState::begin_reprovision`].
    BeginReprovision(Intent),
    /// [`NodeState::mark_triggered`] at the change's time.
    MarkTriggered,
    /// [`NodeState::confirm`]; a confirmed PXE install also clears a pending recreate.
    Confirm,
    /// [`NodeState::fail`] with this error.
    Fail(String),
    /// [`NodeState::abandon`] for this reason.
    Abandon(String),
    /// [`NodeState::adopt`] (import from Lokomotive).
    Adopt(Installed),
    /// [`NodeState::forget`]; also drops a pending recreate. History is kept.
    Forget,
    /// Record `roundhouse recreate`.
    RequestRecreate {
        /// `--allow-controllers` was given.
        allow_controller: bool,
    },
    /// Withdraw a pending recreate.
    CancelRecreate,
    /// A post-provision hook succeeded with these inputs. Refused unless the node runs a
    /// confirmed installation (hooks run on an installed OS).
    HookSucceeded {
        /// The hook's name.
        name: String,
        /// Its input digest.
        digest: String,
    },
    /// A post-provision hook failed: recorded in the history; the hook stays pending.
    HookFailed {
        /// The hook's name.
        name: String,
        /// Its input digest.
        digest: String,
        /// What failed (step, command, output tail).
        error: String,
    },
}

/// One entry of a node's history. Events are never deleted or rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Store-wide sequence number: increasing, never reused, so it orders events and serves as
    /// a paging cursor.
    pub seq: u64,
    /// The node's MAC.
    pub mac: Mac,
    /// When it happened (caller's clock).
    pub at: Timestamp,
    /// `begin-install`, `begin-reprovision`, `triggered`, `confirmed`, `failed`, `abandoned`,
    /// `adopted`, `forgotten`, `recreate-requested`, `recreate-cancelled`, `hook-succeeded`,
    /// `hook-failed`, or `note`.
    pub kind: String,
    /// The lifecycle state's name after the event.
    pub state: String,
    /// The digest involved, if any.
    pub digest: Option<String>,
    /// The path involved, if any.
    pub path: Option<ProvisionPath>,
    /// Human detail (an error, a note).
    pub message: String,
}

/// A page of a node's history: events older than `before` (a sequence number; `None` for the
/// newest), at most `limit` of them, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventQuery {
    /// Cursor: return only events with `seq < before`. Pass the last returned event's `seq` to
    /// get the next page.
    pub before: Option<u64>,
    /// Page size.
    pub limit: usize,
}

impl EventQuery {
    /// The newest `limit` events.
    pub fn newest(limit: usize) -> EventQuery {
        EventQuery {
            before: None,
            limit,
        }
    }
}

/// One request the boot server answered for a machine (its fetch journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRecord {
    /// The requesting machine's MAC (from the `mac` query label).
    pub mac: Mac,
    /// The client's address as the server saw it.
    pub client_ip: IpAddr,
    /// The route served: `/ipxe`, `/ignition`, `/grub`, ….
    pub route: String,
    /// The group that matched, if any.
    pub group: Option<String>,
    /// Digest of the config served, for config routes.
    pub digest: Option<String>,
    /// When it was served.
    pub at: Timestamp,
}

/// Applies `change` to `record` and returns the event describing it (with `seq` 0: the
/// backend assigns it). On error the record is untouched.
pub fn apply_change(
    record: &mut NodeRecord,
    change: Change,
    at: Timestamp,
) -> Result<Event, TransitionError> {
    let mut state = record.state.clone();
    let mut recreate = record.recreate;
    let mut hooks = record.hooks.clone();
    let (kind, digest, path, message): (&str, Option<String>, Option<ProvisionPath>, String) =
        match change {
            Change::BeginInstall(intent) => {
                let (d, p) = (intent.digest.clone(), intent.path);
                state.begin_install(intent)?;
                ("begin-install", Some(d), Some(p), String::new())
            }
            Change::BeginReprovision(intent) => {
                let (d, p) = (intent.digest.clone(), intent.path);
                state.begin_reprovision(intent)?;
                ("begin-reprovision", Some(d), Some(p), String::new())
            }
            Change::MarkTriggered => {
                state.mark_triggered(at)?;
                let i = state.pending_intent();
                (
                    "triggered",
                    i.map(|i| i.digest.clone()),
                    i.map(|i| i.path),
                    String::new(),
                )
            }
            Change::Confirm => {
                state.confirm(at)?;
                let inst = state.last_installed();
                let path = inst.map(|i| i.path);
                if path == Some(ProvisionPath::Pxe) {
                    recreate = None;
                }
                // Both paths wipe what hooks put on the node: they are all pending again.
                hooks.clear();
                (
                    "confirmed",
                    inst.and_then(|i| i.digest.known().map(str::to_string)),
                    path,
                    String::new(),
                )
            }
            Change::Fail(error) => {
                state.fail(error.clone(), at)?;
                let (d, p) = failed_attempt(&state);
                ("failed", d, p, error)
            }
            Change::Abandon(why) => {
                state.abandon(&why, at)?;
                let (d, p) = failed_attempt(&state);
                ("abandoned", d, p, why)
            }
            Change::Adopt(installed) => {
                let (d, p, dom) = (
                    installed.digest.known().map(str::to_string),
                    installed.path,
                    installed.domain.clone(),
                );
                state.adopt(installed)?;
                ("adopted", d, Some(p), format!("domain {dom}"))
            }
            Change::Forget => {
                state.forget();
                recreate = None;
                hooks.clear();
                ("forgotten", None, None, String::new())
            }
            Change::RequestRecreate { allow_controller } => {
                recreate = Some(RecreateRequest {
                    requested_at: at,
                    allow_controller,
                });
                let msg = if allow_controller {
                    "controllers allowed"
                } else {
                    ""
                };
                (
                    "recreate-requested",
                    None,
                    Some(ProvisionPath::Pxe),
                    msg.to_string(),
                )
            }
            Change::CancelRecreate => {
                recreate = None;
                ("recreate-cancelled", None, None, String::new())
            }
            Change::HookSucceeded { name, digest } => {
                require_installed(&state, "record a hook run on")?;
                hooks.insert(
                    name.clone(),
                    HookRun {
                        digest: digest.clone(),
                        at,
                    },
                );
                ("hook-succeeded", Some(digest), None, format!("hook {name}"))
            }
            Change::HookFailed {
                name,
                digest,
                error,
            } => {
                require_installed(&state, "record a hook failure on")?;
                (
                    "hook-failed",
                    Some(digest),
                    None,
                    format!("hook {name}: {error}"),
                )
            }
        };
    record.state = state;
    record.recreate = recreate;
    record.hooks = hooks;
    record.version += 1;
    record.updated_at = at;
    Ok(Event {
        seq: 0,
        mac: record.mac,
        at,
        kind: kind.to_string(),
        state: record.state.name().to_string(),
        digest,
        path,
        message,
    })
}

/// Hooks run on an installed OS; recording one anywhere else is an executor bug.
fn require_installed(state: &NodeState, transition: &'static str) -> Result<(), TransitionError> {
    match state {
        NodeState::Installed(_)
        | NodeState::Failed {
            previous: Some(_), ..
        } => Ok(()),
        _ => Err(TransitionError {
            from: state.name(),
            transition,
        }),
    }
}

fn failed_attempt(state: &NodeState) -> (Option<String>, Option<ProvisionPath>) {
    match state {
        NodeState::Failed { intent, .. } => (Some(intent.digest.clone()), Some(intent.path)),
        _ => (None, None),
    }
}

/// A free-form progress note for a node's history (the executor's "ssh reachable", "waiting
/// for fetch"…). Notes do not change the record.
pub fn note_event(mac: Mac, message: &str, state: &NodeState, at: Timestamp) -> Event {
    Event {
        seq: 0,
        mac,
        at,
        kind: "note".to_string(),
        state: state.name().to_string(),
        digest: None,
        path: None,
        message: message.to_string(),
    }
}

/// The journal entries that start carrying out `item`, to write with
/// [`StateStore::apply_batch`](crate::StateStore::apply_batch) *before* the machine is touched:
///
/// - `provision`: `Abandon` of the in-flight attempt the plan supersedes (if any), then
///   `BeginInstall`.
/// - `reprovision-in-place`: `BeginReprovision`.
/// - `resume`: nothing. The journaled intent is continued, so its stage decides whether to
///   trigger again.
/// - `hold`, `none`, `error`: nothing.
///
/// `kernel_args` are the node's effective kernel arguments (the plan does not carry them: they
/// are part of the digest).
pub fn start_changes(
    item: &PlanItem,
    kernel_args: Vec<String>,
    at: Timestamp,
) -> Vec<(Mac, Change)> {
    let intent = |path| Intent {
        path,
        digest: item.new_digest.clone(),
        domain: item.domain.clone(),
        kernel_args,
        started_at: at,
        stage: IntentStage::Started,
    };
    match item.action {
        Action::Provision => {
            let mut changes = Vec::with_capacity(2);
            if item.intent.is_some() {
                let why = format!("superseded by a PXE install: {}", item.reason);
                changes.push((item.mac, Change::Abandon(why)));
            }
            changes.push((item.mac, Change::BeginInstall(intent(ProvisionPath::Pxe))));
            changes
        }
        Action::ReprovisionInPlace => {
            vec![(
                item.mac,
                Change::BeginReprovision(intent(ProvisionPath::InPlace)),
            )]
        }
        Action::Resume
        | Action::RunHooks
        | Action::Hold
        | Action::None
        | Action::Error
        | Action::StateLost => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_millis(s * 1000)
    }

    fn intent(path: ProvisionPath) -> Intent {
        Intent {
            path,
            digest: "sha256:bb".into(),
            domain: "n.lab".into(),
            kernel_args: vec![],
            started_at: t(0),
            stage: IntentStage::Started,
        }
    }

    /// Each change's event says what happened, with the digest and path involved.
    #[test]
    fn events_describe_changes() {
        let mac = Mac::parse("52:54:00:00:00:01").unwrap();
        let mut r = NodeRecord::empty(mac, t(0));
        let ev = |r: &mut NodeRecord, c: Change| {
            let e = apply_change(r, c, t(1)).unwrap();
            (
                e.kind,
                e.state,
                e.digest,
                e.path.map(|p| p.as_str()),
                e.message,
            )
        };
        let s = |x: &str| x.to_string();
        assert_eq!(
            ev(
                &mut r,
                Change::RequestRecreate {
                    allow_controller: true
                }
            ),
            (
                s("recreate-requested"),
                s("unknown"),
                None,
                Some("pxe"),
                s("controllers allowed")
            )
        );
        assert_eq!(
            ev(&mut r, Change::BeginInstall(intent(ProvisionPath::Pxe))),
            (
                s("begin-install"),
                s("installing"),
                Some(s("sha256:bb")),
                Some("pxe"),
                s("")
            )
        );
        assert_eq!(
            ev(&mut r, Change::MarkTriggered),
            (
                s("triggered"),
                s("installing"),
                Some(s("sha256:bb")),
                Some("pxe"),
                s("")
            )
        );
        assert_eq!(ev(&mut r, Change::Confirm).0, "confirmed");
        assert_eq!(
            r.recreate, None,
            "a confirmed PXE install consumes the request"
        );
        ev(
            &mut r,
            Change::RequestRecreate {
                allow_controller: false,
            },
        );
        ev(
            &mut r,
            Change::BeginReprovision(intent(ProvisionPath::InPlace)),
        );
        assert_eq!(
            ev(&mut r, Change::Fail("ssh timeout".into())),
            (
                s("failed"),
                s("failed"),
                Some(s("sha256:bb")),
                Some("in-place"),
                s("ssh timeout")
            )
        );
        assert!(
            r.recreate.is_some(),
            "only a confirmed PXE install consumes the request"
        );
        assert_eq!(ev(&mut r, Change::CancelRecreate).0, "recreate-cancelled");
        assert_eq!(r.recreate, None);
        assert_eq!(ev(&mut r, Change::Forget).1, "unknown");
        assert_eq!(r.version, 9);
    }

    /// Hook runs are recorded on an installed node only, and every confirmed installation
    /// makes them pending again (it wiped what they put there).
    #[test]
    fn hook_runs_are_recorded_until_the_next_installation() {
        let mac = Mac::parse("52:54:00:00:00:01").unwrap();
        let mut r = NodeRecord::empty(mac, t(0));
        let done = |name: &str| Change::HookSucceeded {
            name: name.into(),
            digest: "sha256:h1".into(),
        };
        let err = apply_change(&mut r, done("h1"), t(1)).unwrap_err();
        assert_eq!(err.from, "unknown");
        apply_change(
            &mut r,
            Change::BeginInstall(intent(ProvisionPath::Pxe)),
            t(1),
        )
        .unwrap();
        assert!(
            apply_change(&mut r, done("h1"), t(2)).is_err(),
            "not while installing"
        );
        apply_change(&mut r, Change::Confirm, t(3)).unwrap();
        let e = apply_change(&mut r, done("h1"), t(4)).unwrap();
        assert_eq!(
            (e.kind.as_str(), e.digest.as_deref(), e.message.as_str()),
            ("hook-succeeded", Some("sha256:h1"), "hook h1")
        );
        let e = apply_change(
            &mut r,
            Change::HookFailed {
                name: "h2".into(),
                digest: "sha256:h2".into(),
                error: "`false` exited with status 1".into(),
            },
            t(5),
        )
        .unwrap();
        assert_eq!(e.kind, "hook-failed");
        assert_eq!(e.message, "hook h2: `false` exited with status 1");
        assert_eq!(
            r.observed().hooks,
            [("h1".to_string(), "sha256:h1".to_string())].into(),
            "a failure records nothing as done"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["hooks"]["h1"]["digest"], "sha256:h1");
        apply_change(
            &mut r,
            Change::BeginReprovision(intent(ProvisionPath::InPlace)),
            t(6),
        )
        .unwrap();
        assert_eq!(r.hooks.len(), 1, "an attempt alone changes nothing");
        apply_change(&mut r, Change::Confirm, t(7)).unwrap();
        assert!(r.hooks.is_empty(), "the re-provision wiped them");
        // Records from before hooks existed read as "no hook ran".
        let mut old = serde_json::to_value(&r).unwrap();
        old.as_object_mut().unwrap().remove("hooks");
        let back: NodeRecord = serde_json::from_value(old).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn refused_change_leaves_the_record_alone() {
        let mac = Mac::parse("52:54:00:00:00:01").unwrap();
        let mut r = NodeRecord::empty(mac, t(0));
        let before = r.clone();
        assert!(apply_change(&mut r, Change::Confirm, t(5)).is_err());
        assert!(
            apply_change(
                &mut r,
                Change::BeginReprovision(intent(ProvisionPath::InPlace)),
                t(5)
            )
            .is_err()
        );
        assert_eq!(r, before);
    }
}
