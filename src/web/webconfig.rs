//! `--web.config.file`: the Prometheus exporter-toolkit web configuration, same keys and
//! meaning (TLS, client certificates, basic auth, response headers). This module parses and
//! validates the file into a [`WebConfig`]; `tls.rs` builds the rustls config from it, `auth.rs`
//! checks credentials, and [`WebConfigSource`] re-reads the file when it changes, as
//! exporter-toolkit does on every connection and request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;

use super::auth::Users;
use super::tls::{self, RawTls, TlsSettings};

/// The largest web config file read: it holds a few hashes and paths.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a web config cannot be used; every message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: cannot read: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The file as exporter-toolkit defines it. Unknown keys are errors (a typo in
/// `basic_auth_users` must not silently leave the exporter open).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebConfig {
    #[serde(default)]
    pub tls_server_config: Option<RawTls>,
    #[serde(default)]
    pub http_server_config: Option<RawHttp>,
    #[serde(default)]
    pub basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Go's HTTP/2 switch; this server speaks HTTP/1.1 (what Prometheus scrapes with), so the
    /// key is accepted for compatibility and has no effect.
    pub http2: Option<bool>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// A validated web config, ready to serve with.
#[derive(Debug)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Empty: no authentication.
    pub users: Arc<Users>,
    /// Extra response headers (`http_server_config.headers`).
    pub headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
}

/// The headers exporter-toolkit lets a config set, and the values it allows for some.
const ALLOWED_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

impl WebConfig {
    /// Reads and validates the file at `path`; relative paths inside it are relative to its
    /// directory, as in exporter-toolkit.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = read_capped(path)?;
        let invalid = |message: String| WebConfigError::Invalid { path: path.display().to_string(), message };
        let raw = parse(&text).map_err(invalid)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::from_raw(raw, dir).map_err(invalid)
    }

    fn from_raw(raw: RawWebConfig, dir: &Path) -> Result<WebConfig, String> {
        let tls = match raw.tls_server_config {
            Some(t) if !tls_is_empty(&t) => Some(tls::settings(t, dir)?),
            _ => None,
        };
        let users = Arc::new(Users::new(raw.basic_auth_users.unwrap_or_default())?);
        let headers = headers(raw.http_server_config.and_then(|h| h.headers).unwrap_or_default())?;
        Ok(WebConfig { tls, users, headers })
    }
}

/// exporter-toolkit serves plain HTTP when `tls_server_config` names no certificate at all.
fn tls_is_empty(t: &RawTls) -> bool {
    t.cert_file.is_none() && t.key_file.is_none() && t.cert.is_none() && t.key.is_none()
}

/// Parses the YAML; an empty file is an empty config (plain HTTP, no auth), as in Go.
pub fn parse(text: &str) -> Result<RawWebConfig, String> {
    if text.trim().is_empty() {
        return Ok(RawWebConfig::default());
    }
    serde_saphyr::from_str::<RawWebConfig>(text).map_err(|e| e.to_string())
}

fn read_capped(path: &Path) -> Result<String, WebConfigError> {
    let read_error = |error| WebConfigError::Read { path: path.display().to_string(), error };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    // A FIFO or device would block or never end: only regular files of a sane size.
    if !meta.is_file() {
        return Err(read_error(std::io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(read_error(std::io::Error::other(format!("larger than {MAX_FILE_BYTES} bytes"))));
    }
    std::fs::read_to_string(path).map_err(read_error)
}

fn headers(raw: BTreeMap<String, String>) -> Result<Vec<(axum::http::HeaderName, axum::http::HeaderValue)>, String> {
    let mut out = Vec::new();
    for (name, value) in raw {
        let Some(canonical) = ALLOWED_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&name)) else {
            return Err(format!(
                "http_server_config.headers: HTTP header `{name}` can not be configured (allowed: {})",
                ALLOWED_HEADERS.join(", ")
            ));
        };
        let allowed_values: &[&str] = match *canonical {
            "X-Content-Type-Options" => &["nosniff"],
            "X-Frame-Options" => &["deny", "sameorigin"],
            _ => &[],
        };
        if !allowed_values.is_empty() && !allowed_values.iter().any(|v| v.eq_ignore_ascii_case(&value)) {
            return Err(format!(
                "http_server_config.headers.{canonical}: invalid value `{value}` (allowed: {})",
                allowed_values.join(", ")
            ));
        }
        let header_name = axum::http::HeaderName::from_bytes(canonical.as_bytes())
            .map_err(|_| format!("http_server_config.headers: `{canonical}` is not a header name"))?;
        let header_value = axum::http::HeaderValue::from_str(&value)
            .map_err(|_| format!("http_server_config.headers.{canonical}: value is not a valid header value"))?;
        out.push((header_name, header_value));
    }
    Ok(out)
}

