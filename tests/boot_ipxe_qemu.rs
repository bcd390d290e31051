//! A real iPXE client against `roundhouse serve`: QEMU (TCG, SeaBIOS, the iPXE ROM of Debian's
//! `ipxe-qemu`) network-boots from the boot server through QEMU's user-mode network, chains
//! `/boot.ipxe` → `/ipxe?mac=…` → kernel and initrd from `/assets/`, and the initrd prints a
//! marker on the serial console. Then the machine is marked installed in `netboot.json` (the
//! server reloads it without a restart) and the same VM boot gets the boot-from-disk answer.
//!
//! Needs the Debian packages `qemu-system-x86 ipxe-qemu busybox-static cpio` (installed by
//! `scripts/install-test-deps`) and a kernel (`tests/e2e/kernel.sh` fetches one with
//! `apt-get download`). Kernel and initrd are cached under `<target>/e2e-cache/`.
//! `ROUNDHOUSE_E2E_BOOT_TIMEOUT` (seconds, default 600) bounds each boot; TCG on a busy
//! 2-core machine is slow.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The VM's NIC. iPXE sends it as `mac=52-54-00-12-34-56` (`${mac:hexhyp}`).
const VM_MAC: &str = "52:54:00:12:34:56";
const VM_MAC_HYPHENS: &str = "52-54-00-12-34-56";
/// The iPXE ROM QEMU loads for the NIC (from `ipxe-qemu`); checked so that a missing package
/// is a clear error rather than a VM that never asks for `/boot.ipxe`.
const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";
const MARKER: &str = "ROUNDHOUSE-INITRD-OK";

