//! Checks that a stored Ignition config is one Ignition can use, so a broken file is refused
//! with a reason instead of served (matchbox logs a warning and serves an empty config with a
//! 200 for anything its Ignition library cannot parse, including every spec 3.5 file).

use serde_json::Value;

/// Ignition spec versions served. Flatcar's Ignition accepts all of them.
pub const SUPPORTED_SPECS: &[&str] = &["3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"];

/// Why bytes are not a servable Ignition config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnitionError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// `ignition.version` is missing or not a string.
    #[error("missing ignition.version")]
    NoVersion,
    /// A version this server does not serve.
    #[error("unsupported Ignition spec version {0:?} (served: 3.0.0 to 3.5.0)")]
    Unsupported(String),
}

/// Just enough of a config to find its version; everything else is checked for JSON syntax
/// and skipped without building a tree (the loader checks tens of thousands of files, and a
/// full parse of each leaves the heap fragmented for the life of the server).
#[derive(serde::Deserialize)]
struct Skeleton {
    ignition: Option<IgnitionSection>,
}

#[derive(serde::Deserialize)]
struct IgnitionSection {
    version: Option<serde_json::Value>,
}

/// Parses `bytes` as an Ignition config and returns its spec version.
pub fn check(bytes: &[u8]) -> Result<&'static str, IgnitionError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let skeleton: Skeleton = match serde_json::from_slice(bytes) {
        Ok(s) => s,
        // Anything but an object fails the struct decode; say which kind of failure it was.
        Err(_) if first.is_some() && first != Some(&b'{') => {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                .map_err(|e| IgnitionError::Json(e.to_string()))?;
            return Err(IgnitionError::NotObject);
        }
        Err(e) if e.is_data() => {
            // Valid JSON of the wrong shape, e.g. `"ignition": 3`.
            return Err(IgnitionError::NoVersion);
        }
        Err(e) => return Err(IgnitionError::Json(e.to_string())),
    };
    let version = skeleton
        .ignition
        .and_then(|i| i.version)
        .ok_or(IgnitionError::NoVersion)?;
    let version = version.as_str().ok_or(IgnitionError::NoVersion)?;
    SUPPORTED_SPECS
        .iter()
        .find(|v| **v == version)
        .copied()
        .ok_or_else(|| IgnitionError::Unsupported(version.to_string()))
}

/// As [`check`], for an already parsed document.
pub fn check_value(value: &Value) -> Result<&'static str, IgnitionError> {
    let obj = value.as_object().ok_or(IgnitionError::NotObject)?;
    let version = obj
        .get("ignition")
        .and_then(|i| i.get("version"))
        .and_then(Value::as_str)
        .ok_or(IgnitionError::NoVersion)?;
    SUPPORTED_SPECS
        .iter()
        .find(|v| **v == version)
        .copied()
        .ok_or_else(|| IgnitionError::Unsupported(version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for v in SUPPORTED_SPECS {
            let doc = format!(r#"{{"ignition":{{"version":"{v}"}}}}"#);
            assert_eq!(check(doc.as_bytes()), Ok(*v));
        }
        assert_eq!(
            check(br#"{"ignition":{"version":"2.3.0"}}"#),
            Err(IgnitionError::Unsupported("2.3.0".into()))
        );
        assert_eq!(
            check(br#"{"ignition":{"version":"3.6.0-experimental"}}"#),
            Err(IgnitionError::Unsupported("3.6.0-experimental".into()))
        );
        assert_eq!(check(br#"{"ignition":{}}"#), Err(IgnitionError::NoVersion));
        assert_eq!(check(b"[]"), Err(IgnitionError::NotObject));
        assert_eq!(check(b" 3"), Err(IgnitionError::NotObject));
        assert_eq!(check(br#"{"ignition":3}"#), Err(IgnitionError::NoVersion));
        assert_eq!(
            check(br#"{"ignition":{"version":3}}"#),
            Err(IgnitionError::NoVersion)
        );
        assert_eq!(check(br#"{}"#), Err(IgnitionError::NoVersion));
        assert!(matches!(
            check(br#"{"ignition":{"version":"3.4.0"}} trailing"#),
            Err(IgnitionError::Json(_))
        ));
        assert!(matches!(
            check(br#"{"ignition":{"version":"3.4.0"},"x":[1,}"#),
            Err(IgnitionError::Json(_))
        ));
        assert!(matches!(check(b"{"), Err(IgnitionError::Json(_))));
        assert!(matches!(check(b""), Err(IgnitionError::Json(_))));
    }
}
