//! Property tests: arbitrary template text and data never panic, execution stays within
//! its limits, and data values (which may come from the network) print verbatim.

use gotmpl::{ExecErrorKind, ExecOptions, Template, Value};
use proptest::prelude::*;

fn small_limits() -> ExecOptions {
    ExecOptions {
        max_output_bytes: 64 * 1024,
        max_intermediate_bytes: 256 * 1024,
        max_steps: 20_000,
        ..ExecOptions::default()
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i32>().prop_map(|n| serde_json::json!(n)),
        (-1e30f64..1e30).prop_map(|f| serde_json::json!(f)),
        "[a-z{}.$ ]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Fragments that make random text likely to parse into interesting templates.
fn template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{{- ".to_string()),
        Just(" -}}".to_string()),
        Just("{{end}}".to_string()),
        Just("{{else}}".to_string()),
        Just("{{if .a}}".to_string()),
        Just("{{range .b}}".to_string()),
        Just("{{range $i, $e := .}}".to_string()),
        Just("{{with .c}}".to_string()),
        Just("{{break}}".to_string()),
        Just("{{continue}}".to_string()),
        Just("{{define \"x\"}}".to_string()),
        Just("{{template \"x\" .}}".to_string()),
        Just("{{block \"y\" .a}}".to_string()),
        Just("{{/* c */}}".to_string()),
        Just(".a".to_string()),
        Just(".b.c".to_string()),
        Just("$".to_string()),
        Just("$x := ".to_string()),
        Just("$x".to_string()),
        Just(" | ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("\"s\"".to_string()),
        Just("`r`".to_string()),
        Just("3".to_string()),
        Just("-1.5e3".to_string()),
        Just("'c'".to_string()),
        Just("nil".to_string()),
        Just("true".to_string()),
        prop::sample::select(vec![
            "index", "len", "slice", "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge",
            "print", "printf", "println", "html", "js", "urlquery", "call"
        ])
        .prop_map(|s| format!(" {s} ")),
        "[ -~]{0,4}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_templates_never_panic(text in template_text(), data in json_value()) {
        if let Ok(t) = Template::parse("p", &text) {
            let opts = small_limits();
            match t.execute_value(&Value::from(&data), &opts) {
                Ok(out) => prop_assert!(out.len() <= opts.max_output_bytes),
                Err(e) => {
                    // Errors render in Go's format and never leak a Rust panic.
                    let s = e.to_string();
                    prop_assert!(s.starts_with("template: "), "{}", s);
                }
            }
        }
    }

    #[test]
    fn arbitrary_printf_formats_never_panic(
        format in "([a-z ]{0,3}%[-+# 0]{0,3}[0-9]{0,5}(\\.[0-9]{0,6})?[a-zA-Z%!]){1,4}",
        args in prop::collection::vec(json_value(), 0..4),
    ) {
        let t = Template::parse("p", "{{printf .f .a0 .a1 .a2 .a3}}").unwrap();
        let mut data = serde_json::Map::new();
        data.insert("f".into(), serde_json::Value::String(format));
        for i in 0..4 {
            data.insert(format!("a{i}"), args.get(i).cloned().unwrap_or_default());
        }
        let _ = t.execute(&serde_json::Value::Object(data));
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in "\\PC{0,64}") {
        if let Ok(t) = Template::parse("p", &text) {
            let _ = t.execute_value(&Value::Nil, &small_limits());
        }
    }

    #[test]
    fn text_without_actions_is_copied(text in "[^{]{0,64}") {
        let t = Template::parse("p", &text).unwrap();
        prop_assert_eq!(t.execute(&serde_json::Value::Null).unwrap(), text);
    }

    #[test]
    fn string_data_prints_verbatim(s in "\\PC{0,64}") {
        let t = Template::parse("p", "{{.s}}|{{print .s}}|{{printf \"%s\" .s}}").unwrap();
        let out = t.execute(&serde_json::json!({"s": s})).unwrap();
        prop_assert_eq!(out, format!("{s}|{s}|{s}"));
    }

    #[test]
    fn floats_print_shortest_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let t = Template::parse("p", "{{.n}}").unwrap();
        let out = t.execute(&serde_json::json!({"n": f})).unwrap();
        let back: f64 = out.parse().unwrap();
        prop_assert_eq!(back, f);
        // Go's %v (strconv 'g', shortest) uses an exponent when the decimal exponent is
        // below -4 or at least 6; exponents carry a sign and at least two digits.
        let exp10 = if f == 0.0 { 0 } else { f.abs().log10().floor() as i32 };
        if !(-5..=6).contains(&exp10) {
            prop_assert!(out.contains('e'), "{}", out);
        }
        if (-3..=4).contains(&exp10) {
            prop_assert!(!out.contains('e'), "{}", out);
        }
        if let Some((_, e)) = out.split_once('e') {
            prop_assert!(e.starts_with('+') || e.starts_with('-'));
            prop_assert!(e.len() >= 3);
        }
    }
}

#[test]
fn step_limit_stops_huge_ranges() {
    let t = Template::parse("p", "{{range $i := 1000000000}}{{end}}").unwrap();
    let err = t.execute_value(&Value::Nil, &small_limits()).unwrap_err();
    assert_eq!(err.kind(), ExecErrorKind::Limit);
    assert!(err.message().contains("steps"), "{err}");
}

#[test]
fn output_limit_stops_large_output() {
    let t = Template::parse("p", "{{range 100000}}{{$.s}}{{end}}").unwrap();
    let data: Value = serde_json::json!({"s": "x".repeat(100)}).into();
    let err = t.execute_value(&data, &small_limits()).unwrap_err();
    assert_eq!(err.kind(), ExecErrorKind::Limit);
    assert!(err.message().contains("output exceeds"), "{err}");
}

#[test]
fn string_doubling_is_bounded() {
    let t = Template::parse(
        "p",
        "{{$x := \"ab\"}}{{range 64}}{{$x = printf \"%s%s\" $x $x}}{{end}}{{len $x}}",
    )
    .unwrap();
    let err = t.execute_value(&Value::Nil, &small_limits()).unwrap_err();
    assert_eq!(err.kind(), ExecErrorKind::Limit);
}

#[test]
fn deep_recursion_is_an_error_not_a_stack_overflow() {
    // Each call nests 40 ifs, so the run-time depth limit trips inside a few calls.
    let body = "{{if true}}".repeat(40) + "{{template \"r\" .}}" + &"{{end}}".repeat(40);
    let text = format!("{{{{define \"r\"}}}}{body}{{{{end}}}}{{{{template \"r\" .}}}}");
    let t = Template::parse("p", &text).unwrap();
    // Run on a thread with a deliberately small stack.
    let h = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            t.execute(&serde_json::Value::Null)
                .map_err(|e| e.to_string())
        })
        .unwrap();
    let err = h.join().unwrap().unwrap_err();
    assert!(err.contains("exceeded maximum"), "{err}");
}

#[test]
fn deepest_parsable_template_runs_on_a_small_stack() {
    // 98 nested withs plus two parentheses is the parser's maximum depth of 100.
    let depth = 98;
    let text =
        "{{with .}}".repeat(depth) + "{{len (" + "(" + ".)" + ")}}" + &"{{end}}".repeat(depth);
    let h = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let t = Template::parse("p", &text).map_err(|e| e.to_string())?;
            t.execute(&serde_json::json!([1, 2]))
                .map_err(|e| e.to_string())
        })
        .unwrap();
    assert_eq!(h.join().unwrap().unwrap(), "2");
}

#[test]
fn fuzz_regression_huge_printf_precision() {
    // Found by the fuzz target: Go accepts precisions up to 1e6 (Rust's formatter panics
    // above 65535). The output is exact: 2.5 followed by zeros.
    let t = Template::parse("p", "{{printf \"%222.1000000f|\" .n}}").unwrap();
    let out = t.execute(&serde_json::json!({"n": 2.5})).unwrap();
    assert_eq!(out.len(), "2.".len() + 1_000_000 + 1);
    assert!(out.starts_with("2.5000") && out.ends_with("0|"));
}
