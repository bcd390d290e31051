//! The client against a real OpenSSH server (Debian `openssh-server`) on a loopback port, with a
//! test-local configuration, host key and authorized_keys.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roundhouse_ssh::{Reboot, Session, SshError, Target, Timeouts};

const SSHD: &str = "/usr/sbin/sshd";

struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("running ssh-keygen (Debian package openssh-client)");
    assert!(status.success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn start_sshd() -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} missing: install the Debian package openssh-server (scripts/install-test-deps)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = free_port();
    let config = format!(
        "ListenAddress 127.0.0.1:{port}\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile none\n\
         StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nLogLevel ERROR\n",
        hk = d.join("host_key").display(),
        ak = d.join("authorized_keys").display(),
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(d.join("sshd_config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    Sshd { child, port, dir }
}

impl Sshd {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn target(&self) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: self.port,
            user: current_user(),
        }
    }
    fn client_key(&self) -> Arc<roundhouse_ssh::PrivateKey> {
        let text = std::fs::read_to_string(self.path("client_key")).unwrap();
        Arc::new(roundhouse_ssh::parse_private_key(&text).unwrap())
    }
    fn host_key(&self) -> roundhouse_ssh::PublicKey {
        let line = std::fs::read_to_string(self.path("host_key.pub")).unwrap();
        roundhouse_ssh::parse_public_key(&line).unwrap()
    }
}

#[tokio::test]
async fn runs_commands_with_a_pinned_host_key() {
    let sshd = start_sshd();
    let session = Session::connect(
        &sshd.target(),
        sshd.client_key(),
        vec![sshd.host_key()],
        Timeouts::default(),
    )
    .await
    .unwrap();
    let out = session
        .exec("echo out; echo err >&2; exit 3")
        .await
        .unwrap();
    assert_eq!(out.exit_status, 3);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let ok = session.exec("test -d /").await.unwrap();
    assert!(ok.success());
    session.close().await;
}

/// Input reaches the command's standard input, followed by end of file (a `cat` that never
/// saw EOF would hang until the command timeout).
#[tokio::test]
async fn feeds_standard_input() {
    let sshd = start_sshd();
    let session = Session::connect(
        &sshd.target(),
        sshd.client_key(),
        vec![sshd.host_key()],
        Timeouts::default(),
    )
    .await
    .unwrap();
    let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let out = session
        .exec_with_input("cat | sha256sum", &input)
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    let expected = std::process::Command::new("sh")
        .arg("-c")
        .arg("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&input)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.stdout, expected.stdout);
    let empty = session.exec("cat").await.unwrap();
    assert!(empty.success() && empty.stdout.is_empty(), "{empty:?}");
    session.close().await;
}

#[tokio::test]
async fn refuses_an_unexpected_host_key() {
    let sshd = start_sshd();
    let other = sshd.path("other");
    keygen(&other);
    let wrong =
        roundhouse_ssh::parse_public_key(&std::fs::read_to_string(sshd.path("other.pub")).unwrap())
            .unwrap();
    let err = Session::connect(
        &sshd.target(),
        sshd.client_key(),
        vec![wrong.clone()],
        Timeouts::default(),
    )
    .await
    .err()
    .expect("connection with the wrong pinned key must fail");
    match &err {
        SshError::HostKeyMismatch {
            presented,
            expected,
            ..
        } => {
            assert_eq!(presented, &roundhouse_ssh::fingerprint(&sshd.host_key()));
            assert_eq!(expected, &roundhouse_ssh::fingerprint(&wrong));
        }
        other => panic!("expected a host key mismatch, got {other}"),
    }
    assert!(!err.is_transient());
}

#[tokio::test]
async fn rejected_key_is_reported_as_such() {
    let sshd = start_sshd();
    keygen(&sshd.path("stranger"));
    let stranger = Arc::new(
        roundhouse_ssh::parse_private_key(&std::fs::read_to_string(sshd.path("stranger")).unwrap())
            .unwrap(),
    );
    let err = Session::connect(
        &sshd.target(),
        stranger,
        vec![sshd.host_key()],
        Timeouts::default(),
    )
    .await
    .err()
    .expect("a key not in authorized_keys must be rejected");
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err}");
}

#[tokio::test]
async fn silent_host_times_out_within_the_connect_deadline() {
    // A listener that accepts TCP but never speaks SSH: what a half-booted machine looks like.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let sshd = start_sshd();
    let target = Target {
        host: "127.0.0.1".into(),
        port,
        user: "core".into(),
    };
    let started = Instant::now();
    let err = Session::connect(
        &target,
        sshd.client_key(),
        vec![sshd.host_key()],
        Timeouts {
            connect: Duration::from_millis(500),
            command: Duration::from_secs(5),
        },
    )
    .await
    .err()
    .expect("a silent host must not connect");
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn closed_port_is_a_transient_connect_error() {
    let sshd = start_sshd();
    let target = Target {
        host: "127.0.0.1".into(),
        port: free_port(),
        user: "core".into(),
    };
    let err = Session::connect(
        &target,
        sshd.client_key(),
        vec![sshd.host_key()],
        Timeouts::default(),
    )
    .await
    .err()
    .expect("nothing listens there");
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_command_that_kills_the_connection_counts_as_a_reboot() {
    let sshd = start_sshd();
    let session = Session::connect(
        &sshd.target(),
        sshd.client_key(),
        vec![sshd.host_key()],
        Timeouts::default(),
    )
    .await
    .unwrap();
    // Kill this session's sshd process from inside the session, as a reboot does.
    let outcome = session.exec_reboot("kill -9 $PPID; sleep 5").await.unwrap();
    assert_eq!(outcome, Reboot::ConnectionDropped);
}
