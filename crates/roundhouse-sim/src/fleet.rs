//! The fleet: machines, their ports, and a small control API (`/machines`, faults, power,
//! boot settings) for `roundhouse lab` and tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;

use crate::bmc;
use crate::mac::Mac;
use crate::machine::{Cmd, Env, Machine, MachineInfo, OverrideMode, Ports, Runner};
use crate::net::Http;
use crate::sandbox::{Sandbox, SandboxError};
use crate::shims;
use crate::spec::{BootDevice, Faults, FleetSpec, SpecError};

/// Why a fleet did not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The spec is wrong.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Commands cannot run on this host.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// No block of free loopback ports.
    #[error("no free block of {0} loopback ports below 32768 (set port_base to choose one)")]
    Ports(usize),
    /// A port of the given base is taken.
    #[error("port {port} is taken: {source}")]
    PortTaken {
        /// Port.
        port: u16,
        /// Error.
        source: std::io::Error,
    },
    /// The state directory.
    #[error("state directory {path}: {source}")]
    State {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// Too few file descriptors for this many machines.
    #[error(
        "{machines} machines need about {needed} open files but the limit is {limit}: raise it (ulimit -n {needed})"
    )]
    FileLimit {
        /// Machines.
        machines: usize,
        /// Descriptors needed.
        needed: u64,
        /// The soft limit.
        limit: u64,
    },
    /// The boot URL.
    #[error("boot_url {0}: must be an http URL on a loopback host (127.0.0.0/8, ::1, localhost)")]
    BootUrl(String),
}

/// A running fleet.
pub struct Fleet {
    machines: BTreeMap<Mac, Machine>,
    order: Vec<Mac>,
    control: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    spec: FleetSpec,
    _teardown: Teardown,
}

/// Unmounts the persistent namespaces when the fleet goes away, even on a panic.
struct Teardown(Sandbox);

impl Drop for Teardown {
    fn drop(&mut self) {
        self.0.teardown();
    }
}

