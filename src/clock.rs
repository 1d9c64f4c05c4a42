//! Wall-clock time behind a trait, so tests (and the paused tokio clock) control it.
//! Timers use `tokio::time::Instant`; timestamps in metrics use a [`Clock`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;
}

pub type SharedClock = Arc<dyn Clock>;

/// The real time of day.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Wall time that advances with tokio's clock from a fixed start: under a paused runtime
/// (`tokio::time::pause`) timestamps move exactly as far as the test advances time.
#[derive(Debug)]
pub struct TokioClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(base: SystemTime) -> TokioClock {
        TokioClock { base, start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }
}

/// Seconds since the Unix epoch as a float, the unit of every `*_timestamp_seconds` metric.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64()
}
