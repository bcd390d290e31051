//! Issue 12 through the CLI: the state store on PostgreSQL (a real server the test starts,
//! `roundhouse_store_pg::testing::TestServer`) with the simulated lab. Choosing it with
//! `ROUNDHOUSE_STATE_URL`; reading commands never create or migrate the schema; `state
//! migrate` creates it, or copies a lab's embedded store into it after which plan shows `none`
//! everywhere; a database that is down stops apply before anything is done; the apply lock on
//! the database names its holder; a password in the URL is refused at load and never shown;
//! PostgreSQL restarting in the middle of an apply does not stop it.
//!
//! Needs what tests/sim_apply.rs needs (root, curl, openssh-client, util-linux, bash) and
//! Debian's postgresql-15.

// Shared with the other sim tests; this one uses part of it.
#[allow(dead_code)]
mod sim;

use std::process::Output;

use roundhouse_store_pg::PgStore;
use roundhouse_store_pg::testing::TestServer;
use sim::{Lab, text};

const NODES: &[(&str, &str)] = &[("c1", "controller"), ("w1", "worker"), ("w2", "worker")];
const URL_VAR: &str = "ROUNDHOUSE_STATE_URL";

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn actions(lab: &Lab) -> Vec<(String, String)> {
    lab.plan_json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn all_none(lab: &Lab) {
    for (name, action) in actions(lab) {
        assert_eq!(action, "none", "{name}");
    }
    assert_eq!(lab.plan_exit_code(), Some(0));
}

/// A TCP address where no PostgreSQL listens: "the database is down".
fn down_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    format!("postgres://roundhouse@127.0.0.1:{port}/roundhouse?connect_timeout=3")
}

