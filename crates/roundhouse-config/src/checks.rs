//! Checks of single values: URLs, SSH public keys, host names.

use std::ops::Range;

use base64::Engine as _;

use crate::schema::Reader;

pub(crate) fn check_http_url(
    s: &str,
    name: &str,
    span: &Range<usize>,
    r: &mut Reader<'_, '_>,
) -> Option<String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    let bad_char = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "'\"`\\<>{}|^".contains(*c));
    match (rest, bad_char) {
        (None, _) => {
            r.error(
                span,
                format!("`{name}` must be an http:// or https:// URL, found {s:?}"),
            );
            None
        }
        (Some(_), Some(c)) => {
            r.error(
                span,
                format!("`{name}` contains {c:?}, which is not allowed in a URL"),
            );
            None
        }
        (Some(rest), None) if rest.is_empty() || rest.starts_with('/') => {
            r.error(span, format!("`{name}` has no host: {s:?}"));
            None
        }
        _ => Some(s.to_string()),
    }
}

pub(crate) const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
];

/// Why `key` is not an OpenSSH public key line (`TYPE BASE64 [COMMENT]`), if it isn't.
pub(crate) fn pubkey_problem(key: &str) -> Option<String> {
    let key = key.trim();
    if key.contains('\n') {
        return Some("one key per list element: this one spans several lines".into());
    }
    let mut words = key.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return Some(
            "expected `TYPE BASE64 [COMMENT]`, like the contents of ~/.ssh/id_ed25519.pub".into(),
        );
    };
    if !KEY_TYPES.contains(&kind) {
        if kind.contains("PRIVATE") || kind.starts_with("-----") {
            return Some("this is a private key; use the public key (the .pub file)".into());
        }
        return Some(format!("unknown key type `{kind}`"));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return Some("the key data is not valid base64".into());
    };
    // The blob is a sequence of SSH strings (u32 length, then bytes), starting with its own
    // type name. Certificates carry fixed-size fields too, so only their type name is checked.
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        match rest.get(4..4 + len) {
            Some(field) => {
                fields.push(field);
                rest = &rest[4 + len..];
            }
            None => break,
        }
        if kind.contains("-cert-") {
            break;
        }
    }
    if fields.first() != Some(&kind.as_bytes()) {
        return Some(format!("the key data does not hold a `{kind}` key"));
    }
    let complete = if kind.contains("-cert-") {
        true
    } else if kind == "ssh-ed25519" {
        rest.is_empty() && fields.len() == 2 && fields[1].len() == 32
    } else {
        rest.is_empty() && fields.len() >= 2
    };
    if !complete {
        return Some(
            "the key data is truncated or damaged; copy the whole line of the .pub file".into(),
        );
    }
    None
}

/// Why `name` is not a lowercase RFC 1123 label, if it isn't.
pub(crate) fn hostname_label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 63 {
        return Some("it is longer than 63 characters");
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Some("it has uppercase letters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("only lowercase letters, digits and `-` are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("it starts or ends with `-`");
    }
    None
}

pub(crate) fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubkeys() {
        let good =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml op@x";
        assert_eq!(pubkey_problem(good), None);
        assert_eq!(pubkey_problem(&good.replace("op@x", "")), None);
        assert!(pubkey_problem("ssh-ed25519").is_some());
        assert!(
            pubkey_problem(
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST/X/2YKziaO3t8rbKsfdLARHKCbsKAl9kE5Ml"
            )
            .is_some()
        );
        assert!(pubkey_problem("ssh-ed25519 not*base64").is_some());
        // The type name alone, with the key bytes cut off.
        assert!(
            pubkey_problem("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEwEbST")
                .unwrap()
                .contains("truncated")
        );
        // Generated with ssh-keygen for this test.
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDZ7zp9oswLjUGSkJe2puQ+klEhJrAYYX3n1DyMPowEvezgztFrS5asACDCXSmqXyoZkeIKWlNradHMTGAbOyPNXZ/lEVCEX9jVq0h5a4jfjHgarT7CxkeYsV7J99NawVS766Y6C2/JiLZ6jkrVsSKbXlL1FzUelC95d+yw2hkpgw== a@b";
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMgN+FidoimNzD8jvaViGGVRzWVxZsMLxyTCk29qecQVEuAlwjUEbsySUmb7V+C2FZOxS0z4dNm9SESi5nCQVa8= e@b";
        assert_eq!(pubkey_problem(ecdsa), None);
        assert_eq!(pubkey_problem(rsa), None);
        assert!(
            pubkey_problem("-----BEGIN OPENSSH PRIVATE KEY----- abc")
                .unwrap()
                .contains("private")
        );
    }

    #[test]
    fn hostname_labels() {
        assert_eq!(hostname_label_problem("worker-1"), None);
        assert_eq!(hostname_label_problem("1a"), None);
        assert!(hostname_label_problem("Worker").is_some());
        assert!(hostname_label_problem("-a").is_some());
        assert!(hostname_label_problem("a_b").is_some());
        assert!(hostname_label_problem("a.b").is_some());
        assert!(hostname_label_problem(&"a".repeat(64)).is_some());
        assert_eq!(hostname_label_problem(&"a".repeat(63)), None);
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("node1.example.com"));
        assert!(is_dns_name("node1.example.com."));
        assert!(!is_dns_name("node_1.example.com"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name(""));
    }
}
