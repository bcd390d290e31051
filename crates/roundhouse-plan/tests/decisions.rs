//! One test case per row of the decision table in docs/planner.md (R1–R14), plus Lokomotive's
//! edge cases, the controller-majority warning, orphans, ordering and output shapes.

mod common;

use common::*;
use roundhouse_config::model::{ChangePolicy, Policy, Role};
use roundhouse_plan::{
    Action, AppliedDigest, IntentStage, NodeState, Observed, PlanInputError, ProvisionPath, plan,
    render_table,
};

struct Case {
    row: &'static str,
    role: Role,
    policy: Option<Policy>,
    state: NodeState,
    /// `Some(allow_controller)` when a recreate is pending.
    recreate: Option<bool>,
    desired_digest: char,
    action: Action,
    reason_has: &'static [&'static str],
    carries_intent: bool,
    old: Option<AppliedDigest>,
}

const D: &str = "node1.example";

fn case(row: &'static str, role: Role, state: NodeState, action: Action) -> Case {
    Case {
        row,
        role,
        policy: None,
        state,
        recreate: None,
        desired_digest: 'b',
        action,
        reason_has: &[],
        carries_intent: false,
        old: None,
    }
}

fn inst(digest: AppliedDigest) -> NodeState {
    NodeState::Installed(installed(D, digest, ProvisionPath::Pxe))
}

fn triggered() -> IntentStage {
    IntentStage::Triggered { at: at(300) }
}

