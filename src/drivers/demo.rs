//! `demo`: a deterministic simulator of a line, no network and no credentials. The embedded
//! default config uses it. Every value is a pure function of (seed, line name, time), so the
//! same seed gives the same fleet on every machine, and a fixed clock gives a fixed /metrics.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::contract::{BoxFuture, BuildContext, BuildError, Driver, DriverSpec, PollContext};
use crate::config::fields::Fields;
use crate::config::units::ByteSize;
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::{Currency, Money, Reading};

pub static SPEC: DriverSpec = DriverSpec {
    name: "demo",
    summary: "deterministic simulator: slowly depleting balances and data, top-ups, renewals",
    example: r#"
lines:
  - name: demo-tracker-1
    driver: demo
    seed: 42             # same seed, same fleet
    profile: steady      # steady, heavy, low, failing, flaky, unlimited
    currency: RUB
    balance: 500         # typical top-up amount, in currency units
    quota: 10GB          # data per monthly package
    data_only: false     # true: a data-only IoT SIM (no voice minutes or SMS in its package)
    operator: mts        # the `operator` label (default: demo)
"#,
    aliases: &[],
    needs_account: false,
    speaks_http: false,
    can_discover: false,
    default_operator: "demo",
    default_rate_limit: None,
    account_options,
    line_options,
    build,
};

/// How a simulated line behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Modest spend, balance and data stay comfortable.
    Steady,
    /// High spend and data use; frequent top-ups.
    Heavy,
    /// Balance hovers just above zero, under any sensible alert threshold.
    Low,
    /// Every poll fails (operator unavailable).
    Failing,
    /// About one poll in five fails with a timeout or a rate limit.
    Flaky,
    /// Unlimited data: the operator reports no data figures at all.
    Unlimited,
}

