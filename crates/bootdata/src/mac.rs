//! Hardware addresses with the exact acceptance rules of Go's `net.ParseMAC`, which matchbox uses
//! for the `mac` label and selector. Anything Go accepts we accept, anything it rejects we reject,
//! so a data directory behaves the same under both servers.

use std::fmt;
use std::str::FromStr;

/// A hardware address of 6 (EUI-48), 8 (EUI-64) or 20 (IP over InfiniBand) octets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac {
    len: u8,
    octets: [u8; 20],
}

/// Why a string is not a hardware address. The message mirrors Go's `address X: invalid MAC
/// address` so users who know matchbox recognise it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {input}: invalid MAC address")]
pub struct MacParseError {
    /// The rejected text.
    pub input: String,
}

impl Mac {
    /// Parses any of Go's accepted forms: `00:00:5e:00:53:01`, `00-00-5e-00-53-01`,
    /// `0000.5e00.5301`, and their 8- and 20-octet versions. Hex digits may be of either case.
    pub fn parse(s: &str) -> Result<Mac, MacParseError> {
        parse_octets(s.as_bytes()).ok_or_else(|| MacParseError {
            input: s.to_string(),
        })
    }

    /// The octets of the address.
    pub fn octets(&self) -> &[u8] {
        &self.octets[..self.len as usize]
    }

    /// The address as iPXE's `${mac:hexhyp}` writes it: `52-54-00-89-d8-10`.
    pub fn hexhyp(&self) -> String {
        self.join('-')
    }

    fn join(&self, sep: char) -> String {
        let mut out = String::with_capacity(self.octets().len() * 3);
        for (i, b) in self.octets().iter().enumerate() {
            if i > 0 {
                out.push(sep);
            }
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
        out
    }
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).expect("nibble is below 16")
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Two hex digits at the start of `s`, followed by `sep` unless `s` ends after them (Go's
/// `xtoi2`).
fn pair(s: &[u8], sep: Option<u8>) -> Option<u8> {
    if s.len() < 2 {
        return None;
    }
    if s.len() > 2 && Some(s[2]) != sep {
        return None;
    }
    Some(hex_value(s[0])? << 4 | hex_value(s[1])?)
}

fn valid_len(n: usize) -> bool {
    matches!(n, 6 | 8 | 20)
}

fn parse_octets(s: &[u8]) -> Option<Mac> {
    if s.len() < 14 {
        return None;
    }
    let mut mac = Mac {
        len: 0,
        octets: [0; 20],
    };
    if s[2] == b':' || s[2] == b'-' {
        if !(s.len() + 1).is_multiple_of(3) {
            return None;
        }
        let n = (s.len() + 1) / 3;
        if !valid_len(n) {
            return None;
        }
        for i in 0..n {
            mac.octets[i] = pair(&s[i * 3..], Some(s[2]))?;
        }
        mac.len = n as u8;
    } else if s[4] == b'.' {
        if !(s.len() + 1).is_multiple_of(5) {
            return None;
        }
        let n = 2 * (s.len() + 1) / 5;
        if !valid_len(n) {
            return None;
        }
        for i in (0..n).step_by(2) {
            let x = i / 2 * 5;
            mac.octets[i] = pair(&s[x..x + 2], None)?;
            mac.octets[i + 1] = pair(&s[x + 2..], Some(s[4]))?;
        }
        mac.len = n as u8;
    } else {
        return None;
    }
    Some(mac)
}

impl fmt::Display for Mac {
    /// Lower-case hex joined by colons, as Go's `HardwareAddr.String` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(':'))
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl FromStr for Mac {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mac::parse(s)
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Mac::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The table of Go's net/mac_test.go, rewritten: input, expected output or None for an error.
    #[test]
    fn go_parse_mac_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("00:00:5e:00:53:01", Some("00:00:5e:00:53:01")),
            ("00-00-5e-00-53-01", Some("00:00:5e:00:53:01")),
            ("0000.5e00.5301", Some("00:00:5e:00:53:01")),
            ("02:00:5e:10:00:00:00:01", Some("02:00:5e:10:00:00:00:01")),
            (
                "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
                Some("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"),
            ),
            ("02-00-5e-10-00-00-00-01", Some("02:00:5e:10:00:00:00:01")),
            ("0200.5e10.0000.0001", Some("02:00:5e:10:00:00:00:01")),
            ("ab:cd:ef:AB:CD:EF", Some("ab:cd:ef:ab:cd:ef")),
            ("52:DA:00:89:D8:10", Some("52:da:00:89:d8:10")),
            ("01.02.03.04.05.06", None),
            ("01:02:03:04:05:06:", None),
            ("x1:02:03:04:05:06", None),
            ("01002:03:04:05:06", None),
            ("01:02003:04:05:06", None),
            ("01:02:03004:05:06", None),
            ("01:02:03:04005:06", None),
            ("01:02:03:04:05006", None),
            ("01-02:03:04:05:06", None),
            ("01:02-03-04-05-06", None),
            ("0123:4567:89AF", None),
            ("0123-4567-89AF", None),
            ("x:x:x:x:x:x", None),
            ("", None),
            ("01:02:03:04:05", None),
            ("0:1:2:3:4:5", None),
        ];
        for (input, want) in cases {
            let got = Mac::parse(input).ok().map(|m| m.to_string());
            assert_eq!(got.as_deref(), *want, "parsing {input:?}");
        }
    }

    #[test]
    fn hexhyp_form() {
        let mac = Mac::parse("52:54:00:AB:cd:01").unwrap();
        assert_eq!(mac.hexhyp(), "52-54-00-ab-cd-01");
        assert_eq!(Mac::parse(&mac.hexhyp()).unwrap(), mac);
    }

    fn colon_form(octets: &[u8], sep: char, upper: bool) -> String {
        let s: Vec<String> = octets.iter().map(|b| format!("{b:02x}")).collect();
        let s = s.join(&sep.to_string());
        if upper { s.to_uppercase() } else { s }
    }

    proptest! {
        // Every address prints to a form that parses back to itself, whatever separator or case
        // it was written with.
        #[test]
        fn roundtrip(octets in prop::sample::select(vec![6usize, 8, 20])
                        .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n)),
                     sep in prop::sample::select(vec![':', '-']),
                     upper in any::<bool>()) {
            let text = colon_form(&octets, sep, upper);
            let mac = Mac::parse(&text).unwrap();
            prop_assert_eq!(mac.octets(), &octets[..]);
            prop_assert_eq!(Mac::parse(&mac.to_string()).unwrap(), mac);
            let dotted: Vec<String> = octets.chunks(2).map(|c| format!("{:02x}{:02x}", c[0], c[1])).collect();
            prop_assert_eq!(Mac::parse(&dotted.join(".")).unwrap(), mac);
        }

