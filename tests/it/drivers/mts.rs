//! `mts` contract tests against the mock operator and the fixtures in `tests/fixtures/mts/`:
//! values and units mapped exactly, the token flow, balance per personal account shared by
//! its lines, MTS's own error codes, and discovery to the last page.

use std::sync::Arc;
use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::drivers::session::SessionStore;
use esim_exporter::reading::{Currency, Money, Reading};

use super::{at, secret_of, user_of, Built, Fault, MockOperator};

/// The reading of +79160000001 on the first poll (`balance.json`, `counters.json`).
pub fn main_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: 89.4, currency: Currency::RUB }),
        // 5.2 GiB of a 30 GiB package; rollover, roaming and unlimited packages left out.
        data_remaining: Some(ByteSize(5_583_457_485)),
        data_quota: Some(ByteSize(32_212_254_720)),
        voice_remaining: Some(Duration::from_secs(60_000)),
        sms_remaining: Some(421),
        quota_expiry: Some(at("2026-07-20T20:59:59Z")),
        plan: None,
    }
}

fn config(mock: &MockOperator, extra_account: &str, lines: &str) -> String {
    format!(
        "global: {{poll_interval: 10m}}\naccounts:\n  corp:\n    driver: mts\n    client_id: \"{}\"\n    client_secret: \"{}\"\n    base_url: {}\n{extra_account}lines:\n{lines}",
        user_of("mts"),
        secret_of("mts"),
        mock.base_url("mts"),
    )
}

const TWO_LINES: &str =
    "  - {name: a, account: corp, msisdn: \"+79160000001\"}\n  - {name: b, account: corp, msisdn: \"+79160000002\"}\n";

#[tokio::test]
async fn values_and_units_are_mapped_exactly() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", TWO_LINES));
    assert_eq!(built.reading("a").await, main_reading());
    // A negative balance keeps its sign; an unlimited package leaves data absent (never 0);
    // a package counted in minutes becomes seconds.
    let b = built.reading("b").await;
    assert_eq!(
        b,
        Reading {
            balance: Some(Money { amount: -990.0, currency: Currency::RUB }),
            voice_remaining: Some(Duration::from_secs(125 * 60)),
            quota_expiry: Some(at("2026-07-31T20:59:59Z")),
            ..Reading::default()
        }
    );
    // The balance evolves between polls; the request names the number the MTS way.
    assert_eq!(built.reading("a").await.balance.map(|m| m.amount), Some(88.8));
    let balance = mock.requests("mts").into_iter().find(|r| r.path == "/b2b/v1/Bills/CheckBalanceByMSISDN").unwrap();
    assert_eq!(balance.query("characteristic.name"), Some("MSISDN"));
    assert_eq!(balance.query("characteristic.value"), Some("79160000001"));
    let counters = mock.requests("mts").into_iter().find(|r| r.path == "/b2b/v1/Bills/ValidityInfo").unwrap();
    assert_eq!(counters.query("customerAccount.accountNo"), Some("79160000001"));
    assert_eq!(counters.query("customerAccount.productRelationship.product.productLine.name"), Some("Counters"));
}

#[tokio::test]
async fn the_token_comes_from_client_credentials_and_is_reused() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", TWO_LINES));
    built.reading("a").await;
    built.reading("b").await;
    let tokens: Vec<_> = mock.requests("mts").into_iter().filter(|r| r.path == "/token").collect();
    assert_eq!(tokens.len(), 1, "one token for both polls");
    assert_eq!(tokens[0].method, "POST");
    assert_eq!(String::from_utf8_lossy(&tokens[0].body), "grant_type=client_credentials");
    assert_eq!(tokens[0].header("content-type"), Some("application/x-www-form-urlencoded"));
    let data = mock.requests("mts").into_iter().find(|r| r.path != "/token").unwrap();
    assert!(data.bearer().is_some_and(|t| mock.issued_tokens().iter().any(|i| i == t)));
}

