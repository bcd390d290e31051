//! The query-string label parser: never panics, and what it returns obeys matchbox's rules.
#![no_main]

use bootdata::Mac;
use libfuzzer_sys::fuzz_target;
use roundhouse_boot::Labels;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(labels) = Labels::parse(query) else {
        return;
    };
    for (key, value) in labels.iter() {
        // A `mac` label (any key case) is always a canonical address.
        if key.eq_ignore_ascii_case("mac") {
            let mac = Mac::parse(value).expect("mac label parses");
            assert_eq!(mac.to_string(), value);
        }
        // Every label came from a non-empty pair of the query without `;`.
        assert!(!key.contains('&'));
    }
    assert!(labels.len() <= query.split('&').count());
});
