//! The exporter's own metrics: build info, configured lines, config reload status, operator
//! requests, plus the process collector, all in one `prometheus` registry that the scheduler
//! may register its own metrics in too. Names and HELP texts come from the catalogue.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::catalog::{self, Family};
use crate::clock::unix_seconds;
use crate::config::Config;
use crate::drivers::{RequestObserver, REGISTRY};

/// The crate version, as `--version` and `esim_exporter_build_info` show it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the binary was built from (`unknown` outside a checkout).
pub const REVISION: &str = env!("ESIM_GIT_REVISION");
/// `rustc --version` at build time.
pub const RUSTC_VERSION: &str = env!("ESIM_RUSTC_VERSION");

/// Buckets of `esim_operator_request_duration_seconds`: operator APIs answer in tens of
/// milliseconds to tens of seconds (the default poll timeout is 30s).
const REQUEST_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

pub struct SelfMetrics {
    registry: Registry,
    lines: IntGaugeVec,
    shard_info: IntGaugeVec,
    reload_successful: IntGauge,
    reload_success_timestamp: Gauge,
    storage_saved: Gauge,
    storage_failures: IntCounterVec,
    requests: IntCounterVec,
    request_duration: HistogramVec,
}

/// Which file of `--storage.path` a save wrote.
#[derive(Clone, Copy, Debug)]
pub enum StorageFile {
    Snapshot,
    Journal,
}

impl StorageFile {
    fn label(self) -> &'static str {
        match self {
            StorageFile::Snapshot => "snapshot",
            StorageFile::Journal => "journal",
        }
    }
}

impl SelfMetrics {
    pub fn new() -> SelfMetrics {
        let registry = Registry::new();
        let rustc = RUSTC_VERSION.split_whitespace().nth(1).unwrap_or(RUSTC_VERSION);
        let build_info = IntGauge::with_opts(
            opts(catalog::ESIM_EXPORTER_BUILD_INFO)
                .const_label("version", VERSION)
                .const_label("revision", REVISION)
                .const_label("rustc", rustc),
        )
        .expect(VALID);
        build_info.set(1);
        let lines = IntGaugeVec::new(opts(catalog::ESIM_LINES), &["driver"]).expect(VALID);
        for spec in REGISTRY {
            lines.with_label_values(&[spec.name]).set(0);
        }
        let shard_info = IntGaugeVec::new(opts(catalog::ESIM_SHARD_INFO), &["shard", "shards"]).expect(VALID);
        shard_info.with_label_values(&["0", "1"]).set(1);
        let reload_successful = IntGauge::with_opts(opts(catalog::ESIM_CONFIG_LAST_RELOAD_SUCCESSFUL)).expect(VALID);
        let reload_success_timestamp =
            Gauge::with_opts(opts(catalog::ESIM_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS)).expect(VALID);
        let storage_saved =
            Gauge::with_opts(opts(catalog::ESIM_STORAGE_LAST_SAVE_SUCCESS_TIMESTAMP_SECONDS)).expect(VALID);
        let storage_failures =
            IntCounterVec::new(opts(catalog::ESIM_STORAGE_SAVE_FAILURES_TOTAL), &["file"]).expect(VALID);
        for file in [StorageFile::Snapshot, StorageFile::Journal] {
            storage_failures.with_label_values(&[file.label()]);
        }
        let requests = IntCounterVec::new(opts(catalog::ESIM_OPERATOR_REQUESTS_TOTAL), &["account", "driver", "code"])
            .expect(VALID);
        let duration = family(catalog::ESIM_OPERATOR_REQUEST_DURATION_SECONDS);
        let request_duration = HistogramVec::new(
            HistogramOpts::new(duration.name, duration.help).buckets(REQUEST_BUCKETS.to_vec()),
            &["driver"],
        )
        .expect(VALID);

        let collectors: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(build_info),
            Box::new(lines.clone()),
            Box::new(shard_info.clone()),
            Box::new(reload_successful.clone()),
            Box::new(reload_success_timestamp.clone()),
            Box::new(storage_saved.clone()),
            Box::new(storage_failures.clone()),
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect(UNIQUE);
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(super::process::ProcessMetrics::for_self())).expect(UNIQUE);

