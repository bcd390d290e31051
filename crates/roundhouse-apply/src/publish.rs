//! Publishing a rendered cluster to the boot server: the matchbox data directory (swapped in
//! whole by `write_matchbox_dir`), the netboot decisions, and a small record of which final
//! config bytes were published for which config digest (so a resumed attempt can be verified
//! even after the desired config moved on).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bootdata::Mac;

use roundhouse_plan::NodeState;
use roundhouse_render::{Manifest, RenderedCluster, WriteError, write_matchbox_dir};
use roundhouse_store::NodeRecord;

use crate::netboot::{Decision, replace_atomic};

/// File (in the asset directory) mapping config digests to published final-config SHA-256s.
pub const PUBLISHED_FILE: &str = "published-configs.json";

/// Config digest → SHA-256 of the final config bytes served for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    path: PathBuf,
    map: BTreeMap<String, String>,
}

/// Publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The data directory could not be written.
    #[error("publishing to the boot server's data directory {}: {source}", dir.display())]
    Data {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: WriteError,
    },
    /// The record of published digests could not be written.
    #[error("writing {}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Published {
    /// Reads `<asset_dir>/published-configs.json` (empty when missing or unreadable: it is
    /// only needed to verify attempts whose config is no longer the desired one).
    pub fn load(asset_dir: &Path) -> Published {
        let path = asset_dir.join(PUBLISHED_FILE);
        let map = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Published { path, map }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that config `digest` was published as bytes with SHA-256 `sha` (in memory; see
    /// [`update`](Self::update) for the file).
    pub fn insert(&mut self, digest: &str, sha: &str) {
        self.map.insert(digest.to_string(), sha.to_string());
    }

    /// The config digest whose final config was published as bytes with SHA-256 `sha`. Several
    /// digests can share bytes (they differ only in kernel arguments); `preferred` wins if it
    /// is one of them.
    pub fn digest_for_sha(&self, sha: &str, preferred: Option<&str>) -> Option<String> {
        let mut found = self
            .map
            .iter()
            .filter(|(_, v)| v.as_str() == sha)
            .map(|(k, _)| k);
        let first = found.next()?;
        if let Some(p) = preferred
            && self.map.get(p).is_some_and(|v| v == sha)
        {
            return Some(p.to_string());
        }
        Some(first.clone())
    }

    /// The published SHA-256 for config `digest`.
    pub fn sha_for(&self, digest: &str) -> Option<String> {
        self.map.get(digest).cloned()
    }

    /// Adds the manifest's pairs, keeps only digests that are desired now or referenced by a
    /// record (applied or in flight), and writes the file.
    pub fn update(
        &mut self,
        manifest: &Manifest,
        records: &[NodeRecord],
    ) -> Result<(), PublishError> {
        for n in &manifest.nodes {
            self.map.insert(
                n.digest.as_str().to_string(),
                n.final_ignition_sha256.as_str().to_string(),
            );
        }
        let mut keep: std::collections::BTreeSet<String> = manifest
            .nodes
            .iter()
            .map(|n| n.digest.as_str().to_string())
            .collect();
        for r in records {
            if let Some(i) = r.state.pending_intent() {
                keep.insert(i.digest.clone());
            }
            if let NodeState::Failed { intent, .. } = &r.state {
                keep.insert(intent.digest.clone());
            }
            if let Some(d) = r.applied_digest().and_then(|d| d.known()) {
                keep.insert(d.to_string());
            }
        }
        self.map.retain(|k, _| keep.contains(k));
        let mut bytes = serde_json::to_vec_pretty(&self.map).unwrap_or_default();
        bytes.push(b'\n');
        replace_atomic(&self.path, &bytes).map_err(|source| PublishError::Record {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes the rendered cluster into `data_dir` (swapped in whole) and returns its manifest.
///
/// A boot-server state directory at `<data_dir>/roundhouse` (`serve`'s default `--state-path`)
/// is carried into the new tree; any other entry the writer did not create (for example a
/// `--boot-state-dir` placed elsewhere inside the data directory) makes it refuse with
/// [`WriteError::Foreign`] before anything is written, so a publication never deletes
/// `netboot.json` or the fetch journal.
pub fn publish_data(rendered: &RenderedCluster, data_dir: &Path) -> Result<Manifest, PublishError> {
    write_matchbox_dir(rendered, data_dir).map_err(|source| PublishError::Data {
        dir: data_dir.to_path_buf(),
        source,
    })
}

/// The netboot decisions that follow from the store: a node with a confirmed installation
/// boots from disk; a node with a PXE install in flight is install-pending; anything else is
/// left to matchbox semantics (the installer is served).
pub fn initial_netboot(
    records: &[NodeRecord],
    names: &BTreeMap<Mac, String>,
) -> BTreeMap<Mac, Decision> {
    let mut out = BTreeMap::new();
    for r in records {
        let Some(name) = names.get(&r.mac) else {
            continue;
        };
        let decision = match &r.state {
            // Pending since its intent: a resumed install whose installer already fetched its
            // config is not offered the installer again.
            NodeState::Installing { intent, .. } => {
                Some(Decision::pending(name, intent.started_at))
            }
            s if s.last_installed().is_some() => Some(Decision::installed(name)),
            _ => None,
        };
        if let Some(d) = decision {
            out.insert(r.mac, d);
        }
    }
    out
}
