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
    pub fn of_node(final_config: &Value, kernel_args: &[String], kernel_console: &[String]) -> Digest {
        let mut text = String::new();
        text.push_str("{\"ignition\":");
        canonical_json(final_config, &mut text);
        text.push_str(",\"kernel_args\":");
        canonical_json(&Value::from(kernel_args.to_vec()), &mut text);
        text.push_str(",\"kernel_console\":");
        canonical_json(&Value::from(kernel_console.to_vec()), &mut text);
        text.push('}');
        Digest::of_bytes(text.as_bytes())
    }

    /// SHA-256 of raw bytes, in the same notation.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// Parses `sha256:<hex>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
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
        Digest::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a sha256 digest: {s}")))
    }
}

/// Appends `value` as JSON with object keys sorted (by UTF-8 bytes) and no whitespace.
pub fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
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
        assert_eq!(Digest::of_node(&a, &args, &[]), Digest::of_node(&b, &args, &[]));
    }

    #[test]
    fn sensitive_to_every_input() {
        let cfg = json!({"ignition": {"version": "3.3.0"}});
        let other = json!({"ignition": {"version": "3.4.0"}});
        let base = Digest::of_node(&cfg, &["x".into()], &["console=ttyS0".into()]);
        assert_ne!(base, Digest::of_node(&other, &["x".into()], &["console=ttyS0".into()]));
        assert_ne!(base, Digest::of_node(&cfg, &["y".into()], &["console=ttyS0".into()]));
        assert_ne!(base, Digest::of_node(&cfg, &["x".into()], &["console=tty0".into()]));
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
    fn canonical_form_escapes_strings() {
        let mut s = String::new();
        canonical_json(&json!({"k\"": "a\nb", "n": 1.5, "z": null}), &mut s);
        assert_eq!(s, r#"{"k\"":"a\nb","n":1.5,"z":null}"#);
    }
}
