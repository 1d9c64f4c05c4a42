//! What a config asks of each operator, for `--config.check`: an account's lines polled on
//! their interval (plus its discovery listings) against its `rate_limit`, the platform's
//! monthly cap and its shortest useful interval per SIM ([`crate::drivers::Cost`]). Each
//! problem is a warning that says which `poll_interval` would fit.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::{Account, Config, Diagnostic};
use crate::drivers::BuildContext;

/// Seconds in the 30 days a monthly limit counts.
const MONTH: f64 = 30.0 * 86_400.0;

/// One warning per limit an account's polling would exceed.
pub fn warnings(config: &Config, clock: SharedClock) -> Vec<Diagnostic> {
    let file = config.source.display().to_string();
    let cx = BuildContext::new(clock);
    let mut out = Vec::new();
    for account in config.accounts.iter().filter(|a| !a.implicit) {
        let lines: Vec<_> = config.lines.iter().filter(|l| Arc::ptr_eq(&l.account, account)).collect();
        let discovered = account.discover.as_ref().and_then(|d| d.max_lines).unwrap_or(0);
        let count = lines.len() + discovered;
        if count == 0 {
            continue;
        }
        let mut interval = lines.iter().map(|l| l.poll_interval).min();
        if let Some(d) = account.discover.as_ref().filter(|_| discovered > 0) {
            interval = Some(interval.map_or(d.line.poll_interval, |i| i.min(d.line.poll_interval)));
        }
        let Some(interval) = interval else { continue };
        let Ok(driver) = (account.driver.build)(account, &cx) else { continue };
        let Some(cost) = driver.cost(count) else { continue };
        let path = format!("accounts.{}", account.name);
        for message in check(account, count, interval, driver.paces_requests(), &cost) {
            out.push(Diagnostic::warning(&file, None, &path, message));
        }
    }
    out
}

/// The problems of `count` lines of `account` polled every `interval`.
pub fn check(
    account: &Account,
    count: usize,
    interval: Duration,
    paced: bool,
    cost: &crate::drivers::Cost,
) -> Vec<String> {
    let mut problems = Vec::new();
    let driver = account.driver.name;
    let secs = interval.as_secs_f64().max(1.0);
    // A pacing driver's bucket counts requests; any other's counts polls.
    let per_cycle = if paced { cost.requests_per_cycle } else { count as f64 };
    let listing_rate = match &account.discover {
        Some(d) if paced => cost.requests_per_listing / d.interval.as_secs_f64().max(1.0),
        _ => 0.0,
    };
    let what = if paced { "requests" } else { "polls" };
    if let Some(rate) = account.rate_limit {
        let allowed = f64::from(rate.count) / rate.period.as_secs_f64();
        let needed = per_cycle / secs + listing_rate;
        if needed > allowed * 1.000_001 {
            let fit = if allowed > listing_rate {
                format!("a poll_interval of at least {} would fit", minutes(per_cycle / (allowed - listing_rate)))
            } else {
                "the discovery listings alone use it up: lengthen discover.interval".to_string()
            };
            problems.push(format!(
                "{count} lines every {} need {needed:.2} {what}/s, over the account's rate_limit {rate} ({allowed:.2}/s); {fit}",
                humantime::format_duration(interval)
            ));
        }
    }
    if let Some(limit) = cost.monthly_limit {
        let monthly = (cost.requests_per_cycle / secs + listing_rate) * MONTH;
        if monthly > limit as f64 {
            let room = limit as f64 / MONTH - listing_rate;
            let fit = if room > 0.0 {
                format!("a poll_interval of at least {} would fit", minutes(cost.requests_per_cycle / room))
            } else {
                "the discovery listings alone use it up: lengthen discover.interval".to_string()
            };
            problems.push(format!(
                "{count} lines every {} make about {:.0} requests a month, over {driver}'s limit of {limit}; {fit}",
                humantime::format_duration(interval),
                monthly
            ));
        }
    }
    if let Some(floor) = cost.min_interval.filter(|f| interval < *f) {
        problems.push(format!(
            "poll_interval {} is shorter than {driver}'s {} per SIM: polls in between repeat the last reading; a poll_interval of {} would fit",
            humantime::format_duration(interval),
            humantime::format_duration(floor),
            humantime::format_duration(floor)
        ));
    }
    problems
}

/// `seconds` rounded up to whole minutes, as a duration text.
fn minutes(seconds: f64) -> String {
    let minutes = (seconds / 60.0).ceil().max(1.0) as u64;
    humantime::format_duration(Duration::from_secs(minutes * 60)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn config(yaml: &str) -> Config {
        crate::config::parse("t.yaml", yaml, crate::drivers::REGISTRY).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_fleet_over_the_rate_limit_is_told_which_interval_fits() {
        let c = config(
            "accounts:\n  t:\n    driver: 1nce\n    client_id: x\n    client_secret: ${HOME}\n    poll_interval: 15m\n    discover: {max_lines: 10000}\nlines:\n  - {name: a, account: t, iccid: \"8988228066600000001\"}\n",
        );
        let w: Vec<String> = warnings(&c, Arc::new(SystemClock)).iter().map(|d| d.to_string()).collect();
        assert_eq!(w.len(), 1, "{w:?}");
        // 10,001 lines × 2 requests / 900 s = 22.2/s over 10/s; 20,002 requests at 10/s take
        // 2,000.2 s (+ the listings): 34 minutes.
        assert!(w[0].contains("10001 lines every 15m need 22.2"), "{}", w[0]);
        assert!(w[0].contains("a poll_interval of at least 34m would fit"), "{}", w[0]);
    }

    #[test]
    fn emnify_monthly_cap_and_airalo_floor() {
        let c = config(
            "accounts:\n  e:\n    driver: emnify\n    application_token: ${HOME}\n    rate_limit: 100/s\n    poll_interval: 5m\n    discover: {max_lines: 10000}\n  a:\n    driver: airalo\n    client_id: x\n    client_secret: ${HOME}\n    poll_interval: 5m\nlines:\n  - {name: l, account: a, iccid: \"8944465400000000001\"}\n",
        );
        let w: Vec<String> = warnings(&c, Arc::new(SystemClock)).iter().map(|d| d.to_string()).collect();
        assert!(
            w.iter().any(|m| m.contains("accounts.e")
                && m.contains("requests a month, over emnify's limit of 10000000")
                && m.contains("at least 1h 27m")),
            "{w:?}"
        );
        assert!(w.iter().any(|m| m.contains("accounts.a") && m.contains("shorter than airalo's 20m")), "{w:?}");
    }

    #[test]
    fn a_fleet_within_its_limits_is_quiet() {
        let c = config(
            "accounts:\n  t:\n    driver: 1nce\n    client_id: x\n    client_secret: ${HOME}\n    poll_interval: 1h\n    discover: {max_lines: 10000}\nlines:\n  - {name: a, account: t, iccid: \"8988228066600000001\"}\n",
        );
        assert!(warnings(&c, Arc::new(SystemClock)).is_empty());
    }
}