        SelfMetrics {
            registry,
            lines,
            shard_info,
            reload_successful,
            reload_success_timestamp,
            storage_saved,
            storage_failures,
            requests,
            request_duration,
        }
    }

    /// The registry the renderer gathers; the scheduler may register its own collectors here
    /// (names must not collide with the catalogue's per-line families).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets `esim_lines{driver}` from a loaded config; every known driver gets a series, 0 when
    /// no line uses it, so a driver whose lines all went away reads 0 rather than vanishing.
    pub fn set_lines(&self, config: &Config) {
        self.set_line_counts(config.lines.iter().map(|l| &**l));
    }

    /// `esim_lines{driver}` from the lines polled (configured and discovered).
    pub fn set_line_counts<'a>(&self, lines: impl IntoIterator<Item = &'a crate::config::Line>) {
        let mut counts: HashMap<&str, i64> = REGISTRY.iter().map(|spec| (spec.name, 0)).collect();
        for line in lines {
            *counts.entry(line.driver().name).or_default() += 1;
        }
        for (driver, count) in counts {
            self.lines.with_label_values(&[driver]).set(count);
        }
    }

    /// `esim_shard_info{shard,shards}`: which `--shard` this process is, so that a query can
    /// tell a missing or doubled shard (`count by (shards) (esim_shard_info)`) from a small
    /// one. `(index, count)` rather than `poll::Shard` keeps metrics below poll in the import
    /// graph. Unsharded is shard 0 of 1: it owns every line.
    pub fn set_shard(&self, shard: Option<(u32, u32)>) {
        let (index, count) = shard.unwrap_or((0, 1));
        self.shard_info.reset();
        self.shard_info.with_label_values(&[&index.to_string(), &count.to_string()]).set(1);
    }

    /// A config load or reload at `at` succeeded.
    pub fn reload_succeeded(&self, at: SystemTime) {
        self.reload_successful.set(1);
        self.reload_success_timestamp.set(unix_seconds(at));
    }

    /// A write of `--storage.path` ended: `ok` sets the last-success time, a failure counts.
    pub fn storage_saved(&self, file: StorageFile, ok: bool, at: SystemTime) {
        if ok {
            self.storage_saved.set(unix_seconds(at));
        } else {
            self.storage_failures.with_label_values(&[file.label()]).inc();
        }
    }

    /// A config load or reload failed (the old config stays in force).
    pub fn reload_failed(&self) {
        self.reload_successful.set(0);
    }

    /// Counts one request to an operator API and records its duration. `code` is the HTTP
    /// status (`200`, `429`) or a short word for requests without one (`timeout`, `connect`).
    pub fn observe_request(&self, account: &str, driver: &str, code: &str, duration: Duration) {
        self.requests.with_label_values(&[account, driver, code]).inc();
        self.request_duration.with_label_values(&[driver]).observe(duration.as_secs_f64());
    }
}

// The framework's side of the drivers' request events: drivers report each request through
// `RequestObserver`, and only here do they become series.
impl RequestObserver for SelfMetrics {
    fn observe_request(&self, account: &str, driver: &str, code: &str, duration: Duration) {
        SelfMetrics::observe_request(self, account, driver, code, duration);
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        SelfMetrics::new()
    }
}

impl std::fmt::Debug for SelfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SelfMetrics(..)")
    }
}

// The names and label names below are catalogue constants checked by the tests, and the
// registry is fresh, so construction and registration cannot fail.
const VALID: &str = "catalogue metric names and labels are valid";
const UNIQUE: &str = "each collector is registered once in a fresh registry";

fn family(name: &str) -> &'static Family {
    catalog::find(name).expect("exporter families are in the catalogue")
}

