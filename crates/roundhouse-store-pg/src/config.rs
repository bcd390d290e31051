//! Where the database is and how to log in: a `postgres://` URL plus where the password comes
//! from. Nothing here ever prints a password: [`PgConfig`]'s `Display` and `Debug` leave it
//! out, and so do the errors.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The default connect timeout: an unreachable server is an error after this, not a hang.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits by default for a database that went away (restarting) to come back.
pub const DEFAULT_RECONNECT_WAIT: Duration = Duration::from_secs(30);

/// A PostgreSQL URL this build cannot use. The URL itself is not repeated (it may hold a
/// password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PostgreSQL URL: {0}")]
pub struct ConfigError(String);

fn bad(reason: impl Into<String>) -> ConfigError {
    ConfigError(reason.into())
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text (`sslmode=disable`; the default for a unix socket or without `sslrootcert`).
    Disable,
    /// TLS; the server's certificate must chain to `sslrootcert`, any name (`verify-ca`, or
    /// `require` with `sslrootcert`, as libpq does).
    VerifyCa,
    /// TLS; the certificate must chain to `sslrootcert` and name the host (`verify-full`; the
    /// default when `sslrootcert` is given).
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or address, over TCP.
    Tcp(String),
    /// A unix socket directory (the socket is `DIR/.s.PGSQL.PORT`).
    Socket(PathBuf),
}

/// A secret that formats as `***`.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a password was found (said in connect errors; the password itself never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource {
    /// None was found; fine for `trust` or peer authentication.
    None,
    /// In the URL (`postgres://user:…@host`).
    Url,
    /// The configured password file.
    File,
    /// The `PGPASSWORD` environment variable.
    Env,
    /// A matching line of the password file `~/.pgpass` (or `PGPASSFILE`).
    PgPass,
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PasswordSource::None => "no password",
            PasswordSource::Url => "password from the URL",
            PasswordSource::File => "password from the password file",
            PasswordSource::Env => "password from PGPASSWORD",
            PasswordSource::PgPass => "password from the pgpass file",
        })
    }
}

/// How to reach the state database.
///
/// Parsed from `postgres://user@host:port/db?sslmode=verify-full&sslrootcert=/path/ca.crt`
/// (`postgresql://` too). A unix socket directory is given percent-encoded as the host
/// (`postgres://user@%2Frun%2Fpostgresql/db`) or as `?host=/run/postgresql`. Other query
/// parameters: `port`, `user`, `dbname`, `connect_timeout` (seconds), `application_name`,
/// `reconnect_wait` (seconds, default 30; 0: never wait): how long a call waits for a database
/// that went away (restarting) to come back.
///
/// The password, first found wins: in the URL (discouraged: URLs end up in shell history),
/// the file set with [`PgConfig::with_password_file`] (`state_password_file`), `PGPASSWORD`,
/// then the pgpass file (`PGPASSFILE` or `~/.pgpass`, libpq's format, which must not be
/// readable by group or others).
#[derive(Clone)]
pub struct PgConfig {
    user: String,
    host: Host,
    port: u16,
    dbname: String,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
    password: Option<Secret>,
    password_file: Option<PathBuf>,
    pgpass_file: Option<PathBuf>,
    use_env: bool,
    connect_timeout: Duration,
    application_name: String,
    pool_size: usize,
    reconnect_wait: Duration,
}

