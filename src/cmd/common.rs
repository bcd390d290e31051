//! Arguments shared by the commands that read a cluster file.

use std::path::PathBuf;

use roundhouse_config::{Cluster, LoadOptions};

use crate::exit::Exit;

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
