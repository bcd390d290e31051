//! Running the boot server: loading the data directory, binding, reloading on change, TLS and
//! graceful shutdown. The CLI's `roundhouse serve` is a thin wrapper around [`Server`].

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::http::{AppState, Snapshot, app};
use crate::index::{self, Index, LoadError, Problem};
use crate::state::{
    FetchJournal, FileJournal, FileNetbootState, MemoryJournal, NETBOOT_FILE, NetbootState,
};

/// Settings of a boot server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port (see [`Server::local_addr`]).
    pub address: SocketAddr,
    /// matchbox data directory. `None` serves nothing but the bootstrap script and assets.
    pub data_path: Option<PathBuf>,
    /// Directory served under `/assets/`.
    pub assets_path: Option<PathBuf>,
    /// Roundhouse state directory (netboot state, fetch journal). Default: `<data>/roundhouse`.
    pub state_path: Option<PathBuf>,
    /// How often to look for changes in the data and state directories; zero disables reload.
    pub reload_interval: Duration,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Journal records kept in memory.
    pub journal_records: usize,
    /// Journal file size before rotation.
    pub journal_max_bytes: u64,
    /// Largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// Threads serving plain HTTP connections (default: one per CPU, as nginx's
    /// `worker_processes auto`).
    pub workers: usize,
}

