//! The HTTP transport: matchbox's routes plus health, metrics and the fetch-journal API.
//!
//! Handlers only translate: they parse labels, ask the [`Index`] for a body and turn
//! [`ServeError`]s into status codes. Everything a request needs is in memory; no handler reads
//! the data directory.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bootdata::Mac;
use bytes::Bytes;

use crate::index::{Body, GroupEntry, Index, ServeError};
use crate::labels::Labels;
use crate::metrics::{Gauges, Metrics, Route};
use crate::render;
use crate::state::{Fetch, FetchJournal, JournalQuery, MemoryJournal, Netboot, NetbootState};

/// Longest query string accepted; longer ones get `414 URI Too Long`.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// Default number of journal records kept in memory.
pub const DEFAULT_JOURNAL_RECORDS: usize = 10_000;

const TEXT: &str = "text/plain; charset=utf-8";
/// matchbox's content type for `/metadata`, misspelling included: clients may compare it.
const METADATA_TYPE: &str = "plain/text";
const JSON: &str = "application/json";

/// One generation of everything requests read: the index and the netboot state loaded with it.
pub struct Snapshot {
    /// Groups, profiles and configs.
    pub index: Index,
    /// Netboot decisions from the state directory; `None` when there is no roundhouse state.
    pub netboot: Option<Arc<dyn NetbootState>>,
    /// When this generation was loaded.
    pub loaded_at: SystemTime,
}

impl Snapshot {
    /// A snapshot of `index` without roundhouse state, loaded now.
    pub fn new(index: Index) -> Snapshot {
        Snapshot {
            index,
            netboot: None,
            loaded_at: SystemTime::now(),
        }
    }
}

struct Shared {
    snapshot: ArcSwap<Snapshot>,
    netboot_override: Option<Arc<dyn NetbootState>>,
    journal: Arc<dyn FetchJournal>,
    metrics: Metrics,
    assets: Option<PathBuf>,
    /// Install-pending machines (with a `pending_since`) that were served an Ignition config,
    /// with the `pending_since` in effect then: that install's installer is running. Compared
    /// for equality, not as times, so the clocks of the writer of `netboot.json` and of this
    /// server need not agree. Only machines listed in the netboot state get an entry, so
    /// requests cannot grow it.
    installer_fetches: Mutex<HashMap<Mac, SystemTime>>,
    /// What is wrong with the data or state on disk, while the server keeps serving what it
    /// loaded last (`/healthz`, `/metrics`).
    health: Mutex<Health>,
}

/// Problems the server is riding out by serving what it loaded last. Both `None`: healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Why the latest load of the data directory was rejected (the serving index is older than
    /// the directory).
    pub data: Option<String>,
    /// Why `netboot.json` cannot be used (missing after a good load, invalid, unsafe mode): the
    /// server keeps the gating it loaded last.
    pub netboot: Option<String>,
}

impl Health {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.data.is_none() && self.netboot.is_none()
    }
}

/// The server's state, cheap to clone into handlers.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Builds an [`AppState`].
pub struct AppStateBuilder {
    snapshot: Snapshot,
    netboot: Option<Arc<dyn NetbootState>>,
    journal: Option<Arc<dyn FetchJournal>>,
    assets: Option<PathBuf>,
}

impl AppStateBuilder {
    /// Serves `/assets/` from this directory (otherwise `/assets/` is a 404).
    pub fn assets(mut self, dir: impl Into<PathBuf>) -> Self {
        self.assets = Some(dir.into());
        self
    }

    /// Uses this netboot state instead of the one loaded with each snapshot.
    pub fn netboot(mut self, state: Arc<dyn NetbootState>) -> Self {
        self.netboot = Some(state);
        self
    }

    /// Records fetches here (default: an in-memory journal).
    pub fn journal(mut self, journal: Arc<dyn FetchJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Finishes the state.
    pub fn build(self) -> AppState {
        AppState {
            shared: Arc::new(Shared {
                snapshot: ArcSwap::from_pointee(self.snapshot),
                netboot_override: self.netboot,
                journal: self
                    .journal
                    .unwrap_or_else(|| Arc::new(MemoryJournal::new(DEFAULT_JOURNAL_RECORDS))),
                metrics: Metrics::default(),
                assets: self.assets,
                installer_fetches: Mutex::default(),
                health: Mutex::default(),
            }),
        }
    }
}

impl AppState {
    /// Starts building a state serving `snapshot`.
    pub fn builder(snapshot: Snapshot) -> AppStateBuilder {
        AppStateBuilder {
            snapshot,
            netboot: None,
            journal: None,
            assets: None,
        }
    }

