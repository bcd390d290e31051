//! Every malformed cluster file under `tests/bad-cluster/` (workspace root) is rejected with
//! exactly the diagnostics in its `.stderr` file.
//!
//! After an intended change to messages, regenerate with
//! `BLESS=1 cargo test -p roundhouse-config --test bad_cluster` and review every diff by eye.
//!
//! This file holds a single test on purpose: it changes the working directory to the workspace
//! root so paths print as `tests/bad-cluster/NAME.hcl`, exactly as the CLI shows them.

use std::fs;
use std::path::{Path, PathBuf};

use roundhouse_config::{LoadOptions, load};

const DIR: &str = "tests/bad-cluster";

#[test]
fn bad_cluster_files_report_exactly_their_stderr() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::set_current_dir(&root).expect("workspace root exists");
    let bless = std::env::var_os("BLESS").is_some();

    let mut entries: Vec<PathBuf> = fs::read_dir(DIR)
        .expect("tests/bad-cluster exists")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();

    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &entries {
        let ext = path.extension().and_then(|e| e.to_str());
        let rel = Path::new(DIR).join(path.file_name().expect("file name"));
        if ext == Some("stderr") && !path.with_extension("hcl").exists() {
            failures.push(format!("{}: no matching .hcl file", rel.display()));
            continue;
        }
        if ext != Some("hcl") {
            continue;
        }
        checked += 1;
        let options = LoadOptions {
            env: Some(Vec::new()),
            ..LoadOptions::default()
        };
        let actual = match load(&rel, &options) {
            Ok(_) => {
                failures.push(format!("{}: loaded without errors", rel.display()));
                continue;
            }
            Err(diags) => format!("{diags}\n"),
        };
        let stderr_path = rel.with_extension("stderr");
        if bless {
            fs::write(&stderr_path, &actual).expect("writing .stderr");
            continue;
        }
        match fs::read_to_string(&stderr_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: diagnostics differ\n--- expected\n{expected}--- actual\n{actual}",
                rel.display()
            )),
            Err(_) => failures.push(format!(
                "{}: missing {} (run with BLESS=1 to create it, then review it)",
                rel.display(),
                stderr_path.display()
            )),
        }
    }
    assert!(checked >= 104, "only {checked} malformed cluster files");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