fn cases() -> Vec<Case> {
    let worker_hold = Policy {
        controllers: ChangePolicy::Hold,
        workers: ChangePolicy::Hold,
    };
    let all_reprovision = Policy {
        controllers: ChangePolicy::Reprovision,
        workers: ChangePolicy::Reprovision,
    };
    let in_flight_in_place = NodeState::Reprovisioning {
        intent: intent(ProvisionPath::InPlace, D, &dg('b'), triggered()),
        previous: installed(D, known('a'), ProvisionPath::Pxe),
    };
    vec![
        Case {
            recreate: Some(false),
            reason_has: &["--allow-controllers"],
            old: Some(known('b')),
            ..case(
                "R1 recreate of a controller without the allow flag",
                Role::Controller,
                inst(known('b')),
                Action::Error,
            )
        },
        Case {
            recreate: Some(true),
            reason_has: &["recreate requested"],
            old: Some(known('b')),
            ..case(
                "R2 recreate of a controller with the allow flag",
                Role::Controller,
                inst(known('b')),
                Action::Provision,
            )
        },
        Case {
            recreate: Some(false),
            reason_has: &["recreate requested"],
            old: Some(known('b')),
            ..case(
                "R2 recreate of a current worker (no allow flag needed)",
                Role::Worker,
                inst(known('b')),
                Action::Provision,
            )
        },
        Case {
            recreate: Some(false),
            reason_has: &["recreate requested", "no state recorded anyway"],
            ..case(
                "R2 recreate of a node without state",
                Role::Worker,
                NodeState::Unknown,
                Action::Provision,
            )
        },
        Case {
            recreate: Some(false),
            reason_has: &[
                "recreate requested",
                "abandons the unconfirmed in-place re-provision",
            ],
            carries_intent: true,
            old: Some(known('a')),
            ..case(
                "R2 recreate beats a pending attempt",
                Role::Worker,
                in_flight_in_place.clone(),
                Action::Provision,
            )
        },
        Case {
            reason_has: &["no state recorded"],
            ..case(
                "R3 no state (first install, or deleted state forcing PXE)",
                Role::Worker,
                NodeState::Unknown,
                Action::Provision,
            )
        },
        Case {
            reason_has: &["no state recorded"],
            ..case(
                "R3 no state for a controller is a plain first install",
                Role::Controller,
                NodeState::Unknown,
                Action::Provision,
            )
        },
        Case {
            reason_has: &["recorded for domain old.example", "counts as not installed"],
            old: Some(AppliedDigest::Unknown),
            ..case(
                "R4 Lokomotive flag file holding another domain counts as missing",
                Role::Worker,
                NodeState::Installed(installed(
                    "old.example",
                    AppliedDigest::Unknown,
                    ProvisionPath::Pxe,
                )),
                Action::Provision,
            )
        },
        Case {
            reason_has: &[
                "recorded for domain old.example",
                "abandons the unconfirmed PXE install",
            ],
            carries_intent: true,
            ..case(
                "R4 a pending attempt for another domain is abandoned",
                Role::Worker,
                NodeState::Installing {
                    intent: intent(ProvisionPath::Pxe, "old.example", &dg('b'), triggered()),
                    previous: None,
                },
                Action::Provision,
            )
        },
        Case {
            reason_has: &[
                "PXE install of bbbbbbbbbbbb was triggered",
                "do not trigger again",
            ],
            carries_intent: true,
            ..case(
                "R5 crash after the PXE power action: resume by waiting",
                Role::Worker,
                NodeState::Installing {
                    intent: intent(ProvisionPath::Pxe, D, &dg('b'), triggered()),
                    previous: None,
                },
                Action::Resume,
            )
        },
        Case {
            reason_has: &["journaled 10m 0s ago", "redo its preparation"],
            carries_intent: true,
            ..case(
                "R5 crash before the trigger was journaled: resume by redoing it",
                Role::Worker,
                NodeState::Installing {
                    intent: intent(ProvisionPath::Pxe, D, &dg('b'), IntentStage::Started),
                    previous: None,
                },
                Action::Resume,
            )
        },
        Case {
            reason_has: &[
                "in-place re-provision of bbbbbbbbbbbb was triggered",
                "do not trigger again",
            ],
            carries_intent: true,
            old: Some(known('a')),
            ..case(
                "R6 crash after the in-place reboot: resume by waiting",
                Role::Worker,
                in_flight_in_place.clone(),
                Action::Resume,
            )
        },
        Case {
            desired_digest: 'c',
            reason_has: &["desired config has since changed to cccccccccccc"],
            carries_intent: true,
            old: Some(known('a')),
            ..case(
                "R6 resume continues the journaled digest even if desired moved on",
                Role::Worker,
                in_flight_in_place,
                Action::Resume,
            )
        },
        Case {
            reason_has: &["resume"],
            carries_intent: true,
            old: Some(known('a')),
            // Policy does not matter: the attempt was already started (and probably wiped).
            ..case(
                "R6 a controller's pending attempt resumes even under hold",
                Role::Controller,
                NodeState::Reprovisioning {
                    intent: intent(ProvisionPath::InPlace, D, &dg('b'), triggered()),
                    previous: installed(D, known('a'), ProvisionPath::Pxe),
                },
                Action::Resume,
            )
        }
        .with_reason(&["never confirmed"]),
        Case {
            reason_has: &[
                "failed at",
                "no fetch",
                "no installation was ever confirmed",
                "PXE install again",
            ],
            ..case(
                "R7 failed first PXE is retried by PXE",
                Role::Worker,
                NodeState::Failed {
                    intent: intent(ProvisionPath::Pxe, D, &dg('b'), triggered()),
                    error: "no fetch within 30m".into(),
                    at: at(100),
                    previous: None,
                },
                Action::Provision,
            )
        },
        Case {
            reason_has: &[
                "in-place re-provision of bbbbbbbbbbbb failed",
                "ssh timeout",
                "reprovision in place",
            ],
            old: Some(known('a')),
            ..case(
                "R8 failed in-place re-provision is retried in place",
                Role::Worker,
                NodeState::Failed {
                    intent: intent(ProvisionPath::InPlace, D, &dg('b'), IntentStage::Started),
                    error: "ssh timeout".into(),
                    at: at(100),
                    previous: Some(installed(D, known('a'), ProvisionPath::Pxe)),
                },
                Action::ReprovisionInPlace,
            )
        },
        Case {
            desired_digest: 'a',
            reason_has: &[
                "failed",
                "applied config is current",
                "recreate it to be sure",
            ],
            old: Some(known('a')),
            ..case(
                "R8 failed attempt, desired reverted to the confirmed config",
                Role::Worker,
                NodeState::Failed {
                    intent: intent(ProvisionPath::InPlace, D, &dg('b'), IntentStage::Started),
                    error: "ssh timeout".into(),
                    at: at(100),
                    previous: Some(installed(D, known('a'), ProvisionPath::Pxe)),
                },
                Action::None,
            )
        },
        Case {
            policy: Some(worker_hold),
            reason_has: &["failed", "policy hold"],
            old: Some(known('a')),
            ..case(
                "R8 failed attempt under a policy that now holds",
                Role::Worker,
                NodeState::Failed {
                    intent: intent(ProvisionPath::InPlace, D, &dg('b'), IntentStage::Started),
                    error: "ssh timeout".into(),
                    at: at(100),
                    previous: Some(installed(D, known('a'), ProvisionPath::Pxe)),
                },
                Action::Hold,
            )
        },
        Case {
            reason_has: &["applied config is current"],
            old: Some(known('b')),
            ..case(
                "R9 current digest",
                Role::Worker,
                inst(known('b')),
                Action::None,
            )
        },
        Case {
            reason_has: &["applied config is current"],
            old: Some(known('b')),
            ..case(
                "R9 current digest (controller)",
                Role::Controller,
                inst(known('b')),
                Action::None,
            )
        },
        Case {
            reason_has: &[
                "config digest changed (aaaaaaaaaaaa→bbbbbbbbbbbb) and workers reprovision in place",
            ],
            old: Some(known('a')),
            ..case(
                "R10 worker digest changed, policy reprovision",
                Role::Worker,
                inst(known('a')),
                Action::ReprovisionInPlace,
            )
        },
        Case {
            reason_has: &[
                "config digest changed (aaaaaaaaaaaa→bbbbbbbbbbbb) but controllers keep their config",
            ],
            old: Some(known('a')),
            ..case(
                "R11 controller digest changed, default policy holds",
                Role::Controller,
                inst(known('a')),
                Action::Hold,
            )
        },
        Case {
            policy: Some(worker_hold),
            reason_has: &["workers keep their config (policy hold)"],
            old: Some(known('a')),
            ..case(
                "R12 worker digest changed, ignore_worker_changes-style hold",
                Role::Worker,
                inst(known('a')),
                Action::Hold,
            )
        },
        Case {
            policy: Some(all_reprovision),
            reason_has: &["controllers reprovision in place"],
            old: Some(known('a')),
            ..case(
                "R13 controller digest changed, policy reprovision",
                Role::Controller,
                inst(known('a')),
                Action::ReprovisionInPlace,
            )
        },
        Case {
            reason_has: &[
                "applied config unknown (adopted from Lokomotive",
                "workers reprovision in place",
            ],
            old: Some(AppliedDigest::Unknown),
            ..case(
                "R14 adopted worker, unknown digest, policy reprovision",
                Role::Worker,
                inst(AppliedDigest::Unknown),
                Action::ReprovisionInPlace,
            )
        },
        Case {
            reason_has: &[
                "applied config unknown (adopted from Lokomotive",
                "controllers keep their config",
            ],
            old: Some(AppliedDigest::Unknown),
            ..case(
                "R14 adopted controller, unknown digest, policy hold",
                Role::Controller,
                inst(AppliedDigest::Unknown),
                Action::Hold,
            )
        },
    ]
}

