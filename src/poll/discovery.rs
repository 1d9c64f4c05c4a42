//! Fleets: accounts with `discover:` list their SIMs on their own interval, and every SIM
//! the listing keeps becomes a line that the scheduler polls like a configured one.
//!
//! [`Discovery`] holds the running config's plan (configured lines, plus the drivers of the
//! discovering accounts) and the last good listing of each account. One task per discovering
//! account lists through the scheduler ([`Lister`]: the listing waits for the account's rate
//! limit, concurrency limit, 429 pause and lock-out, and a pacing driver's pages each take a
//! token) and hands the result back; the new plan — configured lines, then each account's
//! discovered lines ([`config::materialize::materialize`]) — then goes to the scheduler with
//! [`Scheduler::update`](super::Scheduler::update). Lines of SIMs that left the listing leave
//! the store, and so `/metrics`, with that update; a failed listing changes nothing.
//!
//! A reload applies the new templates and filters to the last listings at once (no listing
//! is repeated for it) and restarts the listing tasks, each at its old schedule.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{backoff, Lister, Plan, PlannedAccount, Shard};
use crate::config::materialize::{materialize, Configured};
use crate::config::{Config, Line};
use crate::drivers::DiscoveredLine;
use crate::error::PollError;

/// The end of one listing, as a listing task reports it.
#[derive(Debug)]
pub struct Listed {
    /// The [`Discovery::apply`] the task was started by; older ones are ignored.
    pub generation: u64,
    pub account: String,
    pub result: Result<Vec<DiscoveredLine>, PollError>,
}

/// An account's last good listing.
struct Listing {
    driver: &'static str,
    sims: Vec<DiscoveredLine>,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    config: Option<Arc<Config>>,
    /// The configured lines (this shard's) and the discovering accounts, drivers built.
    base: Option<Plan>,
    shard: Option<Shard>,
    listings: HashMap<String, Listing>,
    tasks: Vec<JoinHandle<()>>,
}

/// The discovered part of the running plan. See the module doc.
#[derive(Default)]
pub struct Discovery {
    inner: Mutex<Inner>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for task in &self.lock().tasks {
            task.abort();
        }
    }
}