#[test]
#[ignore = "slow: boots QEMU; scripts/test runs it in the e2e tier"]
fn ipxe_chains_to_the_installer_then_boots_from_disk_once_installed() {
    let qemu = require_tool("qemu-system-x86_64", "qemu-system-x86");
    assert!(
        Path::new(IPXE_ROM).is_file(),
        "{IPXE_ROM} is missing: install the Debian package ipxe-qemu"
    );
    require_tool("sha256sum", "coreutils");

    let cache = e2e_cache_dir();
    let kernel = run_helper("kernel.sh", &cache);
    let initrd = run_helper("initrd.sh", &cache);

    let work = tempfile::tempdir().expect("temporary directory");
    let data = work.path().join("data");
    let assets = work.path().join("assets");
    let state = work.path().join("state");
    for dir in [
        &data.join("profiles"),
        &data.join("groups"),
        &assets,
        &state,
    ] {
        std::fs::create_dir_all(dir).expect("create test directories");
    }
    std::fs::copy(&kernel, assets.join("vmlinuz")).expect("copy the kernel into assets");
    std::fs::copy(&initrd, assets.join("initrd.cpio.gz")).expect("copy the initrd into assets");

    // A per-run value on the kernel command line: the marker can only come from this run's
    // profile, not from a stale serial log or another test's server.
    let nonce = format!(
        "{:x}{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
        std::process::id()
    );
    write_data_dir(&data, &nonce);
    write_netboot(&state, "install-pending");

    let server = Server::start(&data, &assets, &state);
    let base = format!("http://127.0.0.1:{}", server.port);
    let deadline = boot_timeout();

    // Boot 1: the installer. The VM must reach our initrd with the arguments iPXE expanded.
    let log_mark = server.log_len();
    let journal_mark = journal(&server, VM_MAC).len();
    let serial1 = work.path().join("serial-1.log");
    let started = Instant::now();
    let mut vm = Vm::start(&qemu, server.port, &serial1, work.path());
    let expected_line = format!("{MARKER} mac={VM_MAC_HYPHENS} nonce={nonce}");
    wait_until(deadline, || {
        read_lossy(&serial1).contains(&expected_line) || vm.exited()
    });
    let serial_text = read_lossy(&serial1);
    assert!(
        serial_text.contains(&expected_line),
        "boot 1: the initrd marker `{expected_line}` did not appear ({})\n{}",
        if vm.exited() {
            "QEMU exited"
        } else {
            "deadline passed"
        },
        diagnostics(&serial1, &server, &mut vm)
    );
    eprintln!(
        "boot 1: initrd marker after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The initrd powers off; give QEMU a moment, then the guard kills it if it is still there.
    wait_until(Duration::from_secs(30), || vm.exited());
    drop(vm);

    // The server saw the whole chain, in order.
    let requests = server.access_log_since(log_mark);
    let chain = [
        ("/boot.ipxe", None),
        ("/ipxe", Some(VM_MAC)),
        ("/assets/vmlinuz", None),
        ("/assets/initrd.cpio.gz", None),
    ];
    assert_subsequence(&requests, &chain, "boot 1");

    // The fetch journal recorded the VM's /ipxe fetch: the install profile, and the digest of
    // exactly the script that carries this run's nonce.
    let records = journal(&server, VM_MAC);
    let new: Vec<&Value> = records[journal_mark..]
        .iter()
        .filter(|r| r["route"] == "ipxe")
        .collect();
    assert_eq!(new.len(), 1, "boot 1: one /ipxe fetch expected: {new:?}");
    let fetch = new[0];
    assert_eq!(fetch["status"], 200, "boot 1: {fetch}");
    assert_eq!(fetch["group"], "e2e-node", "boot 1: {fetch}");
    assert_eq!(fetch["profile"], "e2e-install", "boot 1: {fetch}");
    assert!(fetch.get("local_boot").is_none(), "boot 1: {fetch}");
    let script = http_get(&base, &format!("/ipxe?mac={VM_MAC_HYPHENS}"));
    assert!(
        script.contains("kernel /assets/vmlinuz") && script.contains(&nonce),
        "the install script: {script}"
    );
    assert_eq!(fetch["digest"], sha256_digest(&script), "boot 1: {fetch}");

    // Mark the machine installed; the server picks the change up without a restart.
    let loads = server.metric("roundhouse_boot_index_loads_total");
    write_netboot(&state, "installed");
    let reloaded = wait_until(Duration::from_secs(60), || {
        server.metric("roundhouse_boot_index_loads_total") > loads
    });
    assert!(
        reloaded,
        "the server did not reload netboot.json within 60 s\n{}",
        server.log_tail()
    );

    // Boot 2: same VM, same MAC. The answer is the local-boot script; the VM has no disk, so
    // iPXE falls through to the BIOS (which gives up; QEMU exits on its reboot).
    let log_mark = server.log_len();
    let journal_mark = journal(&server, VM_MAC).len();
    let serial2 = work.path().join("serial-2.log");
    let started = Instant::now();
    let mut vm = Vm::start(&qemu, server.port, &serial2, work.path());
    let answered = wait_until(deadline, || {
        vm.exited()
            || journal(&server, VM_MAC)[journal_mark..]
                .iter()
                .any(|r| r["route"] == "ipxe")
    });
    assert!(
        answered,
        "boot 2: the VM did not fetch /ipxe within {deadline:?}\n{}",
        diagnostics(&serial2, &server, &mut vm)
    );
    // Whatever the VM does after the answer, it must not reach the installer: watch it until
    // QEMU exits (the BIOS finds nothing to boot) or for 60 s, far longer than the first boot
    // took from its /ipxe fetch to the kernel download.
    let exited = wait_until(Duration::from_secs(60), || vm.exited());
    eprintln!(
        "boot 2: {} after {:.1} s",
        if exited {
            "QEMU exited"
        } else {
            "stopped watching"
        },
        started.elapsed().as_secs_f64()
    );
    let serial_text = read_lossy(&serial2);
    assert!(
        !serial_text.contains(MARKER),
        "boot 2: the installer ran although the machine is installed\n{}",
        diagnostics(&serial2, &server, &mut vm)
    );
    // iPXE echoes the server's answer on the console (SeaBIOS copies it to the serial port).
    let echoed = format!("roundhouse: {VM_MAC} is installed, booting from local disk");
    assert!(
        serial_text.contains(&echoed),
        "boot 2: the VM did not print `{echoed}`\n{}",
        diagnostics(&serial2, &server, &mut vm)
    );
    drop(vm);

    let records = journal(&server, VM_MAC);
    let new: Vec<&Value> = records[journal_mark..]
        .iter()
        .filter(|r| r["route"] == "ipxe")
        .collect();
    assert!(!new.is_empty(), "boot 2: no /ipxe fetch journalled");
    let local = http_get(&base, &format!("/ipxe?mac={VM_MAC_HYPHENS}"));
    assert!(
        local.starts_with("#!ipxe\n") && local.contains("sanboot") && local.contains("exit"),
        "the local-boot script: {local}"
    );
    assert!(
        !local.contains("/assets/"),
        "the local-boot script: {local}"
    );
    for fetch in &new {
        assert_eq!(fetch["status"], 200, "boot 2: {fetch}");
        assert_eq!(fetch["local_boot"], true, "boot 2: {fetch}");
        assert_eq!(fetch["digest"], sha256_digest(&local), "boot 2: {fetch}");
    }
    let requests = server.access_log_since(log_mark);
    assert_subsequence(
        &requests,
        &[("/boot.ipxe", None), ("/ipxe", Some(VM_MAC))],
        "boot 2",
    );
    let assets_fetched: Vec<&Request> = requests
        .iter()
        .filter(|r| r.path.starts_with("/assets/"))
        .collect();
    assert!(
        assets_fetched.is_empty(),
        "boot 2: an installed machine fetched installer assets: {assets_fetched:?}"
    );
}

/// matchbox data: the VM's group and profile, plus a decoy machine whose profile carries a
/// different nonce, so a marker with our nonce proves selection by MAC.
fn write_data_dir(data: &Path, nonce: &str) {
    let profile = |id: &str, nonce: &str| {
        serde_json::json!({
            "id": id,
            "boot": {
                "kernel": "/assets/vmlinuz",
                "initrd": ["/assets/initrd.cpio.gz"],
                // `initrd=` is what UEFI iPXE needs; harmless under BIOS. iPXE expands ${mac}.
                "args": [
                    "initrd=initrd.cpio.gz",
                    "console=ttyS0",
                    "quiet",
                    "panic=-1",
                    "roundhouse.mac=${mac:hexhyp}",
                    format!("roundhouse.nonce={nonce}"),
                ],
            },
        })
    };
    let group = |id: &str, profile: &str, mac: &str| serde_json::json!({"id": id, "profile": profile, "selector": {"mac": mac}});
    let files = [
        ("profiles/e2e-install.json", profile("e2e-install", nonce)),
        ("profiles/decoy.json", profile("decoy", "decoy")),
        (
            "groups/e2e-node.json",
            group("e2e-node", "e2e-install", VM_MAC),
        ),
        (
            "groups/decoy.json",
            group("decoy", "decoy", "52:54:00:65:43:21"),
        ),
    ];
    for (name, body) in files {
        std::fs::write(data.join(name), body.to_string()).expect("write the data directory");
    }
}

/// Writes `netboot.json` atomically (temporary file + rename), as the reconciler does.
fn write_netboot(state: &Path, netboot: &str) {
    let body = serde_json::json!({
        "format": "roundhouse-netboot/v1",
        "nodes": {VM_MAC: {"netboot": netboot, "name": "e2e-node"}},
    });
    let tmp = state.join(".netboot.json.tmp");
    std::fs::write(&tmp, body.to_string()).expect("write netboot.json");
    std::fs::rename(&tmp, state.join("netboot.json")).expect("rename netboot.json");
}

fn boot_timeout() -> Duration {
    let secs = match std::env::var("ROUNDHOUSE_E2E_BOOT_TIMEOUT") {
        Ok(v) => v
            .parse()
            .expect("ROUNDHOUSE_E2E_BOOT_TIMEOUT must be a number of seconds"),
        Err(_) => 600,
    };
    Duration::from_secs(secs)
}

fn require_tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: install the Debian package {package}"))
}

