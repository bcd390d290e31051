//! `roundhouse render` end to end: the shipped example against golden files, every rendered
//! Ignition config through the real `ignition-validate`, and every malformed cluster file
//! rejected with its exact diagnostics and nothing written.
//!
//! Regenerate the golden files after an intended change with `BLESS=1 cargo test --test
//! render_cli`, then review the diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs roundhouse. `render` gets a private copy of the fixture SSH keys (tests/fixture-keys)
/// unless the caller passes `--keys-dir`, so output is deterministic and nothing is written
/// into the example's asset directory.
fn roundhouse(args: &[&str]) -> Output {
    let keys = tempfile::tempdir().unwrap();
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture-keys"),
        keys.path(),
    );
    let keys_arg = keys.path().to_str().unwrap().to_string();
    let mut all: Vec<&str> = args.to_vec();
    if args.first() == Some(&"render") && !args.contains(&"--keys-dir") {
        all.extend(["--keys-dir", keys_arg.as_str()]);
    }
    Command::new(env!("CARGO_BIN_EXE_roundhouse"))
        .args(&all)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running roundhouse")
}

/// Copies a tree; private keys (files not ending in `.pub`) are made 0600, as roundhouse
/// refuses private keys others can read (git checks them out 0644).
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for rel in files_under(from) {
        fs::create_dir_all(to.join(&rel).parent().unwrap()).unwrap();
        fs::copy(from.join(&rel), to.join(&rel)).unwrap();
        if rel.extension().is_none_or(|e| e != "pub") {
            fs::set_permissions(to.join(&rel), fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn render_example(out: &Path) {
    let result = roundhouse(&[
        "render",
        "examples/mercury/cluster.hcl",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        result.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn example_matches_golden_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mercury");
    render_example(&out);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mercury");
    if std::env::var_os("BLESS").is_some() {
        let _ = fs::remove_dir_all(&golden);
        for rel in files_under(&out) {
            fs::create_dir_all(golden.join(&rel).parent().unwrap()).unwrap();
            fs::copy(out.join(&rel), golden.join(&rel)).unwrap();
        }
    }
    let want = files_under(&golden);
    let got = files_under(&out);
    assert_eq!(
        got, want,
        "rendered file set differs from tests/golden/mercury"
    );
    for rel in want {
        let a = fs::read_to_string(out.join(&rel)).unwrap();
        let b = fs::read_to_string(golden.join(&rel)).unwrap();
        assert_eq!(a, b, "{} differs from its golden file", rel.display());
    }
}

#[test]
fn rendering_twice_gives_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    render_example(&a);
    render_example(&b);
    for rel in files_under(&a) {
        assert_eq!(
            fs::read(a.join(&rel)).unwrap(),
            fs::read(b.join(&rel)).unwrap(),
            "{} differs between two renders",
            rel.display()
        );
    }
}

#[test]
fn every_rendered_ignition_config_passes_ignition_validate() {
    let validator = Path::new("/usr/bin/ignition-validate");
    assert!(
        validator.exists(),
        "ignition-validate missing: install the Debian package `ignition` (scripts/install-test-deps)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    render_example(&out);
    let configs: Vec<PathBuf> = files_under(&out.join("ignition"));
    assert_eq!(configs.len(), 12, "two configs per node for six nodes");
    for rel in configs {
        let path = out.join("ignition").join(&rel);
        let v = Command::new(validator).arg(&path).output().unwrap();
        assert!(
            v.status.success(),
            "ignition-validate rejected {}: {}{}",
            rel.display(),
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
    }
}

#[test]
fn one_item_per_node() {
    let result = roundhouse(&[
        "render",
        "examples/mercury/cluster.hcl",
        "--node",
        "worker-3",
        "--what",
        "profile",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(v["install"]["id"], "install-worker-3");
    assert_eq!(v["groups"][1]["selector"]["mac"], "52:54:00:b1:00:03");
    assert_eq!(v["groups"][1]["selector"]["os"], "installed");
    let args = v["install"]["boot"]["args"].as_array().unwrap();
    assert!(
        args.iter().any(|a| a == "intel_iommu=on"),
        "node kernel_args override: {args:?}"
    );

    let missing = roundhouse(&["render", "examples/mercury/cluster.hcl", "--node", "nope"]);
    assert_eq!(missing.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no node named \"nope\""));
}

#[test]
fn refuses_to_replace_a_directory_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let result = roundhouse(&[
        "render",
        "examples/mercury/cluster.hcl",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&result.stderr).contains("refusing to replace"));
    assert_eq!(files_under(tmp.path()), vec![PathBuf::from("precious.txt")]);
}

/// Every malformed cluster file under tests/bad-cluster (errors in the cluster file) and
/// tests/bad-snippet (errors in Butane snippets, found while rendering) is rejected with exit
/// code 65, exactly the diagnostics in its `.stderr` file, and no output directory.
#[test]
fn malformed_cluster_files_write_nothing() {
    let mut checked = 0;
    for sub in ["tests/bad-cluster", "tests/bad-snippet"] {
        checked += check_malformed_dir(sub);
    }
    assert!(checked >= 120, "only {checked} malformed cluster files");
}

fn check_malformed_dir(sub: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(sub);
    let mut checked = 0;
    let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("hcl") {
            continue;
        }
        let rel = format!("{sub}/{}", path.file_name().unwrap().to_str().unwrap());
        let expected = fs::read_to_string(path.with_extension("stderr"))
            .unwrap_or_else(|_| panic!("{rel} has no .stderr file"));
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let keys = tmp.path().join("keys");
        let result = roundhouse(&[
            "render",
            &rel,
            "--out",
            out.to_str().unwrap(),
            "--keys-dir",
            keys.to_str().unwrap(),
        ]);
        assert_eq!(result.status.code(), Some(65), "{rel}: exit code");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(stderr.trim_end(), expected.trim_end(), "{rel}: diagnostics");
        assert!(!out.exists(), "{rel}: output directory was created");
        assert!(!keys.exists(), "{rel}: SSH keys were generated");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "{rel}: something was written"
        );
        checked += 1;
    }
    checked
}

/// Butane warnings (here: a misspelt key, which Butane reports as unused) are printed with the
/// snippet file's line and column and do not stop rendering; `--strict` makes them fatal, and
/// then nothing is written.
#[test]
fn snippet_warnings_and_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let file = "tests/snippet-warnings/unknown-key-in-file.hcl";
    let lenient = roundhouse(&["render", file, "--out", out.to_str().unwrap()]);
    assert!(lenient.status.success());
    let stderr = String::from_utf8_lossy(&lenient.stderr);
    assert!(
        stderr.starts_with(
            "warning: unused key contnets (at $.storage.files.0.contnets)\n \
             --> tests/snippet-warnings/snippets/unknown-key.bu:6:7\n"
        ),
        "{stderr}"
    );
    assert!(out.join("ignition/w1.ign").exists());

    let strict_out = tmp.path().join("strict");
    let strict = roundhouse(&[
        "render",
        file,
        "--strict",
        "--out",
        strict_out.to_str().unwrap(),
    ]);
    assert_eq!(strict.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(stderr.contains("unknown-key.bu:6:7"), "{stderr}");
    assert!(!strict_out.exists());
}

/// A `local:` file in an inline snippet is read relative to the cluster file's directory,
/// whether the cluster file is named `cluster.hcl` (no directory part) or `./cluster.hcl`.
#[test]
fn local_files_resolve_against_the_cluster_file_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/local-files");
    let want = format!("data:,{}", "hello%20from%20a%20local%20file%0A");
    for spelling in ["cluster.hcl", "./cluster.hcl"] {
        let keys = tempfile::tempdir().unwrap();
        let result = Command::new(env!("CARGO_BIN_EXE_roundhouse"))
            .args([
                "render",
                spelling,
                "--node",
                "w1",
                "--keys-dir",
                keys.path().to_str().unwrap(),
            ])
            .current_dir(&dir)
            .output()
            .expect("running roundhouse");
        assert!(
            result.status.success(),
            "{spelling}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let config: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        let files = config["storage"]["files"].as_array().unwrap();
        let motd = files
            .iter()
            .find(|f| f["path"] == "/etc/motd")
            .unwrap_or_else(|| panic!("{spelling}: no /etc/motd in {files:?}"));
        assert_eq!(motd["contents"]["source"], want.as_str(), "{spelling}");
    }
}

/// With `allow_snippet_overrides`, a snippet may change protected parts of the base config:
/// rendering succeeds and the snippet's values are in the final config.
#[test]
fn allowed_snippet_overrides_render() {
    let file = "tests/snippet-overrides/allowed.hcl";
    for (node, wipe) in [("w1", true), ("w2", false)] {
        let result = roundhouse(&["render", file, "--node", node]);
        assert!(
            result.status.success(),
            "{node}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let config: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        let root = &config["storage"]["filesystems"][0];
        assert_eq!(root["device"], "/dev/disk/by-label/ROOT", "{node}");
        assert_eq!(root["wipeFilesystem"], wipe, "{node}");
        let files = config["storage"]["files"].as_array().unwrap();
        let flag: Vec<_> = files
            .iter()
            .filter(|f| f["path"] == "/ignition_ran")
            .collect();
        assert_eq!(flag.len(), 1, "{node}: {files:?}");
        assert_eq!(flag[0]["contents"]["source"], "data:,custom", "{node}");
    }
}

/// The same snippets without the opt-in are refused, naming the snippet line.
#[test]
fn snippet_overrides_are_refused_without_opt_in() {
    let tmp = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snippet-overrides/allowed.hcl"),
    )
    .unwrap()
    .replace("allow_snippet_overrides", "# allow_snippet_overrides");
    let file = tmp.path().join("cluster.hcl");
    fs::write(&file, text).unwrap();
    let out = tmp.path().join("out");
    let result = roundhouse(&[
        "render",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&result.stderr);
    // One error per snippet problem, not one per node.
    assert_eq!(stderr.matches("error: ").count(), 2, "{stderr}");
    assert!(
        stderr.contains("snippet replaces /ignition_ran") && stderr.contains("cluster.hcl:15:17"),
        "{stderr}"
    );
    assert!(
        stderr.contains("turns off the wipe of the root filesystem")
            && stderr.contains("cluster.hcl:39:28"),
        "{stderr}"
    );
    assert!(!out.exists());
}
