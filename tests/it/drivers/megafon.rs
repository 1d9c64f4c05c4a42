//! `megafon` contract tests against the mock operator and `tests/fixtures/megafon/`: Russian
//! units mapped exactly ("5,2 ГБ"), negative balances, unlimited packages absent; the device
//! token login, the PIN fallback that binds again, the password bootstrap; a captcha, a lock
//! or a dead login stops the account until a person acts, without another request; the
//! onboarding of `esim-exporter login` stores a 0600 token file the driver then uses.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use esim_exporter::config::ByteSize;
use esim_exporter::drivers::onboarding::Person;
use esim_exporter::reading::{Currency, Money, Reading};

use super::{at, secret_of, token_file, user_of, Built, LogCapture, MockOperator};
use crate::mock_operator::megafon::{PASSWORD, PIN, SMS_CODE};
use crate::support::shows_alone;

const DEVICE: &str = "0f0e0d0c-0b0a-4909-8807-060504030201";

/// The reading of 9260000001 on the first poll (`balance.json`, `remainders.json`).
pub fn main_reading() -> Reading {
    Reading {
        balance: Some(Money { amount: 245.67, currency: Currency::RUB }),
        // "5,2 ГБ" plus 512 МБ of an option (its frozen copy, roaming, rollover, the negative
        // intercity minutes and the unlimited messengers left out).
        data_remaining: Some(ByteSize(6_120_328_397)),
        data_quota: Some(ByteSize(33_285_996_544)),
        voice_remaining: Some(Duration::from_secs(420 * 60)),
        sms_remaining: Some(100),
        quota_expiry: Some(at("2026-07-20T20:59:59Z")),
        plan: None,
    }
}