impl Case {
    fn with_reason(mut self, extra: &'static [&'static str]) -> Case {
        self.reason_has = extra;
        self
    }
}

#[test]
fn every_decision_row() {
    let cases = cases();
    for c in &cases {
        let n = node(1, c.role, &dg(c.desired_digest));
        let mut d = desired(vec![n]);
        if let Some(p) = c.policy {
            d.policy = p;
        }
        let mut o = observe(if c.state == NodeState::Unknown {
            vec![]
        } else {
            vec![(mac(1), c.state.clone())]
        });
        if let Some(allow) = c.recreate {
            request_recreate(&mut o, mac(1), allow);
        }
        let p = plan(&d, &o, NOW).unwrap();
        assert_eq!(p.items.len(), 1, "{}", c.row);
        let item = &p.items[0];
        assert_eq!(item.action, c.action, "{}: {}", c.row, item.reason);
        for needle in c.reason_has {
            assert!(
                item.reason.contains(needle),
                "{}: reason {:?} lacks {needle:?}",
                c.row,
                item.reason
            );
        }
        assert_eq!(
            item.intent.is_some(),
            c.carries_intent,
            "{}: intent {:?}",
            c.row,
            item.intent
        );
        if c.carries_intent {
            assert_eq!(item.intent.as_ref(), c.state.pending_intent(), "{}", c.row);
        }
        assert_eq!(item.old_digest, c.old, "{}", c.row);
        assert_eq!(item.new_digest, dg(c.desired_digest), "{}", c.row);
        assert_eq!(item.drift, c.action == Action::Hold, "{}", c.row);
        assert_eq!(
            item.recreate,
            c.recreate.is_some() && c.action == Action::Provision,
            "{}",
            c.row
        );
        assert_eq!(p.has_errors(), c.action == Action::Error, "{}", c.row);
        assert_eq!(p.has_changes(), c.action.is_change(), "{}", c.row);
    }
    // Every row of the documented table has at least one case.
    for row in [
        "R1 ", "R2 ", "R3 ", "R4 ", "R5 ", "R6 ", "R7 ", "R8 ", "R9 ", "R10 ", "R11 ", "R12 ",
        "R13 ", "R14 ",
    ] {
        assert!(
            cases.iter().any(|c| c.row.starts_with(row)),
            "no case for {row}"
        );
    }
}

