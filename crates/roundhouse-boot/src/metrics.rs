//! Prometheus metrics, kept in atomics and written in the text exposition format by hand (the
//! set is small and fixed, so a metrics library would add more than it saves).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The routes requests are counted by: a closed set, so label cardinality stays fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/`
    Home,
    /// `/boot.ipxe`, `/boot.ipxe.0`
    BootIpxe,
    /// `/ipxe`
    Ipxe,
    /// `/grub`
    Grub,
    /// `/ignition`
    Ignition,
    /// `/generic`
    Generic,
    /// `/metadata`
    Metadata,
    /// `/assets/…`
    Assets,
    /// `/healthz`
    Healthz,
    /// `/metrics`
    Metrics,
    /// `/roundhouse/v1/…`
    Api,
    /// Anything else (404s).
    Other,
}

const ROUTES: [Route; 12] = [
    Route::Home,
    Route::BootIpxe,
    Route::Ipxe,
    Route::Grub,
    Route::Ignition,
    Route::Generic,
    Route::Metadata,
    Route::Assets,
    Route::Healthz,
    Route::Metrics,
    Route::Api,
    Route::Other,
];

impl Route {
    /// The route a request path belongs to.
    pub fn of_path(path: &str) -> Route {
        match path {
            "/" => Route::Home,
            "/boot.ipxe" | "/boot.ipxe.0" => Route::BootIpxe,
            "/ipxe" => Route::Ipxe,
            "/grub" => Route::Grub,
            "/ignition" => Route::Ignition,
            "/generic" => Route::Generic,
            "/metadata" => Route::Metadata,
            "/healthz" => Route::Healthz,
            "/metrics" => Route::Metrics,
            p if p.starts_with("/assets/") => Route::Assets,
            p if p.starts_with("/roundhouse/v1/") => Route::Api,
            _ => Route::Other,
        }
    }

    /// The route whose label value is `label`.
    pub fn from_label(label: &str) -> Option<Route> {
        ROUTES.into_iter().find(|r| r.as_str() == label)
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Home => "home",
            Route::BootIpxe => "boot.ipxe",
            Route::Ipxe => "ipxe",
            Route::Grub => "grub",
            Route::Ignition => "ignition",
            Route::Generic => "generic",
            Route::Metadata => "metadata",
            Route::Assets => "assets",
            Route::Healthz => "healthz",
            Route::Metrics => "metrics",
            Route::Api => "api",
            Route::Other => "other",
        }
    }

    fn idx(self) -> usize {
        ROUTES
            .iter()
            .position(|r| *r == self)
            .unwrap_or(ROUTES.len() - 1)
    }
}

/// Statuses counted individually; anything else falls in the last slot, labelled by class.
const STATUSES: [u16; 14] = [
    200, 206, 304, 400, 404, 405, 413, 414, 416, 431, 500, 503, 0, 0,
];
/// Histogram upper bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];
/// Distinct config digests tracked before new ones are lumped under `other`.
const MAX_DIGESTS: usize = 50_000;

