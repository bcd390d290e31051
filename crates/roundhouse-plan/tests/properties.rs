//! Properties of the planner over generated clusters and state stores: determinism, input
//! order independence, agreement with the lifecycle's transition guards, and convergence
//! (applying a plan's outcomes and re-planning leaves nothing to do except drift the policy
//! holds on purpose and errors the operator must resolve).

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use roundhouse_config::model::{ChangePolicy, Policy, Role};
use roundhouse_plan::{
    Action, AppliedDigest, Desired, IntentStage, NodeState, Observed, ObservedNode, ProvisionPath,
    RecreateRequest, plan,
};

/// One generated node: (is controller, desired digest, domain changed since recording,
/// state kind, recorded digest, triggered, recreate, desired hooks, recorded hooks).
type Gen = (bool, u8, bool, u8, u8, bool, Option<bool>, u8, u8);

fn digest_of(k: u8) -> String {
    dg(['a', 'b', 'c'][k as usize % 3])
}

fn build(gens: &[Gen], policy: (bool, bool), orphans: u8) -> (Desired, Observed) {
    let pol = |reprovision| {
        if reprovision {
            ChangePolicy::Reprovision
        } else {
            ChangePolicy::Hold
        }
    };
    let mut d = desired(vec![]);
    d.policy = Policy {
        controllers: pol(policy.0),
        workers: pol(policy.1),
    };
    let mut o = Observed::default();
    for (idx, &(controller, want, moved, kind, had, trig, recreate, hooks, done)) in
        gens.iter().enumerate()
    {
        let n = idx as u8 + 1;
        let role = if controller {
            Role::Controller
        } else {
            Role::Worker
        };
        let mut desired_node = node(n, role, &digest_of(want));
        desired_node.hooks = match hooks {
            0 => vec![],
            1 => vec![hook("h1", 'a')],
            _ => vec![hook("h1", 'a'), hook("h2", 'b')],
        };
        // Nothing, h1 current, or h1 stale and h2 current (and a hook no longer configured).
        let recorded: BTreeMap<String, String> = match done {
            0 => BTreeMap::new(),
            1 => [("h1".to_string(), dg('a'))].into(),
            _ => [
                ("h1".to_string(), dg('c')),
                ("h2".to_string(), dg('b')),
                ("gone".to_string(), dg('d')),
            ]
            .into(),
        };
        let domain = if moved {
            "elsewhere.example".to_string()
        } else {
            desired_node.domain.clone()
        };
        d.nodes.push(desired_node);
        let stage = if trig {
            IntentStage::Triggered { at: at(100) }
        } else {
            IntentStage::Started
        };
        let prev = installed(
            &domain,
            AppliedDigest::Known(digest_of(had)),
            ProvisionPath::Pxe,
        );
        let state = match kind {
            0 => NodeState::Unknown,
            1 => NodeState::Installed(prev),
            2 => NodeState::Installed(installed(
                &domain,
                AppliedDigest::Unknown,
                ProvisionPath::Pxe,
            )),
            3 => NodeState::Installing {
                intent: intent(ProvisionPath::Pxe, &domain, &digest_of(had + 1), stage),
                previous: trig.then_some(prev),
            },
            4 => NodeState::Reprovisioning {
                intent: intent(ProvisionPath::InPlace, &domain, &digest_of(had + 1), stage),
                previous: prev,
            },
            5 => NodeState::Failed {
                intent: intent(ProvisionPath::Pxe, &domain, &digest_of(had), stage),
                error: "boom".into(),
                at: at(50),
                previous: None,
            },
            _ => NodeState::Failed {
                intent: intent(ProvisionPath::InPlace, &domain, &digest_of(had + 1), stage),
                error: "boom".into(),
                at: at(50),
                previous: Some(prev),
            },
        };
        if state != NodeState::Unknown || recreate.is_some() {
            o.nodes.insert(
                mac(n),
                ObservedNode {
                    state,
                    recreate: recreate.map(|allow_controller| RecreateRequest {
                        requested_at: at(10),
                        allow_controller,
                    }),
                    hooks: recorded,
                },
            );
        }
    }
    for k in 0..orphans {
        o.nodes.insert(
            mac(200 + k),
            ObservedNode {
                state: NodeState::Installed(installed(
                    "gone.example",
                    known('a'),
                    ProvisionPath::Pxe,
                )),
                recreate: None,
                hooks: BTreeMap::new(),
            },
        );
    }
    (d, o)
}

