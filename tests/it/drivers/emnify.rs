//! `emnify` contract tests against the mock operator and `tests/fixtures/emnify/`: the JWT
//! lifetime read from the token, quota per endpoint (404 = none set), the shared prepaid
//! balance, 422/429, and the endpoint list paged to `X-Total-Pages` — never past it, although
//! the API answers a page past the end with the last page again.

use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::error::PollError;
use esim_exporter::reading::{Currency, Money, Reading};

use super::{at, secret_of, Built, Fault, MockOperator};

const QUOTA_DATA: &str = "/api/v1/endpoint/11379224/quota/data";

fn config(mock: &MockOperator, extra: &str, lines: &str) -> String {
    format!(
        "accounts:\n  org:\n    driver: emnify\n    application_token: \"{}\"\n    base_url: {}\n{extra}lines:\n{lines}",
        secret_of("emnify"),
        mock.base_url("emnify"),
    )
}

const LINES: &str =
    "  - {name: a, account: org, endpoint_id: 11379224}\n  - {name: b, account: org, iccid: \"8988303000000000002\"}\n";

pub fn main_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: 153.42, currency: Currency::EUR }),
        data_remaining: Some(ByteSize((87.4_f64 * 1_048_576.0).round() as u64)),
        sms_remaining: Some(42),
        quota_expiry: Some(at("2026-12-31T23:59:59Z")),
        ..Reading::default()
    }
}

#[tokio::test]
async fn quota_per_endpoint_and_one_balance_for_the_organisation() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    assert_eq!(built.reading("a").await, main_reading());
    // By ICCID: the endpoint is found in the list; no SMS quota set (404): absent, not 0.
    let (b, notes) = built.poll("b", Duration::from_secs(10)).await;
    let b = b.unwrap();
    assert_eq!(b.sms_remaining, None);
    assert_eq!(b.data_quota, None, "emnify has no total");
    assert!(notes.iter().any(|n| n.contains("no SMS quota")), "{notes:?}");
    assert!(mock.count("emnify", "/api/v1/endpoint/11379225/quota/data") == 1);
    assert_eq!(mock.count("emnify", "/api/v1/organisation/my/stats"), 1, "the balance is shared");
    assert_eq!(mock.count("emnify", "/api/v1/authenticate"), 1);
}

#[tokio::test]
async fn a_postpaid_organisation_has_no_balance() {
    let mock = MockOperator::start().await;
    mock.set_flag("emnify", "postpaid", true);
    let built = Built::new(&config(&mock, "", LINES));
    assert_eq!(built.reading("a").await.balance, None);
}