/// Port blocks handed out in this process.
static TAKEN: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The own loopback address of machine `i`: 127.1.0.1, 127.1.0.2, … (all of 127/8 is
/// loopback on Linux, no configuration needed). Ports stay unique, so two fleets may share
/// addresses.
pub fn machine_address(i: usize) -> std::net::Ipv4Addr {
    let n = i + 1;
    std::net::Ipv4Addr::new(127, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// Address and ports of machine `i` in a block starting at `base`.
fn ports_of(base: u16, i: usize) -> Ports {
    let p = base as usize + 3 * i;
    Ports {
        address: machine_address(i),
        bmc: p as u16,
        ssh: (p + 1) as u16,
        ssh_installer: (p + 2) as u16,
    }
}

fn try_block(base: u16, n: usize) -> Result<Vec<tokio::net::TcpListener>, (u16, std::io::Error)> {
    let mut bmcs = Vec::with_capacity(n);
    for i in 0..n {
        let p = ports_of(base, i);
        bmcs.push(bmc::reserve(p.bmc).map_err(|e| (p.bmc, e))?);
        for port in [p.ssh, p.ssh_installer] {
            std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| (port, e))?;
        }
    }
    Ok(bmcs)
}

impl Fleet {
    /// Starts every machine of `spec` (powered off unless the spec says otherwise).
    pub async fn start(spec: FleetSpec) -> Result<Fleet, FleetError> {
        spec.validate()?;
        let url = reqwest::Url::parse(&spec.boot_url)
            .map_err(|_| FleetError::BootUrl(spec.boot_url.clone()))?;
        let http = Http::new(None);
        if !matches!(url.scheme(), "http" | "https") || !http.is_local(&url) {
            return Err(FleetError::BootUrl(spec.boot_url.clone()));
        }
        let mut sandbox = Sandbox::detect().await?;
        let state = |path: PathBuf| move |source| FleetError::State { path, source };
        std::fs::create_dir_all(&spec.state_dir).map_err(state(spec.state_dir.clone()))?;
        let persistent = sandbox.enable_persistent(&spec.state_dir.join("ns"));
        tracing::info!(persistent, "machine command sandbox: {:?}", sandbox.mode());
        let shim_dir = spec.state_dir.join("shims");
        shims::install(&shim_dir).map_err(state(shim_dir.clone()))?;
        let all = spec.all_machines();
        let n = all.len();
        // A BMC listener, sshd listeners (the OS's port on two addresses) and their
        // connections per machine.
        let needed = 5 * n as u64 + 256;
        if let Some(limit) = open_files_limit()
            && limit < needed
        {
            return Err(FleetError::FileLimit {
                machines: n,
                needed,
                limit,
            });
        }
        let ports_needed = 3 * n;
        let (base, bmcs) = match spec.port_base {
            Some(b) => {
                if b as usize + ports_needed > 65_535 {
                    return Err(FleetError::Ports(ports_needed));
                }
                (
                    b,
                    try_block(b, n)
                        .map_err(|(port, source)| FleetError::PortTaken { port, source })?,
                )
            }
            None => {
                // Candidate bases are 20000 + 300k, so every fleet's BMC ports are 2 mod 3 and
                // its sshd ports 0 or 1 mod 3: a fleet of another process that overlaps this
                // block always holds one of its BMC ports, and the bind below fails. sshd ports
                // are bound only while a machine runs, so fleets of this process are also
                // remembered.
                const FIRST: usize = 20_000;
                const GRANULE: usize = 300;
                let slots = (32_768 - FIRST) / GRANULE;
                let start = std::process::id() as usize % 40;
                let mut found = None;
                let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
                for j in 0..slots {
                    let base = FIRST + GRANULE * ((start + j) % slots);
                    if base + ports_needed >= 32_768 {
                        continue;
                    }
                    let overlaps = taken
                        .iter()
                        .any(|(b, len)| base < b + len && *b < base + ports_needed);
                    if overlaps {
                        continue;
                    }
                    if let Ok(l) = try_block(base as u16, n) {
                        taken.push((base, ports_needed));
                        found = Some((base as u16, l));
                        break;
                    }
                }
                found.ok_or(FleetError::Ports(ports_needed))?
            }
        };
        let teardown = Teardown(sandbox.clone());
        let env = Arc::new(Env {
            http,
            sandbox,
            shims: shim_dir,
            durations: spec.durations.clone(),
            time_factor: spec.time_factor,
            boot_url: spec.boot_url.clone(),
        });
        let mut machines = BTreeMap::new();
        let mut order = Vec::new();
        let mut tasks = Vec::new();
        for ((i, m), listener) in all.into_iter().enumerate().zip(bmcs) {
            let dir = spec.state_dir.join("machines").join(m.mac.hexhyp());
            std::fs::create_dir_all(&dir).map_err(state(dir.clone()))?;
            let mac = m.mac;
            let (machine, rx) = Machine::new(m, dir.clone(), ports_of(base, i));
            crate::machine::prepare_disks(&machine).map_err(state(dir))?;
            let runner = Runner {
                env: env.clone(),
                m: machine.shared.clone(),
                rx,
            };
            tasks.push(tokio::spawn(runner.run()));
            tasks.push(tokio::spawn(bmc::run(
                machine.clone(),
                Some(listener),
                spec.time_factor,
            )));
            order.push(mac);
            machines.insert(mac, machine);
        }
        let control_listener =
            tokio::net::TcpListener::bind(("127.0.0.1", spec.control_port.unwrap_or(0)))
                .await
                .map_err(|source| FleetError::PortTaken {
                    port: spec.control_port.unwrap_or(0),
                    source,
                })?;
        let control = control_listener
            .local_addr()
            .map_err(|source| FleetError::PortTaken { port: 0, source })?;
        let api = Arc::new(Api {
            machines: machines.clone(),
            order: order.clone(),
        });
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(control_listener, control_router(api)).await;
        }));
        Ok(Fleet {
            machines,
            order,
            control,
            tasks,
            spec,
            _teardown: teardown,
        })
    }

    /// A machine by MAC.
    pub fn machine(&self, mac: &Mac) -> Option<&Machine> {
        self.machines.get(mac)
    }

    /// Machines in spec order.
    pub fn machines(&self) -> impl Iterator<Item = &Machine> {
        self.order.iter().filter_map(|m| self.machines.get(m))
    }

    /// The machine table.
    pub fn table(&self) -> Vec<MachineInfo> {
        self.machines().map(Machine::info).collect()
    }

    /// Address of the control API.
    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    /// The spec it runs.
    pub fn spec(&self) -> &FleetSpec {
        &self.spec
    }

    /// Stops every machine and server.
    pub async fn shutdown(self) {
        for m in self.machines.values() {
            m.send(Cmd::Exit);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for t in self.tasks {
            t.abort();
        }
    }
}

