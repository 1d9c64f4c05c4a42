//! Configuration: `load(path)` reads the YAML file, expands secrets, and resolves it into the
//! typed [`Config`] below. Nothing downstream re-validates what this module accepted.
//!
//! Stages: `raw` (YAML → position-aware tree, no IO) → `resolve` (defaults, inheritance,
//! driver options through the registry, names and labels) → [`Config`]. Every problem becomes a
//! [`Diagnostic`] with file, line, column and key path; all of them are reported at once.

pub mod diagnostics;
pub mod discover;
pub mod fields;
mod labels;
pub mod raw;
mod resolve;
pub mod secret;
pub mod units;

use std::any::Any;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use diagnostics::{Diagnostic, Severity};
pub use labels::Labels;
pub use units::{ByteSize, Rate};

use raw::Pos;
use resolve::Items;

use crate::drivers::DriverSpec;

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

/// `alert:` thresholds; exported as `esim_*_alert_threshold*` gauges for the alert rules.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AlertThresholds {
    pub balance_below: Option<f64>,
    pub data_below: Option<ByteSize>,
}

impl AlertThresholds {
    /// Fields set here win; unset ones come from `fallback`.
    pub fn or(self, fallback: AlertThresholds) -> AlertThresholds {
        AlertThresholds {
            balance_below: self.balance_below.or(fallback.balance_below),
            data_below: self.data_below.or(fallback.data_below),
        }
    }
}

/// Options a driver parsed from its part of the config; only that driver looks inside.
#[derive(Clone)]
pub struct DriverOptions(pub Arc<dyn Any + Send + Sync>);

impl DriverOptions {
    /// No options: every line without any shares one allocation.
    pub fn none() -> DriverOptions {
        static NONE: LazyLock<DriverOptions> = LazyLock::new(|| DriverOptions(Arc::new(())));
        NONE.clone()
    }

    /// `options`, sharing the allocation of an equal value among `common` (options that most
    /// lines of a fleet repeat, made once per process) rather than making one per line.
    pub fn shared<T: Any + Send + Sync + PartialEq>(options: T, common: &[DriverOptions]) -> DriverOptions {
        match common.iter().find(|o| o.get::<T>() == Some(&options)) {
            Some(shared) => shared.clone(),
            None => DriverOptions(Arc::new(options)),
        }
    }

    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl fmt::Debug for DriverOptions {
    // Options may hold secrets; they are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DriverOptions(..)")
    }
}

/// An account: credentials and limits shared by the lines that name it. A line that sets
/// `driver:` itself gets an implicit account of its own (`implicit`), so that the scheduler
/// treats every line alike.
#[derive(Debug)]
pub struct Account {
    /// Key under `accounts:`, or the line name for an implicit account.
    pub name: String,
    pub implicit: bool,
    pub driver: &'static DriverSpec,
    pub options: DriverOptions,
    pub labels: Labels,
    pub rate_limit: Option<Rate>,
    /// `rate_burst`: requests allowed at once, for operators that document a burst apart from
    /// the rate; `None` lets the whole `rate_limit` count come at once.
    pub rate_burst: Option<u32>,
    pub max_concurrency: Option<usize>,
    pub alert: AlertThresholds,
    /// `discover:`: the account lists its SIMs and each becomes a line.
    pub discover: Option<Arc<discover::Discover>>,
    /// A digest of the account's credentials and other settings (`Fields::credentials`): a
    /// reload ends an auth lock-out only when it changes.
    pub credentials: u64,
    /// Its secrets as they may be echoed in an operator's text (see `redact`).
    pub redactor: crate::redact::Redactor,
}

impl Account {
    /// The `account` label value: empty for implicit accounts.
    pub fn label(&self) -> &str {
        if self.implicit {
            ""
        } else {
            &self.name
        }
    }
}

/// A line: one SIM whose balance and data are polled. What many lines have in common
/// (operator, labels, often the options) is shared between them, not copied.
#[derive(Debug)]
pub struct Line {
    pub name: String,
    pub account: Arc<Account>,
    /// The `operator` label: the line's or account's `operator:`, else the driver's default.
    pub operator: Arc<str>,
    /// `+` and digits.
    pub msisdn: Option<Box<str>>,
    pub iccid: Option<Box<str>>,
    /// Account labels overlaid with the line's own, sorted by name.
    pub labels: Labels,
    pub alert: AlertThresholds,
    pub poll_interval: Duration,
    pub timeout: Duration,
    /// Line-level options of the driver (e.g. the demo profile, a USSD code override).
    pub options: DriverOptions,
}

impl Line {
    pub fn driver(&self) -> &'static DriverSpec {
        self.account.driver
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

/// Reads, parses and resolves a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = read_config_text(path).map_err(|(pos, message)| ConfigError {
        diagnostics: vec![Diagnostic::error(&file, pos, "", format!("cannot read config file: {message}"))],
    })?;
    let mut config = parse(&file, &text)?;
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
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    // A fleet file is resolved a slice of lines at a time while the next slice is parsed, so
    // that its whole tree (about 1.1 KB a line) never exists, not even during a reload while
    // the old config is alive. Any other shape, or any YAML error, takes the whole parse.
    let streamed = raw::parse_streamed(text, |head, slices| resolve::resolve(file, head, Items::Streamed(slices)));
    if let Some(config) = streamed {
        return config;
    }
    let tree = raw::parse_tree(file, text).map_err(|d| ConfigError { diagnostics: vec![d] })?;
    resolve::resolve(file, &tree, Items::InTree)
}
