//! The simulated sshd against OpenSSH's `ssh` client (Debian package openssh-client): key
//! authentication for `core`, a pinned host key, exit status, stdin, and a reboot that drops
//! the connection.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use roundhouse_sim::os::seed_root;
use roundhouse_sim::sandbox::{Layout, Sandbox};
use roundhouse_sim::shims;
use roundhouse_sim::ssh::{self, OsContext, OsEvent};
use roundhouse_sim::tree::Tree;
use tokio::io::AsyncWriteExt;

fn keygen(path: &Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen is missing: install the Debian package openssh-client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::read_to_string(path.with_extension("pub")).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    root: std::path::PathBuf,
    oem: std::path::PathBuf,
    events: tokio::sync::mpsc::UnboundedReceiver<OsEvent>,
    server: Option<ssh::SshServer>,
    port: u16,
}

async fn fixture() -> Fixture {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let root = dir.join("root");
    let oem = dir.join("oem");
    fs::create_dir_all(&oem).unwrap();
    seed_root(&root).unwrap();
    let user_pub = keygen(&dir.join("user_key"));
    fs::create_dir_all(root.join("home/core/.ssh/authorized_keys.d")).unwrap();
    fs::write(
        root.join("home/core/.ssh/authorized_keys.d/ignition"),
        user_pub,
    )
    .unwrap();
    // The host key an Ignition config pinned.
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    let host_pub = keygen(&root.join("etc/ssh/ssh_host_ed25519_key"));
    fs::write(root.join("etc/hostname"), "node1\n").unwrap();
    let shim_dir = dir.join("shims");
    shims::install(&shim_dir).unwrap();
    let run = dir.join("run");
    fs::create_dir_all(run.join("sim")).unwrap();
    fs::create_dir_all(dir.join("disks")).unwrap();
    fs::create_dir_all(dir.join("mnt")).unwrap();
    let tree = Tree::new(&root).mount("/usr/share/oem", &oem);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Arc::new(OsContext {
        tree: tree.clone(),
        layout: Layout {
            tree: tree.clone(),
            run_dir: run,
            shims: shim_dir,
            disks: dir.join("disks"),
            mnt: dir.join("mnt"),
            ns: None,
        },
        sandbox: Sandbox::detect().await.expect("sandbox"),
        events: tx,
    });
    let key = ssh::host_key(&tree).unwrap();
    let server = ssh::serve(0, ctx, key).await.unwrap();
    let port = server.addr.port();
    let mut kh = host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    kh = format!("[127.0.0.1]:{port} {kh}\n");
    fs::write(dir.join("known_hosts"), kh).unwrap();
    Fixture {
        _dir: d,
        dir,
        root,
        oem,
        events: rx,
        server: Some(server),
        port,
    }
}

fn ssh_cmd(f: &Fixture, key: &str, cmd: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("ssh");
    c.arg("-p")
        .arg(f.port.to_string())
        .arg("-i")
        .arg(f.dir.join(key))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            f.dir.join("known_hosts").display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            "core@127.0.0.1",
            cmd,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_runs_commands_with_exit_status_and_stdin() {
    let f = fixture().await;
    let out = ssh_cmd(
        &f,
        "user_key",
        "echo out; echo err >&2; cat /etc/hostname; test -f /ignition_ran; echo $?; exit 7",
    )
    .output()
    .await
    .expect("ssh is missing: install the Debian package openssh-client");
    assert_eq!(
        out.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nnode1\n1\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));

    // `sudo tee` of the OEM grub.cfg, the way an in-place re-provision rewrites it.
    let mut child = ssh_cmd(&f, "user_key", "sudo tee /usr/share/oem/grub.cfg >/dev/null && sudo touch /boot/flatcar/first_boot 2>/dev/null; sudo mkdir -p /boot/flatcar && sudo touch /boot/flatcar/first_boot")
        .spawn()
        .unwrap();
    let text = "set linux_append=\"ignition.config.url=http://h/ignition?mac=x&os=installed\"\nset linux_console=\"console=ttyS0\"\n";
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(f.oem.join("grub.cfg")).unwrap(), text);
    assert!(f.root.join("boot/flatcar/first_boot").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_refused() {
    let f = fixture().await;
    keygen(&f.dir.join("other_key"));
    let out = ssh_cmd(&f, "other_key", "true").output().await.unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_detected_by_the_client() {
    let f = fixture().await;
    keygen(&f.dir.join("impostor"));
    let imp = fs::read_to_string(f.dir.join("impostor.pub")).unwrap();
    let kh = format!(
        "[127.0.0.1]:{} {}\n",
        f.port,
        imp.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    );
    fs::write(f.dir.join("known_hosts"), kh).unwrap();
    let out = ssh_cmd(&f, "user_key", "true").output().await.unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_drops_the_connection() {
    let mut f = fixture().await;
    let child = ssh_cmd(&f, "user_key", "sudo systemctl reboot")
        .spawn()
        .unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match f.events.recv().await {
                Some(OsEvent::Reboot) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(ev, "no reboot event");
    // The machine goes down: its sshd disappears with the session.
    f.server = None;
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(255),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
