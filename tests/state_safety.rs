//! Issue 11 through the CLI on simulated machines: lost, emptied, truncated and swapped state
//! never turns into a wipe; plan and status never write the store; recovery and backups bring
//! the records back. Every scenario starts from the same fleet installed by `apply`, and
//! checks what matters on the machines themselves: no power action, no new installation.
//!
//! Needs what tests/sim_apply.rs needs (root, curl, openssh-client, util-linux, bash).

// Shared with the other sim tests; this one uses part of it.
#[allow(dead_code)]
mod sim;

use std::path::{Path, PathBuf};
use std::process::Output;

use sim::{Lab, action_of, text};

const NODES: &[(&str, &str)] = &[("c1", "controller"), ("w1", "worker"), ("w2", "worker")];

fn store(lab: &Lab) -> PathBuf {
    lab.root().join("assets/state.redb")
}

fn netboot(lab: &Lab) -> Vec<u8> {
    std::fs::read(lab.root().join("assets/boot-state/netboot.json")).unwrap()
}

fn installs(lab: &Lab) -> Vec<(String, u32, u32)> {
    NODES
        .iter()
        .map(|(n, _)| {
            let i = lab.info(n);
            (n.to_string(), i.status.installs, i.status.ignition_runs)
        })
        .collect()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The fleet as roundhouse left it, to compare with after each refused command.
struct Snapshot {
    installs: Vec<(String, u32, u32)>,
    power: usize,
    netboot: Vec<u8>,
}

fn snapshot(lab: &Lab) -> Snapshot {
    Snapshot {
        installs: installs(lab),
        power: lab.power_log().len(),
        netboot: netboot(lab),
    }
}

fn assert_untouched(lab: &Lab, before: &Snapshot, what: &str) {
    assert_eq!(
        installs(lab),
        before.installs,
        "{what}: a machine was installed"
    );
    assert_eq!(
        lab.power_log().len(),
        before.power,
        "{what}: a power action ran"
    );
    assert_eq!(netboot(lab), before.netboot, "{what}: netboot.json changed");
}

fn restore(lab: &Lab, good: &Path) {
    std::fs::copy(good, store(lab)).unwrap();
}

/// Damaged store files: `plan`, `status` and `apply` stop with exit 74 naming the file and
/// the ways back, write nothing (the file keeps its bytes) and touch no machine; no panic.
fn damaged_files_are_refused(lab: &Lab, good: &Path) {
    let full = std::fs::read(good).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("emptied", Vec::new()),
        ("truncated to 4096 bytes", full[..4096].to_vec()),
        ("truncated to half", full[..full.len() / 2].to_vec()),
        ("garbage", b"not a database at all\n".repeat(100)),
    ];
    let before = snapshot(lab);
    for (what, bytes) in cases {
        std::fs::write(store(lab), &bytes).unwrap();
        for cmd in [
            vec!["plan", "cluster.hcl"],
            vec!["status", "cluster.hcl"],
            vec!["state", "export", "cluster.hcl"],
        ] {
            let out = lab.roundhouse(&cmd);
            assert_eq!(code(&out), Some(74), "{what}: {cmd:?}: {}", text(&out));
            let err = stderr(&out);
            assert!(err.contains("state.redb cannot be read"), "{what}: {err}");
            assert!(err.contains("state recover"), "{what}: {err}");
            assert!(err.contains("state.redb.1"), "{what}: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
        }
        let out = lab.apply(&[]);
        assert_eq!(code(&out), Some(74), "{what}: apply: {}", text(&out));
        assert_eq!(
            std::fs::read(store(lab)).unwrap(),
            bytes,
            "{what}: store rewritten"
        );
        assert_untouched(lab, &before, what);
    }
    restore(lab, good);
}

/// Deleted and swapped stores: every installed node is `state-lost` with its evidence, plan
/// and apply exit 3, apply creates no store and touches nothing.
fn lost_records_are_state_lost(lab: &Lab, good: &Path, foreign: &Path) {
    let before = snapshot(lab);
    for (what, setup) in [("deleted", None), ("another cluster's", Some(foreign))] {
        let _ = std::fs::remove_file(store(lab));
        if let Some(f) = setup {
            std::fs::copy(f, store(lab)).unwrap();
        }
        let out = lab.roundhouse(&["plan", "cluster.hcl", "--output", "json"]);
        assert_eq!(code(&out), Some(3), "{what}: plan: {}", text(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["summary"]["provision"], 0, "{what}: {plan}");
        assert_eq!(plan["summary"]["state-lost"], 3, "{what}: {plan}");
        for (n, _) in NODES {
            assert_eq!(action_of(&plan, n), "state-lost", "{what}: {plan}");
            let item = plan["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == *n)
                .unwrap();
            let kinds: Vec<&str> = item["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap())
                .collect();
            // All three sources see the installation.
            assert_eq!(
                kinds,
                ["gating", "final-config-fetch", "ssh-managed-host-key"],
                "{what}: {n}: {item}"
            );
        }
        assert!(stderr(&out).contains("state recover"), "{}", text(&out));

        let out = lab.apply(&[]);
        assert_eq!(code(&out), Some(3), "{what}: apply: {}", text(&out));
        assert!(stderr(&out).contains("Nothing was done"), "{}", text(&out));
        match setup {
            None => assert!(!store(lab).exists(), "{what}: apply created a store"),
            Some(f) => assert_eq!(
                std::fs::read(store(lab)).unwrap(),
                std::fs::read(f).unwrap(),
                "{what}: apply wrote to the store"
            ),
        }
        // `plan --detailed-exitcode` must not say "no changes" either.
        let out = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
        assert_eq!(code(&out), Some(3), "{what}");
        assert_untouched(lab, &before, what);
    }
    let _ = std::fs::remove_file(store(lab));
    restore(lab, good);
}

#[test]
fn lost_damaged_and_swapped_state_never_becomes_a_wipe_and_comes_back() {
    let lab = Lab::new(NODES);
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    // A second apply (nothing to do) keeps the previous generation.
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    assert!(lab.root().join("assets/state.redb.1").exists());
    let good = lab.root().join("good.redb");
    std::fs::copy(store(&lab), &good).unwrap();

    // plan and status on a healthy store leave its bytes alone (read-only opens).
    let bytes = std::fs::read(store(&lab)).unwrap();
    for cmd in [["plan", "cluster.hcl"], ["status", "cluster.hcl"]] {
        let out = lab.roundhouse(&cmd);
        assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    }
    assert_eq!(
        std::fs::read(store(&lab)).unwrap(),
        bytes,
        "a reader wrote the store"
    );

    // Every node says over SSH which config it runs, and it is what the store records.
    let out = lab.roundhouse(&["status", "cluster.hcl", "--probe", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let probed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for n in probed["nodes"].as_array().unwrap() {
        assert_eq!(n["running"]["matches_applied"], true, "{n}");
        assert_eq!(n["running"]["digest"], n["applied_digest"], "{n}");
    }

    // A backup, taken while all is well.
    let backup = lab.root().join("backup.json");
    let out = lab.roundhouse(&["state", "export", "cluster.hcl", "--out", "backup.json"]);
    assert!(out.status.success(), "{}", text(&out));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "export mode {mode:o}");
    }

    // Another cluster's store: the same history under other MACs.
    let text_backup = std::fs::read_to_string(&backup).unwrap();
    let swapped = text_backup.replace("52:54:00:5e:00:", "52:54:00:aa:00:");
    assert_ne!(swapped, text_backup);
    std::fs::write(lab.root().join("foreign.json"), swapped).unwrap();
    std::fs::rename(store(&lab), lab.root().join("aside.redb")).unwrap();
    let out = lab.roundhouse(&["state", "import", "cluster.hcl", "foreign.json"]);
    assert!(out.status.success(), "{}", text(&out));
    let foreign = lab.root().join("foreign.redb");
    std::fs::rename(store(&lab), &foreign).unwrap();
    restore(&lab, &good);

    damaged_files_are_refused(&lab, &good);
    lost_records_are_state_lost(&lab, &good, &foreign);

    // The way back without a backup: recover asks every node over SSH what it runs.
    let before = snapshot(&lab);
    std::fs::remove_file(store(&lab)).unwrap();
    let out = lab.roundhouse(&["state", "recover", "cluster.hcl"]);
    assert_eq!(
        code(&out),
        Some(64),
        "recover without --yes and no terminal: {}",
        text(&out)
    );
    assert!(!store(&lab).exists());
    let out = lab.roundhouse(&["state", "recover", "cluster.hcl", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let says = String::from_utf8_lossy(&out.stdout).into_owned();
    for (n, _) in NODES {
        assert!(
            says.lines()
                .any(|l| l.starts_with(n) && l.contains("installed, runs config")),
            "{says}"
        );
    }
    let plan = lab.plan_json();
    for (n, _) in NODES {
        // Hooks do not survive a lost store (their runs were in it): run-hooks at most.
        let a = action_of(&plan, n);
        assert!(a == "none" || a == "run-hooks", "{n}: {a}: {plan}");
    }
    assert_eq!(plan["summary"]["provision"], 0);
    assert_eq!(plan["summary"]["reprovision-in-place"], 0);
    let status = lab.status();
    for (n, _) in NODES {
        assert_eq!(
            status[*n]["applied_digest"], status[*n]["desired_digest"],
            "{n}"
        );
    }
    // A second recover has nothing to do.
    let out = lab.roundhouse(&["state", "recover", "cluster.hcl", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains("nothing to recover"),
        "{}",
        text(&out)
    );
    assert_untouched(&lab, &before, "recover");

    // The way back with a backup: import into an empty place; refused over records.
    let out = lab.roundhouse(&["state", "import", "cluster.hcl", "backup.json"]);
    assert_eq!(code(&out), Some(1), "import over records: {}", text(&out));
    assert!(stderr(&out).contains("not empty"), "{}", text(&out));
    std::fs::remove_file(store(&lab)).unwrap();
    let out = lab.roundhouse(&["state", "import", "cluster.hcl", "backup.json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = lab.plan_json();
    for (n, _) in NODES {
        assert_eq!(action_of(&plan, n), "none", "{n}: {plan}");
    }
    let out = lab.roundhouse(&["plan", "cluster.hcl", "--detailed-exitcode"]);
    assert_eq!(code(&out), Some(0), "{}", text(&out));
    assert_untouched(&lab, &before, "import");

    // A bad export is invalid input, and nothing is written.
    std::fs::write(
        lab.root().join("bad.json"),
        "{\"format\":\"roundhouse-state/v9\"}",
    )
    .unwrap();
    std::fs::rename(store(&lab), lab.root().join("aside2.redb")).unwrap();
    let out = lab.roundhouse(&["state", "import", "cluster.hcl", "bad.json"]);
    assert_eq!(code(&out), Some(65), "{}", text(&out));
    assert!(
        stderr(&out).contains("roundhouse-state/v9"),
        "{}",
        text(&out)
    );
    assert!(!store(&lab).exists(), "a refused import created a store");
    std::fs::rename(lab.root().join("aside2.redb"), store(&lab)).unwrap();

    // And an explicit recreate is still the user's way to reinstall a node on purpose, even
    // without records.
    std::fs::remove_file(store(&lab)).unwrap();
    let out = lab.roundhouse(&["recreate", "cluster.hcl", "w2"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = lab.roundhouse(&["plan", "cluster.hcl", "--output", "json"]);
    assert_eq!(code(&out), Some(3), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(action_of(&plan, "w2"), "provision", "{plan}");
    assert_eq!(action_of(&plan, "w1"), "state-lost", "{plan}");
    lab.assert_ok(&lab.roundhouse(&["recreate", "cluster.hcl", "w2", "--cancel"]));
}
