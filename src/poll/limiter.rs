//! Admission of polls: the global concurrency limit and, per account, a concurrency limit, a
//! token bucket (`rate_limit`), a pause after the operator answered 429, and the auth lock-out.
//! Time is `tokio::time::Instant`, so tests on tokio's paused clock drive the bucket (the
//! `governor` crate reads its own clock, which is why this is a small bucket of our own).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::backoff;
use super::telemetry::Telemetry;
use crate::clock::unix_seconds;
use crate::config::{Account, Rate};

/// The rate limit of one account: a token bucket (the burst and the sustained rate) and a
/// sliding window (the operator's own rule). Operators count requests over a sliding window
/// ("10 requests per second"), so a bucket alone, which lets a full burst follow the last
/// sustained-rate token, would send up to `2N - 1` requests inside one period; the window
/// admits at most `count` in any `period`, whatever the burst.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Time per token at the sustained rate.
    emission: Duration,
    /// How far ahead of the sustained rate a burst may run: `(burst - 1) · emission`.
    tolerance: Duration,
    /// The "theoretical arrival time" of GCRA (generic cell rate algorithm): one instant
    /// instead of a token count refilled by a timer, exact integer arithmetic.
    tat: Instant,
    window: SlidingWindow,
}

impl TokenBucket {
    /// A full bucket: `burst` tokens at once (`rate.count` when `None`), then one per
    /// `rate.period / rate.count`, and never more than `rate.count` in any `rate.period`.
    pub fn new(rate: Rate, burst: Option<u32>, now: Instant) -> TokenBucket {
        // Rounded up, so that truncation can never let the bucket run faster than the rate.
        let count = u128::from(rate.count.max(1));
        let nanos = rate.period.as_nanos().div_ceil(count).max(1);
        let emission = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let burst = burst.unwrap_or(rate.count).clamp(1, rate.count.max(1));
        TokenBucket {
            emission,
            tolerance: emission.saturating_mul(burst - 1),
            tat: now,
            window: SlidingWindow::new(rate),
        }
    }

    /// How long until a token is there (zero: now).
    pub fn wait(&self, now: Instant) -> Duration {
        self.tat.saturating_duration_since(now + self.tolerance).max(self.window.wait(now))
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if !self.wait(now).is_zero() {
            return false;
        }
        // A token the window held back (it was full until its oldest admission aged out)
        // leaves the bucket empty: the requests after it follow at the sustained rate, where
        // the credit the bucket gained while the window blocked would have let a second burst
        // out exactly one period after the first, and any transit jitter puts both bursts
        // inside one of the operator's windows (the soak measured 121 arrivals in 1.02 s at
        // 100/s, burst 20). A burst is for an account that was idle.
        let held_by_window = self.window.just_released(now, self.emission);
        let from = if held_by_window { now + self.tolerance } else { now };
        self.tat = self.tat.max(from) + self.emission;
        self.window.record(now);
        true
    }

    /// No token before `until`, and then only one: after a 429 the account restarts at the
    /// sustained rate, not with a burst.
    pub fn pause_until(&mut self, until: Instant) {
        self.tat = self.tat.max(until + self.tolerance);
    }
}

/// The last `count` admissions: the next may come once the oldest of them is a `period` old,
/// so any window of one period (half-open, as operators count) holds at most `count`.
#[derive(Clone, Debug)]
struct SlidingWindow {
    count: usize,
    period: Duration,
    times: VecDeque<Instant>,
}

impl SlidingWindow {
    fn new(rate: Rate) -> SlidingWindow {
        let count = usize::try_from(rate.count.max(1)).unwrap_or(usize::MAX);
        // Grown as admissions come; a slow account never holds a large buffer it does not use.
        SlidingWindow { count, period: rate.period, times: VecDeque::new() }
    }

    fn wait(&self, now: Instant) -> Duration {
        if self.times.len() < self.count {
            return Duration::ZERO;
        }
        self.times.front().map_or(Duration::ZERO, |oldest| (*oldest + self.period).saturating_duration_since(now))
    }

    /// Whether a request admitted at `now` was held back by the window: it was full, and its
    /// oldest admission aged out less than `grace` (one sustained-rate interval) ago. After an
    /// idle spell the oldest aged out long before, and a burst is due again.
    fn just_released(&self, now: Instant, grace: Duration) -> bool {
        self.times.len() >= self.count && self.times.front().is_some_and(|oldest| *oldest + self.period + grace > now)
    }

