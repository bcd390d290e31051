//! Arguments shared by the commands that read a cluster file.

use std::path::PathBuf;

use roundhouse_config::{Cluster, LoadOptions};
use roundhouse_store_pg::{PgLockError, StateLocation, WriteSession};

use crate::exit::{self, Exit};

/// The cluster file and its variables.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The cluster file (HCL). See docs/cluster-file.md.
    #[arg(value_name = "CLUSTER_FILE")]
    pub cluster_file: PathBuf,
    /// Set a variable: --var name=value (overrides defaults and --var-file).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Read variables from an HCL file of `name = value` lines.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

impl ConfigArgs {
    /// Loads and validates the cluster file; invalid input maps to exit code 65.
    pub fn load(&self) -> anyhow::Result<Cluster> {
        roundhouse_config::load(
            &self.cluster_file,
            &LoadOptions {
                vars: self.vars.clone(),
                var_files: self.var_files.clone(),
                env: None,
            },
        )
        .map_err(Exit::invalid)
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// Human or machine output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Where the cluster's state lives: `state_url` (or `ROUNDHOUSE_STATE_URL`) or the embedded
/// store in `asset_dir`. A URL the client cannot use is invalid input.
pub fn location(cluster: &Cluster) -> anyhow::Result<StateLocation> {
    StateLocation::new(
        &cluster.asset_dir,
        cluster.state_url.as_deref(),
        cluster.state_password_file.as_deref(),
    )
    .map_err(|e| Exit::invalid(format!("error: {}: {e}", cluster.source.display())))
}

/// Takes the apply lock for `purpose` (the file lock, or the database's advisory lock, after
/// connecting and bringing its schema up to date); a held lock is a plain failure naming the
/// holder, a database that cannot be reached is [`exit::STATE_UNREADABLE`]. Nothing is
/// written before this succeeds.
pub fn begin_write(cluster: &Cluster, purpose: &str) -> anyhow::Result<WriteSession> {
    location(cluster)?
        .begin_write(purpose)
        .map_err(|e| match e {
            PgLockError::Held(e) => anyhow::Error::new(Exit {
                code: exit::FAILURE,
                message: format!("error: {e}"),
            }),
            PgLockError::Store(e) => crate::cmd::plan::store_error(e),
            e @ PgLockError::File(_) => e.into(),
        })
}

/// Writes `bytes` to `path` as a file only its owner can read (0600 whatever the umask),
/// atomically: a temporary file beside it, synced, renamed into place.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
