//! `--shard` across processes, end to end: three replicas on one config (as a StatefulSet runs
//! them, `auto/3` from the pod name) serve between them exactly the per-line series of one
//! unsharded process, each series in exactly one replica; a pod name without an ordinal stops
//! start-up with a message that says so.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use esim_exporter::poll::spread::shard_of;

use crate::binary::Exporter;

const BIN: &str = env!("CARGO_BIN_EXE_esim-exporter");

/// 40 demo lines over two accounts, polling every second. No `failing` or `flaky` profile: the
/// demo answers some of their polls as rate limited, which pauses the whole account for a
/// minute, and this test needs every line to have polled.
fn fleet() -> String {
    let mut config = String::from(
        "global: {poll_interval: 1s, timeout: 5s}\naccounts:\n  a: {driver: demo, seed: 7, operator: mts}\n  b: {driver: demo, seed: 9, operator: beeline, labels: {fleet: meters}}\nlines:\n",
    );
    let profiles = ["steady", "heavy", "low", "unlimited"];
    for i in 0..40 {
        let account = if i % 3 == 0 { "b" } else { "a" };
        config.push_str(&format!(
            "  - {{name: line-{i:02}, account: {account}, profile: {}}}\n",
            profiles[i % profiles.len()]
        ));
    }
    config
}

/// The per-line series of a scrape, without values: `name{labels}` of every sample with a
/// `line` label.
fn line_series(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("line=\""))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

/// Waits until every line of the exporter has polled at least once, then scrapes.
fn settled(e: &Exporter, lines: usize) -> String {
    let polled = |m: &str| {
        let names = m.lines().filter(|l| l.starts_with("esim_line_info{")).filter_map(|l| l.split('"').nth(1));
        names.filter(|n| crate::binary::has_polled(m, n)).count()
    };
    e.wait_until("every line polled", |e| polled(&e.metrics()) == lines);
    e.metrics()
}

fn polled_lines(metrics: &str) -> usize {
    metrics.lines().filter(|l| l.starts_with("esim_line_info{")).count()
}

#[test]
fn three_shards_serve_every_line_series_of_one_process_exactly_once() {
    let config = fleet();
    let dir = |name: &str| {
        let dir = std::env::temp_dir().join(format!("esim-it-shards-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    };
    let whole = Exporter::start_in(dir("whole"), &config, &[]);
    // Two take the flag, one the environment variable, as the StatefulSet does.
    let shards = [
        Exporter::start_in_env(dir("0"), &config, &["--shard", "auto/3"], &[("HOSTNAME", "esim-exporter-0")]),
        Exporter::start_in_env(
            dir("1"),
            &config,
            &["--shard", "auto/3"],
            &[("HOSTNAME", "esim-exporter-1.esim-exporter.ns.svc")],
        ),
        Exporter::start_in_env(dir("2"), &config, &[], &[("ESIM_SHARD", "auto/3"), ("HOSTNAME", "esim-exporter-2")]),
    ];
    let expected = line_series(&settled(&whole, 40));
    assert!(expected.len() > 40 * 5, "the fleet has a few series per line: {}", expected.len());

    let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (k, shard) in shards.iter().enumerate() {
        let lines = (0..40).filter(|i| shard_of(&format!("line-{i:02}"), 3) == k as u32).count();
        assert!((5..=25).contains(&lines), "shard {k} owns {lines} of 40 lines");
        let metrics = settled(shard, lines);
        assert_eq!(polled_lines(&metrics), lines, "shard {k} polls only its own lines");
        assert!(metrics.contains(&format!("esim_shard_info{{shard=\"{k}\",shards=\"3\"}} 1")), "shard {k}:\n{metrics}");
        for series in line_series(&metrics) {
            owners.entry(series).or_default().push(k);
        }
    }
    let union: BTreeSet<String> = owners.keys().cloned().collect();
    assert_eq!(union, expected, "the shards' union is the unsharded process's per-line series");
    let doubled: Vec<_> = owners.iter().filter(|(_, o)| o.len() != 1).collect();
    assert!(doubled.is_empty(), "series served by more than one shard: {doubled:?}");
    assert!(whole.metrics().contains("esim_shard_info{shard=\"0\",shards=\"1\"} 1"));
}

#[test]
fn auto_shard_refuses_a_host_name_without_an_ordinal_at_start_up() {
    let dir = std::env::temp_dir().join(format!("esim-it-shards-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("esim.yaml"), fleet()).expect("config");
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(["--config.file", "esim.yaml", "--web.listen-address", "127.0.0.1:0", "--shard", "auto/3"])
        .env("HOSTNAME", "my-laptop")
        .current_dir(&dir)
        .output()
        .expect("run esim-exporter");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        stderr.contains("--shard auto/3 (or ESIM_SHARD): host name `my-laptop` does not end in -<ordinal>"),
        "{stderr}"
    );
}

#[test]
fn healthcheck_subcommand_passes_on_a_running_exporter_and_fails_without_one() {
    let e = Exporter::start("healthcheck", &fleet());
    let address = e.addr.to_string();
    let status = Command::new(BIN).args(["healthcheck", "--web.listen-address", &address]).status().expect("run");
    assert!(status.success());
    drop(e);
    let out = Command::new(BIN).args(["healthcheck", "--web.listen-address", &address]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("unhealthy: http://{address}/-/healthy")));
}

/// Account-level work follows the lines: a shard without lines of an account never logs in to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_logs_in_only_to_the_accounts_it_has_lines_of() {
    use esim_exporter::app::{App, ConfigSource};
    use esim_exporter::clock::SystemClock;
    use esim_exporter::poll::Shard;
    use std::sync::Arc;

    use crate::mock_operator::{MockOperator, CREDENTIALS};

    let (here, there) = (MockOperator::start().await, MockOperator::start().await);
    let (_, user, secret) = CREDENTIALS.iter().find(|(op, _, _)| *op == "1nce").expect("1nce credentials");
    let pick =
        |prefix: &str, shard: u32| (0..).map(|i| format!("{prefix}-{i}")).find(|n| shard_of(n, 2) == shard).unwrap();
    let (mine, theirs) = (pick("here", 0), pick("there", 1));
    let account = |name: &str, mock: &MockOperator| {
        format!(
            "  {name}:\n    driver: 1nce\n    client_id: \"{user}\"\n    client_secret: \"{secret}\"\n    base_url: {}\n",
            mock.base_url("1nce")
        )
    };
    let config = format!(
        "global: {{poll_interval: 1h}}\naccounts:\n{}{}lines:\n  - {{name: {mine}, account: here, iccid: \"8988228066600000001\"}}\n  - {{name: {theirs}, account: there, iccid: \"8988228066600000001\"}}\n",
        account("here", &here),
        account("there", &there)
    );
    let dir = std::env::temp_dir().join(format!("esim-it-shards-accounts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("esim.yaml");
    std::fs::write(&path, config).expect("config");

    let app = App::start(ConfigSource::File(path), Arc::new(SystemClock), Some(Shard::new(0, 2).unwrap()), None)
        .expect("app starts");
    let start = Instant::now();
    while app.store.view().get(&mine).is_none_or(|s| s.polls_total == 0) {
        assert!(start.elapsed() < Duration::from_secs(20), "{mine} never polled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.store.view().get(&theirs).is_none(), "{theirs} belongs to shard 1");
    assert!(here.count("1nce", "/oauth/token") >= 1, "the shard logged in to its own account");
    assert_eq!(there.requests("1nce").len(), 0, "and sent nothing to the account it has no line of");
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
