//! Publishing netboot decisions to the boot server: `<boot state dir>/netboot.json`, which the
//! boot server re-reads when it changes. Installed machines are told to boot from their disk;
//! a machine roundhouse is about to PXE-install is marked install-pending.
//!
//! The file is rewritten whole, atomically (temp file, fsync, rename), so the server never
//! reads half of it. Writers in one process are serialised by a mutex; between processes the
//! apply lock keeps a single writer.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bootdata::Mac;
use roundhouse_boot::state::{NETBOOT_FILE, NETBOOT_FORMAT, Netboot, NetbootFile, NetbootNode};
use roundhouse_plan::Timestamp;

/// One machine's netboot decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What the boot server answers when it network-boots.
    pub netboot: Netboot,
    /// Node name (informational, in the file).
    pub name: String,
    /// For install-pending: when it was marked so. The boot server tells a machine to boot
    /// from its disk once it was served a config under this mark (its installer is running),
    /// so each mark allows one installation; a new mark (a new value) allows the next.
    pub pending_since: Option<Timestamp>,
}

impl Decision {
    /// Boot from the local disk.
    pub fn installed(name: &str) -> Decision {
        Decision {
            netboot: Netboot::Installed,
            name: name.to_string(),
            pending_since: None,
        }
    }

    /// Serve the installer, from `since` on.
    pub fn pending(name: &str, since: Timestamp) -> Decision {
        Decision {
            netboot: Netboot::InstallPending,
            name: name.to_string(),
            pending_since: Some(since),
        }
    }
}

/// The netboot state file, held in memory and written through on every change.
pub struct NetbootWriter {
    path: PathBuf,
    nodes: Mutex<BTreeMap<Mac, Decision>>,
    run_started: Timestamp,
}

/// Writing `netboot.json` failed.
#[derive(Debug, thiserror::Error)]
#[error("writing the boot server's netboot state {}: {source}", path.display())]
pub struct NetbootError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl NetbootWriter {
    /// A writer of `<dir>/netboot.json` for the run that started at `run_started`, starting
    /// from `initial` (machines this run is going to install may already be marked pending
    /// from `run_started`).
    pub fn new(
        dir: &Path,
        initial: BTreeMap<Mac, Decision>,
        run_started: Timestamp,
    ) -> NetbootWriter {
        NetbootWriter {
            path: dir.join(NETBOOT_FILE),
            nodes: Mutex::new(initial),
            run_started,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Mac, Decision>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the current decisions.
    pub fn write(&self) -> Result<(), NetbootError> {
        write_file(&self.path, &self.lock())
    }

    /// The current decision for `mac`.
    pub fn get(&self, mac: &Mac) -> Option<Netboot> {
        self.lock().get(mac).map(|d| d.netboot)
    }

    /// Marks a machine installed and writes the file.
    pub fn set_installed(&self, mac: Mac, name: &str) -> Result<(), NetbootError> {
        let mut nodes = self.lock();
        nodes.insert(mac, Decision::installed(name));
        write_file(&self.path, &nodes)
    }

    /// Makes sure the machine gets the installer for an install that began at `begun`: a mark
    /// from `begun` or from this run is kept (the same install resumed, or a fresh machine
    /// marked when the run started); an older one is renewed (the machine may have fetched a
    /// config under it, in a failed attempt), as is any other decision: the machine is marked
    /// pending from `now` and the file written. Returns whether the file changed (the boot
    /// server must reload before the machine boots).
    pub fn ensure_pending(
        &self,
        mac: Mac,
        name: &str,
        begun: Timestamp,
        now: Timestamp,
    ) -> Result<bool, NetbootError> {
        let mut nodes = self.lock();
        if let Some(d) = nodes.get(&mac)
            && d.netboot == Netboot::InstallPending
            && d.pending_since
                .is_some_and(|since| since >= begun.min(self.run_started))
        {
            return Ok(false);
        }
        nodes.insert(mac, Decision::pending(name, now));
        write_file(&self.path, &nodes).map(|()| true)
    }
}

fn write_file(path: &Path, nodes: &BTreeMap<Mac, Decision>) -> Result<(), NetbootError> {
    let doc = NetbootFile {
        format: NETBOOT_FORMAT.to_string(),
        nodes: nodes
            .iter()
            .map(|(mac, d)| {
                (
                    mac.to_string(),
                    NetbootNode {
                        netboot: d.netboot,
                        name: Some(d.name.clone()),
                        pending_since_unix_ms: d
                            .pending_since
                            .and_then(|t| u64::try_from(t.unix_millis()).ok()),
                    },
                )
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| NetbootError {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    bytes.push(b'\n');
    replace_atomic(path, &bytes).map_err(|source| NetbootError {
        path: path.to_path_buf(),
        source,
    })
}

/// Mode of `netboot.json` and the other files apply publishes for the boot server: readable by
/// it whatever user it runs as, never writable by others (the boot server refuses a
/// `netboot.json` its group or others can write: it decides which machines are reinstalled).
pub(crate) const PUBLISHED_MODE: u32 = 0o644;

/// Replaces `path` with `bytes` atomically: temp file in the same directory, created with
/// exactly [`PUBLISHED_MODE`] whatever the umask, fsync, rename.
pub(crate) fn replace_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PUBLISHED_MODE)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(PUBLISHED_MODE))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use roundhouse_boot::state::{FileNetbootState, NetbootState};

    #[test]
    fn the_boot_server_reads_what_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Mac::parse("52:54:00:00:00:01").unwrap();
        let b = Mac::parse("52:54:00:00:00:02").unwrap();
        let t = |ms| Timestamp::from_unix_millis(ms);
        let w = NetbootWriter::new(tmp.path(), [(a, Decision::installed("a"))].into(), t(0));
        w.write().unwrap();
        assert!(w.ensure_pending(b, "b", t(1_000), t(1_500)).unwrap());
        let s = FileNetbootState::load(tmp.path()).unwrap().unwrap();
        assert_eq!(s.netboot(&a), Some(Netboot::Installed));
        assert_eq!(s.pending_since(&a), None);
        assert_eq!(s.netboot(&b), Some(Netboot::InstallPending));
        assert_eq!(
            s.pending_since(&b),
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500))
        );
        w.set_installed(b, "b").unwrap();
        let s = FileNetbootState::load(tmp.path()).unwrap().unwrap();
        assert_eq!(s.netboot(&b), Some(Netboot::Installed));
    }

