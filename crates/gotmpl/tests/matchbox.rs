//! Templates as matchbox users write them (in the style of matchbox's
//! `examples/ignition/*.yaml`), over data built like matchbox's `collectVariables`:
//! group metadata, then lower-cased selectors, then `request.query` / `request.raw_query`.

use std::collections::BTreeMap;

use gotmpl::{ExecOptions, Template, Value, matchbox_data};
use serde_json::json;

const INSTALLER: &str = r#"---
storage:
  files:
    - path: /opt/installer
      mode: 0500
      contents:
        inline: |
          #!/bin/bash -ex
          curl --retry 10 --fail "{{.ignition_endpoint}}?{{.request.raw_query}}&os=installed" -o ignition.json
          flatcar-install \
            -d {{.install_disk}} \
            -C {{.os_channel}} \
            {{- if index . "baseurl"}}-b {{.baseurl}} \{{end}}
            -i ignition.json
          udevadm settle

{{ if index . "ssh_authorized_keys" }}
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        {{ range $element := .ssh_authorized_keys }}
        - {{$element}}
        {{end}}
{{end}}
"#;

fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn render(text: &str, data: &Value) -> Result<String, String> {
    let t = Template::parse("installer.yaml", text).map_err(|e| e.to_string())?;
    t.execute_value(data, &ExecOptions::default())
        .map_err(|e| e.to_string())
}

fn install_data(meta: serde_json::Value) -> Value {
    let q = query(&[("mac", "52:54:00:a1:9c:ae"), ("uuid", "u-1")]);
    matchbox_data(
        Some(&meta),
        [("MAC", "52:54:00:a1:9c:ae")],
        &q,
        "mac=52-54-00-a1-9c-ae&uuid=u-1",
    )
    .unwrap()
}

#[test]
fn installer_template_with_keys() {
    let data = install_data(json!({
        "ignition_endpoint": "http://matchbox.example:8080/ignition",
        "install_disk": "/dev/sda",
        "os_channel": "stable",
        "ssh_authorized_keys": ["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"]
    }));
    let want = "---
storage:
  files:
    - path: /opt/installer
      mode: 0500
      contents:
        inline: |
          #!/bin/bash -ex
          curl --retry 10 --fail \"http://matchbox.example:8080/ignition?mac=52-54-00-a1-9c-ae&uuid=u-1&os=installed\" -o ignition.json
          flatcar-install \\
            -d /dev/sda \\
            -C stable \\
            -i ignition.json
          udevadm settle


passwd:
  users:
    - name: core
      ssh_authorized_keys:
        
        - ssh-ed25519 AAAA one
        
        - ssh-rsa BBBB two
        

";
    assert_eq!(render(INSTALLER, &data).unwrap(), want);
}

#[test]
fn installer_template_optional_parts() {
    // With a baseurl the trim marker joins the option onto the previous line, exactly as
    // Go renders matchbox's example; without keys the passwd section disappears.
    let data = install_data(json!({
        "ignition_endpoint": "http://m/ignition",
        "install_disk": "/dev/vda",
        "os_channel": "beta",
        "baseurl": "http://mirror/flatcar"
    }));
    let out = render(INSTALLER, &data).unwrap();
    assert!(out.contains(
        "            -C beta \\-b http://mirror/flatcar \\\n            -i ignition.json\n"
    ));
    assert!(out.ends_with("          udevadm settle\n\n\n"), "{out:?}");
}

#[test]
fn missing_metadata_is_an_error_naming_the_key() {
    // matchbox turns this error into a 404.
    let data =
        install_data(json!({"ignition_endpoint": "http://m/ignition", "install_disk": "/dev/sda"}));
    let err = render(INSTALLER, &data).unwrap_err();
    assert_eq!(
        err,
        "template: installer.yaml:12:17: executing \"installer.yaml\" at <.os_channel>: map has no entry for key \"os_channel\""
    );
}