/// Lokomotive: "Keeping old config", state not rewritten. The plan's hold has no intent, and a
/// successful apply of the whole plan leaves the held node's record byte-for-byte as it was.
#[test]
fn hold_does_not_rewrite_state() {
    let d = desired(vec![
        node(1, Role::Controller, &dg('b')),
        node(2, Role::Worker, &dg('b')),
    ]);
    let before = observe(vec![(mac(1), inst(known('a'))), (mac(2), inst(known('a')))]);
    let p = plan(&d, &before, NOW).unwrap();
    let mut after = before.clone();
    for item in &p.items {
        apply_success(&mut after, item, NOW);
    }
    assert_eq!(p.item("c1").unwrap().action, Action::Hold);
    assert_eq!(after.nodes[&mac(1)], before.nodes[&mac(1)]);
    assert_ne!(after.nodes[&mac(2)], before.nodes[&mac(2)]);
    // And the next plan still shows the drift, not a silent "none".
    let again = plan(&d, &after, NOW).unwrap();
    assert_eq!(again.item("c1").unwrap().action, Action::Hold);
    assert_eq!(again.item("w2").unwrap().action, Action::None);
}

/// Lokomotive wrote the flag file only after success, so a failed first PXE was retried on the
/// next run; roundhouse records the failure but must retry the same way.
#[test]
fn failed_first_pxe_is_retried_then_converges() {
    let d = desired(vec![node(3, Role::Worker, &dg('b'))]);
    let mut o = Observed::default();
    let p = plan(&d, &o, NOW).unwrap();
    assert_eq!(p.items[0].action, Action::Provision);
    // The executor journals and triggers, then the node never fetches.
    let mut state = NodeState::Unknown;
    state
        .begin_install(intent(
            ProvisionPath::Pxe,
            "node3.example",
            &dg('b'),
            IntentStage::Started,
        ))
        .unwrap();
    state.mark_triggered(NOW).unwrap();
    state
        .fail("node did not fetch its config within 30m", NOW)
        .unwrap();
    o = observe(vec![(mac(3), state)]);
    let retry = plan(&d, &o, NOW).unwrap();
    assert_eq!(retry.items[0].action, Action::Provision);
    apply_success(&mut o, &retry.items[0], NOW);
    assert_eq!(plan(&d, &o, NOW).unwrap().items[0].action, Action::None);
}

/// Deleting a node's state (Lokomotive: deleting the flag file) forces PXE on the next plan,
/// without the "no-op edit" Lokomotive needed.
#[test]
fn deleted_state_forces_pxe() {
    let d = desired(vec![node(4, Role::Worker, &dg('b'))]);
    let mut state =
        NodeState::Installed(installed("node4.example", known('b'), ProvisionPath::Pxe));
    assert_eq!(
        plan(&d, &observe(vec![(mac(4), state.clone())]), NOW)
            .unwrap()
            .items[0]
            .action,
        Action::None
    );
    state.forget();
    let p = plan(&d, &observe(vec![(mac(4), state)]), NOW).unwrap();
    assert_eq!(p.items[0].action, Action::Provision);
}

/// Resume after a crash, both paths: the executor gets the intent (path, digest, stage) and, by
/// confirming it, reaches the state a clean run would have.
#[test]
fn resume_after_crash_both_paths() {
    for path in [ProvisionPath::Pxe, ProvisionPath::InPlace] {
        let d = desired(vec![node(5, Role::Worker, &dg('b'))]);
        let mut state = if path == ProvisionPath::Pxe {
            NodeState::Unknown
        } else {
            NodeState::Installed(installed("node5.example", known('a'), ProvisionPath::Pxe))
        };
        let i = intent(path, "node5.example", &dg('b'), IntentStage::Started);
        match path {
            ProvisionPath::Pxe => state.begin_install(i).unwrap(),
            ProvisionPath::InPlace => state.begin_reprovision(i).unwrap(),
        }
        state.mark_triggered(at(30)).unwrap();
        // kill -9 here; a new apply plans:
        let mut o = observe(vec![(mac(5), state)]);
        let p = plan(&d, &o, NOW).unwrap();
        let item = &p.items[0];
        assert_eq!(item.action, Action::Resume, "{path}");
        let carried = item.intent.as_ref().unwrap();
        assert_eq!(
            (carried.path, carried.digest.as_str()),
            (path, dg('b').as_str())
        );
        assert_eq!(carried.stage, IntentStage::Triggered { at: at(30) });
        apply_success(&mut o, item, NOW);
        let NodeState::Installed(done) = &o.nodes[&mac(5)].state else {
            panic!()
        };
        assert_eq!(
            (done.path, done.digest.known()),
            (path, Some(dg('b').as_str()))
        );
        assert_eq!(plan(&d, &o, NOW).unwrap().items[0].action, Action::None);
    }
}

