//! Scheduler behaviour on tokio's paused clock, with scripted fake drivers: spread, limits,
//! back-off, Retry-After, timeouts, lock-outs, panics, reload, probes and shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;

use super::*;
use crate::clock::TokioClock;
use crate::config::fields::Fields;
use crate::config::{Account, AlertThresholds, DriverOptions, Labels, Line, Rate};
use crate::drivers::{BoxFuture, BuildContext, BuildError, Driver, DriverSpec, PollContext};
use crate::error::Reason;

/// Wall time when each test starts: a multiple of every interval used below.
const START: u64 = 1_800_000_000;
const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---------------------------------------------------------------------------------------------
// Fake driver

static FAKE: DriverSpec = DriverSpec {
    name: "fake",
    summary: "scripted test driver",
    example: "",
    aliases: &[],
    needs_account: true,
    speaks_http: false,
    can_discover: false,
    default_operator: "test",
    default_rate_limit: None,
    account_options: no_options,
    line_options: no_options,
    build: built_by_the_test,
};

fn no_options(_: &mut Fields<'_>) -> DriverOptions {
    DriverOptions::none()
}

fn built_by_the_test(account: &Account, _: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    Err(BuildError { driver: "fake", account: account.name.clone(), reason: "fakes are built by the test".into() })
}

/// Counts polls running at once and remembers the most.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Concurrency {
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

struct Entered<'a>(&'a Concurrency);

impl<'a> Entered<'a> {
    fn new(c: &'a Concurrency) -> Entered<'a> {
        let n = c.now.fetch_add(1, Ordering::SeqCst) + 1;
        c.max.fetch_max(n, Ordering::SeqCst);
        Entered(c)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Debug)]
enum Step {
    Fail(PollError),
    Panic,
    Hang,
}

struct Fake {
    latency: Duration,
    calls: Mutex<Vec<(String, Instant)>>,
    account: Concurrency,
    global: Arc<Concurrency>,
    /// Per line, what the next polls do; an empty script means success.
    script: Mutex<HashMap<String, VecDeque<Step>>>,
}

impl Fake {
    fn new(latency: Duration) -> Arc<Fake> {
        Fake::sharing(latency, Arc::default())
    }

    fn sharing(latency: Duration, global: Arc<Concurrency>) -> Arc<Fake> {
        Arc::new(Fake {
            latency,
            calls: Mutex::default(),
            account: Concurrency::default(),
            global,
            script: Mutex::default(),
        })
    }

    fn script(&self, line: &str, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().unwrap().entry(line.to_string()).or_default().extend(steps);
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().iter().map(|(_, t)| *t).collect()
    }

    fn calls_of(&self, line: &str) -> Vec<Instant> {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|(l, _)| l == line).map(|(_, t)| *t).collect()
    }

    fn in_flight(&self) -> usize {
        self.account.now.load(Ordering::SeqCst)
    }
}

impl Driver for Fake {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push((line.name.clone(), Instant::now()));
            let step = self.script.lock().unwrap().get_mut(&line.name).and_then(VecDeque::pop_front);
            let _account = Entered::new(&self.account);
            let _global = Entered::new(&self.global);
            cx.note("fake poll");
            let latency = match step {
                Some(Step::Hang) => secs(86_400),
                _ => self.latency,
            };
            tokio::time::sleep(latency).await;
            match step {
                Some(Step::Fail(err)) => Err(err),
                Some(Step::Panic) => panic!("scripted panic"),
                _ => Ok(Reading { sms_remaining: Some(42), ..Reading::default() }),
            }
        })
    }
}

fn account(name: &str, max_concurrency: Option<usize>, rate_limit: Option<Rate>) -> Arc<Account> {
    Arc::new(Account {
        name: name.into(),
        implicit: false,
        driver: &FAKE,
        options: DriverOptions::none(),
        labels: Labels::default(),
        rate_limit,
        rate_burst: None,
        max_concurrency,
        alert: AlertThresholds::default(),
        discover: None,
        credentials: 0,
        redactor: Default::default(),
    })
}

fn line(name: &str, account: &Arc<Account>, interval: Duration, timeout: Duration) -> Arc<Line> {
    Arc::new(Line {
        name: name.into(),
        account: account.clone(),
        operator: "test".into(),
        msisdn: None,
        iccid: None,
        labels: Labels::default(),
        alert: AlertThresholds::default(),
        poll_interval: interval,
        timeout,
        options: DriverOptions::none(),
    })
}