fn gen_strategy() -> impl Strategy<Value = (Vec<Gen>, (bool, bool), u8)> {
    (
        prop::collection::vec(
            (
                any::<bool>(),
                0u8..3,
                prop::bool::weighted(0.15),
                0u8..7,
                0u8..3,
                any::<bool>(),
                prop::option::weighted(0.2, any::<bool>()),
                0u8..3,
                0u8..3,
            ),
            1..10,
        ),
        (any::<bool>(), any::<bool>()),
        0u8..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn deterministic_and_order_independent((gens, policy, orphans) in gen_strategy()) {
        let (d, o) = build(&gens, policy, orphans);
        let p1 = plan(&d, &o, NOW).unwrap();
        prop_assert_eq!(&p1, &plan(&d, &o, NOW).unwrap());
        let mut reversed = d.clone();
        reversed.nodes.reverse();
        prop_assert_eq!(&p1, &plan(&reversed, &o, NOW).unwrap());
        prop_assert_eq!(p1.items.len(), d.nodes.len());
        prop_assert_eq!(Action::ALL.iter().map(|&a| p1.summary.count(a)).sum::<usize>(), d.nodes.len());
        prop_assert_eq!(p1.orphans.len(), orphans as usize);
        for item in &p1.items {
            prop_assert!(!item.reason.is_empty());
            // Drift: held, or held while only hooks run.
            if item.action == Action::Hold {
                prop_assert!(item.drift);
            }
            if item.drift {
                prop_assert!(matches!(item.action, Action::Hold | Action::RunHooks));
            }
            // Hooks run after every installation, and only pending ones otherwise.
            if matches!(item.action, Action::Provision | Action::ReprovisionInPlace | Action::Resume) {
                prop_assert_eq!(item.hooks.len(), d.nodes.iter().find(|n| n.name == item.name).unwrap().hooks.len());
            }
            prop_assert_eq!(item.action == Action::RunHooks, matches!(item.action, Action::RunHooks | Action::None | Action::Hold) && !item.hooks.is_empty());
        }
    }

    #[test]
    fn applying_outcomes_converges((gens, policy, orphans) in gen_strategy()) {
        let (d, mut o) = build(&gens, policy, orphans);
        let p1 = plan(&d, &o, NOW).unwrap();
        // `apply_success` goes through the lifecycle's guarded transitions and panics on a
        // refused one: every planned action must be executable from the state it was planned
        // for.
        for item in &p1.items {
            apply_success(&mut o, item, NOW);
        }
        let p2 = plan(&d, &o, NOW).unwrap();
        for (a, b) in p1.items.iter().zip(&p2.items) {
            prop_assert_eq!(&a.name, &b.name);
            let stale_resume = a.action == Action::Resume
                && a.intent.as_ref().is_some_and(|i| i.digest != a.new_digest);
            let expected = match a.action {
                Action::Error => Action::Error,
                Action::Hold => Action::Hold,
                // Only hooks ran: what is left is the held drift, if any.
                Action::RunHooks if a.drift => Action::Hold,
                // The resumed attempt applied an older digest: now the usual change follows.
                Action::Resume if stale_resume => {
                    let reprovision = if a.role == Role::Controller { policy.0 } else { policy.1 };
                    if reprovision { Action::ReprovisionInPlace } else { Action::Hold }
                }
                _ => Action::None,
            };
            prop_assert_eq!(b.action, expected, "{} after {}: {}", &b.name, a.action, &b.reason);
        }
        for item in &p2.items {
            apply_success(&mut o, item, NOW);
        }
        let settled = o.clone();
        let p3 = plan(&d, &o, NOW).unwrap();
        for item in &p3.items {
            prop_assert!(matches!(item.action, Action::None | Action::Hold | Action::Error), "{}: {}", item.name, item.reason);
            apply_success(&mut o, item, NOW);
        }
        // A settled plan changes nothing: hold does not rewrite state.
        prop_assert_eq!(o, settled);
        prop_assert!(!p3.has_changes());
    }
}
