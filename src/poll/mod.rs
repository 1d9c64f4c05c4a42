//! The scheduler: when each line polls, under which limits, and what a result means for the
//! next attempt (DESIGN §8; policy numbers in `backoff.rs` and `docs/POLLING.md`).
//!
//! One event loop owns all scheduling state — per-line timers in a heap, failure counts, the
//! account gates — and reacts to a closed set of events: a command from the handle (apply,
//! probe, shutdown), a timer coming due, a poll task finishing. Each poll runs in a task of its
//! own and reports back. One loop rather than a task per account because reload is then a
//! single message applied between two events with no locks around timers, 100,000 lines cost
//! a heap entry each instead of a sleeping task each, and back-off and lock-outs are read and
//! written in one place. What polls share while running (limits, 429 pauses, lock-outs) lives
//! in the account's [`limiter::AccountGate`].

pub mod backoff;
pub mod budget;
pub mod discovery;
mod first_wave;
pub mod limiter;
mod once;
pub mod plan;
pub mod shard_spec;
pub mod spread;
mod task;
pub mod telemetry;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{error, info};

pub use once::{poll_once, Progress};
pub use plan::{Plan, PlannedAccount, PlannedLine};
pub use shard_spec::{ShardSpec, ShardSpecError};
pub use spread::{Shard, ShardError};

use crate::clock::SharedClock;
use crate::config::AlertThresholds;
use crate::drivers::{DiscoveredLine, Driver};
use crate::error::PollError;
use crate::reading::Reading;
use crate::store::{PollOutcome, Store};
use first_wave::FirstWave;
use limiter::AccountGate;
use task::{Executed, Job};
use telemetry::Telemetry;

/// Intervals shorter than this are treated as this long, so a zero interval cannot spin.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The result of `/probe?line=NAME`.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    pub result: Result<Reading, PollError>,
    /// How long the driver ran (zero when the poll could not start).
    pub duration: Duration,
    /// What the poll did, for `/probe?debug=true`; never secrets.
    pub notes: Vec<String>,
}

enum Command {
    /// A config load or reload: lock-outs end.
    Apply(Plan),
    /// The same config with another set of discovered lines: lock-outs stay.
    Update(Plan),
    Probe {
        line: String,
        timeout: Duration,
        reply: oneshot::Sender<Option<ProbeResult>>,
    },
    List {
        account: String,
        driver: Arc<dyn Driver>,
        timeout: Duration,
        reply: oneshot::Sender<Listing>,
    },
    Shutdown,
    /// How many poll, probe and listing tasks exist (tests).
    #[cfg(test)]
    Tasks(oneshot::Sender<usize>),
}

type Listing = Result<Vec<DiscoveredLine>, PollError>;

/// Lists an account's SIMs through the scheduler, so the listing waits for the account's
/// limits (rate, concurrency, 429 pause, lock-out) like its polls. Cheap to clone.
#[derive(Clone)]
pub struct Lister {
    commands: mpsc::UnboundedSender<Command>,
}

