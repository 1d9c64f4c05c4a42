//! The scheduler's own metrics, created once and registered in the registry the caller passes
//! to `Scheduler::start`; never registered per poll. `--once` runs without them.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashSet;

use prometheus::{GaugeVec, Histogram, HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::config::{AlertThresholds, Line};
use crate::store::{account_key, AccountKey};

use crate::metrics::catalog;
pub use crate::metrics::catalog::{
    ESIM_ACCOUNT_LOCKED_OUT as ACCOUNT_LOCKED_OUT,
    ESIM_ACCOUNT_RATE_LIMITED_UNTIL_TIMESTAMP_SECONDS as ACCOUNT_RATE_LIMITED_UNTIL,
    ESIM_DEFAULT_BALANCE_ALERT_THRESHOLD as DEFAULT_BALANCE_THRESHOLD,
    ESIM_DEFAULT_DATA_REMAINING_ALERT_THRESHOLD_BYTES as DEFAULT_DATA_THRESHOLD, ESIM_POLLS_TOTAL as POLLS_TOTAL,
    ESIM_POLL_DURATION_SECONDS as POLL_DURATION, ESIM_POLL_ERRORS_TOTAL as POLL_ERRORS_TOTAL,
    ESIM_SCHEDULER_BACKOFF_LINES as BACKOFF_LINES, ESIM_SCHEDULER_POLLS_IN_FLIGHT as POLLS_IN_FLIGHT,
    ESIM_SCHEDULER_QUEUE_WAIT_SECONDS as QUEUE_WAIT_SECONDS,
};

/// HELP text from the catalogue, the one place it is written.
fn help(name: &str) -> String {
    catalog::find(name).map_or_else(|| name.to_string(), |f| f.help.to_string())
}

/// Waits range from nothing (idle) to many minutes (a slow `rate_limit` with many lines).
const QUEUE_WAIT_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// A poll is one to a few operator requests (login, balance, packages), or a USSD session.
const POLL_DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Handle to the metrics; cheap to clone into every poll task. Disabled: every call is a no-op.
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    metrics: Option<Arc<Metrics>>,
}

#[derive(Debug)]
struct Metrics {
    polls_in_flight: IntGauge,
    queue_wait: Histogram,
    backoff_lines: IntGauge,
    locked_out: IntGaugeVec,
    rate_limited_until: GaugeVec,
    poll_duration: HistogramVec,
    default_balance_threshold: GaugeVec,
    default_data_threshold: GaugeVec,
    /// The accounts `set_accounts` last made series for, to drop those that leave.
    account_keys: std::sync::Mutex<HashSet<AccountKey>>,
}

impl Telemetry {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Telemetry, prometheus::Error> {
        let metrics = Metrics {
            polls_in_flight: IntGauge::new(POLLS_IN_FLIGHT, help(POLLS_IN_FLIGHT))?,
            queue_wait: Histogram::with_opts(
                HistogramOpts::new(QUEUE_WAIT_SECONDS, help(QUEUE_WAIT_SECONDS)).buckets(QUEUE_WAIT_BUCKETS.to_vec()),
            )?,
            backoff_lines: IntGauge::new(BACKOFF_LINES, help(BACKOFF_LINES))?,
            locked_out: IntGaugeVec::new(
                Opts::new(ACCOUNT_LOCKED_OUT, help(ACCOUNT_LOCKED_OUT)),
                &["account", "driver"],
            )?,
            rate_limited_until: GaugeVec::new(
                Opts::new(ACCOUNT_RATE_LIMITED_UNTIL, help(ACCOUNT_RATE_LIMITED_UNTIL)),
                &["account", "driver"],
            )?,
            poll_duration: HistogramVec::new(
                HistogramOpts::new(POLL_DURATION, help(POLL_DURATION)).buckets(POLL_DURATION_BUCKETS.to_vec()),
                &["operator", "account"],
            )?,
            default_balance_threshold: GaugeVec::new(
                Opts::new(DEFAULT_BALANCE_THRESHOLD, help(DEFAULT_BALANCE_THRESHOLD)),
                &["account"],
            )?,
            default_data_threshold: GaugeVec::new(
                Opts::new(DEFAULT_DATA_THRESHOLD, help(DEFAULT_DATA_THRESHOLD)),
                &["account"],
            )?,
            account_keys: std::sync::Mutex::default(),
        };
        registry.register(Box::new(metrics.polls_in_flight.clone()))?;
        registry.register(Box::new(metrics.queue_wait.clone()))?;
        registry.register(Box::new(metrics.backoff_lines.clone()))?;
        registry.register(Box::new(metrics.locked_out.clone()))?;
        registry.register(Box::new(metrics.rate_limited_until.clone()))?;
        registry.register(Box::new(metrics.poll_duration.clone()))?;
        registry.register(Box::new(metrics.default_balance_threshold.clone()))?;
        registry.register(Box::new(metrics.default_data_threshold.clone()))?;
        Ok(Telemetry { metrics: Some(Arc::new(metrics)) })
    }

    /// No metrics at all.
    pub fn disabled() -> Telemetry {
        Telemetry::default()
    }

    pub fn poll_started(&self) {
        if let Some(m) = &self.metrics {
            m.polls_in_flight.inc();
        }
    }

    pub fn poll_ended(&self) {
        if let Some(m) = &self.metrics {
            m.polls_in_flight.dec();
        }
    }