fn plan(max_concurrency: usize, lines: &[(&Arc<Line>, &Arc<Fake>)]) -> Plan {
    Plan::new(
        max_concurrency,
        lines.iter().map(|(l, f)| {
            let driver: Arc<dyn Driver> = (*f).clone();
            ((*l).clone(), driver)
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Harness

struct Harness {
    store: Arc<Store>,
    scheduler: Scheduler,
    registry: prometheus::Registry,
    t0: Instant,
    wall0: u64,
}

impl Harness {
    fn start() -> Harness {
        Harness::start_at(START)
    }

    fn start_at(wall0: u64) -> Harness {
        let store = Arc::new(Store::new());
        let registry = prometheus::Registry::new();
        let clock: SharedClock = Arc::new(TokioClock::starting_at(UNIX_EPOCH + secs(wall0)));
        let scheduler = Scheduler::try_start(store.clone(), clock, &registry).unwrap();
        Harness { store, scheduler, registry, t0: Instant::now(), wall0 }
    }

    /// Applies `plan` as to lines restored from `--storage.path`: they have polled before, so
    /// they keep their phase instead of joining the first wave. Most tests here are about the
    /// phase; the first wave has tests of its own, which call `scheduler.apply`.
    fn apply_restored(&self, plan: Plan) {
        let lines = plan.lines();
        self.store.apply_plan(&lines);
        let at = UNIX_EPOCH + secs(self.wall0);
        self.store.update_each(lines.iter().map(|l| (l.name.clone(), ())), |(), state| {
            state.last_attempt.get_or_insert(at);
        });
        self.scheduler.apply(plan);
    }

    /// Wall time of `at`, in seconds since the epoch.
    fn wall(&self, at: Instant) -> Duration {
        secs(self.wall0) + (at - self.t0)
    }

    /// A sample of the scheduler's metrics from the text exposition.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
            .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at).await;
}

async fn advance(d: Duration) {
    tokio::time::sleep(d).await;
}

/// The distance of `wall` from the line's phase, on the circle of its interval.
fn off_phase(wall: Duration, offset: Duration, interval: Duration) -> Duration {
    let phase = Duration::from_nanos((wall.as_nanos() % interval.as_nanos()) as u64);
    let d = phase.abs_diff(offset);
    d.min(interval - d)
}

// ---------------------------------------------------------------------------------------------
// Spread and phase

#[tokio::test(start_paused = true)]
async fn first_polls_are_spread_over_the_interval() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    let acct = account("fleet", None, None);
    let interval = secs(1000);
    let lines: Vec<Arc<Line>> =
        (0..1000).map(|i| line(&format!("tracker-{i:04}"), &acct, interval, secs(10))).collect();
    let entries: Vec<_> = lines.iter().map(|l| (l, &fake)).collect();
    h.apply_restored(plan(1000, &entries));
    advance(secs(1000) + 10 * MS).await;

    let mut per_second = HashMap::<u64, usize>::new();
    for l in &lines {
        let calls = fake.calls_of(&l.name);
        // Exactly once, or twice for a line whose phase lies in the first 10 ms.
        assert!((1..=2).contains(&calls.len()), "{} polled {} times", l.name, calls.len());
        let expected = spread::until_next_slot(UNIX_EPOCH + secs(START), spread::offset(&l.name, interval), interval);
        assert!((calls[0] - h.t0).abs_diff(expected) <= 2 * MS, "{} off its phase", l.name);
        *per_second.entry((calls[0] - h.t0).as_secs()).or_default() += 1;
    }
    let busiest = per_second.values().max().copied().unwrap_or(0);
    assert!(busiest <= 30, "{busiest} of 1000 lines polled in the same second");
}

#[tokio::test(start_paused = true)]
async fn lines_poll_every_interval_at_a_phase_that_survives_a_restart() {
    let interval = secs(900);
    for wall0 in [START, START + 4321] {
        let h = Harness::start_at(wall0);
        let fake = Fake::new(secs(3));
        let acct = account("a", None, None);
        let l = line("gate-01", &acct, interval, secs(30));
        h.apply_restored(plan(4, &[(&l, &fake)]));
        advance(secs(4 * 900)).await;
        let calls = fake.calls();
        assert_eq!(calls.len(), 4, "one poll per interval");
        for c in &calls {
            let off = off_phase(h.wall(*c), spread::offset("gate-01", interval), interval);
            assert!(off <= 2 * MS, "poll at {:?} is {off:?} off the phase", h.wall(*c));
        }
        for gap in calls.windows(2).map(|w| w[1] - w[0]) {
            assert!(gap.abs_diff(interval) <= 2 * MS, "gap {gap:?}");
        }
        h.scheduler.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Limits

#[tokio::test(start_paused = true)]
async fn global_and_account_concurrency_limits_are_never_exceeded() {
    let h = Harness::start();
    let global = Arc::new(Concurrency::default());
    let limited = Fake::sharing(secs(7), global.clone());
    let open = Fake::sharing(secs(7), global.clone());
    let a = account("limited", Some(2), None);
    let b = account("open", None, None);
    let mut lines = Vec::new();
    for i in 0..10 {
        lines.push((line(&format!("a-{i}"), &a, secs(10), secs(30)), limited.clone()));
        lines.push((line(&format!("b-{i}"), &b, secs(10), secs(30)), open.clone()));
    }
    let entries: Vec<_> = lines.iter().map(|(l, f)| (l, f)).collect();
    h.apply_restored(plan(3, &entries));

    let mut max_gauge = 0.0f64;
    for _ in 0..200 {
        advance(secs(1)).await;
        let in_flight = h.metric(telemetry::POLLS_IN_FLIGHT, &[]).unwrap();
        max_gauge = max_gauge.max(in_flight);
    }
    assert_eq!(global.max(), 3, "the global limit is reached but never exceeded");
    assert_eq!(limited.account.max(), 2, "the account limit is reached but never exceeded");
    assert!((2.0..=3.0).contains(&max_gauge), "in-flight gauge {max_gauge}");
    for (l, f) in &lines {
        assert!(!f.calls_of(&l.name).is_empty(), "{} never polled: polls must wait, not drop", l.name);
    }
    let waited = h.metric(&format!("{}_sum", telemetry::QUEUE_WAIT_SECONDS), &[]).unwrap();
    assert!(waited > 0.0, "waiting for permits shows in the queue-wait histogram");
}

/// Asserts that `times` (sorted) never run ahead of `burst` plus one per `emission`.
fn assert_within_rate(times: &[Instant], burst: usize, emission: Duration) {
    for i in 0..times.len() {
        for j in i + 1..times.len() {
            let polls = j - i + 1;
            let min_span = emission * polls.saturating_sub(burst) as u32;
            assert!(
                times[j] - times[i] >= min_span,
                "polls {i}..={j} within {:?}, the rate allows no less than {min_span:?}",
                times[j] - times[i]
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_account_never_polls_faster_than_its_rate_limit() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    let rate = Rate { count: 2, period: secs(1) };
    let acct = account("slow", None, Some(rate));
    // Twenty lines due every second want 20 polls/s from an account allowed 2/s.
    let lines: Vec<_> = (0..20).map(|i| line(&format!("l-{i}"), &acct, secs(1), secs(10))).collect();
    let entries: Vec<_> = lines.iter().map(|l| (l, &fake)).collect();
    h.apply_restored(plan(100, &entries));
    advance(secs(30)).await;

    let mut calls = fake.calls();
    calls.sort();
    let n = calls.len();
    assert_within_rate(&calls, 2, Duration::from_millis(500));
    assert!(
        calls[n - 1] - calls[0] >= Duration::from_millis(500) * (n as u32 - 2),
        "{n} polls at 2/s with a burst of 2 take at least {}s",
        (n - 2) / 2
    );
    assert!(n >= 55, "only {n} polls in 30 s: the bucket should allow about 60");
}

#[tokio::test(start_paused = true)]
async fn probes_wait_for_the_rate_limit_like_scheduled_polls() {
    let h = Arc::new(Harness::start());
    let fake = Fake::new(Duration::ZERO);
    let rate = Rate { count: 1, period: secs(1) };
    let acct = account("slow", None, Some(rate));
    let l = line("l", &acct, secs(3600), secs(10));
    h.apply_restored(plan(10, &[(&l, &fake)]));
    let probes: Vec<_> = (0..5)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.scheduler.poll_now("l", secs(30)).await })
        })
        .collect();
    for probe in probes {
        assert!(probe.await.unwrap().unwrap().result.is_ok());
    }
    let mut calls = fake.calls();
    calls.sort();
    assert_eq!(calls.len(), 5);
    assert_within_rate(&calls, 1, secs(1));
}

// ---------------------------------------------------------------------------------------------
// First wave (issue 12): lines that never polled poll at once, paced by their limits

#[tokio::test(start_paused = true)]
async fn lines_that_never_polled_poll_at_once_then_settle_into_their_phase() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    let acct = account("fleet", None, None);
    let interval = secs(3600);
    let lines: Vec<_> = (0..10).map(|i| line(&format!("l-{i}"), &acct, interval, secs(10))).collect();
    let entries: Vec<_> = lines.iter().map(|l| (l, &fake)).collect();
    h.scheduler.apply(plan(32, &entries));
    advance(10 * MS).await;
    assert_eq!(fake.calls().len(), 10, "every line polled right after start, not within the hour");
    assert!(lines.iter().all(|l| h.store.get(&l.name).unwrap().last_poll_ok == Some(true)));

    advance(interval + secs(1)).await;
    for l in &lines {
        let calls = fake.calls_of(&l.name);
        assert_eq!(calls.len(), 2, "{}: one first poll, then one at its phase", l.name);
        let offset = spread::offset(&l.name, interval);
        assert!(off_phase(h.wall(calls[1]), offset, interval) <= 2 * MS, "{} polled off its phase", l.name);
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_wave_never_exceeds_the_account_limits_in_any_window() {
    let h = Harness::start();
    let fake = Fake::new(Duration::from_millis(50));
    let rate = Rate { count: 20, period: secs(1) };
    let acct = account("limited", Some(3), Some(rate));
    let lines: Vec<_> = (0..400).map(|i| line(&format!("sim-{i}"), &acct, secs(3600), secs(10))).collect();
    let entries: Vec<_> = lines.iter().map(|l| (l, &fake)).collect();
    h.scheduler.apply(plan(32, &entries));
    advance(secs(25)).await;

    let calls = fake.calls();
    let mut polled: Vec<String> = fake.calls.lock().unwrap().iter().map(|(l, _)| l.clone()).collect();
    polled.sort();
    polled.dedup();
    assert_eq!(polled.len(), 400, "400 SIMs at 20/s fill in 20 s");
    // A token bucket alone let 20 go at once and then 20 more within the same second.
    assert_eq!(limiter::most_in_any_window(&calls, secs(1)), 20);
    assert!(fake.account.max() <= 3, "max_concurrency 3, saw {}", fake.account.max());
    let firsts: Vec<Instant> = polled.iter().map(|l| fake.calls_of(l)[0]).collect();
    let span = *firsts.iter().max().unwrap() - *firsts.iter().min().unwrap();
    assert!((secs(19)..secs(21)).contains(&span), "the wave took {span:?}: the limits, and only they, pace it");
}

#[tokio::test(start_paused = true)]
async fn a_slow_account_in_its_first_wave_does_not_hold_back_the_others() {
    let h = Harness::start();
    let slow_fake = Fake::new(Duration::ZERO);
    let fast_fake = Fake::new(Duration::ZERO);
    let slow = account("slow", None, Some(Rate { count: 1, period: secs(1) }));
    let fast = account("fast", None, None);
    let slow_lines: Vec<_> = (0..500).map(|i| line(&format!("s-{i}"), &slow, secs(3600), secs(10))).collect();
    let fast_lines: Vec<_> = (0..500).map(|i| line(&format!("f-{i}"), &fast, secs(3600), secs(10))).collect();
    let mut entries: Vec<_> = slow_lines.iter().map(|l| (l, &slow_fake)).collect();
    entries.extend(fast_lines.iter().map(|l| (l, &fast_fake)));
    h.scheduler.apply(plan(4, &entries));
    advance(secs(1)).await;
    assert_eq!(fast_fake.calls().len(), 500, "the unlimited account filled at once");
    assert!(slow_fake.calls().len() <= 2, "the slow one at its 1/s");
}

#[tokio::test(start_paused = true)]
async fn restored_lines_keep_their_phase_and_a_reload_sends_new_lines_at_once() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    let acct = account("fleet", None, None);
    let interval = secs(3600);
    let old = line("restored", &acct, interval, secs(10));
    h.apply_restored(plan(8, &[(&old, &fake)]));
    advance(secs(5)).await;
    assert!(fake.calls_of("restored").is_empty() || spread::offset("restored", interval) < secs(6));

    let new = line("added", &acct, interval, secs(10));
    h.scheduler.apply(plan(8, &[(&old, &fake), (&new, &fake)]));
    advance(10 * MS).await;
    assert_eq!(fake.calls_of("added").len(), 1, "a line a reload adds polls at once");
    let restored_calls = fake.calls_of("restored");
    assert!(
        restored_calls.iter().all(|t| off_phase(h.wall(*t), spread::offset("restored", interval), interval) <= 2 * MS),
        "the restored line only ever polled at its phase"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_while_the_first_wave_runs_keeps_each_line_queued_once() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    let acct = account("slow", None, Some(Rate { count: 1, period: secs(1) }));
    let lines: Vec<_> = (0..10).map(|i| line(&format!("l-{i}"), &acct, secs(3600), secs(10))).collect();
    let entries: Vec<_> = lines.iter().map(|l| (l, &fake)).collect();
    h.scheduler.apply(plan(8, &entries));
    advance(Duration::from_millis(2500)).await;
    h.scheduler.apply(plan(8, &entries[..8]));
    advance(secs(30)).await;
    let mut polled: Vec<String> = fake.calls.lock().unwrap().iter().map(|(l, _)| l.clone()).collect();
    polled.sort();
    polled.dedup();
    assert_eq!(polled.len(), 8, "the two removed lines never polled after the reload: {polled:?}");
    assert_eq!(fake.calls().len(), 8, "each remaining line polled once");
}

// ---------------------------------------------------------------------------------------------
// Failures

#[tokio::test(start_paused = true)]
async fn back_off_grows_with_consecutive_failures_and_resets_on_success() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    let fail = || Step::Fail(PollError::Unavailable("503".into()));
    fake.script("l", [fail(), fail(), fail()]);
    let acct = account("a", None, None);
    let interval = secs(3600);
    let l = line("l", &acct, interval, secs(10));
    h.apply_restored(plan(4, &[(&l, &fake)]));

    let first = h.t0 + spread::until_next_slot(UNIX_EPOCH + secs(START), spread::offset("l", interval), interval);
    sleep_until(first + secs(1)).await;
    assert_eq!(h.metric(telemetry::BACKOFF_LINES, &[]), Some(1.0));
    advance(secs(600)).await;
    // After the fourth poll (a success) script one more failure for the fifth.
    fake.script("l", [fail()]);
    advance(secs(2 * 3600)).await;

    let calls = fake.calls_of("l");
    assert!(calls.len() >= 6, "{} polls", calls.len());
    let gap = |i: usize| (calls[i + 1] - calls[i]).as_secs();
    assert!((48..=72).contains(&gap(0)), "first retry after ~1 min, got {}s", gap(0));
    assert!((96..=144).contains(&gap(1)), "second after ~2 min, got {}s", gap(1));
    assert!((192..=288).contains(&gap(2)), "third after ~4 min, got {}s", gap(2));
    // calls[3] succeeded: back to the phase, not another doubling.
    let off = off_phase(h.wall(calls[4]), spread::offset("l", interval), interval);
    assert!(off <= 2 * MS, "after a success the line returns to its phase");
    // calls[4] failed again: the back-off starts over at ~1 min.
    assert!((48..=72).contains(&gap(4)), "back-off restarts after a success, got {}s", gap(4));
    assert_eq!(h.metric(telemetry::BACKOFF_LINES, &[]), Some(0.0));
    let state = h.store.get("l").unwrap();
    assert_eq!(state.last_poll_ok, Some(true));
    assert_eq!(state.errors_total[Reason::Unavailable.index()], 4);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_for_the_whole_account() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    fake.script("a", [Step::Fail(PollError::RateLimited { retry_after: Some(secs(600)) })]);
    let acct = account("x", None, None);
    let a = line("a", &acct, secs(60), secs(10));
    let b = line("b", &acct, secs(60), secs(10));
    h.apply_restored(plan(4, &[(&a, &fake), (&b, &fake)]));
    advance(secs(1800)).await;

    let limited_at = fake.calls_of("a")[0];
    let blocked: Vec<_> = fake.calls().into_iter().filter(|t| *t > limited_at && *t < limited_at + secs(600)).collect();
    assert!(blocked.is_empty(), "{} polls of the account during Retry-After", blocked.len());
    assert!(fake.calls_of("a")[1] >= limited_at + secs(600));
    assert!(fake.calls_of("b").iter().any(|t| *t > limited_at + secs(600)), "b resumes");
    let until = h.metric(telemetry::ACCOUNT_RATE_LIMITED_UNTIL, &[("account", "x"), ("driver", "fake")]);
    let expected = (h.wall(limited_at) + secs(600)).as_secs_f64();
    assert!(until.is_some_and(|u| (u - expected).abs() < 0.01), "{until:?} vs {expected}");
}

/// Found by the soak (issue 14): while a 429 without Retry-After paused an account for a
/// minute, every line that came due got a task waiting at the account's gate, ~60 % of the
/// account's lines at a 100 s interval (+30 MiB at 10,000 lines). They wait in the wave queue
/// now: no more tasks than can run, and each line still polls once the pause is over.
#[tokio::test(start_paused = true)]
async fn lines_due_during_a_429_pause_wait_as_queue_entries_not_as_tasks() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    fake.script("l000", [Step::Fail(PollError::RateLimited { retry_after: None })]);
    let acct = account("x", None, None);
    let lines: Vec<Arc<Line>> = (0..200).map(|i| line(&format!("l{i:03}"), &acct, secs(100), secs(10))).collect();
    let pairs: Vec<(&Arc<Line>, &Arc<Fake>)> = lines.iter().map(|l| (l, &fake)).collect();
    h.apply_restored(plan(4, &pairs));
    // Until l000's poll meets the 429, then through the pause.
    let limited_at = loop {
        advance(secs(1)).await;
        if let Some(&at) = fake.calls_of("l000").first() {
            break at;
        }
    };
    let pause_ends = limited_at + backoff::DEFAULT_ACCOUNT_PAUSE;
    let mut most = 0;
    while Instant::now() < pause_ends {
        most = most.max(h.scheduler.tasks().await);
        advance(secs(1)).await;
    }
    assert!(most <= 5, "{most} poll tasks during the pause (4 may run at once, one more may wait)");
    advance(secs(101)).await;
    for l in &lines {
        assert!(fake.calls_of(&l.name).iter().any(|t| *t >= pause_ends), "{} polled after the pause", l.name);
    }
}

#[tokio::test(start_paused = true)]
async fn a_poll_that_outlives_its_timeout_fails_with_timeout() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    fake.script("l", [Step::Hang]);
    let acct = account("a", None, None);
    let interval = secs(3600);
    let l = line("l", &acct, interval, secs(5));
    h.apply_restored(plan(4, &[(&l, &fake)]));
    let first = h.t0 + spread::until_next_slot(UNIX_EPOCH + secs(START), spread::offset("l", interval), interval);
    sleep_until(first + secs(5) + 10 * MS).await;

    let state = h.store.get("l").unwrap();
    let error = state.last_error.unwrap();
    assert_eq!(error.reason, Reason::Timeout);
    assert_eq!(error.message, "poll timed out after 5s");
    assert!(state.last_duration.unwrap().abs_diff(secs(5)) <= 2 * MS);
    assert_eq!(fake.in_flight(), 0, "the stuck driver future was dropped");

    // A probe's own timeout bounds it too.
    fake.script("l", [Step::Hang]);
    let started = Instant::now();
    let probe = h.scheduler.poll_now("l", secs(2)).await.unwrap();
    assert_eq!(probe.result, Err(PollError::Timeout(secs(2))));
    assert!(started.elapsed() <= secs(2) + 2 * MS);
}

#[tokio::test(start_paused = true)]
async fn an_auth_failure_stops_the_whole_account_for_the_lockout() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    fake.script("a", [Step::Fail(PollError::Auth("HTTP 401".into()))]);
    let acct = account("x", None, None);
    let a = line("a", &acct, secs(600), secs(10));
    let b = line("b", &acct, secs(600), secs(10));
    h.apply_restored(plan(4, &[(&a, &fake), (&b, &fake)]));
    advance(secs(601)).await;

    let failed_at = fake.calls_of("a")[0];
    let labels = [("account", "x"), ("driver", "fake")];
    assert_eq!(h.metric(telemetry::ACCOUNT_LOCKED_OUT, &labels), Some(1.0));
    let probe = h.scheduler.poll_now("b", secs(10)).await.unwrap();
    assert!(matches!(&probe.result, Err(PollError::Auth(m)) if m.contains("locked out")), "{:?}", probe.result);
    let calls_before = fake.calls().len();
    advance(secs(6 * 3600) - secs(700)).await;
    assert_eq!(fake.calls().len(), calls_before, "no poll of the account during the lock-out");

    advance(secs(1300)).await;
    assert_eq!(h.metric(telemetry::ACCOUNT_LOCKED_OUT, &labels), Some(0.0));
    for name in ["a", "b"] {
        let resumed = fake.calls_of(name).into_iter().filter(|t| *t > failed_at).count();
        assert!(resumed >= 1, "{name} resumes once the lock-out has passed");
        assert!(fake.calls_of(name).iter().all(|t| *t <= failed_at || *t >= failed_at + secs(6 * 3600)));
    }
}

