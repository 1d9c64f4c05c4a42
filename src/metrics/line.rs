//! One line's series: which exist and with what value (a value the operator did not report is
//! absent, stale readings leave), written as one fragment per per-line family.

use std::time::{Duration, SystemTime};

use super::catalog::{self, LINE_FAMILY_COUNT};
use super::encode::{write_f64, write_label};
use crate::clock::unix_seconds;
use crate::config::Line;
use crate::drivers::kit::ids::{Iccid, Msisdn};
use crate::error::Reason;
use crate::store::LineState;

/// Rendering settings that come from `global:`; a change re-renders every line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub stale_after: Duration,
    pub expose_msisdn: bool,
}

/// A line's samples for every per-line family, compactly: the label prefix shared by all of
/// them once, then per sample only what differs (family labels and value). Family `i` holds
/// the records in `buf[offsets[i]..offsets[i + 1]]`; each record is a length-prefixed
/// label suffix (`,currency="RUB"`) and a length-prefixed value text. Storing the prefix once
/// keeps the cache about a third of the size of the text it expands to.
#[derive(Debug)]
pub struct Fragments {
    buf: Box<[u8]>,
    offsets: [u32; LINE_FAMILY_COUNT + 1],
}

impl Fragments {
    fn prefix(&self) -> &[u8] {
        &self.buf[..self.offsets[0] as usize]
    }

    fn records(&self, index: usize) -> &[u8] {
        &self.buf[self.offsets[index] as usize..self.offsets[index + 1] as usize]
    }

    /// Whether the line has a series in family `index`.
    pub fn has(&self, index: usize) -> bool {
        !self.records(index).is_empty()
    }

    /// Appends the line's samples of family `index`, named `name`, as exposition text.
    pub fn write_family(&self, index: usize, name: &str, out: &mut Vec<u8>) {
        let prefix = self.prefix();
        let mut records = self.records(index);
        while let Some((suffix, rest)) = take(records) {
            let Some((value, rest)) = take(rest) else { break };
            records = rest;
            out.extend_from_slice(name.as_bytes());
            if !prefix.is_empty() || !suffix.is_empty() {
                out.push(b'{');
                out.extend_from_slice(prefix);
                out.extend_from_slice(suffix);
                out.push(b'}');
            }
            out.push(b' ');
            out.extend_from_slice(value);
            out.push(b'\n');
        }
    }

    /// Bytes held, for memory accounting.
    pub fn size(&self) -> usize {
        self.buf.len() + std::mem::size_of::<Self>()
    }
}

/// Appends `bytes` with a LEB128 length in front.
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
}

/// Splits one `put` field off the front of `buf`.
fn take(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len = 0usize;
    let mut shift = 0;
    for (i, &b) in buf.iter().enumerate() {
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            let rest = &buf[i + 1..];
            return (len <= rest.len()).then(|| rest.split_at(len));
        }
        shift += 7;
        if shift >= usize::BITS {
            return None;
        }
    }
    None
}

/// Buffers reused across lines so that rendering a line allocates only its result.
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    suffix: Vec<u8>,
    value: Vec<u8>,
}