#[test]
fn controller_majority_warning() {
    let all_reprovision = Policy {
        controllers: ChangePolicy::Reprovision,
        workers: ChangePolicy::Reprovision,
    };
    let three = |digests: [char; 3]| {
        let mut d = desired(
            (1..=3)
                .map(|n| node(n, Role::Controller, &dg(digests[n as usize - 1])))
                .collect(),
        );
        d.policy = all_reprovision;
        d
    };
    let o = observe(
        (1..=3)
            .map(|n| {
                (
                    mac(n),
                    NodeState::Installed(installed(
                        &format!("node{n}.example"),
                        known('a'),
                        ProvisionPath::Pxe,
                    )),
                )
            })
            .collect(),
    );
    // One of three changes: two untouched is a majority.
    assert!(
        plan(&three(['b', 'a', 'a']), &o, NOW)
            .unwrap()
            .warnings
            .is_empty()
    );
    // Two of three: one untouched is not.
    let p = plan(&three(['b', 'b', 'a']), &o, NOW).unwrap();
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("wipes 2 of 3 controllers and leaves 1 untouched"),
        "{}",
        p.warnings[0]
    );
    // Re-creation counts as a wipe too.
    let mut o2 = o.clone();
    request_recreate(&mut o2, mac(1), true);
    request_recreate(&mut o2, mac(2), true);
    assert_eq!(
        plan(&three(['a', 'a', 'a']), &o2, NOW)
            .unwrap()
            .warnings
            .len(),
        1
    );
    // A first install of every controller wipes nothing.
    assert!(
        plan(&three(['a', 'a', 'a']), &Observed::default(), NOW)
            .unwrap()
            .warnings
            .is_empty()
    );
    // The only controller of a cluster.
    let mut single = desired(vec![node(1, Role::Controller, &dg('b'))]);
    single.policy = all_reprovision;
    let p = plan(&single, &observe(vec![(mac(1), inst(known('a')))]), NOW).unwrap();
    assert!(
        p.warnings[0].contains("only controller"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn orphans_are_reported_not_planned() {
    let d = desired(vec![node(1, Role::Worker, &dg('a'))]);
    let o = observe(vec![
        (mac(1), inst(known('a'))),
        (
            mac(9),
            NodeState::Installed(installed("gone.example", known('a'), ProvisionPath::Pxe)),
        ),
    ]);
    let p = plan(&d, &o, NOW).unwrap();
    assert_eq!(p.items.len(), 1);
    assert_eq!(p.orphans.len(), 1);
    assert_eq!(p.orphans[0].mac, mac(9));
    assert_eq!(p.orphans[0].domain.as_deref(), Some("gone.example"));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("52:54:00:00:00:09") && w.contains("gone.example"))
    );
}

#[test]
fn order_is_controllers_then_names() {
    let d = desired(vec![
        node(7, Role::Worker, &dg('a')),
        node(3, Role::Controller, &dg('a')),
        node(2, Role::Worker, &dg('a')),
        node(1, Role::Controller, &dg('a')),
    ]);
    let p = plan(&d, &Observed::default(), NOW).unwrap();
    let names: Vec<&str> = p.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["c1", "c3", "w2", "w7"]);
    assert_eq!(p.summary.provision, 4);
    assert_eq!(p.summary.changes(), 4);
}

