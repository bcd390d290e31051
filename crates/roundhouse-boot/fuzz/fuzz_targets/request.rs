//! A whole selecting request minus HTTP: labels → group selection → Ignition, generic and
//! metadata bodies over a small fixed data set with templates that read the query. Any query
//! must give a body or a `ServeError`, never a panic.
#![no_main]

use std::sync::LazyLock;

use bootdata::{Boot, Group, Profile};
use libfuzzer_sys::fuzz_target;
use roundhouse_boot::{Index, Labels, render};

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let group = |id: &str, sel: &[(&str, &str)]| {
        (
            format!("groups/{id}.json"),
            Group {
                id: id.into(),
                profile: "p".into(),
                selector: sel
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                metadata: serde_json::from_str(r#"{"n":1,"nested":{"x":"y"},"list":[1,2]}"#)
                    .unwrap(),
                ..Group::default()
            },
        )
    };
    Index::from_parts(
        vec![
            group("default", &[]),
            group("mac", &[("mac", "52:54:00:00:00:01")]),
            group("mac-os", &[("mac", "52:54:00:00:00:01"), ("os", "installed")]),
            group("uuid", &[("uuid", "u")]),
        ],
        vec![(
            "p".into(),
            Profile {
                id: "p".into(),
                boot: Some(Boot {
                    kernel: "/k".into(),
                    initrd: vec!["/i".into()],
                    args: vec!["a".into()],
                }),
                ignition_id: "b.yaml".into(),
                generic_id: "g.tmpl".into(),
                ..Profile::default()
            },
        )],
        vec![
            (
                "ignition/b.yaml".into(),
                b"variant: flatcar\nversion: 1.1.0\nstorage:\n  files:\n    - path: /etc/q\n      contents:\n        inline: {{printf \"%q\" .request.raw_query}}\n"
                    .to_vec(),
            ),
            (
                "generic/g.tmpl".into(),
                b"{{range $k, $v := .request.query}}{{$k}}={{$v}} {{end}}{{if eq .request.query.mode \"x\"}}{{index .nested \"x\"}}{{end}}{{.n}}\n".to_vec(),
            ),
        ],
    )
});

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(labels) = Labels::parse(query) else {
        return;
    };
    let Some(group) = INDEX.select_group(&labels) else {
        panic!("the default group always matches");
    };
    let _ = INDEX.ignition(group, &labels, query);
    let _ = INDEX.generic(group, &labels, query);
    let env = render::metadata_env(&render::template_data(&group.to_group(), &labels, query));
    assert!(env.ends_with('\n'));
});
