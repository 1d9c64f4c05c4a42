//! The synthetic fleet every bench uses: the shape of `benches/fleet/gen-config.py` (demo lines
//! in 10 accounts, an MSISDN, an ICCID and a site label each), readings that differ per line
//! and move each round, and the `--smoke` switch CI passes (`cargo test --bench NAME -- --smoke`).

#![allow(dead_code)] // each bench uses part of it

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esim_exporter::config::{self, ByteSize, Config};
use esim_exporter::reading::{Currency, Money, Reading};
use esim_exporter::store::{PollOutcome, Store};

/// Fleet sizes of issue 8.
pub const SIZES: &[usize] = &[1_000, 10_000, 100_000];

/// True under `-- --smoke` (or divan's `--test`): every bench runs once on a tiny fleet.
pub fn smoke() -> bool {
    std::env::args().any(|a| a == "--smoke" || a == "--test")
}

/// `n`, or a tiny fleet in smoke mode (a debug build renders 100,000 lines slowly).
pub fn size(n: usize) -> usize {
    if smoke() {
        n.min(300)
    } else {
        n
    }
}

/// Runs the benches: once each in smoke mode, else as divan's command line says.
pub fn main() {
    if smoke() {
        divan::Divan::default().test_benches();
    } else {
        divan::main();
    }
}

pub fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000 + secs)
}

/// The config text of `n` demo lines.
pub fn yaml(n: usize) -> String {
    const PROFILES: [&str; 10] =
        ["steady", "steady", "steady", "steady", "steady", "steady", "steady", "steady", "heavy", "low"];
    let mut out = String::with_capacity(140 * n + 1024);
    out += "global:\n  poll_interval: 500s\n  timeout: 10s\n  stale_after: 6h\n  alert: {balance_below: 100, data_below: 500MB}\naccounts:\n";
    for a in 0..10 {
        out += &format!(
            "  fleet-{a}:\n    driver: demo\n    seed: {}\n    operator: op{a}\n    labels: {{fleet: fleet-{a}}}\n",
            a + 1
        );
    }
    out += "lines:\n";
    for i in 0..n {
        out += &format!(
            "  - {{name: sim-{i:06}, account: fleet-{}, msisdn: \"+7926{i:07}\", iccid: \"89701{i:014}\", profile: {}, labels: {{site: site-{}}}}}\n",
            i % 10,
            PROFILES[i % 10],
            i % 50
        );
    }
    out
}

pub fn config(n: usize) -> Config {
    config::parse("bench.yaml", &yaml(n), esim_exporter::drivers::REGISTRY)
        .unwrap_or_else(|e| panic!("bench config: {e}"))
}

pub fn reading(i: usize, round: u64) -> Reading {
    Reading {
        balance: Some(Money { amount: 500.0 - (i % 400) as f64 * 0.37 - round as f64, currency: Currency::RUB }),
        data_remaining: Some(ByteSize(10_000_000_000 - (i as u64 * 7_919) % 9_000_000_000 - round * 1_000_000)),
        data_quota: Some(ByteSize(10_000_000_000)),
        voice_remaining: Some(Duration::from_secs(18_000 - (i as u64 % 300) * 60)),
        sms_remaining: Some(100 - (i as u64 % 100)),
        quota_expiry: Some(t(86_400 * (1 + i as u64 % 30))),
        plan: Some("Demo 10 GB".into()),
    }
}

/// Records a successful poll of line `i` in `round`.
pub fn record(store: &Store, name: &str, i: usize, round: u64) {
    let outcome = PollOutcome {
        at: t(round),
        duration: Duration::from_millis(200 + i as u64 % 800),
        result: Ok(reading(i, round)),
    };
    store.record(name, outcome);
}

/// A store holding `config`'s lines, each polled twice (so every counter family has series).
pub fn polled_store(config: &Config) -> Store {
    let store = Store::new();
    store.apply_plan(&config.lines);
    for round in 0..2 {
        for (i, line) in config.lines.iter().enumerate() {
            record(&store, &line.name, i, round);
        }
    }
    store
}
