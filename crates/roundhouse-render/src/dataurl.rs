//! `data:` URLs for the files roundhouse itself injects. Percent-encoded rather than base64 so
//! the rendered JSON stays readable in reviews and golden files.

/// RFC 2397 `data:,<percent-encoded bytes>`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(6 + bytes.len() * 3 / 2);
    out.push_str("data:,");
    for &b in bytes {
        // Unreserved characters (RFC 3986) plus a few that are unambiguous inside a data URL
        // path; everything else, including '%', '#', '?', space and newline, is escaped.
        if b.is_ascii_alphanumeric() || b"-._~/:=@!$'()*+,;".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(
                char::from_digit(u32::from(b >> 4), 16)
                    .unwrap()
                    .to_ascii_uppercase(),
            );
            out.push(
                char::from_digit(u32::from(b & 0xf), 16)
                    .unwrap()
                    .to_ascii_uppercase(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn escapes_what_must_be_escaped() {
        assert_eq!(encode(b""), "data:,");
        assert_eq!(encode(b"node-1\n"), "data:,node-1%0A");
        assert_eq!(encode(b"a b%#?&\"x\""), "data:,a%20b%25%23%3F%26%22x%22");
        assert_eq!(encode("é".as_bytes()), "data:,%C3%A9");
    }
}
