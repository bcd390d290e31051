//! The router in-process (`tower::ServiceExt::oneshot`, no socket), with the in-memory
//! netboot state and journal the reconciler will replace.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bootdata::Mac;
use http_body_util::BodyExt;
use roundhouse_boot::state::{
    FetchJournal, JournalQuery, MemoryJournal, MemoryNetbootState, Netboot,
};
use roundhouse_boot::{AppState, Snapshot, app};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

async fn get(router: &axum::Router, uri: &str) -> (StatusCode, String) {
    let resp = router
        .clone()
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn gating_and_journal() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_tree(&common::fixtures().join("compat/gating/data"), tmp.path());
    let index = roundhouse_boot::index::load(tmp.path()).unwrap();
    let netboot = Arc::new(MemoryNetbootState::default());
    let journal = Arc::new(MemoryJournal::new(100));
    let state = AppState::builder(Snapshot::new(index))
        .netboot(netboot.clone())
        .journal(journal.clone())
        .build();
    let router = app(state);
    let mac = Mac::parse("52:54:00:00:00:03").unwrap();
    let uri = "/ipxe?mac=52-54-00-00-00-03";

    // Unknown to roundhouse: the installer, as matchbox would answer.
    let (status, installer) = get(&router, uri).await;
    assert_eq!(status, StatusCode::OK);
    assert!(installer.contains("kernel /assets/vmlinuz"), "{installer}");

    // Marked installed: boot from disk, without any reload.
    netboot.set(mac, Some(Netboot::Installed));
    let (_, local) = get(&router, uri).await;
    assert!(local.contains("sanboot"), "{local}");

    // A reinstall requested: the installer again.
    netboot.set(mac, Some(Netboot::InstallPending));
    assert_eq!(get(&router, uri).await.1, installer);

    // The journal has all three, with the digest of what was actually sent.
    let records = journal.recent(&JournalQuery {
        mac: Some(mac.to_string()),
        limit: 0,
    });
    assert_eq!(records.len(), 3);
    let sha = |s: &str| format!("sha256:{}", hex::encode(Sha256::digest(s.as_bytes())));
    assert_eq!(records[0].digest.as_deref(), Some(sha(&installer).as_str()));
    assert_eq!(records[0].group.as_deref(), Some("install-3"));
    assert!(!records[0].local_boot);
    assert_eq!(records[1].digest.as_deref(), Some(sha(&local).as_str()));
    assert!(records[1].local_boot);
    assert_eq!(records[1].group, None);
    assert_eq!(records[2].digest, records[0].digest);

    // The same records over HTTP.
    let (status, body) = get(
        &router,
        "/roundhouse/v1/fetches?mac=52:54:00:00:00:03&limit=2",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let api: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(api.len(), 2);
    assert_eq!(api[0]["local_boot"], true);
    assert_eq!(api[1]["route"], "ipxe");

    // And in the metrics, by digest.
    let (_, metrics) = get(&router, "/metrics").await;
    let line = format!(
        "roundhouse_boot_configs_served_total{{route=\"ipxe\",digest=\"{}\"}} 2",
        sha(&installer)
    );
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
    assert!(metrics.contains("roundhouse_boot_netboot_gating 1"));
}

/// persistent_boot = "network": the installer reboots the machine into the network again.
/// Once it was served a config after being marked install-pending, it boots from disk, so it
/// does not reinstall before the reconciler marks it installed.
#[tokio::test]
async fn a_pending_machine_boots_from_disk_once_its_installer_fetched_a_config() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_tree(&common::fixtures().join("compat/gating/data"), tmp.path());
    let index = roundhouse_boot::index::load(tmp.path()).unwrap();
    let netboot = Arc::new(MemoryNetbootState::default());
    let router = app(AppState::builder(Snapshot::new(index))
        .netboot(netboot.clone())
        .build());
    let pending = |since| Some((Netboot::InstallPending, Some(since)));

    let mac = Mac::parse("52:54:00:00:00:03").unwrap();
    let ipxe = "/ipxe?mac=52-54-00-00-00-03";
    netboot.set_with_since(mac, pending(SystemTime::now()));
    let (_, installer) = get(&router, ipxe).await;
    assert!(installer.contains("kernel /assets/vmlinuz"), "{installer}");
    assert_eq!(
        get(&router, ipxe).await.1,
        installer,
        "no config fetched yet"
    );
    let (status, _) = get(&router, "/ignition?mac=52:54:00:00:00:03&os=installed").await;
    assert_eq!(status, StatusCode::OK);
    let (_, local) = get(&router, ipxe).await;
    assert!(local.contains("sanboot"), "{local}");
    assert!(
        get(&router, "/grub?mac=52:54:00:00:00:03")
            .await
            .1
            .contains("exit")
    );

    // A new install requested (marked pending again, later): the installer again.
    netboot.set_with_since(mac, pending(SystemTime::now() + Duration::from_millis(1)));
    assert_eq!(get(&router, ipxe).await.1, installer);

    // Without a pending time (netboot.json by an older writer): matchbox semantics, the
    // installer whatever was fetched.
    let other = Mac::parse("52:54:00:00:00:02").unwrap();
    netboot.set(other, Some(Netboot::InstallPending));
    let (status, _) = get(&router, "/ignition?mac=52:54:00:00:00:02&os=installed").await;
    assert_eq!(status, StatusCode::OK);
    let (_, answer) = get(&router, "/ipxe?mac=52:54:00:00:00:02").await;
    assert!(answer.contains("kernel /assets/vmlinuz"), "{answer}");
}

