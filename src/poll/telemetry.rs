//! The scheduler's own metrics, created once and registered in the registry the caller passes
//! to `Scheduler::start`; never registered per poll. `--once` runs without them.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{GaugeVec, Histogram, HistogramOpts, IntGauge, IntGaugeVec, Opts, Registry};

use crate::metrics::catalog;
pub use crate::metrics::catalog::{
    ESIM_ACCOUNT_LOCKED_OUT as ACCOUNT_LOCKED_OUT,
    ESIM_ACCOUNT_RATE_LIMITED_UNTIL_TIMESTAMP_SECONDS as ACCOUNT_RATE_LIMITED_UNTIL,
    ESIM_SCHEDULER_BACKOFF_LINES as BACKOFF_LINES, ESIM_SCHEDULER_POLLS_IN_FLIGHT as POLLS_IN_FLIGHT,
    ESIM_SCHEDULER_QUEUE_WAIT_SECONDS as QUEUE_WAIT_SECONDS,
};

/// HELP text from the catalogue, the one place it is written.
fn help(name: &str) -> String {
    catalog::find(name).map_or_else(|| name.to_string(), |f| f.help.to_string())
}

/// Waits range from nothing (idle) to many minutes (a slow `rate_limit` with many lines).
const QUEUE_WAIT_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

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
        };
        registry.register(Box::new(metrics.polls_in_flight.clone()))?;
        registry.register(Box::new(metrics.queue_wait.clone()))?;
        registry.register(Box::new(metrics.backoff_lines.clone()))?;
        registry.register(Box::new(metrics.locked_out.clone()))?;
        registry.register(Box::new(metrics.rate_limited_until.clone()))?;
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
