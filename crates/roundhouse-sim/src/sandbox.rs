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
        let sb = Sandbox { mode };
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
             mount --bind {} \"$R/run/sim/disk\"\n\
             cd \"$R\"\n",
            q(&self.run_dir),
            q(&self.shims),
            q(&self.disks)
        ));
        s.push_str("exec chroot \"$R\" /usr/bin/env -i");
        s.push_str(&format!(" PATH={}", qs(PATH)));
        for (k, v) in env {
            s.push_str(&format!(" {}={}", k, qs(v)));
        }
        s.push_str(" /bin/sh -c \"$1\"\n");
        s
    }
}
