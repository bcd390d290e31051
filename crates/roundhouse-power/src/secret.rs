//! Passwords, read from where the cluster file points and never shown.

use roundhouse_config::Secret;

use crate::PowerError;

/// A password. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// A password given directly (tests, tools).
    pub fn new(text: impl Into<String>) -> Self {
        Password(text.into())
    }

    /// Reads the password from its environment variable or file. A file's one trailing
    /// newline is not part of the password (`echo secret > file` is how such files are made).
    pub fn resolve(secret: &Secret) -> Result<Self, PowerError> {
        match secret {
            Secret::Env(name) => match std::env::var(name) {
                Ok(v) => Ok(Password(v)),
                Err(std::env::VarError::NotPresent) => Err(PowerError::Secret(format!(
                    "the environment variable {name} (password_env) is not set"
                ))),
                Err(std::env::VarError::NotUnicode(_)) => Err(PowerError::Secret(format!(
                    "the environment variable {name} (password_env) is not valid UTF-8"
                ))),
            },
            Secret::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    PowerError::Secret(format!(
                        "reading the password file {} (password_file): {e}",
                        path.display()
                    ))
                })?;
                let text = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text);
                Ok(Password(text.to_string()))
            }
        }
    }

    /// The password's bytes, for key derivation and HTTP authentication only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_password_loses_one_newline_and_debug_hides_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let pw = Password::resolve(&Secret::File(p)).unwrap();
        assert_eq!(pw.expose(), "s3cret");
        assert!(!format!("{pw:?}").contains("s3cret"));
    }

    #[test]
    fn missing_variable_is_named() {
        let e = Password::resolve(&Secret::Env("ROUNDHOUSE_TEST_SURELY_UNSET_PW".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ROUNDHOUSE_TEST_SURELY_UNSET_PW"), "{e}");
    }
}
