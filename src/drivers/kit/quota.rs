//! The quota object of the IoT platforms (1NCE v1 `Quota`, emnify `EndpointQuota`) and how it
//! fills a [`Reading`].

use std::time::SystemTime;

use serde::Deserialize;

use super::decode::{mb, parse_rfc3339, Num};
use crate::drivers::contract::PollContext;
use crate::reading::Reading;

/// A quota (1NCE v1 `Quota`, emnify `EndpointQuota`): `volume` left (MB of data, or SMS),
/// `total_volume` (1NCE only), `expiry_date` in either date form.
#[derive(Deserialize, Debug)]
pub struct Quota {
    pub volume: Num,
    #[serde(default)]
    pub total_volume: Option<Num>,
    #[serde(default)]
    pub expiry_date: Option<String>,
    #[serde(default)]
    pub status: Option<QuotaStatus>,
}

#[derive(Deserialize, Debug)]
pub struct QuotaStatus {
    #[serde(default)]
    pub description: Option<String>,
}

impl Quota {
    /// Data left, total and expiry into `reading`. A negative `volume` (1NCE v2: "can be
    /// negative", usage past the quota) reads as 0 left, with a note.
    pub fn apply_data(&self, reading: &mut Reading, cx: &PollContext) {
        let volume = self.volume.0;
        if volume < 0.0 {
            cx.note(format!("data quota volume is negative ({volume:.3} MB: used past the quota); reported as 0 left"));
        }
        reading.data_remaining = Some(mb(volume));
        reading.data_quota = self.total_volume.filter(|t| t.0 > 0.0).map(|t| mb(t.0));
        reading.quota_expiry = self.expiry();
        if let Some(status) = self.status.as_ref().and_then(|s| s.description.as_deref()) {
            cx.note(format!("data quota status: {status}"));
        }
    }

    /// `volume` as a count (SMS), negative read as 0.
    pub fn remaining_count(&self, cx: &PollContext, what: &str) -> Option<u64> {
        let volume = self.volume.0;
        if volume < 0.0 {
            cx.note(format!("{what} quota volume is negative ({volume}); reported as 0 left"));
        }
        Some(volume.max(0.0).round() as u64)
    }

    /// `expiry_date`: `2033-03-09 07:59:09` (zone-less, UTC) or ISO 8601 (`…T…Z`, `+0000`).
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry_date.as_deref().and_then(parse_rfc3339)
    }
}
