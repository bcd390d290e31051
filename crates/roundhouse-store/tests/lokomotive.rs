//! `import-lokomotive`: Lokomotive's flag files become adopted nodes, and the planner treats
//! them as installed with an unknown config (Lokomotive's own "flag file with another domain
//! counts as missing" included).

use std::fs;

use bootdata::Mac;
use roundhouse_config::model::{ChangePolicy, Policy, Role};
use roundhouse_plan::{
    Action, AppliedDigest, Desired, DesiredNode, NodeState, ProvisionPath, Timestamp, plan,
};
use roundhouse_store::{EventQuery, OpenMode, StateDir, StateStore, import_lokomotive};

const AT: Timestamp = Timestamp::from_unix_millis(1_764_064_980_000);

fn mac(s: &str) -> Mac {
    Mac::parse(s).unwrap()
}

fn desired_node(name: &str, m: &str, domain: &str, role: Role) -> DesiredNode {
    DesiredNode {
        name: name.into(),
        mac: mac(m),
        domain: domain.into(),
        role,
        digest: format!("sha256:{}", "d".repeat(64)),
        hooks: vec![],
        snippet_overrides: vec![],
    }
}

#[test]
fn adopts_flag_files_and_plans_them_as_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let assets = tmp.path().join("lokomotive-assets");
    let flags = assets.join("cluster-assets");
    fs::create_dir_all(flags.join("tls")).unwrap();
    // What Lokomotive's pxe-helper.sh wrote: `echo <domain> > cluster-assets/<MAC>`.
    fs::write(flags.join("52:54:00:a1:9c:01"), "controller-0.example\n").unwrap();
    fs::write(flags.join("52:54:00:a1:9c:02"), "worker-0.example\n").unwrap();
    fs::write(flags.join("52:54:00:A1:9C:03"), "worker-1.example").unwrap();
    // A flag file for a domain the node no longer has.
    fs::write(flags.join("52:54:00:a1:9c:04"), "old-name.example\n").unwrap();
    // Not flag files: other assets, an empty file, a directory named like a MAC, junk.
    fs::write(flags.join("kubeconfig"), "apiVersion: v1\n").unwrap();
    fs::write(flags.join("52:54:00:a1:9c:05"), "\n").unwrap();
    fs::create_dir(flags.join("52:54:00:a1:9c:06")).unwrap();
    fs::write(flags.join("52:54:00:a1:9c:07"), "two words\n").unwrap();
    // The same MAC spelt another way (Go's parser accepts dashes): agreeing files are one
    // node, disagreeing ones adopt nothing.
    fs::write(flags.join("52-54-00-a1-9c-02"), "worker-0.example\n").unwrap();
    fs::write(flags.join("52:54:00:a1:9c:09"), "a.example\n").unwrap();
    fs::write(flags.join("52-54-00-a1-9c-09"), "b.example\n").unwrap();

    let dir = StateDir::new(tmp.path().join("state"));
    let store = dir.open_store(OpenMode::Held).unwrap();
    let report = import_lokomotive(&store, &assets, AT).unwrap();
    let adopted: Vec<(String, &str)> = report
        .adopted
        .iter()
        .map(|(m, d)| (m.to_string(), d.as_str()))
        .collect();
    assert_eq!(
        adopted,
        [
            ("52:54:00:a1:9c:01".to_string(), "controller-0.example"),
            ("52:54:00:a1:9c:02".to_string(), "worker-0.example"),
            ("52:54:00:a1:9c:03".to_string(), "worker-1.example"),
            ("52:54:00:a1:9c:04".to_string(), "old-name.example"),
        ]
    );
    assert_eq!(store.node(&mac("52:54:00:a1:9c:09")).unwrap(), None);
    assert_eq!(report.ignored, 2, "kubeconfig and tls");
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|(p, why)| format!("{}: {why}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    assert_eq!(skipped.len(), 6, "{skipped:?}");
    assert!(
        skipped[0].starts_with("52:54:00:a1:9c:05: empty flag file"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].starts_with("52:54:00:a1:9c:06: not a regular file"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].contains("\"two words\" is not a domain"),
        "{skipped:?}"
    );
    assert_eq!(
        skipped[3],
        "52:54:00:a1:9c:02: 52:54:00:a1:9c:02 is also named by another flag file"
    );
    assert!(
        skipped[4].contains("conflicting flag files for 52:54:00:a1:9c:09"),
        "{skipped:?}"
    );
    assert!(
        skipped[4].contains("(a.example)") && skipped[4].contains("(b.example)"),
        "{skipped:?}"
    );
    assert_eq!(
        skipped[4].split_once(": ").unwrap().1,
        skipped[5].split_once(": ").unwrap().1
    );

    let r = store.node(&mac("52:54:00:a1:9c:02")).unwrap().unwrap();
    assert_eq!(r.applied_digest(), Some(&AppliedDigest::Unknown));
    assert_eq!(r.last_path(), Some(ProvisionPath::Pxe));
    assert_eq!(r.kernel_args(), None);
    let history = store.events(&r.mac, EventQuery::newest(10)).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].kind.as_str(), history[0].message.as_str()),
        ("adopted", "domain worker-0.example")
    );

    // Importing again changes nothing and says why.
    let again = import_lokomotive(&store, &assets, AT).unwrap();
    assert!(again.adopted.is_empty());
    assert!(
        again
            .skipped
            .iter()
            .any(|(_, why)| why.contains("already has state (installed)")),
        "{again:?}"
    );
    assert_eq!(
        store.events(&r.mac, EventQuery::newest(10)).unwrap().len(),
        1
    );

    let desired = Desired {
        policy: Policy {
            controllers: ChangePolicy::Hold,
            workers: ChangePolicy::Reprovision,
        },
        nodes: vec![
            desired_node(
                "controller-0",
                "52:54:00:a1:9c:01",
                "controller-0.example",
                Role::Controller,
            ),
            desired_node(
                "worker-0",
                "52:54:00:a1:9c:02",
                "worker-0.example",
                Role::Worker,
            ),
            desired_node(
                "worker-1",
                "52:54:00:a1:9c:03",
                "worker-1.example",
                Role::Worker,
            ),
            desired_node(
                "worker-2",
                "52:54:00:a1:9c:04",
                "worker-2.example",
                Role::Worker,
            ),
            desired_node(
                "worker-3",
                "52:54:00:a1:9c:08",
                "worker-3.example",
                Role::Worker,
            ),
        ],
    };
    let p = plan(&desired, &store.observed().unwrap(), AT).unwrap();
    let got: Vec<(&str, Action)> = p
        .items
        .iter()
        .map(|i| (i.name.as_str(), i.action))
        .collect();
    assert_eq!(
        got,
        [
            ("controller-0", Action::Hold),
            ("worker-0", Action::ReprovisionInPlace),
            ("worker-1", Action::ReprovisionInPlace),
            ("worker-2", Action::Provision),
            ("worker-3", Action::Provision),
        ]
    );
    assert!(
        p.item("controller-0")
            .unwrap()
            .reason
            .contains("applied config unknown")
    );
    assert!(
        p.item("worker-0")
            .unwrap()
            .reason
            .contains("applied config unknown")
    );
    assert!(
        p.item("worker-2")
            .unwrap()
            .reason
            .contains("recorded for domain old-name.example")
    );
    assert!(
        p.item("worker-3")
            .unwrap()
            .reason
            .contains("no state recorded")
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn does_not_adopt_over_roundhouse_state_and_reports_missing_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let store = roundhouse_store::MemoryStore::new();
    let err = import_lokomotive(&store, tmp.path(), AT).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("reading Lokomotive flag files in "),
        "{err}"
    );
    assert!(err.to_string().contains("cluster-assets"), "{err}");

    let flags = tmp.path().join("cluster-assets");
    fs::create_dir_all(&flags).unwrap();
    fs::write(flags.join("52:54:00:00:00:01"), "n1.example\n").unwrap();
    let m = mac("52:54:00:00:00:01");
    store
        .apply(
            &m,
            roundhouse_store::Change::RequestRecreate {
                allow_controller: false,
            },
            AT,
        )
        .unwrap();
    // A record with only a recreate request is still "unknown": adopting is fine.
    assert_eq!(store.node(&m).unwrap().unwrap().state, NodeState::Unknown);
    assert_eq!(
        import_lokomotive(&store, tmp.path(), AT)
            .unwrap()
            .adopted
            .len(),
        1
    );
    assert_eq!(store.node(&m).unwrap().unwrap().state.name(), "installed");
}
