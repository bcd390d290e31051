//! Test harness: a real `roundhouse-boot` server on a loopback port, and a minimal HTTP/1.1
//! client that sends exactly the bytes a test gives it (so tests can send what a well-behaved
//! client library would refuse to: raw `..`, huge headers, invalid bytes).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use roundhouse_boot::{ServeConfig, Server};

/// A running server; stopped when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub state: roundhouse_boot::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Binds `config` (its address is replaced by 127.0.0.1:0) and serves on a background
    /// runtime.
    pub fn start(mut config: ServeConfig) -> Running {
        config.address = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(config).expect("starting the server");
        let addr = server.local_addr();
        let state = server.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(server.run(async {
                let _ = stopped.await;
            }))
            .expect("server stopped with an error");
        });
        Running {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Sends a GET with no extra headers.
    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, &[])
    }

    /// Sends a request built from parts.
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        self.raw(raw.as_bytes(), method == "HEAD")
    }

    /// Sends raw bytes and parses the answer.
    pub fn raw(&self, bytes: &[u8], head: bool) -> Response {
        Response::parse(&self.raw_bytes(bytes), head)
    }

    /// Sends raw bytes and returns whatever comes back until the server closes.
    pub fn raw_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).expect("connecting");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may answer and close before reading everything (431): ignore write errors.
        let _ = s.write_all(bytes);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    fn parse(buf: &[u8], head: bool) -> Response {
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
        let head_text = String::from_utf8_lossy(&buf[..split]).into_owned();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let rest = &buf[split + 4..];
        let body = if head {
            rest.to_vec()
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        Response {
            status,
            headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("content-type").map(String::as_str)
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// Copies a directory tree (fixtures are copied so tests never write into the source tree).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The fixtures directory of this crate.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A server over a copy of fixture case `dir` (with `data/`, optional `assets/`, `state/`).
pub fn serve_case(case_dir: &Path, tmp: &Path) -> Running {
    copy_tree(case_dir, tmp);
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    config.data_path = Some(tmp.join("data"));
    config.reload_interval = Duration::ZERO;
    if tmp.join("assets").is_dir() {
        config.assets_path = Some(tmp.join("assets"));
    }
    if tmp.join("state").is_dir() {
        config.state_path = Some(tmp.join("state"));
    }
    Running::start(config)
}
