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

/// The netboot state file, held in memory and written through on every change.
pub struct NetbootWriter {
    path: PathBuf,
    nodes: Mutex<BTreeMap<Mac, (Netboot, String)>>,
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
    /// A writer of `<dir>/netboot.json`, starting from `initial` (MAC → decision, node name).
    pub fn new(dir: &Path, initial: BTreeMap<Mac, (Netboot, String)>) -> NetbootWriter {
        NetbootWriter {
            path: dir.join(NETBOOT_FILE),
            nodes: Mutex::new(initial),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the current decisions.
    pub fn write(&self) -> Result<(), NetbootError> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        write_file(&self.path, &nodes)
    }

    /// The current decision for `mac`.
    pub fn get(&self, mac: &Mac) -> Option<Netboot> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.get(mac).map(|(n, _)| *n)
    }

    /// Sets one machine's decision and writes the file.
    pub fn set(&self, mac: Mac, netboot: Netboot, name: &str) -> Result<(), NetbootError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.insert(mac, (netboot, name.to_string()));
        write_file(&self.path, &nodes)
    }
}

fn write_file(path: &Path, nodes: &BTreeMap<Mac, (Netboot, String)>) -> Result<(), NetbootError> {
    let doc = NetbootFile {
        format: NETBOOT_FORMAT.to_string(),
        nodes: nodes
            .iter()
            .map(|(mac, (netboot, name))| {
                (
                    mac.to_string(),
                    NetbootNode {
                        netboot: *netboot,
                        name: Some(name.clone()),
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

/// Replaces `path` with `bytes` atomically: temp file in the same directory, fsync, rename.
pub(crate) fn replace_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
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
        let w = NetbootWriter::new(
            tmp.path(),
            [(a, (Netboot::Installed, "a".to_string()))].into(),
        );
        w.write().unwrap();
        w.set(b, Netboot::InstallPending, "b").unwrap();
        let s = FileNetbootState::load(tmp.path()).unwrap().unwrap();
        assert_eq!(s.netboot(&a), Some(Netboot::Installed));
        assert_eq!(s.netboot(&b), Some(Netboot::InstallPending));
        w.set(b, Netboot::Installed, "b").unwrap();
        let s = FileNetbootState::load(tmp.path()).unwrap().unwrap();
        assert_eq!(s.netboot(&b), Some(Netboot::Installed));
    }
}
