//! Runs a command with a real POSIX shell against a machine's own file tree: a private mount
//! namespace (`unshare -m` as root, `unshare -U -r -m` otherwise) in which the machine's
//! directories are bind-mounted into place, the host's programs are bind-mounted read-only on
//! the machine's `/usr/{bin,sbin,lib,lib64,libexec}` (the "OS binaries"), the simulated
//! hardware tools come first in `PATH`, and the shell is started under `chroot`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::tree::Tree;

/// Machine-local paths inside the sandbox.
pub const SIM_DIR: &str = "/run/sim";
/// `PATH` inside the sandbox: the hardware shims, then Flatcar's default `PATH`.
pub const PATH: &str =
    "/run/sim/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin";

/// Programs the sandbox needs on the host.
const NEEDED: [&str; 5] = ["unshare", "chroot", "mount", "sh", "env"];

/// How commands are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Running as root: a mount namespace.
    Root,
    /// Not root: a user namespace mapping the caller to root, plus a mount namespace.
    UserNamespace,
}

/// The sandbox could not be set up on this host.
#[derive(Debug, thiserror::Error)]
#[error("the simulator cannot run machine commands here: {0}")]
pub struct SandboxError(pub String);

/// A checked sandbox mechanism.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mode: Mode,
    /// Root only: a private mount holding one persistent mount namespace per running OS, so
    /// a command costs one `nsenter` instead of assembling the tree again.
    ns_dir: Option<PathBuf>,
}

/// A persistent mount namespace with a machine's tree assembled; unmounted on drop.
#[derive(Debug)]
pub struct Namespace {
    file: PathBuf,
}

impl Namespace {
    /// The bind-mounted namespace file.
    pub fn path(&self) -> &Path {
        &self.file
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Synchronous on purpose: drop must leave no mount behind on every return path.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.file)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.file);
    }
}

fn run_quiet(prog: &str, args: &[&std::ffi::OsStr]) -> bool {
    std::process::Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether this process runs as root (from `/proc/self/status`, to avoid `unsafe` libc calls).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

impl Sandbox {
    /// Checks that the host programs exist and that a namespace can be created; says plainly
    /// what is missing otherwise.
    pub async fn detect() -> Result<Sandbox, SandboxError> {
        let missing: Vec<&str> = NEEDED.iter().copied().filter(|p| !on_path(p)).collect();
        if !missing.is_empty() {
            return Err(SandboxError(format!(
                "missing programs {missing:?}: install the Debian packages util-linux, mount and coreutils"
            )));
        }
        let mode = if is_root() {
            Mode::Root
        } else {
            Mode::UserNamespace
        };
        let sb = Sandbox { mode, ns_dir: None };
        let out = tokio::process::Command::new("unshare")
            .args(sb.unshare_args())
            .args(["true"])
            .output()
            .await
            .map_err(|e| SandboxError(format!("running unshare: {e}")))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(SandboxError(match mode {
                Mode::Root => {
                    format!("`unshare -m` failed ({why}): the process needs CAP_SYS_ADMIN")
                }
                Mode::UserNamespace => format!(
                    "`unshare -U -r -m` failed ({why}): run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)"
                ),
            }));
        }
        Ok(sb)
    }

    /// The mechanism in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// As root, keeps one mount namespace per running OS under `dir` (a private bind mount
    /// of itself). Namespaces left by a simulator that was killed are removed first. Returns
    /// whether persistent namespaces are in use; without them every command assembles its
    /// tree anew, which is slower but needs no host mount.
    pub fn enable_persistent(&mut self, dir: &Path) -> bool {
        if self.mode != Mode::Root || !on_path("nsenter") {
            return false;
        }
        if std::fs::create_dir_all(dir).is_err() {
            return false;
        }
        let d = dir.as_os_str();
        // Stale namespaces and an old private mount of the directory.
        let _ = run_quiet("umount", &["-l".as_ref(), d]);
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        if run_quiet("mount", &["--bind".as_ref(), d, d])
            && run_quiet("mount", &["--make-private".as_ref(), d])
        {
            self.ns_dir = Some(dir.to_path_buf());
            true
        } else {
            false
        }
    }

    /// Unmounts every persistent namespace (idempotent).
    pub fn teardown(&self) {
        if let Some(d) = &self.ns_dir {
            let _ = run_quiet("umount", &["-l".as_ref(), d.as_os_str()]);
        }
    }

    /// Assembles `layout` once in a persistent namespace named `name`, when enabled.
    pub async fn enter(&self, layout: &Layout, name: &str) -> Option<Namespace> {
        let dir = self.ns_dir.as_ref()?;
        let file = dir.join(name);
        std::fs::write(&file, "").ok()?;
        let ns = Namespace { file };
        let mut mount_arg = std::ffi::OsString::from("--mount=");
        mount_arg.push(&ns.file);
        let out = tokio::process::Command::new("unshare")
            .arg(&mount_arg)
            .args(["--propagation", "private", "sh", "-c"])
            .arg(layout.mount_script())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .ok()?;
        if !out.status.success() {
            tracing::warn!(
                "persistent namespace {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(ns)
    }

    fn unshare_args(&self) -> &'static [&'static str] {
        match self.mode {
            Mode::Root => &["-m", "--propagation", "private"],
            Mode::UserNamespace => &["-U", "-r", "-m", "--propagation", "private"],
        }
    }

    /// A command running `sh -c script` inside `layout`, with `env` set (and nothing else
    /// from the simulator's environment).
    pub fn command(
        &self,
        layout: &Layout,
        script: &str,
        env: &[(&str, &str)],
    ) -> tokio::process::Command {
        if let Some(ns) = &layout.ns {
            let mut mount_arg = std::ffi::OsString::from("--mount=");
            mount_arg.push(ns);
            let mut c = tokio::process::Command::new("nsenter");
            c.arg(mount_arg)
                .arg("chroot")
                .arg(&layout.mnt)
                .arg("/usr/bin/env")
                .arg("-i")
                .arg(format!("PATH={PATH}"));
            for (k, v) in env {
                c.arg(format!("{k}={v}"));
            }
            c.args(["/bin/sh", "-c", script])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            return c;
        }
        let mut c = tokio::process::Command::new("unshare");
        c.args(self.unshare_args())
            .arg("sh")
            .arg("-c")
            .arg(layout.setup_script(env))
            .arg("sim-setup")
            .arg(script)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }
}

/// Where a machine's tree and simulated hardware live on the host.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The machine's mounts (root first).
    pub tree: Tree,
    /// The machine's volatile `/run`.
    pub run_dir: PathBuf,
    /// Shim programs, mounted at `/run/sim/bin`.
    pub shims: PathBuf,
    /// The machine's disks, mounted at `/run/sim/disk`.
    pub disks: PathBuf,
    /// An empty directory used as the mount point of the assembled root.
    pub mnt: PathBuf,
    /// A persistent namespace holding this layout already assembled ([`Sandbox::enter`]).
    pub ns: Option<PathBuf>,
}

