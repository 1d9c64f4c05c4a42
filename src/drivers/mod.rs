//! Drivers turn a line into a [`Reading`] or a [`PollError`]. This module holds the [`Driver`]
//! trait, the [`DriverSpec`] each driver file exports, and [`REGISTRY`], the one list of
//! drivers (one line each, alphabetical). Nothing else names drivers.

pub mod demo;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::fields::Fields;
use crate::config::{Account, DriverOptions, Line, Rate};
use crate::error::PollError;
use crate::reading::Reading;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A built driver: one per account, shared by that account's lines across tasks.
pub trait Driver: Send + Sync {
    /// Reads the line now. Must not retry, sleep for back-off, or outlive `cx.deadline`
    /// (the scheduler enforces the deadline too, and reports `timeout`).
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>>;
}

/// What a poll may use besides its line.
#[derive(Debug)]
pub struct PollContext {
    /// The poll must be over by then.
    pub deadline: tokio::time::Instant,
    pub clock: SharedClock,
    /// Notes for `/probe?debug=true`: what the driver did, never secrets.
    pub notes: Mutex<Vec<String>>,
}

impl PollContext {
    pub fn new(timeout: Duration, clock: SharedClock) -> PollContext {
        PollContext { deadline: tokio::time::Instant::now() + timeout, clock, notes: Mutex::new(Vec::new()) }
    }

    /// Records a step of the poll for the debug view.
    pub fn note(&self, text: impl Into<String>) {
        if let Ok(mut notes) = self.notes.lock() {
            notes.push(text.into());
        }
    }

    pub fn take_notes(&self) -> Vec<String> {
        self.notes.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default()
    }
}

/// What `build` may use: nothing global, so drivers never read env vars or files after load.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub clock: SharedClock,
}

/// A driver failed to build from valid options (e.g. a pattern that does not compile).
#[derive(Debug, thiserror::Error)]
#[error("cannot build driver `{driver}` for account `{account}`: {reason}")]
pub struct BuildError {
    pub driver: &'static str,
    pub account: String,
    pub reason: String,
}

/// Builds a driver for an account from its parsed options.
pub type BuildFn = fn(&Account, &BuildContext) -> Result<Arc<dyn Driver>, BuildError>;

/// How a driver declares itself to the registry.
pub struct DriverSpec {
    /// The `driver:` key in YAML.
    pub name: &'static str,
    /// One line, shown by `--config.check` and the status page.
    pub summary: &'static str,
    /// A YAML snippet (a whole config) that a test loads; docs and `config/example.yaml` show it.
    pub example: &'static str,
    /// True when lines must name an account; false for drivers whose lines may carry their
    /// keys themselves (`driver:` on the line), such as demo and ussd.
    pub needs_account: bool,
    /// The `operator` label when neither line nor account sets `operator:`.
    pub default_operator: &'static str,
    /// The operator's documented request rate, the default for the account's `rate_limit`.
    pub default_rate_limit: Option<Rate>,
    /// Parses the driver's account-level keys (for driverless lines: the line's own keys).
    /// Problems are reported through `fields`; the value returned then is never used.
    pub account_options: fn(&mut Fields<'_>) -> DriverOptions,
    /// Parses the driver's line-level keys.
    pub line_options: fn(&mut Fields<'_>) -> DriverOptions,
    pub build: BuildFn,
}

impl std::fmt::Debug for DriverSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DriverSpec({})", self.name)
    }
}

/// Every driver, alphabetical, one line each.
pub static REGISTRY: &[&DriverSpec] = &[&demo::SPEC];

/// Finds a driver by its `driver:` name.
pub fn lookup(name: &str) -> Option<&'static DriverSpec> {
    REGISTRY.iter().copied().find(|spec| spec.name == name)
}

/// Names of every driver, for "known: ..." hints.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|spec| spec.name).collect()
}
