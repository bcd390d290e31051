//! `roundhouse import-lokomotive ASSET_DIR`: adopt a cluster Lokomotive provisioned, without
//! reinstalling it.
//!
//! Lokomotive wrote `<asset_dir>/cluster-assets/<MAC>` holding the node's domain after each
//! successful (re-)provision, and nothing about which config it applied. Each flag file
//! becomes a node installed by PXE with an *unknown* applied digest and unknown kernel
//! arguments. The planner then re-provisions it in place only where the role's policy allows,
//! and holds it (drift) otherwise — see docs/planner.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bootdata::Mac;
use roundhouse_plan::{AppliedDigest, Installed, NodeState, ProvisionPath, Timestamp};

use crate::record::Change;
use crate::{StateStore, StoreError};

/// Flag files hold one domain; anything longer is not one of them.
const MAX_FLAG_FILE: u64 = 4096;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Nodes adopted: MAC and domain, ordered by MAC.
    pub adopted: Vec<(Mac, String)>,
    /// Flag files not adopted, with the reason (already known, empty, unreadable…).
    pub skipped: Vec<(PathBuf, String)>,
    /// Entries of `cluster-assets` whose names are not MACs (Lokomotive keeps its other
    /// assets there too); not errors.
    pub ignored: usize,
}

/// Why an import could not run.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// `<asset_dir>/cluster-assets` is missing or unreadable.
    #[error("reading Lokomotive flag files in {}: {source}", dir.display())]
    Read {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adopts every `<asset_dir>/cluster-assets/<MAC>` flag file into `store` as installed by PXE
/// with an unknown applied digest. MACs that already have state are left alone (importing
/// twice is harmless), and so are flag files that do not hold a plausible domain. Flag files
/// spelling one MAC differently count once if they agree on the domain; if they disagree the
/// MAC is not adopted and the report says why.
pub fn import_lokomotive(
    store: &dyn StateStore,
    asset_dir: &Path,
    at: Timestamp,
) -> Result<ImportReport, ImportError> {
    let dir = asset_dir.join("cluster-assets");
    let read_err = |source| ImportError::Read {
        dir: dir.clone(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(read_err)?
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    // Directory order is arbitrary; sort so reports and event order are reproducible.
    entries.sort_by_key(|e| e.file_name());

    let mut report = ImportReport::default();
    // Go's MAC parser accepts several spellings, so two files can name one MAC: group first.
    let mut found: BTreeMap<Mac, Vec<(PathBuf, String)>> = BTreeMap::new();
    for entry in entries {
        let path = entry.path();
        let Some(mac) = entry.file_name().to_str().and_then(|n| Mac::parse(n).ok()) else {
            report.ignored += 1;
            continue;
        };
        match read_flag_file(&path) {
            Ok(domain) => found.entry(mac).or_default().push((path, domain)),
            Err(why) => report.skipped.push((path, why)),
        }
    }

    let mut adopt = Vec::new();
    for (mac, files) in found {
        let domain = files[0].1.clone();
        if files.iter().any(|(_, d)| *d != domain) {
            // Which one is stale is unknowable here; guessing would either wipe a healthy node
            // or SSH into the wrong one later.
            let list: Vec<String> = files
                .iter()
                .map(|(p, d)| format!("{} ({d})", p.display()))
                .collect();
            let why = format!(
                "conflicting flag files for {mac}: {}; none adopted, remove the stale one and import again",
                list.join(", ")
            );
            report
                .skipped
                .extend(files.into_iter().map(|(p, _)| (p, why.clone())));
            continue;
        }
        let mut files = files.into_iter();
        let Some((path, _)) = files.next() else {
            continue;
        };
        report
            .skipped
            .extend(files.map(|(p, _)| (p, format!("{mac} is also named by another flag file"))));
        if let Some(existing) = store.node(&mac)?
            && existing.state != NodeState::Unknown
        {
            report.skipped.push((
                path,
                format!(
                    "{mac} already has state ({}); left as it is",
                    existing.state.name()
                ),
            ));
            continue;
        }
        adopt.push((
            mac,
            Change::Adopt(Installed {
                digest: AppliedDigest::Unknown,
                path: ProvisionPath::Pxe,
                domain: domain.clone(),
                kernel_args: None,
                at,
            }),
        ));
        report.adopted.push((mac, domain));
    }
    // One transaction: an import is all or nothing, and costs one commit however many nodes.
    store.apply_batch(adopt, at)?;
    Ok(report)
}

fn read_flag_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FLAG_FILE {
        return Err(format!(
            "{} bytes is too long for a flag file holding a domain",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    // `echo <domain> > file` leaves a trailing newline.
    let domain = text.trim();
    if domain.is_empty() {
        return Err("empty flag file (Lokomotive writes the node's domain)".into());
    }
    if domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{domain:?} is not a domain"));
    }
    Ok(domain.to_string())
}