#[tokio::test]
async fn the_jwt_is_kept_for_the_lifetime_its_exp_claim_gives() {
    let mock = MockOperator::start().await;
    mock.set_expires_in("emnify", 2);
    let built = Built::new(&config(&mock, "    sms: false\n    balance: false\n", LINES));
    built.reading("a").await;
    built.reading("a").await;
    assert_eq!(mock.count("emnify", "/api/v1/authenticate"), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    built.reading("a").await;
    assert_eq!(mock.count("emnify", "/api/v1/authenticate"), 2, "renewed once exp came near");
    assert!(!built.observed.codes().contains(&"401".to_string()), "renewed before emnify refused it");
}

#[tokio::test]
async fn status_codes_map_to_reasons() {
    let cases: Vec<(Fault, &str)> = vec![
        (Fault::Status(404), "ok"),
        (Fault::Status(422), "config"),
        (Fault::Fixture(429, "too-many-requests"), "rate_limited"),
        (Fault::RateLimited(Some("12".into())), "rate_limited"),
        (Fault::Status(401), "ok"),
        // Recorded bodies (iot.md §9): the reason is the status's, the message carries the code.
        (Fault::Body(409, "application/json", r#"{"error_code":1405,"error_token":"Duplicated","message":"Duplicated"}"#.into()), "bad_response"),
        (Fault::Body(422, "application/json", r#"{"error_code":1000,"error_token":"BadRequest","errors":[{"field":"endpoint_id","message":"must be positive"}]}"#.into()), "config"),
        (Fault::Body(422, "application/json", String::new()), "config"),
    ];
    for (fault, reason) in cases {
        let mock = MockOperator::start().await;
        mock.fault("emnify", QUOTA_DATA, fault.clone());
        let built = Built::new(&config(&mock, "", LINES));
        let result = built.poll("a", Duration::from_secs(10)).await.0;
        let got = result.as_ref().map_or_else(|e| e.reason().as_str(), |_| "ok");
        assert_eq!(got, reason, "{fault:?}: {result:?}");
        match fault {
            Fault::Fixture(429, _) => assert_eq!(result.unwrap_err(), PollError::RateLimited { retry_after: None }),
            Fault::RateLimited(Some(_)) => {
                assert_eq!(result.unwrap_err(), PollError::RateLimited { retry_after: Some(Duration::from_secs(12)) })
            }
            Fault::Status(404) => assert_eq!(result.unwrap().data_remaining, None, "no data quota set"),
            Fault::Body(409, ..) => {
                let message = result.unwrap_err().to_string();
                assert!(message.contains("HTTP 409 (error_code 1405 Duplicated)"), "{message}");
            }
            Fault::Body(422, _, body) if !body.is_empty() => {
                let message = result.unwrap_err().to_string();
                assert!(message.contains("error_code 1000 BadRequest; fields: endpoint_id"), "{message}");
                assert!(!message.contains("must be positive"), "nested messages are not echoed: {message}");
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn refused_application_token_is_auth() {
    let mock = MockOperator::start().await;
    // The coded body comes only after repeated failures; mostly the 401 is empty (iot.md §9).
    mock.fault("emnify", "/api/v1/authenticate", Fault::Fixture(401, "authenticate-refused"));
    let built = Built::new(&config(&mock, "", LINES).replace(secret_of("emnify"), "revoked-token"));
    let err = built.poll("a", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "auth");
    assert!(err.to_string().contains("error_code 1101"), "{err}");
}

#[tokio::test]
async fn the_list_is_read_to_x_total_pages_and_never_past_it() {
    let mock = MockOperator::start().await;
    mock.set_lines("emnify", 2500);
    let built = Built::new(&config(&mock, "", LINES));
    let found = built.discover(Duration::from_secs(10)).await.unwrap();
    // 2,501 endpoints (one without a SIM) in pages of 1,000: pages 1 to 3, then stop.
    assert_eq!(found.len(), 2500);
    assert_eq!(mock.count("emnify", "/api/v1/endpoint"), 3);
    let first = found.iter().find(|l| l.id == "8970101000000000001").unwrap();
    assert!(first.labels.contains(&("name".into(), "tracker-1".into())), "{:?}", first.labels);
    assert!(first.labels.contains(&("endpoint_id".into(), "11379224".into())));
}

#[tokio::test]
async fn without_paging_headers_a_repeated_last_page_ends_the_list() {
    let mock = MockOperator::start().await;
    mock.set_flag("emnify", "no_total_pages", true);
    // 1,999 SIMs and the SIM-less endpoint: two full pages, so only the repeat shows the end.
    mock.set_lines("emnify", 1999);
    let built = Built::new(&config(&mock, "", LINES));
    let found = built.discover(Duration::from_secs(10)).await.unwrap();
    assert_eq!(found.len(), 1999, "no endpoint twice");
    assert_eq!(mock.count("emnify", "/api/v1/endpoint"), 3, "page 3 repeated page 2: stop");
}

#[tokio::test]
async fn an_unknown_endpoint_is_config_and_1601_is_unavailable() {
    let mock = MockOperator::start().await;
    let yaml = config(&mock, "", "  - {name: ghost, account: org, endpoint_id: 99999999}\n");
    let built = Built::new(&yaml);
    let err = built.poll("ghost", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "config", "{err}");
    assert!(err.to_string().contains("1401"), "{err}");
    let mock = MockOperator::start().await;
    mock.fault("emnify", "/api/v1/endpoint/11379224/quota/data", Fault::Fixture(404, "unavailable"));
    let built = Built::new(&config(&mock, "", LINES));
    let err = built.poll("a", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "unavailable", "{err}");
}

#[tokio::test]
async fn an_empty_401_from_authenticate_is_auth() {
    let mock = MockOperator::start().await;
    let yaml = config(&mock, "", LINES).replace(secret_of("emnify"), "revoked-token");
    let err = Built::new(&yaml).poll("a", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "auth", "{err}");
}
