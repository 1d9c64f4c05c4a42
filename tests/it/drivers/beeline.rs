//! `beeline` contract tests against the mock operator and `tests/fixtures/beeline/`: prepaid
//! and postpaid mapping (kilobytes, seconds, minutes, megabytes, "5,2 ГБ"), the pay type read
//! once and corrected, the login (2.0 with 1.0 fallback) and its refusal, 429 in both shapes,
//! and the login's numbers.

use std::sync::Arc;
use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::reading::{Currency, Money, Reading};

use super::{at, secret_of, user_of, Built, Fault, MockOperator};

const GIB: f64 = 1_073_741_824.0;

/// +79060000001, prepaid, first poll (`prepaid-balance.json`, `accumulators.json`).
pub fn prepaid_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: 250.75, currency: Currency::RUB }),
        // KBYTE × 1024; roaming and tethering buckets left out.
        data_remaining: Some(ByteSize(5_452_595 * 1024)),
        data_quota: Some(ByteSize(31_457_280 * 1024)),
        voice_remaining: Some(Duration::from_secs(18_000)),
        sms_remaining: Some(50),
        quota_expiry: Some(at("2026-08-01T00:00:00+03:00")),
        plan: None,
    }
}

/// +79060000002, postpaid (`postpaid-balance.json`, `rests.json`).
fn postpaid_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: -120.5, currency: Currency::RUB }),
        // "5,2 ГБ" plus 512 MB; the rollover rest is not summed a second time.
        data_remaining: Some(ByteSize((5.2 * GIB + 512.0 * 1_048_576.0).round() as u64)),
        data_quota: Some(ByteSize((10.0 * GIB + 1024.0 * 1_048_576.0).round() as u64)),
        voice_remaining: Some(Duration::from_secs(250 * 60)),
        sms_remaining: Some(30),
        quota_expiry: Some(at("2026-08-05T00:00:00Z")),
        plan: None,
    }
}

fn config(mock: &MockOperator, extra_account: &str, lines: &str) -> String {
    format!(
        "global: {{poll_interval: 10m}}\naccounts:\n  corp:\n    driver: beeline\n    login: \"{}\"\n    password: \"{}\"\n    base_url: {}\n{extra_account}lines:\n{lines}",
        user_of("beeline"),
        secret_of("beeline"),
        mock.base_url("beeline"),
    )
}

const LINES: &str = "  - {name: pre, account: corp, msisdn: \"+79060000001\"}\n  - {name: post, account: corp, msisdn: \"+79060000002\"}\n  - {name: mislabelled, account: corp, msisdn: \"+79060000003\"}\n";

#[tokio::test]
async fn prepaid_and_postpaid_values_are_mapped_exactly() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    assert_eq!(built.reading("pre").await, prepaid_reading());
    assert_eq!(built.reading("post").await, postpaid_reading());
    // The prepaid balance evolves; the pay type is read once per number.
    assert_eq!(built.reading("pre").await.balance.map(|m| m.amount), Some(249.5));
    let pay_types: Vec<_> = mock
        .requests("beeline")
        .into_iter()
        .filter(|r| r.path == "/api/1.0/info/payType")
        .filter_map(|r| r.query("ctn").map(str::to_string))
        .collect();
    assert_eq!(pay_types, ["9060000001", "9060000002"]);
    assert_eq!(mock.count("beeline", "/api/1.0/info/rests"), 1);
    assert_eq!(mock.count("beeline", "/api/1.0/info/accumulators"), 2);
}

#[tokio::test]
async fn a_number_whose_pay_type_was_wrong_is_read_as_postpaid() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    let (result, notes) = built.poll("mislabelled", Duration::from_secs(10)).await;
    assert_eq!(result.unwrap().balance.map(|m| m.amount), Some(-120.5), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("postpaid")), "{notes:?}");
    // Corrected: the next poll goes straight to the postpaid endpoints.
    built.reading("mislabelled").await;
    assert_eq!(mock.count("beeline", "/api/1.0/info/payType"), 1);
    assert_eq!(mock.count("beeline", "/api/1.0/info/prepaidBalance"), 1);
    assert_eq!(mock.count("beeline", "/api/1.0/info/postpaidBalance"), 2);
}

