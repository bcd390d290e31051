//! `data:` URLs for the files roundhouse itself injects. Percent-encoded rather than base64 so
//! the rendered JSON stays readable in reviews and golden files.

/// Bytes written as they are: unreserved characters (RFC 3986) plus a few that are unambiguous
/// inside a data URL path; everything else, including '%', '#', '?', space and newline, is
/// escaped.
const VERBATIM: [bool; 256] = {
    let mut table = [false; 256];
    let extra = b"-._~/:=@!$'()*+,;";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    let mut b = 0;
    while b < 128 {
        if (b as u8).is_ascii_alphanumeric() {
            table[b] = true;
        }
        b += 1;
    }
    table
};

/// RFC 2397 `data:,<percent-encoded bytes>`.
pub fn encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // Built as bytes with a table lookup per byte: every node's host key and installer script
    // pass through here on every render.
    let mut out = Vec::with_capacity(6 + bytes.len() * 3 / 2);
    out.extend_from_slice(b"data:,");
    for &b in bytes {
        if VERBATIM[usize::from(b)] {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
    String::from_utf8(out).expect("percent-encoding writes ASCII only")
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
        // Every byte: exactly the verbatim set is kept.
        let all: Vec<u8> = (0..=255).collect();
        let encoded = encode(&all);
        let kept: String = encoded[6..]
            .split('%')
            .map(|p| p.get(2..).unwrap_or(p))
            .collect();
        assert_eq!(
            kept,
            "!$'()*+,-./0123456789:;=@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
        );
    }
}
