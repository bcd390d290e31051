//! Roundhouse's own state as the boot server sees it: which machines are installed (netboot
//! gating) and a journal of the configs machines fetched.
//!
//! Both are small traits so the reconciler can plug in its store later. This module provides
//! a file-backed implementation (files in a state directory, by default `<data>/roundhouse/`)
//! and an in-memory one. The formats are documented in `docs/boot-server.md`.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bootdata::Mac;
use serde::{Deserialize, Serialize};

use crate::metrics::Route;

/// Name of the netboot state file inside the state directory.
pub const NETBOOT_FILE: &str = "netboot.json";
/// Name of the fetch journal inside the state directory.
pub const JOURNAL_FILE: &str = "fetch-journal.jsonl";
/// Format tag of the netboot state file.
pub const NETBOOT_FORMAT: &str = "roundhouse-netboot/v1";

/// What roundhouse wants a machine to do when it network-boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Netboot {
    /// Installed: answer `/ipxe` and `/grub` with "boot from the local disk".
    Installed,
    /// A (re)install is pending: serve the installer as matchbox would.
    InstallPending,
}

/// Source of per-machine netboot decisions. `None` means roundhouse does not manage the
/// machine, and matchbox semantics apply unchanged.
pub trait NetbootState: Send + Sync {
    /// The decision for one machine.
    fn netboot(&self, mac: &Mac) -> Option<Netboot>;

    /// When an install-pending machine was marked so; a new value is a new install request.
    /// Once an Ignition config was served to the machine under a mark, its installer is
    /// running: it is told to boot from its disk until the mark changes, so a machine that
    /// tries the network first does not reinstall when the installer reboots it. `None` (the
    /// default; files without `pending_since_unix_ms`): the installer is served until the
    /// decision changes.
    fn pending_since(&self, _mac: &Mac) -> Option<SystemTime> {
        None
    }
}

/// Netboot decisions held in memory, settable at run time (tests, embedding).
#[derive(Debug, Default)]
pub struct MemoryNetbootState {
    nodes: RwLock<HashMap<Mac, (Netboot, Option<SystemTime>)>>,
}

impl MemoryNetbootState {
    /// Sets or clears (`None`) the decision for a machine.
    pub fn set(&self, mac: Mac, state: Option<Netboot>) {
        self.set_with_since(mac, state.map(|s| (s, None)));
    }

    /// Sets or clears the decision for a machine, with when it became install-pending.
    pub fn set_with_since(&self, mac: Mac, state: Option<(Netboot, Option<SystemTime>)>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        match state {
            Some(s) => nodes.insert(mac, s),
            None => nodes.remove(&mac),
        };
    }

    fn get(&self, mac: &Mac) -> Option<(Netboot, Option<SystemTime>)> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(mac)
            .copied()
    }
}

impl NetbootState for MemoryNetbootState {
    fn netboot(&self, mac: &Mac) -> Option<Netboot> {
        self.get(mac).map(|(n, _)| n)
    }

    fn pending_since(&self, mac: &Mac) -> Option<SystemTime> {
        self.get(mac)
            .and_then(|(n, since)| since.filter(|_| n == Netboot::InstallPending))
    }
}

/// The netboot state file, `netboot.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetbootFile {
    /// Always [`NETBOOT_FORMAT`].
    pub format: String,
    /// Decisions by MAC address (any form `net.ParseMAC` accepts).
    #[serde(default)]
    pub nodes: HashMap<String, NetbootNode>,
}

/// One machine's entry in the netboot state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetbootNode {
    /// The decision.
    pub netboot: Netboot,
    /// Node name, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `install-pending`: when it was marked so, in milliseconds since the Unix epoch
    /// (see [`NetbootState::pending_since`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since_unix_ms: Option<u64>,
}

/// Why the netboot state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading the file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Others can modify the file: it decides which machines are reinstalled.
    #[error(
        "{path} is writable by group or others (mode {mode:04o}): it decides which machines are reinstalled; run chmod go-w {path}"
    )]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a valid netboot state document.
    #[error("parsing {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Netboot decisions read from a `netboot.json` file (one immutable snapshot).
#[derive(Debug, Default)]
pub struct FileNetbootState {
    nodes: HashMap<Mac, Netboot>,
    pending_since: HashMap<Mac, SystemTime>,
}