#[tokio::test(start_paused = true)]
async fn repeated_auth_failures_lengthen_the_lockout() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    let auth = || Step::Fail(PollError::Auth("HTTP 401".into()));
    fake.script("a", [auth(), auth(), auth()]);
    let acct = account("x", None, None);
    let a = line("a", &acct, secs(600), secs(10));
    h.apply_restored(plan(4, &[(&a, &fake)]));
    advance(secs(60 * 3600)).await;
    let calls = fake.calls_of("a");
    let hours: Vec<u64> = calls.windows(2).map(|w| (w[1] - w[0]).as_secs() / 3600).collect();
    assert_eq!(&hours[..3], [6, 12, 24], "lock-outs of 6 h, 12 h, then 24 h (gaps {hours:?})");
}

#[tokio::test(start_paused = true)]
async fn only_a_reload_with_new_credentials_ends_an_auth_lockout() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    fake.script("a", [Step::Fail(PollError::Auth("HTTP 401".into()))]);
    let acct = account("x", None, None);
    let a = line("a", &acct, secs(600), secs(10));
    h.apply_restored(plan(4, &[(&a, &fake)]));
    advance(secs(601)).await;
    assert_eq!(fake.calls().len(), 1);
    let labels = [("account", "x"), ("driver", "fake")];
    assert_eq!(h.metric(telemetry::ACCOUNT_LOCKED_OUT, &labels), Some(1.0));

    // The same credentials again (20 rounds of reload + /probe): no login goes out, so the
    // operator never sees enough failures to block the customer's account.
    for _ in 0..20 {
        h.apply_restored(plan(4, &[(&a, &fake)]));
        let probe = h.scheduler.poll_now("a", secs(10)).await.unwrap();
        assert!(matches!(&probe.result, Err(PollError::Auth(m)) if m.contains("locked out")), "{:?}", probe.result);
    }
    advance(secs(601)).await;
    assert_eq!(fake.calls().len(), 1, "still locked out after reloads with the same credentials");
    assert_eq!(h.metric(telemetry::ACCOUNT_LOCKED_OUT, &labels), Some(1.0));

    // A fixed password ends it; a change of limits alone (a new gate) does not.
    let limited = account("x", None, Some(Rate::parse("5/s").unwrap()));
    h.apply_restored(plan(4, &[(&line("a", &limited, secs(600), secs(10)), &fake)]));
    advance(secs(601)).await;
    assert_eq!(fake.calls().len(), 1, "new limits, same credentials: still locked out");
    let mut fixed = account("x", None, Some(Rate::parse("5/s").unwrap()));
    Arc::get_mut(&mut fixed).expect("unshared").credentials = 1;
    h.apply_restored(plan(4, &[(&line("a", &fixed, secs(600), secs(10)), &fake)]));
    advance(secs(601)).await;
    assert_eq!(fake.calls().len(), 2, "polling resumes at the next phase slot after new credentials");
    assert_eq!(h.metric(telemetry::ACCOUNT_LOCKED_OUT, &labels), Some(0.0));
    assert_eq!(h.store.get("a").unwrap().last_poll_ok, Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_driver_fails_its_line_and_polling_goes_on() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    fake.script("a", [Step::Panic]);
    let acct = account("x", None, None);
    let a = line("a", &acct, secs(60), secs(10));
    let b = line("b", &acct, secs(60), secs(10));
    h.apply_restored(plan(4, &[(&a, &fake), (&b, &fake)]));
    advance(secs(61)).await;

    let error = h.store.get("a").unwrap().last_error.unwrap();
    assert_eq!(error.reason, Reason::Unavailable);
    assert!(error.message.contains("panicked"), "{}", error.message);
    advance(secs(600)).await;
    assert!(fake.calls_of("a").len() >= 3, "the panicking line is polled again");
    assert!(fake.calls_of("b").len() >= 10, "other lines never noticed");
    assert_eq!(h.store.get("a").unwrap().last_poll_ok, Some(true));
    assert!(h.scheduler.is_running());
    assert!(h.scheduler.poll_now("b", secs(5)).await.is_some());
}

