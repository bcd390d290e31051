//! `roundhouse butane` as a drop-in for CoreOS's `butane` CLI: stdin/stdout, files, --pretty,
//! --strict, --files-dir, --output and the exit codes scripts rely on.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn butane(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roundhouse"))
        .arg("butane")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const MOTD: &str = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/motd\n      contents:\n        inline: hi\n";

// A unit enabled without an [Install] section: Butane warns.
const NO_INSTALL: &str = "variant: flatcar\nversion: 1.0.0\nsystemd:\n  units:\n    - name: a.service\n      enabled: true\n      contents: \"[Service]\\nExecStart=/bin/true\\n\"\n";

#[test]
fn stdin_to_compact_stdout() {
    let out = butane(&[], MOTD);
    assert!(out.status.success());
    assert!(out.stderr.is_empty());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"ignition\":{\"version\":\"3.3.0\"},\"storage\":{\"files\":[{\"path\":\"/etc/motd\",\"contents\":{\"compression\":\"\",\"source\":\"data:,hi\"}}]}}\n"
    );
}

#[test]
fn pretty_output_parses_to_the_same_config() {
    let compact = butane(&[], MOTD);
    let pretty = butane(&["--pretty"], MOTD);
    assert!(pretty.status.success());
    let text = String::from_utf8(pretty.stdout.clone()).unwrap();
    assert!(text.starts_with("{\n  \"ignition\": {\n    \"version\": \"3.3.0\""));
    let a: serde_json::Value = serde_json::from_slice(&compact.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&pretty.stdout).unwrap();
    assert_eq!(a, b);
}

#[test]
fn warnings_go_to_stderr_and_strict_fails() {
    let lenient = butane(&["--raw-errors"], NO_INSTALL);
    assert!(lenient.status.success());
    assert_eq!(
        String::from_utf8_lossy(&lenient.stderr),
        "warning at $.systemd.units.0.contents, line 7 col 17: unit \"a.service\" is enabled, \
         but has no install section so enable does nothing\n"
    );
    let strict = butane(&["--raw-errors", "--strict"], NO_INSTALL);
    assert_eq!(strict.status.code(), Some(1));
    assert!(strict.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&strict.stderr)
            .ends_with("Config produced warnings and --strict was specified\n")
    );
}

#[test]
fn type_errors_exit_1_with_the_line() {
    let out = butane(
        &[],
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /a\n      mode: abc\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error translating config: yaml: unmarshal errors:\n  line 6: cannot unmarshal !!str `abc` into int\n"
    );
}

#[test]
fn local_files_and_output_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("motd.txt"), "from a file\n").unwrap();
    let bu = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/motd\n      contents:\n        local: motd.txt\n";
    let out_file = dir.path().join("out.ign");
    let out = butane(
        &[
            "--files-dir",
            dir.path().to_str().unwrap(),
            "--output",
            out_file.to_str().unwrap(),
        ],
        bu,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(
        config["storage"]["files"][0]["contents"]["source"],
        "data:,from%20a%20file%0A"
    );

    // Without --files-dir, local files are refused, as Butane does.
    let refused = butane(&[], bu);
    assert_eq!(refused.status.code(), Some(1));
}