impl FileNetbootState {
    /// Reads `dir/netboot.json`. `Ok(None)` when the file does not exist: gating is off.
    pub fn load(dir: &Path) -> Result<Option<FileNetbootState>, StateError> {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(NETBOOT_FILE);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let mode = match file.metadata() {
            Ok(m) => m.permissions().mode() & 0o7777,
            Err(source) => return Err(StateError::Read { path, source }),
        };
        if mode & 0o022 != 0 {
            return Err(StateError::Insecure { path, mode });
        }
        let mut bytes = Vec::new();
        if let Err(source) = file.read_to_end(&mut bytes) {
            return Err(StateError::Read { path, source });
        }
        Self::parse(&bytes)
            .map(Some)
            .map_err(|reason| StateError::Parse { path, reason })
    }

    /// Parses the contents of a netboot state file.
    pub fn parse(bytes: &[u8]) -> Result<FileNetbootState, String> {
        let file: NetbootFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.format != NETBOOT_FORMAT {
            return Err(format!(
                "format is {:?}, expected {NETBOOT_FORMAT:?}",
                file.format
            ));
        }
        let mut nodes = HashMap::with_capacity(file.nodes.len());
        let mut pending_since = HashMap::new();
        for (mac, node) in file.nodes {
            let mac = Mac::parse(&mac).map_err(|e| e.to_string())?;
            nodes.insert(mac, node.netboot);
            if let Some(ms) = node.pending_since_unix_ms
                && node.netboot == Netboot::InstallPending
            {
                let since = UNIX_EPOCH
                    .checked_add(Duration::from_millis(ms))
                    .ok_or_else(|| format!("{mac}: pending_since_unix_ms {ms} is out of range"))?;
                pending_since.insert(mac, since);
            }
        }
        Ok(FileNetbootState {
            nodes,
            pending_since,
        })
    }

    /// Number of machines listed.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no machine is listed.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl NetbootState for FileNetbootState {
    fn netboot(&self, mac: &Mac) -> Option<Netboot> {
        self.nodes.get(mac).copied()
    }

    fn pending_since(&self, mac: &Mac) -> Option<SystemTime> {
        self.pending_since.get(mac).copied()
    }
}

/// One config fetch, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRecord {
    /// When the response was sent, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Route: `ipxe`, `grub`, `ignition`, `generic` or `metadata`.
    pub route: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// The MAC label of the request, canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Client IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Selected group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Profile id of that group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `sha256:<hex>` of the body served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Set when netboot gating answered "boot from local disk" instead of the profile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local_boot: bool,
}

/// A fetch as the request path hands it to the journal: nothing formatted yet, ids and digests
/// shared with the index. Recording one costs no string formatting; [`Fetch::to_record`] makes
/// the [`FetchRecord`] when someone reads the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// When the response was sent.
    pub time: SystemTime,
    /// The route answered (`ipxe`, `grub`, `ignition`, `generic` or `metadata`).
    pub route: Route,
    /// HTTP status of the answer.
    pub status: u16,
    /// The MAC label of the request.
    pub mac: Option<Mac>,
    /// Client IP address.
    pub client: Option<IpAddr>,
    /// Selected group id.
    pub group: Option<Arc<str>>,
    /// Profile id of that group.
    pub profile: Option<Arc<str>>,
    /// `sha256:<hex>` of the body served.
    pub digest: Option<Arc<str>>,
    /// Set when netboot gating answered "boot from local disk" instead of the profile.
    pub local_boot: bool,
}

impl Fetch {
    /// The record as the journal file and API show it.
    pub fn to_record(&self) -> FetchRecord {
        FetchRecord {
            time: rfc3339(self.time),
            route: self.route.as_str().to_string(),
            status: self.status,
            mac: self.mac.map(|m| m.to_string()),
            client: self.client.map(|c| c.to_string()),
            group: self.group.as_deref().map(str::to_string),
            profile: self.profile.as_deref().map(str::to_string),
            digest: self.digest.as_deref().map(str::to_string),
            local_boot: self.local_boot,
        }
    }

    /// A record read back from the journal file; `None` for one this server did not write
    /// (its time, route, MAC or address do not parse).
    pub fn from_record(r: &FetchRecord) -> Option<Fetch> {
        Some(Fetch {
            time: parse_rfc3339(&r.time)?,
            route: Route::from_label(&r.route)?,
            status: r.status,
            mac: match &r.mac {
                Some(m) => Some(Mac::parse(m).ok()?),
                None => None,
            },
            client: match &r.client {
                Some(c) => Some(c.parse().ok()?),
                None => None,
            },
            group: r.group.as_deref().map(Into::into),
            profile: r.profile.as_deref().map(Into::into),
            digest: r.digest.as_deref().map(Into::into),
            local_boot: r.local_boot,
        })
    }

