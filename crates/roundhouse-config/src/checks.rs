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
            let at = s.find(c).unwrap_or(0);
            let narrow = within_literal(r, span, s, &(at..at + c.len_utf8()));
            r.error(
                &narrow,
                format!("`{name}` contains {c:?}, which is not allowed in a URL: {s:?}"),
            );
            None
        }
        (Some(rest), None) if rest.is_empty() || rest.starts_with('/') => {
            r.error(span, format!("`{name}` has no host: {s:?}"));
            None
        }
        (Some(rest), None) => {
            let scheme_len = s.len() - rest.len();
            match authority_problem(rest) {
                None => Some(s.to_string()),
                Some((problem, at)) => {
                    let at = (at.start + scheme_len)..(at.end + scheme_len);
                    let narrow = within_literal(r, span, s, &at);
                    let d = r.error(&narrow, format!("`{name}` {problem}: {s:?}"));
                    if problem.starts_with("has port") {
                        d.help = Some(
                            "a port is a whole number from 1 to 65535, e.g. `http://10.0.0.2:8080`"
                                .into(),
                        );
                    }
                    None
                }
            }
        }
    }
}

/// What is wrong with the authority (`[user@]host[:port]`) at the start of `rest` (the URL
/// after `http://`), and the byte range of `rest` it concerns.
fn authority_problem(rest: &str) -> Option<(String, Range<usize>)> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let port_at = if host_port.starts_with('[') {
        match host_port.find(']') {
            None => {
                return Some((
                    "has an IPv6 address without its closing `]`".into(),
                    host_start..end,
                ));
            }
            Some(close) => match &host_port[close + 1..] {
                "" => None,
                p if p.starts_with(':') => Some(host_start + close + 2),
                _ => {
                    return Some((
                        "has text after its IPv6 address".into(),
                        host_start + close + 1..end,
                    ));
                }
            },
        }
    } else {
        host_port.rfind(':').map(|i| host_start + i + 1)
    };
    let host_end = port_at.map_or(end, |p| p - 1);
    if host_end == host_start {
        return Some(("has no host".into(), host_start..end));
    }
    let port_at = port_at?;
    let port = &authority[port_at..];
    let range = (port_at.saturating_sub(1))..end;
    if port.is_empty() {
        return Some(("has a `:` but no port".into(), range));
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Some((format!("has port {port:?}, which is not a number"), range));
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65_535).contains(&p) => None,
        _ => Some((
            format!("has port {port}, which is out of range (1 to 65535)"),
            range,
        )),
    }
}

