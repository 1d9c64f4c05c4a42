//! Login tokens on disk, for drivers whose login needs a person once (`megafon`, `t2`): where
//! an account's file is (its `token_file:`, else `tokens/<account>.json` beside
//! `--storage.path`), reading it, and writing it atomically with mode 0600.
//!
//! The one file a driver touches after it is built, and only in two moments: when the
//! operator hands out a new long-lived token (a rotated refresh token must survive a
//! restart), and when the account waits for a person (so that a fresh `esim-exporter login`
//! is picked up). Contents are the driver's own serde type; errors never show them.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The token file of one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFile {
    path: PathBuf,
}

/// Why a token file could not be read or written. Never holds the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the token file {} is not a login token of this driver ({detail}); run `esim-exporter login` again", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("cannot write the token file {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// The directory of accounts' token files when they set no `token_file:`: `tokens/` beside the
/// `--storage.path` file.
pub fn dir_beside(storage_path: &Path) -> PathBuf {
    storage_path.parent().unwrap_or(Path::new("")).join("tokens")
}

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> TokenFile {
        TokenFile { path: path.into() }
    }

    /// The account's file: `configured` (its `token_file:`), else `<account>.json` in
    /// `token_dir`; `None` when neither is there.
    pub fn locate(account: &str, configured: Option<&Path>, token_dir: Option<&Path>) -> Option<TokenFile> {
        match (configured, token_dir) {
            (Some(path), _) => Some(TokenFile::new(path)),
            (None, Some(dir)) => Some(TokenFile::new(dir.join(format!("{}.json", file_name_of(account))))),
            (None, None) => None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored value; `None` when there is no file yet.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, TokenFileError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(TokenFileError::Read { path: self.path.clone(), source }),
        };
        let mut de = serde_json::Deserializer::from_slice(&text);
        serde_path_to_error::deserialize(&mut de).map(Some).map_err(|e| TokenFileError::Invalid {
            path: self.path.clone(),
            // The path of the field, never its value: the file holds secrets.
            detail: match e.path().to_string().as_str() {
                "." | "" => "not the expected JSON".to_string(),
                field => format!("unexpected `{field}`"),
            },
        })
    }

    /// Replaces the file with `value` through [`crate::fsutil::write_atomically`] (mode 0600, a
    /// crash leaves the old token or the new one, never half of either). Creates the
    /// directory (mode 0700) if needed.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), TokenFileError> {
        use std::os::unix::fs::DirBuilderExt;
        let fail = |source| TokenFileError::Write { path: self.path.clone(), source };
        let json = serde_json::to_vec_pretty(value).map_err(|e| fail(std::io::Error::other(e)))?;
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
        }
        crate::fsutil::write_atomically(&self.path, 0o600, |file| {
            file.write_all(&json)?;
            file.write_all(b"\n")
        })
        .map_err(fail)
    }
}

/// An account name as a file name: letters, digits, `.`, `-`, `_` kept, anything else `_`.
fn file_name_of(account: &str) -> String {
    let name: String = account
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    match name.trim_start_matches('.') {
        "" => "account".to_string(),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Stored {
        token: String,
        pin: Option<String>,
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("esim-token-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn saves_with_mode_0600_and_reads_back() {
        let dir = temp_dir("roundtrip");
        let file = TokenFile::new(dir.join("tokens/corp.json"));
        assert_eq!(file.load::<Stored>().unwrap(), None, "no file yet");
        let stored = Stored { token: "tok-1".into(), pin: Some("1234".into()) };
        file.save(&stored).unwrap();
        assert_eq!(file.load::<Stored>().unwrap(), Some(stored));
        assert_eq!(std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.join("tokens")).unwrap().permissions().mode() & 0o777, 0o700);
        // A second save replaces the file and leaves no temporary behind.
        file.save(&Stored { token: "tok-2".into(), pin: None }).unwrap();
        assert_eq!(file.load::<Stored>().unwrap().map(|s| s.token), Some("tok-2".into()));
        assert_eq!(std::fs::read_dir(dir.join("tokens")).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_of_another_shape_is_invalid_without_showing_its_contents() {
        let dir = temp_dir("invalid");
        std::fs::create_dir_all(&dir).unwrap();
        let file = TokenFile::new(dir.join("x.json"));
        std::fs::write(file.path(), r#"{"token": 12345678, "pin": null}"#).unwrap();
        let err = file.load::<Stored>().unwrap_err().to_string();
        assert!(err.contains("`token`") && !err.contains("12345678"), "{err}");
        std::fs::write(file.path(), "secret-looking garbage").unwrap();
        let err = file.load::<Stored>().unwrap_err().to_string();
        assert!(!err.contains("garbage"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn locates_the_configured_file_or_one_beside_the_storage_path() {
        let configured = Path::new("/etc/esim/mf.json");
        assert_eq!(TokenFile::locate("corp", Some(configured), None).unwrap().path(), configured);
        let dir = dir_beside(Path::new("/var/lib/esim/state.json"));
        assert_eq!(dir, Path::new("/var/lib/esim/tokens"));
        assert_eq!(dir_beside(Path::new("state.json")), Path::new("tokens"));
        let file = TokenFile::locate("corp/../mf", None, Some(&dir)).unwrap();
        assert_eq!(file.path(), Path::new("/var/lib/esim/tokens/corp_.._mf.json"));
        assert_eq!(
            TokenFile::locate("..", None, Some(&dir)).unwrap().path(),
            Path::new("/var/lib/esim/tokens/account.json")
        );
        assert_eq!(TokenFile::locate("corp", None, None), None);
    }
}
