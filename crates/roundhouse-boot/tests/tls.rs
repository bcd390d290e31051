//! HTTPS with `--tls-cert/--tls-key`: a rustls client that trusts only the test certificate
//! gets the same answers as over HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use roundhouse_boot::ServeConfig;

#[test]
fn serves_https() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::copy_tree(
        &common::fixtures().join("compat/matchbox-fakes/data"),
        &data,
    );
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(tmp.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(tmp.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();

    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    config.data_path = Some(data);
    config.reload_interval = Duration::ZERO;
    config.tls = Some((tmp.path().join("cert.pem"), tmp.path().join("key.pem")));
    let s = common::Running::start(config);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(s.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        b"GET /ipxe?uuid=a1b2c3d4 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    // A peer that closes without close_notify is reported as an error after the data.
    let _ = tls.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.ends_with(
            "kernel /image/kernel a=b c\ninitrd /image/initrd_a\ninitrd /image/initrd_b\nboot\n"
        ),
        "{text}"
    );

    // Plain HTTP to the TLS port is refused, not served.
    let r = s.raw_bytes(b"GET /ipxe?uuid=a1b2c3d4 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(!String::from_utf8_lossy(&r).contains("kernel"), "{r:?}");
    assert_eq!(
        r.first(),
        Some(&0x15),
        "expected a TLS alert record, got {r:?}"
    );
}

#[test]
fn bad_certificate_is_a_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(tmp.path().join("key.pem"), "not a key").unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    config.tls = Some((tmp.path().join("cert.pem"), tmp.path().join("key.pem")));
    let err = roundhouse_boot::Server::bind(config).unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}
