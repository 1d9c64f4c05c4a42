//! What the IoT platform mocks (`onence.rs`, `emnify.rs`, `airalo.rs`, `hologram.rs`,
//! `tinyiot.rs`) share: the fleet a platform lists — the test's generated lines in fleet mode
//! ([`super::MockOperator::set_lines`]), else a few fixed SIMs whose answers are fixtures —
//! and per-SIM values that differ between SIMs but not between runs.

use super::{base64, Ctx, MockRequest};

/// A SIM as the platform lists it.
#[derive(Clone, Debug)]
pub struct Sim {
    /// Position in the listing, from 0.
    pub index: usize,
    pub iccid: String,
    /// Digits, no `+`.
    pub msisdn: String,
}

impl Sim {
    /// The platform's label of the SIM (`tracker-1`, …).
    pub fn label(&self) -> String {
        format!("tracker-{}", self.index + 1)
    }

    /// Every tenth SIM is switched off.
    pub fn enabled(&self) -> bool {
        !(self.index + 1).is_multiple_of(10)
    }
}

/// True when the test generated a fleet (answers are then computed, not fixtures).
pub fn fleet_mode(cx: &Ctx<'_>) -> bool {
    cx.fleet_size() > 0
}

/// Whether `iccid` is a SIM of the platform (cheap in fleet mode: no copy of the fleet).
pub fn known(cx: &Ctx<'_>, iccid: &str, fixed: &[&str]) -> bool {
    if fleet_mode(cx) {
        cx.fleet_index(iccid).is_some()
    } else {
        fixed.contains(&iccid)
    }
}

/// The SIMs the platform lists: the generated fleet, or `fixed` ICCIDs.
pub fn fleet(cx: &Ctx<'_>, fixed: &[&str]) -> Vec<Sim> {
    let lines = cx.lines();
    if lines.is_empty() {
        return fixed
            .iter()
            .enumerate()
            .map(|(index, iccid)| Sim {
                index,
                iccid: iccid.to_string(),
                msisdn: format!("88228510000{:04}", index + 1),
            })
            .collect();
    }
    lines.into_iter().enumerate().map(|(index, l)| Sim { index, iccid: l.iccid, msisdn: l.msisdn }).collect()
}

/// A value in `base .. base + range` that depends only on `key`, rounded to 2 decimals.
pub fn spread(key: &str, base: f64, range: f64) -> f64 {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    ((base + range * ((h % 1000) as f64 / 1000.0)) * 100.0).round() / 100.0
}

/// `page` (from 1) of `items` in pages of `size`, and the number of pages (at least 1).
pub fn page_of<T: Clone>(items: &[T], page: usize, size: usize) -> (Vec<T>, usize) {
    let size = size.max(1);
    let pages = items.len().div_ceil(size).max(1);
    let start = page.saturating_sub(1).saturating_mul(size);
    (items.iter().skip(start).take(size).cloned().collect(), pages)
}

/// A query parameter as a number.
pub fn number(r: &MockRequest, key: &str, default: usize) -> usize {
    r.query(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Whether the request carries `Authorization: Basic` with the operator's credentials.
pub fn basic_ok(cx: &Ctx<'_>, r: &MockRequest) -> bool {
    let (user, secret) = cx.credentials();
    r.header("authorization") == Some(format!("Basic {}", base64(format!("{user}:{secret}").as_bytes())).as_str())
}

/// A JSON string literal.
pub fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}