impl ServeConfig {
    /// Defaults for everything but the address.
    pub fn new(address: SocketAddr) -> ServeConfig {
        ServeConfig {
            address,
            data_path: None,
            assets_path: None,
            state_path: None,
            reload_interval: Duration::from_secs(2),
            tls: None,
            journal_records: crate::http::DEFAULT_JOURNAL_RECORDS,
            journal_max_bytes: 64 << 20,
            max_header_bytes: 16 * 1024,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    fn state_dir(&self) -> Option<PathBuf> {
        self.state_path
            .clone()
            .or_else(|| self.data_path.as_ref().map(|d| d.join("roundhouse")))
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be loaded at start.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The netboot state file exists but cannot be used; gating would silently be off.
    #[error("{0} (fix or remove it: without it installed machines would be reinstalled)")]
    State(#[from] crate::state::StateError),
    /// `groups/` or `profiles/` is missing from a data directory that has other content.
    #[error(
        "data directory {} has no {} directory: a damaged or half-copied data directory would serve no machine (create an empty one if that is what you mean)",
        data.display(),
        dirs.iter().map(|d| format!("{d}/")).collect::<Vec<_>>().join(" or ")
    )]
    MissingDir {
        /// The data directory.
        data: PathBuf,
        /// `groups`, `profiles`.
        dirs: Vec<String>,
    },
    /// Files that others can modify (they decide what machines install).
    #[error("refusing to serve files others can modify: {}", list_problems(.0))]
    Insecure(Vec<Problem>),
    /// `netboot.json` was loaded before and is gone now (reloads only: the last good gating
    /// stays in service).
    #[error(
        "{} disappeared after it was loaded; keeping the gating loaded last (installed machines keep booting from disk). Restore it (roundhouse apply rewrites it); to turn gating off on purpose, write {{\"format\":\"{}\",\"nodes\":{{}}}} into it",
        .0.display(),
        crate::state::NETBOOT_FORMAT
    )]
    NetbootGone(PathBuf),
    /// At start: no `netboot.json`, but the fetch journal shows gating was on.
    #[error(
        "{} is missing, but the fetch journal in {} shows machines told to boot from their disk: gating was on, and serving without it would reinstall installed machines. Restore it (roundhouse apply rewrites it), or, to turn gating off on purpose, write {{\"format\":\"{}\",\"nodes\":{{}}}} into it",
        netboot.display(),
        journal.display(),
        crate::state::NETBOOT_FORMAT
    )]
    NetbootMissing {
        /// The missing file.
        netboot: PathBuf,
        /// The state directory whose journal shows local-boot answers.
        journal: PathBuf,
    },
    /// The state directory could not be opened for the fetch journal.
    #[error("opening fetch journal in {path}: {source}")]
    Journal {
        /// The state directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("loading TLS certificate/key: {0}")]
    Tls(String),
    /// Binding or serving failed.
    #[error("listening on {address}: {source}")]
    Io {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn list_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether anything was ever published into `data` (a fresh, empty data directory, as a lab
/// creates before the first `apply`, may lack `groups/` and `profiles/`).
fn published(data: &Path) -> bool {
    [
        "groups",
        "profiles",
        "ignition",
        "generic",
        "render-manifest.json",
    ]
    .iter()
    .any(|e| std::fs::symlink_metadata(data.join(e)).is_ok())
}

/// A loaded, bound, not yet running boot server.
pub struct Server {
    config: ServeConfig,
    listener: std::net::TcpListener,
    state: AppState,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    /// Fingerprints (full, quick) of the data taken just before it was loaded: the reload
    /// loop compares against these, so a change made while loading or before the loop first
    /// runs is not missed (requests are answered on other threads, so a client can see the
    /// server up and change the data before the loop's first look).
    loaded: (u64, u64),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads the data directory and state, and binds the listening socket.
    pub fn bind(config: ServeConfig) -> Result<Server, ServerError> {
        let loaded = match &config.data_path {
            Some(data) => {
                let sd = config.state_dir();
                (
                    fingerprint(data, sd.as_deref()),
                    quick_fingerprint(data, sd.as_deref()),
                )
            }
            None => (0, 0),
        };
        let snapshot = match &config.data_path {
            Some(data) => {
                let snap = load_snapshot(data, config.state_dir().as_deref())?;
                let r = snap.index.report();
                if !r.missing_dirs.is_empty() {
                    if published(data) {
                        return Err(ServerError::MissingDir {
                            data: data.clone(),
                            dirs: r.missing_dirs.clone(),
                        });
                    }
                    tracing::warn!(data = %data.display(), "empty data directory: serving no machine until something is published");
                }
                if !r.insecure.is_empty() {
                    return Err(ServerError::Insecure(r.insecure.clone()));
                }
                for p in &snap.index.report().problems {
                    tracing::warn!(path = %p.path, reason = %p.reason, "skipping unusable file");
                }
                let r = snap.index.report();
                tracing::info!(
                    data = %data.display(),
                    groups = r.groups,
                    profiles = r.profiles,
                    files = r.files,
                    gating = snap.netboot.is_some(),
                    "loaded data directory"
                );
                snap
            }
            None => Snapshot::new(Index::empty()),
        };
        let journal = open_journal(&config)?;
        if snapshot.netboot.is_none()
            && let Some(dir) = config.state_dir()
            && journal
                .recent(&crate::state::JournalQuery::default())
                .iter()
                .any(|r| r.local_boot)
        {
            return Err(ServerError::NetbootMissing {
                netboot: dir.join(NETBOOT_FILE),
                journal: dir,
            });
        }
        let mut builder = AppState::builder(snapshot).journal(journal);
        if let Some(assets) = &config.assets_path {
            builder = builder.assets(assets);
        }
        let state = builder.build();
        state.metrics().loads_ok.fetch_add(1, Ordering::Relaxed);
        let tls = match &config.tls {
            Some((cert, key)) => Some(rustls_config(cert, key)?),
            None => None,
        };
        let listener =
            std::net::TcpListener::bind(config.address).map_err(|source| ServerError::Io {
                address: config.address,
                source,
            })?;
        Ok(Server {
            config,
            listener,
            state,
            tls,
            loaded,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.address)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The shared state (for embedding and tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting and lets requests in flight
    /// finish (up to 10 s).
    ///
    /// Plain HTTP is served nginx-style: [`ServeConfig::workers`] threads, each with its own
    /// single-threaded runtime, and every connection lives on one of them from accept to close
    /// (no work stealing, no cross-thread wake-ups per request). The hot routes are answered
    /// directly ([`AppState::answer_fast`]); everything else goes through the router.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let address = self.local_addr();
        let io_err = |source| ServerError::Io { address, source };
        let reloader = match (&self.config.data_path, self.config.reload_interval) {
            (Some(data), interval) if !interval.is_zero() => Some(tokio::spawn(reload_loop(
                self.state.clone(),
                data.clone(),
                self.config.state_dir(),
                interval,
                self.loaded,
            ))),
            _ => None,
        };
        self.listener.set_nonblocking(true).map_err(io_err)?;
        let result = match self.tls {
            Some(tls) => {
                let handle = axum_server::Handle::new();
                let shutdown_handle = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    tracing::info!("shutting down: finishing requests in flight");
                    shutdown_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
                });
                let service =
                    app(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
                let mut server = axum_server::from_tcp_rustls(self.listener, tls).handle(handle);
                configure(server.http_builder(), self.config.max_header_bytes);
                server.serve(service).await
            }
            None => {
                let mut http = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                configure(&mut http, self.config.max_header_bytes);
                serve_plain(
                    self.listener,
                    self.state.clone(),
                    http,
                    self.config.workers.max(1),
                    shutdown,
                )
                .await
            }
        };
        if let Some(r) = reloader {
            r.abort();
        }
        result.map_err(io_err)
    }
}

/// How long requests in flight may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

type Http = hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>;

/// What every connection of a worker shares.
struct Worker {
    state: AppState,
    router: axum::Router,
    http: Http,
}

/// Accepts on the caller's runtime and hands connections round-robin to `workers` threads.
async fn serve_plain(
    listener: std::net::TcpListener,
    state: AppState,
    http: Http,
    workers: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Worker {
        router: app(state.clone()),
        state,
        http,
    });
    let mut queues = Vec::with_capacity(workers);
    let mut finished = Vec::with_capacity(workers);
    for i in 0..workers {
        // Built here so a failure surfaces as an error of `run`, not as a silent dead worker.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (queue, incoming) = tokio::sync::mpsc::unbounded_channel();
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let (shared, stop) = (shared.clone(), stop_rx.clone());
        std::thread::Builder::new()
            .name(format!("http-worker-{i}"))
            .spawn(move || {
                runtime.block_on(worker(incoming, stop, shared));
                // Dropping the runtime closes connections that outlived the grace period.
                drop(runtime);
                let _ = done.send(());
            })?;
        queues.push(queue);
        finished.push(finished_rx);
    }

    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = 0usize;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Responses go out in one write; do not let Nagle hold the next one.
                    let _ = stream.set_nodelay(true);
                    // Re-registered with the worker's own reactor there.
                    if let Ok(stream) = stream.into_std() {
                        let _ = queues[next % workers].send((stream, peer));
                        next = next.wrapping_add(1);
                    }
                }
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
    drop(listener);
    let _ = stop_tx.send(true);
    drop(queues);
    for f in finished {
        let _ = f.await;
    }
    Ok(())
}

/// One worker thread's loop: serve the connections handed to it until told to stop, then give
/// them [`SHUTDOWN_GRACE`] to finish.
async fn worker(
    mut incoming: tokio::sync::mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    shared: Arc<Worker>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.recv() => match next {
                Some((stream, peer)) => {
                    connections.spawn(connection(stream, peer, shared.clone(), stop.clone()));
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

async fn connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Worker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let shared = service_shared.clone();
        async move {
            if let Some(response) = shared
                .state
                .answer_fast(req.method(), req.uri(), Some(peer))
            {
                return Ok::<_, std::convert::Infallible>(response);
            }
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(shared.router.clone(), req).await
        }
    });
    let conn = shared
        .http
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn configure(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    max_header_bytes: usize,
) {
    // hyper answers 431 when the request head outgrows its buffer; 8 KiB is its floor. Its
    // default header limit is the 100 we document: setting it explicitly would make hyper
    // allocate and fill a 100-slot vector for every request instead of using stack space.
    builder
        .http1()
        .max_buf_size(max_header_bytes.max(8192))
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder
        .http2()
        .max_header_list_size(max_header_bytes.max(8192) as u32)
        .max_concurrent_streams(256);
}

fn open_journal(config: &ServeConfig) -> Result<Arc<dyn FetchJournal>, ServerError> {
    // Persist only where roundhouse state lives: an explicit --state-path, or an existing
    // `<data>/roundhouse`. A plain matchbox data directory is never written to.
    let dir = match (&config.state_path, config.state_dir()) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(d)) if d.is_dir() => Some(d),
        _ => None,
    };
    match dir {
        Some(dir) => {
            let j = FileJournal::open(&dir, config.journal_records, config.journal_max_bytes)
                .map_err(|source| ServerError::Journal {
                    path: dir.clone(),
                    source,
                })?;
            tracing::info!(dir = %dir.display(), "recording fetches");
            Ok(Arc::new(j))
        }
        None => Ok(Arc::new(MemoryJournal::new(config.journal_records))),
    }
}

/// Loads the data directory and the netboot state into one snapshot.
pub fn load_snapshot(data: &Path, state_dir: Option<&Path>) -> Result<Snapshot, ServerError> {
    let index = index::load(data)?;
    let netboot = match state_dir {
        Some(dir) => FileNetbootState::load(dir)?.map(|s| Arc::new(s) as Arc<dyn NetbootState>),
        None => None,
    };
    Ok(Snapshot {
        index,
        netboot,
        loaded_at: SystemTime::now(),
    })
}

/// Polls between full scans of the data directory. Directory mtimes (checked every poll)
/// catch files created, removed or renamed into place at once; a file edited in place is
/// caught by the next full scan.
const FULL_SCAN_EVERY: u32 = 5;

/// A very cheap change detector: the data directory (which a whole-directory swap replaces),
/// its four subdirectories (whose mtimes change when entries are added, removed or renamed)
/// and the netboot state file.
pub fn quick_fingerprint(data: &Path, state_dir: Option<&Path>) -> u64 {
    let mut h = DefaultHasher::new();
    let mut stat = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(p) {
            (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        } else {
            0u8.hash(&mut h);
        }
    };
    stat(data);
    for sub in ["groups", "profiles", "ignition", "generic"] {
        stat(&data.join(sub));
    }
    if let Some(dir) = state_dir {
        stat(&dir.join(NETBOOT_FILE));
    }
    h.finish()
}

/// A summary of every file a load reads: names, sizes, mtimes and inodes. Entries are combined
/// order-independently, so no sorting or path list is needed for tens of thousands of files.
pub fn fingerprint(data: &Path, state_dir: Option<&Path>) -> u64 {
    fn entry_hash(path: &Path, meta: &std::fs::Metadata) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let mut h = DefaultHasher::new();
        path.hash(&mut h);
        (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()).hash(&mut h);
        h.finish()
    }
    fn visit(dir: &Path, depth: usize, acc: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Follows symlinks, as the loader does.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            *acc = acc.wrapping_add(entry_hash(&path, &meta));
            if meta.is_dir() && depth < index::MAX_DEPTH {
                visit(&path, depth + 1, acc);
            }
        }
    }
    let mut acc = quick_fingerprint(data, state_dir);
    for sub in ["groups", "profiles", "ignition", "generic"] {
        visit(&data.join(sub), 0, &mut acc);
    }
    acc
}

