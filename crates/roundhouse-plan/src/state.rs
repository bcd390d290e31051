//! The per-node lifecycle, as a state machine with guarded transitions.
//!
//! ```text
//!                 begin_install                 confirm
//!   Unknown ─────────────────────▶ Installing ─────────────▶ Installed(d)
//!      ▲                              │  ▲                     │   │  ▲
//!      │ forget (any state)     fail/ │  │ begin_install       │   │  │ confirm
//!      │                      abandon ▼  │ (recreate, domain)  │   ▼  │
//!      │                            Failed ◀──── fail/abandon ─┼ Reprovisioning
//!      │                              │                        │   ▲
//!      │                              └── begin_reprovision ───┴───┘ (begin_reprovision)
//!   adopt (Unknown only) ──▶ Installed(unknown digest)
//! ```
//!
//! Every transition method checks the state it starts from and returns a [`TransitionError`]
//! naming both when the move is not allowed, so an executor bug (say, an in-place re-provision
//! of a node that was never installed) stops loudly instead of corrupting the record. The store
//! applies transitions inside the same transaction that appends the matching event.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// How a node is (re-)provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProvisionPath {
    /// Network boot into the installer, which writes Flatcar to disk (the machine is wiped).
    Pxe,
    /// Over SSH: set `first_boot`, rewrite the OEM grub.cfg, reboot; Ignition re-creates root.
    InPlace,
}

impl ProvisionPath {
    /// `pxe` or `in-place`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisionPath::Pxe => "pxe",
            ProvisionPath::InPlace => "in-place",
        }
    }
}

impl fmt::Display for ProvisionPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The config digest a node runs, as far as roundhouse knows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppliedDigest {
    /// roundhouse confirmed the node fetched and ran the config with this digest
    /// (`sha256:<hex>`).
    Known(String),
    /// The node was adopted from another tool (Lokomotive's flag files) which never recorded
    /// what config it applied.
    Unknown,
}

impl AppliedDigest {
    /// The digest text, or `None` when unknown.
    pub fn known(&self) -> Option<&str> {
        match self {
            AppliedDigest::Known(d) => Some(d),
            AppliedDigest::Unknown => None,
        }
    }

    /// The short form for tables: 12 hex digits, or `unknown`.
    pub fn short(&self) -> &str {
        match self {
            AppliedDigest::Known(d) => short_digest(d),
            AppliedDigest::Unknown => "unknown",
        }
    }
}

impl Serialize for AppliedDigest {
    /// The digest text, or the string `unknown` (digests always start with `sha256:`, so the
    /// two cannot be confused).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AppliedDigest::Known(d) => s.serialize_str(d),
            AppliedDigest::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for AppliedDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(if s == "unknown" {
            AppliedDigest::Unknown
        } else {
            AppliedDigest::Known(s)
        })
    }
}

/// The first 12 hex digits of a `sha256:<hex>` digest (the whole text if it is shorter or has
/// another form, so odd input is shown rather than hidden).
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// How far an intent got before the journal was last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "stage")]
pub enum IntentStage {
    /// Journaled, but the machine may not have been touched yet: the executor may redo the
    /// (idempotent) preparation and trigger.
    Started,
    /// The power action ran (PXE) or the reboot was issued (in-place) at `at`: on resume the
    /// executor must only wait, never trigger again, or it would wipe a node mid-install.
    Triggered {
        /// When the trigger completed.
        at: Timestamp,
    },
}

/// A journaled provisioning attempt: written before the executor touches the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Which path the attempt takes.
    pub path: ProvisionPath,
    /// The digest of the config being applied; confirmation records exactly this one.
    pub digest: String,
    /// The domain SSH connects to for this attempt.
    pub domain: String,
    /// Kernel arguments written to the node (PXE command line or OEM grub.cfg).
    pub kernel_args: Vec<String>,
    /// When the intent was journaled.
    pub started_at: Timestamp,
    /// How far it got.
    #[serde(flatten)]
    pub stage: IntentStage,
}

/// A confirmed installation: what the node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The config digest it runs.
    pub digest: AppliedDigest,
    /// How it was last provisioned.
    pub path: ProvisionPath,
    /// The domain it was installed under (Lokomotive's flag file content).
    pub domain: String,
    /// Kernel arguments in effect; `None` when adopted from a tool that did not record them.
    pub kernel_args: Option<Vec<String>>,
    /// When it was confirmed (or adopted).
    pub at: Timestamp,
}

