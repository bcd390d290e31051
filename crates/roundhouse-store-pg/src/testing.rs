//! A throwaway PostgreSQL server for tests: `initdb` into a temporary directory, the server
//! as a child process listening on a unix socket in that directory (and, for TLS tests, on
//! 127.0.0.1), one database per test, stopped and removed on drop.
//!
//! `initdb` refuses to run as root, so as root the server runs as the `postgres` user (through
//! `setpriv`); otherwise as the current user. The binaries are Debian's `postgresql-15`
//! (`/usr/lib/postgresql/15/bin`, or `ROUNDHOUSE_TEST_PGBIN`). When they are missing the
//! harness panics naming the package: a test that needs PostgreSQL fails, it never skips.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::PgConfig;

/// The Debian package with the server binaries.
pub const PACKAGE: &str = "postgresql-15";

/// A running throwaway server; stopped and deleted on drop.
pub struct TestServer {
    dir: Option<tempfile::TempDir>,
    pgbin: PathBuf,
    port: u16,
    as_postgres: bool,
    child: Mutex<Option<Child>>,
    tls: Option<Tls>,
    databases: AtomicUsize,
}

/// What a TLS server offers besides the socket.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The CA that signed the server's certificate (`sslrootcert`).
    pub ca: PathBuf,
    /// The TCP port on 127.0.0.1 (the certificate names `localhost` and `127.0.0.1`).
    pub port: u16,
    /// A login role that must authenticate with SCRAM over TLS.
    pub user: String,
    /// Its password.
    pub password: String,
    /// A database it owns.
    pub dbname: String,
}

fn pgbin() -> PathBuf {
    let dir = std::env::var_os("ROUNDHOUSE_TEST_PGBIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    for tool in ["initdb", "postgres", "pg_isready", "psql"] {
        if !dir.join(tool).exists() {
            panic!(
                "PostgreSQL is needed by this test and {} is missing: install the Debian package \
                 {PACKAGE} (`apt-get install -y --no-install-recommends {PACKAGE}`; \
                 scripts/install-test-deps does it), or point ROUNDHOUSE_TEST_PGBIN at the \
                 directory holding initdb, postgres, pg_isready and psql",
                dir.join(tool).display()
            );
        }
    }
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port on 127.0.0.1")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn uid_gid(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        run(
            Command::new("id").args([flag, user]),
            "looking up the postgres user",
        )
        .trim()
        .parse()
        .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

impl TestServer {
    /// A server shared by the tests of one binary that run at the same time: started on first
    /// use, stopped when the last user drops it.
    pub fn shared() -> Arc<TestServer> {
        static SHARED: Mutex<Weak<TestServer>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.upgrade() {
            return s;
        }
        let s = Arc::new(TestServer::start());
        *slot = Arc::downgrade(&s);
        s
    }

    /// A server on a unix socket only.
    pub fn start() -> TestServer {
        TestServer::launch(false)
    }

    /// A server that also listens on 127.0.0.1 with TLS (a test CA and a leaf certificate for
    /// `localhost`/`127.0.0.1`) and requires SCRAM passwords there; see [`TestServer::tls`].
    pub fn start_tls() -> TestServer {
        TestServer::launch(true)
    }

    fn launch(tls: bool) -> TestServer {
        let pgbin = pgbin();
        let as_postgres = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1)
            == 0;
        // Short: the socket path must stay under 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("rhpg")
            .tempdir_in("/tmp")
            .expect("a temporary directory");
        let base = dir.path().to_path_buf();
        let data = base.join("data");
        let mut server = TestServer {
            dir: Some(dir),
            pgbin,
            port: if tls { free_port() } else { 5432 },
            as_postgres,
            child: Mutex::new(None),
            tls: None,
            databases: AtomicUsize::new(0),
        };
        if as_postgres {
            let (uid, gid) = uid_gid("postgres");
            std::os::unix::fs::chown(&base, Some(uid), Some(gid)).expect("chown the test dir");
        }
        run(
            server.command("initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]),
            "initdb",
        );
        if tls {
            let tls = server.make_certificates(&base, &data);
            server.tls = Some(tls);
        }
        let log = std::fs::File::create(base.join("log")).expect("the server log");
        drop(log);
        if as_postgres {
            let (uid, gid) = uid_gid("postgres");
            std::os::unix::fs::chown(base.join("log"), Some(uid), Some(gid)).expect("chown log");
        }
        server.spawn();
        server.wait_ready();
        if let Some(tls) = &server.tls {
            server.psql(
                "postgres",
                &format!("CREATE ROLE {} LOGIN PASSWORD '{}'", tls.user, tls.password),
            );
            server.psql(
                "postgres",
                &format!("CREATE DATABASE {} OWNER {}", tls.dbname, tls.user),
            );
        }
        server
    }