impl Lister {
    /// Lists `account` with `driver` (waiting for admission, then at most `timeout`). The
    /// outcome counts for the account as a poll's would: a 429 pauses it, `auth` locks it out.
    pub async fn list(&self, account: &str, driver: Arc<dyn Driver>, timeout: Duration) -> Listing {
        let (reply, answer) = oneshot::channel();
        let stopped = || PollError::Unavailable("the scheduler has stopped".into());
        self.commands
            .send(Command::List { account: account.to_string(), driver, timeout, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Handle to the running scheduler. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Scheduler {
    commands: mpsc::UnboundedSender<Command>,
    store: Arc<Store>,
    running: Arc<AtomicBool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Scheduler {
    /// Registers the scheduler's metrics in `registry` and starts its loop on the current tokio
    /// runtime. Nothing polls until the first [`Scheduler::apply`]. If the metric names are
    /// already taken in `registry`, polling still starts, without the scheduler's metrics,
    /// and an error is logged; [`Scheduler::try_start`] fails instead.
    pub fn start(store: Arc<Store>, clock: SharedClock, registry: &prometheus::Registry) -> Scheduler {
        let telemetry = Telemetry::register(registry).unwrap_or_else(|err| {
            error!(error = %err, "cannot register the scheduler's metrics; polling without them");
            Telemetry::disabled()
        });
        Scheduler::with_telemetry(store, clock, telemetry)
    }

    /// Like [`Scheduler::start`], but a registration failure is an error.
    pub fn try_start(
        store: Arc<Store>,
        clock: SharedClock,
        registry: &prometheus::Registry,
    ) -> Result<Scheduler, prometheus::Error> {
        Ok(Scheduler::with_telemetry(store, clock, Telemetry::register(registry)?))
    }

    fn with_telemetry(store: Arc<Store>, clock: SharedClock, telemetry: Telemetry) -> Scheduler {
        let (commands, receiver) = mpsc::unbounded_channel();
        let running = Arc::new(AtomicBool::new(false));
        let (shutdown, _) = watch::channel(false);
        let engine = Engine {
            store: store.clone(),
            clock,
            telemetry,
            global: Arc::new(Semaphore::new(1)),
            global_limit: 0,
            gates: HashMap::new(),
            lines: HashMap::new(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            next_line_id: 0,
            apply_epoch: 0,
            tasks: JoinSet::new(),
            task_lines: HashMap::new(),
            first_wave: FirstWave::new(MIN_FIRST_WAVE),
            shutdown,
            running: running.clone(),
        };
        let task = tokio::spawn(engine.run(receiver));
        Scheduler { commands, store, running, task: Mutex::new(Some(task)) }
    }

    /// Makes the scheduler run `plan`: the same path for startup and reload. Lines that stay
    /// keep their phase, timers and back-off (a changed interval reschedules them), removed
    /// lines stop (a poll in flight finishes, and the store ignores its result), new lines
    /// start at their phase. Every auth lock-out ends, since a reload is how an operator says
    /// the credentials were fixed. Calls `store.apply_plan` itself, before the loop sees the
    /// plan, so the store already knows new lines when their first result arrives.
    pub fn apply(&self, plan: Plan) {
        self.store.apply_plan(&plan.lines());
        // Fails only when the loop has stopped (after shutdown): nothing left to apply to.
        let _ = self.commands.send(Command::Apply(plan));
    }

    /// Like [`Scheduler::apply`] for a plan of the same config whose discovered lines changed:
    /// lock-outs stay (nothing says the credentials were fixed).
    pub fn update(&self, plan: Plan) {
        self.store.apply_plan(&plan.lines());
        let _ = self.commands.send(Command::Update(plan));
    }

    /// A handle that lists accounts' SIMs under their limits.
    pub fn lister(&self) -> Lister {
        Lister { commands: self.commands.clone() }
    }

    /// How many poll tasks exist, waiting at a gate or running (tests).
    #[cfg(test)]
    pub async fn tasks(&self) -> usize {
        let (reply, answer) = oneshot::channel();
        let _ = self.commands.send(Command::Tasks(reply));
        answer.await.unwrap_or(0)
    }

    /// Polls a configured line now, ignoring its timer but waiting like any poll for the
    /// account's rate limit and both concurrency limits; the result is recorded in the store
    /// too. `timeout` bounds waiting and polling together (the line's own timeout still
    /// applies). A locked-out account is not polled: the result is an auth error saying so.
    /// The line's timer and back-off stay as they are; what the result means for the account
    /// (a 429 pause, an auth lock-out) applies as for any poll.
    /// `None` if no such line is configured (or the scheduler has stopped).
    pub async fn poll_now(&self, line: &str, timeout: Duration) -> Option<ProbeResult> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Probe { line: line.to_string(), timeout, reply }).ok()?;
        answer.await.ok().flatten()
    }

    /// Stops every timer, cancels polls still waiting for a permit, lets polls in flight finish
    /// (each within its timeout), then returns. Later calls return at once.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            if let Err(err) = task.await {
                error!(error = %err, "the scheduler loop ended abnormally");
            }
        }
    }

    /// True once a plan has been applied and until shutdown: what `/-/ready` waits for.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// What a timer wakes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A line's poll is due; `id` tells a re-added line from the one a stale timer was for.
    Line { name: Arc<str>, id: u64 },
    /// An account's lock-out ends: clear it so its gauge drops to 0 on time.
    Unlock { account: Arc<str> },
}

type Timer = Reverse<(Instant, u64, Target)>;

struct LineEntry {
    planned: PlannedLine,
    gate: Arc<AccountGate>,
    id: u64,
    jitter_seed: u64,
    /// Consecutive failures; > 0 means backing off.
    failures: u32,
    /// A scheduled poll is running (probes do not count).
    in_flight: bool,
    /// The sequence number of the line's live timer; older heap entries are stale.
    timer: Option<u64>,
    /// The timer waits for the account's lock-out to end (a reload reschedules it).
    held: bool,
    /// The last plan that had this line (`Engine::apply_epoch`); older entries are swept out.
    epoch: u64,
    /// Waiting in the first wave for its first poll (it has no timer meanwhile).
    queued: bool,
}

/// What a finished poll task reports to the loop.
struct Finished {
    line: Arc<str>,
    id: u64,
    /// The account whose first-wave slot the poll held.
    wave: Option<Arc<str>>,
    kind: FinishedKind,
}

enum FinishedKind {
    Scheduled(Summary),
    Probe { locked_until: Option<Instant> },
    Listed { account: Arc<str>, locked_until: Option<Instant> },
}

/// The part of a scheduled poll's outcome that decides the next attempt.
enum Summary {
    Polled { error: Option<PollError>, locked_until: Option<Instant> },
    LockedOut(Instant),
    NotPolled,
}

/// What a poll task was for: line, entry id, probe or not, first-wave account.
type TaskOf = (Arc<str>, u64, bool, Option<Arc<str>>);

/// Poll tasks of the first wave waiting at the gates at once, per permit of
/// `global.max_concurrency` (at least [`MIN_FIRST_WAVE`]).
const FIRST_WAVE_PER_PERMIT: usize = 4;
const MIN_FIRST_WAVE: usize = 64;

fn first_wave_limit(global_limit: usize) -> usize {
    global_limit.saturating_mul(FIRST_WAVE_PER_PERMIT).max(MIN_FIRST_WAVE)
}

struct Engine {
    store: Arc<Store>,
    clock: SharedClock,
    telemetry: Telemetry,
    global: Arc<Semaphore>,
    global_limit: usize,
    gates: HashMap<String, Arc<AccountGate>>,
    lines: HashMap<Arc<str>, LineEntry>,
    timers: BinaryHeap<Timer>,
    next_seq: u64,
    next_line_id: u64,
    /// Counts applied plans (see `LineEntry::epoch`).
    apply_epoch: u64,
    tasks: JoinSet<Finished>,
    /// Which line each task polls, for a task that dies without reporting (a scheduler bug).
    task_lines: HashMap<tokio::task::Id, TaskOf>,
    /// Lines that have never polled, waiting for their first poll.
    first_wave: FirstWave,
    shutdown: watch::Sender<bool>,
    running: Arc<AtomicBool>,
}

impl Engine {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Command::Apply(plan)) => self.apply(plan, true),
                    Some(Command::Update(plan)) => self.apply(plan, false),
                    Some(Command::List { account, driver, timeout, reply }) => self.list(&account, driver, timeout, reply),
                    Some(Command::Probe { line, timeout, reply }) => self.probe(&line, timeout, reply),
                    #[cfg(test)]
                    Some(Command::Tasks(reply)) => {
                        let _ = reply.send(self.tasks.len());
                    }
                    Some(Command::Shutdown) | None => break,
                },
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(joined);
                }
                () = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)),
                    if next_timer.is_some() => self.fire_due(),
            }
        }
        self.running.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        info!(polls = self.tasks.len(), "scheduler stopping; waiting for polls in flight");
        while let Some(joined) = self.tasks.join_next_with_id().await {
            self.finished(joined);
        }
    }

    fn apply(&mut self, plan: Plan, reload: bool) {
        let now = Instant::now();
        if plan.max_concurrency() != self.global_limit {
            // Polls in flight keep their permits of the old semaphore, so right after a change
            // the old and new limits overlap until those polls end.
            self.global_limit = plan.max_concurrency();
            self.global = Arc::new(Semaphore::new(self.global_limit));
            self.first_wave.set_limit(first_wave_limit(self.global_limit));
        }

        let mut old_gates = std::mem::take(&mut self.gates);
        let accounts = plan.planned().iter().map(|p| &p.line.account);
        for account in accounts.chain(plan.discovering().iter().map(|d| &d.account)) {
            if self.gates.contains_key(&account.name) {
                continue;
            }
            let gate = match old_gates.remove(&account.name) {
                Some(gate) if gate.fits(account) => {
                    if reload {
                        gate.reconfigured(account, plan.relogged(&account.name));
                    }
                    gate
                }
                previous => {
                    if let Some(previous) = &previous {
                        // The new gate carries a lock-out over when the credentials stay.
                        let keeps = previous.same_credentials(account) && !plan.relogged(&account.name);
                        if previous.driver() != account.driver.name || !keeps {
                            previous.end_lockout();
                        }
                        if previous.driver() != account.driver.name {
                            self.telemetry.forget_account(previous.name(), previous.driver());
                        }
                    }
                    Arc::new(AccountGate::new(account, previous.as_deref(), self.telemetry.clone(), now))
                }
            };
            self.gates.insert(account.name.clone(), gate);
        }
        for gate in old_gates.values() {
            self.telemetry.forget_account(gate.name(), gate.driver());
        }
        self.account_series(&plan);

        // Entries are updated in place and unplanned ones swept out after, rather than moved
        // into a new map: a reload of 100,000 lines would otherwise hold two maps and a new
        // name per line at once, at the reload's memory peak.
        self.apply_epoch += 1;
        let epoch = self.apply_epoch;
        let mut reschedule = Vec::new();
        for planned in plan.into_lines() {
            let Some(gate) = self.gates.get(&planned.line.account.name).cloned() else {
                continue;
            };
            let known = self.lines.get_key_value(planned.line.name.as_str()).map(|(name, _)| name.clone());
            match known.and_then(|name| self.lines.get_mut(&name).map(|entry| (name, entry))) {
                Some((name, entry)) => {
                    let moved = entry.planned.line.poll_interval != planned.line.poll_interval
                        || entry.planned.offset != planned.offset;
                    if !entry.in_flight
                        && !entry.queued
                        && (entry.held || entry.timer.is_none() || (moved && entry.failures == 0))
                    {
                        reschedule.push(name);
                    }
                    entry.planned = planned;
                    entry.gate = gate;
                    entry.epoch = epoch;
                }
                None => {
                    let name: Arc<str> = Arc::from(planned.line.name.as_str());
                    self.next_line_id += 1;
                    reschedule.push(name.clone());
                    let entry = LineEntry {
                        jitter_seed: backoff::jitter_seed(&name),
                        planned,
                        gate,
                        id: self.next_line_id,
                        failures: 0,
                        in_flight: false,
                        timer: None,
                        held: false,
                        epoch,
                        queued: false,
                    };
                    self.lines.insert(name, entry);
                }
            }
        }
        let (mut removed, mut dropped_backing_off) = (0, 0);
        self.lines.retain(|_, entry| {
            let kept = entry.epoch == epoch;
            if !kept {
                removed += 1;
                dropped_backing_off += usize::from(entry.failures > 0);
            }
            kept
        });
        self.telemetry.add_backoff_lines(-(dropped_backing_off as i64));
        // A line that has never polled (new, or not restored from storage) polls now, paced by
        // its account's limits; the others keep their phase, so a restart is no thundering herd.
        let never_polled: Vec<bool> = {
            let view = self.store.view();
            reschedule.iter().map(|name| view.get(name).is_none_or(|state| state.last_attempt.is_none())).collect()
        };
        for (name, first) in reschedule.into_iter().zip(never_polled) {
            if first {
                self.queue_first_poll(&name);
            } else {
                self.schedule_slot_after(&name, now);
            }
        }
        self.pump_first_wave();
        info!(
            lines = self.lines.len(),
            accounts = self.gates.len(),
            removed,
            max_concurrency = self.global_limit,
            "scheduler applied a plan",
        );
        self.running.store(true, Ordering::Release);
    }

    /// Pops every timer due by now.
    fn fire_due(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
            let Some(Reverse((_, seq, target))) = self.timers.pop() else {
                break;
            };
            match target {
                Target::Line { name, id } => self.line_due(name, id, seq, now),
                Target::Unlock { account } => {
                    if let Some(gate) = self.gates.get(&*account) {
                        gate.locked_until(now);
                    }
                }
            }
        }
    }

    fn line_due(&mut self, name: Arc<str>, id: u64, seq: u64, now: Instant) {
        let Some(entry) = self.lines.get_mut(&name) else {
            return;
        };
        if entry.id != id || entry.timer != Some(seq) || entry.in_flight {
            return;
        }
        entry.timer = None;
        if let Some(until) = entry.gate.locked_until(now) {
            self.hold_until(&name, until);
            return;
        }
        if entry.gate.paused_until(now).is_some() {
            // A 429 pause of a minute would otherwise leave a task per line that came due
            // waiting at the gate (found by the soak: +30 MiB at 10,000 lines). The line waits
            // in the wave queue instead, which lets only as many tasks wait as can run, and
            // polls as soon as the pause and the limits allow, as it would have.
            self.queue_first_poll(&name);
            self.pump_first_wave();
            return;
        }
        self.dispatch(name);
    }

    fn dispatch(&mut self, name: Arc<str>) {
        self.dispatch_poll(name, None);
    }

    /// Queues a line in the wave queue: one that has never polled (the first wave), or one that
    /// came due while its account was paused by a 429.
    fn queue_first_poll(&mut self, name: &Arc<str>) {
        let Some(entry) = self.lines.get_mut(name) else {
            return;
        };
        entry.queued = true;
        entry.held = false;
        entry.timer = None;
        // The polls that can run at once plus one waiting for its turn: more waiting tasks
        // would only be memory, and a reload could not take their lines back.
        let cap = entry.gate.parallelism(self.global_limit.max(1)) + 1;
        self.first_wave.push(entry.gate.name(), cap, (name.clone(), entry.id));
    }

    /// Starts first polls while the first wave has room.
    fn pump_first_wave(&mut self) {
        let now = Instant::now();
        while let Some((account, (name, id))) = self.first_wave.next() {
            let live = self.lines.get_mut(&name).filter(|e| e.id == id && e.queued && !e.in_flight);
            let Some(entry) = live else {
                self.first_wave.done(&account);
                continue;
            };
            entry.queued = false;
            if let Some(until) = entry.gate.locked_until(now) {
                self.first_wave.done(&account);
                self.hold_until(&name, until);
                continue;
            }
            self.dispatch_poll(name, Some(account));
        }
    }

    fn dispatch_poll(&mut self, name: Arc<str>, wave: Option<Arc<str>>) {
        let Some(job) = self.job(&name) else {
            if let Some(account) = wave {
                self.first_wave.done(&account);
            }
            return;
        };
        let Some(entry) = self.lines.get_mut(&name) else {
            return;
        };
        entry.in_flight = true;
        let id = entry.id;
        let mut shutdown = self.shutdown.subscribe();
        let line = name.clone();
        let task_wave = wave.clone();
        let handle = self.tasks.spawn(async move {
            let summary = match task::execute(&job, None, &mut shutdown).await {
                Executed::Polled(polled) => {
                    Summary::Polled { error: polled.result.err(), locked_until: polled.locked_until }
                }
                Executed::LockedOut(until) => Summary::LockedOut(until),
                Executed::DeadlinePassed | Executed::ShutDown => Summary::NotPolled,
            };
            Finished { line, id, wave: task_wave, kind: FinishedKind::Scheduled(summary) }
        });
        self.task_lines.insert(handle.id(), (name, id, false, wave));
    }

    fn probe(&mut self, line: &str, timeout: Duration, reply: oneshot::Sender<Option<ProbeResult>>) {
        let found = self.lines.get_key_value(line).map(|(n, e)| (n.clone(), e.id));
        let Some(((name, id), job)) = found.zip(self.job(line)) else {
            let _ = reply.send(None);
            return;
        };
        let mut shutdown = self.shutdown.subscribe();
        let line = name.clone();
        let handle = self.tasks.spawn(async move {
            // A timeout too large to add (Duration::MAX) means no deadline but the line's own.
            let deadline = Instant::now().checked_add(timeout);
            let executed = task::execute(&job, deadline, &mut shutdown).await;
            let locked_until = match &executed {
                Executed::Polled(polled) => polled.locked_until,
                _ => None,
            };
            let _ = reply.send(Some(probe_result(&job, executed, timeout)));
            Finished { line, id, wave: None, kind: FinishedKind::Probe { locked_until } }
        });
        self.task_lines.insert(handle.id(), (name, id, true, None));
    }

    /// Runs one listing of `account` in a task of its own, admitted like a poll.
    fn list(&mut self, account: &str, driver: Arc<dyn Driver>, timeout: Duration, reply: oneshot::Sender<Listing>) {
        let Some(gate) = self.gates.get(account).cloned() else {
            let _ = reply.send(Err(PollError::Config(format!("account `{account}` is not in the running plan"))));
            return;
        };
        let global = self.global.clone();
        let clock = self.clock.clone();
        let mut shutdown = self.shutdown.subscribe();
        let account: Arc<str> = Arc::from(account);
        self.tasks.spawn(async move {
            let (result, locked_until) = task::list(&gate, &global, driver, timeout, &clock, &mut shutdown).await;
            let _ = reply.send(result);
            Finished { line: account.clone(), id: 0, wave: None, kind: FinishedKind::Listed { account, locked_until } }
        });
    }

    fn job(&self, name: &str) -> Option<Job> {
        let entry = self.lines.get(name)?;
        Some(Job {
            line: entry.planned.line.clone(),
            driver: entry.planned.driver.clone(),
            gate: entry.gate.clone(),
            global: self.global.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            telemetry: self.telemetry.clone(),
        })
    }

    fn finished(&mut self, joined: Result<(tokio::task::Id, Finished), JoinError>) {
        let finished = match joined {
            Ok((task, finished)) => {
                self.task_lines.remove(&task);
                finished
            }
            Err(err) => match self.task_lines.remove(&err.id()) {
                Some((line, id, probe, wave)) => self.task_died(line, id, probe, wave, &err),
                None => return,
            },
        };
        if let Some(account) = &finished.wave {
            self.first_wave.done(account);
        }
        let locked_until = match &finished.kind {
            FinishedKind::Scheduled(Summary::Polled { locked_until, .. }) => *locked_until,
            FinishedKind::Probe { locked_until } => *locked_until,
            FinishedKind::Listed { account, locked_until: Some(until) } => {
                self.push_timer(*until, Target::Unlock { account: account.clone() });
                None
            }
            _ => None,
        };
        if let Some(until) = locked_until {
            if let Some(entry) = self.lines.get(&finished.line) {
                let account: Arc<str> = Arc::from(entry.gate.name());
                self.push_timer(until, Target::Unlock { account });
            }
        }
        if let FinishedKind::Scheduled(summary) = finished.kind {
            self.scheduled_poll_finished(&finished.line, finished.id, summary);
        }
        if finished.wave.is_some() {
            self.pump_first_wave();
        }
    }

    /// Per-account duration histograms and default thresholds for the plan's lines.
    fn account_series(&mut self, plan: &Plan) {
        let mut keys = HashSet::new();
        let mut defaults: HashMap<&str, AlertThresholds> = HashMap::new();
        for planned in plan.planned() {
            let account = &planned.line.account;
            defaults.entry(account.label()).or_insert(account.alert);
            keys.insert(crate::store::account_key(&planned.line));
        }
        let defaults: Vec<(String, AlertThresholds)> = defaults.into_iter().map(|(a, t)| (a.to_string(), t)).collect();
        self.telemetry.set_accounts(&keys, &defaults);
    }

    /// A poll task ended without reporting: only a bug in this module can cause that, since
    /// driver code runs in a task of its own. The line gets an error and goes on.
    fn task_died(&mut self, line: Arc<str>, id: u64, probe: bool, wave: Option<Arc<str>>, err: &JoinError) -> Finished {
        error!(line = %line, error = %err, "a poll task of the scheduler died; the line goes on");
        let error = PollError::Unavailable("the poll task died (a bug in the exporter)".into());
        let outcome = PollOutcome { at: self.clock.now(), duration: Duration::ZERO, result: Err(error.clone()) };
        if let (Some(_), Some(entry)) = (self.store.record(&line, outcome), self.lines.get(&*line)) {
            self.telemetry.observe_poll(&entry.planned.line, Duration::ZERO);
        }
        let kind = if probe {
            FinishedKind::Probe { locked_until: None }
        } else {
            FinishedKind::Scheduled(Summary::Polled { error: Some(error), locked_until: None })
        };
        Finished { line, id, wave, kind }
    }

    fn scheduled_poll_finished(&mut self, name: &Arc<str>, id: u64, summary: Summary) {
        let now = Instant::now();
        let Some(entry) = self.lines.get_mut(name) else {
            return;
        };
        if entry.id != id {
            return;
        }
        entry.in_flight = false;
        match summary {
            Summary::Polled { error: None, .. } => {
                if entry.failures > 0 {
                    self.telemetry.add_backoff_lines(-1);
                }
                entry.failures = 0;
                self.schedule_slot_after(name, now);
            }
            Summary::Polled { error: Some(error), .. } => {
                if entry.failures == 0 {
                    self.telemetry.add_backoff_lines(1);
                }
                entry.failures = entry.failures.saturating_add(1);
                let delay = backoff::next_attempt(
                    &error,
                    entry.failures,
                    entry.planned.line.poll_interval.max(MIN_INTERVAL),
                    entry.jitter_seed,
                );
                entry.held = false;
                let timer = self.push_timer(now + delay, Target::Line { name: name.clone(), id });
                self.set_timer(name, timer);
            }
            Summary::LockedOut(until) => self.hold_until(name, until),
            Summary::NotPolled => {}
        }
    }

    /// Schedules the line at its first phase slot after `from`.
    fn schedule_slot_after(&mut self, name: &Arc<str>, from: Instant) {
        let Some(entry) = self.lines.get_mut(name) else {
            return;
        };
        entry.held = false;
        let at = self.slot_after(name, from);
        self.schedule_line(name, at);
    }

    /// Parks the line until the account's lock-out ends, then at its next phase slot.
    fn hold_until(&mut self, name: &Arc<str>, until: Instant) {
        let at = self.slot_after(name, until);
        self.schedule_line(name, at);
        if let Some(entry) = self.lines.get_mut(name) {
            entry.held = true;
        }
    }

    fn slot_after(&self, name: &str, from: Instant) -> Instant {
        let Some(entry) = self.lines.get(name) else {
            return from;
        };
        let now = Instant::now();
        let ahead = from.saturating_duration_since(now);
        let wall = self.clock.now() + ahead;
        let interval = entry.planned.line.poll_interval.max(MIN_INTERVAL);
        now + ahead + spread::until_next_slot(wall, entry.planned.offset, interval)
    }

    fn schedule_line(&mut self, name: &Arc<str>, at: Instant) {
        let Some(id) = self.lines.get(name).map(|e| e.id) else {
            return;
        };
        let timer = self.push_timer(at, Target::Line { name: name.clone(), id });
        self.set_timer(name, timer);
    }

    fn set_timer(&mut self, name: &Arc<str>, timer: u64) {
        if let Some(entry) = self.lines.get_mut(name) {
            entry.timer = Some(timer);
        }
    }

    fn push_timer(&mut self, at: Instant, target: Target) -> u64 {
        self.next_seq += 1;
        self.timers.push(Reverse((at, self.next_seq, target)));
        self.next_seq
    }
}

