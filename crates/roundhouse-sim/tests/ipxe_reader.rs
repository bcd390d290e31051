//! The iPXE reader against a small HTTP server: chains, settings, labels, `||`, external
//! hosts, failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use roundhouse_sim::Mac;
use roundhouse_sim::ipxe::{self, Outcome, Settings};
use roundhouse_sim::net::Http;

type Seen = Arc<Mutex<Vec<String>>>;

async fn serve(files: HashMap<&'static str, String>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let files = Arc::new(files);
    let app = Router::new()
        .fallback(
            |State((files, seen)): State<(Arc<HashMap<&'static str, String>>, Seen)>,
             OriginalUri(uri): OriginalUri,
             headers: axum::http::HeaderMap| async move {
                let ua = headers
                    .get("user-agent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                assert!(
                    ua.starts_with("iPXE/"),
                    "iPXE's requests carry its User-Agent, got {ua:?}"
                );
                seen.lock().unwrap().push(uri.to_string());
                match files.get(uri.path()) {
                    Some(body) => (StatusCode::OK, body.clone()),
                    None => (StatusCode::NOT_FOUND, String::new()),
                }
            },
        )
        .with_state((files, seen.clone()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn settings() -> Settings {
    let mac = Mac::parse("52:54:00:12:34:56").unwrap();
    Settings::new(mac, &mac.derived_uuid(), "SN", "x86_64", "")
}

#[tokio::test]
async fn chains_labels_settings_and_external_images() {
    let mut files = HashMap::new();
    files.insert(
        "/boot.ipxe",
        "#!ipxe\nchain ipxe?mac=${mac:hexhyp}&arch=${buildarch:uristring}\n".to_string(),
    );
    files.insert(
        "/ipxe",
        "#!ipxe\n# comment\nset base /assets\ngoto install\n:skip\nexit\n:install\nkernel ${base}/missing || goto fallback\nboot\n:fallback\nkernel https://stable.release.flatcar-linux.net/amd64-usr/current/flatcar_production_pxe.vmlinuz initrd=x ignition.config.url=http://h/ignition?uuid=${uuid}&mac=${mac:hexhyp} flatcar.first_boot=yes\ninitrd ${base}/i\nboot\n"
            .to_string(),
    );
    files.insert("/assets/i", "initrd".to_string());
    let (base, seen) = serve(files).await;
    let mut s = settings();
    let (outcome, log) =
        ipxe::netboot(&Http::new(None), &mut s, &format!("{base}/boot.ipxe")).await;
    assert_eq!(
        outcome,
        Outcome::Kernel {
            kernel: "https://stable.release.flatcar-linux.net/amd64-usr/current/flatcar_production_pxe.vmlinuz".into(),
            initrds: vec![format!("{base}/assets/i")],
            cmdline: "initrd=x ignition.config.url=http://h/ignition?uuid=5e1a0000-0000-4000-8000-525400123456&mac=52-54-00-12-34-56 flatcar.first_boot=yes".into(),
        }
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "/boot.ipxe",
            "/ipxe?mac=52-54-00-12-34-56&arch=x86_64",
            "/assets/missing",
            "/assets/i"
        ]
    );
    let external = log
        .iter()
        .find(|r| r.kind == "kernel" && r.url.starts_with("https://"))
        .unwrap();
    assert!(external.result.contains("not contacted"), "{external:?}");
}

#[tokio::test]
async fn failures_and_local_boot() {
    let mut files = HashMap::new();
    files.insert("/a", "#!ipxe\nchain /nowhere\n".to_string());
    files.insert("/b", "not a script\n".to_string());
    files.insert(
        "/c",
        "#!ipxe\nsanboot --no-describe --drive 0x80\n".to_string(),
    );
    files.insert("/d", "#!ipxe\nkernel /nokernel\nboot\n".to_string());
    files.insert("/e", "#!ipxe\nimgfree\n".to_string());
    let (base, _) = serve(files).await;
    let http = Http::new(None);
    let run = |p: &str| {
        let url = format!("{base}{p}");
        let http = http.clone();
        async move { ipxe::netboot(&http, &mut settings(), &url).await.0 }
    };
    assert!(matches!(run("/a").await, Outcome::Failed(e) if e.contains("HTTP 404")));
    assert!(matches!(run("/b").await, Outcome::Failed(e) if e.contains("not an iPXE script")));
    assert_eq!(run("/c").await, Outcome::LocalBoot);
    assert!(matches!(run("/d").await, Outcome::Failed(e) if e.contains("/nokernel: HTTP 404")));
    assert_eq!(
        run("/e").await,
        Outcome::LocalBoot,
        "a script that ends exits to the next boot device"
    );
    assert!(matches!(
        ipxe::netboot(&http, &mut settings(), "http://192.0.2.1/boot.ipxe").await.0,
        Outcome::Failed(e) if e.contains("not contacted")
    ));
}
