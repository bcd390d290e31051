//! Fail-safe state through the real binaries: `roundhouse render --out` into a directory a
//! running `roundhouse serve` serves (with its state in the default `<data>/roundhouse/`), and
//! the modes of what render and serve create under a umask of 000.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_roundhouse");

/// Runs the binary under `umask <umask>` (through sh, so the umask is the process's own).
fn run(umask: &str, args: &[&str]) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running roundhouse")
}

/// A private copy of the fixture keys (private halves 0600, as roundhouse requires).
fn fixture_keys(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture-keys");
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        fs::create_dir_all(to.join(&rel)).unwrap();
        for entry in fs::read_dir(from.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(rel);
            } else {
                fs::copy(entry.path(), to.join(&rel)).unwrap();
                let mode = if rel.extension().is_some_and(|e| e == "pub") {
                    0o644
                } else {
                    0o600
                };
                fs::set_permissions(to.join(&rel), fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
}

fn render(umask: &str, out: &Path, keys: &Path) -> Output {
    run(
        umask,
        &[
            "render",
            "examples/mercury/cluster.hcl",
            "--out",
            out.to_str().unwrap(),
            "--keys-dir",
            keys.to_str().unwrap(),
        ],
    )
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `roundhouse serve` as a child process; killed when dropped.
struct Serve {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(umask: &str, args: &[&str]) -> Serve {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(BIN)
            .arg("serve")
            .args(["--address", "127.0.0.1:0", "--reload-interval", "0.1"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting roundhouse serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if let Some(a) = line.strip_prefix("listening on http://") {
                        break a.to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("serve did not start:\n{seen}");
                }
            }
        };
        let log = Arc::new(Mutex::new(seen));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Serve { child, addr, log }
    }

    /// GET `target`: (status, body).
    fn get(&self, target: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        let status = buf[9..12].parse().unwrap();
        let body = buf
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn first_mac(out: &Path) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("render-manifest.json")).unwrap()).unwrap();
    manifest["nodes"][0]["mac"].as_str().unwrap().to_string()
}

/// The observed bug: render swapped the whole directory in, `netboot.json` with it, and the
/// server handed the installer to installed machines. Now the state directory is carried over,
/// the installed machine keeps booting from disk, and the journal keeps its history.
#[test]
fn rendering_into_a_served_data_directory_keeps_its_gating() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, keys) = (tmp.path().join("data"), tmp.path().join("keys"));
    fixture_keys(&keys);
    let first = render("022", &out, &keys);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mac = first_mac(&out);
    let state = out.join("roundhouse");
    fs::create_dir(&state).unwrap();
    let netboot = format!(
        "{{\"format\":\"roundhouse-netboot/v1\",\"nodes\":{{\"{mac}\":{{\"netboot\":\"installed\"}}}}}}\n"
    );
    fs::write(state.join("netboot.json"), &netboot).unwrap();

    let serve = Serve::start("022", &["--data-path", out.to_str().unwrap()]);
    let ipxe = format!("/ipxe?mac={mac}");
    let (status, body) = serve.get(&ipxe);
    assert_eq!(status, 200);
    assert!(body.contains("sanboot"), "{body}");
    let journal = state.join("fetch-journal.jsonl");
    wait_for("the journal", || journal.exists());

    let old_inode = fs::metadata(&out).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let again = render("022", &out, &keys);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_ne!(
        fs::metadata(&out)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap(),
        old_inode.unwrap(),
        "the directory was swapped"
    );
    assert_eq!(
        fs::read_to_string(state.join("netboot.json")).unwrap(),
        netboot
    );
    assert!(
        fs::read_to_string(&journal)
            .unwrap()
            .contains("\"local_boot\":true")
    );

    // The server reloads the new directory and is healthy with its gating.
    let loads = || {
        serve
            .get("/metrics")
            .1
            .lines()
            .find_map(|l| {
                l.strip_prefix("roundhouse_boot_index_loads_total ")
                    .map(str::to_string)
            })
            .unwrap()
    };
    wait_for("the reload", || loads() != "1");
    wait_for("a healthy server", || {
        serve.get("/healthz") == (200, "ok\n".into())
    });
    let (status, body) = serve.get(&ipxe);
    assert_eq!(status, 200);
    assert!(body.contains("sanboot"), "{body}\n{}", serve.log());
}

/// A boot-server state directory elsewhere inside the output (here `boot-state/`) would be
/// deleted by the swap: render refuses, naming it, and writes nothing.
#[test]
fn rendering_over_foreign_state_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, keys) = (tmp.path().join("data"), tmp.path().join("keys"));
    fixture_keys(&keys);
    assert!(render("022", &out, &keys).status.success());
    fs::create_dir(out.join("boot-state")).unwrap();
    fs::write(out.join("boot-state/netboot.json"), "{}").unwrap();
    let before = fs::metadata(out.join("groups"))
        .unwrap()
        .modified()
        .unwrap();
    let result = render("022", &out, &keys);
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("refusing to replace"), "{stderr}");
    assert!(stderr.contains("boot-state"), "{stderr}");
    assert!(out.join("boot-state/netboot.json").exists());
    assert_eq!(
        fs::metadata(out.join("groups"))
            .unwrap()
            .modified()
            .unwrap(),
        before,
        "nothing rewritten"
    );
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        2,
        "no staging left"
    );
}

/// Secrets at rest: under a umask of 000, rendered configs (they hold host private keys) are
/// 0600 in a 0700 ignition/, generated keys 0600 in 0700 directories, and nothing is writable
/// by others; the boot server's journal (client addresses) is 0640.
#[test]
fn secrets_are_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, keys) = (tmp.path().join("data"), tmp.path().join("keys"));
    let result = render("000", &out, &keys);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );

    assert_eq!(mode(&out.join("ignition")), 0o700);
    let mut configs = 0;
    for entry in fs::read_dir(out.join("ignition")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        configs += 1;
    }
    assert!(configs >= 10, "only {configs} configs");
    for dir in [&out, &out.join("groups"), &out.join("profiles")] {
        assert_eq!(mode(dir), 0o755, "{}", dir.display());
    }
    assert_eq!(mode(&out.join("render-manifest.json")), 0o644);
    assert_eq!(
        mode(
            &out.join("groups")
                .read_dir()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
        ),
        0o644
    );
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("operator_ed25519")), 0o600);
    assert_eq!(mode(&keys.join("operator_ed25519.pub")), 0o644);
    for entry in fs::read_dir(keys.join("hosts")).unwrap() {
        let dir = entry.unwrap().path();
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        assert_eq!(mode(&dir.join("ssh_host_ed25519_key")), 0o600);
    }

    // The boot server serves what render wrote, and its state is not world-accessible.
    let state = tmp.path().join("state");
    let serve = Serve::start(
        "000",
        &[
            "--data-path",
            out.to_str().unwrap(),
            "--state-path",
            state.to_str().unwrap(),
        ],
    );
    let mac = first_mac(&out);
    let (status, body) = serve.get(&format!("/ignition?mac={mac}&os=installed"));
    assert_eq!(status, 200, "{body}\n{}", serve.log());
    assert!(body.contains("ssh_host_ed25519_key"), "the final config");
    let journal = state.join("fetch-journal.jsonl");
    wait_for("the journal", || journal.exists());
    assert_eq!(mode(&state), 0o755);
    assert_eq!(mode(&journal), 0o640);
}
