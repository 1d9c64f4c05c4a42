//! The store: the latest reading and poll status of every line, plus the counters derived from
//! successive readings (`esim_spent_total`, `esim_topped_up_total`, `esim_data_used_bytes_total`).
//! Writers are poll tasks (`record`); readers are the renderer, the status page and the API.

pub mod history;
pub mod journal;
pub mod persist;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use crate::config::Line;
use crate::error::{PollError, Reason};
use crate::reading::{Currency, Money, Reading};

/// The result of one poll, as the scheduler hands it over.
#[derive(Clone, Debug)]
pub struct PollOutcome {
    /// When the poll finished.
    pub at: SystemTime,
    pub duration: Duration,
    pub result: Result<Reading, PollError>,
}

/// The last failure of a line, for the status page and `/api/v1/lines`.
#[derive(Clone, Debug, PartialEq)]
pub struct LastError {
    pub reason: Reason,
    pub message: String,
    pub at: SystemTime,
}

/// Money counters of one currency (a line whose currency changes gets a second series).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoneyTotals {
    pub currency: Currency,
    pub spent: f64,
    pub topped_up: f64,
}

/// What a recorded poll counted as, after the store's own checks (an absurd reading is a
/// `bad_response` failure even when the driver returned it as a success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Success,
    Failure(Reason),
}

/// The `operator` and `account` labels of an account's poll counters. Lines with their own
/// `driver:` (implicit accounts) have an empty account and count per operator, so a fleet of
/// 100,000 such lines is a handful of series.
pub type AccountKey = (String, String);

/// The key `line` counts under.
pub fn account_key(line: &Line) -> AccountKey {
    (line.operator.to_string(), line.account.label().to_string())
}

/// Polls and failed polls (by reason) of an account's lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountPolls {
    pub polls: u64,
    pub errors: [u64; Reason::ALL.len()],
}

impl AccountPolls {
    fn add(&mut self, state: &LineState) {
        self.polls += state.polls_total;
        for (total, line) in self.errors.iter_mut().zip(state.errors_total) {
            *total += line;
        }
    }
}

/// Everything known about one line.
#[derive(Clone, Debug)]
pub struct LineState {
    pub line: Arc<Line>,
    /// The last successful reading (kept across failures; staleness is the reader's call).
    pub reading: Option<Reading>,
    pub last_success: Option<SystemTime>,
    pub last_attempt: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    /// True when the most recent poll succeeded.
    pub last_poll_ok: Option<bool>,
    pub last_error: Option<LastError>,
    pub polls_total: u64,
    pub errors_total: [u64; Reason::ALL.len()],
    pub money: Vec<MoneyTotals>,
    /// Present once the line has ever reported data remaining.
    pub data_used_bytes_total: Option<f64>,
    /// The last balance and data seen, even when a later reading omitted them: deltas are
    /// taken against these so a poll that misses a field does not count as spend or top-up.
    last_balance: Option<Money>,
    last_data_remaining: Option<u64>,
    /// The last polls (`history::HISTORY_LEN`), from the first poll on; memory only. Read by
    /// `/api/v1/line` alone, never by the render or the status page's rows.
    pub history: Option<Box<history::History>>,
    /// Bumped on every change; the renderer re-renders a line only when this moved.
    pub version: u64,
}

impl LineState {
    fn new(line: Arc<Line>) -> LineState {
        LineState {
            line,
            reading: None,
            last_success: None,
            last_attempt: None,
            last_duration: None,
            last_poll_ok: None,
            last_error: None,
            polls_total: 0,
            errors_total: [0; Reason::ALL.len()],
            money: Vec::new(),
            data_used_bytes_total: None,
            last_balance: None,
            last_data_remaining: None,
            history: None,
            version: 0,
        }
    }

    /// The reading if it is younger than `stale_after` at `now`: stale values leave /metrics.
    pub fn fresh_reading(&self, now: SystemTime, stale_after: Duration) -> Option<&Reading> {
        let at = self.last_success?;
        let age = now.duration_since(at).unwrap_or(Duration::ZERO);
        if age > stale_after {
            None
        } else {
            self.reading.as_ref()
        }
    }

