//! `Plan`: what the scheduler runs, built from a `Config` — this shard's lines, each paired with
//! its account's driver and its phase, plus the global concurrency limit. Startup and reload
//! both build one and hand it to `Scheduler::apply`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::spread::{self, Shard};
use crate::config::{Account, Config, Line};
use crate::drivers::{BuildContext, BuildError, Driver};

/// One line as the scheduler runs it.
#[derive(Clone)]
pub struct PlannedLine {
    pub line: Arc<Line>,
    /// The driver built for the line's account, shared by all of that account's lines.
    pub driver: Arc<dyn Driver>,
    /// The line's phase within its interval (see `spread::offset`).
    pub offset: Duration,
}

impl fmt::Debug for PlannedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedLine")
            .field("line", &self.line.name)
            .field("account", &self.line.account.name)
            .field("offset", &self.offset)
            .finish()
    }
}

/// An account that lists its SIMs (`discover:`), with its driver: the scheduler keeps its
/// limits even while no line of it is planned yet.
#[derive(Clone)]
pub struct PlannedAccount {
    pub account: Arc<Account>,
    pub driver: Arc<dyn Driver>,
}

impl fmt::Debug for PlannedAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlannedAccount({})", self.account.name)
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    max_concurrency: usize,
    lines: Vec<PlannedLine>,
    discovering: Vec<PlannedAccount>,
    /// Accounts whose auth lock-out this plan ends although their credentials in the config
    /// stayed the same: they waited for a person, whose new login lives in a token file.
    relogged: Vec<String>,
}

impl Plan {
    /// Builds one driver per account that has a line in this shard (implicit accounts of
    /// driverless lines too) and pairs every line of the shard with it. Accounts without a
    /// line here are not built: a shard of a 100,000-line fleet sets up only its own sessions.
    /// Fails with the first driver that cannot be built, in config order.
    pub fn build(config: &Config, cx: &BuildContext, shard: Option<Shard>) -> Result<Plan, BuildError> {
        let mut drivers: HashMap<&str, Arc<dyn Driver>> = HashMap::new();
        let mut lines = Vec::new();
        for line in &config.lines {
            if shard.is_some_and(|s| !s.owns(&line.name)) {
                continue;
            }
            let account = &line.account;
            let driver = match drivers.get(account.name.as_str()) {
                Some(driver) => driver.clone(),
                None => {
                    let driver = (account.driver.build)(account, cx)?;
                    drivers.insert(&account.name, driver.clone());
                    driver
                }
            };
            lines.push((line.clone(), driver));
        }
        // Every shard lists a discovering account (and keeps the lines it owns).
        let mut discovering = Vec::new();
        for account in config.accounts.iter().filter(|a| a.discover.is_some()) {
            let driver = match drivers.get(account.name.as_str()) {
                Some(driver) => driver.clone(),
                None => (account.driver.build)(account, cx)?,
            };
            discovering.push(PlannedAccount { account: account.clone(), driver });
        }
        Ok(Plan::new(config.global.max_concurrency, lines).with_discovering(discovering))
    }

    /// A plan from lines and drivers built elsewhere (tests, or a caller with its own drivers).
    /// A `max_concurrency` of 0 is taken as 1: a scheduler that may run nothing is a bug.
    pub fn new(max_concurrency: usize, lines: impl IntoIterator<Item = (Arc<Line>, Arc<dyn Driver>)>) -> Plan {
        let lines = lines
            .into_iter()
            .map(|(line, driver)| PlannedLine { offset: spread::offset(&line.name, line.poll_interval), line, driver })
            .collect();
        Plan { max_concurrency: max_concurrency.max(1), lines, discovering: Vec::new(), relogged: Vec::new() }
    }

    /// The same plan with these discovering accounts.
    pub fn with_discovering(mut self, accounts: Vec<PlannedAccount>) -> Plan {
        self.discovering = accounts;
        self
    }

    /// Marks accounts whose lock-out a reload ends whatever their config credentials (see
    /// `relogged`).
    pub fn with_relogged(mut self, accounts: Vec<String>) -> Plan {
        self.relogged = accounts;
        self
    }

    /// Whether a reload with this plan ends `account`'s lock-out whatever its credentials.
    pub fn relogged(&self, account: &str) -> bool {
        self.relogged.iter().any(|a| a == account)
    }

    /// Accounts that list their SIMs, in config order.
    pub fn discovering(&self) -> &[PlannedAccount] {
        &self.discovering
    }

    /// The lines, in config order: what `Store::apply_plan` takes.
    pub fn lines(&self) -> Vec<Arc<Line>> {
        self.lines.iter().map(|p| p.line.clone()).collect()
    }

    pub fn planned(&self) -> &[PlannedLine] {
        &self.lines
    }

    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub(super) fn into_lines(self) -> Vec<PlannedLine> {
        self.lines
    }
}
