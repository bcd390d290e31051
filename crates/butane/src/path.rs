//! Context paths like vcontext's: `$.systemd.units.0.contents`.

use std::fmt;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Elem {
    /// A struct field or mapping key.
    Field(String),
    /// A list index.
    Index(usize),
}

/// A path from the document root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Elem>);

impl Path {
    /// The root, `$`.
    pub fn root() -> Self {
        Path(Vec::new())
    }

    /// Appends a field.
    pub fn push_field(&mut self, f: &str) {
        self.0.push(Elem::Field(f.to_string()));
    }

    /// Appends an index.
    pub fn push_index(&mut self, i: usize) {
        self.0.push(Elem::Index(i));
    }

    /// Removes the last step.
    pub fn pop(&mut self) {
        self.0.pop();
    }

    /// A copy with `f` appended.
    pub fn field(&self, f: &str) -> Path {
        let mut p = self.clone();
        p.push_field(f);
        p
    }

    /// A copy with `i` appended.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.push_index(i);
        p
    }

    /// Parses `a.b.0.c` steps (without the leading `$`).
    pub fn from_steps(steps: &[&str]) -> Path {
        Path(
            steps
                .iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(i) => Elem::Index(i),
                    Err(_) => Elem::Field((*s).to_string()),
                })
                .collect(),
        )
    }

    /// Whether `self` begins with `prefix`.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.0.len() >= prefix.0.len() && self.0[..prefix.0.len()] == prefix.0[..]
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for e in &self.0 {
            match e {
                Elem::Field(s) => write!(f, ".{s}")?,
                Elem::Index(i) => write!(f, ".{i}")?,
            }
        }
        Ok(())
    }
}
