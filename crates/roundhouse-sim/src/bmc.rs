//! A machine's virtual BMC: a Redfish-style HTTP service (service root, `Systems/1` with
//! `PowerState` and `Boot`, `ComputerSystem.Reset`) driving the machine's power and its
//! one-shot or persistent boot override, with an optional delay before power changes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use crate::machine::{Cmd, Machine, OverrideMode};
use crate::spec::BootDevice;

#[derive(Clone)]
struct Bmc {
    machine: Machine,
    delay: Duration,
}

fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": "Base.1.0.GeneralError", "message": msg}})),
    )
        .into_response()
}

impl Bmc {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let spec = &self.machine.shared.spec.bmc;
        if spec.username.is_empty() {
            return true;
        }
        let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(b64) = v.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        raw == format!("{}:{}", spec.username, spec.password).into_bytes()
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"roundhouse-sim BMC\"")],
        Json(json!({"error": {"code": "Base.1.0.InsufficientPrivilege", "message": "authentication required"}})),
    )
        .into_response()
}

async fn root(State(b): State<Bmc>) -> Json<Value> {
    Json(json!({
        "@odata.id": "/redfish/v1",
        "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
        "Id": "RootService",
        "Name": "roundhouse-sim BMC",
        "RedfishVersion": "1.6.0",
        "UUID": b.machine.info().uuid,
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
    }))
}

async fn systems(State(b): State<Bmc>, headers: HeaderMap) -> Response {
    if !b.authorized(&headers) {
        return unauthorized();
    }
    Json(json!({
        "@odata.id": "/redfish/v1/Systems",
        "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
        "Members@odata.count": 1,
        "Members": [{"@odata.id": "/redfish/v1/Systems/1"}],
    }))
    .into_response()
}

fn target_name(t: Option<BootDevice>) -> &'static str {
    match t {
        None => "None",
        Some(BootDevice::Pxe) => "Pxe",
        Some(BootDevice::Disk) => "Hdd",
    }
}

async fn system(State(b): State<Bmc>, headers: HeaderMap) -> Response {
    if !b.authorized(&headers) {
        return unauthorized();
    }
    let info = b.machine.info();
    let mode = match info.boot.override_mode {
        OverrideMode::Disabled => "Disabled",
        OverrideMode::Once => "Once",
        OverrideMode::Continuous => "Continuous",
    };
    Json(json!({
        "@odata.id": "/redfish/v1/Systems/1",
        "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
        "Id": "1",
        "Name": info.name,
        "UUID": info.uuid,
        "SerialNumber": format!("SIM-{}", info.mac.replace(':', "")),
        "Manufacturer": "roundhouse-sim",
        "PowerState": if info.status.power == "on" { "On" } else { "Off" },
        "Boot": {
            "BootSourceOverrideTarget": target_name(info.boot.override_target),
            "BootSourceOverrideEnabled": mode,
            "BootSourceOverrideMode": "UEFI",
            "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd"],
            "BootOrder": info.boot.order.iter().map(|d| target_name(Some(*d))).collect::<Vec<_>>(),
        },
        "EthernetInterfaces": {"@odata.id": "/redfish/v1/Systems/1/EthernetInterfaces"},
        "Oem": {"RoundhouseSim": {"MACAddress": info.mac, "Phase": info.status.phase}},
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": ["On", "ForceOn", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PowerCycle", "Nmi"],
            }
        },
    }))
    .into_response()
}

