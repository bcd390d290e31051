//! The contract between the planner and the store: for every kind of starting state, the
//! journal entries from `start_changes` are accepted by the store's guarded transitions, and
//! after the attempts are triggered and confirmed the next plan has nothing to do.

use bootdata::Mac;
use roundhouse_config::model::{ChangePolicy, Policy, Role};
use roundhouse_plan::{
    Action, AppliedDigest, Desired, DesiredNode, Installed, Intent, IntentStage, ProvisionPath,
    Timestamp, plan,
};
use roundhouse_store::{Change, EventQuery, MemoryStore, StateStore, start_changes};

const T0: Timestamp = Timestamp::from_unix_millis(1_764_064_980_000);

fn mac(n: u8) -> Mac {
    Mac::parse(&format!("52:54:00:00:00:{n:02x}")).unwrap()
}

fn dg(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn node(n: u8, role: Role) -> DesiredNode {
    DesiredNode {
        name: format!("n{n}"),
        mac: mac(n),
        domain: format!("n{n}.lab"),
        role,
        digest: dg('b'),
        hooks: vec![],
        snippet_overrides: vec![],
    }
}

fn installed(domain: &str, digest: AppliedDigest) -> Installed {
    Installed {
        digest,
        path: ProvisionPath::Pxe,
        domain: domain.into(),
        kernel_args: None,
        at: T0,
    }
}

fn in_place(n: u8, digest: char, stage: IntentStage) -> Intent {
    Intent {
        path: ProvisionPath::InPlace,
        digest: dg(digest),
        domain: format!("n{n}.lab"),
        kernel_args: vec![],
        started_at: T0,
        stage,
    }
}

#[test]
fn every_start_is_accepted_and_converges() {
    let store = MemoryStore::new();
    let at = T0.plus_millis(1000);
    // n1: nothing recorded. n2: adopted under another domain. n3: installed, digest changed.
    // n4: an in-place attempt in flight plus a recreate request. n5: failed in-place attempt
    // over a confirmed installation. n6: adopted with an unknown digest. n7: triggered attempt
    // to resume. n8: current.
    store
        .apply(
            &mac(2),
            Change::Adopt(installed("old.lab", AppliedDigest::Unknown)),
            T0,
        )
        .unwrap();
    store
        .apply(
            &mac(3),
            Change::Adopt(installed("n3.lab", AppliedDigest::Known(dg('a')))),
            T0,
        )
        .unwrap();
    store
        .apply(
            &mac(4),
            Change::Adopt(installed("n4.lab", AppliedDigest::Known(dg('a')))),
            T0,
        )
        .unwrap();
    store
        .apply(
            &mac(4),
            Change::BeginReprovision(in_place(4, 'b', IntentStage::Started)),
            T0,
        )
        .unwrap();
    store
        .apply(
            &mac(4),
            Change::RequestRecreate {
                allow_controller: false,
            },
            T0,
        )
        .unwrap();
    store
        .apply(
            &mac(5),
            Change::Adopt(installed("n5.lab", AppliedDigest::Known(dg('a')))),
            T0,
        )
        .unwrap();
    store
        .apply(
            &mac(5),
            Change::BeginReprovision(in_place(5, 'b', IntentStage::Started)),
            T0,
        )
        .unwrap();
    store
        .apply(&mac(5), Change::Fail("ssh timeout".into()), T0)
        .unwrap();
    store
        .apply(
            &mac(6),
            Change::Adopt(installed("n6.lab", AppliedDigest::Unknown)),
            T0,
        )
        .unwrap();
    store
        .apply(
            &mac(7),
            Change::Adopt(installed("n7.lab", AppliedDigest::Known(dg('a')))),
            T0,
        )
        .unwrap();
    store
        .apply(
            &mac(7),
            Change::BeginReprovision(in_place(7, 'b', IntentStage::Started)),
            T0,
        )
        .unwrap();
    store.apply(&mac(7), Change::MarkTriggered, T0).unwrap();
    store
        .apply(
            &mac(8),
            Change::Adopt(installed("n8.lab", AppliedDigest::Known(dg('b')))),
            T0,
        )
        .unwrap();

    let desired = Desired {
        policy: Policy {
            controllers: ChangePolicy::Hold,
            workers: ChangePolicy::Reprovision,
        },
        nodes: (1..=8).map(|n| node(n, Role::Worker)).collect(),
    };
    let p = plan(&desired, &store.observed().unwrap(), at).unwrap();
    let actions: Vec<Action> = p.items.iter().map(|i| i.action).collect();
    use Action::{None as Nothing, Provision as Pxe, ReprovisionInPlace as InPlace, Resume};
    assert_eq!(
        actions,
        [Pxe, Pxe, InPlace, Pxe, InPlace, InPlace, Resume, Nothing]
    );

    for item in &p.items {
        let changes = start_changes(item, vec!["console=ttyS0".into()], at);
        let expected_len = match (item.action, item.intent.is_some()) {
            (Action::Provision, true) => 2,
            (Action::Provision | Action::ReprovisionInPlace, _) => 1,
            _ => 0,
        };
        assert_eq!(changes.len(), expected_len, "{}", item.name);
        store.apply_batch(changes, at).unwrap();
        // The executor's part, assumed successful here.
        let r = store.node(&item.mac).unwrap();
        if item.action.is_change() {
            if r.as_ref().unwrap().state.pending_intent().unwrap().stage == IntentStage::Started {
                store.apply(&item.mac, Change::MarkTriggered, at).unwrap();
            }
            store.apply(&item.mac, Change::Confirm, at).unwrap();
        }
    }

    let history = store.events(&mac(4), EventQuery::newest(3)).unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["confirmed", "triggered", "begin-install"]);
    let abandoned = &store.events(&mac(4), EventQuery::newest(10)).unwrap()[3];
    assert_eq!(abandoned.kind, "abandoned");
    assert!(
        abandoned
            .message
            .starts_with("superseded by a PXE install: recreate requested"),
        "{abandoned:?}"
    );
    assert_eq!(store.node(&mac(4)).unwrap().unwrap().recreate, None);
    assert_eq!(
        store.node(&mac(1)).unwrap().unwrap().kernel_args(),
        Some(&["console=ttyS0".to_string()][..])
    );

    let again = plan(&desired, &store.observed().unwrap(), at).unwrap();
    assert!(
        again.items.iter().all(|i| i.action == Action::None),
        "{:#?}",
        again.items
    );
}
