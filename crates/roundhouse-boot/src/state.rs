//! Roundhouse's own state as the boot server sees it: which machines are installed (netboot
//! gating) and a journal of the configs machines fetched.
//!
//! Both are small traits so the reconciler can plug in its store later. This module provides
//! a file-backed implementation (files in a state directory, by default `<data>/roundhouse/`)
//! and an in-memory one. The formats are documented in `docs/boot-server.md`.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bootdata::Mac;
use serde::{Deserialize, Serialize};

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
}

/// Netboot decisions held in memory, settable at run time (tests, embedding).
#[derive(Debug, Default)]
pub struct MemoryNetbootState {
    nodes: RwLock<HashMap<Mac, Netboot>>,
}

impl MemoryNetbootState {
    /// Sets or clears (`None`) the decision for a machine.
    pub fn set(&self, mac: Mac, state: Option<Netboot>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        match state {
            Some(s) => nodes.insert(mac, s),
            None => nodes.remove(&mac),
        };
    }
}

impl NetbootState for MemoryNetbootState {
    fn netboot(&self, mac: &Mac) -> Option<Netboot> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(mac)
            .copied()
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
}

impl FileNetbootState {
    /// Reads `dir/netboot.json`. `Ok(None)` when the file does not exist: gating is off.
    pub fn load(dir: &Path) -> Result<Option<FileNetbootState>, StateError> {
        let path = dir.join(NETBOOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
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
        for (mac, node) in file.nodes {
            let mac = Mac::parse(&mac).map_err(|e| e.to_string())?;
            nodes.insert(mac, node.netboot);
        }
        Ok(FileNetbootState { nodes })
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
    fn record(&self, record: FetchRecord);
    /// Recent records matching `query`, oldest first.
    fn recent(&self, query: &JournalQuery) -> Vec<FetchRecord>;
    /// Records dropped because a bound was reached (memory or write queue).
    fn dropped(&self) -> u64 {
        0
    }
}

/// A bounded in-memory journal: the newest `capacity` records.
#[derive(Debug)]
pub struct MemoryJournal {
    capacity: usize,
    records: Mutex<VecDeque<FetchRecord>>,
}

impl MemoryJournal {
    /// A journal keeping at most `capacity` records.
    pub fn new(capacity: usize) -> MemoryJournal {
        MemoryJournal {
            capacity: capacity.max(1),
            records: Mutex::new(VecDeque::new()),
        }
    }
}

impl FetchJournal for MemoryJournal {
    fn record(&self, record: FetchRecord) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= self.capacity {
            records.pop_front();
        }
        records.push_back(record);
    }

    fn recent(&self, query: &JournalQuery) -> Vec<FetchRecord> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit
        };
        let mut out: Vec<FetchRecord> = records
            .iter()
            .rev()
            .filter(|r| query.mac.is_none() || r.mac == query.mac)
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

/// A journal persisted as JSON lines in `dir/fetch-journal.jsonl`, with the newest records also
/// kept in memory for queries. Writes happen on a background thread fed by a bounded queue, so
/// a slow disk never slows a boot; when the queue is full the record is dropped and counted.
/// The file is rotated to `fetch-journal.jsonl.1` when it exceeds `max_bytes`.
pub struct FileJournal {
    memory: MemoryJournal,
    queue: std::sync::mpsc::SyncSender<FetchRecord>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJournal").finish_non_exhaustive()
    }
}

impl FileJournal {
    /// Opens (creating `dir` if needed) and replays the newest `capacity` records of the file.
    pub fn open(dir: &Path, capacity: usize, max_bytes: u64) -> std::io::Result<FileJournal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let memory = MemoryJournal::new(capacity);
        // Only the tail can hold the newest `capacity` records (a record is well under 1 KiB),
        // so a large journal does not slow the start.
        if let Ok(tail) = read_tail(&path, capacity.saturating_mul(1024) as u64) {
            for line in String::from_utf8_lossy(&tail).lines() {
                // Skip a torn first or last line rather than refuse to start.
                if let Ok(rec) = serde_json::from_str::<FetchRecord>(line) {
                    memory.record(rec);
                }
            }
        }
        let (queue, rx) = std::sync::mpsc::sync_channel::<FetchRecord>(4096);
        let dropped = Arc::new(AtomicU64::new(0));
        let dropped_w = dropped.clone();
        std::thread::Builder::new()
            .name("fetch-journal".into())
            .spawn(move || journal_writer(path, max_bytes, rx, dropped_w))?;
        Ok(FileJournal {
            memory,
            queue,
            dropped,
        })
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

fn journal_writer(
    path: PathBuf,
    max_bytes: u64,
    rx: std::sync::mpsc::Receiver<FetchRecord>,
    dropped: Arc<AtomicU64>,
) {
    let rotated = path.with_extension("jsonl.1");
    while let Ok(first) = rx.recv() {
        // Batch whatever is queued so one open+write serves many records.
        let mut batch = vec![first];
        while let Ok(more) = rx.recv_timeout(Duration::from_millis(20)) {
            batch.push(more);
            if batch.len() >= 1024 {
                break;
            }
        }
        let mut buf = Vec::new();
        for rec in &batch {
            if serde_json::to_writer(&mut buf, rec).is_ok() {
                buf.push(b'\n');
            }
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
            .open(&path)
            .and_then(|mut f| f.write_all(&buf));
        if let Err(e) = result {
            dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), error = %e, "writing fetch journal");
        }
    }
}

impl FetchJournal for FileJournal {
    fn record(&self, record: FetchRecord) {
        if self.queue.try_send(record.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.memory.record(record);
    }

    fn recent(&self, query: &JournalQuery) -> Vec<FetchRecord> {
        self.memory.recent(query)
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Now as RFC 3339 UTC with milliseconds, e.g. `2026-11-25T10:00:00.123Z`.
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// A time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(mac: &str, n: u16) -> FetchRecord {
        FetchRecord {
            time: "t".into(),
            route: "ignition".into(),
            status: n,
            mac: Some(mac.into()),
            client: None,
            group: None,
            profile: None,
            digest: None,
            local_boot: false,
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
            j.record(rec(if i % 2 == 0 { "a" } else { "b" }, i));
        }
        let all = j.recent(&JournalQuery::default());
        assert_eq!(all.iter().map(|r| r.status).collect::<Vec<_>>(), [2, 3, 4]);
        let a = j.recent(&JournalQuery {
            mac: Some("a".into()),
            limit: 1,
        });
        assert_eq!(a.iter().map(|r| r.status).collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn file_journal_persists_and_replays() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = FileJournal::open(dir.path(), 10, 1 << 20).unwrap();
            j.record(rec("a", 200));
            j.record(rec("b", 404));
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
        assert_eq!(got, vec![rec("a", 200), rec("b", 404)]);
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
            j.record(rec("a", n));
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
                "52:54:00:00:00:02":{"netboot":"install-pending"}}}"#,
        )
        .unwrap();
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
