//! Template data, modelled on the Go values that matchbox hands to `text/template`.
//!
//! Go decodes JSON metadata into `map[string]interface{}`, where every number is a `float64`,
//! and matchbox adds the request query as a `map[string]string`. The two map types behave
//! differently in templates (`index` of a missing key yields `<no value>` for one and `""` for
//! the other, and error messages name the Go type), so both are represented here.

use std::collections::BTreeMap;

use thiserror::Error;

/// A value a template can be executed over.
///
/// Map keys are kept in a [`BTreeMap`] because Go's `text/template` ranges over and prints
/// maps in sorted key order, and byte-wise `String` ordering is exactly Go's string order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// JSON `null`: a nil `interface{}`.
    Nil,
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number; Go's `encoding/json` decodes every number to `float64`.
    Number(f64),
    /// A string.
    String(String),
    /// A JSON array: `[]interface{}`.
    Array(Vec<Value>),
    /// A JSON object: `map[string]interface{}`.
    Object(BTreeMap<String, Value>),
    /// A `map[string]string`, as matchbox uses for the request query.
    StringMap(BTreeMap<String, String>),
}

impl Value {
    /// The Go type name of this value, as `%T` and error messages print it.
    pub fn go_type(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Number(_) => "float64",
            Value::String(_) => "string",
            Value::Array(_) => "[]interface {}",
            Value::Object(_) => "map[string]interface {}",
            Value::StringMap(_) => "map[string]string",
        }
    }
}

impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            // as_f64 never fails for serde_json numbers without arbitrary_precision; a u64
            // above 2^53 rounds exactly as Go's strconv.ParseFloat would.
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::Array(a.iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect())
            }
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        Value::from(&v)
    }
}

/// Why [`matchbox_data`] could not build template data.
#[derive(Debug, Error, PartialEq)]
pub enum DataError {
    /// Group metadata must be a JSON object (or null), as Go unmarshals it into a map.
    #[error("json: cannot unmarshal {0} into Go value of type map[string]interface {{}}")]
    MetadataNotObject(&'static str),
}

/// Builds the data matchbox renders templates with: the group metadata, then the group
/// selectors with lower-cased keys (overwriting metadata keys), then
/// `request: {query: <labels>, raw_query: <raw query>}`.
///
/// `query` is the label map derived from the request (see matchbox's `labelsFromRequest`);
/// it becomes a Go `map[string]string`, so `{{index .request.query "missing"}}` prints an
/// empty string exactly as in matchbox.
pub fn matchbox_data<'s>(
    metadata: Option<&serde_json::Value>,
    selectors: impl IntoIterator<Item = (&'s str, &'s str)>,
    query: &BTreeMap<String, String>,
    raw_query: &str,
) -> Result<Value, DataError> {
    let mut data = BTreeMap::new();
    match metadata {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(o)) => {
            for (k, v) in o {
                data.insert(k.clone(), Value::from(v));
            }
        }
        Some(other) => {
            return Err(DataError::MetadataNotObject(match other {
                serde_json::Value::Bool(_) => "bool",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::String(_) => "string",
                _ => "array",
            }));
        }
    }
    for (k, v) in selectors {
        data.insert(k.to_lowercase(), Value::String(v.to_string()));
    }
    let mut request = BTreeMap::new();
    request.insert("query".to_string(), Value::StringMap(query.clone()));
    request.insert(
        "raw_query".to_string(),
        Value::String(raw_query.to_string()),
    );
    data.insert("request".to_string(), Value::Object(request));
    Ok(Value::Object(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_numbers_become_float64() {
        assert_eq!(Value::from(json!(3)), Value::Number(3.0));
        assert_eq!(Value::from(json!(-2)), Value::Number(-2.0));
        assert_eq!(Value::from(json!(0.5)), Value::Number(0.5));
    }

    #[test]
    fn matchbox_data_layers_selectors_and_request() {
        let meta = json!({"mac": "meta", "pxe": true});
        let mut q = BTreeMap::new();
        q.insert("UUID".to_string(), "u1".to_string());
        let d = matchbox_data(Some(&meta), [("MAC", "52:54:00:00:00:01")], &q, "UUID=u1").unwrap();
        let Value::Object(m) = d else {
            panic!("not an object")
        };
        assert_eq!(m["mac"], Value::String("52:54:00:00:00:01".into()));
        assert_eq!(m["pxe"], Value::Bool(true));
        let Value::Object(r) = &m["request"] else {
            panic!("request not an object")
        };
        assert_eq!(r["raw_query"], Value::String("UUID=u1".into()));
        assert_eq!(r["query"], Value::StringMap(q));
    }

    #[test]
    fn matchbox_data_rejects_non_object_metadata() {
        let err = matchbox_data(Some(&json!([1])), [], &BTreeMap::new(), "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
    }
}