#[test]
fn a_lab_on_postgresql() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    let url = config.to_string();
    let db = config.dbname().to_string();
    let mut lab = Lab::new(NODES);
    let assets = lab.root().join("assets");

    // PostgreSQL down when apply starts: a clear error naming host:port (never the
    // password), exit 74, nothing done: no power action, nothing published, no store file.
    let down = down_url();
    lab.set_env(URL_VAR, Some(&down));
    lab.set_env("PGPASSWORD", Some("pg-secret-xyzzy"));
    let out = lab.apply(&[]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(74), "{}", text(&out));
    let endpoint = down.split('@').nth(1).unwrap().split('/').next().unwrap();
    assert!(
        err.contains(&format!("cannot connect to PostgreSQL at {endpoint}"))
            && err.contains("password from PGPASSWORD")
            && err.contains("Nothing was done"),
        "{err}"
    );
    assert!(!err.contains("pg-secret-xyzzy"), "{err}");
    assert!(lab.power_log().is_empty(), "{:?}", lab.power_log());
    assert!(!assets.join("state.redb").exists());
    assert!(!assets.join("boot-state/netboot.json").exists());
    assert!(
        std::fs::read_dir(assets.join("matchbox"))
            .unwrap()
            .next()
            .is_none(),
        "published while the database was down"
    );
    // Reading commands too: exit 74, not a plan from nothing.
    let out = lab.roundhouse(&["plan", "cluster.hcl"]);
    assert_eq!(code(&out), Some(74), "{}", text(&out));
    lab.set_env("PGPASSWORD", None);

    // A new database: reading commands create nothing and point at `state migrate`.
    lab.set_env(URL_VAR, Some(&url));
    for cmd in [
        &["plan", "cluster.hcl"][..],
        &["status", "cluster.hcl"],
        &["state", "export", "cluster.hcl"],
    ] {
        let out = lab.roundhouse(cmd);
        assert_eq!(code(&out), Some(74), "{cmd:?}: {}", text(&out));
        assert!(
            stderr(&out).contains("roundhouse state migrate"),
            "{cmd:?}: {}",
            text(&out)
        );
    }
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'roundhouse'"
        ),
        "0\n",
        "a reading command created the schema"
    );
    let out = lab.roundhouse(&["state", "migrate", "cluster.hcl"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("schema created"), "{}", text(&out));
    let out = lab.roundhouse(&["state", "migrate", "cluster.hcl"]);
    assert!(stderr(&out).contains("up to date"), "{}", text(&out));

    // Provision the fleet with its state in PostgreSQL.
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    assert_eq!(lab.power_log().len(), NODES.len());
    assert!(
        !assets.join("state.redb").exists() && !assets.join("state.redb.1").exists(),
        "an embedded store was created"
    );
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM roundhouse.nodes"),
        format!("{}\n", NODES.len())
    );
    let status = lab.status();
    for (name, _) in NODES {
        assert_eq!(
            status[*name]["state"], "installed",
            "{name}: {}",
            status[*name]
        );
    }
    lab.assert_status_matches_machines();
    all_none(&lab);
    let out = lab.roundhouse(&["state", "export", "cluster.hcl"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["nodes"].as_array().unwrap().len(), NODES.len());

    // The apply lock lives in the database: while another process holds it, apply and
    // recreate are refused naming the holder, and nothing is done.
    let other = PgStore::open(&config).unwrap();
    let held = other.try_lock("apply (another operator)").unwrap();
    let power = lab.power_log().len();
    for out in [
        lab.apply(&[]),
        lab.roundhouse(&["recreate", "cluster.hcl", "w1"]),
    ] {
        let err = stderr(&out);
        assert_eq!(code(&out), Some(1), "{}", text(&out));
        assert!(
            err.contains("another roundhouse is already writing to postgres://")
                && err.contains(&format!("pid {}", std::process::id()))
                && err.contains("`apply (another operator)`"),
            "{err}"
        );
    }
    assert_eq!(lab.power_log().len(), power);
    all_none(&lab);
    drop(held);
    let out = lab.roundhouse(&["recreate", "cluster.hcl", "w1"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = lab.roundhouse(&["recreate", "cluster.hcl", "w1", "--cancel"]);
    assert!(out.status.success(), "{}", text(&out));
    all_none(&lab);
}

#[test]
fn state_migrate_copies_a_labs_embedded_store() {
    let pg = TestServer::shared();
    let config = pg.create_database();
    let url = config.to_string();
    let mut lab = Lab::new(NODES);
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    all_none(&lab);
    let before = actions(&lab);
    let power = lab.power_log().len();

    // A password on the command line or in ROUNDHOUSE_STATE_URL is refused, never echoed.
    let with_pw = url.replacen("postgres@", "postgres:hunter2@", 1);
    let out = lab.roundhouse(&["state", "migrate", "cluster.hcl", "--to", &with_pw]);
    assert_eq!(code(&out), Some(64), "{}", text(&out));
    assert!(!text(&out).contains("hunter2"), "{}", text(&out));
    lab.set_env(URL_VAR, Some(&with_pw));
    let out = lab.roundhouse(&["plan", "cluster.hcl"]);
    assert_eq!(code(&out), Some(65), "{}", text(&out));
    assert!(
        stderr(&out).contains("holds a password") && !text(&out).contains("hunter2"),
        "{}",
        text(&out)
    );
    lab.set_env(URL_VAR, None);

    let out = lab.roundhouse(&["state", "migrate", "cluster.hcl", "--to", &url]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("copied {} records", NODES.len()))
            && stderr(&out).contains("verified"),
        "{}",
        text(&out)
    );
    // Only into an empty database.
    let out = lab.roundhouse(&["state", "migrate", "cluster.hcl", "--to", &url]);
    assert_eq!(code(&out), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("not empty"), "{}", text(&out));

    // Pointed at the database, plan shows what it showed before: nothing to do. The
    // embedded store is left as it was (a backup), and nothing reads it any more.
    std::fs::rename(
        lab.root().join("assets/state.redb"),
        lab.root().join("assets/state.redb.migrated"),
    )
    .unwrap();
    lab.set_env(URL_VAR, Some(&url));
    assert_eq!(actions(&lab), before);
    all_none(&lab);
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    assert_eq!(lab.power_log().len(), power, "a machine was touched");
    assert!(!lab.root().join("assets/state.redb").exists());
    lab.assert_status_matches_machines();
}

/// PostgreSQL restarts (`pg_ctl restart -m fast`, down for a second) in the middle of a
/// fleet-wide apply: the store waits, reconnects, takes the apply lock again, and apply
/// finishes, exit 0, with nothing left to do.
#[test]
fn postgresql_restarting_during_apply() {
    // A server of its own: restarting the shared one would cut off the other tests.
    let pg = TestServer::start();
    let config = pg.create_database();
    let db = config.dbname().to_string();
    let mut lab = Lab::new(NODES);
    lab.set_env(URL_VAR, Some(&config.to_string()));
    let out = lab.apply(&[]);
    lab.assert_ok(&out);
    all_none(&lab);

    let names: Vec<&str> = NODES.iter().map(|(n, _)| *n).collect();
    lab.change_snippet(&names, 2);
    let events = || -> u64 {
        pg.psql(&db, "SELECT count(*) FROM roundhouse.events")
            .trim()
            .parse()
            .unwrap()
    };
    let before = events();
    let args = Lab::apply_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = lab
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Restart once apply has begun writing (its first intents are recorded).
    let start = std::time::Instant::now();
    while events() == before {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "apply never wrote"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cut = events();
    pg.restart(std::time::Duration::from_secs(1));
    eprintln!(
        "restarted after {:?} ({} events of this apply)",
        start.elapsed(),
        cut - before
    );
    let out = child.wait_with_output().unwrap();
    eprintln!("apply ended after {:?}", start.elapsed());
    lab.assert_ok(&out);
    // It wrote after the restart, through new connections.
    assert!(events() > cut, "apply had finished before the restart");
    // Workers converged; the controller's change is held by policy, as without a restart.
    for (name, action) in actions(&lab) {
        let want = if name == "c1" { "hold" } else { "none" };
        assert_eq!(action, want, "{name}: {}", text(&out));
    }
    lab.assert_status_matches_machines();
    // Each node reprovisioned once: one power action for the first install only (in-place
    // changes) or one more each, never two for one change.
    for (name, _) in NODES {
        assert!(
            lab.power_actions(name) <= 2,
            "{name}: {:?}",
            lab.power_log()
        );
    }
}