/// `<target dir>/e2e-cache`: the binary under test lives in `<target dir>/<profile>/`.
fn e2e_cache_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_roundhouse"));
    bin.parent()
        .and_then(Path::parent)
        .map(|target| target.join("e2e-cache"))
        .expect("the test binary lives in a target directory")
}

/// Runs `tests/e2e/<script> CACHE` and returns the path it prints.
fn run_helper(script: &str, cache: &Path) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e")
        .join(script);
    let out = Command::new("bash")
        .arg(&path)
        .arg(cache)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} failed ({}); see its message above",
        path.display(),
        out.status
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let file = PathBuf::from(&printed);
    assert!(file.is_file(), "{script} printed `{printed}`, not a file");
    file
}

/// Polls `done` every 200 ms until it holds or `limit` has passed; tells which.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    // Firmware consoles end lines with "\r\n" and redraw with a bare "\r".
    let text = text.replace('\r', "\n");
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn diagnostics(serial: &Path, server: &Server, vm: &mut Vm) -> String {
    format!(
        "--- serial console (tail) ---\n{}\n--- qemu ---\n{}\n--- server log (tail) ---\n{}",
        tail(&read_lossy(serial), 40),
        vm.stderr_text(),
        server.log_tail()
    )
}

fn sha256_digest(body: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(body.as_bytes())
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum output");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().unwrap_or_default();
    format!("sha256:{hex}")
}

