//! `roundhouse serve`: the boot server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use roundhouse_boot::{ServeConfig, Server};

/// Serve iPXE scripts, GRUB configs, Ignition configs and assets to machines.
///
/// Compatible with matchbox's HTTP API and data directory (profiles/, groups/, ignition/,
/// generic/). Changes to the data directory are picked up without a restart. When roundhouse
/// state is present (<STATE_PATH>/netboot.json), machines marked installed are told to boot
/// from their local disk instead of reinstalling. See docs/boot-server.md.
///
/// Fail-safe: when netboot.json disappears or breaks while serving, the last good gating is
/// kept (installed machines keep booting from disk), an ERROR is logged, /healthz answers 503
/// and roundhouse_boot_netboot_state_ok is 0 until a valid file is back; a missing groups/ or
/// profiles/ likewise keeps the previous data (roundhouse_boot_data_ok 0). At start-up the same
/// damage is an error, as is a missing netboot.json when the fetch journal shows gating was
/// on. To turn gating off, write {"format":"roundhouse-netboot/v1","nodes":{}}. Ignition
/// configs its group or others can write are refused (render writes them 0600: run serve as
/// the user that renders).
///
/// Prints `listening on http://ADDRESS` once the socket is bound, so scripts may pass port 0
/// and read the port from stderr.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub address: SocketAddr,
    /// matchbox data directory (profiles/, groups/, ignition/, generic/).
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Directory served under /assets/.
    #[arg(long)]
    pub assets_path: Option<PathBuf>,
    /// Roundhouse state directory: netboot.json (gating) and the fetch journal.
    /// [default: <DATA_PATH>/roundhouse]
    #[arg(long)]
    pub state_path: Option<PathBuf>,
    /// Seconds between checks of the data directory for changes; 0 disables reloading.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub reload_interval: f64,
    /// PEM certificate chain: serve HTTPS (requires --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Fetch-journal records kept in memory (and replayed from disk at start).
    #[arg(long, default_value_t = 10_000)]
    pub journal_records: usize,
    /// Log format: text or json. The level is set with RUST_LOG (default: info).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let _log_guard = init_logging(&args.log_format)?;
    if !(args.reload_interval.is_finite() && args.reload_interval >= 0.0) {
        anyhow::bail!("--reload-interval must be a number of seconds, 0 or more");
    }
    let mut config = ServeConfig::new(args.address);
    config.data_path = args.data_path;
    config.assets_path = args.assets_path;
    config.state_path = args.state_path;
    config.reload_interval = Duration::from_secs_f64(args.reload_interval);
    config.journal_records = args.journal_records;
    config.tls = args.tls_cert.zip(args.tls_key);
    if let Some(data) = &config.data_path
        && !data.is_dir()
    {
        anyhow::bail!("--data-path {} is not a directory", data.display());
    }
    // HTTP connections are served by the server's own worker threads (one runtime each); this
    // runtime only accepts connections and polls the data directory for changes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).context("starting the boot server")?;
        // Scripts read this line to learn the port; keep its shape stable.
        eprintln!("listening on {}://{}", server.scheme(), server.local_addr());
        server.run(shutdown_signal()).await.context("serving")?;
        Ok(())
    })
}

/// Log lines are batched per thread and written in one `write` per thread at most every 50 ms
/// (warnings and errors at once): a synchronous write to stderr per access-log line cost up to
/// 45% of the server's throughput, and a writer thread fed line by line through a channel
/// tripled p99 latency on a 2-core machine (docs/benchmarks.md). Lines are never dropped; keep
/// the returned guard alive so the last ones are written on shutdown.
fn init_logging(format: &str) -> anyhow::Result<roundhouse_boot::logwrite::FlushGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = roundhouse_boot::logwrite::BatchedLog::new(std::io::stderr())
        .context("starting the log writer")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Another command may have installed a subscriber already; keep that one.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        // The default text lines, formatted at a fraction of the cost (the access log was the
        // largest cost of a request).
        builder
            .event_format(roundhouse_boot::logfmt::FastText::default())
            .try_init()
    };
    Ok(guard)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
