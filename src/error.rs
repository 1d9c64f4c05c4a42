//! `PollError`: why a poll failed. Its variants are exactly the `reason` label values of
//! `esim_poll_errors_total`, so the mapping from error to label is one `match`.

use std::fmt;
use std::time::Duration;

/// The `reason` label of a failed poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Auth,
    RateLimited,
    Timeout,
    Unavailable,
    BadResponse,
    Captcha,
    Modem,
    Config,
}

impl Reason {
    /// Every reason, in label order; `esim_poll_errors_total` pre-creates each at 0.
    pub const ALL: [Reason; 8] = [
        Reason::Auth,
        Reason::RateLimited,
        Reason::Timeout,
        Reason::Unavailable,
        Reason::BadResponse,
        Reason::Captcha,
        Reason::Modem,
        Reason::Config,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Auth => "auth",
            Reason::RateLimited => "rate_limited",
            Reason::Timeout => "timeout",
            Reason::Unavailable => "unavailable",
            Reason::BadResponse => "bad_response",
            Reason::Captcha => "captcha",
            Reason::Modem => "modem",
            Reason::Config => "config",
        }
    }

    /// Position in [`Reason::ALL`], for per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed poll. `Display` never contains credentials or full MSISDNs: drivers put only
/// operator-facing facts (status codes, field names) into the detail strings.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PollError {
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("rate limited by the operator{}", retry_after_text(*.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    #[error("poll timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("operator unavailable: {0}")]
    Unavailable(String),
    #[error("bad response: {0}")]
    BadResponse(String),
    #[error("operator demands a captcha: {0}")]
    Captcha(String),
    #[error("modem: {0}")]
    Modem(String),
    #[error("configuration: {0}")]
    Config(String),
}

fn retry_after_text(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(", retry after {}", humantime::format_duration(d)),
        None => String::new(),
    }
}

impl PollError {
    pub fn reason(&self) -> Reason {
        match self {
            PollError::Auth(_) => Reason::Auth,
            PollError::RateLimited { .. } => Reason::RateLimited,
            PollError::Timeout(_) => Reason::Timeout,
            PollError::Unavailable(_) => Reason::Unavailable,
            PollError::BadResponse(_) => Reason::BadResponse,
            PollError::Captcha(_) => Reason::Captcha,
            PollError::Modem(_) => Reason::Modem,
            PollError::Config(_) => Reason::Config,
        }
    }

    /// The delay the operator asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PollError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// The same error with `detail` appended to its message (an operator's error code, say);
    /// variants without a message are returned unchanged.
    pub fn with_detail(self, detail: &str) -> PollError {
        self.map_message(|m| m + detail)
    }

    /// The same error with `f` applied to its message (redaction); variants without a message
    /// are returned unchanged.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> PollError {
        let add = f;
        match self {
            PollError::Auth(m) => PollError::Auth(add(m)),
            PollError::Unavailable(m) => PollError::Unavailable(add(m)),
            PollError::BadResponse(m) => PollError::BadResponse(add(m)),
            PollError::Captcha(m) => PollError::Captcha(add(m)),
            PollError::Modem(m) => PollError::Modem(add(m)),
            PollError::Config(m) => PollError::Config(add(m)),
            e @ (PollError::RateLimited { .. } | PollError::Timeout(_)) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_index_matches_position_in_all() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn every_error_maps_to_its_reason_label() {
        let cases = [
            (PollError::Auth("x".into()), "auth"),
            (PollError::RateLimited { retry_after: None }, "rate_limited"),
            (PollError::Timeout(Duration::from_secs(1)), "timeout"),
            (PollError::Unavailable("x".into()), "unavailable"),
            (PollError::BadResponse("x".into()), "bad_response"),
            (PollError::Captcha("x".into()), "captcha"),
            (PollError::Modem("x".into()), "modem"),
            (PollError::Config("x".into()), "config"),
        ];
        for (err, label) in cases {
            assert_eq!(err.reason().as_str(), label);
        }
    }
}
