//! The retry policy as pure arithmetic (no clock, no state): how long a line waits after
//! consecutive failures, what a 429 means for the line and its account, and how long an
//! authentication failure locks an account out. The numbers (also in `docs/POLLING.md`):
//!
//! * After the n-th consecutive failure a line retries in `min(1 min · 2^(n−1), cap)`, times a
//!   jitter factor in `[0.8, 1.2)`, where `cap = max(poll_interval, 1 h)`: 1, 2, 4, 8, 16, 32,
//!   60 min for a 15 min line. The jitter is a hash of the line name and n, so it is
//!   reproducible yet lines failing together do not retry together.
//! * `rate_limited`: the line retries no sooner than Retry-After (capped at 24 h) and no sooner
//!   than the failure delay; the whole account pauses for Retry-After (1 min without one),
//!   because a 429 is about the account, not the line.
//! * `auth`: the whole account stops for 6 h, then 12 h, then 24 h (the cap) for each further
//!   lock-out without a success in between. Any config reload ends every lock-out.
//! * A success resets the line's failure count (the line returns to its phase) and the
//!   account's lock-out count.
//!
//! Fast first retries cannot hammer an operator: the account's token bucket and concurrency
//! limit apply to retries like to any poll.

use std::time::Duration;

use super::spread::{mix, stable_hash};
use crate::error::PollError;

/// Delay after the first failure; doubles with each further consecutive failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The retry delay never exceeds `max(poll_interval, MIN_RETRY_CAP)` (before jitter).
pub const MIN_RETRY_CAP: Duration = Duration::from_secs(3600);
/// Jitter: the delay is multiplied by a factor in `[1 - JITTER, 1 + JITTER)`.
pub const JITTER: f64 = 0.2;
/// An operator's Retry-After is honoured up to this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long an account pauses after a 429 without Retry-After.
pub const DEFAULT_ACCOUNT_PAUSE: Duration = Duration::from_secs(60);
/// The first auth lock-out of an account; doubles per repeat.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(6 * 3600);
pub const MAX_LOCKOUT: Duration = Duration::from_secs(24 * 3600);

const JITTER_SEED: u64 = 0xa409_3822_299f_31d0;

/// The per-line input to the jitter, computed once per line.
pub fn jitter_seed(line: &str) -> u64 {
    stable_hash(line.as_bytes(), JITTER_SEED)
}

/// The jitter factor for the `failures`-th consecutive failure, in `[1 - JITTER, 1 + JITTER)`.
pub fn jitter_factor(seed: u64, failures: u32) -> f64 {
    let unit = (mix(seed ^ u64::from(failures)) >> 11) as f64 / (1u64 << 53) as f64;
    1.0 - JITTER + 2.0 * JITTER * unit
}

/// Delay before the next attempt after `failures` consecutive failures (1 = the first).
pub fn retry_delay(failures: u32, interval: Duration, seed: u64) -> Duration {
    let cap = interval.max(MIN_RETRY_CAP);
    // 2^20 minutes is far past any cap; the bound only keeps the shift in range.
    let doublings = failures.saturating_sub(1).min(20);
    let delay = FIRST_RETRY.saturating_mul(1 << doublings).min(cap);
    delay.mul_f64(jitter_factor(seed, failures.max(1)))
}

/// How long the whole account pauses after a 429.
pub fn account_pause(retry_after: Option<Duration>) -> Duration {
    retry_after.map_or(DEFAULT_ACCOUNT_PAUSE, |d| d.min(MAX_RETRY_AFTER))
}

/// Delay before the line's next attempt after `error`, its `failures`-th consecutive failure.
/// An auth lock-out is the account's business (see [`lockout`]) and comes on top of this.
pub fn next_attempt(error: &PollError, failures: u32, interval: Duration, seed: u64) -> Duration {
    let delay = retry_delay(failures, interval, seed);
    match error {
        PollError::RateLimited { retry_after } => delay.max(account_pause(*retry_after)),
        _ => delay,
    }
}

