//! The two backends are interchangeable: random sequences of changes, notes and fetches give
//! the embedded store and the in-memory store the same records, histories (sequence numbers
//! included), refusals and fetch-journal answers.

use std::net::{IpAddr, Ipv4Addr};

use bootdata::Mac;
use proptest::prelude::*;
use roundhouse_plan::{AppliedDigest, Installed, Intent, IntentStage, ProvisionPath, Timestamp};
use roundhouse_store::{
    Change, EventQuery, FetchRecord, MemoryStore, OpenMode, StateDir, StateStore,
};

fn mac(n: u8) -> Mac {
    Mac::parse(&format!("52:54:00:00:00:{n:02x}")).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Change(u8, u8),
    Batch(Vec<(u8, u8)>),
    Note(u8),
    Fetch(u8, i64),
}

fn change(kind: u8, at: Timestamp) -> Change {
    let intent = |path| Intent {
        path,
        digest: format!("sha256:{:064x}", at.unix_millis()),
        domain: "n.lab".into(),
        kernel_args: vec![],
        started_at: at,
        stage: IntentStage::Started,
    };
    match kind % 12 {
        0 => Change::BeginInstall(intent(ProvisionPath::Pxe)),
        1 => Change::BeginReprovision(intent(ProvisionPath::InPlace)),
        2 => Change::MarkTriggered,
        3 => Change::Confirm,
        4 => Change::Fail("boom".into()),
        5 => Change::Abandon("superseded".into()),
        6 => Change::Adopt(Installed {
            digest: AppliedDigest::Unknown,
            path: ProvisionPath::Pxe,
            domain: "n.lab".into(),
            kernel_args: None,
            at,
        }),
        7 => Change::Forget,
        8 => Change::RequestRecreate {
            allow_controller: at.unix_millis() % 2 == 0,
        },
        9 => Change::CancelRecreate,
        10 => Change::HookSucceeded {
            name: format!("h{}", at.unix_millis() % 2),
            digest: format!("sha256:{:064x}", at.unix_millis()),
        },
        _ => Change::HookFailed {
            name: "h0".into(),
            digest: "sha256:00".into(),
            error: "exit 1".into(),
        },
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 0u8..12).prop_map(|(m, k)| Op::Change(m, k)),
        1 => prop::collection::vec((0u8..4, 0u8..12), 1..4).prop_map(Op::Batch),
        1 => (0u8..4).prop_map(Op::Note),
        2 => (0u8..4, 0i64..50).prop_map(|(m, t)| Op::Fetch(m, t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn backends_agree(ops in prop::collection::vec(op(), 1..60)) {
        let tmp = tempfile::tempdir().unwrap();
        let disk = StateDir::new(tmp.path()).open_store(OpenMode::Held).unwrap();
        let mem = MemoryStore::new();
        for (i, op) in ops.iter().enumerate() {
            let at = Timestamp::from_unix_millis(i as i64 * 1000);
            match op {
                Op::Change(m, k) => {
                    let a = disk.apply(&mac(*m), change(*k, at), at).map_err(|e| e.to_string());
                    let b = mem.apply(&mac(*m), change(*k, at), at).map_err(|e| e.to_string());
                    prop_assert_eq!(a, b);
                }
                Op::Batch(items) => {
                    let batch = || items.iter().map(|(m, k)| (mac(*m), change(*k, at))).collect::<Vec<_>>();
                    let a = disk.apply_batch(batch(), at).map_err(|e| e.to_string());
                    let b = mem.apply_batch(batch(), at).map_err(|e| e.to_string());
                    prop_assert_eq!(a, b);
                }
                Op::Note(m) => {
                    prop_assert_eq!(disk.note(&mac(*m), "n", at).unwrap(), mem.note(&mac(*m), "n", at).unwrap());
                }
                Op::Fetch(m, t) => {
                    let f = FetchRecord {
                        mac: mac(*m),
                        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                        route: "/ignition".into(),
                        group: None,
                        digest: Some(format!("sha256:{i:x}")),
                        at: Timestamp::from_unix_millis(t * 1000),
                    };
                    disk.record_fetch(&f).unwrap();
                    mem.record_fetch(&f).unwrap();
                }
            }
        }
        prop_assert_eq!(disk.nodes().unwrap(), mem.nodes().unwrap());
        prop_assert_eq!(disk.last_fetches().unwrap(), mem.last_fetches().unwrap());
        for m in 0..4 {
            let q = EventQuery::newest(1000);
            prop_assert_eq!(disk.events(&mac(m), q).unwrap(), mem.events(&mac(m), q).unwrap());
            prop_assert_eq!(disk.last_fetch(&mac(m)).unwrap(), mem.last_fetch(&mac(m)).unwrap());
            let since = Timestamp::from_unix_millis(20_000);
            prop_assert_eq!(disk.fetches_since(&mac(m), since).unwrap(), mem.fetches_since(&mac(m), since).unwrap());
        }
    }
}
