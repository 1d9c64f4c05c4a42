//! Drivers turn a line into a [`Reading`] or a [`PollError`]. This module holds the [`Driver`]
//! trait, the [`DriverSpec`] each driver file exports, and [`REGISTRY`], the one list of
//! drivers (one line each, alphabetical). Nothing else names drivers.
//!
//! HTTP drivers build on [`http`] (one client per account: base URL, proxy, User-Agent, body
//! cap, deadline, status → [`PollError`], request metrics, logs without secrets) and
//! [`session`] (token cache with one shared refresh, de-duplicated shared values, sessions
//! that survive a reload). [`BuildContext`] hands both what they need.

pub mod airalo;
pub mod beeline;
pub mod demo;
pub mod emnify;
pub mod hologram;
pub mod http;
pub mod http_json;
pub mod kit;
pub mod megafon;
pub mod mts;
pub mod onboarding;
pub mod onence;
pub mod remainders;
pub mod session;
pub mod t2;
pub mod token_file;
pub mod ussd;

use std::future::Future;
use std::path::PathBuf;
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

    /// Lists every line the account can see (an account with `discover:`), all pages, within
    /// `cx.deadline`. Drivers that cannot list their SIMs keep this default.
    fn discover<'a>(&'a self, cx: &'a PollContext) -> BoxFuture<'a, Result<Vec<DiscoveredLine>, PollError>> {
        let _ = cx;
        Box::pin(async { Err(PollError::Config("this driver cannot discover lines".into())) })
    }

    /// True when every request the driver sends first waits for [`PollContext::pace`]: the
    /// account's `rate_limit` then counts requests, not polls, and a poll that needs no request
    /// (served from a listing the driver already holds) costs no token. Drivers that send one
    /// request per poll, or that budget polls in their default rate, keep `false`.
    fn paces_requests(&self) -> bool {
        false
    }

    /// `esim-exporter login`: walks `person` through the operator's one-time login (an SMS
    /// code) and stores the long-lived token where `poll` finds it; returns where. Drivers that
    /// log in by themselves keep this default.
    fn onboard<'a>(&'a self, person: &'a mut dyn onboarding::Person) -> BoxFuture<'a, Result<PathBuf, PollError>> {
        let _ = person;
        Box::pin(async { Err(PollError::Config("this driver logs in by itself: there is nothing to onboard".into())) })
    }

    /// What polling `lines` lines of the account once costs the operator, for the
    /// `--config.check` budget warnings. `None`: nothing known.
    fn cost(&self, lines: usize) -> Option<Cost> {
        let _ = lines;
        None
    }
}

/// The operator-side cost of one poll cycle of an account's lines, and the limits it counts
/// against besides the account's `rate_limit`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cost {
    /// Requests one poll of every line sends, on average (a batched listing spread over them).
    pub requests_per_cycle: f64,
    /// Requests one discovery listing sends.
    pub requests_per_listing: f64,
    /// The operator's cap on requests per 30 days, if any.
    pub monthly_limit: Option<u64>,
    /// The shortest interval at which polling one line makes sense (the operator caches).
    pub min_interval: Option<Duration>,
}

/// A line an account listed through [`Driver::discover`]: what a configured line would say.
#[derive(Clone, Debug)]
pub struct DiscoveredLine {
    /// A stable identifier within the account (the MSISDN without `+`, or the ICCID), from
    /// which the framework derives the line name.
    pub id: String,
    /// `+` and digits, as `config::Line::msisdn`.
    pub msisdn: Option<String>,
    pub iccid: Option<String>,
    /// Facts the operator gives about the line (e.g. `account_no`), as labels the framework
    /// may add; sorted by name. (Owned: `config::discover::materialize` makes the line's shared
    /// `Labels` from them.)
    pub labels: Vec<(String, String)>,
    /// Line-level options the driver's `poll` expects (what its `line_options` would build).
    pub options: DriverOptions,
}

/// Counts and times every request a driver sends to an operator
/// (`esim_operator_requests_total`, `esim_operator_request_duration_seconds`).
pub trait RequestObserver: Send + Sync {
    /// `code` is the HTTP status (`200`, `429`) or a short word (`timeout`, `connect`, `io`).
    fn observe_request(&self, account: &str, driver: &str, code: &str, duration: Duration);
}

/// An observer that forgets everything (`--once`, tests).
#[derive(Debug, Default)]
pub struct NoRequestObserver;

impl RequestObserver for NoRequestObserver {
    fn observe_request(&self, _: &str, _: &str, _: &str, _: Duration) {}
}

