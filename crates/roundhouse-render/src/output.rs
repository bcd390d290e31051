//! Writing a rendered cluster as a matchbox data directory (`profiles/`, `groups/`,
//! `ignition/`) that matchbox itself, or `roundhouse serve`, serves unchanged, plus a manifest
//! of what was rendered for each node.
//!
//! The directory is built next to its destination and swapped into place, so a reader (a boot
//! server polling the directory) sees either the old tree or the new one, never a mix; and a
//! directory that roundhouse did not write is never overwritten.
//!
//! Render owns `profiles/`, `groups/`, `ignition/` and the manifest. A boot-server state
//! directory `roundhouse/` inside the output (`roundhouse serve`'s default `--state-path`) is
//! not render's: it is moved into the new tree just before the swap, so `netboot.json` and the
//! fetch journal survive every render. Anything else in a rendered directory makes the write
//! refuse, before anything is written: render never deletes what it did not write.
//!
//! Rendered Ignition configs hold each node's SSH host private key: `ignition/` is created
//! 0700 and its files 0600, whatever the umask; the rest is 0755/0644 (never writable by
//! others, so the boot server, which refuses configs others can modify, serves it).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Digest, RenderedCluster};

/// File name of the manifest inside the output directory.
pub const MANIFEST_FILE: &str = "render-manifest.json";
/// The boot server's state directory inside a data directory (`roundhouse serve`'s default
/// `--state-path`): carried over into every new tree, never deleted.
pub const STATE_DIR: &str = "roundhouse";
/// What a render writes into the output directory (and replaces on the next render).
const OWNED: [&str; 4] = ["profiles", "groups", "ignition", MANIFEST_FILE];

