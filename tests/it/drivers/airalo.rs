//! `airalo` contract tests against the mock operator and `tests/fixtures/airalo/`: usage in
//! binary megabytes, minutes and texts; unlimited and recycled eSIMs; the 20-minute floor per
//! eSIM; 404 and 429 with Retry-After; the eSIM list paged to `meta.last_page`.

use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::error::PollError;
use esim_exporter::reading::{Currency, Money, Reading};

use super::{at, secret_of, user_of, Built, Fault, MockOperator};

const USAGE: &str = "/sims/8944465400000000001/usage";

fn config(mock: &MockOperator, extra: &str) -> String {
    format!(
        "accounts:\n  travel:\n    driver: airalo\n    client_id: \"{}\"\n    client_secret: \"{}\"\n    base_url: {}\n{extra}lines:\n  - {{name: a, account: travel, iccid: \"8944465400000000001\"}}\n  - {{name: unlimited, account: travel, iccid: \"8944465400000000002\"}}\n  - {{name: recycled, account: travel, iccid: \"8944465400000000003\"}}\n",
        user_of("airalo"),
        secret_of("airalo"),
        mock.base_url("airalo"),
    )
}

pub fn main_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: 1234.5, currency: Currency::USD }),
        data_remaining: Some(ByteSize(767 << 20)),
        data_quota: Some(ByteSize(2048 << 20)),
        voice_remaining: Some(Duration::from_secs(30 * 60)),
        sms_remaining: Some(12),
        quota_expiry: Some(at("2026-08-01T10:30:45Z")),
        plan: None,
    }
}

#[tokio::test]
async fn usage_maps_units_and_unlimited_or_recycled_esims_leave_values_absent() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, ""));
    assert_eq!(built.reading("a").await, main_reading());
    let unlimited = built.reading("unlimited").await;
    assert_eq!((unlimited.data_remaining, unlimited.data_quota, unlimited.sms_remaining), (None, None, None));
    assert_eq!(unlimited.quota_expiry, Some(at("2026-09-15T00:00:00Z")));
    let recycled = built.reading("recycled").await;
    assert_eq!(recycled, Reading { balance: main_reading().balance, ..Reading::default() });
    assert_eq!(mock.count("airalo", "/balance"), 1, "the partner balance is shared");
    let token = mock.requests("airalo").into_iter().find(|r| r.path == "/token").unwrap();
    assert_eq!(token.header("content-type"), Some("application/x-www-form-urlencoded"));
}

#[tokio::test]
async fn usage_of_one_esim_is_read_at_most_every_20_minutes() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, ""));
    built.reading("a").await;
    let (again, notes) = built.poll("a", Duration::from_secs(10)).await;
    assert_eq!(again.unwrap(), main_reading(), "the last reading answers");
    assert!(notes.iter().any(|n| n.contains("20 minutes")), "{notes:?}");
    assert_eq!(mock.count("airalo", USAGE), 1);
    built.reading("unlimited").await;
    assert_eq!(mock.count("airalo", "/sims/8944465400000000002/usage"), 1, "the floor is per eSIM");
}

#[tokio::test]
async fn not_found_is_a_config_error_and_429_carries_retry_after() {
    let mock = MockOperator::start().await;
    mock.fault("airalo", USAGE, Fault::Fixture(404, "not-found"));
    let built = Built::new(&config(&mock, ""));
    let err = built.poll("a", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "config", "{err}");

    let mock = MockOperator::start().await;
    mock.fault("airalo", USAGE, Fault::RateLimited(Some("900".into())));
    let built = Built::new(&config(&mock, ""));
    let err = built.poll("a", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err, PollError::RateLimited { retry_after: Some(Duration::from_secs(900)) });

    let mock = MockOperator::start().await;
    mock.fault("airalo", USAGE, Fault::Fixture(429, "too-many"));
    let built = Built::new(&config(&mock, ""));
    let err = built.poll("a", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err, PollError::RateLimited { retry_after: None });
    // A failed read is not cached: the next poll asks again.
    assert!(built.poll("a", Duration::from_secs(10)).await.0.is_ok());
}

#[tokio::test]
async fn refused_credentials_are_auth() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "").replace(secret_of("airalo"), "wrong"));
    let err = built.poll("a", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "auth");
}

#[tokio::test]
async fn discovery_pages_to_the_last_page() {
    let mock = MockOperator::start().await;
    mock.set_lines("airalo", 230);
    let built = Built::new(&config(&mock, "    page_size: 100\n"));
    let found = built.discover(Duration::from_secs(10)).await.unwrap();
    assert_eq!(found.len(), 230);
    assert_eq!(mock.count("airalo", "/sims"), 3);
    assert!(found[0].labels.iter().any(|(k, _)| k == "package"), "{:?}", found[0].labels);
}
