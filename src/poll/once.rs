//! `--once`: poll every line of the shard one time, now, under the same limits as the scheduler
//! (global and account concurrency, rate limits, timeouts, lock-outs), without timers,
//! back-off or retries.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::error;

use super::limiter::AccountGate;
use super::task::{self, Executed, Job};
use super::telemetry::Telemetry;
use super::{Plan, Shard};
use crate::clock::SharedClock;
use crate::config::materialize::{materialize, Configured};
use crate::config::Config;
use crate::drivers::{BuildContext, BuildError};
use crate::error::PollError;
use crate::store::{PollOutcome, Store};

/// Called with (lines done, lines in all) after each line.
pub type Progress = Box<dyn Fn(usize, usize) + Send + Sync>;

/// Builds the plan for `shard`, makes `store` hold its lines, polls each line once and records
/// every outcome there. A line whose account got locked out by another line's auth failure is
/// not polled and gets an `auth` error saying so. Returns the number of lines.
pub async fn poll_once(
    config: &Config,
    store: &Arc<Store>,
    clock: SharedClock,
    shard: Option<Shard>,
    progress: Option<Progress>,
) -> Result<usize, BuildError> {
    let plan = Plan::build(config, &BuildContext::new(clock.clone()), shard)?;
    let global = Arc::new(Semaphore::new(plan.max_concurrency()));
    let telemetry = Telemetry::disabled();
    // Never sent: nothing cancels a `--once` run but the process ending.
    let (_never, shutdown) = watch::channel(false);
    let now = Instant::now();
    let mut gates: HashMap<String, Arc<AccountGate>> = HashMap::new();
    // Accounts with `discover:` list their SIMs first; their lines are polled like the others.
    let mut lines: Vec<_> = plan.planned().iter().map(|p| (p.line.clone(), p.driver.clone())).collect();
    let configured = Configured::new(&config.lines).exposing(config.global.expose_msisdn);
    let mut taken = HashSet::new();
    for planned in plan.discovering() {
        let account = &planned.account;
        let gate = gates
            .entry(account.name.clone())
            .or_insert_with(|| Arc::new(AccountGate::new(account, None, telemetry.clone(), now)))
            .clone();
        let timeout = account.discover.as_ref().map_or(Duration::from_secs(300), |d| d.timeout);
        let mut shutdown = shutdown.clone();
        match task::list(&gate, &global, planned.driver.clone(), timeout, &clock, &mut shutdown).await.0 {
            Ok(sims) => {
                let found = materialize(account, &sims, &configured, &mut taken);
                for line in found.lines.into_iter().filter(|l| shard.is_none_or(|s| s.owns(&l.name))) {
                    lines.push((line, planned.driver.clone()));
                }
            }
            Err(e) => {
                error!(account = %account.name, reason = e.reason().as_str(), error = %e, "cannot list the account's SIMs")
            }
        }
    }
    let plan = Plan::new(plan.max_concurrency(), lines);
    store.apply_plan(&plan.lines());
    let total = plan.len();
    let mut tasks = JoinSet::new();
    for planned in plan.into_lines() {
        let account = &planned.line.account;
        let gate = gates
            .entry(account.name.clone())
            .or_insert_with(|| Arc::new(AccountGate::new(account, None, telemetry.clone(), now)))
            .clone();
        let job = Job {
            line: planned.line,
            driver: planned.driver,
            gate,
            global: global.clone(),
            store: store.clone(),
            clock: clock.clone(),
            telemetry: telemetry.clone(),
        };
        let mut shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Executed::LockedOut(_) = task::execute(&job, None, &mut shutdown).await {
                job.store.record(
                    &job.line.name,
                    PollOutcome {
                        at: job.clock.now(),
                        duration: Duration::ZERO,
                        result: Err(PollError::Auth("not polled: another line of the account failed to log in".into())),
                    },
                );
            }
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Err(err) = joined {
            error!(error = %err, "a poll task died (a bug in the exporter)");
        }
        done += 1;
        if let Some(progress) = &progress {
            progress(done, total);
        }
    }
    Ok(total)
}
