//! `Reading`: what one successful poll learned about a line. The boundary type between drivers
//! and the rest of the exporter: plain data, every field optional, units in names and types.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::config::units::ByteSize;

/// An ISO 4217 currency code (three upper-case ASCII letters).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const RUB: Currency = Currency(*b"RUB");
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");

    /// Parses a currency code; lower case is accepted and normalised.
    pub fn parse(code: &str) -> Option<Currency> {
        let bytes = code.trim().as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let mut out = [0u8; 3];
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = b.to_ascii_uppercase();
        }
        Some(Currency(out))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored (see `parse` and the constants).
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// A balance: an amount in currency units (rubles, not kopecks) with its currency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Money {
    pub amount: f64,
    pub currency: Currency,
}

/// The latest values a driver read for one line. A value the operator does not report stays
/// `None`; the exporter never turns a missing value into 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    pub balance: Option<Money>,
    pub data_remaining: Option<ByteSize>,
    pub data_quota: Option<ByteSize>,
    pub voice_remaining: Option<Duration>,
    pub sms_remaining: Option<u64>,
    /// When the current package (quota) ends.
    pub quota_expiry: Option<SystemTime>,
    pub plan: Option<String>,
}

/// Bounds past which a value an operator reported is not a fact about a SIM but a bug, an
/// overflow or a hostile answer (`1e308` bytes, a balance that makes spend counters infinite,
/// an expiry in the year 3,000,000). Such a reading is a `bad_response`, never a number.
pub mod plausible {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// A balance beyond ± a trillion currency units.
    pub const MAX_ABS_BALANCE: f64 = 1e12;
    /// Data beyond one petabyte (10^15 bytes).
    pub const MAX_DATA_BYTES: u64 = 1_000_000_000_000_000;
    /// Voice beyond ten years of talk.
    pub const MAX_VOICE: Duration = Duration::from_secs(10 * 366 * 86_400);
    /// A billion SMS.
    pub const MAX_SMS: u64 = 1_000_000_000;
    /// Expiries after 2200-01-01.
    pub const MAX_EXPIRY_UNIX_SECONDS: u64 = 7_258_118_400;
    /// Plan names longer than this are cut (at a character boundary) before they become a
    /// label value: a 4 MB `plan` from a platform must not become a 4 MB label.
    pub const MAX_PLAN_CHARS: usize = 200;

    pub(super) fn expiry(t: SystemTime) -> bool {
        t.duration_since(UNIX_EPOCH).is_ok_and(|d| d.as_secs() <= MAX_EXPIRY_UNIX_SECONDS)
    }
}

impl Reading {
    /// The reading with its plan name cut to [`plausible::MAX_PLAN_CHARS`], or why it cannot be
    /// believed (the first value out of [`plausible`] bounds).
    pub fn checked(mut self) -> Result<Reading, String> {
        use plausible::*;
        if let Some(b) = self.balance {
            if !b.amount.is_finite() || b.amount.abs() > MAX_ABS_BALANCE {
                return Err(format!("implausible balance {} {}", b.amount, b.currency));
            }
        }
        for (what, value) in [("data remaining", self.data_remaining), ("data quota", self.data_quota)] {
            if let Some(v) = value.filter(|v| v.bytes() > MAX_DATA_BYTES) {
                return Err(format!("implausible {what} of {} bytes", v.bytes()));
            }
        }
        if let Some(v) = self.voice_remaining.filter(|v| *v > MAX_VOICE) {
            return Err(format!("implausible voice remaining of {} s", v.as_secs()));
        }
        if let Some(v) = self.sms_remaining.filter(|v| *v > MAX_SMS) {
            return Err(format!("implausible SMS remaining: {v}"));
        }
        if self.quota_expiry.is_some_and(|t| !plausible::expiry(t)) {
            return Err("implausible package expiry (before 1970 or after 2200)".into());
        }
        if let Some(plan) = &mut self.plan {
            if let Some((cut, _)) = plan.char_indices().nth(MAX_PLAN_CHARS) {
                plan.truncate(cut);
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Reading)) -> Result<Reading, String> {
        let mut r = Reading::default();
        f(&mut r);
        r.checked()
    }

    #[test]
    fn values_past_the_bounds_are_refused_with_what_was_wrong() {
        let rub = |amount| Some(Money { amount, currency: Currency::RUB });
        type Set<'a> = Box<dyn FnOnce(&mut Reading) + 'a>;
        let cases: [(&str, Set); 8] = [
            ("balance inf", Box::new(|r| r.balance = rub(f64::INFINITY))),
            ("balance nan", Box::new(|r| r.balance = rub(f64::NAN))),
            ("balance 1.7e308", Box::new(|r| r.balance = rub(-1.7e308))),
            ("data 2^64-1", Box::new(|r| r.data_remaining = Some(ByteSize(u64::MAX)))),
            ("quota", Box::new(|r| r.data_quota = Some(ByteSize(plausible::MAX_DATA_BYTES + 1)))),
            ("voice", Box::new(|r| r.voice_remaining = Some(Duration::from_secs(u64::MAX / 2)))),
            ("sms", Box::new(|r| r.sms_remaining = Some(u64::MAX))),
            (
                "expiry in the year 3,000,000",
                Box::new(|r| {
                    r.quota_expiry = std::time::UNIX_EPOCH.checked_add(Duration::from_secs(94_670_000_000_000))
                }),
            ),
        ];
        for (case, set) in cases {
            let err = with(set).expect_err(case);
            assert!(err.starts_with("implausible"), "{case}: {err}");
        }
    }

    #[test]
    fn ordinary_values_pass_and_a_huge_plan_is_cut_at_a_character() {
        let r = with(|r| {
            r.balance = Some(Money { amount: -1500.25, currency: Currency::RUB });
            r.data_remaining = Some(ByteSize(50 * 1024 * 1024 * 1024));
            r.quota_expiry = Some(std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000));
            r.plan = Some("Тариф".repeat(1_000_000));
        })
        .unwrap();
        assert_eq!(r.plan.as_ref().unwrap().chars().count(), plausible::MAX_PLAN_CHARS);
        assert_eq!(r.balance.unwrap().amount, -1500.25);
    }
}
