//! matchbox compatibility, black box: every case under `tests/fixtures/compat/` is a data
//! directory plus the responses matchbox gives for it (`expect.json`), re-created from
//! matchbox's own handler, selection and storage tests (each expectation names its source).
//! A real server is started on a loopback port and every request goes over TCP.

mod common;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    source: String,
    #[serde(default = "get")]
    method: String,
    target: String,
    #[serde(default)]
    request_headers: BTreeMap<String, String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    status_in: Vec<u16>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_json_equiv: Option<String>,
    #[serde(default)]
    body_lacks: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn get() -> String {
    "GET".into()
}

/// Ignition treats an empty object like an absent key; Go's encoder writes empty objects for
/// every struct field, Butane and roundhouse omit them. Compare without them.
fn prune(v: &Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            let m: serde_json::Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k.clone(), v)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(a) => Some(Value::Array(a.iter().filter_map(prune).collect())),
        other => Some(other.clone()),
    }
}

fn check_case(name: &str) -> Vec<String> {
    let dir = common::fixtures().join("compat").join(name);
    let expects: Vec<Expect> =
        serde_json::from_slice(&std::fs::read(dir.join("expect.json")).unwrap()).unwrap();
    assert!(!expects.is_empty(), "{name}: no expectations");
    let tmp = tempfile::tempdir().unwrap();
    let server = common::serve_case(&dir, tmp.path());
    let mut failures = Vec::new();
    for e in &expects {
        assert!(
            e.status.is_some() || !e.status_in.is_empty(),
            "{name}: {} has no expected status",
            e.source
        );
        let headers: Vec<(&str, &str)> = e
            .request_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = server.request(&e.method, &e.target, &headers);
        let mut fail = |what: String| {
            failures.push(format!(
                "{name}: {} {} [{}]: {what}",
                e.method, e.target, e.source
            ))
        };
        if let Some(s) = e.status
            && r.status != s
        {
            fail(format!("status {} != {s}; body {:?}", r.status, r.text()));
            continue;
        }
        if !e.status_in.is_empty() && !e.status_in.contains(&r.status) {
            fail(format!("status {} not in {:?}", r.status, e.status_in));
        }
        if let Some(ct) = &e.content_type
            && r.content_type() != Some(ct.as_str())
        {
            fail(format!("content type {:?} != {ct:?}", r.content_type()));
        }
        if let Some(body) = &e.body
            && r.text() != *body
        {
            fail(format!("body {:?} != {body:?}", r.text()));
        }
        if let Some(want) = &e.body_json_equiv {
            let want: Value = serde_json::from_str(want).unwrap();
            match serde_json::from_slice::<Value>(&r.body) {
                Ok(got) if prune(&got) == prune(&want) => {}
                Ok(got) => fail(format!("JSON {got} is not equivalent to {want}")),
                Err(err) => fail(format!("body is not JSON ({err}): {:?}", r.text())),
            }
        }
        if let Some(lacks) = &e.body_lacks
            && r.text().contains(lacks.as_str())
        {
            fail(format!("body contains {lacks:?}"));
        }
        for (k, v) in &e.headers {
            if r.headers.get(k) != Some(v) {
                fail(format!("header {k}: {:?} != {v:?}", r.headers.get(k)));
            }
        }
    }
    failures
}

macro_rules! compat_case {
    ($test:ident, $dir:literal) => {
        #[test]
        fn $test() {
            let failures = check_case($dir);
            assert!(failures.is_empty(), "\n{}", failures.join("\n"));
        }
    };
}

compat_case!(matchbox_fakes, "matchbox-fakes");
compat_case!(missing_template_metadata, "missing-template-metadata");
compat_case!(missing_pieces, "missing-pieces");
compat_case!(metadata, "metadata");
compat_case!(ignition_files, "ignition-files");
compat_case!(ignition_butane, "ignition-butane");
compat_case!(selection, "selection");
compat_case!(assets, "assets");
compat_case!(gating, "gating");

/// Every fixture directory has a test above.
#[test]
fn every_case_is_run() {
    let mut dirs: Vec<String> = std::fs::read_dir(common::fixtures().join("compat"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        [
            "assets",
            "gating",
            "ignition-butane",
            "ignition-files",
            "matchbox-fakes",
            "metadata",
            "missing-pieces",
            "missing-template-metadata",
            "selection"
        ]
    );
}