struct Api {
    machines: BTreeMap<Mac, Machine>,
    order: Vec<Mac>,
}

type ApiState = State<Arc<Api>>;

fn find(api: &Api, mac: &str) -> Result<Machine, (StatusCode, String)> {
    let m = Mac::parse(mac).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    api.machines
        .get(&m)
        .cloned()
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no machine {m}")))
}

async fn list(State(api): ApiState) -> Json<Vec<MachineInfo>> {
    Json(
        api.order
            .iter()
            .filter_map(|m| api.machines.get(m))
            .map(Machine::info)
            .collect(),
    )
}

async fn one(State(api): ApiState, UrlPath(mac): UrlPath<String>) -> Response {
    match find(&api, &mac) {
        Ok(m) => Json(m.info()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn log(State(api): ApiState, UrlPath(mac): UrlPath<String>) -> Response {
    match find(&api, &mac) {
        Ok(m) => Json(m.log()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn faults(
    State(api): ApiState,
    UrlPath(mac): UrlPath<String>,
    Json(f): Json<Faults>,
) -> Response {
    match find(&api, &mac) {
        Ok(m) => {
            m.set_faults(f);
            Json(m.info()).into_response()
        }
        Err(r) => r.into_response(),
    }
}

async fn power(
    State(api): ApiState,
    UrlPath((mac, action)): UrlPath<(String, String)>,
) -> Response {
    let m = match find(&api, &mac) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let cmd = match action.as_str() {
        "on" => Cmd::On,
        "off" => Cmd::ForceOff,
        "reset" => Cmd::ForceRestart,
        "graceful-shutdown" => Cmd::GracefulShutdown,
        "graceful-restart" => Cmd::GracefulRestart,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "action is on, off, reset, graceful-shutdown or graceful-restart",
            )
                .into_response();
        }
    };
    m.send(cmd);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootReq {
    #[serde(default)]
    order: Option<Vec<BootDevice>>,
    #[serde(default, rename = "override")]
    target: Option<BootDevice>,
    #[serde(default)]
    mode: Option<OverrideMode>,
}

async fn boot(
    State(api): ApiState,
    UrlPath(mac): UrlPath<String>,
    Json(b): Json<BootReq>,
) -> Response {
    let m = match find(&api, &mac) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    if let Some(o) = b.order {
        m.set_boot_order(o);
    }
    if b.target.is_some() || b.mode.is_some() {
        m.set_boot_override(b.target, b.mode.unwrap_or(OverrideMode::Once));
    }
    Json(m.info()).into_response()
}

fn control_router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/machines", get(list))
        .route("/machines/{mac}", get(one))
        .route("/machines/{mac}/log", get(log))
        .route("/machines/{mac}/faults", put(faults))
        .route("/machines/{mac}/power/{action}", post(power))
        .route("/machines/{mac}/boot", put(boot))
        .with_state(api)
}