/// The part `within` (a byte range of `value`) of a value's span, when the value is a quoted
/// literal written out in the file without escapes; else the whole span.
pub(crate) fn within_literal(
    r: &Reader<'_, '_>,
    span: &Range<usize>,
    value: &str,
    within: &Range<usize>,
) -> Range<usize> {
    let text = r.src().slice(span);
    if text.len() == value.len() + 2 && text.starts_with('"') && &text[1..text.len() - 1] == value {
        let start = span.start + 1 + within.start;
        start..start + (within.end - within.start).max(1)
    } else {
        span.clone()
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

/// What is wrong with a `state_url`, for a located diagnostic: the message, the part of the
/// URL it concerns (a byte range of the value), a hint, and whether that part is a password
/// (then the excerpt must not show it). `None`: a PostgreSQL URL roundhouse can use, as far
/// as can be told without connecting.
pub(crate) struct UrlProblem {
    pub message: String,
    pub at: Option<Range<usize>>,
    pub help: Option<String>,
    pub secret: bool,
}

const SECRET_HELP: &str = "secrets don't belong in the cluster file or a URL: put the password in a file \
    named by `state_password_file`, in PGPASSWORD, or in ~/.pgpass";

/// Checks a `postgres://user@host:port/db?sslmode=…&sslrootcert=…` URL (`state_url` or
/// `ROUNDHOUSE_STATE_URL`). Never repeats a password.
pub(crate) fn state_url_problem(s: &str, name: &str) -> Option<UrlProblem> {
    let problem = |message: String, at: Option<Range<usize>>, help: Option<&str>| UrlProblem {
        message,
        at,
        help: help.map(str::to_string),
        secret: false,
    };
    let Some(rest) = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
    else {
        let scheme = s.split_once("://").map(|(scheme, _)| scheme);
        return Some(problem(
            match scheme {
                Some(scheme) if !scheme.contains(['@', ':']) => {
                    format!("`{name}` must be a postgres:// URL, found scheme {scheme:?}")
                }
                _ => format!("`{name}` must be a postgres:// URL"),
            },
            None,
            Some(
                "the state store is PostgreSQL here, e.g. `state_url = \"postgres://roundhouse@db1:5432/roundhouse?sslmode=verify-full&sslrootcert=/etc/roundhouse/pg-ca.crt\"`; leave it out for the embedded store in asset_dir",
            ),
        ));
    };
    let base = s.len() - rest.len();
    if let Some(at) = s.find(|c: char| c.is_whitespace() || c.is_control()) {
        return Some(problem(
            format!("`{name}` contains a space or control character"),
            Some(at..at + 1),
            Some("percent-encode it (`%20`)"),
        ));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if let Some(userinfo_end) = authority.rfind('@')
        && let Some(colon) = authority[..userinfo_end].find(':')
    {
        return Some(UrlProblem {
            message: format!("`{name}` holds a password"),
            at: Some(base + colon + 1..base + userinfo_end),
            help: Some(SECRET_HELP.into()),
            secret: true,
        });
    }
    let query_start = rest.find('?').map(|i| base + i + 1);
    let mut sslmode = None;
    let mut rootcert = false;
    if let Some(q) = query_start {
        let query_end = s[q..].find('#').map_or(s.len(), |i| q + i);
        let mut at = q;
        for pair in s[q..query_end].split('&') {
            let range = at..at + pair.len();
            at += pair.len() + 1;
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "password" => {
                    return Some(UrlProblem {
                        message: format!("`{name}` holds a password"),
                        at: Some(range.start + key.len() + 1..range.end),
                        help: Some(SECRET_HELP.into()),
                        secret: true,
                    });
                }
                "sslmode" => {
                    if !["disable", "verify-ca", "verify-full", "require"].contains(&value) {
                        return Some(problem(
                            format!("`{name}`: sslmode={value} is not supported"),
                            Some(range),
                            Some(
                                "use sslmode=verify-full with sslrootcert=/path/ca.crt (the CA that signed the server's certificate), verify-ca, or disable; roundhouse never accepts a certificate it cannot check",
                            ),
                        ));
                    }
                    sslmode = Some((value, range));
                }
                "sslrootcert" => rootcert = !value.is_empty(),
                "host" | "port" | "user" | "dbname" | "connect_timeout" | "application_name" => {}
                "" => {}
                other => {
                    return Some(problem(
                        format!("`{name}`: unknown parameter {other:?}"),
                        Some(range),
                        Some(
                            "known: sslmode, sslrootcert, host, port, user, dbname, connect_timeout, application_name",
                        ),
                    ));
                }
            }
        }
    }
    if let Some((mode, range)) = sslmode
        && mode != "disable"
        && !rootcert
    {
        return Some(problem(
            format!("`{name}`: sslmode={mode} needs sslrootcert"),
            Some(range),
            Some("add `&sslrootcert=/path/ca.crt`, the CA that signed the server's certificate"),
        ));
    }
    if authority.rsplit('@').next().is_none_or(str::is_empty) && query_start.is_none() {
        return Some(problem(
            format!("`{name}` has no host"),
            None,
            Some("e.g. `postgres://roundhouse@db1:5432/roundhouse`"),
        ));
    }
    None
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
    fn url_authorities() {
        let ok = |s: &str| assert_eq!(authority_problem(s), None, "{s}");
        let bad = |s: &str, want: &str| {
            let (p, _) = authority_problem(s).unwrap_or_else(|| panic!("{s} accepted"));
            assert!(p.contains(want), "{s}: {p}");
        };
        ok("boot");
        ok("boot:8080/x");
        ok("10.0.0.2:65535");
        ok("[fd00::2]:8080/");
        ok("[fd00::2]");
        ok("user:pw@boot:1/");
        bad("boot:99999/", "out of range");
        bad("boot:0", "out of range");
        bad("boot:65536", "out of range");
        bad("boot:123456789012345678901234567890", "out of range");
        bad("boot:/", "no port");
        bad("boot:80a", "not a number");
        bad("boot:-1", "not a number");
        bad(":8080/", "no host");
        bad("[fd00::2", "closing");
        bad("[fd00::2]x", "after its IPv6");
        let (_, at) = authority_problem("boot:99999/x").unwrap();
        assert_eq!(&"boot:99999/x"[at], ":99999");
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