    fn record(&mut self, now: Instant) {
        // Admissions a whole period old can no longer hold anything back: dropping them keeps
        // the buffer at what one period saw, not at `count` (a `1000000/s` account would
        // otherwise keep a million instants).
        while self.times.front().is_some_and(|t| *t + self.period <= now) {
            self.times.pop_front();
        }
        if self.times.len() == self.count {
            self.times.pop_front();
        }
        self.times.push_back(now);
    }
}

/// The limits an account was built with; a reload that keeps them keeps the gate (and so its
/// bucket and the permits of polls in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrency: Option<usize>,
    pub rate_limit: Option<Rate>,
    pub rate_burst: Option<u32>,
}

impl Limits {
    pub fn of(account: &Account) -> Limits {
        Limits {
            max_concurrency: account.max_concurrency,
            rate_limit: account.rate_limit,
            rate_burst: account.rate_burst,
        }
    }
}

#[derive(Debug)]
struct GateState {
    bucket: Option<TokenBucket>,
    /// Set by a 429: nothing of the account is admitted before.
    paused_until: Option<Instant>,
    locked_until: Option<Instant>,
    /// Lock-outs since the account last succeeded; sets the next lock-out's length.
    lockouts: u32,
}

/// Everything that decides whether a poll of one account may start now.
#[derive(Debug)]
pub struct AccountGate {
    name: String,
    driver: &'static str,
    limits: Limits,
    concurrency: Option<Arc<Semaphore>>,
    /// One admission at a time per account, first come first served. Besides ordering the
    /// account's polls, this leaves at most one waiter per account on the global semaphore,
    /// so a big account with a slow rate cannot crowd the global queue out for the others.
    turn: tokio::sync::Mutex<()>,
    /// One request token at a time for polls that pace their requests, first come first
    /// served; separate from `turn`, which an admission holds while it waits for a global
    /// permit that a pacing poll may hold.
    requests: tokio::sync::Mutex<()>,
    state: Mutex<GateState>,
    telemetry: Telemetry,
    /// The account's `credentials` digest the gate was last configured with.
    credentials: std::sync::atomic::AtomicU64,
    /// The account's redactor, for the messages of its listings.
    redactor: Mutex<crate::redact::Redactor>,
}

/// Held while a poll runs: a global permit and, when the account has a limit, an account permit.
#[derive(Debug)]
pub struct Admission {
    _global: OwnedSemaphorePermit,
    _account: Option<OwnedSemaphorePermit>,
}

/// A semaphore was closed. The scheduler never closes them, so this means shutting down.
#[derive(Debug, thiserror::Error)]
#[error("concurrency limit closed")]
pub struct Closed;

impl AccountGate {
    /// A gate for `account`. A rate-limit pause of the `previous` gate of the same account and
    /// driver carries over (the operator's Retry-After does not end with a reload), and so does
    /// an auth lock-out while the credentials stay the same (see [`AccountGate::reconfigured`]).
    pub fn new(account: &Account, previous: Option<&AccountGate>, telemetry: Telemetry, now: Instant) -> AccountGate {
        let limits = Limits::of(account);
        let (locked_until, lockouts) = previous
            .filter(|p| p.driver == account.driver.name && p.same_credentials(account))
            .map(|p| {
                let state = p.lock();
                (state.locked_until.filter(|until| *until > now), state.lockouts)
            })
            .unwrap_or((None, 0));
        let paused_until = previous
            .filter(|p| p.driver == account.driver.name)
            .and_then(|p| p.lock().paused_until)
            .filter(|until| *until > now);
        let mut bucket = limits.rate_limit.map(|rate| TokenBucket::new(rate, limits.rate_burst, now));
        if let (Some(bucket), Some(until)) = (bucket.as_mut(), paused_until) {
            bucket.pause_until(until);
        }
        AccountGate {
            name: account.name.clone(),
            driver: account.driver.name,
            limits,
            concurrency: limits.max_concurrency.map(|n| Arc::new(Semaphore::new(n.max(1)))),
            turn: tokio::sync::Mutex::new(()),
            requests: tokio::sync::Mutex::new(()),
            state: Mutex::new(GateState { bucket, paused_until, locked_until, lockouts }),
            telemetry,
            credentials: std::sync::atomic::AtomicU64::new(account.credentials),
            redactor: Mutex::new(account.redactor.clone()),
        }
    }

    /// Removes the account's credentials from `text` (see `redact`).
    pub fn redact(&self, text: String) -> String {
        self.redactor.lock().unwrap_or_else(|p| p.into_inner()).redact(text)
    }

    /// Whether `account` has the credentials this gate was configured with.
    pub fn same_credentials(&self, account: &Account) -> bool {
        self.credentials.load(std::sync::atomic::Ordering::Relaxed) == account.credentials
    }