    /// A state serving `index`, with no assets, no gating and an in-memory journal.
    pub fn new(index: Index) -> AppState {
        AppState::builder(Snapshot::new(index)).build()
    }

    /// Replaces the serving snapshot. Requests in flight finish on the old one.
    pub fn swap(&self, snapshot: Snapshot) {
        self.shared.snapshot.store(Arc::new(snapshot));
    }

    /// The serving snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// What the server is riding out (see [`Health`]).
    pub fn health(&self) -> Health {
        self.lock_health().clone()
    }

    /// Updates the health: `f` changes it.
    pub fn set_health(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.lock_health());
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.shared.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `/healthz`: `200 ok` when healthy; `503` naming each problem when the server is serving
    /// data or gating older than what is on disk (it keeps serving; operator action needed).
    fn healthz_outcome(&self) -> Outcome {
        let health = self.lock_health();
        if health.is_ok() {
            return Outcome::text(StatusCode::OK, "ok\n");
        }
        let mut body = String::from("degraded\n");
        if let Some(why) = &health.netboot {
            body.push_str(&format!("netboot: {why}\n"));
        }
        if let Some(why) = &health.data {
            body.push_str(&format!("data: {why}\n"));
        }
        Outcome {
            status: StatusCode::SERVICE_UNAVAILABLE,
            content_type: TEXT,
            body: body.into(),
            note: AccessNote::default(),
        }
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The fetch journal.
    pub fn journal(&self) -> &Arc<dyn FetchJournal> {
        &self.shared.journal
    }

    fn netboot(&self, snap: &Snapshot) -> Option<Arc<dyn NetbootState>> {
        self.netboot_ref(snap).cloned()
    }

    fn netboot_ref<'a>(&'a self, snap: &'a Snapshot) -> Option<&'a Arc<dyn NetbootState>> {
        self.shared
            .netboot_override
            .as_ref()
            .or(snap.netboot.as_ref())
    }
}

/// The router: matchbox's HTTP API, `/healthz`, `/metrics` and `/roundhouse/v1/fetches`.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(home))
        .route("/boot.ipxe", get(boot_ipxe))
        .route("/boot.ipxe.0", get(boot_ipxe))
        .route("/ipxe", get(ipxe))
        .route("/grub", get(grub))
        .route("/ignition", get(ignition))
        .route("/generic", get(generic))
        .route("/metadata", get(metadata))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/roundhouse/v1/fetches", get(fetches))
        .fallback(not_found);
    if let Some(dir) = &state.shared.assets {
        router = router.nest_service("/assets", tower_http::services::ServeDir::new(dir));
    }
    router
        // A bug must cost one request a 500, not the connection or the process.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Details of an answer for the access log.
#[derive(Debug, Clone, Default)]
struct AccessNote {
    group: Option<Arc<str>>,
    mac: Option<Mac>,
    reason: Option<String>,
}

/// Bounds the query, times the request, counts it and writes the access log line (requests the
/// router answers; [`AppState::answer_fast`] does the same for the hot routes).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = Route::of_path(req.uri().path());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let client = client_of(req.extensions());
    let too_long = req.uri().query().is_some_and(|q| q.len() > MAX_QUERY_BYTES);
    let response = if too_long {
        text_response(StatusCode::URI_TOO_LONG, "414 query string too long\n")
    } else {
        next.run(req).await
    };
    let note = response.extensions().get::<AccessNote>();
    state.finish(
        route,
        &method,
        &path,
        client,
        response.status(),
        start,
        note.unwrap_or(&AccessNote::default()),
    );
    response
}

/// Formats small values (addresses) on the stack, so the access log allocates nothing.
struct StackText {
    buf: [u8; 64],
    len: usize,
}

impl StackText {
    fn of(value: impl std::fmt::Display) -> StackText {
        use std::fmt::Write as _;
        let mut t = StackText {
            buf: [0; 64],
            len: 0,
        };
        let _ = write!(t, "{value}");
        t
    }