impl Discovery {
    pub fn new() -> Discovery {
        Discovery::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Startup and reload: `base` is the plan of `config`'s own lines (`Plan::build`). Hands
    /// `run` the full plan — base plus the lines of the last listings, under the new
    /// templates — while holding the lock, so plans reach the scheduler in order; then
    /// restarts the listing tasks, which report to `events`.
    pub fn apply(
        &self,
        config: Arc<Config>,
        base: Plan,
        shard: Option<Shard>,
        lister: &Lister,
        events: &mpsc::UnboundedSender<Listed>,
        run: impl FnOnce(Plan),
    ) {
        let mut inner = self.lock();
        for task in inner.tasks.drain(..) {
            task.abort();
        }
        inner.generation += 1;
        let keep: HashMap<&str, &'static str> =
            base.discovering().iter().map(|d| (d.account.name.as_str(), d.account.driver.name)).collect();
        inner.listings.retain(|name, listing| keep.get(name.as_str()) == Some(&listing.driver));
        inner.config = Some(config);
        inner.base = Some(base);
        inner.shard = shard;
        // The plan goes to the scheduler before any listing does, so the scheduler knows the
        // accounts the listings name.
        run(inner.compose());
        let now = Instant::now();
        let mut tasks = Vec::new();
        let discovering = inner.base.as_ref().map(|b| b.discovering().to_vec()).unwrap_or_default();
        for planned in discovering {
            let interval = planned.account.discover.as_ref().map_or(Duration::from_secs(3600), |d| d.interval);
            let first = inner.listings.get(&planned.account.name).map_or(now, |l| (l.at + interval).max(now));
            tasks.push(tokio::spawn(list_forever(planned, lister.clone(), events.clone(), inner.generation, first)));
        }
        inner.tasks = tasks;
    }

    /// A listing ended. When it succeeded and belongs to the running config, hands `run` the
    /// new plan (under the lock); a failure keeps the account's lines as they were.
    pub fn listed(&self, listed: Listed, run: impl FnOnce(Plan)) {
        let mut inner = self.lock();
        if listed.generation != inner.generation {
            return;
        }
        let Some(planned) = inner
            .base
            .as_ref()
            .and_then(|b| b.discovering().iter().find(|d| d.account.name == listed.account).cloned())
        else {
            return;
        };
        match listed.result {
            Ok(sims) => {
                info!(account = %listed.account, driver = planned.account.driver.name, sims = sims.len(), "listed the account's SIMs");
                inner
                    .listings
                    .insert(listed.account, Listing { driver: planned.account.driver.name, sims, at: Instant::now() });
                run(inner.compose());
            }
            Err(error) => warn!(
                account = %listed.account,
                driver = planned.account.driver.name,
                reason = error.reason().as_str(),
                error = %error,
                "listing the account's SIMs failed; its discovered lines stay as they were",
            ),
        }
    }
}

impl Inner {
    /// The configured lines, then each discovering account's lines (in config order), this
    /// shard's only.
    fn compose(&self) -> Plan {
        let (Some(config), Some(base)) = (&self.config, &self.base) else {
            return Plan::new(1, Vec::new());
        };
        if !base.discovering().iter().any(|planned| self.listings.contains_key(&planned.account.name)) {
            // Nothing discovered (the usual fleet file): the configured lines as planned,
            // without building the index of their names and SIMs (≈ 20 MB at 100,000 lines).
            return base.clone();
        }
        let configured = Configured::new(&config.lines).exposing(config.global.expose_msisdn);
        let mut taken: HashSet<String> = HashSet::new();
        let mut lines: Vec<(Arc<Line>, Arc<dyn crate::drivers::Driver>)> =
            base.planned().iter().map(|p| (p.line.clone(), p.driver.clone())).collect();
        for planned in base.discovering() {
            let Some(listing) = self.listings.get(&planned.account.name) else {
                continue;
            };
            let found = materialize(&planned.account, &listing.sims, &configured, &mut taken);
            for problem in &found.problems {
                warn!(account = %planned.account.name, "discover: {problem}");
            }
            tracing::debug!(
                account = %planned.account.name,
                lines = found.lines.len(),
                filtered = found.filtered,
                overridden = found.overridden,
                "discovered lines",
            );
            for line in found.lines {
                if self.shard.is_none_or(|s| s.owns(&line.name)) {
                    lines.push((line, planned.driver.clone()));
                }
            }
        }
        Plan::new(base.max_concurrency(), lines).with_discovering(base.discovering().to_vec())
    }
}

/// Lists `planned`'s account now or at `first`, then on its interval; after a failure, again
/// on the back-off schedule of a failing line (capped at the interval).
async fn list_forever(
    planned: PlannedAccount,
    lister: Lister,
    events: mpsc::UnboundedSender<Listed>,
    generation: u64,
    first: Instant,
) {
    let Some(discover) = planned.account.discover.clone() else {
        return;
    };
    let seed = backoff::jitter_seed(&planned.account.name);
    tokio::time::sleep_until(first).await;
    let mut failures = 0u32;
    loop {
        let result = lister.list(&planned.account.name, planned.driver.clone(), discover.timeout).await;
        let delay = match &result {
            Ok(_) => {
                failures = 0;
                discover.interval
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                backoff::next_attempt(error, failures, discover.interval, seed).min(discover.interval)
            }
        };
        let stopped = matches!(&result, Err(PollError::Unavailable(m)) if m.contains("scheduler has stopped"));
        if events.send(Listed { generation, account: planned.account.name.clone(), result }).is_err() || stopped {
            return;
        }
        tokio::time::sleep(delay).await;
    }
}
