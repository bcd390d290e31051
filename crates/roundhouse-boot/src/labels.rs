//! Request labels: the query string read exactly the way matchbox reads it.
//!
//! matchbox calls Go's `url.ParseQuery` and keeps each key's first value. Go splits on `&` only,
//! skips any pair containing `;` or a bad `%` escape (and keeps the rest), turns `+` into a
//! space, and keeps key case. A key whose lower case is `mac` holds a hardware address: it is
//! normalised to lower-case colon form, or dropped when Go's `net.ParseMAC` would reject it.
//!
//! One deliberate difference: Go strings may hold any bytes, so `%ff` becomes a label Go can
//! never match against JSON selectors. We reject such a query outright (`400 Bad Request`) rather
//! than carry invalid UTF-8 into templates and logs.

use std::collections::BTreeMap;

use bootdata::Mac;

/// Labels taken from a request's query string, keyed by the query key with its case kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// Sorted by key, keys unique. A request carries a handful of labels: a sorted vector
    /// costs one allocation where a map costs a node per request.
    map: Vec<(String, String)>,
}

/// Why a query string cannot be turned into labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A key or value decodes to bytes that are not UTF-8.
    #[error("query parameter {key:?} is not valid UTF-8 once percent-decoded")]
    NotUtf8 {
        /// The raw (still encoded) key of the offending pair.
        key: String,
    },
}

impl Labels {
    /// Parses a raw query string (the part after `?`, without it).
    pub fn parse(raw_query: &str) -> Result<Labels, LabelError> {
        let mut map: Vec<(String, String)> = Vec::new();
        // Keys seen whose value was dropped (an invalid MAC): they still shadow later values.
        let mut dropped: Vec<String> = Vec::new();
        for pair in raw_query.split('&') {
            // Go 1.17+ refuses `;` as a separator: the whole pair is skipped.
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(key), Some(value)) = (unescape(raw_key), unescape(raw_value)) else {
                continue;
            };
            let not_utf8 = || LabelError::NotUtf8 {
                key: raw_key.to_string(),
            };
            let key = key.into_str().ok_or_else(not_utf8)?;
            let value = value.into_str().ok_or_else(not_utf8)?;
            // Only the first value of a key counts (Go's `Values.Get`), and for a MAC key a
            // later valid value must not replace a first invalid one.
            let slot = match map.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
                Ok(_) => continue,
                Err(slot) => slot,
            };
            if dropped.iter().any(|d| **d == *key) {
                continue;
            }
            if key.eq_ignore_ascii_case("mac") {
                match Mac::parse(&value) {
                    Ok(mac) => map.insert(slot, (key.into_owned(), canonical_mac(&mac))),
                    Err(_) => dropped.push(key.into_owned()),
                }
            } else {
                map.insert(slot, (key.into_owned(), value.into_owned()));
            }
        }
        Ok(Labels { map })
    }

    /// Builds labels from pairs as given, without any normalisation (for tests and callers that
    /// already hold clean labels).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Labels {
        // Later pairs replace earlier ones, as inserting into a map would.
        let map: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Labels {
            map: map.into_iter().collect(),
        }
    }

    /// The value of a label, by exact (case-sensitive) key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.map[i].1.as_str())
    }

    /// The MAC address the request identifies itself with: the `mac` label, or failing that
    /// any label whose key is `mac` in another case.
    pub fn mac(&self) -> Option<Mac> {
        self.get("mac")
            .or_else(|| {
                self.map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("mac"))
                    .map(|(_, v)| v.as_str())
            })
            .and_then(|v| Mac::parse(v).ok())
    }

    /// The labels as a map (for templates).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.map.iter().cloned().collect()
    }

    /// Iterates over the labels in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The labels as a JSON object of strings, as templates see `.request.query`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.map
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        )
    }
}

/// The first value of `key` in a raw query, decoded, without any label normalisation (for
/// API parameters, where an invalid MAC must be an error rather than silently dropped).
pub fn raw_value(raw_query: &str, key: &str) -> Option<String> {
    raw_query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (unescape(k)?.as_bytes() == key.as_bytes())
            .then(|| unescape(v).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .flatten()
    })
}

/// `mac` as its `Display` writes it (lower-case hex, colons), without the formatting machinery:
/// this runs for every request.
fn canonical_mac(mac: &Mac) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(mac.octets().len() * 3);
    for (i, b) in mac.octets().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A decoded query component: borrowed when it needed no decoding (the usual case), owned
/// bytes otherwise.
enum Decoded<'a> {
    Borrowed(&'a str),
    Owned(Vec<u8>),
}

