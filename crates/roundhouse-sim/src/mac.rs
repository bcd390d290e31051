//! The machine's network identity: its MAC address and the SMBIOS UUID iPXE reports.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// A MAC address that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets separated by ':' or '-'")]
pub struct MacError(String);

impl Mac {
    /// Parses `52:54:00:ab:cd:01`, `52-54-00-AB-CD-01` or `525400abcd01`.
    pub fn parse(s: &str) -> Result<Mac, MacError> {
        let err = || MacError(s.to_string());
        let hex: String = if s.contains([':', '-']) {
            let parts: Vec<&str> = s.split([':', '-']).collect();
            if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
                return Err(err());
            }
            parts.concat()
        } else {
            s.to_string()
        };
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
        }
        Ok(Mac(out))
    }

    /// Lower-case hex with `sep` between octets.
    pub fn with_sep(&self, sep: &str) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// iPXE's `${mac:hexhyp}`: `52-54-00-ab-cd-01`.
    pub fn hexhyp(&self) -> String {
        self.with_sep("-")
    }

    /// The SMBIOS UUID this simulated machine reports. Derived from the MAC so that a machine
    /// keeps its UUID across lab restarts, like real hardware does.
    pub fn derived_uuid(&self) -> String {
        let h = self.with_sep("");
        format!("5e1a0000-0000-4000-8000-{h}")
    }

    /// The n-th MAC of a generated fleet, in the locally administered range `52:54:00:…`
    /// that QEMU also uses.
    pub fn nth(n: u32) -> Mac {
        let b = n.to_be_bytes();
        Mac([0x52, 0x54, 0x00, b[1], b[2], b[3]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_sep(":"))
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl FromStr for Mac {
    type Err = MacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mac::parse(s)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Mac::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_spellings() {
        let a = Mac::parse("52:54:00:AB:cd:01").unwrap();
        assert_eq!(Mac::parse("52-54-00-ab-cd-01").unwrap(), a);
        assert_eq!(Mac::parse("525400abcd01").unwrap(), a);
        assert_eq!(a.to_string(), "52:54:00:ab:cd:01");
        assert_eq!(a.hexhyp(), "52-54-00-ab-cd-01");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0g",
            "5:54:00:ab:cd:012",
            "zz",
        ] {
            assert!(Mac::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nth_is_distinct() {
        assert_eq!(Mac::nth(1).to_string(), "52:54:00:00:00:01");
        assert_eq!(Mac::nth(1000).to_string(), "52:54:00:00:03:e8");
    }
}
