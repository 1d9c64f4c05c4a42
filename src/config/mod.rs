//! Configuration: `load(path)` reads the YAML file, expands secrets, and resolves it into the
//! typed [`Config`] below. Nothing downstream re-validates what this module accepted.
//!
//! Stages: `raw` (YAML → position-aware tree, no IO) → `resolve` (defaults, inheritance,
//! driver options through the registry, names and labels) → [`Config`]. Every problem becomes a
//! [`Diagnostic`] with file, line, column and key path; all of them are reported at once.

pub mod alert;
pub mod diagnostics;
pub mod discover;
pub mod fields;
pub mod labels;
pub mod materialize;
pub mod raw;
mod resolve;
pub mod secret;
pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use alert::AlertThresholds;
pub use diagnostics::{Diagnostic, Severity};
pub use labels::Labels;
pub use units::{ByteSize, Rate};

use raw::Pos;
use resolve::Items;

// The resolved account and line are the driver contract's types (drivers read them, config
// makes them); they are named here too, where every other part of the crate looks for them.
use crate::drivers::contract::DriverSpec;
pub use crate::drivers::contract::{Account, DriverOptions, Line};

/// The drivers a config may name: the app's registry (`drivers::REGISTRY`), or a test's few.
pub type Registry = &'static [&'static DriverSpec];

/// The resolved configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it came from (for messages and reload).
    pub source: PathBuf,
    pub global: Global,
    /// Declared accounts, then one implicit account per line that names a `driver:` itself.
    pub accounts: Vec<Arc<Account>>,
    pub lines: Vec<Arc<Line>>,
    /// Non-fatal findings (literal secrets, readable secret files, reserved label names).
    pub warnings: Vec<Diagnostic>,
    /// Whether any secret came from the file (for the readable-by-others warning).
    pub holds_secrets: bool,
}

impl Config {
    /// A config with no lines: what the app holds before the first load is applied.
    pub fn empty() -> Config {
        Config {
            source: PathBuf::new(),
            global: Global::default(),
            accounts: Vec::new(),
            lines: Vec::new(),
            warnings: Vec::new(),
            holds_secrets: false,
        }
    }
}

/// `global:` settings with their defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub max_concurrency: usize,
    pub stale_after: Duration,
    /// Default thresholds for lines and accounts that set none.
    pub alert: AlertThresholds,
    /// Show MSISDNs and ICCIDs unmasked in `esim_line_info` and on the status page.
    pub expose_msisdn: bool,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            poll_interval: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(30),
            max_concurrency: 32,
            stale_after: Duration::from_secs(6 * 3600),
            alert: AlertThresholds::default(),
            expose_msisdn: false,
        }
    }
}

/// A config that failed to load: every diagnostic, sorted by position.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors: Vec<&Diagnostic> = self.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
        for (i, d) in errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The largest config file read (about 400,000 lines of a fleet): parsing costs about 7 s and
/// 5 MB of memory per MB of YAML, so a bigger file is refused at once rather than after half
/// a minute and gigabytes. Bigger fleets list their SIMs with `discover:` or run in shards.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// Reads, parses and resolves a config file; `drivers` is the registry the app is assembled
/// with (`drivers::REGISTRY`), so that config never names an operator.
pub fn load(path: &Path, drivers: Registry) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = read_config_text(path).map_err(|(pos, message)| ConfigError {
        diagnostics: vec![Diagnostic::error(&file, pos, "", format!("cannot read config file: {message}"))],
    })?;
    let mut config = parse(&file, &text, drivers)?;
    config.source = path.to_path_buf();
    if config.holds_secrets {
        secret::warn_if_readable_by_others(path, "config file holding secrets", &mut config.warnings);
    }
    Ok(config)
}

/// The config file as text: a regular file (a FIFO would hang the start), within
/// [`MAX_CONFIG_BYTES`], in UTF-8 (a Latin-1 file is named with the line of its first bad byte).
fn read_config_text(path: &Path) -> Result<String, (Option<Pos>, String)> {
    use crate::fsutil::{read_regular, ReadError, Symlinks};
    let bytes = read_regular(path, MAX_CONFIG_BYTES, Symlinks::Follow).map_err(|e| match e {
        ReadError::TooLarge { .. } => (
            None,
            format!(
                "it is larger than {} MiB; list big fleets with `discover:` or split them over shards",
                MAX_CONFIG_BYTES >> 20
            ),
        ),
        other => (None, other.to_string()),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        let column = 1 + at - bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let pos = Pos { line: line.try_into().unwrap_or(u32::MAX), column: column.try_into().unwrap_or(u32::MAX) };
        (Some(pos), format!("byte 0x{:02x} is not UTF-8 (Latin-1 or cp1251?); save the file as UTF-8", bytes[at]))
    })
}

/// Parses and resolves config text; `file` names it in messages. No file IO except
/// `*_file` secrets.
pub fn parse(file: &str, text: &str, drivers: Registry) -> Result<Config, ConfigError> {
    // A fleet file is resolved a slice of lines at a time while the next slice is parsed, so
    // that its whole tree (about 1.1 KB a line) never exists, not even during a reload while
    // the old config is alive. Any other shape, or any YAML error, takes the whole parse.
    let streamed =
        raw::parse_streamed(text, |head, slices| resolve::resolve(file, head, Items::Streamed(slices), drivers));
    if let Some(config) = streamed {
        return config;
    }
    let tree = raw::parse_tree(file, text).map_err(|d| ConfigError { diagnostics: vec![d] })?;
    resolve::resolve(file, &tree, Items::InTree, drivers)
}
