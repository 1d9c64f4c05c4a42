//! `t2` contract tests against the mock operator and `tests/fixtures/t2/`: rests summed by
//! `uom` exactly, negative balances, unlimited packages absent; `tele2` as an alias; the
//! refresh token rotated and stored, an expired access token (401 or `meta` ERROR) refreshed
//! once; a dead login waits for a person without another request; the password logs in when
//! no token is stored; T2's anti-bot page is `auth` pointing at the docs; the onboarding of
//! `esim-exporter login` (SMS code, e-mail security code) stores a 0600 token file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::reading::{Currency, Money, Reading};

use super::megafon::Script;
use super::{at, secret_of, token_file, user_of, Built, LogCapture, MockOperator};
use crate::mock_operator::t2::{PASSWORD, SECURITY_CODE, SMS_CODE, TOKEN_PATH};
use crate::support::shows_alone;

/// The reading of 79520000001 on the first poll (`balance.json`, `rests.json`).
pub fn main_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: 251.4, currency: Currency::RUB }),
        // 5120 MB of the tariff and "0,5" GB of a gift (rollover, roaming and unlimited left out).
        data_remaining: Some(ByteSize(5_905_580_032)),
        data_quota: Some(ByteSize(17_179_869_184)),
        voice_remaining: Some(Duration::from_secs(312 * 60)),
        sms_remaining: Some(45),
        quota_expiry: Some(at("2026-08-01T20:59:59Z")),
        plan: None,
    }
}

