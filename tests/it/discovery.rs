//! Fleets against the mock operator, in real time: an account with `discover:` turns 10,000
//! listed SIMs into lines (names and labels from templates, filters, a listed line winning
//! over its SIM), a SIM removed from the listing leaves the store and `/metrics` after the
//! next listing, and no window of time sees more requests than the account's bucket allows.
//! Then a whole poll cycle of 10,000 SIMs (`--once`'s path: list, then poll every line) stays
//! within the configured rate and takes the time that rate implies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use esim_exporter::app::{App, ConfigSource};
use esim_exporter::clock::SystemClock;
use esim_exporter::metrics::{Format, Renderer};
use esim_exporter::store::Store;

use crate::mock_operator::{MockOperator, CREDENTIALS};

fn credentials(operator: &str) -> (&'static str, &'static str) {
    CREDENTIALS.iter().find(|(op, _, _)| *op == operator).map(|(_, u, s)| (*u, *s)).expect("credentials")
}

/// The most requests seen in any window of `window` (a window starts at each request).
fn busiest_window(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut end = 0;
    for start in 0..sorted.len() {
        while end < sorted.len() && sorted[end] - sorted[start] < window {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

/// What the mock generates for SIM number `n` (from 1): label and status.
fn sim(n: usize) -> (String, bool) {
    (format!("tracker-{n}"), !n.is_multiple_of(10))
}

fn write_config(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("esim.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sims_become_lines_filters_apply_and_removed_sims_leave() {
    let mock = MockOperator::start().await;
    mock.set_lines("1nce", 10_000);
    let (user, secret) = credentials("1nce");
    // 20 requests a second, 10 at once: a listing of 100 pages takes about 5 s.
    let yaml = format!(
        r#"global: {{poll_interval: 1h}}
accounts:
  trackers:
    driver: 1nce
    client_id: "{user}"
    client_secret: "{secret}"
    base_url: {base}
    rate_limit: 10/500ms
    labels: {{fleet: trackers}}
    discover:
      interval: 2s
      timeout: 60s
      name: "{{label}}"
      labels: {{status: "{{status}}", slot: "ip-{{ip_address}}"}}
      include: {{status: Enabled}}
      exclude: {{label: "tracker-7.*"}}
lines:
  - name: tracker-spare
    account: trackers
    iccid: "8970101000000000005"
"#,
        base = mock.base_url("1nce"),
    );
    let dir = std::env::temp_dir().join(format!("esim-discovery-{}", std::process::id()));
    let path = write_config(&dir, &yaml);
    let app = App::start(ConfigSource::File(path), Arc::new(SystemClock), None, None).expect("app starts");

    // Every enabled SIM not labelled tracker-7…, but SIM 5 whose line is listed explicitly.
    let expected: Vec<String> = (1..=10_000)
        .map(sim)
        .filter(|(label, enabled)| *enabled && !label.starts_with("tracker-7") && label != "tracker-5")
        .map(|(label, _)| label)
        .collect();
    assert_eq!(expected.len(), 7_999);
    let total = expected.len() + 1;
    wait_for("the first listing", Duration::from_secs(60), || app.store.view().len() == total).await;

    let view = app.store.view();
    for name in &expected {
        assert!(view.get(name).is_some(), "{name} is a line");
    }
    assert!(view.get("tracker-10").is_none(), "disabled: filtered out");
    assert!(view.get("tracker-71").is_none(), "excluded by label");
    assert!(view.get("tracker-5").is_none(), "the listed line wins over its SIM");
    assert_eq!(view.get("tracker-spare").unwrap().line.iccid.as_deref(), Some("8970101000000000005"));
    let one = view.get("tracker-1234").unwrap();
    assert_eq!(
        one.line.labels,
        vec![
            ("fleet".to_string(), "trackers".to_string()),
            ("slot".to_string(), "ip-10.200.4.233".to_string()),
            ("status".to_string(), "Enabled".to_string())
        ]
    );
    assert_eq!(one.line.iccid.as_deref(), Some("8970101000000001234"));
    assert_eq!(one.line.driver().name, "1nce");
    drop(view);

    // The SIMs 9,999 and 10,000 leave the platform: after the next listing, their lines go.
    mock.set_lines("1nce", 9_998);
    // The listing shares the account's 20 requests a second with the first wave of 8,000 lines.
    wait_for("the next listing", Duration::from_secs(150), || app.store.view().get("tracker-9999").is_none()).await;
    assert_eq!(app.store.view().len(), total - 1, "tracker-9999 left; tracker-10000 was never a line");
    let mut renderer = Renderer::new(1);
    app.render(&mut renderer);
    let body = app.exposition().body(Format::Text, false).expect("the body decompresses");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#"line="tracker-9998""#), "a remaining SIM is exported");
    assert!(!text.contains(r#"line="tracker-9999""#), "the removed SIM left /metrics");

    // Listings and polls together never went past the bucket: 10 at once, then one per
    // 50 ms, so any second holds at most 10 + 20 requests.
    let times = mock.request_times("1nce");
    let busiest = busiest_window(&times, Duration::from_secs(1));
    // Counted as they arrive: 20 ms of transit jitter allowed (see the cycle test below).
    assert!(busiest <= 31, "{busiest} requests in one second; the bucket allows 30 (+1 jitter)");
    let first = times.iter().min().copied().unwrap();
    let last = times.iter().max().copied().unwrap();
    eprintln!(
        "discovery: {} requests in {:.1} s ({:.1}/s); busiest second {busiest}; configured 20/s, burst 10",
        times.len(),
        (last - first).as_secs_f64(),
        times.len() as f64 / (last - first).as_secs_f64()
    );
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_cycle_of_ten_thousand_sims_keeps_to_the_rate_and_takes_the_time_it_implies() {
    let mock = MockOperator::start().await;
    mock.set_lines("1nce", 10_000);
    let (user, secret) = credentials("1nce");
    // 1,000 requests a second (100 at once): one data-quota request per SIM, 100 pages of
    // listing and a token, 10,101 requests in all.
    let yaml = format!(
        r#"global: {{max_concurrency: 64, timeout: 60s}}
accounts:
  trackers:
    driver: 1nce
    client_id: "{user}"
    client_secret: "{secret}"
    base_url: {base}
    sms: false
    rate_limit: 100/100ms
    discover: {{timeout: 60s}}
"#,
        base = mock.base_url("1nce"),
    );
    let config = esim_exporter::config::parse("cycle.yaml", &yaml, esim_exporter::drivers::REGISTRY)
        .unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(Store::new());
    let started = Instant::now();
    let lines = esim_exporter::poll::poll_once(&config, &store, Arc::new(SystemClock), None, None).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(lines, 10_000);
    let view = store.view();
    let failed: Vec<_> = view.lines().filter(|s| s.last_poll_ok != Some(true)).map(|s| s.line.name.clone()).collect();
    assert!(failed.is_empty(), "{} polls failed, e.g. {:?}", failed.len(), &failed[..failed.len().min(3)]);
    assert!(view.lines().all(|s| s.reading.as_ref().is_some_and(|r| r.data_remaining.is_some())));
    drop(view);

    let times = mock.request_times("1nce");
    assert_eq!(times.len(), 10_101, "a token, 100 listing pages, one request per SIM");
    // Counted as they arrive, so transit and scheduling jitter (allowed: 20 ms) may bunch a
    // few requests that left on time: burst + rate × (window + 50 ms).
    let busiest = busiest_window(&times, Duration::from_secs(1));
    assert!(busiest <= 1_150, "{busiest} requests in one second; the bucket allows 100 + 1,000 (+50 jitter)");
    let busiest_tenth = busiest_window(&times, Duration::from_millis(100));
    assert!(busiest_tenth <= 250, "{busiest_tenth} requests in 100 ms; the bucket allows 100 + 100 (+50 jitter)");
    // The rate implies (10,101 − 100 burst) / 1,000 per s ≈ 10 s: never faster, and not much
    // slower (twice that leaves room for a machine busy with other tests).
    let implied = Duration::from_secs_f64((10_101.0 - 100.0) / 1000.0);
    assert!(elapsed >= implied.mul_f64(0.98), "{elapsed:?}: faster than the rate allows");
    assert!(elapsed <= implied.mul_f64(2.0), "{elapsed:?}: the cycle should take about {implied:?}");
    eprintln!(
        "poll cycle: {} requests in {:.2} s = {:.0}/s (configured 1000/s, burst 100); busiest second {busiest}, busiest 100 ms {busiest_tenth}",
        times.len(),
        elapsed.as_secs_f64(),
        times.len() as f64 / elapsed.as_secs_f64()
    );
}

/// The real binary with every IoT driver discovering its account on the mock: every SIM is
/// polled as a line, `/metrics` passes promtool, `--config.check` counts the accounts.
#[test]
fn the_binary_discovers_every_platform_and_its_exposition_passes_promtool() {
    let mock = MockOperator::start_background();
    let (once_user, once_secret) = credentials("1nce");
    let (airalo_user, airalo_secret) = credentials("airalo");
    let config = format!(
        r#"global: {{poll_interval: 2s}}
accounts:
  t1nce:
    driver: 1nce
    client_id: "{once_user}"
    client_secret: "{once_secret}"
    base_url: {}
    discover: {{labels: {{label: "{{label}}"}}}}
  temnify:
    driver: emnify
    application_token: "{}"
    base_url: {}
    discover: {{name: "emnify-{{name}}", labels: {{tags: "{{tags}}"}}}}
  tairalo:
    driver: airalo
    client_id: "{airalo_user}"
    client_secret: "{airalo_secret}"
    base_url: {}
    discover: {{}}
  tholo:
    driver: hologram
    api_key: "{}"
    orgid: 98765
    base_url: {}
    discover: {{name: "holo-{{device_id}}", labels: {{state: "{{state}}"}}}}
  ttiny:
{}"#,
        mock.base_url("1nce"),
        credentials("emnify").1,
        mock.base_url("emnify"),
        mock.base_url("airalo"),
        credentials("hologram").1,
        mock.base_url("hologram"),
        tiny_account(&mock),
    );
    let e = crate::binary::Exporter::start("fleet-discovery", &config);
    let polled = |e: &crate::binary::Exporter| {
        let m = e.metrics();
        let ok = m.lines().filter(|l| l.starts_with("esim_last_poll_success_timestamp_seconds{")).count();
        ok == 15 && !m.contains("esim_poll_failing{")
    };
    e.wait_until("15 discovered lines polled", polled);
    let metrics = e.metrics();
    crate::binary::promtool_check_metrics(&metrics);
    // ICCIDs in discovered names are masked (no expose_msisdn); platform ids are not personal.
    for name in ["t1nce-*0001", "emnify-tracker-1", "tairalo-*0001", "holo-2000000"] {
        assert!(metrics.contains(&format!("line=\"{name}\"")), "{name} in /metrics");
    }
    assert!(metrics.contains(r#"label="tracker-2""#), "a mapped label");
    assert!(metrics.contains(r#"esim_lines{driver="hologram"} 3"#), "discovered lines are counted");
    let (status, api) = e.get("/api/v1/lines");
    assert_eq!(status, 200);
    assert!(api.contains("holo-2000001"), "discovered lines are in the API");
}

/// A TinyIoT account (the JSON API of `tests/it/drivers/http_json.rs`) that discovers.
fn tiny_account(mock: &MockOperator) -> String {
    let (user, secret) = credentials("http_json");
    format!(
        r#"    driver: http_json
    base_url: {}
    auth:
      oauth2: {{token_path: /oauth/token, client_id: "{user}", client_secret: "{secret}"}}
    request: {{path: "/api/v2/lines/{{iccid}}"}}
    fields:
      data_remaining: {{path: "$.line.usage.left_kb", unit: KiB}}
      data_quota: {{path: "$.line.usage.limit_kb", unit: KiB}}
      unlimited: "$.line.usage.unlimited"
      balance: "$.line.credit.value"
      currency: "$.line.credit.cur"
      quota_expiry: "$.line.valid_until"
    list:
      path: "/api/v2/lines?page={{page}}"
      items: "$.lines[*]"
      id: "$.iccid"
      iccid: "$.iccid"
      facts: {{name: "$.name"}}
      total_pages: "$.meta.pages"
    discover: {{name: "tiny-{{name}}"}}
"#,
        mock.base_url("http_json")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_renames_discovered_lines_from_the_last_listing_without_listing_again() {
    let mock = MockOperator::start().await;
    mock.set_lines("hologram", 100);
    let (_, key) = credentials("hologram");
    let config = |template: &str| {
        format!(
            "global: {{poll_interval: 1h}}\naccounts:\n  sensors:\n    driver: hologram\n    api_key: \"{key}\"\n    base_url: {}\n    discover: {{interval: 1h, name: \"{template}\"}}\n",
            mock.base_url("hologram")
        )
    };
    let dir = std::env::temp_dir().join(format!("esim-discovery-reload-{}", std::process::id()));
    let path = write_config(&dir, &config("a-{device_id}"));
    let app = App::start(ConfigSource::File(path.clone()), Arc::new(SystemClock), None, None).expect("app starts");
    wait_for("the first listing", Duration::from_secs(20), || app.store.view().len() == 100).await;
    assert!(app.store.view().get("a-2000000").is_some());
    let listings = mock.count("hologram", "/devices");

    std::fs::write(&path, config("b-{device_id}")).unwrap();
    app.reload().await.expect("reload");
    let view = app.store.view();
    assert_eq!(view.len(), 100);
    assert!(view.get("b-2000000").is_some() && view.get("a-2000000").is_none(), "renamed at once");
    drop(view);
    assert_eq!(mock.count("hologram", "/devices"), listings, "from the last listing, not a new one");
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_lines_shard_like_configured_ones_and_every_shard_lists() {
    use esim_exporter::poll::{spread::shard_of, Shard};
    let mock = MockOperator::start().await;
    mock.set_lines("hologram", 90);
    let (_, key) = credentials("hologram");
    let config = format!(
        "global: {{poll_interval: 1h}}\naccounts:\n  sensors:\n    driver: hologram\n    api_key: \"{key}\"\n    base_url: {}\n    discover: {{interval: 1h, name: \"s-{{device_id}}\"}}\n",
        mock.base_url("hologram")
    );
    let dir = std::env::temp_dir().join(format!("esim-discovery-shards-{}", std::process::id()));
    let path = write_config(&dir, &config);
    let all: Vec<String> = (0..90).map(|i| format!("s-{}", 2_000_000 + i)).collect();
    let mut seen = Vec::new();
    for k in 0..3 {
        let shard = Shard::new(k, 3).unwrap();
        let app =
            App::start(ConfigSource::File(path.clone()), Arc::new(SystemClock), Some(shard), None).expect("app starts");
        let want: Vec<&String> = all.iter().filter(|n| shard_of(n, 3) == k).collect();
        wait_for("the shard's discovered lines", Duration::from_secs(20), || app.store.view().len() == want.len())
            .await;
        let view = app.store.view();
        for name in &want {
            assert!(view.get(name).is_some(), "shard {k} lacks its discovered line {name}");
        }
        seen.extend(want.into_iter().cloned());
        drop(view);
        app.shutdown().await;
    }
    seen.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(seen, expected, "the shards' discovered lines partition the listing");
    assert!(mock.count("hologram", "/devices") >= 3, "each shard lists the account itself");
    let _ = std::fs::remove_dir_all(&dir);
}
