//! Sums of one poll's package remainders (voice, SMS, data) into a [`Reading`]: the arithmetic
//! every operator that lists packages shares. Drivers decide which packages count (active,
//! home, not rollover, not unlimited) and convert units; this adds them up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::units::ByteSize;
use crate::reading::Reading;

/// What a package counts, with the factor from the operator's unit to the reading's unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Seconds per unit.
    Voice(f64),
    Sms,
    /// Bytes per unit.
    Data(f64),
}

impl Kind {
    /// The factor to the reading's unit (1 for SMS).
    pub fn factor(self) -> f64 {
        match self {
            Kind::Voice(f) | Kind::Data(f) => f,
            Kind::Sms => 1.0,
        }
    }
}

/// Package ends at or after this instant (2037-01-01) are operators' "no end" sentinels.
pub const UNBOUNDED_END_SECS: u64 = 2_114_380_800;

/// Whether `end` is a real end rather than a "no end" sentinel.
pub fn is_bounded(end: SystemTime) -> bool {
    end < UNIX_EPOCH + Duration::from_secs(UNBOUNDED_END_SECS)
}

/// The running sums. A kind no package reported stays absent, never 0.
#[derive(Debug)]
pub struct Remainders {
    voice: Option<f64>,
    sms: Option<f64>,
    data: Option<f64>,
    /// Some while every data package so far gave its size.
    quota: Option<f64>,
    expiry: Option<SystemTime>,
}

impl Default for Remainders {
    fn default() -> Self {
        Remainders { voice: None, sms: None, data: None, quota: Some(0.0), expiry: None }
    }
}

impl Remainders {
    /// Adds one package; `current` and `total` are in the reading's unit (seconds, SMS, bytes).
    /// A negative remainder (overuse) counts as nothing left.
    pub fn add(&mut self, kind: Kind, current: f64, total: Option<f64>) {
        let current = current.max(0.0);
        match kind {
            Kind::Voice(_) => *self.voice.get_or_insert(0.0) += current,
            Kind::Sms => *self.sms.get_or_insert(0.0) += current,
            Kind::Data(_) => {
                *self.data.get_or_insert(0.0) += current;
                self.quota = self.quota.zip(total).map(|(q, t)| q + t);
            }
        }
    }

    /// A package ends at `end`: the reading's expiry is the earliest end.
    pub fn ends_at(&mut self, end: SystemTime) {
        self.expiry = Some(self.expiry.map_or(end, |e| e.min(end)));
    }

    /// The reading (balance unset); data quota only when every data package gave its size.
    pub fn into_reading(self) -> Reading {
        Reading {
            voice_remaining: self.voice.map(|s| Duration::from_secs(s.round() as u64)),
            sms_remaining: self.sms.map(|n| n.round() as u64),
            data_remaining: self.data.map(|b| ByteSize(b.round() as u64)),
            data_quota: self.data.and(self.quota).map(|b| ByteSize(b.round() as u64)),
            quota_expiry: self.expiry,
            ..Reading::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_by_kind_and_keeps_unreported_kinds_absent() {
        let mut r = Remainders::default();
        r.add(Kind::Data(1.0), 1_000.0, Some(2_000.0));
        r.add(Kind::Data(1.0), -5.0, Some(500.0));
        r.add(Kind::Voice(60.0), 90.0, None);
        let reading = r.into_reading();
        assert_eq!(reading.data_remaining, Some(ByteSize(1_000)));
        assert_eq!(reading.data_quota, Some(ByteSize(2_500)));
        assert_eq!(reading.voice_remaining, Some(Duration::from_secs(90)));
        assert_eq!((reading.sms_remaining, reading.quota_expiry), (None, None));
    }

    #[test]
    fn a_data_package_without_size_leaves_the_quota_unknown() {
        let mut r = Remainders::default();
        r.add(Kind::Data(1.0), 1.0, Some(10.0));
        r.add(Kind::Data(1.0), 1.0, None);
        r.add(Kind::Data(1.0), 1.0, Some(10.0));
        assert_eq!(r.into_reading().data_quota, None);
    }

    #[test]
    fn expiry_is_the_earliest_end_and_sentinels_are_not_ends() {
        let mut r = Remainders::default();
        let (early, late) = (UNIX_EPOCH + Duration::from_secs(100), UNIX_EPOCH + Duration::from_secs(200));
        r.ends_at(late);
        r.ends_at(early);
        assert_eq!(r.into_reading().quota_expiry, Some(early));
        assert!(is_bounded(late));
        assert!(!is_bounded(UNIX_EPOCH + Duration::from_secs(UNBOUNDED_END_SECS)));
    }
}