/// A node's lifecycle state. See the module documentation for the diagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum NodeState {
    /// Nothing recorded: the node has never been installed by roundhouse (or its state was
    /// deleted). The planner PXE-installs it.
    Unknown,
    /// A PXE install was journaled and not yet confirmed or failed.
    Installing {
        /// The attempt.
        intent: Intent,
        /// The installation it replaces (a re-creation), if any.
        previous: Option<Installed>,
    },
    /// The node runs a known (or adopted) installation.
    Installed(Installed),
    /// An in-place re-provision was journaled and not yet confirmed or failed.
    Reprovisioning {
        /// The attempt.
        intent: Intent,
        /// The installation being replaced.
        previous: Installed,
    },
    /// The last attempt failed (or was abandoned). `previous` is the last confirmed
    /// installation, if any; a failed first install has none, so it is retried by PXE.
    Failed {
        /// The attempt that failed.
        intent: Intent,
        /// Why, in words.
        error: String,
        /// When the failure was recorded.
        at: Timestamp,
        /// The last confirmed installation before the attempt.
        previous: Option<Installed>,
    },
}

/// A transition that the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {transition} a node that is {from}")]
pub struct TransitionError {
    /// The state's name (`unknown`, `installing`, …).
    pub from: &'static str,
    /// The transition's name (`begin an in-place re-provision of`, …).
    pub transition: &'static str,
}

