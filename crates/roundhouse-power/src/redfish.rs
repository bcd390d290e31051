//! Redfish: service root, the node's ComputerSystem, boot source override, `Reset`, and
//! polling of `PowerState` (BMCs apply power changes seconds after they answer).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use roundhouse_config::RedfishAuth;
use serde_json::{Value, json};

use crate::{
    Bmc, BootDevice, BootOverride, BootSetting, BoxFuture, Limits, Password, PowerAction,
    PowerError, PowerState,
};

/// How to reach one Redfish service.
#[derive(Debug, Clone)]
pub struct RedfishConfig {
    /// Node name, for messages.
    pub node: String,
    /// Base URL, e.g. `https://10.0.0.5` (no trailing slash).
    pub endpoint: String,
    /// ComputerSystem id; `None` when the service has exactly one.
    pub system_id: Option<String>,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Password,
    /// PEM bundle of CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate.
    pub insecure: bool,
    /// Basic, session or auto.
    pub auth: RedfishAuth,
    /// Timeouts and retries.
    pub limits: Limits,
}

/// A Redfish BMC.
pub struct RedfishBmc {
    cfg: RedfishConfig,
    name: String,
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// Credentials for one call.
enum Auth {
    /// The service root, which the Redfish spec requires to answer without credentials:
    /// nothing secret is sent before it is known how the service wants them.
    None,
    Basic,
    Token {
        token: String,
        session: Option<String>,
    },
}

/// What one call needs to know: how it authenticates and the system's URL.
struct Conn {
    auth: Auth,
    system: String,
}

const MAX_BODY_IN_ERRORS: usize = 600;
/// Largest answer read from a BMC; Redfish resources are a few KiB.
const MAX_BODY: usize = 4 << 20;

/// Why a request got no HTTP answer.
enum SendError {
    /// Nothing within the request timeout.
    Timeout,
    /// The connection (TCP or TLS) could not be made.
    Connect(String),
    /// Anything else.
    Other(String),
}

impl RedfishBmc {
    /// A driver for this service; nothing is sent until a call.
    pub fn new(cfg: RedfishConfig) -> Result<Self, PowerError> {
        let name = format!("node {}: redfish {}", cfg.node, cfg.endpoint);
        let tls = tls_config(&cfg, &name)?;
        let mut plain = HttpConnector::new();
        plain.enforce_http(false);
        plain.set_connect_timeout(Some(cfg.limits.request_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(plain);
        let http = Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(RedfishBmc { cfg, name, http })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.cfg.endpoint, path)
        }
    }

    /// One request with bounded retries on transient failures. POSTs are retried only when
    /// the connection failed (the request never reached the BMC), since `Reset` is not
    /// idempotent.
    async fn request(
        &self,
        auth: &Auth,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        what: &str,
    ) -> Result<(StatusCode, HeaderMap, Value), PowerError> {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let retry_allowed = attempt <= self.cfg.limits.retries;
            let req = self.build(auth, &method, path, body, if_match)?;
            match self.send(req).await {
                Ok((status, headers, bytes)) => {
                    if status.is_success() {
                        let v = if bytes.is_empty() {
                            Value::Null
                        } else {
                            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                        };
                        return Ok((status, headers, v));
                    }
                    let err = PowerError::Http {
                        bmc: self.name.clone(),
                        what: what.to_string(),
                        status: status.as_u16(),
                        body: error_text(&bytes),
                    };
                    if err.is_transient() && method != Method::POST && retry_allowed {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(err);
                }
                Err(e) => {
                    let (transient, chain) = match &e {
                        SendError::Timeout => (method != Method::POST, "no answer".to_string()),
                        SendError::Connect(c) => (true, c.clone()),
                        SendError::Other(c) => (false, c.clone()),
                    };
                    // A certificate problem will not go away by asking again.
                    if chain.contains("certificate") {
                        return Err(PowerError::Protocol {
                            bmc: self.name.clone(),
                            detail: format!(
                                "{what}: TLS: {chain} (set ca_file to the CA that signed the BMC's certificate, or insecure = true)"
                            ),
                        });
                    }
                    if transient && retry_allowed {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    if matches!(e, SendError::Other(_)) {
                        return Err(PowerError::Protocol {
                            bmc: self.name.clone(),
                            detail: format!("{what}: {chain}"),
                        });
                    }
                    return Err(PowerError::Timeout {
                        bmc: self.name.clone(),
                        what: what.to_string(),
                        after: start.elapsed(),
                        attempts: attempt,
                        detail: format!("; last: {chain}"),
                    });
                }
            }
        }
    }

    fn build(
        &self,
        auth: &Auth,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, PowerError> {
        let url = self.url(path);
        let bad = |detail: String| PowerError::Protocol {
            bmc: self.name.clone(),
            detail,
        };
        let mut b = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(header::ACCEPT, "application/json")
            .header("OData-Version", "4.0");
        b = match auth {
            Auth::None => b,
            Auth::Basic => {
                let pair = format!("{}:{}", self.cfg.username, self.cfg.password.expose());
                let mut v = HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
                .map_err(|_| bad("the user name or password cannot go in an HTTP header".into()))?;
                v.set_sensitive(true);
                b.header(header::AUTHORIZATION, v)
            }
            Auth::Token { token, .. } => {
                let mut v = HeaderValue::from_str(token)
                    .map_err(|_| bad("the BMC's session token is not a valid header".into()))?;
                v.set_sensitive(true);
                b.header("X-Auth-Token", v)
            }
        };
        if let Some(tag) = if_match {
            b = b.header(header::IF_MATCH, tag);
        }
        let bytes = match body {
            Some(v) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        b.body(Full::new(bytes))
            .map_err(|e| bad(format!("a request to {url:?} cannot be built: {e}")))
    }

    /// Sends one request and reads the whole (size-capped) answer within the request timeout.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), SendError> {
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                let chain = error_chain(&e);
                if e.is_connect() {
                    SendError::Connect(chain)
                } else {
                    SendError::Other(chain)
                }
            })?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| SendError::Other(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((parts.status, parts.headers, bytes))
        };
        tokio::time::timeout(self.cfg.limits.request_timeout, exchange)
            .await
            .map_err(|_| SendError::Timeout)?
    }

