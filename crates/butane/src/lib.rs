//! Butane to Ignition translation (variant `flatcar`), behaving like CoreOS's Butane.
//!
//! Standalone: knows nothing of roundhouse.

use std::path::PathBuf;

/// Translation settings (the `butane` CLI's flags).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--files-dir`: root for `local:` file contents and `trees`. `None` forbids local files.
    pub files_dir: Option<PathBuf>,
    /// `--strict`: warnings fail the translation.
    pub strict: bool,
}
