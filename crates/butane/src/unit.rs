//! Just enough of go-systemd's `unit` package: the unit-file lexer Ignition uses to validate
//! unit contents (same error texts) and systemd's path escaping for mount unit names.

/// One `Name=value` option and the section it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitOption {
    /// Section name (without brackets).
    pub section: String,
    /// Option name.
    pub name: String,
    /// Option value.
    pub value: String,
}

const LINE_MAX: usize = 2048;

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn read(&mut self) -> Option<char> {
        let rest = &self.s[self.i..];
        let first = *rest.first()?;
        let len = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        // Invalid UTF-8 reads as U+FFFD and consumes one byte, as Go's ReadRune does.
        match rest.get(..len).and_then(|b| std::str::from_utf8(b).ok()) {
            Some(c) => {
                self.i += len;
                c.chars().next()
            }
            None => {
                self.i += 1;
                Some('\u{fffd}')
            }
        }
    }

    /// Reads to the end of the line; returns the line without `\r?\n` and whether EOF ended it.
    fn read_line(&mut self) -> (&[u8], bool) {
        let start = self.i;
        match self.s[start..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.i = start + n + 1;
                let mut line = &self.s[start..start + n];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                (line, false)
            }
            None => {
                self.i = self.s.len();
                let mut line = &self.s[start..];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                (line, true)
            }
        }
    }

    fn too_long(&self) -> bool {
        let rest = &self.s[self.i..];
        rest.len() >= LINE_MAX && !rest[..LINE_MAX].iter().any(|&b| b == b'\r' || b == b'\n')
    }

    fn ignore_line(&mut self) {
        loop {
            let (line, eof) = self.read_line();
            let line = line.strip_suffix(b" ").unwrap_or(line);
            if !line.ends_with(b"\\") || eof {
                break;
            }
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    &b[s..e.max(s)]
}

enum Step {
    NextSection,
    SectionName,
    SectionOrOption(String),
}

/// Parses unit contents like go-systemd's `Deserialize`; the error text is go-systemd's.
pub fn deserialize(contents: &str) -> Result<Vec<UnitOption>, String> {
    let mut lx = Lexer {
        s: contents.as_bytes(),
        i: 0,
    };
    let mut opts = Vec::new();
    let mut step = Step::NextSection;
    loop {
        if lx.too_long() {
            return Err(format!("line too long (max {LINE_MAX} bytes)"));
        }
        step = match step {
            Step::NextSection => match lx.read() {
                None => return Ok(opts),
                Some('[') => Step::SectionName,
                Some('#' | ';') => {
                    lx.ignore_line();
                    Step::NextSection
                }
                Some(_) => Step::NextSection,
            },
            Step::SectionName => {
                let rest = &lx.s[lx.i..];
                let Some(n) = rest.iter().position(|&b| b == b']') else {
                    return Err("unable to find end of section".into());
                };
                let section = String::from_utf8_lossy(&rest[..n]).into_owned();
                lx.i += n + 1;
                let (garbage, _) = lx.read_line();
                let garbage = trim(garbage);
                if !garbage.is_empty() {
                    // go-systemd prints its (never set) current section here, hence the gap.
                    return Err(format!(
                        "found garbage after section name : {:?}",
                        String::from_utf8_lossy(garbage)
                    ));
                }
                Step::SectionOrOption(section)
            }
            Step::SectionOrOption(section) => match lx.read() {
                None => return Ok(opts),
                Some(c) if c.is_whitespace() => Step::SectionOrOption(section),
                Some('[') => Step::SectionName,
                Some('#' | ';') => {
                    lx.ignore_line();
                    Step::SectionOrOption(section)
                }
                Some(c) => {
                    let mut name = String::new();
                    name.push(c);
                    let mut c = c;
                    loop {
                        if c == '\n' || c == '\r' {
                            return Err(
                                "unexpected newline encountered while parsing option name".into()
                            );
                        }
                        match lx.read() {
                            None => return Err("EOF".into()),
                            Some('=') => break,
                            Some(n) => {
                                c = n;
                                name.push(n);
                            }
                        }
                    }
                    let name = name.trim().to_string();
                    let mut partial: Vec<u8> = Vec::new();
                    loop {
                        let (line, eof) = lx.read_line();
                        let line = line.to_vec();
                        if !trim(&line).is_empty() {
                            partial.extend_from_slice(&line);
                            if line.ends_with(b"\\") {
                                if !eof {
                                    partial.push(b'\n');
                                }
                                continue;
                            }
                        }
                        break;
                    }
                    let val = String::from_utf8_lossy(&partial).into_owned();
                    let val = if val.ends_with('\n') {
                        format!("{}\n", val.trim())
                    } else {
                        val.trim().to_string()
                    };
                    opts.push(UnitOption {
                        section: section.clone(),
                        name,
                        value: val,
                    });
                    Step::SectionOrOption(section)
                }
            },
        };
    }
}

/// systemd path escaping (`systemd-escape --path`), as go-systemd's `UnitNamePathEscape`.
pub fn path_escape(path: &str) -> String {
    const ALLOWED: &[u8] = b":_.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut e = String::new();
    let mut in_slashes = false;
    let mut start = true;
    for &c in path.as_bytes() {
        if c == b'/' {
            in_slashes = true;
            continue;
        } else if in_slashes {
            in_slashes = false;
            if !start {
                e.push('-');
            }
        }
        if (start && c == b'.') || !ALLOWED.contains(&c) {
            e.push_str(&format!("\\x{c:x}"));
        } else {
            e.push(c as char);
        }
        start = false;
    }
    if e.is_empty() {
        e.push('-');
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_and_options() {
        let o = deserialize("[Unit]\nDescription=x\n# c\n[Install]\nWantedBy=multi-user.target\n")
            .unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].section, "Install");
        assert_eq!(o[1].value, "multi-user.target");
    }

    #[test]
    fn errors_match_go_systemd() {
        assert_eq!(
            deserialize("[Unit").unwrap_err(),
            "unable to find end of section"
        );
        assert_eq!(
            deserialize("[Unit]\nfoo\nbar=1").unwrap_err(),
            "unexpected newline encountered while parsing option name"
        );
        assert_eq!(deserialize("[Unit]\nfoo").unwrap_err(), "EOF");
        assert_eq!(
            deserialize("[Unit] x\n").unwrap_err(),
            "found garbage after section name : \"x\""
        );
    }

    #[test]
    fn escapes_paths_like_systemd() {
        assert_eq!(path_escape("/var/lib/data"), "var-lib-data");
        assert_eq!(
            path_escape("/dev/disk/by-label/x"),
            "dev-disk-by\\x2dlabel-x"
        );
        assert_eq!(path_escape("/"), "-");
        assert_eq!(path_escape("/srv/.hidden"), "srv-.hidden");
        assert_eq!(path_escape(".x"), "\\x2ex");
    }
}
