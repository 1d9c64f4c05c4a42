//! One poll from start to finish: wait for admission, run the driver in a task of its own under
//! the line's timeout (a panic there becomes an error for the line, not a dead scheduler),
//! record the outcome in the store, log it, and apply what it means for the account.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::backoff;
use super::limiter::AccountGate;
use super::telemetry::Telemetry;
use crate::clock::SharedClock;
use crate::config::Line;
use crate::drivers::{DiscoveredLine, Driver, PollContext};
use crate::error::{PollError, Reason};
use crate::reading::Reading;
use crate::store::{PollOutcome, Store};

/// Everything a poll needs, cloned out of the scheduler so the task owns it.
pub(super) struct Job {
    pub line: Arc<Line>,
    pub driver: Arc<dyn Driver>,
    pub gate: Arc<AccountGate>,
    pub global: Arc<Semaphore>,
    pub store: Arc<Store>,
    pub clock: SharedClock,
    pub telemetry: Telemetry,
}

pub(super) enum Executed {
    /// The driver ran; the outcome is in the store.
    Polled(Polled),
    /// The account was locked out when the poll's turn came; nothing was sent.
    LockedOut(Instant),
    /// Not admitted before the deadline (probes only); nothing was sent.
    DeadlinePassed,
    /// The scheduler shut down while the poll waited; nothing was sent.
    ShutDown,
}

pub(super) struct Polled {
    pub result: Result<Reading, PollError>,
    pub duration: Duration,
    pub queue_wait: Duration,
    pub notes: Vec<String>,
    /// Set when this poll's auth failure started a lock-out of the account.
    pub locked_until: Option<Instant>,
}

/// Runs one poll of `job.line`. `deadline` bounds waiting and polling together (probes); a
/// scheduled poll passes `None` and gets the line's full timeout once admitted.
pub(super) async fn execute(job: &Job, deadline: Option<Instant>, shutdown: &mut watch::Receiver<bool>) -> Executed {
    let queued = Instant::now();
    if let Some(until) = job.gate.locked_until(queued) {
        return Executed::LockedOut(until);
    }
    // A driver that paces its requests takes a token per request, not per poll.
    let paced = job.driver.paces_requests();
    let admit = async {
        let admission = async {
            if paced {
                job.gate.admit_paced(&job.global).await
            } else {
                job.gate.admit(&job.global).await
            }
        };
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, admission).await.ok(),
            None => Some(admission.await),
        }
    };
    let admission = tokio::select! {
        biased;
        _ = shutdown.wait_for(|stopping| *stopping) => return Executed::ShutDown,
        admitted = admit => match admitted {
            Some(Ok(admission)) => admission,
            Some(Err(_closed)) => return Executed::ShutDown,
            None => return Executed::DeadlinePassed,
        },
    };
    let started = Instant::now();
    let queue_wait = started - queued;
    job.telemetry.observe_queue_wait(queue_wait);
    // A poll admitted just after another one's auth failure must not go out.
    if let Some(until) = job.gate.locked_until(started) {
        return Executed::LockedOut(until);
    }

    let timeout = match deadline {
        Some(deadline) => job.line.timeout.min(deadline.saturating_duration_since(started)),
        None => job.line.timeout,
    };
    let in_flight = InFlight::enter(&job.telemetry);
    let mut cx = PollContext::new(timeout, job.clock.clone());
    if paced {
        cx = cx.with_pacer(job.gate.clone());
    }
    let cx = Arc::new(cx);
    // Nothing an operator echoed of the account's credentials goes further than this.
    let redactor = &job.line.account.redactor;
    let result = run_driver(job, cx.clone(), timeout).await.map_err(|e| e.map_message(|m| redactor.redact(m)));
    let duration = started.elapsed();
    drop(admission);
    drop(in_flight);

    let locked_until = account_effects(job, &result);
    log_outcome(job, &result, duration);
    let outcome = PollOutcome { at: job.clock.now(), duration, result: result.clone() };
    if job.store.record(&job.line.name, outcome).is_some() {
        job.telemetry.observe_poll(&job.line, duration);
    }
    let notes = cx.take_notes().into_iter().map(|n| redactor.redact(n)).collect();
    Executed::Polled(Polled { result, duration, queue_wait, notes, locked_until })
}

/// Calls the driver in its own task: a panic ends that task only, and on timeout the task is
/// aborted so a stuck driver does not hold sockets past the deadline.
async fn run_driver(job: &Job, cx: Arc<PollContext>, timeout: Duration) -> Result<Reading, PollError> {
    let driver = job.driver.clone();
    let line = job.line.clone();
    let mut handle = tokio::spawn(async move { driver.poll(&line, &cx).await });
    match tokio::time::timeout(timeout, &mut handle).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) if join.is_panic() => {
            error!(
                line = %job.line.name,
                account = %job.line.account.name,
                driver = job.gate.driver(),
                panic = %panic_message(join.into_panic().as_ref()),
                "driver panicked during a poll; the line gets an error and polling goes on",
            );
            Err(PollError::Unavailable("the driver panicked (a bug in the exporter; see its error log)".into()))
        }
        Ok(Err(_cancelled)) => Err(PollError::Unavailable("the driver task was cancelled".into())),
        Err(_elapsed) => {
            handle.abort();
            Err(PollError::Timeout(timeout))
        }
    }
}