    /// A reload kept this gate for `account`: a lock-out ends only when the credentials
    /// changed (or see `relogged`). Ending it on every reload let `POST /-/reload` + `/probe` send a failed login
    /// per round and get a customer's operator account blocked.
    /// `relogged`: the account waited for a person and its lock-out ends anyway.
    pub fn reconfigured(&self, account: &Account, relogged: bool) {
        if relogged {
            self.end_lockout();
        }
        if !self.same_credentials(account) {
            self.credentials.store(account.credentials, std::sync::atomic::Ordering::Relaxed);
            *self.redactor.lock().unwrap_or_else(|p| p.into_inner()) = account.redactor.clone();
            self.end_lockout();
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// How many of the account's polls can usefully start at once: its concurrency limit, and
    /// with a `rate_limit` no more than one burst.
    pub fn parallelism(&self, global: usize) -> usize {
        let burst = self.limits.rate_limit.map(|rate| self.limits.rate_burst.unwrap_or(rate.count) as usize);
        let n = self.limits.max_concurrency.unwrap_or(global).min(global);
        burst.map_or(n, |b| n.min(b)).max(1)
    }

    /// Whether a reload can keep this gate for `account`.
    pub fn fits(&self, account: &Account) -> bool {
        self.driver == account.driver.name && self.limits == Limits::of(account)
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // Every update is a few assignments that cannot panic halfway; a poisoned lock still
        // holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for an account permit, the account's turn, a rate-limit token and a global
    /// permit. The token is taken only once the global permit is held, so polls start at the
    /// account's rate even when the global limit held them back.
    pub async fn admit(&self, global: &Arc<Semaphore>) -> Result<Admission, Closed> {
        self.admission(global, true).await
    }

    /// Admission for a driver that paces its requests ([`crate::drivers::Driver::paces_requests`]):
    /// like [`AccountGate::admit`], but the poll takes no token; it waits only until one is
    /// there, so polls do not pile up on an empty bucket. Each request then takes its own
    /// through [`AccountGate::pace_request`].
    pub async fn admit_paced(&self, global: &Arc<Semaphore>) -> Result<Admission, Closed> {
        self.admission(global, false).await
    }

    async fn admission(&self, global: &Arc<Semaphore>, take_token: bool) -> Result<Admission, Closed> {
        let account = match &self.concurrency {
            Some(semaphore) => Some(semaphore.clone().acquire_owned().await.map_err(|_| Closed)?),
            None => None,
        };
        let _turn = self.turn.lock().await;
        loop {
            let wait = self.wait(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                continue;
            }
            let permit = global.clone().acquire_owned().await.map_err(|_| Closed)?;
            // Only the turn holder takes tokens, so this fails only if a 429 paused the
            // account while we waited for the global permit.
            if !take_token || self.try_take(Instant::now()) {
                return Ok(Admission { _global: permit, _account: account });
            }
        }
    }

    /// Takes one request token (after any 429 pause), waiting no later than `deadline`.
    /// `false`: none would come in time; nothing was taken.
    pub async fn pace_request(&self, deadline: Instant) -> bool {
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.requests.lock()).await else {
            return false;
        };
        loop {
            let now = Instant::now();
            let wait = self.wait(now);
            if wait.is_zero() {
                if self.try_take(now) {
                    return true;
                }
                continue;
            }
            if now + wait > deadline {
                return false;
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn wait(&self, now: Instant) -> Duration {
        let state = self.lock();
        let paused = state.paused_until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let bucket = state.bucket.as_ref().map_or(Duration::ZERO, |b| b.wait(now));
        paused.max(bucket)
    }

    fn try_take(&self, now: Instant) -> bool {
        let mut state = self.lock();
        if state.paused_until.is_some_and(|until| until > now) {
            return false;
        }
        state.bucket.as_mut().is_none_or(|b| b.try_take(now))
    }

    /// The operator rate-limited the account: admit nothing of it for `pause`.
    pub fn pause(&self, now: Instant, pause: Duration, wall_now: SystemTime) {
        let until = now + pause;
        {
            let mut state = self.lock();
            if state.paused_until.is_some_and(|p| p >= until) {
                return;
            }
            state.paused_until = Some(until);
            if let Some(bucket) = state.bucket.as_mut() {
                bucket.pause_until(until);
            }
        }
        self.telemetry.set_rate_limited_until(&self.name, self.driver, unix_seconds(wall_now + pause));
    }

    /// The end of the account's auth lock-out, if one lasts at `now`. An expired lock-out is
    /// cleared here (and its gauge set to 0).
    /// When the account's 429 pause ends, while one lasts.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.lock().paused_until.filter(|until| *until > now)
    }

    pub fn locked_until(&self, now: Instant) -> Option<Instant> {
        let mut state = self.lock();
        match state.locked_until {
            Some(until) if until > now => Some(until),
            Some(_) => {
                state.locked_until = None;
                drop(state);
                self.telemetry.set_locked_out(&self.name, self.driver, false);
                None
            }
            None => None,
        }
    }

    /// An authentication failure: locks the account out unless it already is. Returns the new
    /// lock-out's end and length, or `None` when one was already running (several polls of
    /// the account failing together count as one).
    pub fn lock_out(&self, now: Instant) -> Option<(Instant, Duration)> {
        let mut state = self.lock();
        if state.locked_until.is_some_and(|until| until > now) {
            return None;
        }
        let length = backoff::lockout(state.lockouts);
        state.lockouts = state.lockouts.saturating_add(1);
        let until = now + length;
        state.locked_until = Some(until);
        drop(state);
        self.telemetry.set_locked_out(&self.name, self.driver, true);
        Some((until, length))
    }

    /// A poll of the account succeeded: the next lock-out starts from the shortest again.
    pub fn record_success(&self) {
        self.lock().lockouts = 0;
    }

    /// Ends the lock-out (new credentials: the operator may have fixed the password).
    pub fn end_lockout(&self) {
        let mut state = self.lock();
        let was_locked = state.locked_until.take().is_some();
        state.lockouts = 0;
        drop(state);
        if was_locked {
            self.telemetry.set_locked_out(&self.name, self.driver, false);
        }
    }
}

impl crate::drivers::Pacer for AccountGate {
    fn pace(&self, deadline: Instant) -> crate::drivers::BoxFuture<'_, Result<(), crate::error::PollError>> {
        Box::pin(async move {
            if self.pace_request(deadline).await {
                Ok(())
            } else {
                Err(crate::error::PollError::Timeout(Duration::ZERO))
            }
        })
    }
}

/// The most admissions inside any half-open window `[t, t + period)`, counted from every
/// admission: what an operator's sliding-window limiter sees.
#[cfg(test)]
pub(crate) fn most_in_any_window<T: Ord + Copy + std::ops::Add<Duration, Output = T>>(
    times: &[T],
    period: Duration,
) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    (0..sorted.len()).map(|i| sorted[i..].iter().take_while(|t| **t < sorted[i] + period).count()).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate { count, period: Duration::from_secs(secs) }
    }

    fn take_times(bucket: &mut TokenBucket, start: Instant, n: usize) -> Vec<Duration> {
        let mut now = start;
        let mut times = Vec::new();
        while times.len() < n {
            now += bucket.wait(now);
            assert!(bucket.try_take(now));
            times.push(now - start);
        }
        times
    }

    #[test]
    fn a_full_bucket_allows_a_burst_then_no_more_than_the_rate_in_any_window() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate(4, 1), None, start);
        let s = |n: u64| Duration::from_secs(n);
        let ms = Duration::from_millis;
        // Before the sliding window this was 0, 0, 0, 0, 250 ms, ...: five inside the first
        // second. Then it was 0, 0, 0, 0, 1 s, 1 s, 1 s, 1 s, 2 s: the burst again every period.
        assert_eq!(
            take_times(&mut bucket, start, 9),
            [s(0), s(0), s(0), s(0), s(1), ms(1250), ms(1500), ms(1750), s(2)]
        );
    }

    /// The soak saw 121 requests arrive in 1.02 s at `100/s` with `rate_burst: 20`: the credit
    /// the bucket gained while the window was full let the burst out again exactly one period
    /// after the first, and a few ms of transit put both in one operator window.
    #[test]
    fn a_busy_account_bursts_once_and_then_keeps_the_sustained_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate(100, 1), Some(20), start);
        let times = take_times(&mut bucket, start, 1000);
        assert_eq!(times.iter().filter(|t| t.is_zero()).count(), 20, "the burst of an idle account");
        assert_eq!(most_in_any_window(&times, Duration::from_secs(1)), 100);
        // A window 20 ms longer than the period holds at most the 2 sustained-rate tokens more.
        let wide = most_in_any_window(&times, Duration::from_millis(1020));
        assert!(wide <= 102, "{wide} in 1.02 s");
        // Idle for a while, the account has its burst again.
        let later = start + *times.last().unwrap() + Duration::from_secs(5);
        let again = take_times(&mut bucket, later, 20);
        assert!(again.iter().all(|t| t.is_zero()), "{again:?}");
    }

    #[test]
    fn a_burst_smaller_than_the_count_spreads_the_rest_at_the_sustained_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate(4, 1), Some(2), start);
        let ms = Duration::from_millis;
        assert_eq!(take_times(&mut bucket, start, 6), [ms(0), ms(0), ms(250), ms(500), ms(1000), ms(1250)]);
    }

    #[test]
    fn a_burst_larger_than_the_count_is_capped_by_the_window() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate(2, 1), Some(10), start);
        let times = take_times(&mut bucket, start, 20);
        assert_eq!(most_in_any_window(&times, Duration::from_secs(1)), 2);
    }

    #[test]
    fn the_window_keeps_only_what_one_period_saw() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate(1_000_000, 1), None, start);
        for i in 0..1000u64 {
            assert!(bucket.try_take(start + Duration::from_millis(10 * i)));
        }
        assert!(bucket.window.times.len() <= 101, "{} instants kept", bucket.window.times.len());
    }

    #[test]
    fn an_empty_bucket_refuses_until_the_next_token() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate(1, 60), None, start);
        assert!(bucket.try_take(start));
        assert!(!bucket.try_take(start + Duration::from_secs(59)));
        assert_eq!(bucket.wait(start + Duration::from_secs(59)), Duration::from_secs(1));
        assert!(bucket.try_take(start + Duration::from_secs(60)));
    }

    #[test]
    fn a_pause_allows_one_token_at_its_end_then_the_sustained_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(rate(5, 5), None, start);
        bucket.pause_until(start + Duration::from_secs(30));
        let s = Duration::from_secs;
        assert_eq!(bucket.wait(start), s(30));
        assert_eq!(take_times(&mut bucket, start, 3), [s(30), s(31), s(32)], "no burst right after a 429");
    }

    #[test]
    fn tokens_never_exceed_the_rate_in_any_window() {
        for (count, secs, burst) in [(2, 1, None), (20, 1, None), (20, 1, Some(5)), (7, 60, None), (3, 1, Some(1))] {
            let start = Instant::now();
            let mut bucket = TokenBucket::new(rate(count, secs), burst, start);
            let times = take_times(&mut bucket, start, 200);
            let most = most_in_any_window(&times, Duration::from_secs(secs));
            assert_eq!(most, count as usize, "{count}/{secs}s burst {burst:?}");
        }
    }
}