/// Whether a new load may replace the serving one: it must not bring problems the serving
/// one did not have (a half-written file must never drop a group or profile from service).
fn new_problems<'a>(old: &[Problem], new: &'a [Problem]) -> Vec<&'a Problem> {
    let old: HashSet<&Problem> = old.iter().collect();
    new.iter().filter(|p| !old.contains(p)).collect()
}

/// Computes fingerprints of the data on a thread of its own at the lowest CPU priority.
///
/// A full scan stats every file: about 0.17 s of CPU for a 10,000-node data directory. Run
/// on the blocking pool at normal priority, that stole a share of a CPU from the HTTP workers
/// every few seconds, and it was what set p99 latency under load (docs/benchmarks.md). At
/// nice 19 the scheduler gives it about 1.5% of a busy CPU, so a reload is noticed a little
/// later on a saturated machine and requests never wait for it.
struct Scanner {
    requests: std::sync::mpsc::Sender<(bool, tokio::sync::oneshot::Sender<u64>)>,
}

impl Scanner {
    /// `None` (logged) if the thread cannot be started: the server then runs without reloading.
    fn start(data: PathBuf, state_dir: Option<PathBuf>) -> Option<Scanner> {
        let (requests, incoming) =
            std::sync::mpsc::channel::<(bool, tokio::sync::oneshot::Sender<u64>)>();
        let started = std::thread::Builder::new()
            .name("reload-scan".into())
            .spawn(move || {
                lower_priority();
                for (full, reply) in incoming {
                    let fp = if full {
                        fingerprint(&data, state_dir.as_deref())
                    } else {
                        quick_fingerprint(&data, state_dir.as_deref())
                    };
                    let _ = reply.send(fp);
                }
            });
        match started {
            Ok(_) => Some(Scanner { requests }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the reload scanner; changes to the data directory need a restart");
                None
            }
        }
    }