/// A token file as `esim-exporter login` leaves it, bound with the mock's device token.
fn stored(name: &str, login: &str, pin: Option<&str>) -> PathBuf {
    let pin = pin.map(|p| format!(r#","pin":"{p}""#)).unwrap_or_default();
    token_file(
        &format!("megafon-contract-{name}-{}", std::process::id()),
        &format!(
            r#"{{"driver":"megafon","login":"{login}","device_id":"{DEVICE}","token":"{}"{pin}}}"#,
            secret_of("megafon")
        ),
    )
}

fn account(name: &str, login: &str, file: &Path, extra: &str, mock: &MockOperator) -> String {
    format!(
        "  {name}:\n    driver: megafon\n    login: \"+7{login}\"\n    token_file: {}\n    base_url: {}\n{extra}",
        file.display(),
        mock.base_url("megafon")
    )
}

fn config(accounts: &[String], lines: &str) -> String {
    format!("global: {{poll_interval: 1h}}\naccounts:\n{}lines:\n{lines}", accounts.concat())
}

fn one(mock: &MockOperator, file: &Path, extra: &str) -> Built {
    let login = user_of("megafon");
    Built::new(&config(
        &[account("mf", login, file, extra, mock)],
        &format!("  - {{name: a, account: mf, msisdn: \"+7{login}\"}}\n"),
    ))
}

/// A person who types the given answers.
pub struct Script {
    pub answers: VecDeque<String>,
    pub told: Vec<String>,
    pub asked: Vec<String>,
}

impl Script {
    pub fn new(answers: &[&str]) -> Script {
        Script { answers: answers.iter().map(|a| a.to_string()).collect(), told: Vec::new(), asked: Vec::new() }
    }
}

impl Person for Script {
    fn tell(&mut self, text: &str) {
        self.told.push(text.to_string());
    }

    fn ask(&mut self, prompt: &str) -> Option<String> {
        self.asked.push(prompt.to_string());
        self.answers.pop_front()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn values_and_units_are_mapped_exactly() {
    let mock = MockOperator::start().await;
    let (first, second) = ("9260000001", "9260000002");
    let built = Built::new(&config(
        &[
            account("mf1", first, &stored("values-1", first, None), "", &mock),
            account("mf2", second, &stored("values-2", second, None), "", &mock),
        ],
        &format!("  - {{name: a, account: mf1, msisdn: \"+7{first}\"}}\n  - {{name: b, account: mf2}}\n"),
    ));
    assert_eq!(built.reading("a").await, main_reading());
    // A negative balance keeps its sign; unlimited data and minutes are absent, never 0.
    assert_eq!(
        built.reading("b").await,
        Reading {
            balance: Some(Money { amount: -35.2, currency: Currency::RUB }),
            sms_remaining: Some(50),
            ..Reading::default()
        }
    );
    // The balance evolves between polls.
    assert_eq!(built.reading("a").await.balance.map(|m| m.amount), Some(244.17));
    // The device token logs in, in MegaFon's shapes: ten digits, the stored device id.
    let login = mock.requests("megafon").into_iter().find(|r| r.path == "/mlk/auth/biometry").unwrap();
    let body: serde_json::Value = serde_json::from_slice(&login.body).unwrap();
    assert_eq!(body["msisdn"], first);
    assert_eq!(body["token"], secret_of("megafon"));
    assert_eq!(body["captcha"], serde_json::Value::Null);
    assert_eq!(login.header("x-mlk-device-id"), Some(DEVICE));
    let data = mock.requests("megafon").into_iter().find(|r| r.path == "/mlk/api/main/balance").unwrap();
    let session = data.header("x-cabinet-authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap();
    assert!(mock.issued_tokens().iter().any(|t| t == session));
    assert_eq!(data.header("x-mlk-device-id"), Some(DEVICE));
}

#[tokio::test]
async fn the_session_is_reused_and_an_expired_one_is_replaced_once() {
    let mock = MockOperator::start().await;
    let built = one(&mock, &stored("session", user_of("megafon"), None), "");
    built.reading("a").await;
    built.reading("a").await;
    assert_eq!(mock.count("megafon", "/mlk/auth/biometry"), 1, "one login for two polls");
    mock.expire_tokens("megafon");
    built.reading("a").await;
    assert_eq!(mock.count("megafon", "/mlk/auth/biometry"), 2);
    assert_eq!(built.observed.codes().iter().filter(|c| *c == "401").count(), 1);
}

#[tokio::test]
async fn a_refused_device_token_falls_back_to_the_pin_and_binds_again() {
    let mock = MockOperator::start().await;
    mock.set_flag("megafon", "secret_revoked", true);
    let file = stored("pin", user_of("megafon"), Some(PIN));
    let built = one(&mock, &file, "");
    assert_eq!(built.reading("a").await, main_reading());
    let paths: Vec<String> = mock.requests("megafon").into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/mlk/auth/biometry",
            "/mlk/api/auth/pin",
            "/mlk/api/profile/pin",
            "/mlk/api/profile/biometry",
            "/mlk/api/main/balance",
            "/mlk/api/options/remainders"
        ]
    );
    // The new device token is stored (0600, same device and PIN) and works after a restart.
    let saved = json(&file);
    assert_ne!(saved["token"], secret_of("megafon"));
    assert_eq!((saved["pin"].as_str(), saved["device_id"].as_str()), (Some(PIN), Some(DEVICE)));
    assert_eq!(mode(&file), 0o600);
    let restarted = one(&mock, &file, "");
    restarted.reading("a").await;
    assert_eq!(mock.count("megafon", "/mlk/api/auth/pin"), 1, "the new device token logs in by itself");
    assert!(!built.logins.is_waiting("mf") && !restarted.logins.is_waiting("mf"));
}

#[tokio::test]
async fn a_dead_login_waits_for_a_person_and_sends_nothing_until_a_new_token() {
    let mock = MockOperator::start().await;
    mock.set_flag("megafon", "secret_revoked", true);
    mock.set_flag("megafon", "pin_refused", true);
    let file = stored("dead", user_of("megafon"), Some(PIN));
    let built = one(&mock, &file, "");
    for _ in 0..4 {
        let (result, notes) = built.poll("a", Duration::from_secs(5)).await;
        let error = result.unwrap_err();
        assert_eq!(error.reason().as_str(), "auth", "{error}");
        assert!(error.to_string().contains("waiting for a person"), "{error}");
        assert!(!notes.is_empty());
    }
    assert_eq!(mock.count("megafon", "/mlk/auth/biometry"), 1, "never retried");
    assert_eq!(mock.count("megafon", "/mlk/api/auth/pin"), 1, "never retried");
    let waiting = built.logins.waiting();
    assert_eq!(waiting.len(), 1);
    assert_eq!((waiting[0].account.as_str(), waiting[0].driver), ("mf", "megafon"));
    assert!(waiting[0].why.contains("refused"), "{waiting:?}");
    // A person logs in again (a new file): the next poll uses it.
    mock.set_flag("megafon", "secret_revoked", false);
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace(PIN, "1357")).unwrap();
    assert_eq!(built.reading("a").await, main_reading());
    assert!(!built.logins.is_waiting("mf"));
}

#[tokio::test]
async fn a_captcha_demand_is_captcha_and_never_retried() {
    let mock = MockOperator::start().await;
    mock.set_flag("megafon", "captcha", true);
    let built = one(&mock, &stored("captcha", user_of("megafon"), Some(PIN)), "");
    for _ in 0..3 {
        let (result, _) = built.poll("a", Duration::from_secs(5)).await;
        assert_eq!(result.unwrap_err().reason().as_str(), "captcha");
    }
    assert_eq!(mock.requests("megafon").len(), 1, "one request, no loop");
    assert!(built.logins.waiting()[0].why.contains("captcha"));
}

#[tokio::test]
async fn a_blocked_account_is_auth_and_never_retried() {
    let mock = MockOperator::start().await;
    mock.set_flag("megafon", "blocked", true);
    let built = one(&mock, &stored("blocked", user_of("megafon"), Some(PIN)), "");
    for _ in 0..3 {
        let (result, _) = built.poll("a", Duration::from_secs(5)).await;
        let error = result.unwrap_err();
        assert_eq!(error.reason().as_str(), "auth");
        assert!(error.to_string().contains("заблокирован"), "{error}");
    }
    assert_eq!(mock.requests("megafon").len(), 1);
    assert!(built.logins.is_waiting("mf"));
}

#[tokio::test]
async fn a_password_binds_the_device_when_no_login_is_stored() {
    let mock = MockOperator::start().await;
    let file = std::env::temp_dir().join(format!("esim-it-megafon-password-{}/t.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let built = one(&mock, &file, &format!("    password: \"{PASSWORD}\"\n"));
    assert_eq!(built.reading("a").await, main_reading());
    let saved = json(&file);
    assert_eq!(saved["login"], user_of("megafon"));
    assert!(saved["pin"].as_str().is_some_and(|p| p.len() == 4) && saved["token"].is_string());
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mock.count("megafon", "/mlk/login"), 1);
    // A wrong password is `auth` without waiting for a person: fixing the config fixes it.
    let _ = std::fs::remove_file(&file);
    let wrong = one(&MockOperator::start().await, &file, "    password: \"wrong-password\"\n");
    let (result, _) = wrong.poll("a", Duration::from_secs(5)).await;
    assert_eq!(result.unwrap_err().reason().as_str(), "auth");
    assert!(!wrong.logins.is_waiting("mf"));
}

#[tokio::test]
async fn a_line_of_another_number_is_a_config_error() {
    let mock = MockOperator::start().await;
    let built = Built::new(&config(
        &[account("mf", user_of("megafon"), &stored("other", user_of("megafon"), None), "", &mock)],
        "  - {name: a, account: mf, msisdn: \"+79269999999\"}\n",
    ));
    let (result, _) = built.poll("a", Duration::from_secs(5)).await;
    assert_eq!(result.unwrap_err().reason().as_str(), "config");
    assert!(mock.requests("megafon").is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn onboarding_stores_a_0600_token_that_polls_then_use_and_logs_no_secret() {
    let mock = MockOperator::start().await;
    let file = std::env::temp_dir().join(format!("esim-it-megafon-onboard-{}/tokens/mf.json", std::process::id()));
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    let built = one(&mock, &file, "");
    let logs = LogCapture::start();
    let mut person = Script::new(&[SMS_CODE]);
    let driver = built.driver_of(&built.line("a"));
    let stored_at = driver.onboard(&mut person).await.expect("onboarding");
    assert_eq!(stored_at, file);
    assert_eq!(mode(&file), 0o600);
    assert!(person.told[0].contains("+7926*****01"), "the number is masked: {:?}", person.told);
    assert_eq!(person.asked, ["SMS code from MegaFon: "]);
    let otp = mock.requests("megafon").into_iter().find(|r| r.path == "/mlk/api/auth/otp/submit").unwrap();
    assert_eq!(String::from_utf8_lossy(&otp.body), format!("login={}&otp={SMS_CODE}", user_of("megafon")));
    // The daemon, built afresh, logs in with what was stored.
    let daemon = one(&mock, &file, "");
    assert_eq!(daemon.reading("a").await, main_reading());
    let saved = json(&file);
    let log = logs.text();
    for secret in [saved["token"].as_str().unwrap(), saved["pin"].as_str().unwrap(), SMS_CODE] {
        assert!(!shows_alone(&log, secret) && !shows_alone(&person.told.concat(), secret), "`{secret}` leaked:\n{log}");
    }
    // A wrong code is `auth` and stores nothing.
    let _ = std::fs::remove_file(&file);
    let result = driver.onboard(&mut Script::new(&["000000"])).await;
    assert_eq!(result.unwrap_err().reason().as_str(), "auth");
    assert!(!file.exists());
    // No home for the token: a clear config error before anything is sent.
    let homeless = Built::new(&format!(
        "accounts:\n  mf:\n    driver: megafon\n    login: \"+7{}\"\n    base_url: {}\nlines:\n  - {{name: a, account: mf}}\n",
        user_of("megafon"),
        mock.base_url("megafon")
    ));
    let sent = mock.requests("megafon").len();
    let error = homeless.driver_of(&homeless.line("a")).onboard(&mut Script::new(&[SMS_CODE])).await.unwrap_err();
    assert!(error.to_string().contains("token_file") && error.to_string().contains("--storage.path"), "{error}");
    assert_eq!(mock.requests("megafon").len(), sent);
}