/// Mode of `ignition/` and of the directories under it: the configs hold private keys.
const SECRET_DIR_MODE: u32 = 0o700;
/// Mode of every rendered Ignition config.
const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of the output directory, `profiles/` and `groups/`.
const DIR_MODE: u32 = 0o755;
/// Mode of groups, profiles and the manifest.
const FILE_MODE: u32 = 0o644;

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
    #[error(
        "refusing to replace {dir}: it holds {entries}, which roundhouse render did not write and \
         would delete; move it out of the data directory (a boot-server state directory belongs \
         in {dir}/{STATE_DIR}, which render keeps, or outside it: serve --state-path)",
        dir = dir.display(),
        entries = entries.join(", ")
    )]
    Foreign { dir: PathBuf, entries: Vec<String> },
    #[error(
        "the boot server's state directory {} could not be moved back after a failed write and \
         is now at {}: move it back by hand (mv {} {}); nothing else was changed",
        home.display(), stranded.display(), stranded.display(), home.display()
    )]
    StateStranded {
        home: PathBuf,
        stranded: PathBuf,
        #[source]
        source: io::Error,
    },
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
///
/// `out` may be missing, empty, a directory a previous render wrote, or hold only a
/// boot-server state directory ([`STATE_DIR`]). Anything else is refused before anything is
/// written ([`WriteError::NotOurs`], [`WriteError::Foreign`]). The state directory is carried
/// over into the new tree.
pub fn write_matchbox_dir(rendered: &RenderedCluster, out: &Path) -> Result<Manifest, WriteError> {
    check_destination(out)?;
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
    // A staging tree left by a crashed render of ours (same pid reused) can be removed, but
    // never one holding a state directory a failed swap could not move back.
    if staging.exists() {
        if exists(&staging.join(STATE_DIR)) {
            return Err(WriteError::StateStranded {
                home: out.join(STATE_DIR),
                stranded: staging.join(STATE_DIR),
                source: io::Error::other("left there by an earlier render that failed"),
            });
        }
        fs::remove_dir_all(&staging).map_err(io_err("removing", &staging))?;
    }
    let result = write_tree(rendered, &staging).and_then(|manifest| {
        swap_into_place(&staging, out, &parent, &name)?;
        Ok(manifest)
    });
    // Never remove a staging tree that (still) holds the state directory.
    if result.is_err() && !exists(&staging.join(STATE_DIR)) {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Whether something (a file, directory or symbolic link, even a dangling one) is at `path`.
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Refuses destinations holding anything render did not write.
fn check_destination(out: &Path) -> Result<(), WriteError> {
    if !exists(out) {
        return Ok(());
    }
    let ours = out.join(MANIFEST_FILE).exists();
    let mut foreign = Vec::new();
    for entry in fs::read_dir(out).map_err(io_err("reading", out))? {
        let entry = entry.map_err(io_err("reading", out))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == STATE_DIR || (ours && OWNED.contains(&name.as_str())) {
            continue;
        }
        foreign.push(name);
    }
    if foreign.is_empty() {
        return Ok(());
    }
    if !ours {
        return Err(WriteError::NotOurs(out.to_path_buf()));
    }
    foreign.sort();
    Err(WriteError::Foreign {
        dir: out.to_path_buf(),
        entries: foreign,
    })
}

/// Creates `path` with exactly `mode` (the umask can only narrow a mode given at creation; the
/// explicit `set_permissions` makes it exact either way).
fn create_dir(path: &Path, mode: u32) -> Result<(), WriteError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(io_err("creating", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_err("setting permissions of", path))
}

fn write_tree(rendered: &RenderedCluster, dir: &Path) -> Result<Manifest, WriteError> {
    create_dir(dir, DIR_MODE)?;
    for (sub, mode) in [
        ("profiles", DIR_MODE),
        ("groups", DIR_MODE),
        ("ignition", SECRET_DIR_MODE),
    ] {
        create_dir(&dir.join(sub), mode)?;
    }
    let mut nodes = Vec::with_capacity(rendered.nodes.len());
    for node in &rendered.nodes {
        let final_bytes = document_bytes(&node.final_config);
        let installer_bytes = document_bytes(&node.installer_config);
        for profile in [&node.install_profile, &node.node_profile] {
            write_file(
                &dir.join("profiles").join(format!("{}.json", profile.id)),
                &document_bytes(profile),
                FILE_MODE,
            )?;
        }
        for group in [&node.install_group, &node.node_group] {
            write_file(
                &dir.join("groups").join(format!("{}.json", group.id)),
                &document_bytes(group),
                FILE_MODE,
            )?;
        }
        write_file(
            &dir.join("ignition").join(&node.node_profile.ignition_id),
            &final_bytes,
            SECRET_FILE_MODE,
        )?;
        write_file(
            &dir.join("ignition").join(&node.install_profile.ignition_id),
            &installer_bytes,
            SECRET_FILE_MODE,
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
    write_file(
        &dir.join(MANIFEST_FILE),
        &document_bytes(&manifest),
        FILE_MODE,
    )?;
    Ok(manifest)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err("creating", path))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("setting permissions of", path))?;
    f.write_all(bytes).map_err(io_err("writing", path))?;
    Ok(())
}

/// Replaces `out` with `staging`. The old tree is moved aside first and removed last, so at
/// every instant `out` is either complete-old, absent for the span of one rename, or
/// complete-new. A state directory in `out` is first moved into `staging` (so, for the span of
/// those renames, `out` has none: `roundhouse serve` keeps the gating it loaded last when
/// `netboot.json` is briefly missing). On failure everything is moved back.
fn swap_into_place(
    staging: &Path,
    out: &Path,
    parent: &Path,
    name: &str,
) -> Result<(), WriteError> {
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = exists(out);
    let state = out.join(STATE_DIR);
    let carried = staging.join(STATE_DIR);
    let carry = had_old && exists(&state);
    if carry {
        fs::rename(&state, &carried).map_err(io_err(
            "moving the boot server's state directory into the new tree (keep it on the same \
             file system as the data directory, or outside it with serve --state-path)",
            &state,
        ))?;
    }
    // Puts the state directory back where it was (`out` holds the old tree again).
    let restore = |err: WriteError| -> WriteError {
        if !carry {
            return err;
        }
        match fs::rename(&carried, &state) {
            Ok(()) => err,
            Err(source) => WriteError::StateStranded {
                home: state.clone(),
                stranded: carried.clone(),
                source,
            },
        }
    };
    if had_old && let Err(e) = fs::rename(out, &old) {
        return Err(restore(io_err("moving aside", out)(e)));
    }
    if let Err(e) = fs::rename(staging, out) {
        if had_old {
            let _ = fs::rename(&old, out);
        }
        return Err(restore(io_err("moving into place", out)(e)));
    }
    if had_old {
        fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> RenderedCluster {
        RenderedCluster {
            nodes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_state_directory_inside_survives_every_render() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("data");
        // Before the first render (the server's default state path, created first) ...
        fs::create_dir_all(out.join(STATE_DIR)).unwrap();
        fs::write(out.join(STATE_DIR).join("netboot.json"), "gating").unwrap();
        write_matchbox_dir(&empty(), &out).unwrap();
        assert_eq!(
            fs::read_to_string(out.join("roundhouse/netboot.json")).unwrap(),
            "gating"
        );
        // ... and over a rendered tree.
        fs::write(out.join("groups/stale.json"), "{}").unwrap();
        write_matchbox_dir(&empty(), &out).unwrap();
        assert_eq!(
            fs::read_to_string(out.join("roundhouse/netboot.json")).unwrap(),
            "gating"
        );
        assert!(
            !out.join("groups/stale.json").exists(),
            "render's own tree is replaced"
        );
        let leftovers: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["data"], "no staging or old tree left behind");
    }

    #[test]
    fn anything_else_in_a_rendered_directory_is_refused_and_nothing_written() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("data");
        write_matchbox_dir(&empty(), &out).unwrap();
        fs::create_dir(out.join("boot-state")).unwrap();
        fs::write(out.join("boot-state/netboot.json"), "gating").unwrap();
        fs::write(out.join("groups/marker.json"), "{}").unwrap();
        let err = write_matchbox_dir(&empty(), &out).unwrap_err();
        assert!(
            matches!(&err, WriteError::Foreign { entries, .. } if entries == &["boot-state"]),
            "{err}"
        );
        assert!(err.to_string().contains("boot-state"), "{err}");
        assert!(out.join("groups/marker.json").exists(), "nothing replaced");
        assert!(out.join("boot-state/netboot.json").exists());
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no staging left"
        );
    }

    #[test]
    fn a_directory_render_did_not_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("profiles")).unwrap();
        let err = write_matchbox_dir(&empty(), tmp.path()).unwrap_err();
        assert!(matches!(err, WriteError::NotOurs(_)), "{err}");
    }

    #[test]
    fn ignition_is_private_and_the_rest_not_writable_by_others() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("data");
        write_matchbox_dir(&empty(), &out).unwrap();
        assert_eq!(mode(&out), 0o755);
        assert_eq!(mode(&out.join("ignition")), 0o700);
        assert_eq!(mode(&out.join("groups")), 0o755);
        assert_eq!(mode(&out.join(MANIFEST_FILE)), 0o644);
        let f = tmp.path().join("x.ign");
        write_file(&f, b"{}", SECRET_FILE_MODE).unwrap();
        assert_eq!(mode(&f), 0o600);
    }
}
