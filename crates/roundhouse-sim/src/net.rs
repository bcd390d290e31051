//! HTTP as a machine on the lab network does it. The lab network is loopback only: a machine
//! contacts loopback hosts (and the configured boot server host); any other host, such as
//! Flatcar's public release server, is recorded and not contacted.

use std::time::Duration;

use reqwest::Url;

/// The result of fetching an image.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// Downloaded and discarded, this many bytes.
    Bytes(u64),
    /// A host outside the lab network: not contacted, treated as fetched.
    External,
    /// The server answered with a non-success status.
    Status(u16),
}

/// Who is fetching: the headers a real machine's program sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// iPXE (scripts, kernel, initrd).
    Ipxe,
    /// Ignition (configs and file sources).
    Ignition,
}

impl Agent {
    fn user_agent(self) -> &'static str {
        match self {
            Agent::Ipxe => "iPXE/1.21.1 (roundhouse-sim)",
            Agent::Ignition => "Ignition/v2.14.0 (roundhouse-sim)",
        }
    }

    fn accept(self) -> &'static str {
        match self {
            Agent::Ipxe => "*/*",
            // What Ignition 2.x sends for spec 3 configs.
            Agent::Ignition => "application/vnd.coreos.ignition+json;version=3.4.0, */*;q=0.1",
        }
    }
}

/// A machine's HTTP client.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    extra_host: Option<String>,
}

impl Http {
    /// A client that may also contact `boot_host` (the boot server's host name).
    pub fn new(boot_host: Option<String>) -> Http {
        // One client serves every machine of the fleet, but machines share no connections:
        // a connection kept idle for reuse could be taken by another machine (or closed by the
        // server as it is reused, failing a boot on a keep-alive race no real fleet has). Each
        // request gets a fresh connection, as from firmware that was just powered on.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .no_proxy()
            .build()
            .unwrap_or_default();
        Http {
            client,
            extra_host: boot_host,
        }
    }

    /// Whether `url` points into the lab network.
    pub fn is_local(&self, url: &Url) -> bool {
        match url.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost" || self.extra_host.as_deref() == Some(d),
            None => false,
        }
    }

    /// GETs a text document (a script or a config). External hosts are an error here: the
    /// machine needs the bytes.
    pub async fn get_text(&self, url: &Url, agent: Agent) -> Result<(u16, String), String> {
        if !self.is_local(url) {
            return Err(format!(
                "{url}: host outside the lab network, not contacted"
            ));
        }
        let r = self
            .client
            .get(url.clone())
            .header(reqwest::header::USER_AGENT, agent.user_agent())
            .header(reqwest::header::ACCEPT, agent.accept())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = r.status().as_u16();
        let body = r.text().await.map_err(|e| describe(&e))?;
        Ok((status, body))
    }

    /// GETs bytes (an Ignition file source).
    pub async fn get_bytes(&self, url: &Url, agent: Agent) -> Result<Vec<u8>, String> {
        if !self.is_local(url) {
            return Err(format!(
                "{url}: host outside the lab network, not contacted"
            ));
        }
        let r = self
            .client
            .get(url.clone())
            .header(reqwest::header::USER_AGENT, agent.user_agent())
            .header(reqwest::header::ACCEPT, agent.accept())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = r.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(format!("{url}: HTTP {status}"));
        }
        Ok(r.bytes().await.map_err(|e| describe(&e))?.to_vec())
    }

    /// GETs an image and throws its bytes away, as the simulation needs none of them.
    pub async fn download(&self, url: &Url, agent: Agent) -> Result<Fetched, String> {
        if !self.is_local(url) {
            return Ok(Fetched::External);
        }
        let mut r = self
            .client
            .get(url.clone())
            .header(reqwest::header::USER_AGENT, agent.user_agent())
            .header(reqwest::header::ACCEPT, agent.accept())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = r.status().as_u16();
        if !(200..300).contains(&status) {
            return Ok(Fetched::Status(status));
        }
        let mut n = 0u64;
        while let Some(chunk) = r.chunk().await.map_err(|e| describe(&e))? {
            n += chunk.len() as u64;
        }
        Ok(Fetched::Bytes(n))
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A keep-alive HTTP/1.1 server that counts connections and answers every request on
    /// them.
    async fn counting_server() -> (u16, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut have = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        have.extend_from_slice(&buf[..n]);
                        while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            have.drain(..end + 4);
                            let resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if s.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (port, conns)
    }

    #[tokio::test]
    async fn requests_never_reuse_a_connection() {
        let (port, conns) = counting_server().await;
        let http = Http::new(None);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/boot.ipxe")).unwrap();
        for _ in 0..3 {
            let (status, body) = http.get_text(&url, Agent::Ipxe).await.unwrap();
            assert_eq!((status, body.as_str()), (200, "ok"));
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }
}
