//! The spec example in docs/simulator.md is a valid spec.

use roundhouse_sim::FleetSpec;

#[test]
fn documented_spec_parses() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/simulator.md"
    ))
    .unwrap();
    let start = doc
        .find("```toml\n")
        .expect("a toml block in docs/simulator.md")
        + "```toml\n".len();
    let len = doc[start..].find("```").unwrap();
    let spec = FleetSpec::parse(&doc[start..start + len]).unwrap();
    let all = spec.all_machines();
    assert_eq!(all.len(), 1001);
    assert_eq!(all[0].disks.len(), 2);
    assert_eq!(all[0].bmc.username, "admin");
    assert_eq!(all[1].name.as_deref(), Some("node-1"));
    assert_eq!(spec.durations.install_download, 20.0);
}