#[cfg(test)]
mod pacing_tests {
    use super::*;
    use crate::config::{Account, AlertThresholds, DriverOptions, Labels};

    fn gate(rate: Rate) -> AccountGate {
        let account = Account {
            name: "fleet".into(),
            implicit: false,
            driver: crate::drivers::lookup("demo").expect("demo"),
            options: DriverOptions::none(),
            labels: Labels::default(),
            rate_limit: Some(rate),
            rate_burst: None,
            max_concurrency: None,
            alert: AlertThresholds::default(),
            discover: None,
            credentials: 0,
            redactor: Default::default(),
        };
        AccountGate::new(&account, None, Telemetry::disabled(), Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn paced_admission_takes_no_token_and_each_request_takes_one() {
        let gate = gate(Rate { count: 2, period: Duration::from_secs(1) });
        let global = Arc::new(Semaphore::new(8));
        let start = Instant::now();
        let _a = gate.admit_paced(&global).await.unwrap();
        let _b = gate.admit_paced(&global).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "admission left the tokens in the bucket");
        let deadline = start + Duration::from_secs(10);
        let mut times = Vec::new();
        for _ in 0..5 {
            assert!(gate.pace_request(deadline).await);
            times.push(start.elapsed());
        }
        let ms = Duration::from_millis;
        assert_eq!(times, [ms(0), ms(0), ms(1000), ms(1500), ms(2000)], "never more than 2 in any second, one burst");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_cannot_get_a_token_before_the_deadline_takes_none() {
        let gate = gate(Rate { count: 1, period: Duration::from_secs(60) });
        let now = Instant::now();
        assert!(gate.pace_request(now + Duration::from_secs(1)).await);
        assert!(!gate.pace_request(now + Duration::from_secs(1)).await, "the next token is a minute away");
        assert!(gate.pace_request(now + Duration::from_secs(61)).await, "nothing was taken by the refusal");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pause_holds_paced_requests_too() {
        let gate = gate(Rate { count: 10, period: Duration::from_secs(1) });
        let start = Instant::now();
        gate.pause(start, Duration::from_secs(30), std::time::SystemTime::now());
        assert!(gate.pace_request(start + Duration::from_secs(60)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }
}