#[tokio::test]
async fn postpaid_lines_of_one_billing_account_share_its_balance() {
    let mock = MockOperator::start().await;
    let lines = "  - {name: p1, account: corp, msisdn: \"+79060000002\", ban: \"123456789\"}\n  - {name: p2, account: corp, msisdn: \"+79060000002\", ban: \"123456789\"}\n";
    let built = Arc::new(Built::new(&config(&mock, "", lines)));
    let (a, b) = tokio::join!(built.reading("p1"), built.reading("p2"));
    let ban = Some(Money { amount: 3400.0, currency: Currency::RUB });
    assert_eq!((a.balance, b.balance), (ban, ban));
    let by_ban: Vec<_> =
        mock.requests("beeline").into_iter().filter(|r| r.path == "/api/1.0/info/postpaidBalance").collect();
    assert_eq!(by_ban.len(), 1);
    assert_eq!(by_ban[0].query("ban"), Some("123456789"));
}

#[tokio::test]
async fn login_through_api_2_0_and_the_token_as_cookie_and_header() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    built.reading("pre").await;
    built.reading("post").await;
    let logins: Vec<_> = mock.requests("beeline").into_iter().filter(|r| r.path.contains("auth")).collect();
    assert_eq!(logins.len(), 1, "one login for every poll");
    assert_eq!((logins[0].method.as_str(), logins[0].query("userType")), ("PUT", Some("Mobile")));
    let body: serde_json::Value = serde_json::from_slice(&logins[0].body).unwrap();
    assert_eq!(body["password"], secret_of("beeline"));
    let data = mock.requests("beeline").into_iter().find(|r| r.path == "/api/1.0/info/payType").unwrap();
    let token = mock.issued_tokens().pop().unwrap();
    assert_eq!(data.cookie("token"), Some(token.clone()));
    assert_eq!(data.header("x-auth-token"), None);
    // The balance endpoints read the header `X-API-Token` (ru.md §10): the mock insists.
    let balance = mock.requests("beeline").into_iter().find(|r| r.path == "/api/1.0/info/prepaidBalance").unwrap();
    assert_eq!(balance.header("x-api-token"), Some(token.as_str()));
    assert_eq!(balance.cookie("token"), Some(token));
}

#[tokio::test]
async fn login_falls_back_to_api_1_0_when_2_0_is_missing() {
    let mock = MockOperator::start().await;
    mock.set_flag("beeline", "v2_missing", true);
    let built = Built::new(&config(&mock, "", LINES));
    assert_eq!(built.reading("pre").await, prepaid_reading());
    let v1 = mock.requests("beeline").into_iter().find(|r| r.path == "/api/1.0/auth").expect("a 1.0 login");
    assert_eq!(v1.query("login"), Some(user_of("beeline")));
    // Forced to 1.0, 2.0 is never tried.
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "    login_api: v1\n", LINES));
    built.reading("pre").await;
    assert_eq!(mock.count("beeline", "/api/2.0/auth/auth"), 0);
}

#[tokio::test]
async fn login_falls_back_to_api_1_0_on_501_and_remembers_it_for_the_account() {
    let mock = MockOperator::start().await;
    mock.set_flag("beeline", "v2_not_implemented", true);
    let built = Built::new(&config(&mock, "", LINES));
    assert_eq!(built.reading("pre").await, prepaid_reading());
    assert_eq!((mock.count("beeline", "/api/2.0/auth/auth"), mock.count("beeline", "/api/1.0/auth")), (1, 1));
    // The next login of the account goes straight to 1.0.
    mock.expire_tokens("beeline");
    assert_eq!(built.reading("post").await, postpaid_reading());
    assert_eq!((mock.count("beeline", "/api/2.0/auth/auth"), mock.count("beeline", "/api/1.0/auth")), (1, 2));
    // And when 1.0 goes away (405), back to 2.0 (the reverse fallback).
    mock.set_flag("beeline", "v2_not_implemented", false);
    mock.set_flag("beeline", "v1_missing", true);
    mock.expire_tokens("beeline");
    assert_eq!(built.reading("post").await, postpaid_reading());
    assert_eq!((mock.count("beeline", "/api/2.0/auth/auth"), mock.count("beeline", "/api/1.0/auth")), (2, 3));
}

#[tokio::test]
async fn a_system_error_at_login_is_unavailable_not_auth() {
    let mock = MockOperator::start().await;
    mock.set_flag("beeline", "system_error", true);
    let built = Built::new(&config(&mock, "", LINES));
    let (result, _) = built.poll("pre", Duration::from_secs(10)).await;
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "unavailable", "{err}");
    assert!(err.to_string().contains("50000"), "{err}");
    // Transient: once the operator is back the same credentials log in.
    mock.set_flag("beeline", "system_error", false);
    assert_eq!(built.reading("pre").await, prepaid_reading());
}

#[tokio::test]
async fn a_blocked_user_is_auth() {
    let mock = MockOperator::start().await;
    mock.set_flag("beeline", "blocked", true);
    let built = Built::new(&config(&mock, "", LINES).replace(secret_of("beeline"), "wrong-password"));
    let (result, _) = built.poll("pre", Duration::from_secs(10)).await;
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "auth", "{err}");
    assert!(err.to_string().contains("20014"), "{err}");
}