    /// Appends the record's JSON line (what `serde_json` writes for [`Fetch::to_record`]) to
    /// `out`, without building the record: the writer thread shares the request path's cores.
    fn write_json_line(&self, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, s: &str| {
            // Ids and digests rarely need escaping: copy those as they are.
            if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            } else {
                // Writing a string into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, s);
            }
        };
        out.extend_from_slice(b"{\"time\":\"");
        write_rfc3339(self.time, out);
        out.extend_from_slice(b"\",\"route\":\"");
        out.extend_from_slice(self.route.as_str().as_bytes());
        out.extend_from_slice(b"\",\"status\":");
        push_number(out, u64::from(self.status));
        if let Some(mac) = &self.mac {
            out.extend_from_slice(b",\"mac\":\"");
            push_mac(out, mac);
            out.push(b'"');
        }
        if let Some(client) = &self.client {
            match client {
                IpAddr::V4(ip) => {
                    out.extend_from_slice(b",\"client\":\"");
                    for (i, octet) in ip.octets().into_iter().enumerate() {
                        if i > 0 {
                            out.push(b'.');
                        }
                        push_number(out, u64::from(octet));
                    }
                    out.push(b'"');
                }
                IpAddr::V6(_) => {
                    let _ = write!(out, ",\"client\":\"{client}\"");
                }
            }
        }
        for (name, value) in [
            (&b",\"group\":"[..], &self.group),
            (b",\"profile\":", &self.profile),
            (b",\"digest\":", &self.digest),
        ] {
            if let Some(v) = value {
                out.extend_from_slice(name);
                string(out, v);
            }
        }
        if self.local_boot {
            out.extend_from_slice(b",\"local_boot\":true");
        }
        out.extend_from_slice(b"}\n");
    }
}

/// A filter over the journal.
#[derive(Debug, Clone, Default)]
pub struct JournalQuery {
    /// Only this machine.
    pub mac: Option<String>,
    /// At most this many records, newest kept.
    pub limit: usize,
}

/// Where config fetches are recorded.
pub trait FetchJournal: Send + Sync {
    /// Records a fetch. Must not block the request path.
    fn record(&self, fetch: Fetch);
    /// Recent records matching `query`, oldest first.
    fn recent(&self, query: &JournalQuery) -> Vec<FetchRecord>;
    /// Records dropped because a bound was reached (memory or write queue).
    fn dropped(&self) -> u64 {
        0
    }
}

/// The newest `capacity` fetches.
#[derive(Debug)]
struct Ring {
    capacity: usize,
    fetches: VecDeque<Fetch>,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        Ring {
            capacity: capacity.max(1),
            fetches: VecDeque::new(),
        }
    }

    fn push(&mut self, fetch: Fetch) {
        if self.fetches.len() >= self.capacity {
            self.fetches.pop_front();
        }
        self.fetches.push_back(fetch);
    }

    fn recent(&self, query: &JournalQuery) -> Vec<FetchRecord> {
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit
        };
        // Records hold canonical MACs, so a filter that is not a MAC matches nothing.
        let want = query.mac.as_deref().map(|m| Mac::parse(m).ok());
        let mut out: Vec<FetchRecord> = self
            .fetches
            .iter()
            .rev()
            .filter(|f| want.is_none_or(|w| w.is_some() && f.mac == w))
            .take(limit)
            .map(Fetch::to_record)
            .collect();
        out.reverse();
        out
    }
}

/// A bounded in-memory journal: the newest `capacity` records.
#[derive(Debug)]
pub struct MemoryJournal {
    ring: Mutex<Ring>,
}

impl MemoryJournal {
    /// A journal keeping at most `capacity` records.
    pub fn new(capacity: usize) -> MemoryJournal {
        MemoryJournal {
            ring: Mutex::new(Ring::new(capacity)),
        }
    }
}

impl FetchJournal for MemoryJournal {
    fn record(&self, fetch: Fetch) {
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fetch);
    }

    fn recent(&self, query: &JournalQuery) -> Vec<FetchRecord> {
        self.ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recent(query)
    }
}

