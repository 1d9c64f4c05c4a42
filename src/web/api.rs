//! The JSON view of `/api/v1/lines`: a promise to API users, kept apart from internal types.
//! MSISDNs and ICCIDs are masked unless `expose_msisdn` is set.
//!
//! Readers never work under the store's lock: [`snapshot`] copies what a row needs (an `Arc`
//! of the line and a few small values) under one short read lock; filtering, sorting, paging
//! and building the views of one page happen on that copy.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::clock::unix_seconds;
use crate::config::{Global, Line};
use crate::drivers::kit::ids::{Iccid, Msisdn};
use crate::reading::Reading;
use crate::store::{LastError, LineState, Store};

/// Rows per page when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest `limit` accepted: no request ships a whole 100,000-line fleet at once.
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Serialize)]
pub struct LinesResponse {
    /// Lines that match the filters (before paging).
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// The whole fleet, whatever the filters.
    pub summary: Summary,
    pub lines: Vec<LineView>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub lines: usize,
    /// Never polled yet (since start or since the line was added).
    pub pending: usize,
    pub failing: usize,
    pub low_balance: usize,
    pub low_data: usize,
    /// Sum of fresh balances per currency, sorted by currency code.
    pub balances: Vec<CurrencyTotal>,
    pub operators: Vec<String>,
    pub accounts: Vec<String>,
    pub generated_at: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CurrencyTotal {
    pub currency: String,
    pub total: f64,
    pub lines: usize,
}

#[derive(Debug, Serialize)]
pub struct LineView {
    pub name: String,
    pub operator: String,
    pub account: String,
    pub driver: &'static str,
    pub msisdn: Option<String>,
    pub iccid: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Values of the last successful poll; absent when unknown or stale.
    pub reading: Option<ReadingView>,
    pub last_success_timestamp: Option<f64>,
    pub last_poll_timestamp: Option<f64>,
    pub last_poll_success: Option<bool>,
    pub last_poll_duration_seconds: Option<f64>,
    pub last_error: Option<ErrorView>,
    pub polls_total: u64,
    pub thresholds: ThresholdView,
    /// `ok`, `failing` (the last poll failed) or `pending` (never polled).
    pub state: &'static str,
    /// True when a reported value is at or under its threshold.
    pub low: bool,
    pub low_balance: bool,
    pub low_data: bool,
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

/// `/api/v1/line?line=NAME`: one line and its recent polls.
#[derive(Debug, Serialize)]
pub struct LineDetail {
    pub line: LineView,
    pub history: HistoryView,
}

#[derive(Debug, Serialize)]
pub struct HistoryView {
    /// The most polls kept per line (`store::history::HISTORY_LEN`).
    pub capacity: usize,
    /// Oldest first; empty until the line's first poll (and after a restart: memory only).
    pub polls: Vec<PollView>,
}

#[derive(Debug, Serialize)]
pub struct PollView {
    /// Unix seconds (whole seconds).
    pub timestamp: f64,
    pub success: bool,
    pub reason: Option<&'static str>,
    /// As kept in memory: `f32`, about 7 significant digits.
    pub balance: Option<f32>,
    pub data_remaining_bytes: Option<u64>,
}

/// One line and its history: copied under one short read lock, built after it; `None` for a
/// name the store does not hold.
pub fn line_detail(store: &Store, global: &Global, name: &str, now: SystemTime) -> Option<LineDetail> {
    let (row, history) = {
        let view = store.view();
        let state = view.get(name)?;
        (Row::of(state, global, now), state.history.clone())
    };
    let polls = history
        .iter()
        .flat_map(|h| h.polls())
        .map(|p| PollView {
            timestamp: unix_seconds(p.at),
            success: p.failure.is_none(),
            reason: p.failure.map(|r| r.as_str()),
            balance: p.balance,
            data_remaining_bytes: p.data_remaining_bytes.map(|d| d as u64),
        })
        .collect();
    Some(LineDetail {
        line: LineView::from_row(&row, global),
        history: HistoryView { capacity: crate::store::history::HISTORY_LEN, polls },
    })
}

/// What one row needs, copied out of the store.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: Arc<Line>,
    /// The last reading while fresh (`stale_after`); a stale reading shows as unknown.
    pub reading: Option<Reading>,
    pub last_success: Option<SystemTime>,
    pub last_attempt: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    pub last_poll_ok: Option<bool>,
    pub last_error: Option<LastError>,
    pub polls_total: u64,
    pub low_balance: bool,
    pub low_data: bool,
}

impl Row {
    pub fn of(state: &LineState, global: &Global, now: SystemTime) -> Row {
        let reading = state.fresh_reading(now, global.stale_after).cloned();
        let alert = &state.line.alert;
        let low_balance = matches!(
            (reading.as_ref().and_then(|r| r.balance), alert.balance_below),
            (Some(b), Some(t)) if b.amount <= t
        );
        let low_data = matches!(
            (reading.as_ref().and_then(|r| r.data_remaining), alert.data_below),
            (Some(d), Some(t)) if d <= t
        );
        Row {
            line: state.line.clone(),
            reading,
            last_success: state.last_success,
            last_attempt: state.last_attempt,
            last_duration: state.last_duration,
            last_poll_ok: state.last_poll_ok,
            last_error: state.last_error.clone(),
            polls_total: state.polls_total,
            low_balance,
            low_data,
        }
    }