#[tokio::test]
async fn a_refused_login_is_auth_once_and_names_the_operator_code() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES).replace(secret_of("beeline"), "wrong-password"));
    let (result, _) = built.poll("pre", Duration::from_secs(10)).await;
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "auth");
    assert!(err.to_string().contains("AUTH_ERROR"), "{err}");
    assert_eq!(mock.requests("beeline").len(), 1, "no retry of a refused login");
}

#[tokio::test]
async fn a_system_error_is_transient_not_a_refused_login() {
    // ru.md §10: `50000 SYSTEM_ERROR: null` is Beeline failing; as `auth` it locked the account
    // out for hours.
    for path in ["/api/2.0/auth/auth", "/api/1.0/info/prepaidBalance"] {
        let mock = MockOperator::start().await;
        mock.fault("beeline", path, Fault::Fixture(200, "system-error"));
        let built = Built::new(&config(&mock, "", LINES));
        let (result, _) = built.poll("pre", Duration::from_secs(10)).await;
        let err = result.unwrap_err();
        assert_eq!(err.reason().as_str(), "unavailable", "{path}: {err}");
    }
}

#[tokio::test]
async fn login_falls_back_to_api_1_0_when_2_0_is_not_implemented() {
    let mock = MockOperator::start().await;
    mock.fault("beeline", "/api/2.0/auth/auth", Fault::Status(501));
    let built = Built::new(&config(&mock, "", LINES));
    assert_eq!(built.reading("pre").await, prepaid_reading());
    assert_eq!(mock.count("beeline", "/api/1.0/auth"), 1);
}

#[tokio::test]
async fn an_expired_token_means_one_new_login() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    built.reading("pre").await;
    mock.expire_tokens("beeline");
    assert_eq!(built.reading("post").await, postpaid_reading());
    assert_eq!(mock.count("beeline", "/api/2.0/auth/auth"), 2);
}

#[tokio::test]
async fn too_many_requests_in_both_shapes_is_rate_limited() {
    for fault in [
        Fault::Body(429, "text/plain", "Too Many Requests".into()),
        Fault::Body(200, "text/html", "Too Many Requests".into()),
    ] {
        let mock = MockOperator::start().await;
        mock.fault("beeline", "/api/1.0/info/accumulators", fault.clone());
        let built = Built::new(&config(&mock, "", LINES));
        let (result, _) = built.poll("pre", Duration::from_secs(10)).await;
        assert_eq!(result.err().map(|e| e.reason().as_str()), Some("rate_limited"), "{fault:?}");
    }
}

#[tokio::test]
async fn the_777_glitch_keeps_the_last_reading() {
    let mock = MockOperator::start().await;
    let glitch = r#"{"meta":{"status":"OK","code":20000},"balance":777,"currency":"RUB"}"#;
    mock.fault("beeline", "/api/1.0/info/prepaidBalance", Fault::Body(200, "application/json", glitch.into()));
    let built = Built::new(&config(&mock, "", LINES));
    let (result, _) = built.poll("pre", Duration::from_secs(10)).await;
    assert_eq!(result.err().map(|e| e.reason().as_str()), Some("bad_response"));
}

#[tokio::test]
async fn discovery_lists_the_logins_numbers_once_each() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", LINES));
    let lines = built.discover(Duration::from_secs(10)).await.unwrap();
    let numbers: Vec<_> = lines.iter().map(|l| l.msisdn.clone().unwrap()).collect();
    assert_eq!(numbers, ["+79060000001", "+79060000002", "+79060000003"]);
    let asked = mock.requests("beeline").into_iter().find(|r| r.path == "/api/1.0/sso/subscribers").unwrap();
    assert_eq!(asked.query("login"), Some(user_of("beeline")));
}

#[test]
fn config_errors_name_the_key() {
    let bad = "accounts:\n  corp:\n    driver: beeline\n    login: x\n    login_api: v3\nlines:\n  - {name: a, account: corp, ban: 12ab}\n";
    let err = esim_exporter::config::parse("t.yaml", bad, esim_exporter::drivers::REGISTRY).unwrap_err().to_string();
    assert!(err.contains("missing required key `password` (or `password_file`)"), "{err}");
    assert!(err.contains("`v3` is not one of auto, v1, v2"), "{err}");
    assert!(err.contains("a `beeline` line needs `msisdn`"), "{err}");
    assert!(err.contains("expected the billing account number (digits)"), "{err}");
}
