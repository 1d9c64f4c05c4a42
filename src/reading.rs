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
