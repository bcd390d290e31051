//! The simulator process of a lab: `roundhouse lab fleet-run SPEC` (hidden) runs the fleet
//! until SIGTERM, like the `roundhouse-sim` binary, so the lab needs nothing but roundhouse.

use std::path::Path;

use roundhouse_sim::{Fleet, FleetSpec};

use crate::error::LabError;

/// Name of the ready file in the simulator's state directory: the control address and the
/// machine table, written once every machine is up.
pub const READY_FILE: &str = "fleet.json";

/// Runs the fleet of the spec at `spec_path` until SIGINT or SIGTERM, then powers every
/// machine off and removes its mounts.
pub fn run(spec_path: &Path) -> Result<(), LabError> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let text = std::fs::read_to_string(spec_path).map_err(LabError::io(spec_path))?;
    let spec = FleetSpec::parse(&text).map_err(|e| LabError::Other(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Other(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        let fleet = Fleet::start(spec).await.map_err(|e| match e {
            roundhouse_sim::FleetError::Sandbox(e) => LabError::Prerequisites(format!("  - {e}")),
            e => LabError::Other(e.to_string()),
        })?;
        let ready = serde_json::json!({
            "control": fleet.control_addr().to_string(),
            "machines": fleet.table(),
        });
        let dir = fleet.spec().state_dir.clone();
        let path = dir.join(READY_FILE);
        let tmp = dir.join(format!("{READY_FILE}.tmp"));
        // Written beside and renamed, so `lab up` never reads half of it.
        std::fs::write(&tmp, ready.to_string()).map_err(LabError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(LabError::io(&path))?;
        eprintln!(
            "fleet ready: {} machines, control {}",
            fleet.table().len(),
            fleet.control_addr()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| LabError::Other(format!("installing a SIGTERM handler: {e}")))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!("fleet stopping");
        let _ = std::fs::remove_file(&path);
        fleet.shutdown().await;
        eprintln!("fleet stopped");
        Ok(())
    })
}