impl Profile {
    const NAMES: [(&'static str, Profile); 6] = [
        ("steady", Profile::Steady),
        ("heavy", Profile::Heavy),
        ("low", Profile::Low),
        ("failing", Profile::Failing),
        ("flaky", Profile::Flaky),
        ("unlimited", Profile::Unlimited),
    ];

    fn parse(name: &str) -> Option<Profile> {
        Profile::NAMES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct AccountOptions {
    seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineOptions {
    pub profile: Profile,
    pub currency: Currency,
    /// The usual top-up amount; the balance saw-tooths below it.
    pub balance: f64,
    pub quota: ByteSize,
    /// A data-only SIM, as most IoT fleets have: no voice or SMS in the package.
    pub data_only: bool,
}

impl LineOptions {
    /// A line that sets none of the keys.
    const DEFAULT: LineOptions = LineOptions {
        profile: Profile::Steady,
        currency: Currency::RUB,
        balance: 500.0,
        quota: ByteSize(10_000_000_000),
        data_only: false,
    };
}

/// The options of a line that sets at most `profile`, one per profile, shared by every such
/// line: the lines of a demo fleet differ in little else.
static PROFILE_DEFAULTS: LazyLock<Vec<DriverOptions>> = LazyLock::new(|| {
    Profile::NAMES
        .iter()
        .map(|&(_, profile)| DriverOptions(Arc::new(LineOptions { profile, ..LineOptions::DEFAULT })))
        .collect()
});

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let seed = f.u64_in("seed", 0, u64::MAX >> 1).unwrap_or(1);
    DriverOptions(Arc::new(AccountOptions { seed }))
}

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    let profile = match f.node("profile").map(|n| n.pos) {
        Some(pos) => {
            let name = f.string("profile").unwrap_or_default();
            Profile::parse(&name).unwrap_or_else(|| {
                let known: Vec<&str> = Profile::NAMES.iter().map(|(n, _)| *n).collect();
                f.error("profile", pos, format!("unknown demo profile `{name}`; known: {}", known.join(", ")));
                LineOptions::DEFAULT.profile
            })
        }
        None => LineOptions::DEFAULT.profile,
    };
    let currency = match f.node("currency").map(|n| n.pos) {
        Some(pos) => {
            let code = f.string("currency").unwrap_or_default();
            Currency::parse(&code).unwrap_or_else(|| {
                f.error("currency", pos, format!("`{code}` is not an ISO 4217 currency code (e.g. RUB, USD, EUR)"));
                LineOptions::DEFAULT.currency
            })
        }
        None => LineOptions::DEFAULT.currency,
    };
    let balance_pos = f.node("balance").map(|n| n.pos);
    let balance = f.f64("balance").unwrap_or(LineOptions::DEFAULT.balance);
    if let Some(pos) = balance_pos.filter(|_| balance <= 0.0) {
        f.error("balance", pos, "the demo top-up amount must be positive");
    }
    let quota = f.size("quota").unwrap_or(LineOptions::DEFAULT.quota);
    let data_only = f.bool("data_only").unwrap_or(LineOptions::DEFAULT.data_only);
    DriverOptions::shared(LineOptions { profile, currency, balance, quota, data_only }, &PROFILE_DEFAULTS)
}

fn build(account: &Account, _cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let seed = account.options.get::<AccountOptions>().map(|o| o.seed).unwrap_or(1);
    Ok(Arc::new(Demo { seed }))
}

struct Demo {
    seed: u64,
}

const DAY: f64 = 86_400.0;
const PACKAGE_DAYS: f64 = 30.0;

impl Driver for Demo {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(async move {
            let options = line.options.get::<LineOptions>().copied().ok_or_else(|| {
                PollError::Config("demo line options missing (line not built by the demo driver)".into())
            })?;
            let key = mix(self.seed ^ fnv1a(line.name.as_bytes()));
            // A short, deterministic "network" delay, so poll durations look like real ones.
            let latency = Duration::from_millis(20 + key % 180);
            tokio::time::sleep(latency.min(cx.deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
            let now = cx.clock.now();
            cx.note(format!("simulated {:?} line, seed {}", options.profile, self.seed));
            simulate(key, &options, now, line.poll_interval)
        })
    }
}

/// The reading of a simulated line at `now`. Pure: same inputs, same reading.
pub fn simulate(key: u64, o: &LineOptions, now: SystemTime, interval: Duration) -> Result<Reading, PollError> {
    let t = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let slot = (t / interval.as_secs_f64().max(1.0)) as u64;
    match o.profile {
        Profile::Failing => return Err(PollError::Unavailable("simulated operator outage (HTTP 503)".into())),
        Profile::Flaky if mix(key ^ slot).is_multiple_of(5) => {
            return Err(if slot.is_multiple_of(2) {
                PollError::Timeout(Duration::from_secs(30))
            } else {
                PollError::RateLimited { retry_after: Some(Duration::from_secs(60)) }
            });
        }
        _ => {}
    }
    let unit = |shift: u32| ((key >> shift) & 0xffff) as f64 / 65_535.0; // 0..=1 per line
    let (daily_spend, floor) = match o.profile {
        Profile::Heavy => (o.balance * (0.10 + 0.10 * unit(0)), o.balance * 0.15),
        Profile::Low => (o.balance * (0.002 + 0.004 * unit(0)), o.balance * 0.01),
        _ => (o.balance * (0.01 + 0.02 * unit(0)), o.balance * 0.6),
    };
    // Balance: a saw-tooth that falls by `daily_spend` a day and is topped up by `top_up`
    // when it would cross `floor`; for `low` the top-up is small, so it stays low.
    let top_up = match o.profile {
        Profile::Low => o.balance * 0.05,
        _ => o.balance,
    };
    let cycle = top_up / daily_spend * DAY;
    let phase = unit(16) * cycle;
    let into_cycle = (t + phase) % cycle;
    let balance = floor + top_up - daily_spend * into_cycle / DAY;

    let mut reading = Reading {
        balance: Some(Money { amount: (balance * 100.0).round() / 100.0, currency: o.currency }),
        plan: Some(match o.profile {
            Profile::Unlimited => "Demo Unlimited".to_string(),
            _ => format!("Demo {}", o.quota),
        }),
        ..Reading::default()
    };

    // Package: renews every 30 days at a per-line phase; data, voice and SMS fall within it.
    let period = PACKAGE_DAYS * DAY;
    let into_package = (t + unit(32) * period) % period;
    let used_share = into_package / period * (0.35 + 0.6 * unit(48));
    let expiry = t - into_package + period;
    reading.quota_expiry = Some(UNIX_EPOCH + Duration::from_secs_f64(expiry.max(0.0)));
    if !o.data_only {
        reading.voice_remaining = Some(Duration::from_secs(((1.0 - used_share) * 300.0).round() as u64 * 60));
        reading.sms_remaining = Some(((1.0 - used_share) * 100.0).round() as u64);
    }
    if o.profile != Profile::Unlimited {
        let quota = o.quota.bytes() as f64;
        let heavy = if o.profile == Profile::Heavy { 1.6 } else { 1.0 };
        let remaining = (quota * (1.0 - (used_share * heavy).min(1.0))).round();
        // Whole kilobytes, as operators report.
        reading.data_remaining = Some(ByteSize((remaining as u64 / 1000) * 1000));
        reading.data_quota = Some(o.quota);
    }
    Ok(reading)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64 finaliser: spreads similar inputs over the whole range.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config this test loads names only this driver.
    static ONLY_DEMO: crate::config::Registry = &[&SPEC];

    fn options(profile: Profile) -> LineOptions {
        LineOptions { profile, ..LineOptions::DEFAULT }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const INTERVAL: Duration = Duration::from_secs(900);

    #[test]
    fn lines_that_set_at_most_a_profile_share_their_options() {
        let config = crate::config::parse(
            "t.yaml",
            "lines:\n  - {name: a, driver: demo}\n  - {name: b, driver: demo, profile: steady}\n  \
             - {name: c, driver: demo, profile: heavy}\n  - {name: d, driver: demo, profile: heavy}\n  \
             - {name: e, driver: demo, profile: heavy, balance: 100}\n",
            ONLY_DEMO,
        )
        .expect("resolves");
        let shared = |a: usize, b: usize| Arc::ptr_eq(&config.lines[a].options.0, &config.lines[b].options.0);
        assert!(shared(0, 1) && shared(2, 3));
        assert!(!shared(0, 2) && !shared(2, 4));
        let options = |i: usize| config.lines[i].options.get::<LineOptions>().copied().expect("demo options");
        assert_eq!(options(0), LineOptions::DEFAULT);
        assert_eq!(options(3), LineOptions { profile: Profile::Heavy, ..LineOptions::DEFAULT });
        assert_eq!(options(4), LineOptions { profile: Profile::Heavy, balance: 100.0, ..LineOptions::DEFAULT });
    }

    #[test]
    fn data_only_lines_report_no_voice_or_sms() {
        let full = simulate(7, &options(Profile::Steady), at(1_800_000_000), INTERVAL).unwrap();
        assert!(full.voice_remaining.is_some() && full.sms_remaining.is_some());
        let o = LineOptions { data_only: true, ..options(Profile::Steady) };
        let data = simulate(7, &o, at(1_800_000_000), INTERVAL).unwrap();
        assert_eq!((data.voice_remaining, data.sms_remaining), (None, None));
        assert_eq!(data.data_remaining, full.data_remaining, "data is simulated alike");
    }

    #[test]
    fn same_inputs_give_the_same_reading() {
        let a = simulate(7, &options(Profile::Steady), at(1_800_000_000), INTERVAL);
        let b = simulate(7, &options(Profile::Steady), at(1_800_000_000), INTERVAL);
        assert_eq!(a, b);
        assert_ne!(a, simulate(8, &options(Profile::Steady), at(1_800_000_000), INTERVAL));
    }

    #[test]
    fn balance_depletes_slowly_and_is_topped_up() {
        let o = options(Profile::Steady);
        let balances: Vec<f64> = (0..24 * 90)
            .map(|h| simulate(3, &o, at(1_800_000_000 + h * 3600), INTERVAL).unwrap().balance.unwrap().amount)
            .collect();
        let decreases = balances.windows(2).filter(|w| w[1] < w[0]).count();
        let increases = balances.windows(2).filter(|w| w[1] > w[0]).count();
        assert!(decreases > balances.len() * 9 / 10, "mostly depleting");
        assert!(increases >= 1, "topped up at least once in 90 days");
        assert!(balances.iter().all(|b| *b >= 300.0), "steady stays comfortable");
    }

    #[test]
    fn low_profile_stays_low_and_failing_always_fails() {
        for h in 0..24 * 60 {
            let r = simulate(5, &options(Profile::Low), at(1_800_000_000 + h * 3600), INTERVAL).unwrap();
            assert!(r.balance.unwrap().amount < 40.0);
            assert!(simulate(5, &options(Profile::Failing), at(1_800_000_000 + h * 3600), INTERVAL).is_err());
        }
    }

    #[test]
    fn unlimited_reports_no_data_and_packages_renew() {
        let r = simulate(9, &options(Profile::Unlimited), at(1_800_000_000), INTERVAL).unwrap();
        assert_eq!((r.data_remaining, r.data_quota), (None, None));
        let o = options(Profile::Steady);
        let data: Vec<u64> = (0..24 * 45)
            .map(|h| simulate(9, &o, at(1_800_000_000 + h * 3600), INTERVAL).unwrap().data_remaining.unwrap().bytes())
            .collect();
        assert!(data.windows(2).any(|w| w[1] > w[0]), "a renewal refills data");
        assert!(data.iter().all(|d| *d <= o.quota.bytes()));
    }

    #[test]
    fn flaky_fails_sometimes_but_not_always() {
        let results: Vec<bool> = (0..200)
            .map(|i| simulate(11, &options(Profile::Flaky), at(1_800_000_000 + i * 900), INTERVAL).is_ok())
            .collect();
        let failures = results.iter().filter(|ok| !**ok).count();
        assert!(failures > 10 && failures < 100, "{failures} failures");
    }
}
