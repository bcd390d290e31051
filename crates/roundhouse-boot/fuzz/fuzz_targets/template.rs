//! Templates as the boot server compiles and renders them: arbitrary template text over
//! matchbox-shaped data never panics (the engine's bounds stop runaway templates).
#![no_main]

use bootdata::Group;
use libfuzzer_sys::fuzz_target;
use roundhouse_boot::{Labels, engine};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = engine::compile("fuzz", text) else {
        return;
    };
    let group: Group = serde_json::from_str(
        r#"{"id":"g","profile":"p","selector":{"mac":"52:54:00:00:00:01"},
            "metadata":{"n":3,"s":"x","list":[1,"a",{"k":"v"}],"m":{"a":{"b":true}},"nil":null}}"#,
    )
    .unwrap();
    let labels = Labels::parse("mac=52:54:00:00:00:01&os=installed").unwrap();
    let _ = template.render(&group, &labels, "mac=52:54:00:00:00:01&os=installed");
});