    pub fn low(&self) -> bool {
        self.low_balance || self.low_data
    }

    pub fn state(&self) -> LineStatus {
        match self.last_poll_ok {
            None => LineStatus::Pending,
            Some(false) => LineStatus::Failing,
            Some(true) => LineStatus::Ok,
        }
    }

    fn balance(&self) -> Option<f64> {
        self.reading.as_ref().and_then(|r| r.balance).map(|b| b.amount)
    }

    fn data(&self) -> Option<u64> {
        self.reading.as_ref().and_then(|r| r.data_remaining).map(|d| d.bytes())
    }

    fn expiry(&self) -> Option<SystemTime> {
        self.reading.as_ref().and_then(|r| r.quota_expiry)
    }

    fn matches_text(&self, needle: &str) -> bool {
        let line = &self.line;
        let has = |hay: &str| hay.to_lowercase().contains(needle);
        has(&line.name)
            || has(&line.operator)
            || has(line.account.label())
            || line.labels.iter().any(|(_, v)| has(v))
            || self.reading.as_ref().and_then(|r| r.plan.as_deref()).is_some_and(has)
            || self.last_error.as_ref().is_some_and(|e| has(e.reason.as_str()))
    }
}

/// Lines copied per read lock: a poll waiting to record its result waits for at most this
/// many rows, not for a whole fleet.
const SNAPSHOT_CHUNK: usize = 4096;

/// Copies every line, a chunk per read lock. Each row is one line's consistent state; rows
/// of different chunks may be a few polls apart. A reload that changes the set of lines
/// between chunks starts the copy over, so no line is missed or copied twice.
pub fn snapshot(store: &Store, global: &Global, now: SystemTime) -> Vec<Row> {
    'copy: loop {
        let mut rows = Vec::new();
        let mut layout = None;
        loop {
            let view = store.view();
            if *layout.get_or_insert(view.layout()) != view.layout() {
                continue 'copy;
            }
            rows.reserve_exact(view.len() - rows.len());
            let end = view.len().min(rows.len() + SNAPSHOT_CHUNK);
            let chunk = (rows.len()..end).filter_map(|i| view.at(i)).map(|state| Row::of(state, global, now));
            rows.extend(chunk);
            if rows.len() >= view.len() {
                return rows;
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineStatus {
    Ok,
    Failing,
    Pending,
}

impl LineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LineStatus::Ok => "ok",
            LineStatus::Failing => "failing",
            LineStatus::Pending => "pending",
        }
    }
}

/// Columns rows sort by (`sort=balance`, `sort=-balance` for descending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Operator,
    Account,
    Balance,
    Data,
    Expiry,
    LastSuccess,
    Status,
}

impl SortKey {
    pub const ALL: [(&'static str, SortKey); 8] = [
        ("name", SortKey::Name),
        ("operator", SortKey::Operator),
        ("account", SortKey::Account),
        ("balance", SortKey::Balance),
        ("data", SortKey::Data),
        ("expiry", SortKey::Expiry),
        ("last_success", SortKey::LastSuccess),
        ("status", SortKey::Status),
    ];

    pub fn as_str(self) -> &'static str {
        SortKey::ALL.iter().find(|(_, k)| *k == self).map_or("name", |(n, _)| n)
    }
}

/// `state=`: which lines to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    Failing,
    Low,
    Pending,
}

