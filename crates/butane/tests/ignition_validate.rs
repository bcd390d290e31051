//! Runs Debian's `ignition-validate` (package `ignition`, Ignition 2.14, which knows spec
//! 3.3.0 but not 3.4.0) on the translation of every flatcar 1.0.0 fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

const VALIDATOR: &str = "/usr/bin/ignition-validate";

#[test]
fn spec_3_3_outputs_pass_ignition_validate() {
    assert!(
        Path::new(VALIDATOR).exists(),
        "{VALIDATOR} is missing: install Debian's `ignition` package (apt-get install ignition)"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let options = butane::Options {
        files_dir: Some(dir.join("files")),
        strict: false,
    };
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bu"))
        .collect();
    fixtures.sort();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for bu in fixtures {
        let t = butane::translate(&std::fs::read_to_string(&bu).unwrap(), &options).unwrap();
        if t.config["ignition"]["version"] != "3.3.0" {
            continue;
        }
        let out = tmp.path().join("config.ign");
        std::fs::write(&out, butane::to_json(&t.config, false)).unwrap();
        let run = Command::new(VALIDATOR).arg(&out).output().unwrap();
        assert!(
            run.status.success(),
            "{}: ignition-validate failed:\n{}{}",
            bu.display(),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} 3.3.0 fixtures checked");
}