/// One listing of an account's SIMs (`discover:`): admitted like a poll of the account (a
/// pacing driver's pages each take a token), run in a task of its own under `timeout`, its
/// outcome applied to the account like a poll's. Returns the listing and, when its auth
/// failure started a lock-out, the lock-out's end.
pub(super) async fn list(
    gate: &Arc<AccountGate>,
    global: &Arc<Semaphore>,
    driver: Arc<dyn Driver>,
    timeout: Duration,
    clock: &SharedClock,
    shutdown: &mut watch::Receiver<bool>,
) -> (Result<Vec<DiscoveredLine>, PollError>, Option<Instant>) {
    let locked = |until: Instant| {
        let left =
            humantime::format_duration(Duration::from_secs(until.saturating_duration_since(Instant::now()).as_secs()));
        (Err(PollError::Auth(format!("not listed: the account is locked out for another {left}"))), None)
    };
    if let Some(until) = gate.locked_until(Instant::now()) {
        return locked(until);
    }
    let paced = driver.paces_requests();
    let admission = tokio::select! {
        biased;
        _ = shutdown.wait_for(|stopping| *stopping) => None,
        admitted = async { if paced { gate.admit_paced(global).await } else { gate.admit(global).await } } => admitted.ok(),
    };
    let Some(admission) = admission else {
        return (Err(PollError::Unavailable("the exporter is shutting down".into())), None);
    };
    if let Some(until) = gate.locked_until(Instant::now()) {
        return locked(until);
    }
    let mut cx = PollContext::new(timeout, clock.clone());
    if paced {
        cx = cx.with_pacer(gate.clone());
    }
    let cx = Arc::new(cx);
    let mut handle = tokio::spawn({
        let cx = cx.clone();
        async move { driver.discover(&cx).await }
    });
    let result = match tokio::time::timeout(timeout, &mut handle).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) if join.is_panic() => {
            error!(account = gate.name(), driver = gate.driver(), panic = %panic_message(join.into_panic().as_ref()), "driver panicked while listing SIMs");
            Err(PollError::Unavailable("the driver panicked while listing (a bug in the exporter)".into()))
        }
        Ok(Err(_cancelled)) => Err(PollError::Unavailable("the listing task was cancelled".into())),
        Err(_elapsed) => {
            handle.abort();
            Err(PollError::Timeout(timeout))
        }
    };
    drop(admission);
    let result = result.map_err(|e| e.map_message(|m| gate.redact(m)));
    let locked_until = gate_effects(gate, clock, result.as_ref().err()).map(|(until, _)| until);
    (result, locked_until)
}

/// A result's meaning for the account: success resets the lock-out count, 429 pauses the
/// account, `auth` locks it out (returned: the new lock-out's end and length).
fn gate_effects(gate: &AccountGate, clock: &SharedClock, error: Option<&PollError>) -> Option<(Instant, Duration)> {
    let now = Instant::now();
    match error {
        None => {
            gate.record_success();
            None
        }
        Some(err) => match err.reason() {
            Reason::RateLimited => {
                gate.pause(now, backoff::account_pause(err.retry_after()), clock.now());
                None
            }
            Reason::Auth => gate.lock_out(now),
            _ => None,
        },
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// What the result means for the whole account: a 429 pauses it, an auth failure locks it out,
/// a success resets the lock-out count. Applied here, not in the scheduler loop, so the
/// account's other waiting polls see it before their turn comes.
fn account_effects(job: &Job, result: &Result<Reading, PollError>) -> Option<Instant> {
    let (until, length) = gate_effects(&job.gate, &job.clock, result.as_ref().err())?;
    warn!(
        account = %job.line.account.name,
        driver = job.gate.driver(),
        line = %job.line.name,
        lockout = %humantime::format_duration(length),
        "authentication failed: the account stops polling until the lock-out passes or the config is reloaded",
    );
    Some(until)
}

fn log_outcome(job: &Job, result: &Result<Reading, PollError>, duration: Duration) {
    match result {
        Ok(_) => debug!(
            line = %job.line.name,
            account = %job.line.account.name,
            driver = job.gate.driver(),
            duration_seconds = duration.as_secs_f64(),
            "poll succeeded",
        ),
        Err(err) => warn!(
            line = %job.line.name,
            account = %job.line.account.name,
            driver = job.gate.driver(),
            reason = err.reason().as_str(),
            error = %err,
            "poll failed",
        ),
    }
}

/// Counts a poll in `esim_scheduler_polls_in_flight` for as long as it lives, even if the
/// task is aborted mid-poll.
struct InFlight<'a>(&'a Telemetry);

impl<'a> InFlight<'a> {
    fn enter(telemetry: &'a Telemetry) -> InFlight<'a> {
        telemetry.poll_started();
        InFlight(telemetry)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.poll_ended();
    }
}