/// Mode of a state directory the server creates (the umask can only narrow it).
const STATE_DIR_MODE: u32 = 0o755;
/// Mode of the journal files: they hold client addresses, readable by the owner's group (an
/// operator reading `roundhouse status`), never by everyone, never writable by others.
const JOURNAL_MODE: u32 = 0o640;

/// Records waiting for the writer thread, at most this many; more are dropped and counted.
/// About 1.8 MB when full: enough for a third of a second at 50,000 requests per second,
/// should the writer not get a core for that long (it happened on a loaded 2-core machine
/// with a bound of 4,096).
const WRITE_QUEUE: usize = 16 * 1024;
/// A batch this large is written at once instead of waiting for the batch window to end.
const WRITE_BATCH: usize = 1024;
/// How long the writer lets records accumulate before a write, so that a busy server makes one
/// `write` per batch rather than one per request.
const WRITE_BATCH_WINDOW: Duration = Duration::from_millis(20);

/// A journal persisted as JSON lines in `dir/fetch-journal.jsonl`, with the newest records also
/// kept in memory for queries. Writes happen on a background thread fed by a bounded queue, so
/// a slow disk never slows a boot; when the queue is full the record is dropped and counted.
/// The file is rotated to `fetch-journal.jsonl.1` when it exceeds `max_bytes`.
pub struct FileJournal {
    shared: Arc<FileShared>,
}

struct FileShared {
    /// The in-memory ring and the write queue under one lock: one lock per request.
    inner: Mutex<FileInner>,
    wake: Condvar,
    dropped: AtomicU64,
}

struct FileInner {
    ring: Ring,
    queue: Vec<Fetch>,
    closed: bool,
}

impl std::fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJournal").finish_non_exhaustive()
    }
}