    /// An address as `Display` writes it; IPv4 without the formatting machinery.
    fn ip(ip: IpAddr) -> StackText {
        let IpAddr::V4(v4) = ip else {
            return StackText::of(ip);
        };
        let mut t = StackText {
            buf: [0; 64],
            len: 0,
        };
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                t.push(b'.');
            }
            if octet >= 100 {
                t.push(b'0' + octet / 100);
            }
            if octet >= 10 {
                t.push(b'0' + octet / 10 % 10);
            }
            t.push(b'0' + octet % 10);
        }
        t
    }

    /// A MAC address as `Display` writes it (lower-case hex, colons).
    fn mac(mac: &Mac) -> StackText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = StackText {
            buf: [0; 64],
            len: 0,
        };
        for (i, b) in mac.octets().iter().enumerate() {
            if i > 0 {
                t.push(b':');
            }
            t.push(HEX[usize::from(b >> 4)]);
            t.push(HEX[usize::from(b & 0xf)]);
        }
        t
    }

    fn push(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn client_of(ext: &axum::http::Extensions) -> Option<SocketAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// The peer address, when the server was started with connection info (tests may not).
struct Client(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(client_of(&parts.extensions)))
    }
}

fn text_response(status: StatusCode, body: &'static str) -> Response {
    response(status, TEXT, Bytes::from_static(body.as_bytes()))
}

fn body_response(content_type: &'static str, body: Bytes) -> Response {
    response(StatusCode::OK, content_type, body)
}