impl PgConfig {
    /// Parses a `postgres://` URL.
    pub fn parse(url: &str) -> Result<PgConfig, ConfigError> {
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(bad(format!(
                "scheme {:?} is not postgres:// or postgresql://",
                parsed.scheme()
            )));
        }
        let decode = |s: &str| -> Result<String, ConfigError> {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("a percent-encoded part is not UTF-8"))
        };
        let mut user = (!parsed.username().is_empty())
            .then(|| decode(parsed.username()))
            .transpose()?;
        let password = parsed.password().map(decode).transpose()?.map(Secret);
        let mut host = match parsed.host_str() {
            Some(h) if !h.is_empty() => {
                let h = decode(h)?;
                Some(if h.starts_with('/') {
                    Host::Socket(PathBuf::from(h))
                } else {
                    Host::Tcp(h.trim_start_matches('[').trim_end_matches(']').to_string())
                })
            }
            _ => None,
        };
        let mut port = parsed.port();
        let path = parsed.path().trim_start_matches('/');
        let mut dbname = (!path.is_empty()).then(|| decode(path)).transpose()?;
        let mut sslmode = None;
        let mut sslrootcert = None;
        let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
        let mut reconnect_wait = DEFAULT_RECONNECT_WAIT;
        let mut application_name = "roundhouse".to_string();
        for (k, v) in parsed.query_pairs() {
            let v = v.into_owned();
            match k.as_ref() {
                "host" => {
                    host = Some(if v.starts_with('/') {
                        Host::Socket(PathBuf::from(v))
                    } else {
                        Host::Tcp(v)
                    })
                }
                "port" => {
                    port = Some(
                        v.parse()
                            .map_err(|_| bad(format!("port {v:?} is not a number")))?,
                    )
                }
                "user" => user = Some(v),
                "dbname" => dbname = Some(v),
                "sslmode" => {
                    sslmode = Some(match v.as_str() {
                        "disable" => SslMode::Disable,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        // libpq: `require` with a root certificate verifies the chain.
                        "require" => SslMode::VerifyCa,
                        other => {
                            return Err(bad(format!(
                                "sslmode={other} is not supported: use verify-full (with \
                                 sslrootcert=/path/ca.crt), verify-ca, or disable"
                            )));
                        }
                    })
                }
                "sslrootcert" => sslrootcert = Some(PathBuf::from(v)),
                "connect_timeout" => {
                    let secs: u64 = v.parse().map_err(|_| {
                        bad(format!("connect_timeout {v:?} is not a number of seconds"))
                    })?;
                    connect_timeout = Duration::from_secs(secs.max(1));
                }
                "application_name" => application_name = v,
                "reconnect_wait" => {
                    let secs: u64 = v.parse().map_err(|_| {
                        bad(format!("reconnect_wait {v:?} is not a number of seconds"))
                    })?;
                    reconnect_wait = Duration::from_secs(secs);
                }
                "password" => {
                    return Err(bad(
                        "a password in the query string is not accepted: use PGPASSWORD, \
                         ~/.pgpass or a password file",
                    ));
                }
                other => return Err(bad(format!("unknown parameter {other:?}"))),
            }
        }
        let user = match user {
            Some(u) => u,
            None => std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .map_err(|_| bad("no user: write postgres://USER@host/db"))?,
        };
        let sslmode = match (sslmode, &sslrootcert) {
            (Some(SslMode::Disable), _) => SslMode::Disable,
            (Some(m), Some(_)) => m,
            (Some(m), None) => {
                return Err(bad(format!(
                    "sslmode={} needs sslrootcert=/path/ca.crt (the CA that signed the server's \
                     certificate)",
                    m.as_str()
                )));
            }
            (None, Some(_)) => SslMode::VerifyFull,
            (None, None) => SslMode::Disable,
        };
        Ok(PgConfig {
            dbname: dbname.unwrap_or_else(|| user.clone()),
            user,
            host: host.unwrap_or_else(|| Host::Socket(PathBuf::from("/var/run/postgresql"))),
            port: port.unwrap_or(5432),
            sslmode,
            sslrootcert,
            password,
            password_file: None,
            pgpass_file: None,
            use_env: true,
            connect_timeout,
            application_name,
            pool_size: 8,
            reconnect_wait,
        })
    }

    /// Reads the password from this file (its content, less a final newline): the cluster
    /// file's `state_password_file`. Comes before `PGPASSWORD` and the pgpass file.
    pub fn with_password_file(mut self, path: impl Into<PathBuf>) -> PgConfig {
        self.password_file = Some(path.into());
        self
    }

    /// Looks passwords up in this pgpass file instead of `PGPASSFILE` or `~/.pgpass`, and
    /// ignores `PGPASSWORD` (for tests, which must not depend on the environment).
    pub fn with_pgpass_file(mut self, path: impl Into<PathBuf>) -> PgConfig {
        self.pgpass_file = Some(path.into());
        self.use_env = false;
        self
    }

    /// How long connecting (TCP, TLS, authentication) may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> PgConfig {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call waits, reconnecting with backoff, for a database that went away after
    /// the store was opened (a restart): default [`DEFAULT_RECONNECT_WAIT`], zero never waits.
    pub fn with_reconnect_wait(mut self, wait: Duration) -> PgConfig {
        self.reconnect_wait = wait;
        self
    }

    /// See [`PgConfig::with_reconnect_wait`].
    pub fn reconnect_wait(&self) -> Duration {
        self.reconnect_wait
    }

    /// At most this many connections at once (default 8).
    pub fn with_pool_size(mut self, n: usize) -> PgConfig {
        self.pool_size = n.max(1);
        self
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Where the server listens.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS mode.
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// `host:port`, or the socket file: what connect errors name.
    pub fn endpoint(&self) -> String {
        match &self.host {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Socket(dir) => {
                format!("{}", dir.join(format!(".s.PGSQL.{}", self.port)).display())
            }
        }
    }

    /// Finds the password (see the type's documentation for the order).
    pub(crate) fn resolve_password(&self) -> Result<(Option<String>, PasswordSource), String> {
        if let Some(p) = &self.password {
            return Ok((Some(p.0.clone()), PasswordSource::Url));
        }
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
            let pw = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            if pw.is_empty() {
                return Err(format!("the password file {} is empty", path.display()));
            }
            return Ok((Some(pw.to_string()), PasswordSource::File));
        }
        if self.use_env
            && let Ok(pw) = std::env::var("PGPASSWORD")
            && !pw.is_empty()
        {
            return Ok((Some(pw), PasswordSource::Env));
        }
        let pgpass = match &self.pgpass_file {
            Some(p) => Some(p.clone()),
            None => std::env::var_os("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass"))),
        };
        if let Some(path) = pgpass
            && let Some(pw) = self.pgpass_lookup(&path)?
        {
            return Ok((Some(pw), PasswordSource::PgPass));
        }
        Ok((None, PasswordSource::None))
    }

    fn pgpass_lookup(&self, path: &Path) -> Result<Option<String>, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{} has group or world access; chmod 0600 it (libpq ignores such a file too)",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let host = match &self.host {
            Host::Tcp(h) => vec![h.clone()],
            Host::Socket(d) => vec!["localhost".to_string(), d.display().to_string()],
        };
        let port = self.port.to_string();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                continue;
            }
            let m = |f: &str, want: &str| f == "*" || f == want;
            if (fields[0] == "*" || host.iter().any(|h| *h == fields[0]))
                && m(&fields[1], &port)
                && m(&fields[2], &self.dbname)
                && m(&fields[3], &self.user)
            {
                return Ok(Some(fields[4].clone()));
            }
        }
        Ok(None)
    }

    /// The client's configuration, with the password.
    pub(crate) fn client_config(&self, password: Option<&str>) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.user(&self.user)
            .dbname(&self.dbname)
            .port(self.port)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                _ => tokio_postgres::config::SslMode::Require,
            });
        match &self.host {
            Host::Tcp(h) => c.host(h),
            Host::Socket(d) => c.host_path(d),
        };
        if let Some(p) = password {
            c.password(p);
        }
        c
    }

    /// The TLS connector: roots from `sslrootcert` (none when TLS is off; the connector is
    /// then never used).
    pub(crate) fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let mut roots = RootCertStore::empty();
        if let (Some(ca), true) = (&self.sslrootcert, self.sslmode != SslMode::Disable) {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", ca.display()))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("cannot read sslrootcert {}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "sslrootcert {} holds no PEM certificate",
                    ca.display()
                ));
            }
        }
        let config = match self.sslmode {
            SslMode::VerifyCa => {
                let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("TLS setup: {e}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(inner)))
                    .with_no_client_auth()
            }
            SslMode::Disable | SslMode::VerifyFull => {
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// Splits a pgpass line on unescaped `:`, undoing `\:` and `\\`.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(s)) = (chars.next(), out.last_mut()) {
                    s.push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => {
                if let Some(s) = out.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    out
}

/// `verify-ca`: the chain must verify; the name need not match.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `postgres://user@host:port/db` plus the TLS parameters; never the password.
impl fmt::Display for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            Host::Tcp(h) if h.contains(':') => format!("[{h}]"),
            Host::Tcp(h) => h.clone(),
            Host::Socket(d) => percent_encoding::utf8_percent_encode(
                &d.display().to_string(),
                percent_encoding::NON_ALPHANUMERIC,
            )
            .to_string(),
        };
        write!(
            f,
            "postgres://{}@{host}:{}/{}",
            self.user, self.port, self.dbname
        )?;
        if self.sslmode != SslMode::Disable {
            write!(f, "?sslmode={}", self.sslmode.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("user", &self.user)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_wait", &self.reconnect_wait)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_without_the_password() {
        let c = PgConfig::parse(
            "postgres://app:s3cr%3At@db1.example:6543/rh?sslmode=verify-full&sslrootcert=/etc/ca.crt",
        )
        .unwrap();
        assert_eq!(c.user(), "app");
        assert_eq!(c.host(), &Host::Tcp("db1.example".into()));
        assert_eq!(c.port(), 6543);
        assert_eq!(c.dbname(), "rh");
        assert_eq!(c.sslmode(), SslMode::VerifyFull);
        assert_eq!(c.endpoint(), "db1.example:6543");
        assert_eq!(c.reconnect_wait(), DEFAULT_RECONNECT_WAIT);
        let w = |url: &str| PgConfig::parse(url).unwrap().reconnect_wait();
        assert_eq!(w("postgres://app@db1/rh?reconnect_wait=0"), Duration::ZERO);
        assert_eq!(
            w("postgres://app@db1/rh?reconnect_wait=90"),
            Duration::from_secs(90)
        );
        assert!(PgConfig::parse("postgres://app@db1/rh?reconnect_wait=soon").is_err());
        assert_eq!(
            c.to_string(),
            "postgres://app@db1.example:6543/rh?sslmode=verify-full"
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        assert_eq!(
            c.resolve_password().unwrap(),
            (Some("s3cr:t".to_string()), PasswordSource::Url)
        );

        let s = PgConfig::parse("postgres://postgres@%2Ftmp%2Fpg%20x:5999/t1").unwrap();
        assert_eq!(s.host(), &Host::Socket("/tmp/pg x".into()));
        assert_eq!(s.endpoint(), "/tmp/pg x/.s.PGSQL.5999");
        let q = PgConfig::parse("postgres:///t2?host=/tmp/s&port=7&user=u").unwrap();
        assert_eq!(
            (q.host(), q.port(), q.user(), q.dbname()),
            (&Host::Socket("/tmp/s".into()), 7, "u", "t2")
        );
        assert_eq!(
            PgConfig::parse("postgres://u@h/d?sslrootcert=/ca")
                .unwrap()
                .sslmode(),
            SslMode::VerifyFull
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for (url, want) in [
            ("mysql://u:pw@h/d", "scheme"),
            (
                "postgres://u:pw@h/d?sslmode=verify-full",
                "needs sslrootcert",
            ),
            (
                "postgres://u:pw@h/d?sslmode=prefer&sslrootcert=/x",
                "not supported",
            ),
            ("postgres://u:pw@h/d?frobnicate=1", "unknown parameter"),
            ("postgres://u@h/d?password=pw", "not accepted"),
        ] {
            let e = PgConfig::parse(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("pw"), "{url}: {e}");
        }
    }

    #[test]
    fn passwords_come_from_the_file_then_pgpass() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pgpass = dir.path().join("pgpass");
        std::fs::write(
            &pgpass,
            "# comment\nother:5432:*:app:nope\ndb1:5432:rh:app:pa\\:ss\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = PgConfig::parse("postgres://app@db1/rh")
            .unwrap()
            .with_pgpass_file(&pgpass);
        assert_eq!(
            c.resolve_password().unwrap(),
            (Some("pa:ss".into()), PasswordSource::PgPass)
        );
        let c2 = PgConfig::parse("postgres://bob@db2/x")
            .unwrap()
            .with_pgpass_file(&pgpass);
        assert_eq!(
            c2.resolve_password().unwrap().0.as_deref(),
            Some("fallback")
        );

        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let c3 = c.clone().with_password_file(&file);
        assert_eq!(
            c3.resolve_password().unwrap(),
            (Some("from-file".into()), PasswordSource::File)
        );

        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = c.resolve_password().unwrap_err();
        assert!(e.contains("group or world"), "{e}");
        assert!(!e.contains("pa:ss"), "{e}");
    }
}
