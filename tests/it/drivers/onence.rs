//! `1nce` contract tests against the mock operator and `tests/fixtures/1nce/`: binary
//! megabytes, both date forms, negative volume, 404/422, 429 with and without Retry-After,
//! the token flow, and the SIM list paged to `X-Total-Pages`.

use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::error::PollError;
use esim_exporter::reading::Reading;

use super::{at, secret_of, user_of, Built, Fault, MockOperator};

const QUOTA_DATA: &str = "/v1/sims/8988228066600000001/quota/data";

fn config(mock: &MockOperator, extra: &str, lines: &str) -> String {
    format!(
        "accounts:\n  trackers:\n    driver: 1nce\n    client_id: \"{}\"\n    client_secret: \"{}\"\n    base_url: {}\n{extra}lines:\n{lines}",
        user_of("1nce"),
        secret_of("1nce"),
        mock.base_url("1nce"),
    )
}

const LINES: &str = "  - {name: a, account: trackers, iccid: \"8988228066600000001\"}\n  - {name: b, account: trackers, iccid: \"8988228066600000002\"}\n";

/// The reading of SIM …0001 (`quota-data.json`, `quota-sms.json`).
pub fn main_reading() -> Reading {
    Reading {
        data_remaining: Some(ByteSize((435.79_f64 * 1_048_576.0).round() as u64)),
        data_quota: Some(ByteSize(500 << 20)),
        sms_remaining: Some(187),
        quota_expiry: Some(at("2033-03-09T07:59:09Z")),
        ..Reading::default()
    }
}

#[tokio::test]
async fn megabytes_are_binary_dates_come_in_both_forms_and_negative_volume_is_nothing_left() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    assert_eq!(built.reading("a").await, main_reading());
    let (b, notes) = built.poll("b", Duration::from_secs(10)).await;
    assert_eq!(
        b.unwrap(),
        Reading {
            data_remaining: Some(ByteSize(0)),
            data_quota: Some(ByteSize(500 << 20)),
            sms_remaining: Some(0),
            quota_expiry: Some(at("2029-01-01T00:00:00Z")),
            ..Reading::default()
        }
    );
    assert!(notes.iter().any(|n| n.contains("negative")), "{notes:?}");
    // No money balance on 1NCE: absent, never 0.
    assert_eq!(built.reading("a").await.balance, None);
}

#[tokio::test]
async fn the_token_comes_from_basic_credentials_and_a_json_body_and_is_reused() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    built.reading("a").await;
    built.reading("b").await;
    let tokens: Vec<_> = mock.requests("1nce").into_iter().filter(|r| r.path == "/oauth/token").collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].header("content-type"), Some("application/json"));
    assert_eq!(String::from_utf8_lossy(&tokens[0].body), r#"{"grant_type":"client_credentials"}"#);
    assert_eq!(mock.requests("1nce").len(), 5, "a token, then data and SMS quota per poll");
}

#[tokio::test]
async fn without_sms_a_poll_is_one_request() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "    sms: false\n", LINES));
    let r = built.reading("a").await;
    assert_eq!(r.sms_remaining, None);
    assert_eq!(mock.count("1nce", "/v1/sims/8988228066600000001/quota/sms"), 0);
}

#[tokio::test]
async fn not_found_and_expired_sims_are_config_errors_and_429_keeps_its_delay() {
    let cases: Vec<(Fault, &str, Option<&str>)> = vec![
        (Fault::Status(404), "config", Some("not in this 1NCE account")),
        (Fault::Status(422), "config", Some("expired")),
        // Recorded: a SIM of another account is a 200 with an empty body, not a 404.
        (Fault::Body(200, "application/json", String::new()), "config", Some("not in this 1NCE account")),
        (Fault::RateLimited(None), "rate_limited", None),
        (Fault::RateLimited(Some("30".into())), "rate_limited", None),
        (Fault::Fixture(400, "token-refused"), "bad_response", None),
    ];
    for (fault, reason, text) in cases {
        let mock = MockOperator::start().await;
        mock.fault("1nce", QUOTA_DATA, fault.clone());
        let built = Built::new(&config(&mock, "", LINES));
        let err = built.poll("a", Duration::from_secs(10)).await.0.unwrap_err();
        assert_eq!(err.reason().as_str(), reason, "{fault:?}: {err}");
        if let Some(text) = text {
            assert!(err.to_string().contains(text), "{err}");
            assert!(!err.to_string().contains("8988228066600000001"), "the ICCID is not in errors: {err}");
        }
        if let Fault::RateLimited(after) = fault {
            let expected = after.map(|s| Duration::from_secs(s.parse().unwrap()));
            assert_eq!(err, PollError::RateLimited { retry_after: expected });
        }
    }
}

#[tokio::test]
async fn refused_credentials_are_auth_and_not_retried() {
    let mock = MockOperator::start().await;
    let yaml = config(&mock, "", LINES).replace(secret_of("1nce"), "wrong-secret");
    let built = Built::new(&yaml);
    let err = built.poll("a", Duration::from_secs(10)).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "auth", "{err}");
    // The live API answers bad credentials with 400 and a Cognito error code (recorded, see
    // shared/operators/iot.md §9); this used to be `bad_response`.
    assert!(err.to_string().contains("CognitoAuthenticationError"), "{err}");
    assert_eq!(mock.requests("1nce").len(), 1);
}

#[tokio::test]
async fn discovery_pages_to_x_total_pages() {
    let mock = MockOperator::start().await;
    mock.set_lines("1nce", 250);
    let built = Built::new(&config(&mock, "    page_size: 100\n", LINES));
    let found = built.discover(Duration::from_secs(10)).await.unwrap();
    assert_eq!(found.len(), 250);
    assert_eq!(mock.count("1nce", "/v1/sims"), 3, "pages 1, 2, 3 of 3");
    let pages: Vec<_> = mock.requests("1nce").iter().filter_map(|r| r.query("page").map(str::to_string)).collect();
    assert_eq!(pages, ["1", "2", "3"]);
    let tenth = found.iter().find(|l| l.id == "8970101000000000010").unwrap();
    assert!(tenth.labels.contains(&("status".into(), "Disabled".into())), "{:?}", tenth.labels);
    assert!(tenth.labels.contains(&("label".into(), "tracker-10".into())));
    assert_eq!(tenth.iccid.as_deref(), Some("8970101000000000010"));
}

/// Found by the soak's review (issue 14): a platform that ignores `page` and answers every
/// request with the same full page, without `X-Total-Pages`, made the listing walk on until
/// the discover timeout holding ever more copies of the same SIMs. Now the second copy ends it.
#[tokio::test]
async fn a_listing_that_repeats_its_page_is_a_bad_response_at_the_second_copy() {
    let mock = MockOperator::start().await;
    let page: Vec<String> = (1..=10)
        .map(|n| format!(r#"{{"iccid":"89701010000000000{n:02}","label":"tracker-{n}","status":"Enabled"}}"#))
        .collect();
    let page = format!("[{}]", page.join(","));
    mock.faults("1nce", "/v1/sims", Fault::Body(200, "application/json", page), 50);
    let built = Built::new(&config(&mock, "    page_size: 10\n", LINES));
    let err = match built.discover(Duration::from_secs(20)).await {
        Ok(found) => panic!("a listing of {} SIMs, copies of one page, was taken as the account's", found.len()),
        Err(err) => err,
    };
    assert!(matches!(err, PollError::BadResponse(_)), "{err}");
    assert!(err.to_string().contains("page 2 repeats page 1"), "{err}");
    assert_eq!(mock.count("1nce", "/v1/sims"), 2, "no page asked after the repeat");
}