/// A plain HTTP/1.1 GET; the body of a 200, or a panic naming the status.
fn http_get(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect to the boot server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("socket timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: malformed response {text:?}"));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path}: {}",
        head.lines().next().unwrap_or_default()
    );
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "GET {path}: chunked answers are not expected for these small bodies"
    );
    body.to_string()
}

/// The fetch journal's records for one MAC, oldest first.
fn journal(server: &Server, mac: &str) -> Vec<Value> {
    let base = format!("http://127.0.0.1:{}", server.port);
    let body = http_get(&base, &format!("/roundhouse/v1/fetches?mac={mac}"));
    match serde_json::from_str(&body) {
        Ok(Value::Array(records)) => records,
        other => panic!("the fetch journal is not a JSON array: {other:?}"),
    }
}

/// One access-log line of the server.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    status: u64,
    mac: Option<String>,
}

/// Asserts `want` (path, MAC label) appears in order in `got`, each answered 200.
fn assert_subsequence(got: &[Request], want: &[(&str, Option<&str>)], what: &str) {
    let mut rest = got.iter();
    for (path, mac) in want {
        let hit = rest.find(|r| r.path == *path && mac.is_none_or(|m| r.mac.as_deref() == Some(m)));
        match hit {
            Some(r) => assert_eq!(r.status, 200, "{what}: {r:?}"),
            None => panic!(
                "{what}: expected {path} (mac {mac:?}) in this order: {want:?}\nthe server saw: {got:#?}"
            ),
        }
    }
}

/// `roundhouse serve` on a free loopback port, JSON logs collected; killed on drop.
struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(data: &Path, assets: &Path, state: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_roundhouse"))
            .arg("serve")
            .args(["--address", "127.0.0.1:0", "--log-format", "json"])
            .args(["--reload-interval", "0.2"])
            .arg("--data-path")
            .arg(data)
            .arg("--assets-path")
            .arg(assets)
            .arg("--state-path")
            .arg(state)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start roundhouse serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on http://")
                    && let Some(port) = rest.rsplit(':').next().and_then(|p| p.parse().ok())
                {
                    let _ = port_tx.send(port);
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let port: u16 = match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "roundhouse serve did not print `listening on` within 30 s:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
                );
            }
        };
        Server { child, port, log }
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log[log.len().saturating_sub(40)..].join("\n")
    }

    /// Access-log lines written since `mark` (a `log_len`), in order.
    fn access_log_since(&self, mark: usize) -> Vec<Request> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log[mark.min(log.len())..]
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["target"] == "roundhouse_boot::access")
            .map(|v| {
                let f = &v["fields"];
                Request {
                    path: f["path"].as_str().unwrap_or_default().to_string(),
                    status: f["status"].as_u64().unwrap_or_default(),
                    mac: f["mac"].as_str().map(str::to_string),
                }
            })
            .collect()
    }

    /// The value of an unlabelled metric (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        let base = format!("http://127.0.0.1:{}", self.port);
        http_get(&base, "/metrics")
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A QEMU VM that network-boots; killed on drop, whatever way the test ends.
struct Vm {
    child: Child,
    stderr_path: PathBuf,
}

impl Vm {
    fn start(qemu: &Path, port: u16, serial: &Path, dir: &Path) -> Vm {
        let stderr_path = serial.with_extension("qemu.log");
        let stderr = std::fs::File::create(&stderr_path).expect("create the QEMU log");
        let child = Command::new(qemu)
            .args(["-accel", "tcg", "-m", "256", "-smp", "1"])
            // -nographic makes SeaBIOS copy BIOS text output (iPXE's too) to the serial
            // port; with `-display none -vga none` the console stays silent until Linux.
            .args(["-nographic", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            // Network first; when nothing boots, reboot at once, and -no-reboot turns that
            // reboot (or the initrd's power-off) into QEMU exiting.
            .args(["-boot", "order=n,reboot-timeout=0", "-no-reboot"])
            .arg("-netdev")
            .arg(format!(
                "user,id=n0,bootfile=http://10.0.2.2:{port}/boot.ipxe"
            ))
            // QEMU's default ROM for this NIC is ipxe-qemu's efi-virtio.rom; naming it with
            // romfile= stopped SeaBIOS from offering it as a boot device here.
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={VM_MAC}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start qemu-system-x86_64");
        Vm { child, stderr_path }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn stderr_text(&mut self) -> String {
        tail(&read_lossy(&self.stderr_path), 20)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
