//! Driver tests against the mock operator server: the conformance suite every HTTP driver
//! passes (`conformance.rs`), contract tests per driver (`mts.rs`, `beeline.rs`), and the real
//! binary polling both through the mock (`exporter.rs`). Helpers here build a driver from a
//! YAML config the way the exporter does, poll a line, and capture debug logs.

mod airalo;
mod beeline;
mod canary;
pub(crate) mod conformance;
mod emnify;
mod exporter;
mod hologram;
mod http_json;
mod login;
mod megafon;
mod mts;
mod onence;
mod t2;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use esim_exporter::clock::SystemClock;
use esim_exporter::config::{Config, Line};
use esim_exporter::drivers::onboarding::LoginBoard;
use esim_exporter::drivers::session::SessionStore;
use esim_exporter::drivers::{BuildContext, DiscoveredLine, Driver, PollContext, RequestObserver};
use esim_exporter::error::PollError;
use esim_exporter::reading::Reading;

pub use crate::mock_operator::{Fault, MockOperator, CREDENTIALS};

/// The secret the mock accepts for `operator`.
pub fn secret_of(operator: &str) -> &'static str {
    CREDENTIALS.iter().find(|(op, _, _)| *op == operator).map(|(_, _, s)| *s).expect("operator credentials")
}

pub fn user_of(operator: &str) -> &'static str {
    CREDENTIALS.iter().find(|(op, _, _)| *op == operator).map(|(_, u, _)| *u).expect("operator credentials")
}

/// Requests as the observer saw them: (account, driver, code).
#[derive(Default)]
pub struct Observed(Mutex<Vec<(String, String, String)>>);

impl RequestObserver for Observed {
    fn observe_request(&self, account: &str, driver: &str, code: &str, _duration: Duration) {
        self.0.lock().unwrap().push((account.to_string(), driver.to_string(), code.to_string()));
    }
}

impl Observed {
    pub fn codes(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|(_, _, c)| c.clone()).collect()
    }

    pub fn all(&self) -> Vec<(String, String, String)> {
        self.0.lock().unwrap().clone()
    }
}

/// A loaded config with its drivers built, as `Plan::build` does (one driver per account).
pub struct Built {
    pub config: Config,
    pub drivers: Vec<(String, Arc<dyn Driver>)>,
    pub observed: Arc<Observed>,
    /// Where the drivers report accounts that wait for a person.
    pub logins: Arc<LoginBoard>,
}

impl Built {
    pub fn new(yaml: &str) -> Built {
        Built::with_sessions(yaml, Arc::new(SessionStore::default()))
    }

    /// Builds with a given session store (reload tests share one between two builds).
    pub fn with_sessions(yaml: &str, sessions: Arc<SessionStore>) -> Built {
        let config = esim_exporter::config::parse("test.yaml", yaml, esim_exporter::drivers::REGISTRY)
            .unwrap_or_else(|e| panic!("{e}"));
        let observed = Arc::new(Observed::default());
        let logins = Arc::new(LoginBoard::default());
        let cx = BuildContext {
            requests: observed.clone(),
            sessions,
            logins: logins.clone(),
            ..BuildContext::new(Arc::new(SystemClock))
        };
        let drivers = config
            .accounts
            .iter()
            .map(|a| (a.name.clone(), (a.driver.build)(a, &cx).unwrap_or_else(|e| panic!("{e}"))))
            .collect();
        Built { config, drivers, observed, logins }
    }

    pub fn line(&self, name: &str) -> Arc<Line> {
        self.config.lines.iter().find(|l| l.name == name).cloned().unwrap_or_else(|| panic!("no line {name}"))
    }

    pub fn driver_of(&self, line: &Line) -> Arc<dyn Driver> {
        self.drivers.iter().find(|(a, _)| *a == line.account.name).map(|(_, d)| d.clone()).expect("driver")
    }

    /// Polls `line` once with `timeout`; returns the result and the poll's notes.
    pub async fn poll(&self, line: &str, timeout: Duration) -> (Result<Reading, PollError>, Vec<String>) {
        let line = self.line(line);
        let driver = self.driver_of(&line);
        let cx = PollContext::new(timeout, Arc::new(SystemClock));
        let result = driver.poll(&line, &cx).await;
        (result, cx.take_notes())
    }

    pub async fn reading(&self, line: &str) -> Reading {
        let (result, notes) = self.poll(line, Duration::from_secs(10)).await;
        result.unwrap_or_else(|e| panic!("poll of {line} failed: {e}\nnotes: {notes:#?}"))
    }

    /// Discovery through the first account's driver.
    pub async fn discover(&self, timeout: Duration) -> Result<Vec<DiscoveredLine>, PollError> {
        let cx = PollContext::new(timeout, Arc::new(SystemClock));
        self.drivers[0].1.discover(&cx).await
    }
}

/// Debug-level logs of everything on this thread while the value lives. One global
/// subscriber (installed once) writes each event to the capture of the thread it happens on:
/// a scoped `set_default` subscriber misses events when other test threads register the same
/// callsites concurrently, a global one never does.
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { std::cell::RefCell::new(None) };
}

struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buffer) = &*c.borrow() {
                buffer.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Starts capturing; use in a current-thread runtime so every task logs on this thread.
    pub fn start() -> LogCapture {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(|| ThreadWriter)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in the tests");
        });
        let buffer = Arc::new(Mutex::new(Vec::new()));
        CAPTURE.with(|c| *c.borrow_mut() = Some(buffer.clone()));
        LogCapture { buffer }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Writes `contents` to a token file named after `key` (a hash of it) in the temporary
/// directory, mode 0600, and returns its path: what `esim-exporter login` would have stored.
pub fn token_file(key: &str, contents: &str) -> std::path::PathBuf {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::PermissionsExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let dir = std::env::temp_dir().join(format!("esim-it-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:016x}.json", h.finish()));
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Seconds since the epoch of an RFC 3339 time, for expected expiries.
pub fn at(text: &str) -> SystemTime {
    esim_exporter::drivers::kit::decode::parse_rfc3339(text).expect("timestamp")
}
