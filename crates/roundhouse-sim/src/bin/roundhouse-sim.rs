//! `roundhouse-sim SPEC` runs a simulated fleet until SIGINT or SIGTERM. When the fleet is up
//! it prints one JSON line to stdout — `{"control": "127.0.0.1:PORT", "machines": [...]}` —
//! and writes the same to `<state_dir>/fleet.json`.

use std::process::ExitCode;

use roundhouse_sim::{Fleet, FleetSpec};

const USAGE: &str = "usage: roundhouse-sim SPEC.{json,toml}\n\nRuns the simulated fleet described by SPEC (see docs/simulator.md) until SIGINT/SIGTERM.";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0] == "-h" || args[0] == "--help" {
        eprintln!("{USAGE}");
        return if args.first().is_some_and(|a| a == "-h" || a == "--help") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    let text = match std::fs::read_to_string(&args[0]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("roundhouse-sim: reading {}: {e}", args[0]);
            return ExitCode::from(2);
        }
    };
    let spec = match FleetSpec::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("roundhouse-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let fleet = match Fleet::start(spec).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("roundhouse-sim: {e}");
            return ExitCode::from(1);
        }
    };
    let ready = serde_json::json!({
        "control": fleet.control_addr().to_string(),
        "machines": fleet.table(),
    });
    let line = ready.to_string();
    let _ = std::fs::write(fleet.spec().state_dir.join("fleet.json"), &line);
    println!("{line}");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("roundhouse-sim: installing a SIGTERM handler: {e}");
            return ExitCode::from(1);
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    fleet.shutdown().await;
    ExitCode::SUCCESS
}
