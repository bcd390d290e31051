//! Parses arbitrary template text and executes it over arbitrary JSON data.
//!
//! Input layout: template text, a NUL byte, then JSON data (absent or invalid JSON means
//! `null`). Any panic, stack overflow or runaway execution is a bug.
#![no_main]

use gotmpl::{ExecOptions, Template, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (text, data) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let data: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let Ok(t) = Template::parse("fuzz", text) else {
        return;
    };
    let opts = ExecOptions {
        max_output_bytes: 1 << 20,
        max_intermediate_bytes: 4 << 20,
        max_steps: 100_000,
        ..ExecOptions::default()
    };
    if let Ok(out) = t.execute_value(&Value::from(&data), &opts) {
        assert!(out.len() <= opts.max_output_bytes);
    }
});
