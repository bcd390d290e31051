//! Loads a cluster file and prints its diagnostics, or a summary and the load time.
//!
//! `cargo run --release -p roundhouse-config --example check -- CLUSTER_FILE`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: check CLUSTER_FILE");
        return ExitCode::from(64);
    };
    let start = Instant::now();
    let result = roundhouse_config::load(&path, &roundhouse_config::LoadOptions::default());
    let elapsed = start.elapsed();
    match result {
        Ok(cluster) => {
            println!(
                "{}: cluster {:?}, {} nodes, loaded in {elapsed:?}",
                path.display(),
                cluster.name,
                cluster.nodes.len()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("({} diagnostics in {elapsed:?})", diags.0.len());
            ExitCode::from(65)
        }
    }
}