impl<'a> Decoded<'a> {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Decoded::Borrowed(s) => s.as_bytes(),
            Decoded::Owned(b) => b,
        }
    }

    /// The text, or `None` when the decoded bytes are not UTF-8.
    fn into_str(self) -> Option<std::borrow::Cow<'a, str>> {
        match self {
            Decoded::Borrowed(s) => Some(std::borrow::Cow::Borrowed(s)),
            Decoded::Owned(b) => String::from_utf8(b).ok().map(std::borrow::Cow::Owned),
        }
    }
}

/// Go's `QueryUnescape`: `+` is a space, `%XX` a byte; a `%` without two hex digits after it
/// makes the whole component invalid.
fn unescape(s: &str) -> Option<Decoded<'_>> {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return Some(Decoded::Borrowed(s));
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(Decoded::Owned(out))
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(q: &str) -> Vec<(String, String)> {
        Labels::parse(q)
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = p
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    // matchbox http/parse_test.go TestLabelsFromRequest.
    #[test]
    fn matchbox_cases() {
        let mac = "52:da:00:89:d8:10";
        assert_eq!(labels(""), pairs(&[]));
        assert_eq!(labels("uuid=a1b2c3"), pairs(&[("uuid", "a1b2c3")]));
        assert_eq!(labels("mac=52:da:00:89:d8:10"), pairs(&[("mac", mac)]));
        assert_eq!(labels("mac=52-da-00-89-d8-10"), pairs(&[("mac", mac)]));
        assert_eq!(
            labels("uuid=a1b2c3&mac=52:da:00:89:d8:10"),
            pairs(&[("uuid", "a1b2c3"), ("mac", mac)])
        );
        assert_eq!(
            labels("UUID=a1b2c3&MAC=52:DA:00:89:d8:10"),
            pairs(&[("UUID", "a1b2c3"), ("MAC", mac)])
        );
        assert_eq!(labels("mac=x:x:x:x:x:x"), pairs(&[]));
    }

    #[test]
    fn go_query_rules() {
        // First value wins, even when it is an unparseable MAC.
        assert_eq!(labels("a=1&a=2"), pairs(&[("a", "1")]));
        assert_eq!(labels("mac=bad&mac=52:da:00:89:d8:10"), pairs(&[]));
        // Pairs with `;` or bad escapes are skipped, the others kept.
        assert_eq!(labels("a=1;b=2&c=3"), pairs(&[("c", "3")]));
        assert_eq!(labels("a=%zz&b=%4&c=%41"), pairs(&[("c", "A")]));
        // `+` is a space, `%2B` a plus; a key without `=` has an empty value.
        assert_eq!(
            labels("q=a+b%2Bc&flag&&=x"),
            pairs(&[("q", "a b+c"), ("flag", ""), ("", "x")])
        );
        // The value may itself contain `=`.
        assert_eq!(labels("k=a=b"), pairs(&[("k", "a=b")]));
        // Percent-encoded MAC forms normalise.
        assert_eq!(
            labels("mac=52%3ADA%3A00%3A89%3AD8%3A10"),
            pairs(&[("mac", "52:da:00:89:d8:10")])
        );
        assert_eq!(
            labels("mac=52da.0089.d810"),
            pairs(&[("mac", "52:da:00:89:d8:10")])
        );
    }

    #[test]
    fn non_utf8_is_an_error() {
        assert!(matches!(
            Labels::parse("a=%ff"),
            Err(LabelError::NotUtf8 { .. })
        ));
        assert!(matches!(
            Labels::parse("%c3%28=1"),
            Err(LabelError::NotUtf8 { .. })
        ));
        // Valid multi-byte UTF-8 is fine.
        assert_eq!(labels("n=%C3%A9"), pairs(&[("n", "é")]));
    }

    #[test]
    fn canonical_mac_is_display() {
        for m in [
            "52:54:00:89:D8:10",
            "0000.5e00.5301",
            "00:00:00:00:fe:80:00:00",
        ] {
            let mac = Mac::parse(m).unwrap();
            assert_eq!(canonical_mac(&mac), mac.to_string());
        }
    }

    #[test]
    fn mac_accessor() {
        let l = Labels::parse("MAC=52-54-00-00-00-01").unwrap();
        assert_eq!(l.mac().unwrap().to_string(), "52:54:00:00:00:01");
        assert!(Labels::parse("uuid=1").unwrap().mac().is_none());
    }

    proptest::proptest! {
        // Arbitrary input never panics, and every label value of a MAC key is canonical.
        #[test]
        fn never_panics(q in "\\PC{0,200}") {
            if let Ok(l) = Labels::parse(&q) {
                for (k, v) in l.iter() {
                    if k.eq_ignore_ascii_case("mac") {
                        proptest::prop_assert_eq!(Mac::parse(v).unwrap().to_string(), v);
                    }
                }
            }
        }
    }
}
