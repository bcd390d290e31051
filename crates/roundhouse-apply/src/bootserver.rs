//! Asking the boot server whether it serves what was just published.
//!
//! The boot server picks up changes to its data and state directories by polling (every 2 s
//! by default). A machine that boots faster than that would get the previous configs or
//! netboot decision, so after each publication the executor waits until the server's
//! `roundhouse_boot_index_loaded_timestamp_seconds` metric is later than the write. Only
//! `/metrics` is read: requesting a node's config would itself show up in the fetch journal
//! and could be mistaken for the machine's own fetch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METRIC: &str = "roundhouse_boot_index_loaded_timestamp_seconds";

/// The boot server as the operator's machine reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootProbe {
    /// `host:port`.
    authority: String,
    /// Path prefix of the base URL (usually empty).
    prefix: String,
}

impl BootProbe {
    /// A probe for `base_url` (the cluster's `boot_server_http`). `None` for `https://` URLs:
    /// this probe speaks plain HTTP only.
    pub fn new(base_url: &str) -> Option<BootProbe> {
        let rest = base_url.strip_prefix("http://")?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return None;
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Some(BootProbe {
            authority,
            prefix: prefix.to_string(),
        })
    }

    /// When the serving index was loaded, as Unix seconds.
    pub async fn loaded_at(&self) -> Result<f64, String> {
        let work = async {
            let mut s = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| e.to_string())?;
            let host = self.authority.rsplit_once(':').map_or("", |(h, _)| h);
            let req = format!(
                "GET {}/metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: roundhouse-apply\r\n\r\n",
                self.prefix
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            // Metrics are a few kilobytes; cap what a misbehaving server can make us hold.
            s.take(1 << 20)
                .read_to_end(&mut body)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(body)
        };
        let body = tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .map_err(|_| "no answer within 5s".to_string())??;
        let text = String::from_utf8_lossy(&body);
        if !text.starts_with("HTTP/1.1 200") && !text.starts_with("HTTP/1.0 200") {
            return Err(format!(
                "unexpected answer: {}",
                text.lines().next().unwrap_or("(empty)")
            ));
        }
        parse_loaded_at(&text).ok_or_else(|| format!("no {METRIC} in /metrics"))
    }

    /// Waits until the server loaded its data after `written`, for up to `deadline`.
    pub async fn wait_loaded_after(
        &self,
        written: SystemTime,
        deadline: Duration,
    ) -> Result<(), String> {
        let t = written
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let start = std::time::Instant::now();
        let mut last;
        loop {
            match self.loaded_at().await {
                Ok(at) if at >= t => return Ok(()),
                Ok(at) => last = format!("it last loaded its data at Unix time {at:.3}"),
                Err(e) => return Err(format!("asking http://{}/metrics: {e}", self.authority)),
            }
            if start.elapsed() >= deadline {
                return Err(format!(
                    "the boot server did not reload within {deadline:?} of the publication ({last}); is it serving this data directory with reloading on?"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn parse_loaded_at(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(METRIC))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_metrics() {
        let p = BootProbe::new("http://10.0.0.2:8080").unwrap();
        assert_eq!(p.authority, "10.0.0.2:8080");
        assert_eq!(BootProbe::new("http://boot/x/").unwrap().prefix, "/x");
        assert_eq!(BootProbe::new("http://boot").unwrap().authority, "boot:80");
        assert!(BootProbe::new("https://boot").is_none());
        let text =
            format!("# HELP {METRIC} x\n# TYPE {METRIC} gauge\n{METRIC} 1764068000.250\nother 1\n");
        assert_eq!(parse_loaded_at(&text), Some(1764068000.25));
    }
}