        // Arbitrary text never panics, and whatever parses prints in canonical form.
        #[test]
        fn arbitrary_text(s in "\\PC{0,70}") {
            if let Ok(mac) = Mac::parse(&s) {
                let printed = mac.to_string();
                prop_assert!(printed.chars().all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
                prop_assert_eq!(Mac::parse(&printed).unwrap(), mac);
            }
        }

        // Near-miss inputs built from a valid address with one byte changed are judged the same
        // way as a reference implementation written independently from Go's rules.
        #[test]
        fn matches_reference(s in "[0-9a-fA-F:.\\-x]{12,24}") {
            prop_assert_eq!(Mac::parse(&s).ok().map(|m| m.octets().to_vec()), reference(&s));
        }
    }

    /// A second, deliberately different reading of Go's grammar: split on the separator and
    /// check group sizes.
    fn reference(s: &str) -> Option<Vec<u8>> {
        let hex2 = |g: &str| -> Option<Vec<u8>> {
            if !g.len().is_multiple_of(2) || !g.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            (0..g.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&g[i..i + 2], 16).ok())
                .collect()
        };
        let b = s.as_bytes();
        if b.len() < 14 {
            return None;
        }
        let (sep, width) = if b[2] == b':' || b[2] == b'-' {
            (b[2] as char, 2)
        } else if b[4] == b'.' {
            ('.', 4)
        } else {
            return None;
        };
        let groups: Vec<&str> = s.split(sep).collect();
        if groups.iter().any(|g| g.len() != width) {
            return None;
        }
        let out: Vec<u8> = groups
            .iter()
            .map(|g| hex2(g))
            .collect::<Option<Vec<_>>>()?
            .concat();
        matches!(out.len(), 6 | 8 | 20).then_some(out)
    }
}
