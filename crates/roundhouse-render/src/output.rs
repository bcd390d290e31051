//! Writing a rendered cluster as a matchbox data directory (`profiles/`, `groups/`,
//! `ignition/`) that matchbox itself, or `roundhouse serve`, serves unchanged, plus a manifest
//! of what was rendered for each node.
//!
//! The directory is built next to its destination and swapped into place, so a reader (a boot
//! server polling the directory) sees either the old tree or the new one, never a mix; and a
//! directory that roundhouse did not write is never overwritten.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Digest, RenderedCluster};

/// File name of the manifest inside the output directory.
pub const MANIFEST_FILE: &str = "render-manifest.json";

/// What was rendered, for tools that read it (status, tests): one entry per node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 1 for this layout.
    pub format: u32,
    pub nodes: Vec<ManifestNode>,
}

/// One node's rendering, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestNode {
    pub name: String,
    pub mac: String,
    pub role: String,
    /// Config digest: final Ignition + kernel args + kernel console.
    pub digest: Digest,
    /// SHA-256 of the exact bytes of `ignition/<name>.ign`, as the boot server serves them.
    pub final_ignition_sha256: Digest,
    /// SHA-256 of the exact bytes of `ignition/install-<name>.ign`.
    pub installer_ignition_sha256: Digest,
}

/// Why the output directory could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "refusing to replace {0}: it exists, is not empty and was not written by roundhouse render \
         (no {MANIFEST_FILE}); choose another --out directory or remove it"
    )]
    NotOurs(PathBuf),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WriteError + use<> {
    let path = path.to_path_buf();
    move |source| WriteError::Io {
        action,
        path,
        source,
    }
}

/// The JSON text of a document, as written to disk and served: indented, with object keys
/// sorted, so the bytes depend only on the document's content and not on the order in which
/// snippets and merges happened to insert keys.
pub fn document_bytes(value: &impl Serialize) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("rendered documents serialize");
    let mut bytes = serde_json::to_vec_pretty(&sorted(value)).expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => items.into_iter().map(sorted).collect(),
        other => other,
    }
}

/// Writes `rendered` to `out` and returns the manifest written with it.
pub fn write_matchbox_dir(rendered: &RenderedCluster, out: &Path) -> Result<Manifest, WriteError> {
    if out.exists() && !out.join(MANIFEST_FILE).exists() {
        let empty = fs::read_dir(out)
            .map_err(io_err("reading", out))?
            .next()
            .is_none();
        if !empty {
            return Err(WriteError::NotOurs(out.to_path_buf()));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err("removing", &staging))?;
    }
    let result = write_tree(rendered, &staging).and_then(|manifest| {
        swap_into_place(&staging, out, &parent, &name)?;
        Ok(manifest)
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn write_tree(rendered: &RenderedCluster, dir: &Path) -> Result<Manifest, WriteError> {
    for sub in ["profiles", "groups", "ignition"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    let mut nodes = Vec::with_capacity(rendered.nodes.len());
    for node in &rendered.nodes {
        let final_bytes = document_bytes(&node.final_config);
        let installer_bytes = document_bytes(&node.installer_config);
        for profile in [&node.install_profile, &node.node_profile] {
            write_file(
                &dir.join("profiles").join(format!("{}.json", profile.id)),
                &document_bytes(profile),
            )?;
        }
        for group in [&node.install_group, &node.node_group] {
            write_file(
                &dir.join("groups").join(format!("{}.json", group.id)),
                &document_bytes(group),
            )?;
        }
        write_file(
            &dir.join("ignition").join(&node.node_profile.ignition_id),
            &final_bytes,
        )?;
        write_file(
            &dir.join("ignition").join(&node.install_profile.ignition_id),
            &installer_bytes,
        )?;
        nodes.push(ManifestNode {
            name: node.name.clone(),
            mac: node.mac.to_string(),
            role: node.role.as_str().to_string(),
            digest: node.digest.clone(),
            final_ignition_sha256: Digest::of_bytes(&final_bytes),
            installer_ignition_sha256: Digest::of_bytes(&installer_bytes),
        });
    }
    let manifest = Manifest { format: 1, nodes };
    write_file(&dir.join(MANIFEST_FILE), &document_bytes(&manifest))?;
    Ok(manifest)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut f = fs::File::create(path).map_err(io_err("creating", path))?;
    f.write_all(bytes).map_err(io_err("writing", path))?;
    Ok(())
}

/// Replaces `out` with `staging`. The old tree is moved aside first and removed last, so at
/// every instant `out` is either complete-old, absent for the span of one rename, or
/// complete-new.
fn swap_into_place(
    staging: &Path,
    out: &Path,
    parent: &Path,
    name: &str,
) -> Result<(), WriteError> {
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = out.exists();
    if had_old {
        fs::rename(out, &old).map_err(io_err("moving aside", out))?;
    }
    if let Err(e) = fs::rename(staging, out) {
        if had_old {
            let _ = fs::rename(&old, out);
        }
        return Err(io_err("moving into place", out)(e));
    }
    if had_old {
        fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
    }
    Ok(())
}