/// The length of an account's lock-out after `previous` lock-outs without a success between.
pub fn lockout(previous: u32) -> Duration {
    FIRST_LOCKOUT.saturating_mul(1 << previous.min(8)).min(MAX_LOCKOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    fn close(actual: Duration, nominal: Duration) -> bool {
        actual >= nominal.mul_f64(1.0 - JITTER) && actual < nominal.mul_f64(1.0 + JITTER)
    }

    #[test]
    fn retry_delay_doubles_from_one_minute_up_to_the_cap() {
        let seed = jitter_seed("gate-01");
        let interval = 15 * MIN;
        let nominal = [1, 2, 4, 8, 16, 32, 60, 60, 60].map(|m| m * MIN);
        for (i, want) in nominal.iter().enumerate() {
            let got = retry_delay(i as u32 + 1, interval, seed);
            assert!(close(got, *want), "failure {}: {got:?} vs {want:?}", i + 1);
        }
        assert!(close(retry_delay(u32::MAX, interval, seed), HOUR));
    }

    #[test]
    fn retry_delay_grows_strictly_until_the_cap_despite_jitter() {
        for line in ["a", "b", "router-7", "tracker-00042"] {
            let seed = jitter_seed(line);
            let delays: Vec<Duration> = (1..=6).map(|n| retry_delay(n, 15 * MIN, seed)).collect();
            assert!(delays.windows(2).all(|w| w[1] > w[0]), "{line}: {delays:?}");
        }
    }

    #[test]
    fn the_cap_is_the_poll_interval_when_that_is_longer_than_an_hour() {
        let seed = jitter_seed("daily");
        assert!(close(retry_delay(30, 24 * HOUR, seed), 24 * HOUR));
        assert!(close(retry_delay(30, 5 * MIN, seed), HOUR));
    }

    #[test]
    fn jitter_is_deterministic_bounded_and_differs_between_lines() {
        let factors: Vec<f64> = (0..1000).map(|i| jitter_factor(jitter_seed(&format!("line-{i}")), 1)).collect();
        assert!(factors.iter().all(|f| (0.8..1.2).contains(f)));
        assert_eq!(jitter_factor(42, 3), jitter_factor(42, 3));
        let low = factors.iter().filter(|f| **f < 1.0).count();
        assert!((400..=600).contains(&low), "jitter is lopsided: {low} of 1000 below 1");
    }

    #[test]
    fn rate_limited_retries_no_sooner_than_retry_after() {
        let seed = jitter_seed("gate-01");
        let err = |s| PollError::RateLimited { retry_after: Some(Duration::from_secs(s)) };
        assert_eq!(next_attempt(&err(600), 1, 15 * MIN, seed), 10 * MIN);
        // A short Retry-After does not shorten the failure delay.
        assert!(close(next_attempt(&err(1), 3, 15 * MIN, seed), 4 * MIN));
        // Absurd values are capped.
        assert_eq!(next_attempt(&err(10_000_000), 1, 15 * MIN, seed), 24 * HOUR);
        assert_eq!(account_pause(None), MIN);
        assert_eq!(account_pause(Some(Duration::from_secs(5))), Duration::from_secs(5));
    }

    #[test]
    fn other_failures_use_the_plain_retry_delay() {
        let seed = jitter_seed("x");
        let err = PollError::Unavailable("503".into());
        assert_eq!(next_attempt(&err, 2, HOUR, seed), retry_delay(2, HOUR, seed));
    }

    #[test]
    fn lockouts_last_six_hours_then_double_up_to_a_day() {
        assert_eq!(lockout(0), 6 * HOUR);
        assert_eq!(lockout(1), 12 * HOUR);
        assert_eq!(lockout(2), 24 * HOUR);
        assert_eq!(lockout(3), 24 * HOUR);
        assert_eq!(lockout(u32::MAX), 24 * HOUR);
    }
}
