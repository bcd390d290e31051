//! The example cluster in `examples/mercury` loads, and every setting lands in the model.

use std::path::{Path, PathBuf};

use roundhouse_config::*;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load_mercury() -> Cluster {
    let path = workspace_root().join("examples/mercury/cluster.hcl");
    let options = LoadOptions {
        env: Some(Vec::new()),
        ..LoadOptions::default()
    };
    match load(&path, &options) {
        Ok(c) => c,
        Err(d) => panic!("examples/mercury/cluster.hcl must load:\n{d}"),
    }
}

#[test]
fn mercury_loads() {
    let c = load_mercury();
    println!("{c:#?}");
}
