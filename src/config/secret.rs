//! Secrets: the [`Secret`] newtype (never printed), `${ENV}` expansion, and the warning for a
//! secret-holding config file that others can read.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::diagnostics::Diagnostic;

/// A password, token or key. `Debug` and `Display` print `<secret>`; only `expose` reveals it.
/// Copies share one allocation (`secrecy::SecretString`), zeroized when the last is dropped, so
/// a reload that replaces credentials leaves no old password in freed memory.
#[derive(Clone)]
pub struct Secret(Arc<secrecy::SecretString>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Arc::new(secrecy::SecretString::from(value.into())))
    }

    /// The secret itself, for the one place that sends it to an operator.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Expands `${NAME}` from the environment (`$$` is a literal `$`). The error names the variable.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed `${{` in `{}`", elide(text)))?;
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{name}}}` is not a valid environment variable name"));
            }
            let value = lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether a value is written as a reference (`${ENV}`) rather than the secret itself.
pub fn is_reference(raw: &str) -> bool {
    raw.contains("${")
}

/// The largest secret file read: tokens and keys are a few KB; `/dev/zero` or a log file
/// pointed at by mistake must not be read into memory.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Reads a `*_file` secret: the whole file, one trailing newline trimmed (editors add one).
/// Only a regular file (a FIFO would block the start or a reload forever) of at most
/// [`MAX_SECRET_FILE_BYTES`].
pub fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let text = crate::fsutil::read_regular_text(path, MAX_SECRET_FILE_BYTES, crate::fsutil::Symlinks::Follow)
        .map_err(|e| format!("cannot read secret file `{}`: {e}", path.display()))?;
    let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("secret file `{}` is empty", path.display()));
    }
    Ok(Secret::new(value))
}

/// Warns when a file holding a secret is readable by group or others.
pub fn warn_if_readable_by_others(path: &Path, what: &str, warnings: &mut Vec<Diagnostic>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o044 != 0 {
        warnings.push(Diagnostic::warning(
            &path.display().to_string(),
            None,
            "",
            format!(
                "{what} is readable by group or others (mode {:o}); run `chmod 600 {}`",
                mode & 0o777,
                path.display()
            ),
        ));
    }
}

/// A value shortened for messages, so a mistyped secret never lands whole in a log.
fn elide(text: &str) -> String {
    let head: String = text.chars().take(4).collect();
    if text.chars().count() > 4 {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PW").then(|| "s3cret".to_string())
    }

    #[test]
    fn expands_env_references() {
        assert_eq!(expand_env("${PW}", env), Ok("s3cret".into()));
        assert_eq!(expand_env("a-${PW}-b", env), Ok("a-s3cret-b".into()));
        assert_eq!(expand_env("cost $5 $$x", env), Ok("cost $5 $x".into()));
        assert_eq!(expand_env("${NOPE}", env), Err("environment variable `NOPE` is not set".into()));
        assert!(expand_env("${PW", env).is_err());
        assert!(expand_env("${P W}", env).is_err());
    }

    #[test]
    fn never_prints_the_secret() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
        assert_eq!(s.expose(), "hunter2");
    }
}