/// A response with a body and its content type (hyper adds `content-length` and `date`).
fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut r = Response::new(axum::body::Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn home() -> Response {
    text_response(StatusCode::OK, "matchbox\n")
}

async fn not_found() -> Response {
    text_response(StatusCode::NOT_FOUND, "404 page not found\n")
}

async fn boot_ipxe() -> Response {
    text_response(StatusCode::OK, render::IPXE_BOOTSTRAP)
}

async fn healthz(State(state): State<AppState>) -> Response {
    let o = state.healthz_outcome();
    response(o.status, o.content_type, o.body)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let snap = state.snapshot();
    let report = snap.index.report();
    let gauges = Gauges {
        groups: report.groups,
        profiles: report.profiles,
        files: report.files,
        problems: report.problems.len(),
        loaded_at: snap
            .loaded_at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        gating: state.netboot(&snap).is_some(),
        journal_dropped: state.journal().dropped(),
        health: state.health(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(&gauges),
    )
        .into_response()
}

async fn fetches(State(state): State<AppState>, uri: Uri) -> Response {
    let labels = match Labels::parse(uri.query().unwrap_or("")) {
        Ok(l) => l,
        Err(e) => return bad_request(&e.to_string()).into_response(),
    };
    let limit = match labels.get("limit").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return bad_request("limit must be a number").into_response(),
    };
    let mac = match crate::labels::raw_value(uri.query().unwrap_or(""), "mac") {
        None => None,
        Some(raw) => match bootdata::Mac::parse(&raw) {
            Ok(m) => Some(m.to_string()),
            Err(_) => return bad_request("mac is not a MAC address").into_response(),
        },
    };
    let records = state.journal().recent(&JournalQuery { mac, limit });
    match serde_json::to_vec(&records) {
        Ok(body) => body_response(JSON, body.into()),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A finished answer, before it becomes a response.
struct Outcome {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    note: AccessNote,
}

impl Outcome {
    fn text(status: StatusCode, body: &'static str) -> Outcome {
        Outcome {
            status,
            content_type: TEXT,
            body: Bytes::from_static(body.as_bytes()),
            note: AccessNote::default(),
        }
    }

    /// The response, with the note attached for the router's access log.
    fn into_response(self) -> Response {
        let mut r = response(self.status, self.content_type, self.body);
        r.extensions_mut().insert(self.note);
        r
    }
}

fn bad_request(reason: &str) -> Outcome {
    Outcome {
        status: StatusCode::BAD_REQUEST,
        content_type: TEXT,
        body: format!("400 bad request: {reason}\n").into(),
        note: AccessNote {
            reason: Some(reason.to_string()),
            ..AccessNote::default()
        },
    }
}

async fn ipxe(State(s): State<AppState>, client: Client, uri: Uri) -> Response {
    s.serve(Route::Ipxe, &uri, client.0).into_response()
}

async fn grub(State(s): State<AppState>, client: Client, uri: Uri) -> Response {
    s.serve(Route::Grub, &uri, client.0).into_response()
}

async fn ignition(State(s): State<AppState>, client: Client, uri: Uri) -> Response {
    s.serve(Route::Ignition, &uri, client.0).into_response()
}

async fn generic(State(s): State<AppState>, client: Client, uri: Uri) -> Response {
    s.serve(Route::Generic, &uri, client.0).into_response()
}

async fn metadata(State(s): State<AppState>, client: Client, uri: Uri) -> Response {
    s.serve(Route::Metadata, &uri, client.0).into_response()
}

/// What a selecting route answered, before it becomes a response.
struct Answer {
    body: Body,
    content_type: &'static str,
    local_boot: bool,
}

impl AppState {
    /// Answers the hot routes (`GET` of `/ipxe`, `/ignition`, `/grub`, `/generic`, `/metadata`,
    /// `/`, `/boot.ipxe`, `/healthz`) directly, with the same bytes, metrics, journal and
    /// access log as the router, but without its per-request layers. `None` for anything else:
    /// hand it to [`app`].
    pub fn answer_fast(
        &self,
        method: &Method,
        uri: &Uri,
        client: Option<SocketAddr>,
    ) -> Option<Response> {
        if method != Method::GET {
            return None;
        }
        let path = uri.path();
        let route = Route::of_path(path);
        if !matches!(
            route,
            Route::Ipxe
                | Route::Ignition
                | Route::Grub
                | Route::Generic
                | Route::Metadata
                | Route::Home
                | Route::BootIpxe
                | Route::Healthz
        ) {
            return None;
        }
        let start = Instant::now();
        let outcome = if uri.query().is_some_and(|q| q.len() > MAX_QUERY_BYTES) {
            Outcome::text(StatusCode::URI_TOO_LONG, "414 query string too long\n")
        } else {
            // A bug must cost one request a 500, not the connection or the process (the
            // router has the same guarantee from its panic layer).
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match route {
                Route::Home => Outcome::text(StatusCode::OK, "matchbox\n"),
                Route::BootIpxe => Outcome::text(StatusCode::OK, render::IPXE_BOOTSTRAP),
                Route::Healthz => self.healthz_outcome(),
                _ => self.serve(route, uri, client),
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                tracing::error!("Service panicked: {what}");
                Outcome::text(StatusCode::INTERNAL_SERVER_ERROR, "Service panicked")
            })
        };
        self.finish(
            route,
            method,
            path,
            client,
            outcome.status,
            start,
            &outcome.note,
        );
        Some(response(outcome.status, outcome.content_type, outcome.body))
    }

    /// Counts a request and writes its access log line.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        route: Route,
        method: &Method,
        path: &str,
        client: Option<SocketAddr>,
        status: StatusCode,
        start: Instant,
        note: &AccessNote,
    ) {
        let status = status.as_u16();
        let elapsed = start.elapsed();
        self.metrics().observe(route, status, elapsed);
        if tracing::enabled!(target: "roundhouse_boot::access", tracing::Level::INFO) {
            let client = client.map(|c| StackText::ip(c.ip()));
            let mac = note.mac.as_ref().map(StackText::mac);
            tracing::info!(
                target: "roundhouse_boot::access",
                %method,
                path,
                status,
                micros = elapsed.as_micros() as u64,
                client = client.as_ref().map(StackText::as_str),
                mac = mac.as_ref().map(StackText::as_str),
                group = note.group.as_deref(),
                reason = note.reason.as_deref(),
            );
        }
    }

    /// Answers one of the selecting routes (`/ipxe`, `/grub`, `/ignition`, `/generic`,
    /// `/metadata`) and records the fetch.
    fn serve(&self, route: Route, uri: &Uri, client: Option<SocketAddr>) -> Outcome {
        let raw_query = uri.query().unwrap_or("");
        let labels = match Labels::parse(raw_query) {
            Ok(l) => l,
            Err(e) => return bad_request(&e.to_string()),
        };
        let mac = labels.mac();
        let snap = self.shared.snapshot.load();
        let selected = snap.index.select_group(&labels);
        let result = self.answer(route, &snap, selected, &labels, raw_query);
        let (outcome, digest, local_boot) = match result {
            Ok(answer) => {
                self.metrics().config_served(route, &answer.body.digest);
                (
                    Outcome {
                        status: StatusCode::OK,
                        content_type: answer.content_type,
                        body: answer.body.bytes,
                        note: AccessNote::default(),
                    },
                    Some(answer.body.digest),
                    answer.local_boot,
                )
            }
            Err(ServeError::NotFound(reason)) => (
                Outcome {
                    note: AccessNote {
                        reason: Some(reason),
                        ..AccessNote::default()
                    },
                    ..Outcome::text(StatusCode::NOT_FOUND, "404 page not found\n")
                },
                None,
                false,
            ),
            Err(ServeError::Broken(reason)) => {
                tracing::error!(route = route.as_str(), %reason, "serving a config");
                (
                    Outcome {
                        note: AccessNote {
                            reason: Some(reason),
                            ..AccessNote::default()
                        },
                        ..Outcome::text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "500 internal server error: the stored config is invalid (see the server log)\n",
                        )
                    },
                    None,
                    false,
                )
            }
        };
        let group = selected.filter(|_| !local_boot);
        let time = SystemTime::now();
        if route == Route::Ignition
            && outcome.status == StatusCode::OK
            && let Some(mac) = mac
            && let Some(state) = self.netboot_ref(&snap)
            && let Some(since) = state.pending_since(&mac)
        {
            self.shared
                .installer_fetches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(mac, since);
        }
        self.journal().record(Fetch {
            time,
            route,
            status: outcome.status.as_u16(),
            mac,
            client: client.map(|c| c.ip()),
            group: group.map(|g| g.id.clone()),
            profile: group.map(|g| g.profile.clone()),
            digest,
            local_boot,
        });
        Outcome {
            note: AccessNote {
                group: group.map(|g| g.id.clone()),
                mac,
                reason: outcome.note.reason,
            },
            ..outcome
        }
    }

    /// Gating: installed, or install-pending with its installer already running (it was
    /// served an Ignition config under the current pending mark).
    fn boots_from_disk(&self, state: &dyn NetbootState, mac: &Mac) -> bool {
        match state.netboot(mac) {
            Some(Netboot::Installed) => true,
            Some(Netboot::InstallPending) => state.pending_since(mac).is_some_and(|since| {
                self.shared
                    .installer_fetches
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(mac)
                    == Some(&since)
            }),
            None => false,
        }
    }

    fn answer(
        &self,
        route: Route,
        snap: &Snapshot,
        selected: Option<&GroupEntry>,
        labels: &Labels,
        raw_query: &str,
    ) -> Result<Answer, ServeError> {
        if matches!(route, Route::Ipxe | Route::Grub)
            && let Some(mac) = labels.mac()
            && let Some(state) = self.netboot_ref(snap)
            && self.boots_from_disk(state.as_ref(), &mac)
        {
            let mac = mac.to_string();
            let text = if route == Route::Ipxe {
                render::ipxe_local_boot(&mac)
            } else {
                render::grub_local_boot(&mac)
            };
            return Ok(Answer {
                body: Body::new(text),
                content_type: TEXT,
                local_boot: true,
            });
        }
        let entry = selected.ok_or_else(|| ServeError::NotFound("no matching group".into()))?;
        let index = &snap.index;
        let (body, content_type) = match route {
            Route::Ipxe | Route::Grub => {
                let profile = index.profile_of(entry)?;
                let body = if route == Route::Ipxe {
                    profile.ipxe()
                } else {
                    profile.grub()
                };
                let body = body.cloned().ok_or_else(|| {
                    ServeError::NotFound(format!(
                        "profile {:?} has no boot settings",
                        &*entry.profile
                    ))
                })?;
                (body, TEXT)
            }
            Route::Ignition => (index.ignition(entry, labels, raw_query)?, JSON),
            Route::Generic => (index.generic(entry, labels, raw_query)?, TEXT),
            Route::Metadata => {
                let data = render::template_data(&entry.to_group(), labels, raw_query);
                (Body::new(render::metadata_env(&data)), METADATA_TYPE)
            }
            _ => return Err(ServeError::NotFound("not a selecting route".into())),
        };
        Ok(Answer {
            body,
            content_type,
            local_boot: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_text_is_display() {
        for ip in [
            "0.0.0.0",
            "10.0.0.5",
            "127.0.0.1",
            "255.255.255.255",
            "192.168.100.9",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(StackText::ip(ip).as_str(), ip.to_string());
        }
        for mac in ["52:54:00:89:d8:10", "00:00:00:00:fe:80:00:00"] {
            let mac = Mac::parse(mac).unwrap();
            assert_eq!(StackText::mac(&mac).as_str(), mac.to_string());
        }
    }
}