#[test]
fn duplicate_identities_are_rejected() {
    let mut dup = node(2, Role::Worker, &dg('a'));
    dup.mac = mac(1);
    let err = plan(
        &desired(vec![node(1, Role::Worker, &dg('a')), dup]),
        &Observed::default(),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(err, PlanInputError::DuplicateMac { .. }), "{err}");
    let mut same_name = node(2, Role::Worker, &dg('a'));
    same_name.name = "w1".into();
    let err = plan(
        &desired(vec![node(1, Role::Worker, &dg('a')), same_name]),
        &Observed::default(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err, PlanInputError::DuplicateName("w1".into()));
}

#[test]
fn table_and_json_output() {
    let d = desired(vec![
        node(1, Role::Controller, &dg('b')),
        node(2, Role::Worker, &dg('b')),
        node(3, Role::Worker, &dg('c')),
    ]);
    let o = observe(vec![
        (mac(1), inst(known('a'))),
        (
            mac(2),
            NodeState::Installed(installed("node2.example", known('a'), ProvisionPath::Pxe)),
        ),
    ]);
    let p = plan(&d, &o, NOW).unwrap();
    let text = render_table(&p);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NODE  ROLE        ACTION                DIGEST"),
        "{text}"
    );
    assert!(lines[1].starts_with("c1    controller  hold                  aaaaaaaaaaaa→bbbbbbbbbbbb  config digest changed"), "{text}");
    assert!(
        lines[2].starts_with("w2    worker      reprovision-in-place  aaaaaaaaaaaa→bbbbbbbbbbbb"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("w3    worker      provision             -→cccccccccccc"),
        "{text}"
    );
    assert_eq!(
        lines[5],
        "Plan: 1 provision, 1 reprovision-in-place, 0 resume, 1 hold (drift), 0 none, 0 error."
    );

    let json: serde_json::Value = serde_json::to_value(&p).unwrap();
    assert_eq!(json["generated_at"], "2025-11-25T10:03:00Z");
    assert_eq!(json["summary"]["reprovision-in-place"], 1);
    let c1 = &json["items"][0];
    assert_eq!(c1["name"], "c1");
    assert_eq!(c1["role"], "controller");
    assert_eq!(c1["mac"], "52:54:00:00:00:01");
    assert_eq!(c1["action"], "hold");
    assert_eq!(c1["drift"], true);
    assert_eq!(c1["old_digest"], dg('a'));
    assert_eq!(json["items"][2]["old_digest"], serde_json::Value::Null);
}

/// Post-provision hooks, one row per situation: (row, role, state, recorded hooks, desired
/// hooks, expected action, hooks apply runs, drift, words the reason must have).
#[test]
fn hook_rows() {
    type Row = (
        &'static str,
        Role,
        NodeState,
        Vec<(&'static str, char)>,
        Vec<(&'static str, char)>,
        Action,
        Vec<&'static str>,
        bool,
        &'static [&'static str],
    );
    let b = known('b');
    let rows: Vec<Row> = vec![
        (
            "H1 current config, every hook done with its inputs",
            Role::Worker,
            inst(b.clone()),
            vec![("h1", 'a'), ("h2", 'c')],
            vec![("h1", 'a'), ("h2", 'c')],
            Action::None,
            vec![],
            false,
            &["applied config is current"],
        ),
        (
            "H2 one hook's inputs changed: only that hook runs",
            Role::Worker,
            inst(b.clone()),
            vec![("h1", 'a'), ("h2", 'c')],
            vec![("h1", 'a'), ("h2", 'd')],
            Action::RunHooks,
            vec!["h2"],
            false,
            &[
                "hook h2 inputs changed (cccccccccccc→dddddddddddd)",
                "run that hook only",
            ],
        ),
        (
            "H3 a hook added to the file has never run",
            Role::Worker,
            inst(b.clone()),
            vec![("h1", 'a')],
            vec![("h1", 'a'), ("h2", 'c')],
            Action::RunHooks,
            vec!["h2"],
            false,
            &["hook h2 has not run since the last installation"],
        ),
        (
            "H4 a held controller still gets its changed hook, and keeps its drift",
            Role::Controller,
            inst(known('a')),
            vec![("h1", 'a')],
            vec![("h1", 'e')],
            Action::RunHooks,
            vec!["h1"],
            true,
            &[
                "policy hold",
                "hook h1 inputs changed",
                "run that hook only",
            ],
        ),
        (
            "H5 a config change re-provisions and then runs every hook, changed or not",
            Role::Worker,
            inst(known('a')),
            vec![("h1", 'a'), ("h2", 'c')],
            vec![("h1", 'a'), ("h2", 'd')],
            Action::ReprovisionInPlace,
            vec!["h1", "h2"],
            false,
            &["reprovision in place"],
        ),
        (
            "H6 a fresh node is PXE-installed and then runs its hooks",
            Role::Worker,
            NodeState::Unknown,
            vec![],
            vec![("h1", 'a')],
            Action::Provision,
            vec!["h1"],
            false,
            &["no state recorded"],
        ),
        (
            "H7 a hook removed from the file is forgotten, not run",
            Role::Worker,
            inst(b.clone()),
            vec![("h1", 'a'), ("gone", 'f')],
            vec![("h1", 'a')],
            Action::None,
            vec![],
            false,
            &["applied config is current"],
        ),
        (
            "H8 a failed in-place attempt over a current installation: hooks still pending run",
            Role::Worker,
            NodeState::Failed {
                intent: intent(ProvisionPath::InPlace, D, &dg('c'), IntentStage::Started),
                error: "hook h1: `false` exited with status 1".into(),
                at: at(30),
                previous: Some(installed(D, b.clone(), ProvisionPath::Pxe)),
            },
            vec![],
            vec![("h1", 'a')],
            Action::RunHooks,
            vec!["h1"],
            false,
            &["failed", "hook h1 has not run since the last installation"],
        ),
    ];
    for (row, role, state, recorded, wanted, action, runs, drift, words) in rows {
        let mut n = node(1, role, &dg('b'));
        n.hooks = wanted.iter().map(|(name, c)| hook(name, *c)).collect();
        let mut o = observe(vec![(mac(1), state)]);
        if let Some(entry) = o.nodes.get_mut(&mac(1)) {
            for (name, c) in &recorded {
                entry.hooks.insert(name.to_string(), dg(*c));
            }
        }
        let p = plan(&desired(vec![n.clone()]), &o, NOW).unwrap();
        let item = &p.items[0];
        assert_eq!(item.action, action, "{row}: {}", item.reason);
        let names: Vec<&str> = item.hooks.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, runs, "{row}");
        for h in &item.hooks {
            let want = n.hooks.iter().find(|w| w.name == h.name).unwrap();
            assert_eq!(h.digest, want.digest, "{row}: the digest to record");
        }
        assert_eq!(item.drift, drift, "{row}");
        for w in words {
            assert!(
                item.reason.contains(w),
                "{row}: {:?} lacks {w:?}",
                item.reason
            );
        }
        assert_eq!(p.has_changes(), action.is_change(), "{row}");
        if action == Action::RunHooks {
            assert_eq!(p.summary.run_hooks, 1, "{row}");
            assert!(render_table(&p).contains("1 run-hooks"), "{row}");
            // A run-hooks item carries no intent: nothing is journaled as an installation.
            assert!(item.intent.is_none(), "{row}");
        }
    }
}

/// Hook runs never count as wiping a controller: a plan that only runs hooks on every
/// controller does not warn about etcd's majority.
#[test]
fn hooks_on_controllers_do_not_warn_about_majority() {
    let mut nodes = Vec::new();
    let mut o = Observed::default();
    for n in 1..=3 {
        let mut d = node(n, Role::Controller, &dg('b'));
        d.hooks = vec![hook("secrets", 'e')];
        let state = NodeState::Installed(installed(&d.domain, known('b'), ProvisionPath::Pxe));
        nodes.push(d);
        o.nodes.extend(observe(vec![(mac(n), state)]).nodes);
    }
    let p = plan(&desired(nodes), &o, NOW).unwrap();
    assert_eq!(p.summary.run_hooks, 3);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

/// R3b: "no record" is not "new machine". One row per kind of evidence, and the rows where
/// evidence must not matter (a record exists, or a recreate was asked for).
#[test]
fn evidence_turns_a_missing_record_into_state_lost() {
    use roundhouse_plan::Evidence;
    let every: Vec<(&str, Evidence, &str)> = vec![
        (
            "gating installed",
            Evidence::Gating {
                netboot: "installed".into(),
            },
            "netboot gating marks it installed",
        ),
        (
            "gating install-pending",
            Evidence::Gating {
                netboot: "install-pending".into(),
            },
            "install-pending",
        ),
        (
            "final config fetched",
            Evidence::FinalConfigFetch { at: at(500) },
            "fetched its final config",
        ),
        (
            "ssh with the managed key",
            Evidence::SshManagedHostKey {
                fingerprint: "SHA256:abc".into(),
            },
            "managed host key SHA256:abc",
        ),
        (
            "ssh with another key",
            Evidence::SshOtherHostKey {
                fingerprint: "SHA256:xyz".into(),
            },
            "another host key SHA256:xyz",
        ),
    ];
    for role in [Role::Controller, Role::Worker] {
        for (row, ev, words) in &every {
            let d = desired(vec![node(1, role, &dg('b'))]);
            let mut o = Observed::default();
            o.evidence.insert(mac(1), vec![ev.clone()]);
            let p = plan(&d, &o, NOW).unwrap();
            let item = &p.items[0];
            assert_eq!(item.action, Action::StateLost, "{row} {role:?}");
            assert!(item.reason.contains(words), "{row}: {}", item.reason);
            assert!(
                item.reason.contains("state recover"),
                "{row}: {}",
                item.reason
            );
            assert!(item.reason.contains("recreate"), "{row}: {}", item.reason);
            assert_eq!(item.evidence, vec![ev.clone()], "{row}");
            assert!(item.hooks.is_empty(), "{row}");
            assert!(p.has_state_lost() && !p.has_changes(), "{row}");
            assert_eq!(p.summary.state_lost, 1);
            assert!(p.warnings.is_empty(), "{row}: {:?}", p.warnings);
            let text = render_table(&p);
            assert!(text.contains("state-lost"), "{text}");
            assert!(text.contains("1 state-lost"), "{text}");
            let json = serde_json::to_value(&p).unwrap();
            assert_eq!(json["items"][0]["action"], "state-lost");
            assert!(
                json["items"][0]["evidence"][0]["kind"].is_string(),
                "{json}"
            );
        }
    }

    // Several kinds together are all named.
    let d = desired(vec![node(2, Role::Worker, &dg('b'))]);
    let mut o = Observed::default();
    o.evidence
        .insert(mac(2), every.iter().map(|(_, e, _)| e.clone()).collect());
    let item = plan(&d, &o, NOW).unwrap().items.remove(0);
    for (_, _, words) in &every {
        assert!(item.reason.contains(words), "{}", item.reason);
    }

    // No evidence: a fresh machine, PXE install as before.
    let d = desired(vec![node(3, Role::Worker, &dg('b'))]);
    let mut o = Observed::default();
    o.evidence.insert(mac(3), vec![]);
    let item = plan(&d, &o, NOW).unwrap().items.remove(0);
    assert_eq!(item.action, Action::Provision);
    assert!(item.evidence.is_empty());

    // A record wins over evidence (evidence is only gathered for nodes without one).
    let d = desired(vec![node(1, Role::Worker, &dg('b'))]);
    let mut o = observe(vec![(mac(1), inst(known('b')))]);
    o.evidence
        .insert(mac(1), vec![Evidence::FinalConfigFetch { at: at(5) }]);
    let item = plan(&d, &o, NOW).unwrap().items.remove(0);
    assert_eq!(item.action, Action::None);
    assert!(item.evidence.is_empty());

    // An explicit recreate is the user asking for the wipe: it beats the evidence.
    for allow in [false, true] {
        let d = desired(vec![node(5, Role::Controller, &dg('b'))]);
        let mut o = Observed::default();
        request_recreate(&mut o, mac(5), allow);
        o.evidence.insert(
            mac(5),
            vec![Evidence::Gating {
                netboot: "installed".into(),
            }],
        );
        let item = plan(&d, &o, NOW).unwrap().items.remove(0);
        let want = if allow {
            Action::Provision
        } else {
            Action::Error
        };
        assert_eq!(item.action, want, "allow {allow}: {}", item.reason);
    }
}

/// Snippet overrides the cluster file allows are shown: in the item, and as a warning that
/// says more when the plan re-provisions a node whose root wipe a snippet may switch off.
#[test]
fn allowed_snippet_overrides_are_shown() {
    let mut w1 = node(1, Role::Worker, &dg('b'));
    w1.snippet_overrides = vec!["root-wipe".into(), "host-keys".into()];
    let mut w2 = node(2, Role::Worker, &dg('b'));
    w2.snippet_overrides = vec!["ignition-ran".into()];
    let w3 = node(3, Role::Worker, &dg('b'));
    let o = observe(vec![
        (
            mac(1),
            NodeState::Installed(installed("node1.example", known('a'), ProvisionPath::Pxe)),
        ),
        (
            mac(2),
            NodeState::Installed(installed("node2.example", known('b'), ProvisionPath::Pxe)),
        ),
        (
            mac(3),
            NodeState::Installed(installed("node3.example", known('a'), ProvisionPath::Pxe)),
        ),
    ]);
    let p = plan(&desired(vec![w1, w2, w3]), &o, NOW).unwrap();
    assert_eq!(p.item("w1").unwrap().action, Action::ReprovisionInPlace);
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(
        p.warnings[0].starts_with("node w1: its snippets may change root-wipe, host-keys")
            && p.warnings[0].contains("without the ROOT wipe"),
        "{}",
        p.warnings[0]
    );
    assert_eq!(
        p.warnings[1],
        "node w2: its snippets may change ignition-ran (allow_snippet_overrides)"
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["items"][0]["snippet_overrides"][1], "host-keys");
    assert!(json["items"][2].get("snippet_overrides").is_none());
    assert!(render_table(&p).contains("warning: node w1: its snippets may change"));
}
