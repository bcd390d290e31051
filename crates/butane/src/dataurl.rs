//! Butane's `MakeDataURL` (base/util/url.go): of the percent-encoded, base64 and gzip+base64
//! forms, pick the shortest.
//!
//! Known difference: Go's `compress/gzip` at `BestCompression` and flate2 (miniz_oxide) at
//! level 9 write the same 10-byte header (mtime 0, XFL 2, OS 255) but different deflate
//! streams, so a gzip data URL is not byte-identical to Butane's and, when the gzip form and
//! another form are within a few bytes of each other, the choice between them can differ.
//! The decoded contents are the same.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::GzEncoder;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// RFC 2396 escaping as in `github.com/vincent-petithory/dataurl.Escape`.
pub fn escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len());
    for &b in data {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// gzip at best compression with Go's header fields (mtime 0, OS "unknown").
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Returns the data URL and the `compression` value to set: `Some("")` or `Some("gzip")` when
/// the config gave no compression, `None` when it did (the user compressed the contents
/// themselves, so they are never compressed again).
pub fn make_data_url(
    contents: &[u8],
    current_compression: Option<&str>,
    allow_compression: bool,
) -> (String, Option<String>) {
    let user_compressed = current_compression.is_some_and(|c| !c.is_empty());
    let mut compression = if user_compressed {
        None
    } else {
        Some(String::new())
    };
    let mut opaque = format!(",{}", escape(contents));
    let b64 = format!(";base64,{}", STANDARD.encode(contents));
    if b64.len() < opaque.len() {
        opaque = b64;
    }
    if !user_compressed && allow_compression {
        let gz = format!(";base64,{}", STANDARD.encode(gzip(contents)));
        // Leave room for the `"gzip"` compression value the gzip form needs.
        if gz.len() + "gzip".len() < opaque.len() {
            opaque = gz;
            compression = Some("gzip".into());
        }
    }
    (format!("data:{opaque}"), compression)
}

/// Decodes a `data:` URL's payload (for tests and checks): percent or base64 form.
pub fn decode(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    if meta.ends_with(";base64") {
        STANDARD.decode(data).ok()
    } else {
        let b = data.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_percent_encoded() {
        // Butane's own test (base/v0_5 translate_test.go): inline "xyzzy" -> "data:,xyzzy".
        assert_eq!(
            make_data_url(b"xyzzy", None, true),
            ("data:,xyzzy".to_string(), Some(String::new()))
        );
        assert_eq!(
            make_data_url(b"hello world\n", None, true).0,
            "data:,hello%20world%0A"
        );
    }

    #[test]
    fn binary_prefers_base64() {
        // Short binary: percent-encoding (13 chars) still beats base64 (16 chars).
        assert_eq!(
            make_data_url(&[0xff, 0xfe, 0xfd, 0x00], None, true).0,
            "data:,%FF%FE%FD%00"
        );
        // Butane's "random" test input (base/v0_5 translate_test.go) is mostly non-ASCII.
        let random = b"\xc0\x9cl\x01\x89i\xa5\xbfW\xe4\x1b\xf4J_\xb79P\xa3#\xa7";
        let (u, c) = make_data_url(random, None, true);
        assert_eq!(u, "data:;base64,wJxsAYlppb9X5Bv0Sl+3OVCjI6c=");
        assert_eq!(c.as_deref(), Some(""));
    }

    #[test]
    fn compressible_text_is_gzipped() {
        let text = "a line that repeats\n".repeat(50);
        let (u, c) = make_data_url(text.as_bytes(), None, true);
        assert_eq!(c.as_deref(), Some("gzip"));
        let gz = decode(&u).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, text.as_bytes());
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
    }

    #[test]
    fn user_compression_is_kept() {
        // Butane's test: zzz with a user-set compression stays percent-encoded.
        let zzz = "z".repeat(149);
        let (u, c) = make_data_url(zzz.as_bytes(), Some("invalid"), true);
        assert_eq!(c, None);
        assert_eq!(u, format!("data:,{zzz}"));
    }
}