    fn apply(&mut self, outcome: PollOutcome) -> Recorded {
        self.polls_total += 1;
        self.last_attempt = Some(outcome.at);
        self.last_duration = Some(outcome.duration);
        self.version += 1;
        // The one gate every reading passes: nothing non-finite or absurd enters the store,
        // the exposition or the storage file.
        let result = outcome.result.and_then(|r| r.checked().map_err(PollError::BadResponse));
        let polled = match &result {
            Ok(r) => Ok((r.balance.map(|b| b.amount), r.data_remaining.map(|d| d.bytes()))),
            Err(e) => Err(e.reason()),
        };
        self.history.get_or_insert_with(Box::default).push(outcome.at, polled);
        match result {
            Ok(reading) => {
                self.last_poll_ok = Some(true);
                self.last_success = Some(outcome.at);
                self.derive_counters(&reading);
                self.reading = Some(reading);
                Recorded::Success
            }
            Err(err) => {
                self.last_poll_ok = Some(false);
                self.errors_total[err.reason().index()] += 1;
                self.last_error = Some(LastError { reason: err.reason(), message: err.to_string(), at: outcome.at });
                Recorded::Failure(err.reason())
            }
        }
    }

    /// Balance decreases add to `spent`, increases to `topped_up` (per currency); data-remaining
    /// decreases add to `data_used`, increases are package renewals and add nothing.
    fn derive_counters(&mut self, reading: &Reading) {
        if let Some(balance) = reading.balance {
            let prev = self.last_balance.filter(|p| p.currency == balance.currency);
            let totals = self.money_totals(balance.currency);
            if let Some(prev) = prev {
                let delta = balance.amount - prev.amount;
                // Readings are bounded (`Reading::checked`), but a restored total may be huge:
                // a counter never becomes infinite, it stops growing.
                let total = if delta < 0.0 { &mut totals.spent } else { &mut totals.topped_up };
                if (*total + delta.abs()).is_finite() {
                    *total += delta.abs();
                }
            }
            self.last_balance = Some(balance);
        }
        if let Some(remaining) = reading.data_remaining {
            let used = self.data_used_bytes_total.get_or_insert(0.0);
            if let Some(prev) = self.last_data_remaining {
                if remaining.bytes() < prev {
                    *used += (prev - remaining.bytes()) as f64;
                }
            }
            self.last_data_remaining = Some(remaining.bytes());
        }
    }

    fn money_totals(&mut self, currency: Currency) -> &mut MoneyTotals {
        let index = match self.money.iter().position(|m| m.currency == currency) {
            Some(i) => i,
            None => {
                self.money.push(MoneyTotals { currency, spent: 0.0, topped_up: 0.0 });
                self.money.len() - 1
            }
        };
        &mut self.money[index]
    }
}

#[derive(Default)]
struct Inner {
    /// Lines in config order, the order of /metrics and the status page. Boxed, so that a
    /// reload that changes the set of lines moves pointers rather than states (≈ 400 bytes
    /// each): the old and the new vector of a 100,000-line reload are 0.8 MB each, not 40.
    #[expect(clippy::vec_box, reason = "boxed on purpose: a reload moves pointers, not states")]
    states: Vec<Box<LineState>>,
    /// Position of each line in `states`.
    index: HashMap<Arc<str>, usize>,
    /// Changes whenever the set or order of lines does (`apply_plan`).
    layout: u64,
    /// Poll counts per account, kept beside the lines' own so that the per-account counters
    /// are exactly what the journal makes durable (see `account_polls`).
    accounts: BTreeMap<AccountKey, AccountPolls>,
}

impl Inner {
    fn get_mut(&mut self, name: &str) -> Option<&mut LineState> {
        let i = *self.index.get(name)?;
        self.states.get_mut(i).map(|state| &mut **state)
    }