    async fn scan(&self, full: bool) -> u64 {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.requests.send((full, reply)).is_err() {
            return 0;
        }
        answer.await.unwrap_or(0)
    }
}

/// Nice 19 for the calling thread (Linux keeps a nice value per thread).
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
        tracing::debug!(error = %e, "could not lower the reload scanner's priority");
    }
}

async fn reload_loop(
    state: AppState,
    data: PathBuf,
    state_dir: Option<PathBuf>,
    interval: Duration,
    loaded: (u64, u64),
) {
    let Some(scanner) = Scanner::start(data.clone(), state_dir.clone()) else {
        return;
    };
    let fp = |full: bool| scanner.scan(full);
    let (mut seen, mut seen_quick) = loaded;
    let mut tick: u32 = 0;
    loop {
        tokio::time::sleep(interval).await;
        tick = tick.wrapping_add(1);
        let quick = fp(false).await;
        if quick == seen_quick && !tick.is_multiple_of(FULL_SCAN_EVERY) {
            continue;
        }
        seen_quick = quick;
        let now = fp(true).await;
        if now == seen {
            continue;
        }
        // Let a writer finish: load only once the tree has been still for a moment.
        tokio::time::sleep(interval.min(Duration::from_millis(200))).await;
        let settled = fp(true).await;
        if settled != now {
            continue;
        }
        let (d, s) = (data.clone(), state_dir.clone());
        let loaded = tokio::task::spawn_blocking(move || load_snapshot(&d, s.as_deref())).await;
        let metrics = state.metrics();
        match loaded {
            Ok(Ok(snap)) => {
                let current = state.snapshot();
                let fresh = new_problems(
                    &current.index.report().problems,
                    &snap.index.report().problems,
                );
                if snap.netboot.is_none() && current.netboot.is_some() {
                    // Fail closed: gating lost now would hand the installer to installed
                    // machines. Keep everything loaded last until netboot.json is back.
                    let gone = ServerError::NetbootGone(
                        state_dir
                            .as_deref()
                            .map_or_else(|| NETBOOT_FILE.into(), |d| d.join(NETBOOT_FILE)),
                    );
                    tracing::error!(error = %gone, "not reloading; still serving the previous data and gating");
                    state.set_health(|h| h.netboot = Some(gone.to_string()));
                    metrics.loads_failed.fetch_add(1, Ordering::Relaxed);
                    seen = settled;
                } else if fresh.is_empty() {
                    let r = snap.index.report();
                    tracing::info!(
                        groups = r.groups,
                        profiles = r.profiles,
                        files = r.files,
                        gating = snap.netboot.is_some(),
                        "reloaded data directory"
                    );
                    state.swap(snap);
                    state.set_health(|h| *h = crate::http::Health::default());
                    metrics.loads_ok.fetch_add(1, Ordering::Relaxed);
                    seen = settled;
                } else {
                    for p in &fresh {
                        tracing::error!(path = %p.path, reason = %p.reason, "not reloading: unusable file; still serving the previous data");
                    }
                    let why = format!(
                        "latest load rejected, serving older data: {}",
                        list_problems(&fresh.into_iter().cloned().collect::<Vec<_>>())
                    );
                    state.set_health(|h| h.data = Some(why));
                    metrics.loads_failed.fetch_add(1, Ordering::Relaxed);
                    seen = settled;
                }
            }
            Ok(Err(e)) => {
                metrics.loads_failed.fetch_add(1, Ordering::Relaxed);
                // A directory mid-swap or missing is retried on the next tick; a broken
                // state file waits for the next change.
                if matches!(e, ServerError::State(_)) {
                    tracing::error!(error = %e, "not reloading; still serving the previous data and gating");
                    state.set_health(|h| h.netboot = Some(e.to_string()));
                    seen = settled;
                } else {
                    tracing::warn!(error = %e, "not reloading; still serving the previous data");
                    state.set_health(|h| h.data = Some(e.to_string()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed");
                metrics.loads_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn rustls_config(
    cert: &Path,
    key: &Path,
) -> Result<axum_server::tls_rustls::RustlsConfig, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_rejects_only_new_problems() {
        let p = |path: &str| Problem {
            path: path.into(),
            reason: "bad".into(),
        };
        assert!(new_problems(&[p("a")], &[p("a")]).is_empty());
        assert_eq!(new_problems(&[p("a")], &[p("a"), p("b")]), vec![&p("b")]);
        assert!(new_problems(&[p("a")], &[]).is_empty());
    }

    #[test]
    fn fingerprint_sees_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("groups")).unwrap();
        let a = fingerprint(dir.path(), None);
        std::fs::write(dir.path().join("groups/g.json"), "{}").unwrap();
        let b = fingerprint(dir.path(), None);
        assert_ne!(a, b);
        std::fs::write(dir.path().join("groups/g.json"), "{\"id\":\"g\"}").unwrap();
        assert_ne!(b, fingerprint(dir.path(), None));
    }

    #[test]
    fn quick_fingerprint_sees_entries_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("profiles")).unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let a = quick_fingerprint(dir.path(), Some(&state));
        std::fs::write(dir.path().join("profiles/.tmp"), "{}").unwrap();
        std::fs::rename(
            dir.path().join("profiles/.tmp"),
            dir.path().join("profiles/p.json"),
        )
        .unwrap();
        let b = quick_fingerprint(dir.path(), Some(&state));
        assert_ne!(a, b, "rename into place");
        std::fs::write(state.join(NETBOOT_FILE), "{}").unwrap();
        assert_ne!(
            b,
            quick_fingerprint(dir.path(), Some(&state)),
            "netboot.json"
        );
    }
}