#[tokio::test]
async fn the_token_is_renewed_shortly_before_it_expires() {
    let mock = MockOperator::start().await;
    mock.set_expires_in("mts", 2);
    let built = Built::new(&config(&mock, "", TWO_LINES));
    built.reading("a").await;
    built.reading("a").await;
    assert_eq!(mock.count("mts", "/token"), 1);
    // expires_in 2 s: renewed after 1.8 s (a tenth early), before the operator refuses it.
    tokio::time::sleep(Duration::from_millis(1900)).await;
    built.reading("a").await;
    assert_eq!(mock.count("mts", "/token"), 2);
    assert_eq!(built.observed.codes().iter().filter(|c| *c == "401").count(), 0, "never refused");
}

#[tokio::test]
async fn concurrent_polls_share_one_token_request() {
    let mock = MockOperator::start().await;
    let lines: String =
        (1..=12).map(|i| format!("  - {{name: l{i}, account: corp, msisdn: \"+7916000{i:04}\"}}\n")).collect();
    let built = Arc::new(Built::new(&config(&mock, "", &lines)));
    let mut tasks = Vec::new();
    for i in 1..=12 {
        let built = built.clone();
        tasks.push(tokio::spawn(async move { built.poll(&format!("l{i}"), Duration::from_secs(10)).await.0 }));
    }
    for t in tasks {
        t.await.unwrap().expect("poll");
    }
    assert_eq!(mock.count("mts", "/token"), 1, "no thundering herd");
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_then_the_poll_succeeds() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", TWO_LINES));
    built.reading("a").await;
    mock.expire_tokens("mts");
    assert_eq!(built.reading("b").await.balance.map(|m| m.amount), Some(-990.0));
    assert_eq!(mock.count("mts", "/token"), 2);
    let codes = built.observed.codes();
    assert_eq!(codes.iter().filter(|c| *c == "401").count(), 1, "{codes:?}");
}

#[tokio::test]
async fn a_number_not_visible_to_the_api_user_is_a_line_problem_not_an_account_lockout() {
    let mock = MockOperator::start().await;
    mock.fault("mts", "/b2b/v1/Bills/CheckBalanceByMSISDN", Fault::Fixture(401, "error-not-visible"));
    let built = Built::new(&config(&mock, "", TWO_LINES));
    let (result, _) = built.poll("a", Duration::from_secs(10)).await;
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "config", "{err}");
    assert!(err.to_string().contains("errorCode 1014"), "{err}");
    assert_eq!(mock.count("mts", "/token"), 1, "no token refresh for 1014");
}

