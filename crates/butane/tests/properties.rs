//! Property tests: no input makes translation, reporting or merging panic.

use proptest::prelude::*;

const KEYS: &[&str] = &[
    "variant",
    "version",
    "ignition",
    "config",
    "merge",
    "replace",
    "storage",
    "files",
    "directories",
    "links",
    "filesystems",
    "disks",
    "partitions",
    "raid",
    "luks",
    "trees",
    "systemd",
    "units",
    "dropins",
    "passwd",
    "users",
    "groups",
    "path",
    "mode",
    "contents",
    "inline",
    "local",
    "source",
    "compression",
    "name",
    "enabled",
    "mask",
    "device",
    "format",
    "with_mount_unit",
    "label",
    "number",
    "size_mib",
    "start_mib",
    "target",
    "hard",
    "user",
    "group",
    "id",
    "kernel_arguments",
    "should_exist",
    "ssh_authorized_keys",
    "clevis",
    "tang",
    "verification",
    "hash",
    "http_headers",
    "value",
    "proxy",
    "http_proxy",
    "level",
    "devices",
];

const SCALARS: &[&str] = &[
    "flatcar",
    "1.0.0",
    "1.1.0",
    "/etc/x",
    "x",
    "0644",
    "644",
    "true",
    "no",
    "~",
    "",
    "07777",
    "-1",
    "1.5",
    "\"[Unit]\\n\"",
    "data:,x",
    "https://example.com/a",
    "gzip",
    "a.service",
    "x.conf",
    "ext4",
    "swap",
    "/dev/sda",
    "sha512-00",
    "0x10",
    "9999999999999999999999",
    "'quoted'",
    "[]",
    "{}",
    "[a, b]",
    "{a: b}",
    "!!str 5",
    "&a x",
    "*a",
    "|\n  text",
];

fn yaml_doc() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(SCALARS).prop_map(str::to_string);
    let tree = leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec((prop::sample::select(KEYS), inner.clone()), 0..6).prop_map(
                |kv| {
                    let body: Vec<String> = kv
                        .into_iter()
                        .map(|(k, v)| format!("{k}: {}", indent(&v)))
                        .collect();
                    if body.is_empty() {
                        "{}".into()
                    } else {
                        format!("\n{}", body.join("\n"))
                    }
                }
            ),
            prop::collection::vec(inner, 0..4).prop_map(|items| {
                if items.is_empty() {
                    "[]".into()
                } else {
                    let body: Vec<String> = items
                        .into_iter()
                        .map(|v| format!("- {}", indent(&v)))
                        .collect();
                    format!("\n{}", body.join("\n"))
                }
            }),
        ]
    });
    (prop::bool::ANY, tree).prop_map(|(header, t)| {
        let head = if header {
            "variant: flatcar\nversion: 1.1.0\n"
        } else {
            "variant: flatcar\nversion: 1.0.0\n"
        };
        match t.strip_prefix('\n') {
            Some(body) => format!("{head}{body}\n"),
            None => format!("{head}x: {t}\n"),
        }
    })
}

fn indent(v: &str) -> String {
    v.replace('\n', "\n  ")
}

fn exercise(input: &str) {
    let dir = std::env::temp_dir();
    let opts = butane::Options {
        files_dir: Some(dir),
        strict: false,
    };
    match butane::translate(input, &opts) {
        Ok(t) => {
            let _ = butane::to_json(&t.config, true);
            let _ = t.report.format_pretty("x.bu", input, true);
            let merged = butane::merge::merge(&t.config, &t.config);
            let _ = butane::to_json(&merged, false);
        }
        Err(e) => {
            let _ = e.to_string();
            if let Some(r) = e.report() {
                let _ = r.to_string();
                let _ = r.format_pretty("x.bu", input, false);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(input in "\\PC{0,300}") {
        exercise(&input);
        exercise(&format!("variant: flatcar\nversion: 1.0.0\n{input}"));
    }

    #[test]
    fn arbitrary_yaml_never_panics(doc in yaml_doc()) {
        exercise(&doc);
    }

    #[test]
    fn arbitrary_json_merges_never_panic(a in yaml_doc(), b in yaml_doc()) {
        // Merge untrusted JSON shapes (decoded YAML as JSON-ish values).
        let to_json = |s: &str| -> serde_json::Value {
            butane::translate(s, &butane::Options::default())
                .map(|t| t.config)
                .unwrap_or_else(|_| serde_json::json!({"storage": {"files": [1, "x", null, {"path": 3}]}}))
        };
        let _ = butane::merge::merge(&to_json(&a), &to_json(&b));
    }

    #[test]
    fn data_urls_roundtrip(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let (url, compression) = butane::make_data_url(&bytes, None, true);
        let decoded = butane::decode_data_url(&url).unwrap();
        if compression.as_deref() == Some("gzip") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&decoded[..]), &mut out).unwrap();
            prop_assert_eq!(out, bytes);
        } else {
            prop_assert_eq!(compression.as_deref(), Some(""));
            prop_assert_eq!(decoded, bytes);
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let mut block = String::from("variant: flatcar\nversion: 1.0.0\nstorage:\n");
    for i in 0..5000 {
        block.push_str(&" ".repeat(2 + i));
        block.push_str("a:\n");
    }
    let flow = format!(
        "variant: flatcar\nversion: 1.0.0\nx: {}",
        "[".repeat(100_000)
    );
    for input in [block, flow] {
        match butane::translate(&input, &butane::Options::default()) {
            Err(butane::Error::Syntax { .. }) => {}
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }
}
