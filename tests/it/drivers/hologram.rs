//! `hologram` contract tests against the mock operator: one device listing serves every line
//! (batching), remaining data from plan, overage limit and usage, the organisation balance,
//! cursor paging, 401 and 429 without Retry-After.

use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::error::PollError;
use esim_exporter::reading::{Currency, Money, Reading};

use super::{at, secret_of, Built, Fault, MockOperator};

fn config(mock: &MockOperator, extra: &str, lines: &str) -> String {
    format!(
        "global: {{poll_interval: 10m}}\naccounts:\n  sensors:\n    driver: hologram\n    api_key: \"{}\"\n    orgid: 98765\n    base_url: {}\n{extra}lines:\n{lines}",
        secret_of("hologram"),
        mock.base_url("hologram"),
    )
}

const LINES: &str = "  - {name: soil, account: sensors, iccid: \"89123400001234567890\"}\n  - {name: pump, account: sensors, iccid: \"89123400001234567891\"}\n  - {name: gate, account: sensors, iccid: \"89123400001234567892\"}\n";

pub fn main_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: 96.05, currency: Currency::USD }),
        // 1 GB plan + 5 MB overage limit − 503,417,039 bytes used.
        data_remaining: Some(ByteSize(1_005_000_000 - 503_417_039)),
        data_quota: Some(ByteSize(1_005_000_000)),
        quota_expiry: Some(at("2026-10-11T17:24:43Z")),
        plan: Some("1 GB Pilot".into()),
        ..Reading::default()
    }
}

#[tokio::test]
async fn one_listing_answers_every_line() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    assert_eq!(built.reading("soil").await, main_reading());
    let pump = built.reading("pump").await;
    assert_eq!((pump.data_remaining, pump.data_quota), (None, None), "no overage limit: no cutoff");
    let gate = built.reading("gate").await;
    assert_eq!(gate.data_remaining, Some(ByteSize(0)), "used past the cutoff");
    assert_eq!(mock.count("hologram", "/devices"), 1, "three lines, one listing");
    assert_eq!(mock.count("hologram", "/organizations/98765/balance"), 1);
    let listing = mock.requests("hologram").into_iter().find(|r| r.path == "/devices").unwrap();
    assert_eq!(listing.query("orgid"), Some("98765"));
}

#[tokio::test]
async fn the_listing_follows_the_cursor_and_a_fleet_costs_a_few_requests() {
    let mock = MockOperator::start().await;
    mock.set_lines("hologram", 2500);
    let lines: String = (1..=2500)
        .step_by(250)
        .map(|i| format!("  - {{name: s{i}, account: sensors, iccid: \"8970101{i:012}\"}}\n"))
        .collect();
    let built = Built::new(&config(&mock, "    page_size: 1000\n", &lines));
    for i in (1..=2500).step_by(250) {
        built.reading(&format!("s{i}")).await;
    }
    assert_eq!(mock.count("hologram", "/devices"), 3, "2,500 devices in pages of 1,000, once for 10 lines");
    let cursors: Vec<_> =
        mock.requests("hologram").iter().filter_map(|r| r.query("startafter").map(str::to_string)).collect();
    assert_eq!(cursors.len(), 2, "pages 2 and 3 start after the last id seen");
    let found = built.discover(Duration::from_secs(10)).await.unwrap();
    assert_eq!(found.len(), 2500);
    assert_eq!(mock.count("hologram", "/devices"), 6, "discovery lists afresh");
}

#[tokio::test]
async fn errors_map_to_reasons() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES).replace(secret_of("hologram"), "wrong-key"));
    let err = built.poll("soil", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "auth", "{err}");

    let mock = MockOperator::start().await;
    mock.fault("hologram", "/devices", Fault::Fixture(429, "rate-limited"));
    let built = Built::new(&config(&mock, "", LINES));
    let err = built.poll("soil", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err, PollError::RateLimited { retry_after: None });

    let mock = MockOperator::start().await;
    mock.fault("hologram", "/devices", Fault::Fixture(200, "rate-limited"));
    let built = Built::new(&config(&mock, "", LINES));
    let err = built.poll("soil", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err, PollError::RateLimited { retry_after: None }, "success false with the rate-limit text");

    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", "  - {name: x, account: sensors, iccid: \"89000000000000000000\"}\n"));
    let err = built.poll("x", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "config", "{err}");
}
