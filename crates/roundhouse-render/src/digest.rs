//! The config digest: a SHA-256 over exactly the inputs whose change requires the node to be
//! re-provisioned (final Ignition config, kernel arguments, kernel console), computed over a
//! canonical JSON form so that key order and formatting never cause a spurious change.

use std::fmt;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// `sha256:<64 hex digits>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest of a node's re-provisioning inputs.
    pub fn of_node(
        final_config: &Value,
        kernel_args: &[String],
        kernel_console: &[String],
    ) -> Digest {
        // Written out once and hashed in one call: this runs for every node on every plan and
        // render, and feeding SHA-256 one small piece at a time cost more than the hashing.
        let mut text = Vec::with_capacity(16 * 1024);
        let mut w = |b: &[u8]| text.extend_from_slice(b);
        w(b"{\"ignition\":");
        write_canonical(final_config, &mut w);
        w(b",\"kernel_args\":");
        write_string_list(kernel_args, &mut w);
        w(b",\"kernel_console\":");
        write_string_list(kernel_console, &mut w);
        w(b"}");
        Digest::of_bytes(&text)
    }

    /// SHA-256 of raw bytes, in the same notation.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// Parses `sha256:<hex>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        (hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Digest(s.to_string()))
    }

    /// The full `sha256:…` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a sha256 digest: {s}")))
    }
}

/// Appends `value` as JSON with object keys sorted (by UTF-8 bytes) and no whitespace.
pub fn canonical_json(value: &Value, out: &mut String) {
    let mut bytes = Vec::new();
    write_canonical(value, &mut |b: &[u8]| bytes.extend_from_slice(b));
    out.push_str(std::str::from_utf8(&bytes).expect("JSON text is UTF-8"));
}

fn write_string_list(items: &[String], w: &mut impl FnMut(&[u8])) {
    w(b"[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            w(b",");
        }
        write_json_string(item, w);
    }
    w(b"]");
}

fn write_json_string(s: &str, w: &mut impl FnMut(&[u8])) {
    // Most strings need no escaping (serde_json escapes only quotes, backslashes and control
    // characters): pass those through without a copy.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        w(b"\"");
        w(s.as_bytes());
        w(b"\"");
        return;
    }
    let mut buf = Vec::with_capacity(s.len() + 8);
    serde_json::to_writer(&mut buf, s).expect("writing to a Vec cannot fail");
    w(&buf);
}

fn write_canonical(value: &Value, w: &mut impl FnMut(&[u8])) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            w(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    w(b",");
                }
                write_json_string(k, w);
                w(b":");
                write_canonical(v, w);
            }
            w(b"}");
        }
        Value::Array(items) => {
            w(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w(b",");
                }
                write_canonical(item, w);
            }
            w(b"]");
        }
        Value::String(s) => write_json_string(s, w),
        Value::Null => w(b"null"),
        Value::Bool(true) => w(b"true"),
        Value::Bool(false) => w(b"false"),
        Value::Number(n) => w(n.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn insensitive_to_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap();
        let args = vec!["a=1".to_string()];
        assert_eq!(
            Digest::of_node(&a, &args, &[]),
            Digest::of_node(&b, &args, &[])
        );
    }

    #[test]
    fn sensitive_to_every_input() {
        let cfg = json!({"ignition": {"version": "3.3.0"}});
        let other = json!({"ignition": {"version": "3.4.0"}});
        let base = Digest::of_node(&cfg, &["x".into()], &["console=ttyS0".into()]);
        assert_ne!(
            base,
            Digest::of_node(&other, &["x".into()], &["console=ttyS0".into()])
        );
        assert_ne!(
            base,
            Digest::of_node(&cfg, &["y".into()], &["console=ttyS0".into()])
        );
        assert_ne!(
            base,
            Digest::of_node(&cfg, &["x".into()], &["console=tty0".into()])
        );
        // Moving an argument between the two lists is a change too.
        assert_ne!(
            Digest::of_node(&cfg, &["a".into()], &[]),
            Digest::of_node(&cfg, &[], &["a".into()])
        );
    }

    #[test]
    fn known_value_and_parse() {
        // sha256 of the empty string, computed independently with `sha256sum </dev/null`.
        let d = Digest::of_bytes(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(Digest::parse(d.as_str()), Some(d));
        assert_eq!(Digest::parse("sha256:abc"), None);
    }

    #[test]
    fn matches_an_independent_canonical_form() {
        // Python: json.dumps(v, sort_keys=True, separators=(',', ':'), ensure_ascii=False),
        // hashed with hashlib.sha256 — the definition written down in docs/ARCHITECTURE.md.
        let config = json!({"b": ["é\n"], "a": 1});
        let d = Digest::of_node(&config, &["x=1".into()], &[]);
        assert_eq!(
            d.as_str(),
            "sha256:6197c8cb3be4ad46cd808002ea48afe6d837947e0d2575e89647d4ff5a364ae7"
        );
    }

    #[test]
    fn canonical_form_escapes_strings() {
        let mut s = String::new();
        canonical_json(&json!({"k\"": "a\nb", "n": 1.5, "z": null}), &mut s);
        assert_eq!(s, r#"{"k\"":"a\nb","n":1.5,"z":null}"#);
    }
}
