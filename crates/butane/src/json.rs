//! JSON output byte-compatible with Butane's (Go `encoding/json`, via the clarketm fork):
//! HTML-safe escaping of `<`, `>`, `&`, U+2028/U+2029, and `MarshalIndent` with two spaces.

use serde_json::Value;

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write(out: &mut String, v: &Value, indent: Option<usize>) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent.map(|d| d + 1));
                write(out, item, indent.map(|d| d + 1));
            }
            newline(out, indent);
            out.push(']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent.map(|d| d + 1));
                write_str(out, k);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write(out, item, indent.map(|d| d + 1));
            }
            newline(out, indent);
            out.push('}');
        }
    }
}

fn newline(out: &mut String, indent: Option<usize>) {
    if let Some(d) = indent {
        out.push('\n');
        for _ in 0..d {
            out.push_str("  ");
        }
    }
}

/// Serializes like Butane: compact `json.Marshal`, or `json.MarshalIndent(v, "", "  ")` when
/// `pretty`. No trailing newline (the CLI adds one).
pub fn to_json(config: &Value, pretty: bool) -> String {
    let mut out = String::new();
    write(&mut out, config, pretty.then_some(0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_and_pretty() {
        let v = json!({"ignition": {"version": "3.3.0"}, "a": [], "b": [1, {"c": "<&>"}]});
        assert_eq!(
            to_json(&v, false),
            r#"{"ignition":{"version":"3.3.0"},"a":[],"b":[1,{"c":"\u003c\u0026\u003e"}]}"#
        );
        assert_eq!(
            to_json(&v, true),
            "{\n  \"ignition\": {\n    \"version\": \"3.3.0\"\n  },\n  \"a\": [],\n  \"b\": [\n    1,\n    {\n      \"c\": \"\\u003c\\u0026\\u003e\"\n    }\n  ]\n}"
        );
    }
}
