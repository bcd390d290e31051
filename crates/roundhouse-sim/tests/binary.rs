//! The `roundhouse-sim` binary as `roundhouse lab` runs it: a TOML spec, the ready line, the
//! control API, SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_spec_serves_the_control_api_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    // An empty boot server: every network boot fails with a 404.
    let server = common::StaticServer::start(&www).await;
    let spec = tmp.path().join("fleet.toml");
    std::fs::write(
        &spec,
        format!(
            "boot_url = \"{}/boot.ipxe\"\nstate_dir = \"{}\"\ntime_factor = 0.01\n[generate]\ncount = 2\nname_prefix = \"w\"\n",
            server.url(),
            tmp.path().join("lab").display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse-sim"))
        .arg(&spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("no ready line")
        .unwrap()
        .expect("stdout closed");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    let machines = ready["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 2);
    assert_eq!(machines[0]["name"], "w1");
    assert_eq!(machines[1]["mac"], "52:54:00:00:00:02");
    assert_eq!(machines[0]["power"], "off");
    let fleet_json = std::fs::read_to_string(tmp.path().join("lab/fleet.json")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&fleet_json).unwrap(), ready);

    let control = format!("http://{}", ready["control"].as_str().unwrap());
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{control}/machines/52-54-00-00-00-02/faults"))
        .json(&json!({"ssh_refused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{control}/machines/52:54:00:00:00:01/power/on"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .get(format!("{control}/machines/52:54:00:00:00:99"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = http
            .get(format!("{control}/machines/52:54:00:00:00:01"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if seen["phase"] == "no-boot-device" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen["phase"], "no-boot-device", "{seen:#}");
    assert!(
        seen["last_error"].as_str().unwrap().contains("HTTP 404"),
        "{seen:#}"
    );
    let all: Value = http
        .get(format!("{control}/machines"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all[1]["faults"]["ssh_refused"], true);
    assert_eq!(all[1]["power"], "off");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("did not stop on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_exits_2_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("fleet.json");
    std::fs::write(
        &spec,
        r#"{"boot_url":"http://127.0.0.1:1/boot.ipxe","state_dir":"x","machines":[{"mac":"zz"}]}"#,
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse-sim"))
        .arg(&spec)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid MAC address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outside = tmp.path().join("outside.json");
    std::fs::write(
        &outside,
        format!(
            r#"{{"boot_url":"http://192.0.2.1/boot.ipxe","state_dir":"{}"}}"#,
            tmp.path().join("lab").display()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse-sim"))
        .arg(&outside)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
