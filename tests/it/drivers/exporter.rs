//! The real binary with `mts` and `beeline` accounts polling the mock operator: `/metrics`
//! shows the fixtures' values in the contract's units, counts the operator requests, and
//! passes `promtool check metrics`.

use crate::binary::{promtool_check_metrics, Exporter};

use super::{secret_of, user_of, MockOperator};

/// The value of the first series starting with `prefix`.
fn value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[test]
fn the_exporter_polls_mts_and_beeline_through_the_mock_operator() {
    let mock = MockOperator::start_background();
    let config = format!(
        "global:\n  poll_interval: 2s\n  timeout: 5s\naccounts:
  corp-mts:
    driver: mts
    client_id: \"{}\"
    client_secret: \"{}\"
    base_url: {}
    rate_limit: 10/s
  corp-beeline:
    driver: beeline
    login: \"{}\"
    password: \"{}\"
    base_url: {}
    rate_limit: 10/s
lines:
  - {{name: mts-1, account: corp-mts, msisdn: \"+79160000001\"}}
  - {{name: mts-2, account: corp-mts, msisdn: \"+79160000002\"}}
  - {{name: bee-pre, account: corp-beeline, msisdn: \"+79060000001\"}}
  - {{name: bee-post, account: corp-beeline, msisdn: \"+79060000002\"}}
",
        user_of("mts"),
        secret_of("mts"),
        mock.base_url("mts"),
        user_of("beeline"),
        secret_of("beeline"),
        mock.base_url("beeline"),
    );
    let e = Exporter::start("drivers", &config);
    let lines = ["mts-1", "mts-2", "bee-pre", "bee-post"];
    e.wait_until("every line read once", |e| {
        let m = e.metrics();
        lines.iter().all(|l| crate::binary::polled_ok(&m, l))
    });
    let m = e.metrics();
    promtool_check_metrics(&m);
    let v = |prefix: &str| value(&m, prefix).unwrap_or_else(|| panic!("no series {prefix}\n{m}"));

    // mts: exact counters; a negative balance; an unlimited package absent, never 0.
    assert_eq!(v("esim_data_remaining_bytes{line=\"mts-1\",operator=\"mts\",account=\"corp-mts\"}"), 5_583_457_485.0);
    assert_eq!(v("esim_data_quota_bytes{line=\"mts-1\""), 32_212_254_720.0);
    assert_eq!(v("esim_voice_remaining_seconds{line=\"mts-1\""), 60_000.0);
    assert_eq!(v("esim_sms_remaining{line=\"mts-1\""), 421.0);
    assert_eq!(v("esim_quota_expiry_timestamp_seconds{line=\"mts-1\""), 1_784_581_199.0);
    assert!(v("esim_balance{line=\"mts-1\",operator=\"mts\",account=\"corp-mts\",currency=\"RUB\"}") <= 89.4);
    assert_eq!(v("esim_balance{line=\"mts-2\""), -990.0);
    assert_eq!(v("esim_voice_remaining_seconds{line=\"mts-2\""), 7_500.0);
    assert_eq!(value(&m, "esim_data_remaining_bytes{line=\"mts-2\""), None, "unlimited data is absent");

    // beeline: prepaid accumulators and postpaid rests in the contract's units.
    assert_eq!(v("esim_data_remaining_bytes{line=\"bee-pre\",operator=\"beeline\""), 5_583_457_280.0);
    assert_eq!(v("esim_voice_remaining_seconds{line=\"bee-pre\""), 18_000.0);
    assert_eq!(v("esim_balance{line=\"bee-post\""), -120.5);
    assert_eq!(v("esim_data_remaining_bytes{line=\"bee-post\""), 6_120_328_397.0);
    assert_eq!(v("esim_voice_remaining_seconds{line=\"bee-post\""), 15_000.0);

    // The operator requests are counted per account, driver and status (labels sorted).
    assert!(v("esim_operator_requests_total{account=\"corp-mts\",code=\"200\",driver=\"mts\"}") >= 5.0, "{m}");
    assert!(v("esim_operator_requests_total{account=\"corp-beeline\",code=\"200\",driver=\"beeline\"}") >= 6.0);
    assert!(v("esim_operator_request_duration_seconds_count{driver=\"mts\"}") >= 5.0);
    assert!(v("esim_lines{driver=\"mts\"}") == 2.0 && v("esim_lines{driver=\"beeline\"}") == 2.0);

    // Secrets never reach the log, even at debug level.
    let log = e.log();
    assert!(log.contains("operator request"), "debug request logs are there");
    assert!(!log.contains("log.target=reqwest"), "dependencies log from warn up only");
    for secret in [secret_of("mts"), secret_of("beeline")].into_iter().map(String::from).chain(mock.issued_tokens()) {
        assert!(!log.contains(&secret), "`{secret}` in the exporter's log");
    }
}

/// Issue 12: with `poll_interval: 1h` a new user's lines used to show nothing for up to an
/// hour (the first poll waited for the line's phase slot). Lines that never polled now poll
/// right after start, paced only by the account's limits.
#[test]
fn operator_lines_polling_hourly_have_readings_within_seconds_of_start() {
    let mock = MockOperator::start_background();
    let config = format!(
        "global:\n  poll_interval: 1h\n  timeout: 5s\naccounts:
  corp-mts:
    driver: mts
    client_id: \"{}\"
    client_secret: \"{}\"
    base_url: {}
    rate_limit: 1/s
lines:
  - {{name: mts-1, account: corp-mts, msisdn: \"+79160000001\"}}
  - {{name: mts-2, account: corp-mts, msisdn: \"+79160000002\"}}
",
        user_of("mts"),
        secret_of("mts"),
        mock.base_url("mts"),
    );
    let started = std::time::Instant::now();
    let e = Exporter::start("first-wave", &config);
    e.wait_until("both lines read", |e| {
        let m = e.metrics();
        ["mts-1", "mts-2"].iter().all(|l| crate::binary::polled_ok(&m, l))
    });
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "first readings took {took:?} (the interval is an hour)");
    let (status, body) = e.get("/api/v1/lines");
    assert_eq!(status, 200);
    assert!(!body.contains("\"state\":\"pending\""), "both lines have polled: {body}");
}
