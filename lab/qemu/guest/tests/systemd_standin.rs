//! The systemd stand-in over a real Unix socket, driven the way go-systemd drives systemd for
//! Ignition: two connections (calls and signals), SASL `EXTERNAL` with fd negotiation, `AddMatch`
//! on the signal connection, `StartUnit` of a `.device` unit on the other, then `JobRemoved`
//! for that job once the device exists.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use roundhouse_lab_guest::systemd::{self, Options};
use roundhouse_lab_guest::wire::{Builder, Kind, Message, Value, read_message};

fn connect(path: &std::path::Path) -> (BufReader<UnixStream>, UnixStream) {
    let s = UnixStream::connect(path).expect("connect to the stand-in");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    // "0" as hex, as godbus sends the uid.
    w.write_all(b"\0AUTH EXTERNAL 30\r\n").unwrap();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("OK "), "{line:?}");
    line.clear();
    w.write_all(b"NEGOTIATE_UNIX_FD\r\n").unwrap();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "AGREE_UNIX_FD\r\n");
    w.write_all(b"BEGIN\r\n").unwrap();
    (r, w)
}

/// A method call, built with the crate's writer and retyped (the writer only makes replies
/// and signals; the bytes differ in the type code and the header fields present).
fn call(serial: u32, member: &str, args: &[&str]) -> Vec<u8> {
    let mut b = Builder::signal(
        serial,
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        member,
    );
    for a in args {
        b = b.arg('s', Value::Str((*a).to_string()));
    }
    let mut bytes = b.finish();
    bytes[1] = 1; // METHOD_CALL
    bytes
}

fn reply_to(r: &mut BufReader<UnixStream>, serial: u32) -> Message {
    loop {
        let m = read_message(r).expect("a message from the stand-in");
        if m.reply_serial == Some(serial) {
            return m;
        }
    }
}

#[test]
fn start_unit_of_a_device_ends_with_job_removed_done_once_the_device_exists() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/systemd/private");
    let listener = systemd::bind(&socket).unwrap();
    let options = Options {
        socket: socket.clone(),
        device_timeout: Duration::from_secs(15),
        root: dir.path().to_path_buf(),
    };
    std::thread::spawn(move || systemd::serve_on(listener, options));

    let (mut sig_r, mut sig_w) = connect(&socket);
    sig_w
        .write_all(&call(1, "AddMatch", &["type='signal',member='JobRemoved'"]))
        .unwrap();
    let m = reply_to(&mut sig_r, 1);
    assert_eq!(m.kind, Some(Kind::Return));

    let (mut r, mut w) = connect(&socket);
    w.write_all(&call(
        2,
        "StartUnit",
        &["dev-disk-by\\x2dlabel-ROOT.device", "replace"],
    ))
    .unwrap();
    let m = reply_to(&mut r, 2);
    assert_eq!(m.kind, Some(Kind::Return), "{m:?}");
    let Some(job) = m.str_arg(0).map(str::to_string) else {
        panic!("StartUnit returned no job path: {m:?}")
    };
    assert!(job.starts_with("/org/freedesktop/systemd1/job/"), "{job}");

    // The device appears a little later, as after mkfs and the init script's relinking.
    std::thread::sleep(Duration::from_millis(500));
    let dev = dir.path().join("dev/disk/by-label");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("ROOT"), "").unwrap();

    let signal = loop {
        let m = read_message(&mut sig_r).expect("JobRemoved on the signal connection");
        if m.kind == Some(Kind::Signal) {
            break m;
        }
    };
    assert_eq!(signal.member.as_deref(), Some("JobRemoved"));
    assert_eq!(
        signal.interface.as_deref(),
        Some("org.freedesktop.systemd1.Manager")
    );
    assert_eq!(signal.signature, "uoss");
    assert_eq!(signal.str_arg(1), Some(job.as_str()));
    assert_eq!(signal.str_arg(2), Some("dev-disk-by\\x2dlabel-ROOT.device"));
    assert_eq!(signal.str_arg(3), Some("done"));

    // Unknown methods are refused with an error, not silence (a caller would hang).
    w.write_all(&call(3, "GetUnit", &["x.service"])).unwrap();
    let m = reply_to(&mut r, 3);
    assert_eq!(m.kind, Some(Kind::Error));
    assert_eq!(
        m.error_name.as_deref(),
        Some("org.freedesktop.DBus.Error.UnknownMethod")
    );
}

#[test]
fn a_device_that_never_appears_ends_with_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("private");
    let listener = systemd::bind(&socket).unwrap();
    let options = Options {
        socket: socket.clone(),
        device_timeout: Duration::from_millis(300),
        root: dir.path().to_path_buf(),
    };
    std::thread::spawn(move || systemd::serve_on(listener, options));

    // One connection for both, which the stand-in also allows.
    let (mut r, mut w) = connect(&socket);
    w.write_all(&call(1, "AddMatch", &["type='signal'"]))
        .unwrap();
    reply_to(&mut r, 1);
    w.write_all(&call(2, "StartUnit", &["dev-vdz1.device", "replace"]))
        .unwrap();
    reply_to(&mut r, 2);
    let signal = loop {
        let m = read_message(&mut r).expect("JobRemoved");
        if m.kind == Some(Kind::Signal) {
            break m;
        }
    };
    assert_eq!(signal.str_arg(2), Some("dev-vdz1.device"));
    assert_eq!(signal.str_arg(3), Some("timeout"));
}
