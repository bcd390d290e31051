//! A stand-in for systemd's private D-Bus socket, just enough for Ignition.
//!
//! Ignition's `disks` stage asks systemd (go-systemd over `unix:path=/run/systemd/private`) to
//! start the `.device` unit of every device it is about to format, and waits for the
//! `JobRemoved` signal of that job with result `done`. The lab's initrd has no systemd and no
//! udev; devices exist once the kernel created them and the init script linked
//! `/dev/disk/by-*`. So: accept the SASL handshake, answer `StartUnit` with a job path, and
//! emit `JobRemoved` once the unit's device path exists (or `timeout` after a while, so a
//! missing disk fails Ignition instead of hanging it). Other calls get an empty return
//! (`Hello`, `AddMatch`) or `UnknownMethod`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::wire::{Builder, Kind, Message, Value, read_message};

const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";

/// Why the stand-in could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// Creating the socket's directory or binding it failed.
    #[error("listening on {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Settings of the stand-in.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen (systemd's is `/run/systemd/private`).
    pub socket: PathBuf,
    /// How long a `.device` job waits for its device before it ends with `timeout`.
    pub device_timeout: Duration,
    /// Prefix for device paths, so tests can use a temporary directory instead of `/`.
    pub root: PathBuf,
}

/// The systemd unit name of a path, unescaped (`dev-disk-by\x2dlabel-ROOT.device` →
/// `/dev/disk/by-label/ROOT`). `None` for anything but a `.device` unit or a bad escape.
pub fn device_path(unit: &str) -> Option<String> {
    let name = unit.strip_suffix(".device")?;
    let mut out = String::from("/");
    let bytes = name.as_bytes();
    let mut raw = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' => raw.push(b'/'),
            b'\\' => {
                let hex = bytes.get(i + 1..i + 4)?;
                if hex[0] != b'x' {
                    return None;
                }
                let s = std::str::from_utf8(&hex[1..]).ok()?;
                raw.push(u8::from_str_radix(s, 16).ok()?);
                i += 3;
            }
            b => raw.push(b),
        }
        i += 1;
    }
    out.push_str(&String::from_utf8(raw).ok()?);
    Some(out)
}

/// Shared between connections: signal subscribers and counters.
struct Hub {
    /// Writers of connections that sent `AddMatch` (go-systemd's signal connection).
    subscribers: Mutex<Vec<Arc<Mutex<UnixStream>>>>,
    serial: AtomicU32,
    job: AtomicU32,
    options: Options,
}

impl Hub {
    fn next_serial(&self) -> u32 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }

    fn broadcast(&self, bytes: &[u8]) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        // A subscriber that went away is dropped rather than failing everyone else.
        subs.retain(|w| {
            w.lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(bytes)
                .is_ok()
        });
    }
}

/// Listens on `options.socket` and serves connections until the process ends.
pub fn serve(options: Options) -> Result<(), ServeError> {
    let listener = bind(&options.socket)?;
    serve_on(listener, options);
    Ok(())
}

/// Binds the socket, replacing a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |source| ServeError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(err)
}

/// Serves connections from `listener` forever.
pub fn serve_on(listener: UnixListener, options: Options) {
    let hub = Arc::new(Hub {
        subscribers: Mutex::new(Vec::new()),
        serial: AtomicU32::new(1),
        job: AtomicU32::new(1),
        options,
    });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let hub = Arc::clone(&hub);
        std::thread::spawn(move || {
            if let Err(e) = connection(conn, &hub) {
                eprintln!("systemd stand-in: connection ended: {e}");
            }
        });
    }
}

fn connection(conn: UnixStream, hub: &Arc<Hub>) -> std::io::Result<()> {
    let writer = Arc::new(Mutex::new(conn.try_clone()?));
    let mut reader = BufReader::new(conn);
    if !handshake(&mut reader, &writer)? {
        return Ok(());
    }
    loop {
        let msg = match read_message(&mut reader) {
            Ok(m) => m,
            Err(crate::wire::WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(());
            }
            Err(e) => return Err(std::io::Error::other(e)),
        };
        if msg.kind != Some(Kind::Call) {
            continue;
        }
        let reply = answer(&msg, hub, &writer);
        if let Some(bytes) = reply
            && !msg.no_reply()
        {
            writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(&bytes)?;
        }
    }
}

