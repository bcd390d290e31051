//! Go's `path.Clean` and Butane's local-file rules (`base/util/file.go`).

use std::path::{Path, PathBuf};

/// Butane's error texts for local files.
pub const ERR_NO_FILES_DIR: &str =
    "local file paths are relative to a files directory that must be specified with -d/--files-dir";
/// Path traversal out of `--files-dir`.
pub const ERR_FILES_DIR_ESCAPE: &str = "local file path traverses outside the files directory";

/// Go's `path.Clean` for slash-separated paths.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Go's `path.Join`.
pub fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => String::new(),
        (true, false) => clean(b),
        (false, true) => clean(a),
        (false, false) => clean(&format!("{a}/{b}")),
    }
}

fn abs(p: &str) -> String {
    if p.starts_with('/') {
        clean(p)
    } else {
        let cwd = std::env::current_dir()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "/".into());
        clean(&format!("{cwd}/{p}"))
    }
}

/// `EnsurePathWithinFilesDir`: `path` (already joined) must stay inside `files_dir`.
pub fn within_files_dir(path: &str, files_dir: &str) -> Result<(), String> {
    let base = abs(files_dir);
    let p = abs(path);
    let prefix = if base == "/" {
        "/".to_string()
    } else {
        format!("{base}/")
    };
    if p != base && !p.starts_with(&prefix) {
        return Err(ERR_FILES_DIR_ESCAPE.into());
    }
    Ok(())
}

/// Go's wording for an I/O error on `path` during `op` (`open`, `read`, `stat`, `lstat`, ...).
pub fn go_io_error(op: &str, path: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
        std::io::ErrorKind::NotADirectory => "not a directory".to_string(),
        _ => {
            let s = e.to_string();
            // Rust appends " (os error N)"; Go prints the bare strerror, lower-cased.
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    };
    format!("{op} {path}: {what}")
}

/// `filepath.Join(files_dir, local)` as a string.
pub fn local_path(files_dir: &Path, local: &str) -> String {
    join(&files_dir.to_string_lossy(), local)
}

/// `ReadLocalFile`: reads `local` under `files_dir`, with Butane's errors.
pub fn read_local(local: &str, files_dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let Some(dir) = files_dir.filter(|d| !d.as_os_str().is_empty()) else {
        return Err(ERR_NO_FILES_DIR.into());
    };
    let path = local_path(dir, local);
    within_files_dir(&path, &dir.to_string_lossy())?;
    let pb = PathBuf::from(&path);
    if pb.is_dir() {
        return Err(format!("read {path}: is a directory"));
    }
    std::fs::read(&pb).map_err(|e| go_io_error("open", &path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        for (i, o) in [
            ("/a/b/../c", "/a/c"),
            ("/a//b/", "/a/b"),
            ("a/../..", ".."),
            ("/..", "/"),
            ("", "."),
            ("./x", "x"),
        ] {
            assert_eq!(clean(i), o, "{i}");
        }
    }

    #[test]
    fn escapes_are_refused() {
        assert!(within_files_dir("/srv/files/../x", "/srv/files").is_err());
        assert!(within_files_dir("/srv/files/x", "/srv/files").is_ok());
        assert!(within_files_dir("/srv/filesx", "/srv/files").is_err());
    }
}