fn q(p: &Path) -> String {
    let s = p.to_string_lossy();
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn qs(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Layout {
    /// The shell script that assembles the tree in the new namespace and starts the command
    /// (`$1`) under chroot.
    fn setup_script(&self, env: &[(&str, &str)]) -> String {
        let mut s = self.mount_script();
        s.push_str("cd \"$R\"\n");
        s.push_str("exec chroot \"$R\" /usr/bin/env -i");
        s.push_str(&format!(" PATH={}", qs(PATH)));
        for (k, v) in env {
            s.push_str(&format!(" {}={}", k, qs(v)));
        }
        s.push_str(" /bin/sh -c \"$1\"\n");
        s
    }

    /// The part of the setup that mounts the machine's tree at `$R`.
    fn mount_script(&self) -> String {
        let mut s = String::from("set -e\n");
        s.push_str(&format!("R={}\n", q(&self.mnt)));
        // Shortest mount point first: "/" then "/usr" then "/usr/share/oem".
        let mut mounts: Vec<&(String, PathBuf)> = self.tree.mounts().iter().collect();
        mounts.sort_by_key(|(at, _)| at.len());
        for (at, dir) in mounts {
            if at == "/" {
                s.push_str(&format!("mount --bind {} \"$R\"\n", q(dir)));
            } else {
                s.push_str(&format!(
                    "mkdir -p \"$R\"{at}\nmount --bind {} \"$R\"{at}\n",
                    q(dir),
                    at = qs(at)
                ));
            }
        }
        s.push_str(
            "for d in bin sbin lib lib64 libexec; do\n\
             \x20 if [ -d \"/usr/$d\" ]; then mkdir -p \"$R/usr/$d\"; mount --bind \"/usr/$d\" \"$R/usr/$d\"; mount -o remount,bind,ro \"$R/usr/$d\" 2>/dev/null || true; fi\n\
             done\n\
             mkdir -p \"$R/dev\" \"$R/run\" \"$R/tmp\"\n\
             mount -t tmpfs -o mode=755,size=64k simdev \"$R/dev\"\n\
             for n in null zero full random urandom tty; do : > \"$R/dev/$n\"; mount --bind \"/dev/$n\" \"$R/dev/$n\"; done\n\
             ln -s /proc/self/fd \"$R/dev/fd\"\n",
        );
        s.push_str(&format!(
            "mount --bind {} \"$R/run\"\n\
             mkdir -p \"$R/run/sim/bin\" \"$R/run/sim/disk\"\n\
             mount --bind {} \"$R/run/sim/bin\"\n\
             mount --bind {} \"$R/run/sim/disk\"\n",
            q(&self.run_dir),
            q(&self.shims),
            q(&self.disks)
        ));
        s
    }
}