    async fn get(&self, c: &Conn, path: &str, what: &str) -> Result<Value, PowerError> {
        Ok(self
            .request(&c.auth, Method::GET, path, None, None, what)
            .await?
            .2)
    }

    /// Logs in (when sessions are used) and finds the system.
    async fn connect(&self) -> Result<Conn, PowerError> {
        let root = self
            .request(
                &Auth::None,
                Method::GET,
                "/redfish/v1/",
                None,
                None,
                "GET service root",
            )
            .await?
            .2;
        let sessions = root
            .pointer("/Links/Sessions/@odata.id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let auth = match (self.cfg.auth, sessions) {
            (RedfishAuth::Basic, _) | (RedfishAuth::Auto, None) => Auth::Basic,
            (RedfishAuth::Session, None) => {
                return Err(PowerError::Protocol {
                    bmc: self.name.clone(),
                    detail: "auth = \"session\" but the service root links no SessionService sessions (Links.Sessions)".into(),
                });
            }
            (_, Some(path)) => self.login(&path).await?,
        };
        let mut c = Conn {
            auth,
            system: String::new(),
        };
        let systems = root
            .pointer("/Systems/@odata.id")
            .and_then(Value::as_str)
            .ok_or_else(|| self.protocol("the service root has no Systems collection"))?
            .to_string();
        let coll = self.get(&c, &systems, "GET Systems").await?;
        let members: Vec<String> = coll
            .get("Members")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.get("@odata.id").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let last = |p: &str| {
            p.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        };
        c.system = match &self.cfg.system_id {
            Some(id) => members
                .iter()
                .find(|m| last(m) == *id)
                .cloned()
                .ok_or_else(|| {
                    self.protocol(&format!(
                        "no ComputerSystem {id:?}; the service has: {}",
                        members
                            .iter()
                            .map(|m| last(m))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
            None if members.len() == 1 => members[0].clone(),
            None => {
                return Err(self.protocol(&format!(
                    "the service has {} ComputerSystems ({}); set system_id",
                    members.len(),
                    members
                        .iter()
                        .map(|m| last(m))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        Ok(c)
    }

    async fn login(&self, sessions: &str) -> Result<Auth, PowerError> {
        let body = json!({"UserName": self.cfg.username, "Password": self.cfg.password.expose()});
        let (_, headers, _) = self
            .request(
                &Auth::Basic,
                Method::POST,
                sessions,
                Some(&body),
                None,
                "POST SessionService/Sessions (login)",
            )
            .await
            .map_err(|e| match e {
                PowerError::Http {
                    status: 401, body, ..
                }
                | PowerError::Http {
                    status: 403, body, ..
                } => PowerError::Auth {
                    bmc: self.name.clone(),
                    user: self.cfg.username.clone(),
                    detail: body,
                },
                other => other,
            })?;
        let token = headers
            .get("X-Auth-Token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.protocol("the session login answered no X-Auth-Token"))?
            .to_string();
        let session = headers
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Auth::Token { token, session })
    }

    async fn disconnect(&self, c: Conn) {
        if let Auth::Token {
            session: Some(s), ..
        } = &c.auth
        {
            let _ = self
                .request(
                    &c.auth,
                    Method::DELETE,
                    s,
                    None,
                    None,
                    "DELETE session (logout)",
                )
                .await;
        }
    }

    /// Runs `f` with a connection and always logs out afterwards.
    async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&Conn) -> Result<T, PowerError>,
    ) -> Result<T, PowerError> {
        let c = self.connect().await.map_err(|e| self.auth_error(e))?;
        let out = f(&c).await;
        self.disconnect(c).await;
        out
    }

    /// A 401 under basic authentication is a credentials problem: say so.
    fn auth_error(&self, e: PowerError) -> PowerError {
        match e {
            PowerError::Http {
                status: 401, body, ..
            } => PowerError::Auth {
                bmc: self.name.clone(),
                user: self.cfg.username.clone(),
                detail: format!("HTTP 401: {body}"),
            },
            other => other,
        }
    }

    fn protocol(&self, detail: &str) -> PowerError {
        PowerError::Protocol {
            bmc: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    async fn read_state(&self, c: &Conn) -> Result<(PowerState, String), PowerError> {
        let sys = self.get(c, &c.system, "GET ComputerSystem").await?;
        let word = sys
            .get("PowerState")
            .and_then(Value::as_str)
            .unwrap_or("(none)")
            .to_string();
        // PoweringOn/PoweringOff are transitions: report where it stands now.
        let state = match word.as_str() {
            "On" | "PoweringOff" => PowerState::On,
            "Off" | "PoweringOn" => PowerState::Off,
            _ => {
                return Err(self.protocol(&format!(
                    "ComputerSystem PowerState is {word:?}, not On or Off"
                )));
            }
        };
        Ok((state, word))
    }

    async fn reset(&self, action: PowerAction) -> Result<(), PowerError> {
        self.with_conn(async |c| {
            let sys = self.get(c, &c.system, "GET ComputerSystem").await?;
            let reset = sys
                .pointer("/Actions/#ComputerSystem.Reset")
                .ok_or_else(|| self.protocol("the ComputerSystem has no Reset action"))?;
            let target = reset
                .get("target")
                .and_then(Value::as_str)
                .ok_or_else(|| self.protocol("the Reset action has no target"))?
                .to_string();
            let allowed: Option<Vec<String>> = reset
                .get("ResetType@Redfish.AllowableValues")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
            let ok = |t: &str| allowed.as_ref().is_none_or(|a| a.iter().any(|x| x == t));
            let (kind, wanted) = match action {
                PowerAction::On => ("On", "On"),
                PowerAction::Off => ("ForceOff", "Off"),
                PowerAction::Cycle
                    if sys.get("PowerState").and_then(Value::as_str) == Some("Off") =>
                {
                    ("On", "On")
                }
                PowerAction::Cycle if ok("ForceRestart") => ("ForceRestart", "On"),
                PowerAction::Cycle if ok("PowerCycle") => ("PowerCycle", "On"),
                PowerAction::Cycle => ("GracefulRestart", "On"),
            };
            if !ok(kind) {
                return Err(self.protocol(&format!(
                    "Reset type {kind} is not allowed by the BMC (allowed: {})",
                    allowed.unwrap_or_default().join(", ")
                )));
            }
            self.request(
                &c.auth,
                Method::POST,
                &target,
                Some(&json!({"ResetType": kind})),
                None,
                &format!("POST ComputerSystem.Reset {kind}"),
            )
            .await?;
            let start = Instant::now();
            loop {
                let (_, word) = self.read_state(c).await?;
                if word == wanted {
                    return Ok(());
                }
                if start.elapsed() >= self.cfg.limits.settle {
                    return Err(PowerError::NotReached {
                        bmc: self.name.clone(),
                        wanted: wanted.to_string(),
                        seen: word,
                        after: start.elapsed(),
                    });
                }
                tokio::time::sleep(self.cfg.limits.poll).await;
            }
        })
        .await
    }

    async fn boot(&self, boot: BootOverride) -> Result<(), PowerError> {
        self.with_conn(async |c| {
            let (_, headers, sys) = self
                .request(
                    &c.auth,
                    Method::GET,
                    &c.system,
                    None,
                    None,
                    "GET ComputerSystem",
                )
                .await?;
            let b = sys.get("Boot").cloned().unwrap_or(Value::Null);
            let target = match boot.device {
                BootDevice::Pxe => "Pxe",
                BootDevice::Disk => "Hdd",
            };
            if let Some(allowed) = b
                .get("BootSourceOverrideTarget@Redfish.AllowableValues")
                .and_then(Value::as_array)
                && !allowed.iter().any(|v| v.as_str() == Some(target))
            {
                return Err(self.protocol(&format!(
                    "boot target {target} is not allowed by the BMC (allowed: {})",
                    allowed
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let mut patch = json!({
                "BootSourceOverrideTarget": target,
                "BootSourceOverrideEnabled": if boot.persistent { "Continuous" } else { "Once" },
            });
            // Only BMCs that report a mode take one; others reject the unknown property.
            if b.get("BootSourceOverrideMode").is_some() {
                patch["BootSourceOverrideMode"] = json!(if boot.efi { "UEFI" } else { "Legacy" });
            }
            let etag = headers
                .get("ETag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| {
                    sys.get("@odata.etag")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
            self.request(
                &c.auth,
                Method::PATCH,
                &c.system,
                Some(&json!({ "Boot": patch })),
                etag.as_deref(),
                &format!("PATCH ComputerSystem Boot ({boot})"),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn read_boot(&self) -> Result<BootSetting, PowerError> {
        self.with_conn(async |c| {
            let sys = self.get(c, &c.system, "GET ComputerSystem").await?;
            let b = sys.get("Boot").cloned().unwrap_or(Value::Null);
            let word = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
            let enabled = word("BootSourceOverrideEnabled");
            let device = match word("BootSourceOverrideTarget").as_deref() {
                Some("Pxe") => "pxe".to_string(),
                Some("Hdd") => "disk".to_string(),
                Some("None") | None => "none".to_string(),
                Some(other) => other.to_string(),
            };
            Ok(BootSetting {
                device,
                persistent: enabled.as_deref().map(|e| e == "Continuous"),
                efi: word("BootSourceOverrideMode").map(|m| m == "UEFI"),
                valid: enabled.as_deref().map(|e| e != "Disabled"),
            })
        })
        .await
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(5))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The Redfish error message when there is one, else the start of the body.
fn error_text(bytes: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        let ext = v
            .pointer("/error/@Message.ExtendedInfo/0/Message")
            .and_then(Value::as_str);
        let msg = v.pointer("/error/message").and_then(Value::as_str);
        if let Some(m) = ext.or(msg) {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let mut end = text.len().min(MAX_BODY_IN_ERRORS);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_string()
}

fn tls_config(cfg: &RedfishConfig, name: &str) -> Result<rustls::ClientConfig, PowerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| PowerError::Protocol {
            bmc: name.to_string(),
            detail: format!("TLS setup: {e}"),
        })?;
    if cfg.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth());
    }
    let path = cfg
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let mut roots = rustls::RootCertStore::empty();
    // Only a missing system bundle is tolerated (then only `ca_file` or insecure can work);
    // a configured CA file must be readable.
    let pem = match std::fs::read(&path) {
        Ok(p) => p,
        Err(e) if cfg.ca_file.is_none() && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(PowerError::Io {
                bmc: name.to_string(),
                what: format!("reading the CA file {}", path.display()),
                source: e,
            });
        }
    };
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| PowerError::Protocol {
            bmc: name.to_string(),
            detail: format!("reading the CA file {}: {e}", path.display()),
        })?;
        // A system bundle may hold certificates rustls cannot use; skip those.
        let _ = roots.add(cert);
    }
    if cfg.ca_file.is_some() && roots.is_empty() {
        return Err(PowerError::Protocol {
            bmc: name.to_string(),
            detail: format!("the CA file {} holds no usable certificate", path.display()),
        });
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `insecure = true`: any certificate is accepted (signatures are still checked, so the
/// handshake itself is sound; only the server's identity is not).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Bmc for RedfishBmc {
    fn name(&self) -> &str {
        &self.name
    }

    fn power_state(&self) -> BoxFuture<'_, PowerState> {
        Box::pin(async move {
            self.with_conn(async |c| Ok(self.read_state(c).await?.0))
                .await
        })
    }

    fn power(&self, action: PowerAction) -> BoxFuture<'_, ()> {
        Box::pin(self.reset(action))
    }

    fn set_boot(&self, boot: BootOverride) -> BoxFuture<'_, ()> {
        Box::pin(self.boot(boot))
    }

    fn boot_setting(&self) -> BoxFuture<'_, BootSetting> {
        Box::pin(self.read_boot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redfish_error_message_is_preferred_over_raw_body() {
        let body = br#"{"error":{"code":"Base.1.0.GeneralError","message":"generic","@Message.ExtendedInfo":[{"Message":"The value Floppy for BootSourceOverrideTarget is not allowed."}]}}"#;
        assert_eq!(
            error_text(body),
            "The value Floppy for BootSourceOverrideTarget is not allowed."
        );
        let long = "é".repeat(1000);
        assert!(error_text(long.as_bytes()).len() <= MAX_BODY_IN_ERRORS);
    }
}
