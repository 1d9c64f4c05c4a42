//! The driver contract: what config, the scheduler and every driver speak. [`DriverSpec`] (how a
//! driver declares itself), [`Driver`] (one built per account), [`PollContext`] and
//! [`BuildContext`] (what a poll and a build may use), [`DiscoveredLine`], and the resolved
//! [`Account`] and [`Line`] that config makes and drivers read. It imports no operator file
//! and no registry: `config` stands on it, and the registry (`drivers::REGISTRY`) is handed to
//! `config::load` where the app is assembled.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::any::Any;
use std::fmt;
use std::sync::LazyLock;

use super::kit::session_store::SessionStore;
use super::onboarding;
use crate::clock::SharedClock;
use crate::config::alert::AlertThresholds;
use crate::config::discover;
use crate::config::fields::Fields;
use crate::config::labels::Labels;
use crate::config::units::Rate;
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
    /// may add; sorted by name. (Owned: `config::materialize` makes the line's shared
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
    /// Where HTTP drivers report each request (see `kit::transport::HttpClient`).
    pub requests: Arc<dyn RequestObserver>,
    /// Sessions (tokens, cached values) that outlive a reload while an account's driver and
    /// credentials stay the same (see [`SessionStore`]).
    pub sessions: Arc<SessionStore>,
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
            sessions: Arc::new(SessionStore::default()),
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
    /// True when the driver talks to an operator's HTTP API (through `kit::http`): the
    /// conformance suite and the mock operator must then cover it (a tidy test checks).
    pub speaks_http: bool,
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