#[test]
fn request_query_access() {
    let q = query(&[("foo", "bar"), ("UUID", "a1b2")]);
    let data = matchbox_data(None, [], &q, "foo=bar&UUID=a1b2").unwrap();
    let cases = [
        ("{{.request.query.foo}}", Ok("bar")),
        ("{{.request.query.UUID}}", Ok("a1b2")),
        ("{{.request.raw_query}}", Ok("foo=bar&UUID=a1b2")),
        ("{{.request.query}}", Ok("map[UUID:a1b2 foo:bar]")),
        // request.query is a Go map[string]string: index of a missing key is "".
        ("[{{index .request.query \"nope\"}}]", Ok("[]")),
        (
            "{{range $k, $v := .request.query}}{{$k}}={{$v}};{{end}}",
            Ok("UUID=a1b2;foo=bar;"),
        ),
        ("{{if .request.query.foo}}yes{{end}}", Ok("yes")),
        ("{{len .request.query}}", Ok("2")),
        (
            "{{.request.query.nope}}",
            Err("map has no entry for key \"nope\""),
        ),
        (
            "{{.request.query.foo.bar}}",
            Err("can't evaluate field bar in type string"),
        ),
        (
            "{{.request.query.foo 1}}",
            Err("foo is not a method but has arguments"),
        ),
    ];
    for (text, want) in cases {
        let got = render(text, &data);
        match want {
            Ok(w) => assert_eq!(got.as_deref(), Ok(w), "{text}"),
            Err(w) => {
                let e = got.expect_err(text);
                assert!(e.contains(w), "{text}: {e}");
            }
        }
    }
}

#[test]
fn selectors_are_lowercased_and_override_metadata() {
    let data = matchbox_data(
        Some(&json!({"os": "from-metadata", "port": 8080, "ratio": 0.25, "big": 1234567})),
        [("OS", "installed"), ("Region", "eu")],
        &BTreeMap::new(),
        "",
    )
    .unwrap();
    assert_eq!(
        render("{{.os}} {{.region}} {{.port}} {{.ratio}} {{.big}}", &data).unwrap(),
        "installed eu 8080 0.25 1.234567e+06"
    );
    // JSON numbers are float64: comparing with an integer literal fails in Go too.
    let err = render("{{if eq .port 8080}}x{{end}}", &data).unwrap_err();
    assert!(
        err.contains("incompatible types for comparison: float64 and int"),
        "{err}"
    );
    assert_eq!(
        render("{{if eq .port 8080.0}}x{{end}}", &data).unwrap(),
        "x"
    );
    assert_eq!(render("{{printf \"%.0f\" .port}}", &data).unwrap(), "8080");
}

#[test]
fn query_values_are_data_not_template() {
    // request.query values come from the network; they are printed, never evaluated.
    let q = query(&[("name", "{{.secret}}<script>")]);
    let data = matchbox_data(Some(&json!({"secret": "s3cr3t"})), [], &q, "").unwrap();
    assert_eq!(
        render("{{.request.query.name}}", &data).unwrap(),
        "{{.secret}}<script>"
    );
    assert_eq!(
        render("{{.request.query.name | urlquery}}", &data).unwrap(),
        "%7B%7B.secret%7D%7D%3Cscript%3E"
    );
}

#[test]
fn metadata_structures() {
    let data = matchbox_data(
        Some(&json!({
            "etcd": {"initial_cluster": "node1=http://n1:2380", "peers": ["n1", "n2"]},
            "nodes": [{"name": "n1", "ip": "10.0.0.1"}, {"name": "n2", "ip": "10.0.0.2"}],
            "pxe": true,
            "missing": null
        })),
        [],
        &BTreeMap::new(),
        "",
    )
    .unwrap();
    let cases = [
        ("{{.etcd.initial_cluster}}", "node1=http://n1:2380"),
        ("{{.etcd.peers}}", "[n1 n2]"),
        ("{{index .etcd.peers 1}}", "n2"),
        (
            "{{range .nodes}}{{.name}}={{.ip}} {{end}}",
            "n1=10.0.0.1 n2=10.0.0.2 ",
        ),
        (
            "{{range $i, $n := .nodes}}{{if $i}},{{end}}{{$n.name}}{{end}}",
            "n1,n2",
        ),
        ("{{if .pxe}}disk{{else}}installed{{end}}", "disk"),
        (
            "{{with .etcd}}{{.initial_cluster}}{{end}}",
            "node1=http://n1:2380",
        ),
        ("{{.missing}}", "<no value>"),
        ("{{if .missing}}x{{else}}none{{end}}", "none"),
        (
            "{{.nodes}}",
            "[map[ip:10.0.0.1 name:n1] map[ip:10.0.0.2 name:n2]]",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(render(text, &data).as_deref(), Ok(want), "{text}");
    }
}

#[test]
fn negative_zero_survives_json() {
    // Go decodes the JSON number -0 to float64 negative zero and prints "-0".
    let v: serde_json::Value = serde_json::from_str(r#"{"z": -0, "w": -0.0}"#).unwrap();
    let t = Template::parse("t", "{{.z}} {{.w}}").unwrap();
    assert_eq!(t.execute(&v).unwrap(), "-0 -0");
}
