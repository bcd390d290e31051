//! What `/ignition` serves is accepted by real Ignition: every body is checked with Debian's
//! `ignition-validate` (package `ignition`, installed by `scripts/install-test-deps`). Debian's
//! Ignition 2.14 knows specs up to 3.3, so this covers Butane `flatcar` 1.0.0 output and stored
//! 3.0–3.3 configs; 3.4/3.5 are covered by the JSON checks of the compatibility suite.

mod common;

use std::process::Command;
use std::time::Duration;

use roundhouse_boot::ServeConfig;

const VALIDATE: &str = "/usr/bin/ignition-validate";

#[test]
fn served_configs_validate_with_ignition() {
    assert!(
        std::path::Path::new(VALIDATE).exists(),
        "{VALIDATE} is missing: install the Debian package `ignition` (scripts/install-test-deps)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for d in ["groups", "profiles", "ignition"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    let mut names = Vec::new();
    for minor in 0..=3 {
        let name = format!("v3{minor}.ign");
        std::fs::write(
            data.join("ignition").join(&name),
            format!(
                r#"{{"ignition":{{"version":"3.{minor}.0"}},"passwd":{{"users":[{{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA"]}}]}}}}"#
            ),
        )
        .unwrap();
        names.push(name);
    }
    std::fs::write(
        data.join("ignition/node.yaml"),
        r#"variant: flatcar
version: 1.0.0
passwd:
  users:
    - name: core
      ssh_authorized_keys: ["{{.ssh_key}}"]
storage:
  files:
    - path: /etc/hostname
      mode: 0644
      contents:
        inline: {{.request.query.hostname}}
    - path: /etc/node-env
      contents:
        inline: |
          MAC={{.mac}}
          {{- range $k, $v := .labels}}
          {{$k}}={{$v}}
          {{- end}}
systemd:
  units:
    - name: hello.service
      enabled: true
      contents: |
        [Service]
        ExecStart=/usr/bin/echo {{.mac}}
        [Install]
        WantedBy=multi-user.target
"#,
    )
    .unwrap();
    names.push("node.yaml".into());
    for (i, name) in names.iter().enumerate() {
        std::fs::write(
            data.join(format!("profiles/p{i}.json")),
            format!(r#"{{"id":"p{i}","ignition_id":"{name}"}}"#),
        )
        .unwrap();
        std::fs::write(
            data.join(format!("groups/g{i}.json")),
            format!(
                r#"{{"id":"g{i}","profile":"p{i}","selector":{{"mac":"52:54:00:00:00:0{i}"}},
                    "metadata":{{"ssh_key":"ssh-ed25519 AAAA","labels":{{"role":"worker","zone":"a"}}}}}}"#
            ),
        )
        .unwrap();
    }
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    config.data_path = Some(data);
    config.reload_interval = Duration::ZERO;
    let s = common::Running::start(config);
    for (i, name) in names.iter().enumerate() {
        let r = s.get(&format!(
            "/ignition?mac=52:54:00:00:00:0{i}&hostname=node{i}"
        ));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.content_type(), Some("application/json"));
        let file = tmp.path().join(format!("served-{i}.json"));
        std::fs::write(&file, &r.body).unwrap();
        let out = Command::new(VALIDATE).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: ignition-validate rejected {}: {}{}",
            r.text(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The Butane template was rendered with the request's data.
    let body = s
        .get("/ignition?mac=52:54:00:00:00:04&hostname=node4")
        .text();
    assert!(body.contains("data:,node4"), "{body}");
    assert!(
        body.contains("ExecStart=/usr/bin/echo 52:54:00:00:00:04"),
        "{body}"
    );
}