/// The SASL exchange before `BEGIN`. Returns false when the client gave up.
fn handshake(
    reader: &mut BufReader<UnixStream>,
    writer: &Arc<Mutex<UnixStream>>,
) -> std::io::Result<bool> {
    let send = |line: &str| {
        writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(format!("{line}\r\n").as_bytes())
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(false);
        }
        // The client's first byte is a NUL (credentials passing); strip it wherever it is.
        let text = String::from_utf8_lossy(&line).replace('\0', "");
        let text = text.trim_end();
        let mut words = text.split_whitespace();
        match words.next() {
            Some("AUTH") => match words.next() {
                Some("EXTERNAL" | "ANONYMOUS") => send("OK 0123456789abcdef0123456789abcdef")?,
                _ => send("REJECTED EXTERNAL ANONYMOUS")?,
            },
            Some("NEGOTIATE_UNIX_FD") => send("AGREE_UNIX_FD")?,
            Some("BEGIN") => return Ok(true),
            Some("CANCEL") => send("REJECTED EXTERNAL ANONYMOUS")?,
            Some("DATA") => send("OK 0123456789abcdef0123456789abcdef")?,
            None => {}
            Some(_) => send("ERROR")?,
        }
    }
}

fn answer(msg: &Message, hub: &Arc<Hub>, writer: &Arc<Mutex<UnixStream>>) -> Option<Vec<u8>> {
    let serial = hub.next_serial();
    let member = msg.member.as_deref().unwrap_or_default();
    match member {
        "Hello" => Some(
            Builder::reply(msg, serial, None)
                .arg('s', Value::Str(":1.1".into()))
                .finish(),
        ),
        "AddMatch" => {
            hub.subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(writer));
            Some(Builder::reply(msg, serial, None).finish())
        }
        "RemoveMatch" | "Subscribe" | "Unsubscribe" | "Reload" => {
            Some(Builder::reply(msg, serial, None).finish())
        }
        "StartUnit" | "RestartUnit" | "TryRestartUnit" | "ReloadOrRestartUnit" => {
            let unit = msg.str_arg(0).unwrap_or_default().to_string();
            let id = hub.job.fetch_add(1, Ordering::Relaxed);
            let job = format!("{MANAGER_PATH}/job/{id}");
            let reply = Builder::reply(msg, serial, None)
                .arg('o', Value::Str(job.clone()))
                .finish();
            let hub = Arc::clone(hub);
            // The reply goes out before the job can end: go-systemd registers the job path
            // from the reply and only then looks at signals.
            std::thread::spawn(move || {
                let result = wait_for_unit(&hub.options, &unit);
                eprintln!("systemd stand-in: {unit}: {result}");
                let signal =
                    Builder::signal(hub.next_serial(), MANAGER_PATH, MANAGER_IFACE, "JobRemoved")
                        .arg('u', Value::U32(id))
                        .arg('o', Value::Str(job))
                        .arg('s', Value::Str(unit))
                        .arg('s', Value::Str(result.into()))
                        .finish();
                hub.broadcast(&signal);
            });
            Some(reply)
        }
        _ => Some(
            Builder::reply(
                msg,
                serial,
                Some("org.freedesktop.DBus.Error.UnknownMethod"),
            )
            .arg(
                's',
                Value::Str(format!("the lab's systemd stand-in does not do {member}")),
            )
            .finish(),
        ),
    }
}

/// `done` once a `.device` unit's path exists; `timeout` if it does not appear in time. Other
/// units have nothing behind them here and are `done` at once.
fn wait_for_unit(options: &Options, unit: &str) -> &'static str {
    let Some(path) = device_path(unit) else {
        return "done";
    };
    let full = options.root.join(path.trim_start_matches('/'));
    let deadline = Instant::now() + options.device_timeout;
    loop {
        if full.exists() {
            return "done";
        }
        if Instant::now() >= deadline {
            return "timeout";
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::device_path;

    #[test]
    fn device_unit_names_unescape_to_paths() {
        assert_eq!(
            device_path("dev-disk-by\\x2dlabel-ROOT.device").as_deref(),
            Some("/dev/disk/by-label/ROOT")
        );
        assert_eq!(device_path("dev-vda9.device").as_deref(), Some("/dev/vda9"));
        assert_eq!(device_path("sshd.service"), None);
        assert_eq!(device_path("dev-bad\\x2.device"), None);
        assert_eq!(device_path("dev-bad\\q20.device"), None);
    }
}