    /// The boot server refuses a netboot.json others can write; ours never is, even when an
    /// older writer left a group-writable one behind.
    #[test]
    fn the_file_is_never_writable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(NETBOOT_FILE);
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let a = Mac::parse("52:54:00:00:00:01").unwrap();
        let w = NetbootWriter::new(
            tmp.path(),
            [(a, Decision::installed("a"))].into(),
            Timestamp::from_unix_millis(0),
        );
        w.write().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(FileNetbootState::load(tmp.path()).unwrap().is_some());
    }

    #[test]
    fn a_pending_mark_is_kept_for_its_install_and_renewed_for_a_later_one() {
        let tmp = tempfile::tempdir().unwrap();
        let m = Mac::parse("52:54:00:00:00:01").unwrap();
        let t = |ms| Timestamp::from_unix_millis(ms);
        // Marked when the run started (a fresh machine); its install begins later.
        let w = NetbootWriter::new(
            tmp.path(),
            [(m, Decision::pending("m", t(100)))].into(),
            t(100),
        );
        assert!(
            !w.ensure_pending(m, "m", t(150), t(200)).unwrap(),
            "same run"
        );
        // An install resumed from an earlier run keeps the mark it was given then.
        let w = NetbootWriter::new(
            tmp.path(),
            [(m, Decision::pending("m", t(50)))].into(),
            t(300),
        );
        assert!(!w.ensure_pending(m, "m", t(50), t(310)).unwrap(), "resumed");
        // A later install (a retry after a failure) needs a new mark: the machine may have
        // fetched a config under the old one.
        assert!(w.ensure_pending(m, "m", t(400), t(410)).unwrap());
        let s = FileNetbootState::load(tmp.path()).unwrap().unwrap();
        assert_eq!(
            s.pending_since(&m),
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(410))
        );
        // An installed machine being reinstalled.
        w.set_installed(m, "m").unwrap();
        assert!(w.ensure_pending(m, "m", t(500), t(510)).unwrap());
        assert_eq!(w.get(&m), Some(Netboot::InstallPending));
    }
}
