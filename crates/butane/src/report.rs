//! Warnings and errors, printed the way Butane's CLI prints them.

use std::fmt;

use crate::yaml::Pos;

/// Severity of a report entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Does not stop translation (unless `strict`).
    Warning,
    /// Translation fails.
    Error,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Warning => "warning",
            Kind::Error => "error",
        })
    }
}

/// One warning or error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Severity.
    pub kind: Kind,
    /// Butane's / Ignition's message text.
    pub message: String,
    /// Where in the Butane document, e.g. `$.systemd.units.0.contents` (`$` = the document).
    pub path: String,
    /// 1-based line of the YAML node, when known.
    pub line: Option<usize>,
    /// 1-based column of the YAML node, when known.
    pub column: Option<usize>,
}

impl Entry {
    pub(crate) fn new(kind: Kind, message: String, path: String, pos: Option<Pos>) -> Entry {
        Entry {
            kind,
            message,
            path,
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
        }
    }
}

impl fmt::Display for Entry {
    /// vcontext's `Entry.String()`: `error at $.a.b, line 3 col 5: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has_path = !self.path.is_empty() && self.path != "$";
        write!(f, "{}", self.kind)?;
        match (self.line, self.column, has_path) {
            (Some(l), Some(c), true) => write!(f, " at {}, line {l} col {c}", self.path)?,
            (Some(l), Some(c), false) => write!(f, " at line {l} col {c}")?,
            (_, _, true) => write!(f, " at {}", self.path)?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// A list of entries, in the order Butane reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The entries.
    pub entries: Vec<Entry>,
}

impl Report {
    /// Whether any entry is an error.
    pub fn is_fatal(&self) -> bool {
        self.entries.iter().any(|e| e.kind == Kind::Error)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newer Butane CLI's default rendering (`internal/report`): each entry with the
    /// source lines around it and the offending token underlined; entries without a usable
    /// position fall back to the one-line form.
    pub fn format_pretty(&self, filename: &str, source: &str, colorize: bool) -> String {
        let lines: Vec<&str> = source.split('\n').collect();
        let mut out = String::new();
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&pretty_entry(e, filename, &lines, colorize));
        }
        out
    }
}

impl fmt::Display for Report {
    /// vcontext's `Report.String()`, which `butane --raw-errors` and Butane releases before the
    /// pretty printer write to stderr: one entry per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const BLUE: &str = "\x1b[1;34m";
const RESET: &str = "\x1b[0m";

fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

fn pretty_entry(e: &Entry, filename: &str, lines: &[&str], colorize: bool) -> String {
    let (Some(line), Some(col)) = (e.line, e.column) else {
        return format!("{e}\n");
    };
    // Go indexes the line by bytes; a column past the line's byte length falls back.
    if line < 1 || line > lines.len() || col < 1 || col > lines[line - 1].len() {
        return format!("{e}\n");
    }
    let mut buf = String::new();
    let kind_color = match e.kind {
        Kind::Error => RED,
        Kind::Warning => YELLOW,
    };
    let path = if !e.path.is_empty() && e.path != "$" {
        format!("[{}]", e.path)
    } else {
        String::new()
    };
    buf.push_str(&format!(
        "{}{}:\n",
        paint(&e.kind.to_string(), kind_color, colorize),
        path
    ));
    buf.push_str(&format!(
        "  {} {}:{}:{}\n",
        paint("-->", BLUE, colorize),
        filename,
        line,
        col
    ));
    let first = line.saturating_sub(2).max(1);
    let last = (line + 2).min(lines.len());
    let gutter = last.to_string().len();
    let blank = " ".repeat(gutter);
    buf.push_str(&format!(" {blank} |\n"));
    for n in first..=last {
        let text = lines[n - 1];
        buf.push_str(&format!(
            " {} | {}\n",
            paint(&format!("{n:>gutter$}"), BLUE, colorize),
            text
        ));
        if n == line {
            let start = col - 1;
            // Go slices bytes; stay on a char boundary so odd columns cannot panic.
            let start = (0..=start)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            let rest = &text[start..];
            let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
            buf.push_str(&format!(
                " {blank} | {}{} {}\n",
                " ".repeat(start),
                paint(&"^".repeat(len), BLUE, colorize),
                e.message
            ));
        }
    }
    buf.push_str(&format!(" {blank} |\n"));
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, path: &str, line: Option<usize>) -> Entry {
        Entry {
            kind,
            message: "msg".into(),
            path: path.into(),
            line,
            column: line.map(|_| 7),
        }
    }

    #[test]
    fn entry_strings_match_vcontext() {
        assert_eq!(
            entry(Kind::Error, "$.a.0", Some(3)).to_string(),
            "error at $.a.0, line 3 col 7: msg"
        );
        assert_eq!(
            entry(Kind::Warning, "$", Some(3)).to_string(),
            "warning at line 3 col 7: msg"
        );
        assert_eq!(
            entry(Kind::Warning, "$.a", None).to_string(),
            "warning at $.a: msg"
        );
        assert_eq!(entry(Kind::Error, "", None).to_string(), "error: msg");
    }

    #[test]
    fn pretty_underlines_token() {
        let r = Report {
            entries: vec![Entry {
                kind: Kind::Warning,
                message: "unused key foo".into(),
                path: "$.foo".into(),
                line: Some(2),
                column: Some(1),
            }],
        };
        let s = r.format_pretty("in.bu", "a: 1\nfoo: 2\n", false);
        assert_eq!(
            s,
            "warning[$.foo]:\n  --> in.bu:2:1\n   |\n 1 | a: 1\n 2 | foo: 2\n   | ^^^^ unused key foo\n 3 | \n   |\n"
        );
    }
}