fn stored(name: &str) -> PathBuf {
    token_file(
        &format!("t2-contract-{name}-{}", std::process::id()),
        &format!(r#"{{"driver":"t2","login":"{}","refresh_token":"{}"}}"#, user_of("t2"), secret_of("t2")),
    )
}

fn config(mock: &MockOperator, driver: &str, file: &Path, extra: &str, lines: &str) -> String {
    format!(
        "global: {{poll_interval: 1h}}\naccounts:\n  t:\n    driver: {driver}\n    login: \"+{}\"\n    token_file: {}\n    base_url: {}\n{extra}lines:\n{lines}",
        user_of("t2"),
        file.display(),
        mock.base_url("t2"),
    )
}

const TWO_LINES: &str = "  - {name: a, account: t}\n  - {name: b, account: t, msisdn: \"+79520000002\"}\n";

fn one(mock: &MockOperator, file: &Path, extra: &str) -> Built {
    Built::new(&config(mock, "t2", file, extra, TWO_LINES))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn refresh_token_in(path: &Path) -> String {
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    saved["refresh_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn values_and_units_are_mapped_exactly_under_the_tele2_alias_too() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(&mock, "tele2", &stored("values"), "", TWO_LINES));
    assert_eq!(built.line("a").driver().name, "t2", "the alias resolves to t2");
    assert_eq!(built.reading("a").await, main_reading());
    // A linked number through the login's token: a negative balance keeps its sign, unlimited
    // data is absent, never 0.
    assert_eq!(
        built.reading("b").await,
        Reading {
            balance: Some(Money { amount: -35.5, currency: Currency::RUB }),
            voice_remaining: Some(Duration::from_secs(6000)),
            quota_expiry: Some(at("2026-08-14T20:59:59Z")),
            ..Reading::default()
        }
    );
    assert_eq!(built.reading("a").await.balance.map(|m| m.amount), Some(250.8));
    let requests = mock.requests("t2");
    let refresh = requests.iter().find(|r| r.path == TOKEN_PATH).unwrap();
    let form = String::from_utf8_lossy(&refresh.body).into_owned();
    assert!(form.contains("grant_type=refresh_token") && form.contains("client_id=digital-suite-web-app"), "{form}");
    let data: Vec<_> = requests.iter().filter(|r| r.path.starts_with("/api/subscribers/")).collect();
    assert_eq!(data[0].path, "/api/subscribers/79520000001/balance");
    assert_eq!(data[3].path, "/api/subscribers/79520000002/rests");
    assert!(data.iter().all(|r| r.bearer().is_some_and(|t| mock.issued_tokens().iter().any(|i| i == t))));
    let ids: std::collections::HashSet<_> = data.iter().filter_map(|r| r.header("x-request-id")).collect();
    assert_eq!(ids.len(), data.len(), "a fresh X-Request-Id per request");
}

#[tokio::test]
async fn the_refresh_token_rotates_is_stored_and_survives_a_restart() {
    let mock = MockOperator::start().await;
    let file = stored("rotate");
    let built = one(&mock, &file, "");
    built.reading("a").await;
    let rotated = refresh_token_in(&file);
    assert_ne!(rotated, secret_of("t2"));
    assert!(mock.issued_tokens().contains(&rotated));
    assert_eq!(mode(&file), 0o600);
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(saved.get("access_token").is_none(), "access tokens are not written down");
    assert!(saved["refresh_expires_at"].as_u64().is_some());
    // After a restart only the rotated token is valid, and it is the one used.
    mock.set_flag("t2", "secret_revoked", true);
    let restarted = one(&mock, &file, "");
    assert_eq!(
        restarted.reading("a").await,
        Reading { balance: Some(Money { amount: 250.8, currency: Currency::RUB }), ..main_reading() }
    );
    assert_ne!(refresh_token_in(&file), rotated, "rotated again");
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once_whether_401_or_meta_error() {
    for meta in [false, true] {
        let mock = MockOperator::start().await;
        mock.set_flag("t2", "meta_expiry", meta);
        let built = one(&mock, &stored(&format!("expired-{meta}")), "");
        built.reading("a").await;
        built.reading("a").await;
        assert_eq!(mock.count("t2", TOKEN_PATH), 1, "one token for two polls");
        mock.expire_tokens("t2");
        assert_eq!(built.reading("b").await.balance.map(|m| m.amount), Some(-35.5), "meta {meta}");
        assert_eq!(mock.count("t2", TOKEN_PATH), 2, "meta {meta}");
    }
}

/// ru.md §10: the live answer to an unauthenticated balance request, byte for byte. When it
/// persists after the one refresh, the poll fails as `auth`, never `bad_response`.
#[tokio::test]
async fn the_live_user_must_be_logged_in_body_is_auth() {
    const LIVE: &str = r#"{"meta":{"status":"ERROR","message":"User must be logged in."}}"#;
    for status in [200, 401] {
        let mock = MockOperator::start().await;
        let balance = "/api/subscribers/79520000001/balance";
        mock.faults("t2", balance, crate::mock_operator::Fault::Body(status, "application/json", LIVE.into()), 3);
        let built = one(&mock, &stored(&format!("logged-in-{status}")), "");
        let (result, _) = built.poll("a", Duration::from_secs(5)).await;
        let error = result.unwrap_err();
        assert_eq!(error.reason().as_str(), "auth", "HTTP {status}: {error}");
        assert_eq!(mock.count("t2", balance), 2, "HTTP {status}: one retry with a fresh token, no loop");
    }
}

#[tokio::test]
async fn the_token_is_renewed_shortly_before_it_expires() {
    let mock = MockOperator::start().await;
    mock.set_expires_in("t2", 2);
    let built = one(&mock, &stored("renew"), "");
    built.reading("a").await;
    tokio::time::sleep(Duration::from_millis(1900)).await;
    built.reading("a").await;
    assert_eq!(mock.count("t2", TOKEN_PATH), 2);
    assert_eq!(built.observed.codes().iter().filter(|c| *c == "401").count(), 0, "never refused");
}

#[tokio::test]
async fn a_dead_login_waits_for_a_person_and_sends_nothing_until_a_new_token() {
    let mock = MockOperator::start().await;
    mock.set_flag("t2", "secret_revoked", true);
    let file = stored("dead");
    let built = one(&mock, &file, "");
    for line in ["a", "b", "a"] {
        let (result, _) = built.poll(line, Duration::from_secs(5)).await;
        let error = result.unwrap_err();
        assert_eq!(error.reason().as_str(), "auth");
        assert!(error.to_string().contains("waiting for a person"), "{error}");
    }
    assert_eq!(mock.requests("t2").len(), 1, "one refused refresh, nothing after");
    assert!(built.logins.waiting()[0].why.contains("refused"));
    // `esim-exporter login` writes a new file: the next poll takes it.
    mock.set_flag("t2", "secret_revoked", false);
    std::fs::write(
        &file,
        format!(r#"{{"driver":"t2","login":"{}","refresh_token":"{}","saved_at":1}}"#, user_of("t2"), secret_of("t2")),
    )
    .unwrap();
    assert_eq!(built.reading("a").await, main_reading());
    assert!(!built.logins.is_waiting("t"));
}

#[tokio::test]
async fn a_password_logs_in_when_no_token_is_stored_or_the_stored_one_died() {
    let mock = MockOperator::start().await;
    let file = std::env::temp_dir().join(format!("esim-it-t2-password-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let built = one(&mock, &file, &format!("    password: \"{PASSWORD}\"\n"));
    assert_eq!(built.reading("a").await, main_reading());
    let password_grant = mock.requests("t2").into_iter().find(|r| r.path == TOKEN_PATH).unwrap();
    assert!(String::from_utf8_lossy(&password_grant.body).contains("password_type=password"));
    assert_eq!(mode(&file), 0o600, "the refresh token is kept for next time");
    // A dead refresh token with a password: logged in again, nobody needed.
    mock.set_flag("t2", "secret_revoked", true);
    let with_dead = one(&mock, &stored("dead-with-password"), &format!("    password: \"{PASSWORD}\"\n"));
    with_dead.reading("a").await;
    assert!(!with_dead.logins.is_waiting("t"));
    // A wrong password is `auth` without waiting for a person.
    let _ = std::fs::remove_file(&file);
    let wrong = one(&mock, &file, "    password: \"wrong\"\n");
    let (result, _) = wrong.poll("a", Duration::from_secs(5)).await;
    assert_eq!(result.unwrap_err().reason().as_str(), "auth");
    assert!(!wrong.logins.is_waiting("t"));
}

#[tokio::test]
async fn the_anti_bot_page_is_auth_and_points_to_the_docs() {
    let mock = MockOperator::start().await;
    mock.set_flag("t2", "antibot", true);
    let built = one(&mock, &stored("antibot"), "");
    let (result, _) = built.poll("a", Duration::from_secs(5)).await;
    let error = result.unwrap_err();
    assert_eq!(error.reason().as_str(), "auth");
    assert!(error.to_string().contains("anti-bot") && error.to_string().contains("DRIVERS.md"), "{error}");
    assert!(!built.logins.is_waiting("t"), "the stored login may be fine: the lock-out spaces the retries");
}

#[tokio::test]
async fn a_captcha_page_is_captcha_and_never_retried() {
    let mock = MockOperator::start().await;
    mock.fault("t2", "/api/subscribers/79520000001/balance", crate::mock_operator::Fault::Captcha);
    let built = one(&mock, &stored("captcha"), "");
    for _ in 0..3 {
        let (result, _) = built.poll("a", Duration::from_secs(5)).await;
        assert_eq!(result.unwrap_err().reason().as_str(), "captcha");
    }
    assert_eq!(mock.count("t2", "/api/subscribers/79520000001/balance"), 1, "one request, no loop");
    assert!(built.logins.waiting()[0].why.contains("captcha"));
}

#[tokio::test(flavor = "current_thread")]
async fn onboarding_with_sms_and_e_mail_codes_stores_a_0600_token_the_daemon_uses() {
    let mock = MockOperator::start().await;
    mock.set_flag("t2", "email_2fa", true);
    let file = std::env::temp_dir().join(format!("esim-it-t2-onboard-{}/t.json", std::process::id()));
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    let built = one(&mock, &file, "");
    let logs = LogCapture::start();
    let mut person = Script::new(&[SMS_CODE, SECURITY_CODE]);
    let stored_at = built.driver_of(&built.line("a")).onboard(&mut person).await.expect("onboarding");
    assert_eq!(stored_at, file);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(person.asked.len(), 2, "{:?}", person.asked);
    assert!(person.asked[1].contains("e-mail"));
    assert!(person.told[0].contains("+7952*****01"), "{:?}", person.told);
    assert_eq!(mock.count("t2", "/api/validation/number/79520000001"), 1);
    let daemon = one(&mock, &file, "");
    assert_eq!(daemon.reading("a").await, main_reading());
    let log = logs.text();
    for secret in mock.issued_tokens().iter().map(String::as_str).chain([SMS_CODE, SECURITY_CODE]) {
        assert!(!shows_alone(&log, secret), "`{secret}` in the log:\n{log}");
    }
    // The anti-bot page at the SMS step: `auth`, pointing at the docs.
    mock.set_flag("t2", "antibot", true);
    let error = built.driver_of(&built.line("a")).onboard(&mut Script::new(&[SMS_CODE])).await.unwrap_err();
    assert!(error.to_string().contains("anti-bot"), "{error}");
}
