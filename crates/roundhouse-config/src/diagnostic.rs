//! Diagnostics that point at the user's text, printed the way rustc and Butane users expect:
//!
//! ```text
//! error: unknown key `mack` in node "worker-1"
//!   --> cluster.hcl:12:5
//!    |
//! 12 |     mack = "52:54:00:00:00:01"
//!    |     ^^^^
//!    = help: did you mean `mac`?
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One message about one place in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// What is wrong, in one line.
    pub message: String,
    /// File the location refers to.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no position (e.g. an unreadable file).
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
    /// The full text of `line`, for the excerpt.
    pub source_line: String,
    /// How many characters to underline from `column` (at least 1).
    pub span_len: usize,
    /// A hint that would fix it ("did you mean `mac`?").
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at a byte offset of `source` (the full text of `file`).
    pub fn error_at(
        file: &Path,
        source: &str,
        offset: usize,
        len: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::at(Severity::Error, file, source, offset, len, message)
    }

    /// A diagnostic of any severity at a byte offset of `source`.
    pub fn at(
        severity: Severity,
        file: &Path,
        source: &str,
        offset: usize,
        len: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let offset = floor_char_boundary(source, offset.min(source.len()));
        let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[offset..]
            .find('\n')
            .map_or(source.len(), |i| offset + i);
        let line = source[..offset].matches('\n').count() + 1;
        let column = source[line_start..offset].chars().count() + 1;
        let source_line = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let end = floor_char_boundary(source, (offset + len).min(line_end));
        let span_len = source[offset..end].chars().count().max(1);
        Diagnostic {
            severity,
            message: message.into(),
            file: file.to_path_buf(),
            line,
            column,
            source_line,
            span_len,
            help: None,
        }
    }

    /// An error at a 1-based line and column of `source`.
    pub fn error_at_line_col(
        file: &Path,
        source: &str,
        line: usize,
        column: usize,
        len: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let offset = offset_of(source, line, column);
        Diagnostic::error_at(file, source, offset, len, message)
    }

    /// An error that concerns a whole file rather than a place in it.
    pub fn error_in_file(file: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            source_line: String::new(),
            span_len: 0,
            help: None,
        }
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

/// Byte offset of a 1-based line and column (in characters); clamps to the text.
pub fn offset_of(source: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for _ in 1..line.max(1) {
        match source[offset..].find('\n') {
            Some(i) => offset += i + 1,
            None => return source.len(),
        }
    }
    let rest = &source[offset..];
    let line_text = &rest[..rest.find('\n').unwrap_or(rest.len())];
    offset
        + line_text
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(line_text.len(), |(i, _)| i)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        writeln!(f, "{label}: {}", self.message)?;
        if self.line == 0 {
            write!(f, "  --> {}", self.file.display())?;
        } else {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            writeln!(
                f,
                "{pad}--> {}:{}:{}",
                self.file.display(),
                self.line,
                self.column
            )?;
            writeln!(f, "{pad} |")?;
            writeln!(f, "{} | {}", self.line, self.source_line)?;
            // Tabs in the excerpt keep their width so the caret lands under the text.
            let lead: String = self
                .source_line
                .chars()
                .take(self.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "{pad} | {lead}{}", "^".repeat(self.span_len.max(1)))?;
        }
        if let Some(help) = &self.help {
            let pad = " ".repeat(self.line.to_string().len());
            write!(f, "\n{pad} = help: {help}")?;
        }
        Ok(())
    }
}

/// One or more diagnostics, at least one of them an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest of `candidates` to `unknown`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(unknown: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(unknown, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(unknown.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbouring characters counts as one edit (optimal
/// string alignment), so `fiel` is one edit from `file`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_excerpt_with_caret() {
        let src = "cluster {\n  mack = \"x\"\n}\n";
        let d = Diagnostic::error_at(Path::new("c.hcl"), src, 12, 4, "unknown key `mack`")
            .with_help("did you mean `mac`?");
        assert_eq!((d.line, d.column), (2, 3));
        assert_eq!(
            d.to_string(),
            "error: unknown key `mack`\n --> c.hcl:2:3\n  |\n2 |   mack = \"x\"\n  |   ^^^^\n  = help: did you mean `mac`?"
        );
    }

    #[test]
    fn line_col_round_trip() {
        let src = "a\nbé c\nd";
        let off = offset_of(src, 2, 3);
        assert_eq!(&src[off..off + 1], " ");
        let d = Diagnostic::error_at(Path::new("f"), src, off, 1, "m");
        assert_eq!((d.line, d.column), (2, 3));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("mack", &["mac", "domain"]), Some("mac"));
        assert_eq!(did_you_mean("zzzz", &["mac", "domain"]), None);
        assert_eq!(did_you_mean("fiel", &["file", "join"]), Some("file"));
        assert_eq!(
            did_you_mean("install_disc", &["install_disk", "kernel_args"]),
            Some("install_disk")
        );
    }
}
