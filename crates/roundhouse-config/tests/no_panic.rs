//! Untrusted input never panics the loader: arbitrary bytes, damaged copies of the example, and
//! token soup that looks like a cluster file all end in `Ok` or in diagnostics.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use roundhouse_config::{LoadOptions, load_str};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mercury/cluster.hcl")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("example exists")
}

fn options() -> LoadOptions {
    LoadOptions {
        env: Some(Vec::new()),
        ..LoadOptions::default()
    }
}

/// Loads `text` and checks the error side is well formed when it fails.
fn check(text: &str) {
    if let Err(diags) = load_str(&example_path(), text, &options()) {
        assert!(!diags.0.is_empty(), "an error without diagnostics");
        // The loader's fallback for a failure nobody reported must never be needed.
        assert!(
            diags.0.iter().all(|d| d.message != "invalid cluster file"),
            "a failure without its reason for:\n{text}"
        );
        let rendered = diags.to_string();
        assert!(rendered.starts_with("error: "), "{rendered}");
    }
}

const TOKENS: &[&str] = &[
    "cluster {\n",
    "node \"n1\" {\n",
    "node \"n2\" {\n",
    "variable \"v\" {\n",
    "power {\n",
    "}\n",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    ",",
    "\n",
    " ",
    "\"",
    "${",
    "%{",
    "~",
    "name = \"x\"\n",
    "asset_dir = \"a\"\n",
    "mac = \"52:54:00:00:00:01\"\n",
    "role = \"worker\"\n",
    "domain = \"10.0.0.1\"\n",
    "default = ",
    "var.v",
    "var.",
    "var",
    "file(\"x\")",
    "file(",
    "<<-EOT\n",
    "<<EOT\n",
    "EOT\n",
    "  text\n",
    "driver = \"ipmi\"\n",
    "password_env = \"P\"\n",
    "trimspace(",
    "join(\",\", ",
    "format(\"%s %d\", ",
    "1",
    "-1",
    "1e999",
    "true",
    "null",
    "? ",
    ": ",
    "==",
    "&&",
    "!",
    "[0]",
    ".x",
    "[*]",
    "for x in [1] : x",
    "é",
    "\t",
    "\r\n",
    "ssh_pubkeys = [\"ssh-ed25519 AAAA\"]\n",
    "boot_server_http = \"http://h\"\n",
    "%{ if true }",
    "%{ if var.v ~}",
    "%{~ else }",
    "%{ endif }",
    "%{ for k, v in var.v }",
    "%{ for x in [1, 2] ~}",
    "%{ endfor }",
    "${x}",
    "${~ x ~}",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soup(picks in proptest::collection::vec(0..TOKENS.len(), 0..80)) {
        let text: String = picks.iter().map(|&i| TOKENS[i]).collect();
        check(&text);
    }

}

proptest! {
    // Each case reads the example's snippet files twice: fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn damaged_example(cut in 0usize..4000, len in 0usize..40, insert in "\\PC{0,3}") {
        let text = example_text();
        let mut start = cut.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + len).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let damaged = format!("{}{insert}{}", &text[..start], &text[end..]);
        check(&damaged);
        check(&text[..start]);
    }
}