#[derive(Default)]
struct RouteStats {
    by_status: [AtomicU64; STATUSES.len()],
    other_status: Mutex<HashMap<u16, u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Requests by body digest. Digests are SHA-256 values of bodies this server serves, so a
/// cheap word-at-a-time hash is as good as SipHash here, at a fraction of its cost per request.
type DigestCounts = HashMap<Arc<str>, u64, std::hash::BuildHasherDefault<WordHasher>>;

/// A multiply-rotate hash over 8-byte words (the "Fx" hash of rustc).
#[derive(Default, Clone, Copy)]
struct WordHasher(u64);

impl std::hash::Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// All counters of one server.
#[derive(Default)]
pub struct Metrics {
    routes: [RouteStats; ROUTES.len()],
    configs: Mutex<HashMap<Route, DigestCounts>>,
    configs_other: AtomicU64,
    /// Successful data directory loads.
    pub loads_ok: AtomicU64,
    /// Failed data directory loads (the previous index stayed in service).
    pub loads_failed: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Gauges read at scrape time from the rest of the server.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Groups in the serving index.
    pub groups: usize,
    /// Profiles in the serving index.
    pub profiles: usize,
    /// Config files in the serving index.
    pub files: usize,
    /// Problems reported by the load that built the serving index.
    pub problems: usize,
    /// Unix time of that load.
    pub loaded_at: f64,
    /// Whether netboot gating is active.
    pub gating: bool,
    /// Journal records dropped.
    pub journal_dropped: u64,
    /// What the server is riding out.
    pub health: crate::http::Health,
}

impl Metrics {
    /// Counts one request.
    pub fn observe(&self, route: Route, status: u16, elapsed: Duration) {
        let s = &self.routes[route.idx()];
        match STATUSES.iter().position(|c| *c == status && *c != 0) {
            Some(i) => {
                s.by_status[i].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                *s.other_status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(status)
                    .or_default() += 1;
            }
        }
        let secs = elapsed.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|le| secs <= *le) {
            s.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        s.count.fetch_add(1, Ordering::Relaxed);
        s.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts one config served with its digest.
    pub fn config_served(&self, route: Route, digest: &Arc<str>) {
        let mut configs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up by `&str` so the common case (a digest seen before) allocates nothing.
        if let Some(n) = configs.get_mut(&route).and_then(|m| m.get_mut(&**digest)) {
            *n += 1;
            return;
        }
        let total: usize = configs.values().map(HashMap::len).sum();
        if total < MAX_DIGESTS {
            configs.entry(route).or_default().insert(digest.clone(), 1);
        } else {
            self.configs_other.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP roundhouse_boot_http_requests_total HTTP requests by route and status.\n# TYPE roundhouse_boot_http_requests_total counter\n");
        for route in ROUTES {
            let s = &self.routes[route.idx()];
            for (i, code) in STATUSES.iter().enumerate() {
                let n = s.by_status[i].load(Ordering::Relaxed);
                if *code != 0 && n > 0 {
                    let _ = writeln!(
                        out,
                        "roundhouse_boot_http_requests_total{{route=\"{}\",status=\"{code}\"}} {n}",
                        route.as_str()
                    );
                }
            }
            let other = s.other_status.lock().unwrap_or_else(|p| p.into_inner());
            let mut codes: Vec<_> = other.iter().collect();
            codes.sort();
            for (code, n) in codes {
                let _ = writeln!(
                    out,
                    "roundhouse_boot_http_requests_total{{route=\"{}\",status=\"{code}\"}} {n}",
                    route.as_str()
                );
            }
        }
        out.push_str("# HELP roundhouse_boot_http_request_duration_seconds Time to answer a request.\n# TYPE roundhouse_boot_http_request_duration_seconds histogram\n");
        for route in ROUTES {
            let s = &self.routes[route.idx()];
            let count = s.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let r = route.as_str();
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "roundhouse_boot_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "roundhouse_boot_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "roundhouse_boot_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "roundhouse_boot_http_request_duration_seconds_count{{route=\"{r}\"}} {count}"
            );
        }
        out.push_str("# HELP roundhouse_boot_configs_served_total Configs and boot scripts served, by route and body digest.\n# TYPE roundhouse_boot_configs_served_total counter\n");
        {
            let configs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
            let mut rows: Vec<(&Route, &Arc<str>, &u64)> = configs
                .iter()
                .flat_map(|(r, m)| m.iter().map(move |(d, n)| (r, d, n)))
                .collect();
            rows.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
            for (route, digest, n) in rows {
                let _ = writeln!(
                    out,
                    "roundhouse_boot_configs_served_total{{route=\"{}\",digest=\"{digest}\"}} {n}",
                    route.as_str()
                );
            }
        }
        let other = self.configs_other.load(Ordering::Relaxed);
        if other > 0 {
            let _ = writeln!(
                out,
                "roundhouse_boot_configs_served_total{{route=\"any\",digest=\"other\"}} {other}"
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            );
        };
        gauge(
            &mut out,
            "roundhouse_boot_index_groups",
            "Groups in the serving index.",
            "gauge",
            gauges.groups.to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_index_profiles",
            "Profiles in the serving index.",
            "gauge",
            gauges.profiles.to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_index_files",
            "Ignition and generic files in the serving index.",
            "gauge",
            gauges.files.to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_index_problems",
            "Unusable files found by the load that built the serving index.",
            "gauge",
            gauges.problems.to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_index_loaded_timestamp_seconds",
            "Unix time the serving index was loaded.",
            "gauge",
            format!("{:.3}", gauges.loaded_at),
        );
        gauge(
            &mut out,
            "roundhouse_boot_index_loads_total",
            "Successful data directory loads.",
            "counter",
            self.loads_ok.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_index_load_failures_total",
            "Data directory loads rejected; the previous index stayed in service.",
            "counter",
            self.loads_failed.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_netboot_gating",
            "1 when roundhouse netboot state is present and gating is active.",
            "gauge",
            u8::from(gauges.gating).to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_data_ok",
            "0 when the latest load of the data directory was rejected and an older index is serving.",
            "gauge",
            u8::from(gauges.health.data.is_none()).to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_netboot_state_ok",
            "0 when netboot.json disappeared or cannot be used and the last good gating is kept.",
            "gauge",
            u8::from(gauges.health.netboot.is_none()).to_string(),
        );
        gauge(
            &mut out,
            "roundhouse_boot_journal_dropped_total",
            "Fetch journal records dropped at a bound.",
            "counter",
            gauges.journal_dropped.to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.observe(Route::Ipxe, 200, Duration::from_micros(300));
        m.observe(Route::Ipxe, 404, Duration::from_millis(3));
        m.observe(Route::Ipxe, 418, Duration::from_secs(5));
        let digest: Arc<str> = "sha256:ab".into();
        m.config_served(Route::Ipxe, &digest);
        m.config_served(Route::Ipxe, &digest);
        let text = m.render(&Gauges {
            groups: 3,
            ..Gauges::default()
        });
        for line in [
            "roundhouse_boot_http_requests_total{route=\"ipxe\",status=\"200\"} 1",
            "roundhouse_boot_http_requests_total{route=\"ipxe\",status=\"404\"} 1",
            "roundhouse_boot_http_requests_total{route=\"ipxe\",status=\"418\"} 1",
            "roundhouse_boot_http_request_duration_seconds_bucket{route=\"ipxe\",le=\"0.0005\"} 1",
            "roundhouse_boot_http_request_duration_seconds_bucket{route=\"ipxe\",le=\"0.005\"} 2",
            "roundhouse_boot_http_request_duration_seconds_bucket{route=\"ipxe\",le=\"2.5\"} 2",
            "roundhouse_boot_http_request_duration_seconds_bucket{route=\"ipxe\",le=\"+Inf\"} 3",
            "roundhouse_boot_http_request_duration_seconds_count{route=\"ipxe\"} 3",
            "roundhouse_boot_configs_served_total{route=\"ipxe\",digest=\"sha256:ab\"} 2",
            "roundhouse_boot_index_groups 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn routes_of_paths() {
        assert_eq!(Route::of_path("/boot.ipxe.0"), Route::BootIpxe);
        assert_eq!(Route::of_path("/assets/x/y"), Route::Assets);
        assert_eq!(Route::of_path("/ipxe/"), Route::Other);
    }
}
