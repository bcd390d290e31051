//! Reading the boot server's fetch journal (`<boot state dir>/fetch-journal.jsonl`, rotated to
//! `fetch-journal.jsonl.1`): how the executor learns that a machine fetched the exact bytes of
//! its new final config, and how `status` shows what each machine last fetched.
//!
//! The boot server appends JSON lines from its own process; this reader only ever reads. It
//! remembers how far it read each file, so polling a long journal for many nodes costs only the
//! new lines.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bootdata::Mac;
use roundhouse_boot::state::{FetchRecord, JOURNAL_FILE};
use roundhouse_plan::Timestamp;

/// One config fetch as the executor cares about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fetch {
    /// When the boot server answered.
    pub at: Timestamp,
    /// The route (`ignition`, `ipxe`, …).
    pub route: String,
    /// The group that matched: the node's name for its final config, `install-<name>` for the
    /// installer's.
    pub group: Option<String>,
    /// SHA-256 of the body served (`sha256:<hex>`).
    pub digest: Option<String>,
    /// HTTP status.
    pub status: u16,
}

#[derive(Default)]
struct FileCursor {
    /// Inode and offset read so far; a different inode or a shorter file means rotation.
    ino: u64,
    offset: u64,
}

#[derive(Default)]
struct Inner {
    current: FileCursor,
    by_mac: HashMap<Mac, Vec<Fetch>>,
    primed: bool,
}

/// An incremental reader of one boot server's fetch journal.
pub struct JournalReader {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

/// Per MAC, at most this many recent fetches are kept in memory.
const KEEP_PER_MAC: usize = 256;

impl JournalReader {
    /// A reader of `<dir>/fetch-journal.jsonl` (and its rotated predecessor).
    pub fn new(dir: impl Into<PathBuf>) -> JournalReader {
        JournalReader {
            dir: dir.into(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The journal file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Reads whatever was appended since the last call.
    pub fn refresh(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path();
        if !inner.primed {
            // The rotated file holds the records before the current file's first line.
            let rotated = path.with_extension("jsonl.1");
            let mut c = FileCursor::default();
            read_new(&rotated, &mut c, &mut inner.by_mac);
            inner.primed = true;
        }
        let mut cursor = std::mem::take(&mut inner.current);
        read_new(&path, &mut cursor, &mut inner.by_mac);
        inner.current = cursor;
    }

    /// Fetches by `mac` at or after `since`, oldest first (after a [`refresh`](Self::refresh)).
    pub fn fetches_since(&self, mac: &Mac, since: Timestamp) -> Vec<Fetch> {
        self.refresh();
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .by_mac
            .get(mac)
            .map(|v| v.iter().filter(|f| f.at >= since).cloned().collect())
            .unwrap_or_default()
    }

    /// The latest fetch by `mac` of the config served under group `group` (the node's final
    /// config when `group` is the node's name).
    pub fn last_config_fetch(&self, mac: &Mac, group: &str) -> Option<Fetch> {
        self.refresh();
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_mac.get(mac).and_then(|v| {
            v.iter()
                .rev()
                .find(|f| f.route == "ignition" && f.group.as_deref() == Some(group))
                .cloned()
        })
    }
}

fn read_new(path: &Path, cursor: &mut FileCursor, by_mac: &mut HashMap<Mac, Vec<Fetch>>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(mut file) = std::fs::File::open(path) else {
        return;
    };
    let Ok(meta) = file.metadata() else {
        return;
    };
    if meta.ino() != cursor.ino || meta.len() < cursor.offset {
        // Rotated (a new file took the name) or truncated: start from its beginning.
        *cursor = FileCursor {
            ino: meta.ino(),
            offset: 0,
        };
    }
    if file.seek(SeekFrom::Start(cursor.offset)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return;
    }
    // Only whole lines: the writer may be in the middle of one.
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    cursor.offset += end as u64 + 1;
    for line in buf[..end].split(|&b| b == b'\n') {
        let Ok(rec) = serde_json::from_slice::<FetchRecord>(line) else {
            continue;
        };
        let (Some(mac), Ok(at)) = (
            rec.mac.as_deref().and_then(|m| Mac::parse(m).ok()),
            Timestamp::parse(&rec.time),
        ) else {
            continue;
        };
        let list = by_mac.entry(mac).or_default();
        list.push(Fetch {
            at,
            route: rec.route,
            group: rec.group,
            digest: rec.digest,
            status: rec.status,
        });
        if list.len() > KEEP_PER_MAC * 2 {
            list.drain(..KEEP_PER_MAC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(mac: &str, time: &str, group: &str, digest: &str) -> String {
        format!(
            "{{\"time\":\"{time}\",\"route\":\"ignition\",\"status\":200,\"mac\":\"{mac}\",\"group\":\"{group}\",\"digest\":\"{digest}\"}}\n"
        )
    }

    #[test]
    fn reads_incrementally_ignores_torn_lines_and_follows_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(JOURNAL_FILE);
        let mac = Mac::parse("52:54:00:00:00:01").unwrap();
        let r = JournalReader::new(tmp.path());
        assert!(
            r.fetches_since(&mac, Timestamp::from_unix_millis(0))
                .is_empty()
        );

        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(
            line(
                "52:54:00:00:00:01",
                "2026-01-01T00:00:01.000Z",
                "n1",
                "sha256:a",
            )
            .as_bytes(),
        )
        .unwrap();
        // A torn line (the writer is mid-append) is left for the next read.
        f.write_all(b"{\"time\":\"2026-01-01T00:00:02.000Z\",\"rou")
            .unwrap();
        f.flush().unwrap();
        assert_eq!(
            r.fetches_since(&mac, Timestamp::from_unix_millis(0)).len(),
            1
        );
        f.write_all(b"te\":\"ignition\",\"status\":200,\"mac\":\"52-54-00-00-00-01\",\"group\":\"n1\",\"digest\":\"sha256:b\"}\n")
            .unwrap();
        let all = r.fetches_since(&mac, Timestamp::from_unix_millis(0));
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].digest.as_deref(), Some("sha256:b"));
        let since = Timestamp::parse("2026-01-01T00:00:02Z").unwrap();
        assert_eq!(r.fetches_since(&mac, since).len(), 1);

        // Rotation: the file is renamed away and a new one starts.
        std::fs::rename(&path, path.with_extension("jsonl.1")).unwrap();
        std::fs::write(
            &path,
            line(
                "52:54:00:00:00:01",
                "2026-01-01T00:00:03.000Z",
                "n1",
                "sha256:c",
            ),
        )
        .unwrap();
        let last = r.last_config_fetch(&mac, "n1").unwrap();
        assert_eq!(last.digest.as_deref(), Some("sha256:c"));
        assert_eq!(
            r.fetches_since(&mac, Timestamp::from_unix_millis(0)).len(),
            3
        );
        // A fresh reader sees the rotated file too.
        let fresh = JournalReader::new(tmp.path());
        assert_eq!(
            fresh
                .fetches_since(&mac, Timestamp::from_unix_millis(0))
                .len(),
            3
        );
    }
}