/// The query of `/api/v1/lines` (and of the status page's first page).
#[derive(Clone, Debug, PartialEq)]
pub struct LinesQuery {
    pub limit: usize,
    pub offset: usize,
    pub sort: SortKey,
    pub descending: bool,
    /// Lower-cased; matches name, operator, account, label values, plan, error reason.
    pub q: Option<String>,
    pub operator: Option<String>,
    pub account: Option<String>,
    pub state: Option<StateFilter>,
}

impl Default for LinesQuery {
    fn default() -> Self {
        LinesQuery {
            limit: DEFAULT_LIMIT,
            offset: 0,
            sort: SortKey::Name,
            descending: false,
            q: None,
            operator: None,
            account: None,
            state: None,
        }
    }
}

impl LinesQuery {
    /// Parses the query parameters; a bad value is an error message for a 400. Unknown
    /// parameters are ignored (cache busters, a proxy's own parameters).
    pub fn parse(params: &HashMap<String, String>) -> Result<LinesQuery, String> {
        let mut query = LinesQuery::default();
        let non_empty = |key: &str| params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        if let Some(limit) = non_empty("limit") {
            query.limit = match limit.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(format!("invalid `limit` `{limit}`: expected a whole number from 1 to {MAX_LIMIT}")),
            };
        }
        if let Some(offset) = non_empty("offset") {
            query.offset =
                offset.parse().map_err(|_| format!("invalid `offset` `{offset}`: expected a whole number from 0"))?;
        }
        if let Some(sort) = non_empty("sort") {
            let (descending, name) = match sort.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, sort),
            };
            let Some(&(_, key)) = SortKey::ALL.iter().find(|(n, _)| *n == name) else {
                let known: Vec<&str> = SortKey::ALL.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "invalid `sort` `{sort}`: expected one of {} (prefix `-` for descending)",
                    known.join(", ")
                ));
            };
            query.sort = key;
            query.descending = descending;
        }
        query.q = non_empty("q").map(str::to_lowercase);
        query.operator = non_empty("operator").map(str::to_string);
        query.account = non_empty("account").map(str::to_string);
        if let Some(state) = non_empty("state") {
            query.state = Some(match state {
                "failing" => StateFilter::Failing,
                "low" => StateFilter::Low,
                "pending" => StateFilter::Pending,
                _ => return Err(format!("invalid `state` `{state}`: expected failing, low or pending")),
            });
        }
        Ok(query)
    }

    /// Whether any filter is set (without one, every row is kept).
    pub fn filters(&self) -> bool {
        self.q.is_some() || self.operator.is_some() || self.account.is_some() || self.state.is_some()
    }

    pub(super) fn keeps(&self, row: &Row) -> bool {
        self.operator.as_deref().is_none_or(|o| *row.line.operator == *o)
            && self.account.as_deref().is_none_or(|a| row.line.account.label() == a)
            && match self.state {
                None => true,
                Some(StateFilter::Failing) => row.state() == LineStatus::Failing,
                Some(StateFilter::Pending) => row.state() == LineStatus::Pending,
                Some(StateFilter::Low) => row.low(),
            }
            && self.q.as_deref().is_none_or(|q| row.matches_text(q))
    }

    /// The matching rows in order, and how many matched before paging.
    pub fn page<'a>(&self, rows: &'a [Row]) -> (Vec<&'a Row>, usize) {
        let mut kept: Vec<&Row> = rows.iter().filter(|r| self.keeps(r)).collect();
        let total = kept.len();
        kept.sort_by(|a, b| self.compare(a, b));
        let page = kept.into_iter().skip(self.offset).take(self.limit).collect();
        (page, total)
    }

    /// Orders by the sort key (descending when asked); lines without the value come last
    /// either way; ties by name.
    pub(super) fn compare(&self, a: &Row, b: &Row) -> Ordering {
        fn missing_last<T>(x: Option<T>, y: Option<T>, desc: bool, cmp: impl Fn(&T, &T) -> Ordering) -> Ordering {
            match (x, y) {
                (Some(x), Some(y)) => {
                    let o = cmp(&x, &y);
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        }
        let d = self.descending;
        let flip = |o: Ordering| if d { o.reverse() } else { o };
        let primary = match self.sort {
            SortKey::Name => Ordering::Equal,
            SortKey::Operator => flip(a.line.operator.cmp(&b.line.operator)),
            SortKey::Account => flip(a.line.account.label().cmp(b.line.account.label())),
            SortKey::Balance => missing_last(a.balance(), b.balance(), d, |x, y| x.total_cmp(y)),
            SortKey::Data => missing_last(a.data(), b.data(), d, Ord::cmp),
            SortKey::Expiry => missing_last(a.expiry(), b.expiry(), d, Ord::cmp),
            SortKey::LastSuccess => missing_last(a.last_success, b.last_success, d, Ord::cmp),
            SortKey::Status => flip(status_rank(a).cmp(&status_rank(b))),
        };
        let by_name = a.line.name.cmp(&b.line.name);
        primary.then(if self.sort == SortKey::Name { flip(by_name) } else { by_name })
    }
}

/// Worst first: failing, low, pending, ok.
fn status_rank(row: &Row) -> u8 {
    match (row.state(), row.low()) {
        (LineStatus::Failing, _) => 0,
        (_, true) => 1,
        (LineStatus::Pending, _) => 2,
        (LineStatus::Ok, _) => 3,
    }
}

/// The tiles of the status page, over the whole fleet.
pub fn summarize(rows: &[Row], now: SystemTime) -> Summary {
    let mut summary = Summary { lines: rows.len(), generated_at: unix_seconds(now), ..Summary::default() };
    let mut balances: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut operators = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    for row in rows {
        match row.state() {
            LineStatus::Pending => summary.pending += 1,
            LineStatus::Failing => summary.failing += 1,
            LineStatus::Ok => {}
        }
        summary.low_balance += usize::from(row.low_balance);
        summary.low_data += usize::from(row.low_data);
        if let Some(money) = row.reading.as_ref().and_then(|r| r.balance) {
            let entry = balances.entry(money.currency.to_string()).or_default();
            entry.0 += money.amount;
            entry.1 += 1;
        }
        operators.insert(&*row.line.operator);
        let account = row.line.account.label();
        if !account.is_empty() {
            accounts.insert(account);
        }
    }
    summary.balances =
        balances.into_iter().map(|(currency, (total, lines))| CurrencyTotal { currency, total, lines }).collect();
    summary.operators = operators.into_iter().map(str::to_string).collect();
    summary.accounts = accounts.into_iter().map(str::to_string).collect();
    summary
}

/// One page of the API answer, built from a snapshot.
pub fn respond(rows: &[Row], query: &LinesQuery, global: &Global, now: SystemTime) -> LinesResponse {
    let (page, total) = query.page(rows);
    LinesResponse::of_page(&page, total, query, summarize(rows, now), global)
}

impl LinesResponse {
    /// The answer for `page`, one of `total` matching rows.
    pub fn of_page(
        page: &[&Row],
        total: usize,
        query: &LinesQuery,
        summary: Summary,
        global: &Global,
    ) -> LinesResponse {
        LinesResponse {
            total,
            offset: query.offset,
            limit: query.limit,
            summary,
            lines: page.iter().map(|row| LineView::from_row(row, global)).collect(),
        }
    }
}

impl LineView {
    pub fn new(state: &LineState, global: &Global, now: SystemTime) -> LineView {
        LineView::from_row(&Row::of(state, global, now), global)
    }

    pub fn from_row(row: &Row, global: &Global) -> LineView {
        let line = &row.line;
        let shown = |value: Option<&str>, masked: fn(&str) -> String| {
            value.map(|v| if global.expose_msisdn { v.to_string() } else { masked(v) })
        };
        let reading = row.reading.as_ref().map(|r| ReadingView {
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
            msisdn: shown(line.msisdn.as_deref(), |v| Msisdn(v).masked()),
            iccid: shown(line.iccid.as_deref(), |v| Iccid(v).masked()),
            labels: line.labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            state: row.state().as_str(),
            low: row.low(),
            low_balance: row.low_balance,
            low_data: row.low_data,
            reading,
            last_success_timestamp: row.last_success.map(unix_seconds),
            last_poll_timestamp: row.last_attempt.map(unix_seconds),
            last_poll_success: row.last_poll_ok,
            last_poll_duration_seconds: row.last_duration.map(|d| d.as_secs_f64()),
            last_error: row.last_error.as_ref().map(|e| ErrorView {
                reason: e.reason.as_str(),
                message: e.message.clone(),
                timestamp: unix_seconds(e.at),
            }),
            polls_total: row.polls_total,
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
    Row::of(state, global, now).low()
}
