//! `esim_polls_total` and `esim_poll_errors_total`: per-account counters made at each render
//! from the store's counts (`StoreView::account_polls`) rather than kept in the registry.
//! The journal is written after the render from the same store, so every count a scrape
//! shows has been made durable: across `kill -9` these counters never go back.

use std::collections::BTreeMap;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts};

use super::catalog::{self, ESIM_POLLS_TOTAL, ESIM_POLL_ERRORS_TOTAL};
use crate::error::Reason;
use crate::store::{AccountKey, AccountPolls};

fn help(name: &str) -> String {
    catalog::find(name).map_or_else(|| name.to_string(), |f| f.help.to_string())
}

/// The two families for `accounts`; every reason of every account is present, at 0 until it
/// first happens, so that `increase()` sees the first failure.
pub fn families(accounts: &BTreeMap<AccountKey, AccountPolls>) -> Vec<MetricFamily> {
    // The names and labels are constants of the catalogue, valid by its own tests; a
    // failure here would leave the two families out rather than fail the render.
    let Ok(polls) = IntCounterVec::new(Opts::new(ESIM_POLLS_TOTAL, help(ESIM_POLLS_TOTAL)), &["operator", "account"])
    else {
        return Vec::new();
    };
    let Ok(errors) = IntCounterVec::new(
        Opts::new(ESIM_POLL_ERRORS_TOTAL, help(ESIM_POLL_ERRORS_TOTAL)),
        &["operator", "account", "reason"],
    ) else {
        return Vec::new();
    };
    for ((operator, account), counts) in accounts {
        polls.with_label_values(&[operator, account]).inc_by(counts.polls);
        for reason in Reason::ALL {
            errors.with_label_values(&[operator, account, reason.as_str()]).inc_by(counts.errors[reason.index()]);
        }
    }
    if accounts.is_empty() {
        return Vec::new();
    }
    polls.collect().into_iter().chain(errors.collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_of_every_account_is_a_sample() {
        let mut accounts = BTreeMap::new();
        let mut corp = AccountPolls { polls: 7, ..AccountPolls::default() };
        corp.errors[Reason::Timeout.index()] = 2;
        accounts.insert(("mts".to_string(), "corp".to_string()), corp);
        accounts.insert(("demo".to_string(), String::new()), AccountPolls::default());
        let families = families(&accounts);
        assert_eq!(families.len(), 2);
        assert_eq!(families[0].name(), ESIM_POLLS_TOTAL);
        assert_eq!(families[0].get_metric().len(), 2);
        assert_eq!(families[1].get_metric().len(), 2 * Reason::ALL.len());
        let mut timeouts: Vec<f64> = families[1]
            .get_metric()
            .iter()
            .filter(|m| m.get_label().iter().any(|l| l.name() == "reason" && l.value() == "timeout"))
            .map(|m| m.get_counter().get_value())
            .collect();
        timeouts.sort_by(f64::total_cmp);
        assert_eq!(timeouts, [0.0, 2.0]);
        assert!(super::families(&BTreeMap::new()).is_empty(), "no accounts, no families");
    }
}