async fn patch_system(
    State(b): State<Bmc>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !b.authorized(&headers) {
        return unauthorized();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let Some(boot) = v.get("Boot") else {
        return error(StatusCode::BAD_REQUEST, "only Boot can be changed");
    };
    let info = b.machine.info();
    let mut target = info.boot.override_target;
    let mut mode = info.boot.override_mode;
    if let Some(t) = boot.get("BootSourceOverrideTarget") {
        target = match t.as_str() {
            Some("None") => None,
            Some("Pxe") => Some(BootDevice::Pxe),
            Some("Hdd") => Some(BootDevice::Disk),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BootSourceOverrideTarget must be None, Pxe or Hdd",
                );
            }
        };
        if mode == OverrideMode::Disabled && target.is_some() {
            mode = OverrideMode::Once;
        }
    }
    if let Some(e) = boot.get("BootSourceOverrideEnabled") {
        mode = match e.as_str() {
            Some("Disabled") => OverrideMode::Disabled,
            Some("Once") => OverrideMode::Once,
            Some("Continuous") => OverrideMode::Continuous,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BootSourceOverrideEnabled must be Disabled, Once or Continuous",
                );
            }
        };
    }
    if mode == OverrideMode::Disabled {
        target = None;
    }
    b.machine.set_boot_override(target, mode);
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(State(b): State<Bmc>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !b.authorized(&headers) {
        return unauthorized();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let on = b.machine.info().status.power == "on";
    let cmd = match v.get("ResetType").and_then(Value::as_str) {
        Some("On") | Some("ForceOn") => Some(Cmd::On),
        Some("ForceOff") => Some(Cmd::ForceOff),
        Some("GracefulShutdown") => Some(Cmd::GracefulShutdown),
        Some("ForceRestart") if on => Some(Cmd::ForceRestart),
        Some("GracefulRestart") if on => Some(Cmd::GracefulRestart),
        Some("PowerCycle") if on => Some(Cmd::ForceRestart),
        // Restarting a machine that is off powers it on.
        Some("ForceRestart") | Some("GracefulRestart") | Some("PowerCycle") => Some(Cmd::On),
        Some("Nmi") => None,
        _ => return error(StatusCode::BAD_REQUEST, "unsupported ResetType"),
    };
    if let Some(cmd) = cmd {
        let m = b.machine.clone();
        let delay = b.delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            m.send(cmd);
        });
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn nics(State(b): State<Bmc>, headers: HeaderMap) -> Response {
    if !b.authorized(&headers) {
        return unauthorized();
    }
    Json(json!({
        "@odata.id": "/redfish/v1/Systems/1/EthernetInterfaces",
        "@odata.type": "#EthernetInterfaceCollection.EthernetInterfaceCollection",
        "Members@odata.count": 1,
        "Members": [{"@odata.id": "/redfish/v1/Systems/1/EthernetInterfaces/1"}],
    }))
    .into_response()
}

async fn nic(State(b): State<Bmc>, headers: HeaderMap) -> Response {
    if !b.authorized(&headers) {
        return unauthorized();
    }
    let mac = b.machine.mac().to_string();
    Json(json!({
        "@odata.id": "/redfish/v1/Systems/1/EthernetInterfaces/1",
        "@odata.type": "#EthernetInterface.v1_4_0.EthernetInterface",
        "Id": "1",
        "Name": "NIC 1",
        "MACAddress": mac,
        "PermanentMACAddress": mac,
        "LinkStatus": "LinkUp",
    }))
    .into_response()
}

fn router(b: Bmc) -> Router {
    Router::new()
        .route("/redfish/v1", get(root))
        .route("/redfish/v1/", get(root))
        .route("/redfish/v1/Systems", get(systems))
        .route("/redfish/v1/Systems/1", get(system).patch(patch_system))
        .route(
            "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
            post(reset),
        )
        .route("/redfish/v1/Systems/1/EthernetInterfaces", get(nics))
        .route("/redfish/v1/Systems/1/EthernetInterfaces/1", get(nic))
        .with_state(b)
}

fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    sock.listen(128)
}

/// Serves the BMC of `machine` on its port until the fleet stops; while the
/// `bmc_unreachable` fault is on, the port is closed.
pub(crate) async fn run(
    machine: Machine,
    mut listener: Option<tokio::net::TcpListener>,
    time_factor: f64,
) {
    let delay =
        Duration::from_secs_f64((machine.shared.spec.bmc.power_delay_secs * time_factor).max(0.0));
    let port = machine.ports().bmc;
    let mut changed = machine.shared.changed.subscribe();
    loop {
        if machine.faults().bmc_unreachable {
            drop(listener.take());
            if changed.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match bind(port) {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let app = router(Bmc {
            machine: machine.clone(),
            delay,
        });
        let m2 = machine.clone();
        let mut ch2 = machine.shared.changed.subscribe();
        let stop = async move {
            loop {
                if m2.faults().bmc_unreachable {
                    return;
                }
                if ch2.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = axum::serve(l, app).with_graceful_shutdown(stop).await;
        if changed.has_changed().is_err() {
            return;
        }
    }
}

/// Binds a BMC port now, so the fleet fails early when the port is taken.
pub(crate) fn reserve(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    bind(port)
}
