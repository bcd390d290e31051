//! Times planning a large cluster from a real state file: `cargo run --release -p
//! roundhouse-store --example plan_scale -- [NODES]` (default 10,000). Prints the time to
//! load N records in one batch, to read them back as the planner's input, to plan, and to
//! render the table and JSON. For docs/benchmarks.md.

use std::time::Instant;

use bootdata::Mac;
use roundhouse_config::model::{ChangePolicy, Policy, Role};
use roundhouse_plan::{
    AppliedDigest, Desired, DesiredNode, Installed, ProvisionPath, plan, render_table, summary_line,
};
use roundhouse_store::{Change, OpenMode, StateDir, StateStore};

fn main() {
    let n: u32 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 10_000,
        Some(Ok(n)) if n > 0 && n < 1 << 24 => n,
        Some(_) => {
            eprintln!("usage: plan_scale [NODES between 1 and 16777215]");
            std::process::exit(2);
        }
    };
    let mac = |i: u32| {
        Mac::parse(&format!(
            "52:54:00:{:02x}:{:02x}:{:02x}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        ))
        .expect("generated MACs are valid")
    };
    let digest = |i: u32| format!("sha256:{i:064x}");
    let now = roundhouse_store::now();
    // Five controllers (changed, so held), the rest workers; desired digests cycle through 7
    // values and applied ones through 5, so the plan mixes none, hold and
    // reprovision-in-place rows.
    let desired = Desired {
        policy: Policy {
            controllers: ChangePolicy::Hold,
            workers: ChangePolicy::Reprovision,
        },
        nodes: (0..n)
            .map(|i| DesiredNode {
                name: format!("node-{i:07}"),
                hooks: vec![],
                snippet_overrides: vec![],
                mac: mac(i),
                domain: format!("node-{i}.lab"),
                role: if i < 5 {
                    Role::Controller
                } else {
                    Role::Worker
                },
                digest: digest(i % 7),
            })
            .collect(),
    };
    let tmp = std::env::temp_dir().join(format!("roundhouse-plan-scale-{}", std::process::id()));
    let store = StateDir::new(&tmp)
        .open_store(OpenMode::Held)
        .expect("opening the state store");

    let t = Instant::now();
    let batch = (0..n)
        .map(|i| {
            let installed = Installed {
                digest: AppliedDigest::Known(if i < 5 { digest(1000) } else { digest(i % 5) }),
                path: ProvisionPath::Pxe,
                domain: format!("node-{i}.lab"),
                kernel_args: Some(vec![]),
                at: now,
            };
            (mac(i), Change::Adopt(installed))
        })
        .collect();
    store.apply_batch(batch, now).expect("loading records");
    println!("load {n} records (one transaction): {:?}", t.elapsed());

    let t = Instant::now();
    let observed = store.observed().expect("reading records");
    println!(
        "read {} records as planner input: {:?}",
        observed.nodes.len(),
        t.elapsed()
    );

    let t = Instant::now();
    let p = plan(&desired, &observed, now).expect("planning");
    println!("plan {n} nodes: {:?}", t.elapsed());
    println!("{}", summary_line(&p));

    let t = Instant::now();
    let table = render_table(&p);
    let json = serde_json::to_string(&p).expect("plans serialise");
    println!(
        "render table ({} bytes) and JSON ({} bytes): {:?}",
        table.len(),
        json.len(),
        t.elapsed()
    );

    drop(store);
    let _ = std::fs::remove_dir_all(&tmp);
}
