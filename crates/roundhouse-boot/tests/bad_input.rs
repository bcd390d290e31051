//! Hostile and malformed requests: each gets a 4xx (or a 404 where matchbox gives one), never
//! a panic, never a byte from outside the data and assets directories. Raw requests go over a
//! real socket so nothing is cleaned up by a client library first.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use roundhouse_boot::ServeConfig;
use tower::ServiceExt;

const SECRET: &str = "TOP-SECRET-OUTSIDE";

/// A server over the selection fixture, with assets, and a secret file next to both.
fn server(tmp: &std::path::Path) -> common::Running {
    common::copy_tree(
        &common::fixtures().join("compat/selection/data"),
        &tmp.join("data"),
    );
    std::fs::create_dir_all(tmp.join("assets/sub")).unwrap();
    std::fs::write(tmp.join("assets/sub/ok.txt"), "ok").unwrap();
    std::fs::write(tmp.join("secret.txt"), SECRET).unwrap();
    std::fs::write(tmp.join("data/secret.txt"), SECRET).unwrap();
    // A profile whose config names try to leave the data directory.
    std::fs::write(
        tmp.join("data/profiles/evil.json"),
        r#"{"id":"evil","ignition_id":"../../secret.txt","generic_id":"/../../secret.txt"}"#,
    )
    .unwrap();
    std::fs::write(
        tmp.join("data/groups/evil.json"),
        r#"{"id":"evil","profile":"evil","selector":{"evil":"1"}}"#,
    )
    .unwrap();
    std::fs::write(
        tmp.join("data/profiles/evil2.json"),
        r#"{"id":"evil2","ignition_id":"../secret.txt","generic_id":"../secret.txt"}"#,
    )
    .unwrap();
    std::fs::write(
        tmp.join("data/groups/evil2.json"),
        r#"{"id":"evil2","profile":"../profiles/evil2","selector":{"evil":"2"}}"#,
    )
    .unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    config.data_path = Some(tmp.join("data"));
    config.assets_path = Some(tmp.join("assets"));
    config.reload_interval = Duration::ZERO;
    common::Running::start(config)
}

fn assert_no_secret(r: &common::Response, what: &str) {
    assert!(
        !r.text().contains(SECRET),
        "{what}: served a file from outside the served directories"
    );
}