/// What a file looked like when it was last read: a change of any of these re-reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp { modified: meta.modified().ok(), len: meta.len(), inode })
}

/// The stamps of the web config and of every file it names (certificate, key, client CA): a
/// renewed certificate is picked up like an edited config.
fn stamps(path: &Path, config: &WebConfig) -> Vec<Option<Stamp>> {
    let files = config.tls.iter().flat_map(|t| t.files.iter());
    std::iter::once(stamp(path)).chain(files.map(|f| stamp(f))).collect()
}

/// The web config file, re-read when it or a file it names changes (checked on every
/// connection and request, a few `stat`s, as exporter-toolkit reads it per request). A changed
/// file that is invalid is logged and the last good config stays: the server never falls open.
#[derive(Debug)]
pub struct WebConfigSource {
    path: PathBuf,
    state: Mutex<(Vec<Option<Stamp>>, Arc<WebConfig>)>,
}

impl WebConfigSource {
    /// Loads the file once; an error here stops the start-up.
    pub fn open(path: &Path) -> Result<WebConfigSource, WebConfigError> {
        let config = WebConfig::load(path)?;
        let seen = stamps(path, &config);
        Ok(WebConfigSource { path: path.to_path_buf(), state: Mutex::new((seen, Arc::new(config))) })
    }

    /// The current config, re-read first if a file changed since the last read.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamps(&self.path, &state.1);
        if now == state.0 {
            return state.1.clone();
        }
        state.0 = now;
        match WebConfig::load(&self.path) {
            Ok(config) if config.tls.is_some() != state.1.tls.is_some() => {
                tracing::error!(
                    file = %self.path.display(),
                    "web config changed between plain HTTP and TLS: restart to switch; keeping the previous config"
                );
            }
            Ok(config) => {
                tracing::info!(file = %self.path.display(), "web config reloaded");
                // Stamps of the files the new config names (it may name others).
                state.0 = stamps(&self.path, &config);
                state.1 = Arc::new(config);
            }
            Err(e) => tracing::error!(error = %e, "web config invalid; keeping the previous config"),
        }
        state.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<WebConfig, String> {
        WebConfig::from_raw(parse(text)?, Path::new("."))
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = load_text("").unwrap();
        assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty());
        let c = load_text("tls_server_config: {}\n").unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load_text("basic_auth_user:\n  a: b\n").unwrap_err();
        assert!(e.contains("basic_auth_user"), "{e}");
        let e = load_text("tls_server_config:\n  cert_fil: x\n").unwrap_err();
        assert!(e.contains("cert_fil"), "{e}");
        let e = load_text("http_server_config:\n  header: {}\n").unwrap_err();
        assert!(e.contains("header"), "{e}");
    }

    #[test]
    fn headers_follow_the_toolkit_allow_list() {
        let c = load_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n").unwrap();
        assert_eq!(c.headers.len(), 2);
        let e = load_text("http_server_config:\n  headers:\n    Server: nope\n").unwrap_err();
        assert!(e.contains("`Server` can not be configured"), "{e}");
        let e = load_text("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n").unwrap_err();
        assert!(e.contains("X-Content-Type-Options") && e.contains("nosniff"), "{e}");
    }

    #[test]
    fn a_key_file_without_a_cert_is_named() {
        let e = load_text("tls_server_config:\n  key_file: k.pem\n").unwrap_err();
        assert!(e.contains("cert_file"), "{e}");
    }

    #[test]
    fn the_file_is_re_read_on_change_and_a_broken_edit_keeps_the_old_config() {
        let dir = std::env::temp_dir().join(format!("esim-webconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("web.yml");
        std::fs::write(&path, "").unwrap();
        let source = WebConfigSource::open(&path).unwrap();
        assert!(source.current().users.is_empty());
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&path, format!("basic_auth_users:\n  prom: '{hash}'\n")).unwrap();
        assert!(!source.current().users.is_empty(), "edit picked up");
        std::fs::write(&path, "basic_auth_users: [broken\n").unwrap();
        assert!(!source.current().users.is_empty(), "a broken edit keeps the old users");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The shipped example parses, names only toolkit keys and its user checks out.
    #[tokio::test]
    async fn the_example_web_config_is_valid() {
        let text = include_str!("../../config/web-config.example.yml");
        let raw = parse(text).unwrap();
        let users = Arc::new(Users::new(raw.basic_auth_users.unwrap()).unwrap());
        assert!(users.verify("prometheus", "change-me").await);
        assert!(headers(raw.http_server_config.unwrap().headers.unwrap()).is_ok());
        let tls = raw.tls_server_config.unwrap();
        assert_eq!(tls.client_auth_type.as_deref(), Some("RequireAndVerifyClientCert"));
    }

    #[test]
    fn a_fifo_is_refused_not_read() {
        let e = WebConfig::load(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
