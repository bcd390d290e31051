//! Ignition 3.x config merging (ignition `config/merge/merge.go`) over JSON values.
//!
//! Rules, per field of the Go struct:
//! - plain values (`path`, `name`, `version`, ...): the child's value, even when the child
//!   leaves it empty;
//! - pointer values: the child's when set, else the parent's;
//! - structs: whichever side is non-empty, or both merged field by field;
//! - lists whose items are appended (`files[].append`, filesystem `options`/`mountOptions`,
//!   luks and raid `options`): parent items then child items;
//! - other lists are keyed (files/directories/links by `path`, sharing one key space, units
//!   and dropins by `name`, disks and filesystems by `device`, partitions by `number` or else
//!   `label`, users/groups/raid/luks by `name`, tang by `url`, resources by `source`, strings
//!   by value, `shouldExist`/`shouldNotExist` kernel arguments sharing one key space). Parent
//!   items come first, each merged with the child item of the same key; a parent item whose
//!   key the child uses in a sibling list of the same key space is dropped; child items with
//!   new keys are appended. A child HTTP header without a value deletes the parent's header.
//!
//! Unknown keys are dropped and the output keys follow Ignition's field order.

use serde_json::{Map, Value};

use crate::schema::{Hold, J_CONFIG, JField, JStruct, JTy};

/// Merges `child` into `parent` (both Ignition 3.x configs) like Ignition does for
/// `ignition.config.merge`.
pub fn merge(parent: &Value, child: &Value) -> Value {
    let empty = Map::new();
    let p = parent.as_object().unwrap_or(&empty);
    let c = child.as_object().unwrap_or(&empty);
    Value::Object(merge_struct(p, c, &J_CONFIG))
}

fn present<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    m.get(k).filter(|v| !v.is_null())
}

/// Whether a JSON value is the Go zero value of the field's type.
pub(crate) fn is_zero(v: Option<&Value>, ty: &JTy, hold: Hold) -> bool {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return true;
    };
    if hold == Hold::Ptr {
        return false;
    }
    match (ty, v) {
        (JTy::Str, Value::String(s)) => s.is_empty(),
        (JTy::Int, Value::Number(n)) => n.as_i64() == Some(0),
        (JTy::Bool, Value::Bool(b)) => !b,
        (JTy::List(_), Value::Array(a)) => a.is_empty(),
        (JTy::Struct(s), Value::Object(m)) => struct_is_zero(m, s),
        _ => false,
    }
}

pub(crate) fn struct_is_zero(m: &Map<String, Value>, s: &JStruct) -> bool {
    s.fields
        .iter()
        .all(|f| is_zero(present(m, f.name), &f.ty, f.hold))
}

fn zero_of(ty: &JTy) -> Value {
    match ty {
        JTy::Str => Value::String(String::new()),
        JTy::Int => Value::from(0),
        JTy::Bool => Value::Bool(false),
        JTy::List(_) => Value::Array(Vec::new()),
        JTy::Struct(_) => Value::Object(Map::new()),
    }
}

/// The key Ignition merges list items by (`Key()` / the string itself).
pub(crate) fn item_key(item: &Value, ty: &JTy) -> String {
    let JTy::Struct(s) = ty else {
        return item.as_str().map(str::to_string).unwrap_or_default();
    };
    let get = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match s.name {
        "Directory" | "File" | "Link" => get("path"),
        "Disk" | "Filesystem" => get("device"),
        "Dropin" | "HTTPHeader" | "Luks" | "PasswdGroup" | "PasswdUser" | "Raid" | "Unit" => {
            get("name")
        }
        "Tang" => get("url"),
        "Resource" => get("source"),
        "Partition" => {
            let number = item.get("number").and_then(Value::as_i64).unwrap_or(0);
            if number != 0 {
                format!("number:{number}")
            } else if let Some(l) = item.get("label").and_then(Value::as_str) {
                format!("label:{l}")
            } else {
                String::new()
            }
        }
        _ => String::new(),
    }
}

/// A copy of `v` with struct keys in Ignition's order and unknown keys dropped.
fn normalize(v: &Value, ty: &JTy) -> Value {
    match (ty, v) {
        (JTy::Struct(s), Value::Object(m)) => {
            let mut out = Map::new();
            for f in s.fields {
                if let Some(x) = m.get(f.name) {
                    out.insert(f.name.to_string(), normalize(x, &f.ty));
                }
            }
            Value::Object(out)
        }
        (JTy::List(e), Value::Array(a)) => {
            Value::Array(a.iter().map(|x| normalize(x, e)).collect())
        }
        _ => v.clone(),
    }
}