    /// Every account of the lines held has counters (pre-created at 0); accounts that no line
    /// has any more lose theirs. Counts of lines that left stay with their account, so a
    /// reload that drops lines never makes a counter go down.
    fn sync_accounts(&mut self) {
        let mut kept = BTreeMap::new();
        for state in &self.states {
            if let std::collections::btree_map::Entry::Vacant(entry) = kept.entry(account_key(&state.line)) {
                let counts = self.accounts.get(entry.key()).copied().unwrap_or_default();
                entry.insert(counts);
            }
        }
        self.accounts = kept;
    }

    /// Whether `lines` are the lines held now, by name and in the same order.
    fn same_layout(&self, lines: &[Arc<Line>]) -> bool {
        self.states.len() == lines.len() && self.states.iter().zip(lines).all(|(s, l)| s.line.name == l.name)
    }
}

/// The latest state of every configured line.
#[derive(Default)]
pub struct Store {
    inner: RwLock<Inner>,
    generation: AtomicU64,
}

/// Read access to every line in config order.
pub struct StoreView<'a> {
    guard: RwLockReadGuard<'a, Inner>,
}

impl StoreView<'_> {
    pub fn lines(&self) -> impl Iterator<Item = &LineState> {
        self.guard.states.iter().map(|state| &**state)
    }

    pub fn get(&self, name: &str) -> Option<&LineState> {
        self.guard.index.get(name).and_then(|&i| self.at(i))
    }

    /// The line at `position` in config order.
    pub fn at(&self, position: usize) -> Option<&LineState> {
        self.guard.states.get(position).map(|state| &**state)
    }

    /// Poll counts per account, the source of `esim_polls_total` and `esim_poll_errors_total`.
    /// Read by the render, which the journal follows: a count shown is a count saved.
    pub fn account_polls(&self) -> &BTreeMap<AccountKey, AccountPolls> {
        &self.guard.accounts
    }

    /// Changes whenever the set or the order of lines does; equal values mean equal positions.
    pub fn layout(&self) -> u64 {
        self.guard.layout
    }

    pub fn len(&self) -> usize {
        self.guard.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.guard.states.is_empty()
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Makes the store hold exactly `lines`: lines that stay keep their readings and counters
    /// (with the new config attached), new lines start empty, removed lines are dropped.
    pub fn apply_plan(&self, lines: &[Arc<Line>]) {
        let mut inner = self.write();
        if inner.same_layout(lines) {
            // The usual reload: the same lines with a new config each. Positions and the
            // index stay; readers see the new config through the bumped versions.
            for (state, line) in inner.states.iter_mut().zip(lines) {
                state.line = line.clone();
                state.version += 1;
            }
            inner.sync_accounts();
            drop(inner);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let old_index = std::mem::take(&mut inner.index);
        let mut old: Vec<Option<Box<LineState>>> = std::mem::take(&mut inner.states).into_iter().map(Some).collect();
        let mut states = Vec::with_capacity(lines.len());
        let mut index = HashMap::with_capacity(lines.len());
        for line in lines {
            let kept = old_index.get(line.name.as_str()).and_then(|&i| old[i].take());
            let mut state = kept.unwrap_or_else(|| Box::new(LineState::new(line.clone())));
            state.line = line.clone();
            state.version += 1;
            index.insert(Arc::from(line.name.as_str()), states.len());
            states.push(state);
        }
        inner.states = states;
        inner.index = index;
        inner.layout += 1;
        inner.sync_accounts();
        drop(inner);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Sets each account's counts to the sum of its lines' own: after a restore, so that the
    /// per-account counters go on from the saved state (counts of lines that had left before
    /// the restart are not saved and start over).
    pub fn recount_accounts(&self) {
        let mut inner = self.write();
        let mut sums: BTreeMap<AccountKey, AccountPolls> = BTreeMap::new();
        for state in &inner.states {
            sums.entry(account_key(&state.line)).or_default().add(state);
        }
        inner.accounts = sums;
        drop(inner);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Records a poll of `line` and says what it counted as; a line no longer configured
    /// (removed by a reload while its poll was in flight) is ignored, which `None` reports.
    pub fn record(&self, line: &str, outcome: PollOutcome) -> Option<Recorded> {
        let mut inner = self.write();
        let state = inner.get_mut(line)?;
        let recorded = state.apply(outcome);
        let key = account_key(&state.line);
        let account = inner.accounts.entry(key).or_default();
        account.polls += 1;
        if let Recorded::Failure(reason) = recorded {
            account.errors[reason.index()] += 1;
        }
        drop(inner);
        self.generation.fetch_add(1, Ordering::Release);
        Some(recorded)
    }

    /// Applies `update` to the state of each named line that is configured; returns how many
    /// were. For restoring saved state: versions move, so the renderer picks the lines up.
    pub fn update_each<T>(
        &self,
        items: impl IntoIterator<Item = (String, T)>,
        mut update: impl FnMut(T, &mut LineState),
    ) -> usize {
        let mut inner = self.write();
        let mut updated = 0;
        for (name, item) in items {
            if let Some(state) = inner.get_mut(&name) {
                update(item, state);
                updated += 1;
            }
        }
        drop(inner);
        self.generation.fetch_add(1, Ordering::Release);
        updated
    }

    pub fn view(&self) -> StoreView<'_> {
        StoreView { guard: self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()) }
    }

    /// A copy of one line's state.
    pub fn get(&self, line: &str) -> Option<LineState> {
        self.view().get(line).cloned()
    }

    /// Changes on every write; readers compare it to skip work when nothing moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one assignment
        // sequence per line), so a poisoned lock is taken over rather than propagated.
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::config::ByteSize;

    fn lines(names: &[&str]) -> Vec<Arc<Line>> {
        let yaml: String = names.iter().map(|n| format!("  - {{name: {n}, driver: demo}}\n")).collect();
        crate::config::parse("t.yaml", &format!("lines:\n{yaml}"), crate::drivers::REGISTRY).expect("config").lines
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn rub(amount: f64) -> Option<Money> {
        Some(Money { amount, currency: Currency::RUB })
    }

    fn ok(store: &Store, line: &str, secs: u64, reading: Reading) {
        assert!(store
            .record(line, PollOutcome { at: at(secs), duration: Duration::from_millis(5), result: Ok(reading) })
            .is_some());
    }

    fn fail(store: &Store, line: &str, secs: u64, err: PollError) {
        assert!(store
            .record(line, PollOutcome { at: at(secs), duration: Duration::from_millis(5), result: Err(err) })
            .is_some());
    }

    fn totals(store: &Store, line: &str) -> (f64, f64) {
        let state = store.get(line).unwrap();
        state.money.iter().find(|m| m.currency == Currency::RUB).map_or((0.0, 0.0), |m| (m.spent, m.topped_up))
    }

    fn account_counts(store: &Store) -> Vec<(AccountKey, u64, u64)> {
        let view = store.view();
        view.account_polls().iter().map(|(k, c)| (k.clone(), c.polls, c.errors.iter().sum())).collect()
    }

    #[test]
    fn account_counts_follow_polls_survive_reloads_and_recount_after_restore() {
        let store = Store::new();
        store.apply_plan(&lines(&["a", "b"]));
        let demo = ("demo".to_string(), String::new());
        assert_eq!(account_counts(&store), [(demo.clone(), 0, 0)], "pre-created at 0");
        ok(&store, "a", 0, Reading { balance: rub(10.0), ..Reading::default() });
        fail(&store, "b", 1, PollError::Timeout(Duration::from_secs(3)));
        // An absurd reading is a bad_response failure here too, as in the line's own counts.
        ok(&store, "b", 2, Reading { balance: rub(f64::NAN), ..Reading::default() });
        assert_eq!(account_counts(&store), [(demo.clone(), 3, 2)]);
        // A reload that drops a line keeps its counts with the account: no counter goes down.
        store.apply_plan(&lines(&["a"]));
        assert_eq!(account_counts(&store), [(demo.clone(), 3, 2)]);
        // After a restore the counts are the sums of the lines' own.
        store.recount_accounts();
        assert_eq!(account_counts(&store), [(demo, 1, 0)]);
        // An account no line has any more loses its counters.
        store.apply_plan(&[]);
        assert!(account_counts(&store).is_empty());
    }

    #[test]
    fn balances_at_the_edge_of_f64_never_make_a_counter_infinite() {
        let store = Store::new();
        store.apply_plan(&lines(&["a"]));
        ok(&store, "a", 0, Reading { balance: rub(100.0), ..Reading::default() });
        ok(&store, "a", 60, Reading { balance: rub(1.7e308), ..Reading::default() });
        ok(&store, "a", 120, Reading { balance: rub(-1.7e308), ..Reading::default() });
        let state = store.get("a").unwrap();
        assert_eq!(state.errors_total[Reason::BadResponse.index()], 2, "both absurd balances are bad responses");
        assert_eq!(state.reading.as_ref().and_then(|r| r.balance), rub(100.0), "the last believable reading stays");
        assert!(state.last_error.as_ref().unwrap().message.contains("implausible balance"));
        assert_eq!(totals(&store, "a"), (0.0, 0.0));
        // A restored total that is already huge stops growing instead of turning into +Inf.
        store.update_each([("a".to_string(), ())], |(), s| s.money[0].spent = f64::MAX);
        ok(&store, "a", 180, Reading { balance: rub(-1e12), ..Reading::default() });
        assert_eq!(totals(&store, "a").0, f64::MAX);
    }

    /// (balance, expected spent, expected topped up) after each poll.
    const TOP_UP_CASES: &[(f64, f64, f64)] =
        &[(100.0, 0.0, 0.0), (90.0, 10.0, 0.0), (85.5, 14.5, 0.0), (585.5, 14.5, 500.0), (580.0, 20.0, 500.0)];

    #[test]
    fn spend_and_top_ups_are_counted_separately() {
        let store = Store::new();
        store.apply_plan(&lines(&["a"]));
        for (i, (balance, spent, topped)) in TOP_UP_CASES.iter().enumerate() {
            ok(&store, "a", i as u64 * 60, Reading { balance: rub(*balance), ..Reading::default() });
            let (s, t) = totals(&store, "a");
            assert!((s - spent).abs() < 1e-9 && (t - topped).abs() < 1e-9, "after {balance}: spent {s}, topped {t}");
        }
    }

    #[test]
    fn a_reading_without_balance_or_a_failure_does_not_move_counters() {
        let store = Store::new();
        store.apply_plan(&lines(&["a"]));
        ok(&store, "a", 0, Reading { balance: rub(100.0), ..Reading::default() });
        fail(&store, "a", 60, PollError::Timeout(Duration::from_secs(30)));
        ok(&store, "a", 120, Reading::default());
        ok(&store, "a", 180, Reading { balance: rub(95.0), ..Reading::default() });
        assert_eq!(totals(&store, "a"), (5.0, 0.0), "delta taken against the last known balance");
        let state = store.get("a").unwrap();
        assert_eq!(state.polls_total, 4);
        assert_eq!(state.errors_total[Reason::Timeout.index()], 1);
        assert_eq!(state.last_poll_ok, Some(true));
        assert_eq!(state.last_error.as_ref().map(|e| e.reason), Some(Reason::Timeout), "last error kept for the page");
    }

    #[test]
    fn data_used_counts_decreases_and_ignores_package_renewals() {
        let store = Store::new();
        store.apply_plan(&lines(&["a"]));
        let data = |bytes| Reading { data_remaining: Some(ByteSize(bytes)), ..Reading::default() };
        assert_eq!(store.get("a").unwrap().data_used_bytes_total, None, "absent until data is reported");
        for (i, bytes) in [1_000, 700, 400, 10_000, 9_000].into_iter().enumerate() {
            ok(&store, "a", i as u64, data(bytes));
        }
        assert_eq!(store.get("a").unwrap().data_used_bytes_total, Some(1_600.0));
    }

    #[test]
    fn a_currency_change_starts_a_new_series_instead_of_a_bogus_delta() {
        let store = Store::new();
        store.apply_plan(&lines(&["a"]));
        ok(&store, "a", 0, Reading { balance: rub(100.0), ..Reading::default() });
        let usd = Money { amount: 3.0, currency: Currency::USD };
        ok(&store, "a", 60, Reading { balance: Some(usd), ..Reading::default() });
        ok(&store, "a", 120, Reading { balance: Some(Money { amount: 2.5, ..usd }), ..Reading::default() });
        let state = store.get("a").unwrap();
        assert_eq!(state.money.len(), 2);
        assert_eq!(totals(&store, "a"), (0.0, 0.0));
        assert_eq!(state.money[1].spent, 0.5);
    }

    #[test]
    fn reload_keeps_staying_lines_drops_removed_and_restarts_returning_ones() {
        let store = Store::new();
        store.apply_plan(&lines(&["a", "b"]));
        ok(&store, "a", 0, Reading { balance: rub(100.0), ..Reading::default() });
        ok(&store, "a", 60, Reading { balance: rub(90.0), ..Reading::default() });
        ok(&store, "b", 0, Reading { balance: rub(50.0), ..Reading::default() });
        store.apply_plan(&lines(&["a", "c"]));
        assert_eq!(totals(&store, "a"), (10.0, 0.0), "staying line keeps counters");
        assert!(store.get("b").is_none());
        assert_eq!(
            store.record("b", PollOutcome { at: at(1), duration: Duration::ZERO, result: Ok(Reading::default()) }),
            None
        );
        assert_eq!(store.view().lines().map(|s| s.line.name.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        store.apply_plan(&lines(&["a", "b"]));
        let b = store.get("b").unwrap();
        assert_eq!((b.polls_total, b.money.len()), (0, 0), "a returning line's series restart from zero");
    }

    #[test]
    fn a_reload_of_the_same_lines_swaps_their_config_in_place_and_keeps_the_layout() {
        let store = Store::new();
        store.apply_plan(&lines(&["a", "b"]));
        ok(&store, "b", 0, Reading { balance: rub(50.0), ..Reading::default() });
        let (layout, versions) = {
            let view = store.view();
            (view.layout(), view.lines().map(|s| s.version).collect::<Vec<_>>())
        };
        let reloaded = lines(&["a", "b"]);
        store.apply_plan(&reloaded);
        let view = store.view();
        assert_eq!(view.layout(), layout, "same lines, same positions");
        for (i, state) in view.lines().enumerate() {
            assert!(Arc::ptr_eq(&state.line, &reloaded[i]), "the new config is attached");
            assert_eq!(state.version, versions[i] + 1, "readers see the change");
        }
        assert_eq!(view.get("b").unwrap().polls_total, 1);
        drop(view);
        // Another order is another layout.
        store.apply_plan(&lines(&["b", "a"]));
        assert_ne!(store.view().layout(), layout);
        assert_eq!(store.view().at(0).unwrap().line.name, "b");
        assert_eq!(store.get("b").unwrap().polls_total, 1);
    }

    #[test]
    fn stale_readings_are_withheld_but_kept() {
        let store = Store::new();
        store.apply_plan(&lines(&["a"]));
        ok(&store, "a", 0, Reading { balance: rub(100.0), ..Reading::default() });
        fail(&store, "a", 3000, PollError::Unavailable("down".into()));
        let state = store.get("a").unwrap();
        let six_hours = Duration::from_secs(6 * 3600);
        assert!(state.fresh_reading(at(6 * 3600), six_hours).is_some());
        assert!(state.fresh_reading(at(6 * 3600 + 1), six_hours).is_none());
        assert!(state.reading.is_some(), "kept for the status page and for counter deltas");
    }

    #[test]
    fn generation_moves_on_every_write() {
        let store = Store::new();
        let g0 = store.generation();
        store.apply_plan(&lines(&["a"]));
        let g1 = store.generation();
        ok(&store, "a", 0, Reading::default());
        assert!(g0 < g1 && g1 < store.generation());
    }
}
