//! `alert:` thresholds, which lines inherit from accounts and `global:`. Their own file, so that
//! the driver contract (which carries them on `Account` and `Line`) and `discover:` can share
//! them without importing each other.

use super::units::ByteSize;

/// `alert:` thresholds; exported as `esim_*_alert_threshold*` gauges for the alert rules.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AlertThresholds {
    pub balance_below: Option<f64>,
    pub data_below: Option<ByteSize>,
}

impl AlertThresholds {
    /// Fields set here win; unset ones come from `fallback`.
    pub fn or(self, fallback: AlertThresholds) -> AlertThresholds {
        AlertThresholds {
            balance_below: self.balance_below.or(fallback.balance_below),
            data_below: self.data_below.or(fallback.data_below),
        }
    }
}
