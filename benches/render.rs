//! `/metrics` rendering for 1k, 10k and 100k lines: full render, a cycle with nothing changed,
//! a cycle with 1% of lines re-polled, gzip levels, body sizes and memory.
//!
//! `cargo bench --bench render` measures every size; `cargo bench --bench render -- --smoke`
//! (what CI runs) renders 1k lines once to prove the bench still works. A plain harness keeps
//! this free of benchmark dependencies: each figure is the best of a few runs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use esim_exporter::config::{self, ByteSize, Config};
use esim_exporter::metrics::{Format, Renderer, SelfMetrics};
use esim_exporter::reading::{Currency, Money, Reading};
use esim_exporter::store::{PollOutcome, Store};

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke" || a == "--test");
    let sizes: &[usize] = if smoke { &[1_000] } else { &[1_000, 10_000, 100_000] };
    let runs = if smoke { 1 } else { 3 };
    for &n in sizes {
        bench_fleet(n, runs);
    }
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// `n` demo lines in 10 accounts, each with an MSISDN, two labels and thresholds. Parsed in
/// chunks: one YAML document of 100k lines is over the parser's node budget.
fn fleet_config(n: usize) -> Config {
    const CHUNK: usize = 10_000;
    let mut config: Option<Config> = None;
    for start in (0..n).step_by(CHUNK) {
        let mut yaml =
            String::from("global:\n  stale_after: 6h\n  alert: {balance_below: 100, data_below: 500MB}\naccounts:\n");
        for a in 0..10 {
            yaml += &format!("  acct-{a}:\n    driver: demo\n    operator: op{a}\n    labels: {{fleet: fleet-{a}}}\n");
        }
        yaml += "lines:\n";
        for i in start..(start + CHUNK).min(n) {
            yaml += &format!(
                "  - {{name: line-{i:06}, account: acct-{}, msisdn: \"+7926{:07}\", labels: {{site: site-{}}}}}\n",
                i % 10,
                i,
                i % 50
            );
        }
        let chunk = config::parse("bench.yaml", &yaml).unwrap_or_else(|e| panic!("bench config: {e}"));
        match &mut config {
            None => config = Some(chunk),
            Some(c) => c.lines.extend(chunk.lines),
        }
    }
    config.expect("n > 0")
}

fn reading(i: usize, round: u64) -> Reading {
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

fn record(store: &Store, name: &str, i: usize, round: u64) {
    let outcome = PollOutcome {
        at: t(round),
        duration: Duration::from_millis(200 + i as u64 % 800),
        result: Ok(reading(i, round)),
    };
    store.record(name, outcome);
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.expect("runs >= 1"))
}

fn rss_mib() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or("?".to_string(), |kb| format!("{:.0}", kb / 1024.0))
    };
    format!("rss {} MiB, peak {} MiB", field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn bench_fleet(n: usize, runs: usize) {
    let config = fleet_config(n);
    let store = Store::new();
    store.apply_plan(&config.lines);
    for round in 0..2 {
        for (i, line) in config.lines.iter().enumerate() {
            record(&store, &line.name, i, round);
        }
    }
    let metrics = SelfMetrics::new();
    println!("== {n} lines (store and config: {})", rss_mib());

    // Steady state with the default level, as the exporter runs.
    let mut renderer = Renderer::new(esim_exporter::metrics::DEFAULT_GZIP_LEVEL);
    let (first, e) = best(1, || renderer.render(&store, &config.global, t(10), &metrics));
    println!("first render:     {:>7.1} ms (re-rendered {})", first.as_secs_f64() * 1e3, renderer.rerendered());
    drop(e);
    let (same, _) = best(runs, || renderer.render(&store, &config.global, t(11), &metrics));
    println!("nothing changed:  {:>7.1} ms (re-rendered {})", same.as_secs_f64() * 1e3, renderer.rerendered());
    let mut round = 2;
    let (one_percent, e) = best(runs, || {
        for (i, line) in config.lines.iter().enumerate().step_by(100) {
            record(&store, &line.name, i, round);
        }
        round += 1;
        renderer.render(&store, &config.global, t(12), &metrics)
    });
    println!("1% re-polled:     {:>7.1} ms (re-rendered {})", one_percent.as_secs_f64() * 1e3, renderer.rerendered());
    println!("fragment cache {:.1} MiB; {}", mib(renderer.cache_size()), rss_mib());

    // What a client without gzip costs, once per rendering.
    let (gunzip, text) = best(1, || e.body(Format::Text, false).len());
    println!("first uncompressed scrape {:.1} ms for {:.1} MiB; {}", gunzip.as_secs_f64() * 1e3, mib(text), rss_mib());
    drop(e);

    for level in [1, 2, 3, 6] {
        let (full, e) = best(runs, || Renderer::new(level).render(&store, &config.global, t(10), &metrics));
        let (text_gzip, om_gzip) = (e.body(Format::Text, true).len(), e.body(Format::OpenMetrics, true).len());
        println!(
            "gzip {level}: full render {:>7.1} ms; text gzip {:.2} MiB ({:.1}x), openmetrics gzip {:.2} MiB",
            full.as_secs_f64() * 1e3,
            mib(text_gzip),
            text as f64 / text_gzip as f64,
            mib(om_gzip),
        );
    }
}