// ---------------------------------------------------------------------------------------------
// Reload, probe, shutdown

#[tokio::test(start_paused = true)]
async fn apply_keeps_staying_lines_stops_removed_ones_and_starts_new_ones() {
    let h = Harness::start();
    let fake = Fake::new(Duration::ZERO);
    fake.script("a", (0..20).map(|_| Step::Fail(PollError::BadResponse("x".into()))));
    let acct = account("x", None, None);
    let a = line("a", &acct, secs(100), secs(10));
    let b = line("b", &acct, secs(100), secs(10));
    let c = line("c", &acct, secs(100), secs(10));
    h.apply_restored(plan(4, &[(&a, &fake), (&b, &fake), (&c, &fake)]));
    advance(secs(250)).await;
    assert!(!fake.calls_of("b").is_empty());
    assert_eq!(h.metric(telemetry::BACKOFF_LINES, &[]), Some(1.0));

    let reload_at = Instant::now();
    let c_faster = line("c", &acct, secs(50), secs(10));
    let d = line("d", &acct, secs(100), secs(10));
    h.apply_restored(plan(4, &[(&a, &fake), (&c_faster, &fake), (&d, &fake)]));
    advance(secs(1000)).await;

    assert!(fake.calls_of("b").iter().all(|t| *t < reload_at), "b stopped");
    assert!(h.store.get("b").is_none(), "b left the store");
    assert!(!fake.calls_of("d").is_empty(), "d started");
    // a kept its failure count: its retries keep doubling across the reload.
    let a_calls = fake.calls_of("a");
    let gaps: Vec<Duration> = a_calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(a_calls.iter().any(|t| *t > reload_at));
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "a's back-off went on: {gaps:?}");
    assert_eq!(h.metric(telemetry::BACKOFF_LINES, &[]), Some(1.0));
    // c moved to its new interval.
    let c_after: Vec<_> = fake.calls_of("c").into_iter().filter(|t| *t > reload_at).collect();
    assert!(c_after.len() >= 19, "c polls every 50 s now ({} polls)", c_after.len());
    assert!(c_after.windows(2).all(|w| (w[1] - w[0]).abs_diff(secs(50)) <= 2 * MS));
}