/// Hands out the account's request tokens (its `rate_limit` bucket) to drivers that
/// [pace their requests](Driver::paces_requests).
pub trait Pacer: Send + Sync + std::fmt::Debug {
    /// Waits for one token; fails with `timeout` when none comes before `deadline`.
    fn pace(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, Result<(), PollError>>;
}

/// What a poll may use besides its line.
#[derive(Debug)]
pub struct PollContext {
    /// The poll must be over by then.
    pub deadline: tokio::time::Instant,
    /// The whole poll's time budget (`deadline` is its end), for `PollError::Timeout`.
    pub timeout: Duration,
    pub clock: SharedClock,
    /// Notes for `/probe?debug=true`: what the driver did, never secrets.
    pub notes: Mutex<Vec<String>>,
    /// The account's request tokens, for drivers that pace their requests (none in tests and
    /// for drivers that do not).
    pub pacer: Option<Arc<dyn Pacer>>,
}

impl PollContext {
    pub fn new(timeout: Duration, clock: SharedClock) -> PollContext {
        PollContext {
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            clock,
            notes: Mutex::new(Vec::new()),
            pacer: None,
        }
    }

    /// The same context drawing request tokens from `pacer`.
    pub fn with_pacer(mut self, pacer: Arc<dyn Pacer>) -> PollContext {
        self.pacer = Some(pacer);
        self
    }

    /// Waits for the account's next request token (at once without a pacer). Drivers that
    /// pace their requests call it before each one.
    pub async fn pace(&self) -> Result<(), PollError> {
        match &self.pacer {
            Some(pacer) => pacer.pace(self.deadline).await.map_err(|e| match e {
                PollError::Timeout(_) => PollError::Timeout(self.timeout),
                other => other,
            }),
            None => Ok(()),
        }
    }

    /// Time left before the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(tokio::time::Instant::now())
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
#[derive(Clone)]
pub struct BuildContext {
    pub clock: SharedClock,
    /// Where HTTP drivers report each request (see [`http::HttpClient`]).
    pub requests: Arc<dyn RequestObserver>,
    /// Sessions (tokens, cached values) that outlive a reload while an account's driver and
    /// credentials stay the same (see [`session::SessionStore`]).
    pub sessions: Arc<session::SessionStore>,
    /// Where drivers say that an account waits for a person to log in (see
    /// [`onboarding::LoginBoard`]).
    pub logins: Arc<onboarding::LoginBoard>,
    /// Where login tokens of accounts without `token_file:` live: `tokens/` beside
    /// `--storage.path` (see [`token_file`]); none without that flag.
    pub token_dir: Option<PathBuf>,
}

impl BuildContext {
    /// A context whose requests are not counted, whose sessions are fresh and whose accounts
    /// keep no tokens unless they name a `token_file`.
    pub fn new(clock: SharedClock) -> BuildContext {
        BuildContext {
            clock,
            requests: Arc::new(NoRequestObserver),
            sessions: Arc::new(session::SessionStore::default()),
            logins: Arc::new(onboarding::LoginBoard::default()),
            token_dir: None,
        }
    }
}

impl std::fmt::Debug for BuildContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildContext").field("clock", &self.clock).finish_non_exhaustive()
    }
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

/// The account's options as driver `driver` parsed them. Only a registry mix-up could hand
/// a driver another driver's options; that is reported as a build error, not a panic.
pub fn account_options<'a, T: std::any::Any>(account: &'a Account, driver: &'static str) -> Result<&'a T, BuildError> {
    account.options.get::<T>().ok_or_else(|| BuildError {
        driver,
        account: account.name.clone(),
        reason: format!("account options were not parsed by the {driver} driver"),
    })
}

/// How a driver declares itself to the registry.
pub struct DriverSpec {
    /// The `driver:` key in YAML.
    pub name: &'static str,
    /// Other names `driver:` accepts for this driver (an operator's former name, such as
    /// `tele2` for `t2`). Metrics, logs and summaries always say `name`.
    pub aliases: &'static [&'static str],
    /// One line, shown by `--config.check` and the status page.
    pub summary: &'static str,
    /// A YAML snippet (a whole config) that a test loads; docs and `config/example.yaml` show it.
    pub example: &'static str,
    /// True when lines must name an account; false for drivers whose lines may carry their
    /// keys themselves (`driver:` on the line), such as demo and ussd.
    pub needs_account: bool,
    /// True when the driver lists the account's SIMs ([`Driver::discover`]), so that an
    /// account may say `discover:`.
    pub can_discover: bool,
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
pub static REGISTRY: &[&DriverSpec] = &[
    &onence::SPEC,
    &airalo::SPEC,
    &beeline::SPEC,
    &demo::SPEC,
    &emnify::SPEC,
    &hologram::SPEC,
    &http_json::SPEC,
    &megafon::SPEC,
    &mts::SPEC,
    &t2::SPEC,
    &ussd::SPEC,
];

/// Finds a driver by its `driver:` name or one of its aliases.
pub fn lookup(name: &str) -> Option<&'static DriverSpec> {
    REGISTRY.iter().copied().find(|spec| spec.name == name || spec.aliases.contains(&name))
}

/// Names of every driver, for "known: ..." hints.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|spec| spec.name).collect()
}