#[test]
fn malformed_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let cases: &[(&str, u16)] = &[
        // Invalid UTF-8 once decoded.
        ("/ipxe?mac=%ff", 400),
        ("/ipxe?%c3%28=1", 400),
        ("/ignition?a=%80%80", 400),
        ("/metadata?x=%ed%a0%80", 400), // an encoded UTF-16 surrogate
        // Bad escapes and separators are skipped like Go does: the default group answers.
        ("/ipxe?a=%zz", 200),
        ("/ipxe?%=%&&&;;==", 200),
        ("/ipxe?mac=%", 200),
        ("/ipxe?=&=&=", 200),
        (
            "/ipxe?mac=00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00",
            200,
        ),
        // NUL bytes are just bytes in a label.
        ("/ipxe?uuid=%00", 200),
        ("/fetches?mac=zz", 404),
        ("/roundhouse/v1/fetches?mac=zz", 400),
        ("/roundhouse/v1/fetches?limit=-1", 400),
    ];
    for (target, want) in cases {
        let r = s.get(target);
        assert_eq!(r.status, *want, "{target}: {}", r.text());
    }
    // Long but legal queries are served; past the bound they get 414.
    let long = format!("/ipxe?uuid=a1b2c3d4&pad={}", "x".repeat(7000));
    assert_eq!(s.get(&long).status, 200);
    let too_long = format!("/ipxe?pad={}", "x".repeat(9000));
    assert_eq!(s.get(&too_long).status, 414);
    let many = format!("/ipxe?{}", "a=1&".repeat(2000));
    assert_eq!(s.get(&many).status, 200);
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn huge_and_broken_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    // One enormous header.
    let big = "y".repeat(100 * 1024);
    let r = s.request("GET", "/ipxe", &[("X-Big", &big)]);
    assert_eq!(r.status, 431, "huge header");
    // Too many headers.
    let mut raw = String::from("GET /ipxe HTTP/1.1\r\nHost: t\r\n");
    for i in 0..200 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let r = s.raw(raw.as_bytes(), false);
    assert_eq!(r.status, 431, "too many headers");
    // Raw non-UTF-8 and control bytes in the request line.
    let r = s.raw(b"GET /ipxe?mac=\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n", false);
    assert_eq!(r.status, 400, "raw non-UTF-8 in the target");
    let r = s.raw(b"GET /ip\x00xe HTTP/1.1\r\nHost: t\r\n\r\n", false);
    assert_eq!(r.status, 400, "NUL in the target");
    // Non-UTF-8 in a header value is opaque to us and harmless.
    let r = s.raw(
        b"GET /ipxe HTTP/1.1\r\nHost: t\r\nX-Junk: \xff\xfe\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 200, "non-UTF-8 header value");
    // Garbage instead of HTTP.
    let r = s.raw(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 400, "TLS hello to the HTTP port");
    // Methods matchbox's routes do not need.
    assert_eq!(s.request("POST", "/ipxe", &[]).status, 405);
    assert_eq!(s.request("DELETE", "/ignition", &[]).status, 405);
    // Still serving.
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn path_traversal() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    assert_eq!(s.get("/assets/sub/ok.txt").text(), "ok");
    for target in [
        "/assets/../secret.txt",
        "/assets/../data/secret.txt",
        "/assets/sub/../../secret.txt",
        "/assets/%2e%2e/secret.txt",
        "/assets/%2E%2E/%2E%2E/secret.txt",
        "/assets/..%2fsecret.txt",
        "/assets/sub%2f..%2f..%2fsecret.txt",
        "/assets/..%5csecret.txt",
        "/assets/%00/../secret.txt",
        "/assets//etc/passwd",
        "/assets/%2fetc%2fpasswd",
        "/assets/sub/%ff",
        "/../secret.txt",
        "/assets/.%2e/secret.txt",
    ] {
        let r = s.get(target);
        assert!(
            matches!(r.status, 400 | 404),
            "{target}: status {}",
            r.status
        );
        assert_no_secret(&r, target);
    }
    // Config names that try to leave the data directory.
    for target in [
        "/ignition?evil=1",
        "/generic?evil=1",
        "/ignition?evil=2",
        "/generic?evil=2",
        "/ipxe?evil=2",
    ] {
        let r = s.get(target);
        assert_eq!(r.status, 404, "{target}");
        assert_no_secret(&r, target);
    }
}

/// The in-process router, through `oneshot`: arbitrary query strings (including raw UTF-8)
/// never panic and always get one of the statuses this API documents.
#[test]
fn arbitrary_queries_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_tree(
        &common::fixtures().join("compat/matchbox-fakes/data"),
        tmp.path(),
    );
    let index = roundhouse_boot::index::load(tmp.path()).unwrap();
    let app = roundhouse_boot::app(roundhouse_boot::AppState::new(index));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::default();
    let strategy = (
        proptest::sample::select(vec!["/ipxe", "/grub", "/ignition", "/generic", "/metadata"]),
        "([a-zA-Z0-9=&;%+._~:-]|%[0-9a-fA-F]{2}|uuid=a1b2c3d4|foo=){0,40}",
    );
    runner
        .run(&strategy, |(path, query)| {
            let uri = format!("{path}?{query}");
            let Ok(req) = Request::builder().uri(&uri).body(Body::empty()) else {
                return Ok(()); // not a URI the HTTP layer would ever deliver
            };
            let resp = rt.block_on(app.clone().oneshot(req)).unwrap();
            let status = resp.status().as_u16();
            proptest::prop_assert!(
                matches!(status, 200 | 400 | 404),
                "{uri}: unexpected status {status}"
            );
            let body = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
            proptest::prop_assert!(status != 200 || !body.is_empty());
            Ok(())
        })
        .unwrap();
}