impl FileJournal {
    /// Opens (creating `dir` if needed, mode 0755) and replays the newest `capacity` records of
    /// the file. The file is created 0640 whatever the umask: it records client addresses.
    pub fn open(dir: &Path, capacity: usize, max_bytes: u64) -> std::io::Result<FileJournal> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(STATE_DIR_MODE)
            .create(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let mut ring = Ring::new(capacity);
        // Only the tail can hold the newest `capacity` records (a record is well under 1 KiB),
        // so a large journal does not slow the start.
        if let Ok(tail) = read_tail(&path, capacity.saturating_mul(1024) as u64) {
            for line in String::from_utf8_lossy(&tail).lines() {
                // Skip a torn first or last line rather than refuse to start.
                if let Some(fetch) = serde_json::from_str::<FetchRecord>(line)
                    .ok()
                    .and_then(|r| Fetch::from_record(&r))
                {
                    ring.push(fetch);
                }
            }
        }
        let shared = Arc::new(FileShared {
            inner: Mutex::new(FileInner {
                ring,
                queue: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("fetch-journal".into())
            .spawn(move || journal_writer(path, max_bytes, &writer))?;
        Ok(FileJournal { shared })
    }
}

impl Drop for FileJournal {
    fn drop(&mut self) {
        // The writer writes what is queued, then ends.
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl FileShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, FileInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

fn journal_writer(path: PathBuf, max_bytes: u64, shared: &FileShared) {
    use std::os::unix::fs::OpenOptionsExt;
    let rotated = path.with_extension("jsonl.1");
    let mut buf = Vec::new();
    loop {
        {
            let mut inner = shared.lock();
            while inner.queue.is_empty() && !inner.closed {
                inner = shared.wake.wait(inner).unwrap_or_else(|p| p.into_inner());
            }
            if inner.queue.is_empty() {
                return;
            }
            if !inner.closed && inner.queue.len() < WRITE_BATCH {
                drop(inner);
                // Let a burst accumulate so one open+write serves many records.
                std::thread::sleep(WRITE_BATCH_WINDOW);
            }
        }
        let batch = std::mem::take(&mut shared.lock().queue);
        buf.clear();
        for fetch in &batch {
            fetch.write_json_line(&mut buf);
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.len() + buf.len() as u64 > max_bytes)
            && let Err(e) = std::fs::rename(&path, &rotated)
        {
            tracing::warn!(path = %path.display(), error = %e, "rotating fetch journal");
        }
        // Reopened per batch: the state directory may be replaced under us.
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(JOURNAL_MODE)
            .open(&path)
            .and_then(|mut f| f.write_all(&buf));
        if let Err(e) = result {
            shared
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), error = %e, "writing fetch journal");
        }
    }
}

impl FetchJournal for FileJournal {
    fn record(&self, fetch: Fetch) {
        let mut inner = self.shared.lock();
        let wake = inner.queue.is_empty();
        if inner.queue.len() < WRITE_QUEUE {
            inner.queue.push(fetch.clone());
        } else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        inner.ring.push(fetch);
        drop(inner);
        // Only the first record of a batch wakes the writer; the rest ride along.
        if wake {
            self.shared.wake.notify_one();
        }
    }

    fn recent(&self, query: &JournalQuery) -> Vec<FetchRecord> {
        self.shared.lock().ring.recent(query)
    }

    fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-11-25T10:00:00.123Z`.
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// A time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339(t, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn write_rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    write_civil_seconds(d.as_secs(), out);
    out.push(b'.');
    push_digits(out, u64::from(d.subsec_millis()), 3);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix time. Digits are written by hand: this runs once per
/// request for the journal, and `write!` costs ten times as much.
pub(crate) fn write_civil_seconds(secs: u64, out: &mut Vec<u8>) {
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    push_digits(out, year.clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_digits(out, month as u64, 2);
    out.push(b'-');
    push_digits(out, day as u64, 2);
    out.push(b'T');
    push_digits(out, (rem / 3600) as u64, 2);
    out.push(b':');
    push_digits(out, (rem % 3600 / 60) as u64, 2);
    out.push(b':');
    push_digits(out, (rem % 60) as u64, 2);
}

/// `n` as exactly `width` decimal digits (zero-padded; higher digits cut off).
pub(crate) fn push_digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `n` in decimal.
fn push_number(out: &mut Vec<u8>, n: u64) {
    let width = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    push_digits(out, n, width);
}

/// A MAC address in canonical form (lower-case hex, colons), as `Mac`'s `Display` writes it.
fn push_mac(out: &mut Vec<u8>, mac: &Mac) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in mac.octets().iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// Parses what [`rfc3339`] writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`, years 1970 to 9999).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 24
        || [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (23, b'Z'),
        ]
        .iter()
        .any(|&(i, c)| b[i] != c)
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, milli) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Howard Hinnant's days-from-civil algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    let millis = u64::try_from(secs).ok()?.checked_mul(1000)? + milli as u64;
    Some(UNIX_EPOCH + Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "52:54:00:00:00:0a";
    const B: &str = "52:54:00:00:00:0b";

    fn rec(mac: &str, n: u16) -> Fetch {
        Fetch {
            time: UNIX_EPOCH + Duration::from_millis(1_709_210_096_789 + u64::from(n)),
            route: Route::Ignition,
            status: n,
            mac: Some(Mac::parse(mac).unwrap()),
            client: None,
            group: None,
            profile: None,
            digest: None,
            local_boot: false,
        }
    }

    #[test]
    fn rfc3339_round_trips() {
        for ms in [0, 1_709_210_096_789, 4_102_444_799_000, 951_782_400_001] {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{ms}");
        }
        for bad in [
            "t",
            "2024-02-30T12:34:56.789",
            "2024-13-01T00:00:00.000Z",
            "+024-01-01T00:00:00.000Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_line_is_the_records_json() {
        let full = Fetch {
            client: Some("10.0.0.5".parse().unwrap()),
            group: Some("g \"quoted\" \u{e9}".into()),
            profile: Some("p\n".into()),
            digest: Some("sha256:00".into()),
            local_boot: true,
            ..rec(A, 200)
        };
        let ipv6 = Fetch {
            client: Some("::1".parse().unwrap()),
            mac: None,
            ..rec(A, 404)
        };
        let edges = Fetch {
            client: Some("0.0.0.0".parse().unwrap()),
            mac: Some(
                Mac::parse("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01").unwrap(),
            ),
            ..rec(A, 0)
        };
        let broadcast = Fetch {
            client: Some("255.255.255.255".parse().unwrap()),
            ..rec(B, 65535)
        };
        for fetch in [rec(A, 200), full, ipv6, edges, broadcast] {
            let mut line = Vec::new();
            fetch.write_json_line(&mut line);
            let want = serde_json::to_string(&fetch.to_record()).unwrap() + "\n";
            assert_eq!(String::from_utf8(line).unwrap(), want);
            assert_eq!(Fetch::from_record(&fetch.to_record()), Some(fetch));
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T12:34:56.789Z, a leap day; `date -u -d @1709210096` agrees.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_709_210_096_789)),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn memory_journal_is_bounded_and_filters() {
        let j = MemoryJournal::new(3);
        for i in 0..5 {
            j.record(rec(if i % 2 == 0 { A } else { B }, i));
        }
        let all = j.recent(&JournalQuery::default());
        assert_eq!(all.iter().map(|r| r.status).collect::<Vec<_>>(), [2, 3, 4]);
        let a = j.recent(&JournalQuery {
            mac: Some(A.into()),
            limit: 1,
        });
        assert_eq!(a.iter().map(|r| r.status).collect::<Vec<_>>(), [4]);
        let none = j.recent(&JournalQuery {
            mac: Some("not a mac".into()),
            limit: 0,
        });
        assert!(none.is_empty());
    }

    #[test]
    fn file_journal_persists_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = FileJournal::open(dir.path(), 10, 1 << 20).unwrap();
            j.record(rec(A, 200));
            j.record(rec(B, 404));
        }
        // The writer thread ends when the journal is dropped; wait for its file.
        let path = dir.path().join(JOURNAL_FILE);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).map_or(0, |t| t.lines().count()) < 2 {
            assert!(std::time::Instant::now() < deadline, "journal not written");
            std::thread::sleep(Duration::from_millis(10));
        }
        let j = FileJournal::open(dir.path(), 10, 1 << 20).unwrap();
        let got = j.recent(&JournalQuery::default());
        assert_eq!(got, vec![rec(A, 200).to_record(), rec(B, 404).to_record()]);
    }

    #[test]
    fn file_journal_rotates_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let j = FileJournal::open(dir.path(), 100, 400).unwrap();
        let rotated = dir.path().join("fetch-journal.jsonl.1");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut n = 0;
        while !rotated.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "journal never rotated"
            );
            j.record(rec(A, n));
            n += 1;
            std::thread::sleep(Duration::from_millis(30));
        }
        let current = std::fs::metadata(dir.path().join(JOURNAL_FILE)).map_or(0, |m| m.len());
        assert!(current <= 400, "current file is {current} bytes");
        assert!(std::fs::metadata(&rotated).unwrap().len() <= 400);
    }

    #[test]
    fn netboot_file_parsing() {
        let s = FileNetbootState::parse(
            br#"{"format":"roundhouse-netboot/v1","nodes":{
                "52-54-00-00-00-01":{"netboot":"installed","name":"n1"},
                "52:54:00:00:00:02":{"netboot":"install-pending"},
                "52:54:00:00:00:04":{"netboot":"install-pending","pending_since_unix_ms":1764072000123},
                "52:54:00:00:00:05":{"netboot":"installed","pending_since_unix_ms":1}}}"#,
        )
        .unwrap();
        let mac = |m: &str| Mac::parse(m).unwrap();
        assert_eq!(s.pending_since(&mac("52:54:00:00:00:02")), None);
        assert_eq!(
            s.pending_since(&mac("52:54:00:00:00:04")),
            Some(UNIX_EPOCH + Duration::from_millis(1_764_072_000_123))
        );
        assert_eq!(
            s.pending_since(&mac("52:54:00:00:00:05")),
            None,
            "only install-pending machines have one"
        );
        assert!(
            FileNetbootState::parse(
                br#"{"format":"roundhouse-netboot/v1","nodes":{"52:54:00:00:00:01":{"netboot":"install-pending","pending_since_unix_ms":-1}}}"#
            )
            .is_err()
        );
        assert_eq!(
            s.netboot(&Mac::parse("52:54:00:00:00:01").unwrap()),
            Some(Netboot::Installed)
        );
        assert_eq!(
            s.netboot(&Mac::parse("52:54:00:00:00:02").unwrap()),
            Some(Netboot::InstallPending)
        );
        assert_eq!(s.netboot(&Mac::parse("52:54:00:00:00:03").unwrap()), None);
        assert!(FileNetbootState::parse(br#"{"format":"v0","nodes":{}}"#).is_err());
        assert!(
            FileNetbootState::parse(
                br#"{"format":"roundhouse-netboot/v1","nodes":{"zz":{"netboot":"installed"}}}"#
            )
            .is_err()
        );
        assert!(
            FileNetbootState::parse(
                br#"{"format":"roundhouse-netboot/v1","nodes":{"52:54:00:00:00:01":{"netboot":"maybe"}}}"#
            )
            .is_err()
        );
    }
}