fn probe_result(job: &Job, executed: Executed, timeout: Duration) -> ProbeResult {
    let not_polled = |result: PollError, note: String| ProbeResult {
        result: Err(result),
        duration: Duration::ZERO,
        notes: vec![note],
    };
    match executed {
        Executed::Polled(polled) => {
            let mut notes = Vec::with_capacity(polled.notes.len() + 1);
            if polled.queue_wait >= Duration::from_millis(1) {
                notes.push(format!(
                    "waited {} for a poll slot (concurrency and rate limits)",
                    humantime::format_duration(round_ms(polled.queue_wait))
                ));
            }
            notes.extend(polled.notes);
            ProbeResult {
                result: polled.result,
                duration: polled.duration,
                notes,
            }
        }
        Executed::LockedOut(until) => {
            let left = humantime::format_duration(Duration::from_secs(
                until.saturating_duration_since(Instant::now()).as_secs(),
            ));
            not_polled(
                PollError::Auth(format!(
                    "account `{}` is locked out after an authentication failure for another {left}; reload the config once the credentials are fixed",
                    job.gate.name()
                )),
                "not polled: the account is locked out".into(),
            )
        }
        Executed::DeadlinePassed => not_polled(
            PollError::Timeout(timeout),
            "not polled: no poll slot came free within the probe timeout (the account's rate or concurrency limit, or the global one, is saturated)".into(),
        ),
        Executed::ShutDown => not_polled(
            PollError::Unavailable("the exporter is shutting down".into()),
            "not polled: shutting down".into(),
        ),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
}