    /// Starts `postgres` on the data directory (appending to its log).
    fn spawn(&self) {
        let base = self.socket_dir().to_path_buf();
        let listen = if self.tls.is_some() { "127.0.0.1" } else { "" };
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(base.join("log"))
            .expect("the server log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(base.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&base)
            .arg("-c")
            .arg(format!("listen_addresses={listen}"))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "dynamic_shared_memory_type=mmap",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    }

    /// Restarts the server as `pg_ctl restart -m fast` does: a fast shutdown (every session is
    /// ended with `57P01 admin_shutdown`, the socket goes away), then, after `down` (nothing
    /// listens meanwhile), a start on the same data directory, socket and port. Returns once
    /// it accepts connections again.
    pub fn restart(&self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.spawn();
        self.wait_ready();
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.pgbin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--reset-env",
            ])
            .arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn make_certificates(&self, base: &Path, data: &Path) -> Tls {
        let sh = format!(
            r#"set -e
cd "{base}"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=roundhouse-test-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "{data}/server.key" -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "{data}/server.crt" -extfile ext 2>/dev/null
chmod 600 "{data}/server.key"
chmod 644 ca.crt
printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\npassword_encryption = 'scram-sha-256'\n" >> "{data}/postgresql.conf"
printf "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 reject\n" > "{data}/pg_hba.conf"
"#,
            base = base.display(),
            data = data.display()
        );
        run(
            Command::new("sh").arg("-c").arg(sh),
            "making test certificates",
        );
        if self.as_postgres {
            let (uid, gid) = uid_gid("postgres");
            for f in ["server.key", "server.crt", "postgresql.conf", "pg_hba.conf"] {
                std::os::unix::fs::chown(data.join(f), Some(uid), Some(gid)).expect("chown");
            }
        }
        Tls {
            ca: base.join("ca.crt"),
            port: self.port,
            user: "app".into(),
            password: "s3cret-pw".into(),
            dbname: "appdb".into(),
        }
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let ok = Command::new(self.pgbin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.socket_dir())
                .arg("-p")
                .arg(self.port.to_string())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            let exited = self
                .child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > Duration::from_secs(30) {
                let log =
                    std::fs::read_to_string(self.socket_dir().join("log")).unwrap_or_default();
                panic!("the test PostgreSQL did not start ({exited:?}):\n{log}");
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// The directory holding the socket (and everything else of this server).
    pub fn socket_dir(&self) -> &Path {
        self.dir.as_ref().expect("the server's directory").path()
    }

    /// The port (of the socket; and of 127.0.0.1 for a TLS server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS side, for a server from [`TestServer::start_tls`].
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Runs one SQL statement as the superuser in `db`; returns psql's unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        run(
            Command::new(self.pgbin.join("psql"))
                .args([
                    "-X",
                    "-q",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    "postgres",
                    "-h",
                ])
                .arg(self.socket_dir())
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-d", db, "-c", sql]),
            "psql",
        )
    }

    /// A new, empty database (`CREATE DATABASE … STRATEGY = FILE_COPY`, ~40 ms) and the
    /// configuration reaching it as the superuser over the socket.
    pub fn create_database(&self) -> PgConfig {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{n}");
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} STRATEGY = FILE_COPY"),
        );
        self.config(&name)
    }

    /// The configuration reaching `db` as the superuser over the socket.
    pub fn config(&self, db: &str) -> PgConfig {
        let host: String = percent_encoding::utf8_percent_encode(
            &self.socket_dir().display().to_string(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        PgConfig::parse(&format!("postgres://postgres@{host}:{}/{db}", self.port))
            .expect("a test URL")
            .with_pgpass_file(self.socket_dir().join("no-pgpass"))
    }

    /// Stops the server now (fast shutdown), as a test of "database down" needs.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        // SIGINT: fast shutdown (disconnect clients, checkpoint, exit).
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        // The TempDir removes the tree (root may delete postgres's files).
        self.dir.take();
    }
}
