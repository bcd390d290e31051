//! Translation fixtures: every `tests/fixtures/*.bu` against the `*.json` next to it.
//!
//! Where the expectations come from: each `*.json` is the output of CoreOS Butane v0.19.0
//! (built from the upstream tag with Debian's Go 1.19, run as
//! `butane --pretty --files-dir tests/fixtures/files X.bu`). That release translates flatcar
//! 1.0.0/1.1.0 with the same base code (v0_4/v0_5) as upstream's main branch.
//!
//! Comparison: byte-for-byte on the pretty JSON, except that gzip data URLs are compared by
//! their decompressed contents, because Go's `compress/flate` and miniz_oxide produce
//! different (equally valid) deflate streams; see `src/dataurl.rs`.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bu"))
        .collect();
    v.sort();
    v
}

fn options() -> butane::Options {
    butane::Options {
        files_dir: Some(fixtures_dir().join("files")),
        strict: true,
    }
}

/// Replaces gzip data URLs by their decompressed text so encoders can differ.
fn normalize(v: &mut Value) -> usize {
    let mut gz = 0;
    match v {
        Value::Object(m) => {
            let gzip = m.get("compression").and_then(Value::as_str) == Some("gzip");
            if let (true, Some(Value::String(src))) = (gzip, m.get_mut("source"))
                && let Some(b64) = src.strip_prefix("data:;base64,H4sI")
            {
                let bytes = butane::decode_data_url(&format!("data:;base64,H4sI{b64}"))
                    .expect("valid base64");
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut out)
                    .expect("valid gzip");
                *src = format!("gunzipped:{}", String::from_utf8_lossy(&out));
                gz += 1;
            }
            for x in m.values_mut() {
                gz += normalize(x);
            }
        }
        Value::Array(a) => {
            for x in a {
                gz += normalize(x);
            }
        }
        _ => {}
    }
    gz
}

#[test]
fn fixtures_match_reference_butane() {
    let all = fixtures();
    assert!(
        all.len() >= 12,
        "expected the fixture set, found {}",
        all.len()
    );
    for bu in all {
        let name = bu.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read_to_string(&bu).unwrap();
        let expected_text = std::fs::read_to_string(bu.with_extension("json")).unwrap();
        let t = butane::translate(&input, &options())
            .unwrap_or_else(|e| panic!("{name}: {e}\n{:?}", e.report()));
        assert!(
            t.report.is_empty(),
            "{name}: unexpected warnings {}",
            t.report
        );
        let actual_text = butane::to_json(&t.config, true);
        let mut expected: Value = serde_json::from_str(&expected_text).unwrap();
        let mut actual = t.config.clone();
        let gz_expected = normalize(&mut expected);
        let gz_actual = normalize(&mut actual);
        assert_eq!(gz_actual, gz_expected, "{name}: gzip choice differs");
        assert_eq!(actual, expected, "{name}: JSON differs");
        if gz_expected == 0 {
            assert_eq!(
                format!("{actual_text}\n"),
                expected_text,
                "{name}: output bytes differ"
            );
        }
    }
}

#[test]
fn compact_output_matches_pretty() {
    for bu in fixtures() {
        let t = butane::translate(&std::fs::read_to_string(&bu).unwrap(), &options()).unwrap();
        let compact = butane::to_json(&t.config, false);
        assert!(!compact.contains('\n'));
        let reparsed: Value = serde_json::from_str(&compact).unwrap();
        assert_eq!(reparsed, t.config);
    }
}

/// Both spec versions produce their Ignition version, and 1.1.0-only fields are refused
/// (as unused keys) by 1.0.0.
#[test]
fn versions_map_to_ignition_specs() {
    for (version, ign) in [("1.0.0", "3.3.0"), ("1.1.0", "3.4.0")] {
        let t = butane::translate(
            &format!("variant: flatcar\nversion: {version}\n"),
            &butane::Options::default(),
        )
        .unwrap();
        assert_eq!(
            butane::to_json(&t.config, false),
            format!(r#"{{"ignition":{{"version":"{ign}"}}}}"#)
        );
    }
    let t = butane::translate(
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  luks:\n    - name: a\n      device: /dev/sda\n      discard: true\n",
        &butane::Options::default(),
    )
    .unwrap();
    assert_eq!(
        t.report.to_string(),
        "warning at $.storage.luks.0.discard, line 7 col 7: unused key discard\n"
    );
}