impl NodeState {
    /// The state's name: `unknown`, `installing`, `installed`, `reprovisioning` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Installing { .. } => "installing",
            NodeState::Installed(_) => "installed",
            NodeState::Reprovisioning { .. } => "reprovisioning",
            NodeState::Failed { .. } => "failed",
        }
    }

    /// The unconfirmed intent, if an attempt is in flight.
    pub fn pending_intent(&self) -> Option<&Intent> {
        match self {
            NodeState::Installing { intent, .. } | NodeState::Reprovisioning { intent, .. } => {
                Some(intent)
            }
            _ => None,
        }
    }

    /// The last confirmed installation, whatever happened since.
    pub fn last_installed(&self) -> Option<&Installed> {
        match self {
            NodeState::Unknown => None,
            NodeState::Installed(i) => Some(i),
            NodeState::Reprovisioning { previous, .. } => Some(previous),
            NodeState::Installing { previous, .. } | NodeState::Failed { previous, .. } => {
                previous.as_ref()
            }
        }
    }

    /// The domain the record was made for: the in-flight or failed attempt's, else the
    /// installation's. Lokomotive's rule "a flag file holding another domain counts as missing"
    /// compares against this.
    pub fn recorded_domain(&self) -> Option<&str> {
        match self {
            NodeState::Unknown => None,
            NodeState::Installed(i) => Some(&i.domain),
            NodeState::Installing { intent, .. }
            | NodeState::Reprovisioning { intent, .. }
            | NodeState::Failed { intent, .. } => Some(&intent.domain),
        }
    }

    fn refuse(&self, transition: &'static str) -> TransitionError {
        TransitionError {
            from: self.name(),
            transition,
        }
    }

    /// Journals a PXE install. Allowed from `unknown`, `installed` (a re-creation, or the
    /// record was for another domain) and `failed`. Not from an in-flight attempt: that must be
    /// confirmed, failed or [abandoned](Self::abandon) first, so a superseded attempt always
    /// leaves a trace in the history.
    pub fn begin_install(&mut self, intent: Intent) -> Result<(), TransitionError> {
        const T: &str = "begin a PXE install of";
        if intent.path != ProvisionPath::Pxe {
            return Err(self.refuse("begin a PXE install with an in-place intent for"));
        }
        let previous = match self {
            NodeState::Unknown => None,
            NodeState::Installed(i) => Some(i.clone()),
            NodeState::Failed { previous, .. } => previous.clone(),
            NodeState::Installing { .. } | NodeState::Reprovisioning { .. } => {
                return Err(self.refuse(T));
            }
        };
        *self = NodeState::Installing { intent, previous };
        Ok(())
    }

    /// Journals an in-place re-provision. Allowed from `installed`, and from `failed` when a
    /// confirmed installation preceded the failure (there is an OS to SSH into).
    pub fn begin_reprovision(&mut self, intent: Intent) -> Result<(), TransitionError> {
        const T: &str = "begin an in-place re-provision of";
        if intent.path != ProvisionPath::InPlace {
            return Err(self.refuse("begin an in-place re-provision with a PXE intent for"));
        }
        let previous = match self {
            NodeState::Installed(i) => i.clone(),
            NodeState::Failed {
                previous: Some(p), ..
            } => p.clone(),
            _ => return Err(self.refuse(T)),
        };
        *self = NodeState::Reprovisioning { intent, previous };
        Ok(())
    }

    /// Records that the power action ran or the reboot was issued. Allowed once per attempt,
    /// from an in-flight attempt still at stage `started`.
    pub fn mark_triggered(&mut self, at: Timestamp) -> Result<(), TransitionError> {
        match self {
            NodeState::Installing { intent, .. } | NodeState::Reprovisioning { intent, .. }
                if intent.stage == IntentStage::Started =>
            {
                intent.stage = IntentStage::Triggered { at };
                Ok(())
            }
            _ => Err(self.refuse("mark as triggered")),
        }
    }

    /// Records success: the node ran the intent's config. Allowed from an in-flight attempt at
    /// either stage (after a crash the trigger may have happened without being journaled).
    pub fn confirm(&mut self, at: Timestamp) -> Result<(), TransitionError> {
        let intent = match self {
            NodeState::Installing { intent, .. } | NodeState::Reprovisioning { intent, .. } => {
                intent.clone()
            }
            _ => return Err(self.refuse("confirm")),
        };
        *self = NodeState::Installed(Installed {
            digest: AppliedDigest::Known(intent.digest),
            path: intent.path,
            domain: intent.domain,
            kernel_args: Some(intent.kernel_args),
            at,
        });
        Ok(())
    }

    /// Records a failed attempt. Allowed from an in-flight attempt.
    pub fn fail(&mut self, error: impl Into<String>, at: Timestamp) -> Result<(), TransitionError> {
        self.end_attempt("record a failure of", error.into(), at)
    }

    /// Gives up an in-flight attempt without knowing its outcome (the planner chose PXE over
    /// resuming it). Recorded as a failure whose error starts with `abandoned:`.
    pub fn abandon(&mut self, why: &str, at: Timestamp) -> Result<(), TransitionError> {
        self.end_attempt("abandon an attempt on", format!("abandoned: {why}"), at)
    }

    fn end_attempt(
        &mut self,
        transition: &'static str,
        error: String,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        let (intent, previous) = match self {
            NodeState::Installing { intent, previous } => (intent.clone(), previous.clone()),
            NodeState::Reprovisioning { intent, previous } => {
                (intent.clone(), Some(previous.clone()))
            }
            _ => return Err(self.refuse(transition)),
        };
        *self = NodeState::Failed {
            intent,
            error,
            at,
            previous,
        };
        Ok(())
    }

    /// Records an installation made by another tool (Lokomotive). Allowed only from
    /// `unknown`: adopting over roundhouse's own record would throw away what it knows.
    pub fn adopt(&mut self, installed: Installed) -> Result<(), TransitionError> {
        match self {
            NodeState::Unknown => {
                *self = NodeState::Installed(installed);
                Ok(())
            }
            _ => Err(self.refuse("adopt")),
        }
    }

    /// Drops everything known about the node; the next plan PXE-installs it. Allowed from
    /// every state: it is the operator's explicit escape hatch (the history keeps the trace).
    pub fn forget(&mut self) {
        *self = NodeState::Unknown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_millis(s * 1000)
    }

    fn intent(path: ProvisionPath, digest: &str) -> Intent {
        Intent {
            path,
            digest: digest.into(),
            domain: "n1.example".into(),
            kernel_args: vec!["a=1".into()],
            started_at: t(100),
            stage: IntentStage::Started,
        }
    }

    fn installed_with(digest: &str) -> NodeState {
        let mut s = NodeState::Unknown;
        s.begin_install(intent(ProvisionPath::Pxe, digest)).unwrap();
        s.mark_triggered(t(101)).unwrap();
        s.confirm(t(102)).unwrap();
        s
    }

    #[test]
    fn test_fsm_first_install_then_reprovision() {
        let mut s = installed_with("sha256:aa");
        assert_eq!(
            s,
            NodeState::Installed(Installed {
                digest: AppliedDigest::Known("sha256:aa".into()),
                path: ProvisionPath::Pxe,
                domain: "n1.example".into(),
                kernel_args: Some(vec!["a=1".into()]),
                at: t(102),
            })
        );
        s.begin_reprovision(intent(ProvisionPath::InPlace, "sha256:bb"))
            .unwrap();
        assert_eq!(s.name(), "reprovisioning");
        assert_eq!(
            s.last_installed().unwrap().digest,
            AppliedDigest::Known("sha256:aa".into())
        );
        s.confirm(t(200)).unwrap();
        let NodeState::Installed(i) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(i.digest.known(), Some("sha256:bb"));
        assert_eq!(i.path, ProvisionPath::InPlace);
    }

    #[test]
    fn test_fsm_failed_first_install_has_nothing_to_ssh_into() {
        let mut s = NodeState::Unknown;
        s.begin_install(intent(ProvisionPath::Pxe, "sha256:aa"))
            .unwrap();
        s.fail("no fetch within 30m", t(300)).unwrap();
        assert_eq!(s.last_installed(), None);
        let err = s
            .begin_reprovision(intent(ProvisionPath::InPlace, "sha256:aa"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot begin an in-place re-provision of a node that is failed"
        );
        s.begin_install(intent(ProvisionPath::Pxe, "sha256:aa"))
            .unwrap();
        assert_eq!(s.name(), "installing");
    }

    #[test]
    fn test_fsm_failed_reprovision_keeps_previous() {
        let mut s = installed_with("sha256:aa");
        s.begin_reprovision(intent(ProvisionPath::InPlace, "sha256:bb"))
            .unwrap();
        s.fail("ssh unreachable", t(300)).unwrap();
        assert_eq!(
            s.last_installed().unwrap().digest.known(),
            Some("sha256:aa")
        );
        s.begin_reprovision(intent(ProvisionPath::InPlace, "sha256:bb"))
            .unwrap();
        assert_eq!(s.name(), "reprovisioning");
    }

    #[test]
    fn test_fsm_in_flight_attempt_cannot_be_restarted() {
        let mut s = installed_with("sha256:aa");
        s.begin_reprovision(intent(ProvisionPath::InPlace, "sha256:bb"))
            .unwrap();
        assert_eq!(
            s.begin_install(intent(ProvisionPath::Pxe, "sha256:bb"))
                .unwrap_err()
                .from,
            "reprovisioning"
        );
        assert!(
            s.begin_reprovision(intent(ProvisionPath::InPlace, "sha256:bb"))
                .is_err()
        );
        s.abandon("recreate requested", t(150)).unwrap();
        let NodeState::Failed {
            error, previous, ..
        } = &s
        else {
            panic!("{s:?}")
        };
        assert_eq!(error, "abandoned: recreate requested");
        assert!(previous.is_some());
        s.begin_install(intent(ProvisionPath::Pxe, "sha256:bb"))
            .unwrap();
    }

    #[test]
    fn test_fsm_trigger_once() {
        let mut s = NodeState::Unknown;
        assert!(s.mark_triggered(t(1)).is_err());
        s.begin_install(intent(ProvisionPath::Pxe, "sha256:aa"))
            .unwrap();
        s.mark_triggered(t(1)).unwrap();
        assert_eq!(
            s.mark_triggered(t(2)).unwrap_err().transition,
            "mark as triggered"
        );
        assert_eq!(
            s.pending_intent().unwrap().stage,
            IntentStage::Triggered { at: t(1) }
        );
    }

    #[test]
    fn test_fsm_confirm_and_fail_need_an_attempt() {
        for mut s in [NodeState::Unknown, installed_with("sha256:aa")] {
            assert!(s.confirm(t(1)).is_err());
            assert!(s.fail("x", t(1)).is_err());
            assert!(s.abandon("x", t(1)).is_err());
        }
    }

    #[test]
    fn test_fsm_path_must_match_transition() {
        let mut s = NodeState::Unknown;
        assert!(
            s.begin_install(intent(ProvisionPath::InPlace, "sha256:aa"))
                .is_err()
        );
        let mut s = installed_with("sha256:aa");
        assert!(
            s.begin_reprovision(intent(ProvisionPath::Pxe, "sha256:bb"))
                .is_err()
        );
    }

    #[test]
    fn test_fsm_adopt_only_unknown_and_forget_anything() {
        let adopted = Installed {
            digest: AppliedDigest::Unknown,
            path: ProvisionPath::Pxe,
            domain: "n1.example".into(),
            kernel_args: None,
            at: t(5),
        };
        let mut s = installed_with("sha256:aa");
        assert_eq!(s.adopt(adopted.clone()).unwrap_err().from, "installed");
        s.forget();
        s.adopt(adopted.clone()).unwrap();
        assert_eq!(s, NodeState::Installed(adopted));
    }

    #[test]
    fn serde_round_trip_and_shape() {
        let mut s = installed_with("sha256:aa");
        s.begin_reprovision(intent(ProvisionPath::InPlace, "sha256:bb"))
            .unwrap();
        s.mark_triggered(t(130)).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["state"], "reprovisioning");
        assert_eq!(json["intent"]["path"], "in-place");
        assert_eq!(json["intent"]["stage"], "triggered");
        assert_eq!(json["intent"]["at"], "1970-01-01T00:02:10Z");
        let back: NodeState = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        let unknown = serde_json::to_string(&AppliedDigest::Unknown).unwrap();
        assert_eq!(unknown, "\"unknown\"");
    }

    #[test]
    fn short_forms() {
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("sha256:01"), "01");
        assert_eq!(short_digest("weird"), "weird");
        assert_eq!(AppliedDigest::Unknown.short(), "unknown");
    }
}
