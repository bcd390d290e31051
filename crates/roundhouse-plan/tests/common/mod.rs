//! Builders and an in-memory "executor that always succeeds", shared by the table and property
//! tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use bootdata::Mac;
use roundhouse_config::model::{ChangePolicy, Policy, Role};
use roundhouse_plan::{
    Action, AppliedDigest, Desired, DesiredHook, DesiredNode, Installed, Intent, IntentStage,
    NodeState, Observed, ObservedNode, PlanItem, ProvisionPath, RecreateRequest, Timestamp,
};

pub const NOW: Timestamp = Timestamp::from_unix_millis(1_764_064_980_000); // 2025-11-25T10:03:00Z

pub fn at(secs_before_now: i64) -> Timestamp {
    NOW.plus_millis(-secs_before_now * 1000)
}

/// A well-formed digest made from one repeated hex digit, so short forms are easy to read.
pub fn dg(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

pub fn mac(n: u8) -> Mac {
    Mac::parse(&format!("52:54:00:00:00:{n:02x}")).unwrap()
}

pub fn default_policy() -> Policy {
    Policy {
        controllers: ChangePolicy::Hold,
        workers: ChangePolicy::Reprovision,
    }
}

pub fn node(n: u8, role: Role, digest: &str) -> DesiredNode {
    DesiredNode {
        name: format!("{}{n}", if role == Role::Controller { "c" } else { "w" }),
        mac: mac(n),
        domain: format!("node{n}.example"),
        role,
        digest: digest.to_string(),
        hooks: vec![],
        snippet_overrides: vec![],
    }
}

/// A hook named `name` with input digest `dg(c)`.
pub fn hook(name: &str, c: char) -> DesiredHook {
    DesiredHook {
        name: name.to_string(),
        digest: dg(c),
    }
}

/// Records that `hooks` succeeded on `m` (as the executor does after running them).
pub fn hooks_done(o: &mut Observed, m: Mac, hooks: &[DesiredHook]) {
    let entry = o.nodes.get_mut(&m).expect("a record for the node");
    for h in hooks {
        entry.hooks.insert(h.name.clone(), h.digest.clone());
    }
}

pub fn desired(nodes: Vec<DesiredNode>) -> Desired {
    Desired {
        policy: default_policy(),
        nodes,
    }
}

pub fn installed(domain: &str, digest: AppliedDigest, path: ProvisionPath) -> Installed {
    Installed {
        digest,
        path,
        domain: domain.to_string(),
        kernel_args: Some(vec![]),
        at: at(3600),
    }
}

pub fn known(c: char) -> AppliedDigest {
    AppliedDigest::Known(dg(c))
}

pub fn intent(path: ProvisionPath, domain: &str, digest: &str, stage: IntentStage) -> Intent {
    Intent {
        path,
        digest: digest.to_string(),
        domain: domain.to_string(),
        kernel_args: vec![],
        started_at: at(600),
        stage,
    }
}

pub fn observe(entries: Vec<(Mac, NodeState)>) -> Observed {
    let mut o = Observed::default();
    for (m, state) in entries {
        o.nodes.insert(
            m,
            ObservedNode {
                state,
                recreate: None,
                hooks: BTreeMap::new(),
            },
        );
    }
    o
}

pub fn request_recreate(o: &mut Observed, m: Mac, allow_controller: bool) {
    o.nodes
        .entry(m)
        .or_insert(ObservedNode {
            state: NodeState::Unknown,
            recreate: None,
            hooks: BTreeMap::new(),
        })
        .recreate = Some(RecreateRequest {
        requested_at: at(60),
        allow_controller,
    });
}

/// What a successful executor does for `item`, through the state machine's transitions only.
/// Panics if the state machine refuses a step: the planner must never plan a move the
/// lifecycle forbids.
pub fn apply_success(observed: &mut Observed, item: &PlanItem, now: Timestamp) {
    let entry = observed.nodes.entry(item.mac).or_insert(ObservedNode {
        state: NodeState::Unknown,
        recreate: None,
        hooks: BTreeMap::new(),
    });
    let state = &mut entry.state;
    let fresh = |path| Intent {
        path,
        digest: item.new_digest.clone(),
        domain: item.domain.clone(),
        kernel_args: vec!["k=v".into()],
        started_at: now,
        stage: IntentStage::Started,
    };
    let step = |r: Result<(), roundhouse_plan::TransitionError>| {
        r.unwrap_or_else(|e| panic!("{}: {e}", item.name))
    };
    match item.action {
        Action::Provision => {
            if state.pending_intent().is_some() {
                step(state.abandon("superseded by the plan", now));
            }
            step(state.begin_install(fresh(ProvisionPath::Pxe)));
            step(state.mark_triggered(now));
            step(state.confirm(now));
            entry.recreate = None;
        }
        Action::ReprovisionInPlace => {
            step(state.begin_reprovision(fresh(ProvisionPath::InPlace)));
            step(state.mark_triggered(now));
            step(state.confirm(now));
        }
        Action::Resume => {
            let intent = state
                .pending_intent()
                .cloned()
                .expect("resume needs a pending intent");
            assert_eq!(Some(&intent), item.intent.as_ref());
            if intent.stage == IntentStage::Started {
                step(state.mark_triggered(now));
            }
            step(state.confirm(now));
        }
        Action::RunHooks | Action::Hold | Action::None | Action::Error | Action::StateLost => {}
    }
    // A confirmed installation wiped what hooks put there (the store clears the record on
    // confirm); then the executor runs the item's hooks and records each success.
    if matches!(
        item.action,
        Action::Provision | Action::ReprovisionInPlace | Action::Resume
    ) {
        entry.hooks.clear();
    }
    for h in &item.hooks {
        entry.hooks.insert(h.name.clone(), h.digest.clone());
    }
}

pub fn role_of(i: &PlanItem) -> Role {
    i.role
}