fn handle_of(f: &JField) -> &'static str {
    f.handle.unwrap_or(f.name)
}

fn merge_struct(p: &Map<String, Value>, c: &Map<String, Value>, s: &JStruct) -> Map<String, Value> {
    let mut out = Map::new();
    // Child items of every keyed list, by (key space, key) -> (list, item); the last wins.
    let mut child_keys: Vec<(&str, String, &str, &Value)> = Vec::new();
    for f in s.fields {
        if let (JTy::List(elem), false) = (&f.ty, f.ignore_dups)
            && let Some(Value::Array(items)) = present(c, f.name)
        {
            for item in items {
                let key = item_key(item, elem);
                let h = handle_of(f);
                child_keys.retain(|(hh, k, _, _)| !(*hh == h && *k == key));
                child_keys.push((h, key, f.name, item));
            }
        }
    }
    for f in s.fields {
        let pv = present(p, f.name);
        let cv = present(c, f.name);
        let result = match &f.ty {
            JTy::Str | JTy::Int | JTy::Bool => match f.hold {
                Hold::Ptr => cv.or(pv).cloned(),
                Hold::Always => Some(cv.cloned().unwrap_or_else(|| zero_of(&f.ty))),
                Hold::Plain => cv.filter(|v| !is_zero(Some(v), &f.ty, f.hold)).cloned(),
            },
            JTy::Struct(cs) => {
                let r = if is_zero(cv, &f.ty, f.hold) {
                    pv.map(|v| normalize(v, &f.ty))
                } else if is_zero(pv, &f.ty, f.hold) {
                    cv.map(|v| normalize(v, &f.ty))
                } else {
                    let empty = Map::new();
                    Some(Value::Object(merge_struct(
                        pv.and_then(Value::as_object).unwrap_or(&empty),
                        cv.and_then(Value::as_object).unwrap_or(&empty),
                        cs,
                    )))
                };
                match (r, f.hold) {
                    (None, Hold::Always) => {
                        Some(Value::Object(merge_struct(&Map::new(), &Map::new(), cs)))
                    }
                    (r, _) => r,
                }
            }
            JTy::List(elem) => {
                let empty = Vec::new();
                let pl = pv.and_then(Value::as_array).unwrap_or(&empty);
                let cl = cv.and_then(Value::as_array).unwrap_or(&empty);
                if pl.is_empty() && cl.is_empty() {
                    None
                } else if f.ignore_dups {
                    Some(Value::Array(
                        pl.iter().chain(cl).map(|v| normalize(v, elem)).collect(),
                    ))
                } else {
                    Some(Value::Array(merge_list(pl, cl, f, elem, &child_keys)))
                }
            }
        };
        if let Some(v) = result {
            out.insert(f.name.to_string(), v);
        }
    }
    out
}

fn merge_list(
    pl: &[Value],
    cl: &[Value],
    f: &JField,
    elem: &JTy,
    child_keys: &[(&str, String, &str, &Value)],
) -> Vec<Value> {
    let h = handle_of(f);
    let mut out = Vec::with_capacity(pl.len() + cl.len());
    for pi in pl {
        let key = item_key(pi, elem);
        match child_keys
            .iter()
            .find(|(hh, k, _, _)| *hh == h && *k == key)
        {
            Some((_, _, list, ci)) if *list == f.name => match elem {
                JTy::Struct(es) => {
                    if f.name == "httpHeaders" && ci.get("value").is_none_or(Value::is_null) {
                        continue;
                    }
                    let empty = Map::new();
                    out.push(Value::Object(merge_struct(
                        pi.as_object().unwrap_or(&empty),
                        ci.as_object().unwrap_or(&empty),
                        es,
                    )));
                }
                _ => out.push(normalize(ci, elem)),
            },
            // The child has this key in a sibling list; that list's pass takes it.
            Some(_) => {}
            None => out.push(normalize(pi, elem)),
        }
    }
    let parent_keys: Vec<String> = pl.iter().map(|i| item_key(i, elem)).collect();
    for ci in cl {
        if !parent_keys.contains(&item_key(ci, elem)) {
            out.push(normalize(ci, elem));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_fields_prefer_child() {
        let p = json!({"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/a", "mode": 420, "overwrite": true}]}});
        let c = json!({"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/a", "mode": 384}]}});
        assert_eq!(
            merge(&p, &c),
            json!({"ignition": {"version": "3.3.0"}, "storage": {"files": [{"overwrite": true, "path": "/a", "mode": 384}]}})
        );
    }
}
