//! The JSON view of `/api/v1/lines`: a promise to API users, kept apart from internal types.
//! MSISDNs and ICCIDs are masked unless `expose_msisdn` is set.

use std::time::SystemTime;

use serde::Serialize;

use crate::clock::unix_seconds;
use crate::config::Global;
use crate::metrics::mask;
use crate::store::LineState;

#[derive(Debug, Serialize)]
pub struct LinesResponse {
    pub lines: Vec<LineView>,
}

#[derive(Debug, Serialize)]
pub struct LineView {
    pub name: String,
    pub operator: String,
    pub account: String,
    pub driver: &'static str,
    pub msisdn: Option<String>,
    pub iccid: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Values of the last successful poll; absent when unknown or stale.
    pub reading: Option<ReadingView>,
    pub last_success_timestamp: Option<f64>,
    pub last_poll_timestamp: Option<f64>,
    pub last_poll_success: Option<bool>,
    pub last_poll_duration_seconds: Option<f64>,
    pub last_error: Option<ErrorView>,
    pub polls_total: u64,
    pub thresholds: ThresholdView,
    /// True when a reported value is at or under its threshold.
    pub low: bool,
}

#[derive(Debug, Serialize)]
pub struct ReadingView {
    pub balance: Option<f64>,
    pub currency: Option<String>,
    pub data_remaining_bytes: Option<u64>,
    pub data_quota_bytes: Option<u64>,
    pub voice_remaining_seconds: Option<u64>,
    pub sms_remaining: Option<u64>,
    pub quota_expiry_timestamp: Option<f64>,
    pub plan: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ErrorView {
    pub reason: &'static str,
    pub message: String,
    pub timestamp: f64,
}

#[derive(Debug, Serialize)]
pub struct ThresholdView {
    pub balance_below: Option<f64>,
    pub data_below_bytes: Option<u64>,
}

impl LineView {
    pub fn new(state: &LineState, global: &Global, now: SystemTime) -> LineView {
        let line = &state.line;
        let shown = |value: Option<&str>| value.map(|v| if global.expose_msisdn { v.to_string() } else { mask(v) });
        let reading = state.fresh_reading(now, global.stale_after).map(|r| ReadingView {
            balance: r.balance.map(|b| b.amount),
            currency: r.balance.map(|b| b.currency.to_string()),
            data_remaining_bytes: r.data_remaining.map(|d| d.bytes()),
            data_quota_bytes: r.data_quota.map(|d| d.bytes()),
            voice_remaining_seconds: r.voice_remaining.map(|d| d.as_secs()),
            sms_remaining: r.sms_remaining,
            quota_expiry_timestamp: r.quota_expiry.map(unix_seconds),
            plan: r.plan.clone(),
        });
        LineView {
            name: line.name.clone(),
            operator: line.operator.to_string(),
            account: line.account.label().to_string(),
            driver: line.driver().name,
            msisdn: shown(line.msisdn.as_deref()),
            iccid: shown(line.iccid.as_deref()),
            labels: line.labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            low: is_low(state, global, now),
            reading,
            last_success_timestamp: state.last_success.map(unix_seconds),
            last_poll_timestamp: state.last_attempt.map(unix_seconds),
            last_poll_success: state.last_poll_ok,
            last_poll_duration_seconds: state.last_duration.map(|d| d.as_secs_f64()),
            last_error: state.last_error.as_ref().map(|e| ErrorView {
                reason: e.reason.as_str(),
                message: e.message.clone(),
                timestamp: unix_seconds(e.at),
            }),
            polls_total: state.polls_total,
            thresholds: ThresholdView {
                balance_below: line.alert.balance_below,
                data_below_bytes: line.alert.data_below.map(|d| d.bytes()),
            },
        }
    }
}

/// A line is low when a fresh reported value is at or under its threshold; a value the
/// operator does not report never makes a line low.
pub fn is_low(state: &LineState, global: &Global, now: SystemTime) -> bool {
    let Some(reading) = state.fresh_reading(now, global.stale_after) else { return false };
    let alert = &state.line.alert;
    let balance_low = matches!((reading.balance, alert.balance_below), (Some(b), Some(t)) if b.amount <= t);
    let data_low = matches!((reading.data_remaining, alert.data_below), (Some(d), Some(t)) if d <= t);
    balance_low || data_low
}
