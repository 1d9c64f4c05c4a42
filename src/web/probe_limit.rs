//! `/probe` polls an operator now: each call costs a request against the account's rate limit
//! (and, with a wrong password, a failed login). So a line is probed at most once per
//! interval, whoever asks; names that are not configured never get an entry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One probe per line per this interval; Prometheus probes a target once per scrape interval.
pub const PROBE_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Past this many entries, old ones are dropped (lines removed by a reload).
const PRUNE_AT: usize = 4096;

#[derive(Debug)]
pub struct ProbeLimiter {
    interval: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl ProbeLimiter {
    pub fn new(interval: Duration) -> ProbeLimiter {
        ProbeLimiter { interval, last: Mutex::new(HashMap::new()) }
    }

    /// Takes the line's turn, or says how long until its next one.
    pub fn try_start(&self, line: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = last.get(line) {
            let next = *at + self.interval;
            if next > now {
                return Err(next - now);
            }
        }
        if last.len() >= PRUNE_AT {
            let interval = self.interval;
            last.retain(|_, at| now.duration_since(*at) < interval);
        }
        last.insert(line.to_owned(), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_probe_per_line_per_interval() {
        let limiter = ProbeLimiter::new(Duration::from_secs(1));
        assert!(limiter.try_start("a").is_ok());
        assert!(limiter.try_start("b").is_ok(), "lines are limited separately");
        let wait = limiter.try_start("a").unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(limiter.try_start("a").is_ok());
    }
}