/// Renders every series of `state` at `now`.
pub fn render(state: &LineState, settings: Settings, now: SystemTime, scratch: &mut Scratch) -> Fragments {
    let line = &state.line;
    scratch.buf.clear();
    write_prefix(&mut scratch.buf, line);
    let mut w = Writer {
        has_prefix: !scratch.buf.is_empty(),
        out: &mut scratch.buf,
        suffix: &mut scratch.suffix,
        value: &mut scratch.value,
        offsets: [0; LINE_FAMILY_COUNT + 1],
        next: 0,
    };
    let fresh = state.fresh_reading(now, settings.stale_after);

    w.family(catalog::ESIM_BALANCE);
    if let Some(balance) = fresh.and_then(|r| r.balance) {
        w.sample(&[("currency", balance.currency.as_str())], balance.amount);
    }
    w.family(catalog::ESIM_DATA_REMAINING_BYTES);
    if let Some(bytes) = fresh.and_then(|r| r.data_remaining) {
        w.sample(&[], bytes.bytes() as f64);
    }
    w.family(catalog::ESIM_DATA_QUOTA_BYTES);
    if let Some(bytes) = fresh.and_then(|r| r.data_quota) {
        w.sample(&[], bytes.bytes() as f64);
    }
    w.family(catalog::ESIM_VOICE_REMAINING_SECONDS);
    if let Some(voice) = fresh.and_then(|r| r.voice_remaining) {
        w.sample(&[], voice.as_secs_f64());
    }
    w.family(catalog::ESIM_SMS_REMAINING);
    if let Some(sms) = fresh.and_then(|r| r.sms_remaining) {
        w.sample(&[], sms as f64);
    }
    w.family(catalog::ESIM_QUOTA_EXPIRY_TIMESTAMP_SECONDS);
    if let Some(expiry) = fresh.and_then(|r| r.quota_expiry) {
        w.sample(&[], unix_seconds(expiry));
    }

    w.family(catalog::ESIM_LINE_INFO);
    let shown = |id: Option<&str>, masked: fn(&str) -> String| {
        id.filter(|s| !s.is_empty()).map(|s| if settings.expose_msisdn { s.to_string() } else { masked(s) })
    };
    let msisdn = shown(line.msisdn.as_deref(), |s| Msisdn(s).masked());
    let iccid = shown(line.iccid.as_deref(), |s| Iccid(s).masked());
    let plan = fresh.and_then(|r| r.plan.as_deref()).unwrap_or("");
    w.sample(
        &[
            ("driver", line.driver().name),
            ("msisdn", msisdn.as_deref().unwrap_or("")),
            ("iccid", iccid.as_deref().unwrap_or("")),
            ("plan", plan),
        ],
        1.0,
    );

    // Only a failing line has this series: a healthy fleet costs nothing here, and the
    // reason is a label of the one series rather than eight counters per line (issue 15).
    w.family(catalog::ESIM_POLL_FAILING);
    if state.last_poll_ok == Some(false) {
        let reason = state.last_error.as_ref().map_or(Reason::Unavailable, |e| e.reason);
        w.sample(&[("reason", reason.as_str())], 1.0);
    }
    w.family(catalog::ESIM_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS);
    if let Some(at) = state.last_success {
        w.sample(&[], unix_seconds(at));
    }
    w.family(catalog::ESIM_SPENT_TOTAL);
    for m in &state.money {
        w.sample(&[("currency", m.currency.as_str())], m.spent);
    }
    w.family(catalog::ESIM_TOPPED_UP_TOTAL);
    for m in &state.money {
        w.sample(&[("currency", m.currency.as_str())], m.topped_up);
    }
    w.family(catalog::ESIM_DATA_USED_BYTES_TOTAL);
    if let Some(used) = state.data_used_bytes_total {
        w.sample(&[], used);
    }
    // Thresholds a line shares with its account are one esim_default_* series per account
    // (the exporter's own); only a line's own override is a series of its own.
    let defaults = line.account.alert;
    w.family(catalog::ESIM_BALANCE_ALERT_THRESHOLD);
    if let Some(threshold) = line.alert.balance_below.filter(|_| line.alert.balance_below != defaults.balance_below) {
        w.sample(&[], threshold);
    }
    w.family(catalog::ESIM_DATA_REMAINING_ALERT_THRESHOLD_BYTES);
    if let Some(threshold) = line.alert.data_below.filter(|_| line.alert.data_below != defaults.data_below) {
        w.sample(&[], threshold.bytes() as f64);
    }

    let offsets = w.finish();
    Fragments { buf: scratch.buf.as_slice().into(), offsets }
}

/// `line="…",operator="…",account="…"` and the line's labels; empty values are left out.
fn write_prefix(out: &mut Vec<u8>, line: &Line) {
    let fixed = [("line", line.name.as_str()), ("operator", &*line.operator), ("account", line.account.label())];
    debug_assert!(fixed.iter().map(|(n, _)| *n).eq(catalog::LINE_LABELS));
    for (name, value) in fixed.into_iter().chain(line.labels.iter()) {
        if !value.is_empty() {
            write_label(out, out.is_empty(), name, value);
        }
    }
}

/// Writes sample records family by family, in catalogue order, recording where each family
/// starts.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    has_prefix: bool,
    suffix: &'a mut Vec<u8>,
    value: &'a mut Vec<u8>,
    offsets: [u32; LINE_FAMILY_COUNT + 1],
    next: usize,
}

impl Writer<'_> {
    fn family(&mut self, name: &'static str) {
        debug_assert_eq!(catalog::line_families()[self.next].name, name, "catalogue order");
        self.offsets[self.next] = offset(self.out);
        self.next += 1;
    }

    /// A sample with the family labels `extra` (those with an empty value are left out).
    fn sample(&mut self, extra: &[(&str, &str)], value: f64) {
        self.value.clear();
        write_f64(self.value, value);
        self.record(extra);
    }

    fn record(&mut self, extra: &[(&str, &str)]) {
        self.suffix.clear();
        for (name, value) in extra {
            if !value.is_empty() {
                write_label(self.suffix, !self.has_prefix && self.suffix.is_empty(), name, value);
            }
        }
        put(self.out, self.suffix);
        put(self.out, self.value);
    }

    fn finish(mut self) -> [u32; LINE_FAMILY_COUNT + 1] {
        debug_assert_eq!(self.next, LINE_FAMILY_COUNT, "every per-line family rendered");
        self.offsets[LINE_FAMILY_COUNT] = offset(self.out);
        self.offsets
    }
}

fn offset(buf: &[u8]) -> u32 {
    // A line's fragments are a few kilobytes; u32 keeps the offsets table small.
    u32::try_from(buf.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::{put, take};

    #[test]
    fn length_prefixed_fields_round_trip() {
        for len in [0, 1, 127, 128, 300, 70_000] {
            let field = vec![b'x'; len];
            let mut buf = Vec::new();
            put(&mut buf, &field);
            put(&mut buf, b"next");
            let (got, rest) = take(&buf).expect("first field");
            assert_eq!(got, field.as_slice());
            assert_eq!(take(rest), Some((&b"next"[..], &b""[..])));
        }
        assert_eq!(take(&[0x85]), None, "truncated length");
        assert_eq!(take(&[3, b'a']), None, "truncated field");
    }
}