#[tokio::test]
async fn snapshot_swap_is_atomic_for_requests() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_tree(
        &common::fixtures().join("compat/selection/data"),
        tmp.path(),
    );
    let state = AppState::new(roundhouse_boot::index::load(tmp.path()).unwrap());
    let router = app(state.clone());
    assert!(
        get(&router, "/ipxe?uuid=a1b2c3d4")
            .await
            .1
            .contains("/uuid")
    );
    state.swap(Snapshot::new(roundhouse_boot::Index::empty()));
    assert_eq!(
        get(&router, "/ipxe?uuid=a1b2c3d4").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, metrics) = get(&router, "/metrics").await;
    assert!(metrics.contains("roundhouse_boot_index_groups 0"));
}

/// The server answers the hot routes without the router (`AppState::answer_fast`). For every
/// GET of the compatibility suite, and a few requests the suite does not make, both must give
/// the same status, content type and body.
#[tokio::test]
async fn fast_path_answers_as_the_router_does() {
    let compat = common::fixtures().join("compat");
    let mut compared = 0;
    for case in std::fs::read_dir(&compat).unwrap() {
        let case = case.unwrap().path();
        let (Ok(expect), true) = (
            std::fs::read_to_string(case.join("expect.json")),
            case.join("data").is_dir(),
        ) else {
            continue;
        };
        let expect: Vec<serde_json::Value> = serde_json::from_str(&expect).unwrap();
        let mut targets: Vec<String> = expect
            .iter()
            .filter(|e| e.get("method").is_none_or(|m| m == "GET"))
            .filter_map(|e| e["target"].as_str().map(str::to_string))
            .collect();
        targets.extend(
            [
                "/",
                "/boot.ipxe",
                "/healthz",
                "/metadata?mac=52:54:00:89:d8:10&os=installed",
                "/ignition?a=%ff",
                "/grub?uuid=x&mac=bad",
            ]
            .map(String::from),
        );
        targets.push(format!("/ipxe?q={}", "x".repeat(9000)));
        let tmp = tempfile::tempdir().unwrap();
        common::copy_tree(&case.join("data"), tmp.path());
        let index = roundhouse_boot::index::load(tmp.path()).unwrap();
        let state = AppState::new(index);
        let router = app(state.clone());
        for target in targets {
            let uri: axum::http::Uri = target.parse().unwrap();
            let Some(fast) = state.answer_fast(&axum::http::Method::GET, &uri, None) else {
                continue;
            };
            let routed = router
                .clone()
                .oneshot(Request::builder().uri(&uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            // The router sets `content-length` itself; on the wire hyper sets it for both.
            let parts = |r: &axum::response::Response| {
                let mut headers = r.headers().clone();
                headers.remove("content-length");
                (r.status(), headers)
            };
            assert_eq!(parts(&fast), parts(&routed), "{}: {target}", case.display());
            let fast = fast.into_body().collect().await.unwrap().to_bytes();
            let routed = routed.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(fast, routed, "{}: {target}", case.display());
            compared += 1;
        }
    }
    assert!(compared > 50, "only {compared} requests compared");
}