#[tokio::test(start_paused = true)]
async fn a_removed_line_in_flight_finishes_but_is_not_recorded() {
    let h = Harness::start();
    let quick = Fake::new(Duration::ZERO);
    let slow = Fake::new(secs(30));
    let acct = account("x", None, None);
    let keep = line("keep", &acct, secs(100), secs(60));
    let gone = line("gone", &acct, secs(100), secs(60));
    h.apply_restored(plan(4, &[(&keep, &quick), (&gone, &slow)]));
    let first = h.t0 + spread::until_next_slot(UNIX_EPOCH + secs(START), spread::offset("gone", secs(100)), secs(100));
    sleep_until(first + secs(10)).await;
    assert_eq!(slow.in_flight(), 1);

    h.apply_restored(plan(4, &[(&keep, &quick)]));
    advance(secs(500)).await;
    assert_eq!(slow.in_flight(), 0, "the poll in flight ran to its end");
    assert_eq!(slow.calls().len(), 1, "and was the last");
    assert!(h.store.get("gone").is_none());
    assert_eq!(h.metric(telemetry::POLLS_IN_FLIGHT, &[]), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn a_probe_polls_a_configured_line_now_and_records_it() {
    let h = Harness::start();
    let fake = Fake::new(secs(2));
    let acct = account("x", None, None);
    let l = line("l", &acct, secs(3600), secs(10));
    assert!(!h.scheduler.is_running(), "not ready before the first plan");
    h.apply_restored(plan(4, &[(&l, &fake)]));
    assert!(h.scheduler.poll_now("nope", secs(5)).await.is_none());
    assert!(h.scheduler.is_running());

    let probe = h.scheduler.poll_now("l", secs(5)).await.unwrap();
    assert_eq!(probe.result.unwrap().sms_remaining, Some(42));
    assert_eq!(probe.duration, secs(2));
    assert_eq!(probe.notes, ["fake poll"]);
    let state = h.store.get("l").unwrap();
    assert_eq!((state.polls_total, state.last_poll_ok), (1, Some(true)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_polls_in_flight_finish_then_stops() {
    let h = Harness::start();
    let fake = Fake::new(secs(20));
    let acct = account("x", None, None);
    let l = line("l", &acct, secs(100), secs(60));
    h.apply_restored(plan(4, &[(&l, &fake)]));
    let first = h.t0 + spread::until_next_slot(UNIX_EPOCH + secs(START), spread::offset("l", secs(100)), secs(100));
    sleep_until(first + secs(5)).await;
    assert_eq!(fake.in_flight(), 1);

    h.scheduler.shutdown().await;
    assert!(Instant::now() - first >= secs(20), "shutdown waited for the poll");
    assert!(Instant::now() - first <= secs(20) + 2 * MS, "and no longer");
    assert_eq!(h.store.get("l").unwrap().polls_total, 1, "its result was recorded");
    assert!(!h.scheduler.is_running());
    advance(secs(1000)).await;
    assert_eq!(fake.calls().len(), 1, "no poll after shutdown");
    assert!(h.scheduler.poll_now("l", secs(5)).await.is_none());
    h.scheduler.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn registers_its_metrics_in_the_given_registry() {
    let h = Harness::start();
    for name in
        [telemetry::POLLS_IN_FLIGHT, telemetry::BACKOFF_LINES, &format!("{}_count", telemetry::QUEUE_WAIT_SECONDS)]
    {
        assert_eq!(h.metric(name, &[]), Some(0.0), "{name}");
    }
    let clock: SharedClock = Arc::new(TokioClock::starting_at(UNIX_EPOCH + secs(START)));
    assert!(
        Scheduler::try_start(Arc::new(Store::new()), clock.clone(), &h.registry).is_err(),
        "try_start refuses a registry that already holds the scheduler's metrics"
    );
    // `start` logs that and polls anyway.
    let store = Arc::new(Store::new());
    let second = Scheduler::start(store.clone(), clock, &h.registry);
    let fake = Fake::new(Duration::ZERO);
    let l = line("l", &account("x", None, None), secs(60), secs(10));
    second.apply(plan(4, &[(&l, &fake)]));
    advance(secs(61)).await;
    assert_eq!(store.get("l").unwrap().last_poll_ok, Some(true));
}

// ---------------------------------------------------------------------------------------------
// Plan::build with a real config and the demo driver

fn demo_config(lines: usize) -> crate::config::Config {
    let mut yaml = String::from("global:\n  poll_interval: 1m\n  max_concurrency: 8\nlines:\n");
    for i in 0..lines {
        yaml.push_str(&format!("  - name: demo-{i:03}\n    driver: demo\n"));
    }
    crate::config::parse("test.yaml", &yaml, crate::drivers::REGISTRY).unwrap()
}

#[test]
fn plan_pairs_every_line_with_its_accounts_driver_and_honours_the_shard() {
    let config = demo_config(60);
    let clock: SharedClock = Arc::new(TokioClock::starting_at(UNIX_EPOCH));
    let cx = BuildContext::new(clock);
    let full = Plan::build(&config, &cx, None).unwrap();
    assert_eq!(full.len(), 60);
    assert_eq!(full.max_concurrency(), 8);
    let names: Vec<String> = full.lines().iter().map(|l| l.name.clone()).collect();
    assert_eq!(names[0], "demo-000", "config order");

    let mut seen = Vec::new();
    for i in 0..3 {
        let shard = Shard::new(i, 3).unwrap();
        let part = Plan::build(&config, &cx, Some(shard)).unwrap();
        assert!(part.len() >= 10, "shard {shard} has {} lines", part.len());
        assert!(part.lines().iter().all(|l| shard.owns(&l.name)));
        seen.extend(part.lines().iter().map(|l| l.name.clone()));
    }
    seen.sort();
    assert_eq!(seen, names, "the shards partition the lines");
}

#[tokio::test(start_paused = true)]
async fn the_demo_fleet_polls_through_the_scheduler() {
    let h = Harness::start();
    let config = demo_config(20);
    let clock: SharedClock = Arc::new(TokioClock::starting_at(UNIX_EPOCH + secs(START)));
    let p = Plan::build(&config, &BuildContext::new(clock), None).unwrap();
    h.apply_restored(p);
    advance(secs(61)).await;
    let view = h.store.view();
    assert_eq!(view.len(), 20);
    assert!(view.lines().all(|s| s.polls_total >= 1 && s.last_poll_ok == Some(true)));
}

#[tokio::test(start_paused = true)]
async fn poll_once_polls_every_line_of_the_shard_one_time() {
    let config = demo_config(30);
    let clock: SharedClock = Arc::new(TokioClock::starting_at(UNIX_EPOCH + secs(START)));
    let store = Arc::new(Store::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = {
        let seen = seen.clone();
        Box::new(move |done, total| seen.lock().unwrap().push((done, total))) as Progress
    };
    let shard = Shard::new(1, 2).unwrap();
    let total = poll_once(&config, &store, clock, Some(shard), Some(progress)).await.unwrap();
    let view = store.view();
    assert_eq!(view.len(), total);
    assert!(view.lines().all(|s| shard.owns(&s.line.name) && s.polls_total == 1));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), total);
    assert_eq!(seen.last(), Some(&(total, total)));
}