fn opts(name: &str) -> Opts {
    let f = family(name);
    Opts::new(f.name, f.help)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::catalog::Scope;

    fn gathered_names(m: &SelfMetrics) -> Vec<String> {
        m.registry().gather().iter().map(|f| f.name().to_string()).collect()
    }

    #[test]
    fn registers_every_exporter_family_of_the_catalogue() {
        let m = SelfMetrics::new();
        // The scheduler registers its own families in the same registry.
        let scheduler = crate::poll::telemetry::Telemetry::register(m.registry()).expect("scheduler metrics register");
        // Per-account families have series only once an account was locked out or rate limited.
        scheduler.set_locked_out("corp", "demo", false);
        scheduler.set_rate_limited_until("corp", "demo", 1_800_000_000.0);
        // So does the drivers' login board.
        crate::metrics::login_gauge::login_board(m.registry()).expect("login board registers").track("corp");
        m.observe_request("corp", "demo", "200", Duration::from_millis(120));
        // And the per-account poll series and default thresholds, once a plan has accounts.
        let keys = [("mts".to_string(), "corp".to_string())].into_iter().collect();
        let alert = crate::config::AlertThresholds {
            balance_below: Some(50.0),
            data_below: Some(crate::config::units::ByteSize(1_000_000)),
        };
        scheduler.set_accounts(&keys, &[("corp".to_string(), alert)]);
        let names = gathered_names(&m);
        // Poll counts are rendered from the store (metrics/account_polls.rs), not registered.
        let from_store = [catalog::ESIM_POLLS_TOTAL, catalog::ESIM_POLL_ERRORS_TOTAL];
        for f in catalog::exporter_families().iter().filter(|f| !from_store.contains(&f.name)) {
            assert!(names.iter().any(|n| n == f.name), "{} not registered", f.name);
        }
    }

    #[test]
    fn registry_names_never_collide_with_per_line_families() {
        let m = SelfMetrics::new();
        for name in gathered_names(&m) {
            assert!(catalog::find(&name).is_none_or(|f| f.scope == Scope::Exporter), "{name}");
        }
    }

    #[test]
    fn build_info_carries_version_revision_and_rustc() {
        let m = SelfMetrics::new();
        let families = m.registry().gather();
        let info = families.iter().find(|f| f.name() == catalog::ESIM_EXPORTER_BUILD_INFO);
        let metric = &info.map(|f| f.get_metric()).unwrap_or_default()[0];
        let labels: Vec<(&str, &str)> = metric.get_label().iter().map(|l| (l.name(), l.value())).collect();
        assert!(labels.contains(&("version", VERSION)));
        assert!(labels.iter().any(|(n, v)| *n == "revision" && !v.is_empty()));
        let rustc = labels.iter().find(|(n, _)| *n == "rustc").map(|(_, v)| *v).unwrap_or_default();
        assert!(rustc == "unknown" || rustc.starts_with(|c: char| c.is_ascii_digit()), "{rustc}");
        assert_eq!(metric.get_gauge().get_value(), 1.0);
    }

    /// Issue 13: the CPU counter comes in clock ticks (1/100 s), not whole seconds; a
    /// collector rounding to seconds would never show a fraction however long it burns.
    #[cfg(target_os = "linux")]
    #[test]
    fn process_cpu_seconds_show_fractions_of_a_second() {
        let m = SelfMetrics::new();
        let cpu_seconds = || {
            let families = m.registry().gather();
            let family = families.iter().find(|f| f.name() == "process_cpu_seconds_total").expect("process collector");
            family.get_metric()[0].get_counter().get_value()
        };
        let mut seen = Vec::new();
        for _ in 0..20 {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(25);
            let mut x = 0u64;
            while std::time::Instant::now() < until {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            let value = cpu_seconds();
            if value.fract() != 0.0 {
                return;
            }
            seen.push(value);
        }
        panic!("process_cpu_seconds_total only ever whole seconds: {seen:?}");
    }

    fn shard_info_labels(m: &SelfMetrics) -> Vec<Vec<(String, String)>> {
        let families = m.registry().gather();
        let info = families.iter().find(|f| f.name() == catalog::ESIM_SHARD_INFO).expect("esim_shard_info");
        info.get_metric()
            .iter()
            .map(|s| s.get_label().iter().map(|l| (l.name().to_string(), l.value().to_string())).collect())
            .collect()
    }

    #[test]
    fn shard_info_says_which_shard_this_process_is() {
        let m = SelfMetrics::new();
        let pair = |i: &str, n: &str| vec![("shard".to_string(), i.to_string()), ("shards".to_string(), n.to_string())];
        assert_eq!(shard_info_labels(&m), vec![pair("0", "1")], "unsharded is shard 0 of 1");
        m.set_shard(Some((2, 3)));
        assert_eq!(shard_info_labels(&m), vec![pair("2", "3")], "one series, the old one gone");
        m.set_shard(None);
        assert_eq!(shard_info_labels(&m), vec![pair("0", "1")]);
    }

    #[test]
    fn reload_setters_move_the_gauges() {
        let m = SelfMetrics::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        m.reload_succeeded(at);
        assert_eq!(m.reload_successful.get(), 1);
        assert_eq!(m.reload_success_timestamp.get(), 1_700_000_000.0);
        m.reload_failed();
        assert_eq!(m.reload_successful.get(), 0);
        assert_eq!(m.reload_success_timestamp.get(), 1_700_000_000.0);
    }
}