    pub fn observe_queue_wait(&self, wait: Duration) {
        if let Some(m) = &self.metrics {
            m.queue_wait.observe(wait.as_secs_f64());
        }
    }

    /// Lines entering (+) or leaving (−) back-off.
    pub fn add_backoff_lines(&self, delta: i64) {
        if let Some(m) = &self.metrics {
            m.backoff_lines.add(delta);
        }
    }

    /// Sets whether an account is locked out. Account series exist only for accounts that
    /// were ever locked out or rate limited, so 100,000 implicit accounts cost nothing.
    /// `account` is the account's name; for an implicit account (a line with its own
    /// `driver:`) that is the line name, so the series stay distinct.
    pub fn set_locked_out(&self, account: &str, driver: &str, locked: bool) {
        if let Some(m) = &self.metrics {
            m.locked_out.with_label_values(&[account, driver]).set(i64::from(locked));
        }
    }

    /// Records when an account's rate limit ends, in Unix seconds.
    pub fn set_rate_limited_until(&self, account: &str, driver: &str, unix_seconds: f64) {
        if let Some(m) = &self.metrics {
            m.rate_limited_until.with_label_values(&[account, driver]).set(unix_seconds);
        }
    }

    /// Observes how long one poll of `line` took. (Poll counts are the store's: see
    /// `Store::account_polls`.)
    pub fn observe_poll(&self, line: &Line, duration: Duration) {
        if let Some(m) = &self.metrics {
            let (operator, account) = account_key(line);
            m.poll_duration.with_label_values(&[&operator, &account]).observe(duration.as_secs_f64());
        }
    }

    /// Makes the per-account series match the accounts of a new plan: each account has its
    /// duration histogram from the start, accounts that left lose theirs, and the default
    /// thresholds are set anew.
    pub fn set_accounts(&self, keys: &HashSet<AccountKey>, defaults: &[(String, AlertThresholds)]) {
        let Some(m) = &self.metrics else { return };
        for (operator, account) in keys {
            m.poll_duration.with_label_values(&[operator, account]);
        }
        let mut known = m.account_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (operator, account) in known.iter() {
            if !keys.contains(&(operator.clone(), account.clone())) {
                let _ = m.poll_duration.remove_label_values(&[operator, account]);
            }
        }
        known.clone_from(keys);
        drop(known);
        m.default_balance_threshold.reset();
        m.default_data_threshold.reset();
        for (account, alert) in defaults {
            if let Some(balance) = alert.balance_below {
                m.default_balance_threshold.with_label_values(&[account]).set(balance);
            }
            if let Some(data) = alert.data_below {
                m.default_data_threshold.with_label_values(&[account]).set(data.bytes() as f64);
            }
        }
    }

    /// Drops the series of an account that left the config.
    pub fn forget_account(&self, account: &str, driver: &str) {
        if let Some(m) = &self.metrics {
            let labels = [account, driver];
            // Absent series are fine: the account may never have had one.
            let _ = m.locked_out.remove_label_values(&labels);
            let _ = m.rate_limited_until.remove_label_values(&labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    /// `name{labels} value` for every sample of the registry, sorted, in text format.
    fn samples(registry: &Registry) -> Vec<String> {
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut out).expect("encodes");
        let mut lines: Vec<String> =
            String::from_utf8(out).expect("UTF-8").lines().filter(|l| !l.starts_with('#')).map(String::from).collect();
        lines.sort();
        lines
    }

    fn key(operator: &str, account: &str) -> AccountKey {
        (operator.to_string(), account.to_string())
    }

    #[test]
    fn accounts_get_histograms_and_default_thresholds_and_lose_them_when_they_leave() {
        let registry = Registry::new();
        let t = Telemetry::register(&registry).expect("registers");
        let alert = AlertThresholds { balance_below: Some(50.0), data_below: None };
        t.set_accounts(&[key("mts", "corp"), key("demo", "")].into_iter().collect(), &[("corp".into(), alert)]);
        let s = samples(&registry);
        assert!(
            s.contains(&"esim_poll_duration_seconds_count{account=\"corp\",operator=\"mts\"} 0".to_string()),
            "{s:#?}"
        );
        assert!(
            s.contains(&"esim_poll_duration_seconds_count{account=\"\",operator=\"demo\"} 0".to_string()),
            "{s:#?}"
        );
        assert!(s.contains(&"esim_default_balance_alert_threshold{account=\"corp\"} 50".to_string()), "{s:#?}");
        assert!(!s.iter().any(|l| l.starts_with("esim_default_data_remaining")), "unset thresholds have no series");

        let data = AlertThresholds { balance_below: None, data_below: Some(ByteSize(1_000)) };
        t.set_accounts(&[key("demo", "")].into_iter().collect(), &[(String::new(), data)]);
        let s = samples(&registry);
        assert!(!s.iter().any(|l| l.contains("account=\"corp\"")), "corp left: {s:#?}");
        assert!(
            s.contains(&"esim_default_data_remaining_alert_threshold_bytes{account=\"\"} 1000".to_string()),
            "{s:#?}"
        );
        assert!(!s.iter().any(|l| l.starts_with("esim_default_balance")), "thresholds are set anew: {s:#?}");
    }

    #[test]
    fn disabled_telemetry_ignores_everything() {
        let t = Telemetry::disabled();
        t.set_accounts(&[key("mts", "corp")].into_iter().collect(), &[]);
    }
}
