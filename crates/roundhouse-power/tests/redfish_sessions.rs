//! Redfish session authentication (`auth = "auto"` / `"session"`): neither sushy-tools nor the
//! simulator has a SessionService, so this is a small stand-in written from the Redfish spec:
//! login by POST to the sessions collection (token in `X-Auth-Token`, the session in
//! `Location`), the token on every request, logout by DELETE. Basic authentication is refused
//! everywhere but the service root, so a request without the token cannot pass by accident.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use roundhouse_config::RedfishAuth;
use roundhouse_power::redfish::{RedfishBmc, RedfishConfig};
use roundhouse_power::{Bmc, Limits, Password, PowerError, PowerState};
use serde_json::{Value, json};

#[derive(Default)]
struct Service {
    /// Every request: "METHOD path auth", auth being `token`, `basic` or `none`.
    log: Vec<String>,
    live: BTreeSet<String>,
    next: u32,
}

type Shared = Arc<Mutex<Service>>;

fn auth_kind(s: &Service, h: &HeaderMap) -> &'static str {
    match h.get("X-Auth-Token").and_then(|v| v.to_str().ok()) {
        Some(t) if s.live.contains(t) => "token",
        Some(_) => "stale-token",
        None if h.contains_key("authorization") => "basic",
        None => "none",
    }
}

fn record(st: &Shared, method: &str, path: &str, h: &HeaderMap) -> &'static str {
    let mut s = st.lock().unwrap();
    let kind = auth_kind(&s, h);
    s.log.push(format!("{method} {path} {kind}"));
    kind
}

fn denied() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"message": "a session token is required"}})),
    )
        .into_response()
}

async fn root(State(st): State<Shared>, h: HeaderMap) -> Response {
    record(&st, "GET", "/redfish/v1/", &h);
    axum::Json(json!({
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
        "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
    }))
    .into_response()
}

async fn login(State(st): State<Shared>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    record(&st, "POST", "/redfish/v1/SessionService/Sessions", &h);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v["UserName"] != "operator" || v["Password"] != "pw-123" {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"message": "invalid credentials"}})),
        )
            .into_response();
    }
    let mut s = st.lock().unwrap();
    s.next += 1;
    let token = format!("token-{}", s.next);
    s.live.insert(token.clone());
    (
        StatusCode::CREATED,
        [
            ("X-Auth-Token", token.clone()),
            (
                "Location",
                format!("/redfish/v1/SessionService/Sessions/{token}"),
            ),
        ],
        axum::Json(json!({"Id": token})),
    )
        .into_response()
}

async fn logout(State(st): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if record(&st, "DELETE", "/redfish/v1/SessionService/Sessions/ID", &h) != "token" {
        return denied();
    }
    st.lock().unwrap().live.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

async fn systems(State(st): State<Shared>, h: HeaderMap) -> Response {
    if record(&st, "GET", "/redfish/v1/Systems", &h) != "token" {
        return denied();
    }
    axum::Json(json!({"Members": [{"@odata.id": "/redfish/v1/Systems/s1"}]})).into_response()
}

async fn system(State(st): State<Shared>, h: HeaderMap) -> Response {
    if record(&st, "GET", "/redfish/v1/Systems/s1", &h) != "token" {
        return denied();
    }
    axum::Json(json!({
        "PowerState": "On",
        "Boot": {"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous"},
    }))
    .into_response()
}

async fn start() -> (String, Shared) {
    let st: Shared = Arc::default();
    let app = Router::new()
        .route("/redfish/v1/", get(root))
        .route("/redfish/v1/SessionService/Sessions", post(login))
        .route("/redfish/v1/SessionService/Sessions/{id}", delete(logout))
        .route("/redfish/v1/Systems", get(systems))
        .route("/redfish/v1/Systems/s1", get(system))
        .with_state(Arc::clone(&st));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, st)
}

fn config(endpoint: &str, password: &str, auth: RedfishAuth) -> RedfishConfig {
    RedfishConfig {
        node: "c2".into(),
        endpoint: endpoint.into(),
        system_id: None,
        username: "operator".into(),
        password: Password::new(password),
        ca_file: None,
        insecure: false,
        auth,
        limits: Limits {
            request_timeout: Duration::from_secs(5),
            retries: 2,
            settle: Duration::from_secs(5),
            poll: Duration::from_millis(100),
        },
    }
}

#[tokio::test]
async fn auto_logs_in_uses_the_token_and_logs_out() {
    let (url, st) = start().await;
    for auth in [RedfishAuth::Auto, RedfishAuth::Session] {
        let bmc = RedfishBmc::new(config(&url, "pw-123", auth)).unwrap();
        assert_eq!(bmc.power_state().await.unwrap(), PowerState::On);
        let s = st.lock().unwrap();
        assert!(s.live.is_empty(), "a session was left open: {:?}", s.live);
    }
    let log = st.lock().unwrap().log.clone();
    let one_call = [
        "GET /redfish/v1/ none",
        "POST /redfish/v1/SessionService/Sessions basic",
        "GET /redfish/v1/Systems token",
        "GET /redfish/v1/Systems/s1 token",
        "DELETE /redfish/v1/SessionService/Sessions/ID token",
    ];
    assert_eq!(log, [one_call, one_call].concat());
}

#[tokio::test]
async fn a_refused_login_is_one_authentication_error() {
    let (url, st) = start().await;
    let bmc = RedfishBmc::new(config(&url, "not-pw-123", RedfishAuth::Auto)).unwrap();
    let err = bmc.power_state().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PowerError::Auth { .. }), "{msg}");
    assert!(
        msg.contains("node c2")
            && msg.contains("invalid credentials")
            && !msg.contains("not-pw-123"),
        "{msg}"
    );
    // No retry of the login, nothing after it.
    assert_eq!(
        st.lock().unwrap().log,
        [
            "GET /redfish/v1/ none",
            "POST /redfish/v1/SessionService/Sessions basic"
        ]
    );
}

#[tokio::test]
async fn forced_basic_against_a_token_only_service_says_authentication() {
    let (url, _) = start().await;
    let bmc = RedfishBmc::new(config(&url, "pw-123", RedfishAuth::Basic)).unwrap();
    let err = bmc.power_state().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PowerError::Auth { .. }), "{msg}");
    assert!(
        msg.contains("HTTP 401") && msg.contains("token is required"),
        "{msg}"
    );
}