#[tokio::test]
async fn mts_error_codes_map_to_reasons() {
    let cases = [
        (
            Fault::Body(500, "application/json", r#"{"errorCode":"1012","errorMessage":"Throttling"}"#.into()),
            "rate_limited",
        ),
        (Fault::Body(421, "application/json", r#"{"errorCode":"3003","errorMessage":"Foris"}"#.into()), "unavailable"),
        (Fault::Body(422, "application/json", r#"{"errorCode":"2005","errorMessage":"binding"}"#.into()), "config"),
        (Fault::Body(403, "application/json", r#"{"errorCode":"1010","errorMessage":"package"}"#.into()), "auth"),
        (Fault::Body(500, "text/plain", "EJB Exception".into()), "unavailable"),
        (Fault::Body(400, "application/json", r#"{"code":"IL.ErrorGetSubscriptionFee"}"#.into()), "bad_response"),
        // ru.md §10: nested and numeric codes; 1017 (499) is MTS's own timeout.
        (Fault::Fixture(499, "error-cancelled"), "timeout"),
        (Fault::Body(401, "application/json", r#"{"errorCode":1014,"errorMessage":"unauthorized"}"#.into()), "config"),
        (Fault::Body(403, "application/json", r#"{"error":{"errorCode":"1010"}}"#.into()), "auth"),
        (
            Fault::Body(
                421,
                "application/json",
                r#"{"errorMessage":"Сервис Foris временно недоступен","sourceID":"PublicApi","errorCode":"3003"}"#
                    .into(),
            ),
            "unavailable",
        ),
    ];
    for (fault, reason) in cases {
        let mock = MockOperator::start().await;
        mock.fault("mts", "/b2b/v1/Bills/ValidityInfo", fault.clone());
        let built = Built::new(&config(&mock, "", TWO_LINES));
        let (result, _) = built.poll("a", Duration::from_secs(10)).await;
        assert_eq!(result.as_ref().err().map(|e| e.reason().as_str()), Some(reason), "{fault:?}: {result:?}");
    }
}

#[tokio::test]
async fn a_429_without_retry_after_waits_the_20_s_mts_asks_for() {
    let mock = MockOperator::start().await;
    mock.fault(
        "mts",
        "/b2b/v1/Bills/ValidityInfo",
        Fault::Body(429, "application/json", r#"{"errorCode":"1012"}"#.into()),
    );
    let built = Built::new(&config(&mock, "", TWO_LINES));
    let (result, _) = built.poll("a", Duration::from_secs(10)).await;
    assert_eq!(
        result.unwrap_err(),
        esim_exporter::error::PollError::RateLimited { retry_after: Some(Duration::from_secs(20)) }
    );
}

#[tokio::test]
async fn lines_of_one_personal_account_share_its_balance() {
    let mock = MockOperator::start().await;
    let lines = "  - {name: a, account: corp, msisdn: \"+79160000001\", account_no: \"277000000001\"}\n  - {name: b, account: corp, msisdn: \"+79160000002\", account_no: \"277000000001\"}\n  - {name: c, account: corp, account_no: \"277000000009\"}\n";
    let built = Arc::new(Built::new(&config(&mock, "", lines)));
    let (a, b) = tokio::join!(built.reading("a"), built.reading("b"));
    let ls = Some(Money { amount: 1520.75, currency: Currency::RUB });
    assert_eq!((a.balance, b.balance), (ls, ls));
    assert_eq!(mock.count("mts", "/b2b/v1/Bills/CheckBalanceByAccount"), 1, "deduplicated by ЛС");
    assert_eq!(mock.count("mts", "/b2b/v1/Bills/CheckBalanceByMSISDN"), 0);
    // Counters stay per number.
    assert_eq!(a.voice_remaining, Some(Duration::from_secs(60_000)));
    assert_eq!(b.voice_remaining, Some(Duration::from_secs(7_500)));
    // A line with only a personal account asks counters by it.
    built.reading("c").await;
    let asked: Vec<_> = mock
        .requests("mts")
        .into_iter()
        .filter(|r| r.path == "/b2b/v1/Bills/ValidityInfo")
        .filter_map(|r| r.query("customerAccount.accountNo").map(str::to_string))
        .collect();
    assert_eq!(asked, vec!["79160000001", "79160000002", "277000000009"]);
}

#[tokio::test]
async fn counters_by_account_no_asks_validity_info_with_the_personal_account() {
    let mock = MockOperator::start().await;
    let lines = "  - {name: a, account: corp, msisdn: \"+79160000001\", account_no: \"277000000001\"}\n";
    let built = Built::new(&config(&mock, "    counters_by: account_no\n", lines));
    built.reading("a").await;
    let counters = mock.requests("mts").into_iter().find(|r| r.path == "/b2b/v1/Bills/ValidityInfo").unwrap();
    assert_eq!(counters.query("customerAccount.accountNo"), Some("277000000001"));
}

#[tokio::test]
async fn discovery_follows_the_hierarchy_to_the_last_page() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "", TWO_LINES));
    let lines = built.discover(Duration::from_secs(10)).await.unwrap();
    let ids: Vec<&str> = lines.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["79160000001", "79160000002", "79160000003", "79160000004", "79160000005", "79160000006"]);
    assert_eq!(lines[0].msisdn.as_deref(), Some("+79160000001"));
    assert_eq!(lines[0].iccid.as_deref(), Some("89701010000000000011"));
    assert_eq!(lines[4].labels, vec![("account_no".to_string(), "277000000003".to_string())]);
    let pages: Vec<_> = mock
        .requests("mts")
        .into_iter()
        .filter(|r| r.path == "/b2b/v1/Service/HierarchyStructure")
        .map(|r| (r.query("pageNum").unwrap().to_string(), r.query("pageSize").unwrap().to_string()))
        .collect();
    assert_eq!(pages, [("1", "1000"), ("2", "1000"), ("3", "1000")].map(|(a, b)| (a.to_string(), b.to_string())));
}

#[tokio::test]
async fn discovery_of_a_large_contract_and_polling_what_it_found() {
    let mock = MockOperator::start().await;
    mock.set_lines("mts", 2_500);
    let built = Built::new(&config(&mock, "", TWO_LINES));
    let lines = built.discover(Duration::from_secs(30)).await.unwrap();
    assert_eq!(lines.len(), 2_500);
    assert_eq!(mock.count("mts", "/b2b/v1/Service/HierarchyStructure"), 3);
    assert_eq!(lines[2_499].labels, vec![("account_no".to_string(), "277000000250".to_string())]);
    // Every number of the fleet answers, each with its own balance; a stranger is not visible.
    let fleet = "  - {name: f1, account: corp, msisdn: \"+79160000011\"}\n  - {name: f2, account: corp, msisdn: \"+79160002500\"}\n  - {name: stranger, account: corp, msisdn: \"+79169999999\"}\n";
    let built = Built::new(&config(&mock, "", fleet));
    let (f1, f2) = (built.reading("f1").await, built.reading("f2").await);
    assert_ne!(f1.balance, f2.balance);
    assert_eq!(f1.data_remaining, main_reading().data_remaining);
    let (stranger, _) = built.poll("stranger", Duration::from_secs(10)).await;
    assert_eq!(stranger.unwrap_err().reason().as_str(), "config");
}

#[tokio::test]
async fn a_reload_with_the_same_credentials_keeps_the_token_and_new_credentials_log_in_again() {
    let mock = MockOperator::start().await;
    let sessions = Arc::new(SessionStore::default());
    let first = Built::with_sessions(&config(&mock, "", TWO_LINES), sessions.clone());
    first.reading("a").await;
    // The old driver still runs while the new plan is built (as in App::apply).
    let second = Built::with_sessions(&config(&mock, "", TWO_LINES), sessions.clone());
    drop(first);
    second.reading("a").await;
    assert_eq!(mock.count("mts", "/token"), 1, "the session survived the reload");
    let changed = config(&mock, "", TWO_LINES).replace(secret_of("mts"), "another-secret");
    let third = Built::with_sessions(&changed, sessions);
    let (result, _) = third.poll("a", Duration::from_secs(10)).await;
    assert_eq!(result.unwrap_err().reason().as_str(), "auth", "new credentials, new session");
    assert_eq!(mock.count("mts", "/token"), 2);
}

#[test]
fn config_errors_name_the_key() {
    let bad = "accounts:\n  corp:\n    driver: mts\n    client_id: x\n    base_url: ftp://nope\n    counters_by: imsi\nlines:\n  - {name: a, account: corp}\n";
    let err = esim_exporter::config::parse("t.yaml", bad, esim_exporter::drivers::REGISTRY).unwrap_err().to_string();
    assert!(err.contains("missing required key `client_secret` (or `client_secret_file`)"), "{err}");
    assert!(err.contains("accounts.corp.base_url: `ftp://nope`: the scheme must be http or https"), "{err}");
    assert!(err.contains("`imsi` is not one of msisdn, account_no"), "{err}");
    assert!(err.contains("an `mts` line needs `msisdn` or `account_no`"), "{err}");
}

#[tokio::test]
async fn proxy_url_carries_every_request_with_its_credentials_out_of_the_url() {
    // The mock doubles as a forward proxy: it answers absolute-form requests by their path.
    let mock = MockOperator::start().await;
    let proxy = format!("http://corp%5Cuser:pr%40xy-pass@{}", mock.addr);
    let yaml = config(&mock, &format!("    proxy_url: \"{proxy}\"\n"), TWO_LINES)
        .replace(&mock.base_url("mts"), "http://api.mts.invalid:8080/mts");
    let built = Built::new(&yaml);
    assert_eq!(built.reading("a").await, main_reading());
    let requests = mock.requests("mts");
    assert_eq!(requests.len(), 3, "token, balance and counters all went through the proxy");
    let expected = format!("Basic {}", crate::mock_operator::base64(b"corp\\user:pr@xy-pass"));
    assert!(requests.iter().all(|r| r.header("proxy-authorization") == Some(expected.as_str())));
}
