//! The conformance suite: every HTTP driver through the same scenarios against the mock
//! operator — happy path, refused credentials and a rejected token → `auth`, 429 with
//! Retry-After → `rate_limited` with that delay, a stall → `timeout` within the deadline,
//! malformed, HTML, wrong-typed and incomplete bodies → `bad_response`, an oversized body →
//! `bad_response` without reading it all, 5xx and broken connections → `unavailable`, a
//! captcha page → `captcha`, token expiry → one refresh then success — while a secret fed
//! through every scenario never shows in errors, notes or debug logs.
//!
//! A new driver gets all of this with one [`Subject`] in [`SUBJECTS`], its mock module and
//! its fixtures (`wrong-types.json`, `missing-fields.json` in its folder).

use std::time::{Duration, Instant, SystemTime};

use esim_exporter::error::PollError;
use esim_exporter::reading::Reading;

use super::{at, secret_of, user_of, Built, Fault, LogCapture, MockOperator};

/// One driver as the suite drives it.
pub struct Subject {
    pub driver: &'static str,
    /// A config with one account (`subject`) and one line (`subject-line`); `base_url` and the
    /// secret are filled in.
    pub config: fn(base_url: &str, secret: &str) -> String,
    /// A path every poll requests after logging in (faults go there).
    pub data_path: &'static str,
    /// The login or token path.
    pub auth_path: &'static str,
    /// The reading of the happy path.
    pub expected: fn() -> Reading,
    /// Text that must never appear in errors, notes or logs besides secret and tokens (the
    /// line's full number, in the forms the operator uses).
    pub private: &'static [&'static str],
    /// What a 404 on the data path means for this operator (`bad_response` unless the
    /// operator documents a meaning: a SIM not in the account is `config`, an absent quota `ok`).
    pub not_found: &'static str,
    /// The driver logs in for a token (a rejected one is replaced once); false for drivers
    /// that send their credentials with every request (Hologram's API key).
    pub token: bool,
    /// The wait a 429 without Retry-After means for this operator (MTS documents 20 s,
    /// ru.md §10); `None` when the operator says nothing and the scheduler's backoff decides.
    pub bare_429_wait: Option<Duration>,
    /// What an empty 200 on the data path means (`bad_response` unless the operator documents
    /// a meaning: 1NCE's "SIM not in this account" is `config`, iot.md §9).
    pub empty_200: &'static str,
}

pub const SUBJECTS: &[Subject] = &[
    Subject {
        driver: "beeline",
        config: |base, secret| {
            format!(
                "accounts:\n  subject:\n    driver: beeline\n    login: \"{}\"\n    password: \"{secret}\"\n    base_url: {base}\nlines:\n  - {{name: subject-line, account: subject, msisdn: \"+79060000001\"}}\n",
                user_of("beeline")
            )
        },
        data_path: "/api/1.0/info/prepaidBalance",
        auth_path: "/api/2.0/auth/auth",
        expected: super::beeline::prepaid_reading,
        private: &["79060000001", "9060000001"],
        not_found: "bad_response",
        token: true,
        bare_429_wait: None,
        empty_200: "bad_response",
    },
    Subject {
        driver: "mts",
        config: |base, secret| {
            format!(
                "accounts:\n  subject:\n    driver: mts\n    client_id: \"{}\"\n    client_secret: \"{secret}\"\n    base_url: {base}\nlines:\n  - {{name: subject-line, account: subject, msisdn: \"+79160000001\"}}\n",
                user_of("mts")
            )
        },
        data_path: "/b2b/v1/Bills/CheckBalanceByMSISDN",
        auth_path: "/token",
        expected: super::mts::main_reading,
        private: &["79160000001"],
        not_found: "bad_response",
        token: true,
        bare_429_wait: Some(Duration::from_secs(20)),
        empty_200: "bad_response",
    },
    Subject {
        driver: "1nce",
        config: |base, secret| {
            format!(
                "accounts:\n  subject:\n    driver: 1nce\n    client_id: \"{}\"\n    client_secret: \"{secret}\"\n    base_url: {base}\nlines:\n  - {{name: subject-line, account: subject, iccid: \"8988228066600000001\"}}\n",
                user_of("1nce")
            )
        },
        data_path: "/v1/sims/8988228066600000001/quota/data",
        auth_path: "/oauth/token",
        expected: super::onence::main_reading,
        private: &[],
        not_found: "config",
        token: true,
        bare_429_wait: None,
        empty_200: "config",
    },
    Subject {
        driver: "emnify",
        config: |base, secret| {
            format!(
                "accounts:\n  subject:\n    driver: emnify\n    application_token: \"{secret}\"\n    base_url: {base}\nlines:\n  - {{name: subject-line, account: subject, endpoint_id: 11379224}}\n"
            )
        },
        data_path: "/api/v1/endpoint/11379224/quota/data",
        auth_path: "/api/v1/authenticate",
        expected: super::emnify::main_reading,
        private: &[],
        not_found: "ok",
        token: true,
        bare_429_wait: None,
        empty_200: "bad_response",
    },
    Subject {
        driver: "airalo",
        config: |base, secret| {
            format!(
                "accounts:\n  subject:\n    driver: airalo\n    client_id: \"{}\"\n    client_secret: \"{secret}\"\n    base_url: {base}\nlines:\n  - {{name: subject-line, account: subject, iccid: \"8944465400000000001\"}}\n",
                user_of("airalo")
            )
        },
        data_path: "/sims/8944465400000000001/usage",
        auth_path: "/token",
        expected: super::airalo::main_reading,
        private: &[],
        not_found: "config",
        token: true,
        bare_429_wait: None,
        empty_200: "bad_response",
    },
    Subject {
        driver: "hologram",
        config: |base, secret| {
            format!(
                "accounts:\n  subject:\n    driver: hologram\n    api_key: \"{secret}\"\n    orgid: 98765\n    base_url: {base}\nlines:\n  - {{name: subject-line, account: subject, iccid: \"89123400001234567890\"}}\n"
            )
        },
        data_path: "/devices",
        auth_path: "/devices",
        expected: super::hologram::main_reading,
        private: &[],
        not_found: "bad_response",
        token: false,
        bare_429_wait: None,
        empty_200: "bad_response",
    },
    Subject {
        driver: "http_json",
        config: |base, secret| {
            super::http_json::config(
                base,
                secret,
                "  - {name: subject-line, account: subject, iccid: \"8935711001000000001\"}\n",
            )
            .replace("\n  tiny:\n", "\n  subject:\n")
        },
        data_path: "/api/v2/lines/8935711001000000001",
        auth_path: "/oauth/token",
        expected: super::http_json::main_reading,
        private: &[],
        not_found: "config",
        token: true,
        bare_429_wait: None,
        empty_200: "bad_response",
    },
    Subject {
        driver: "megafon",
        config: |base, secret| {
            // The "secret" is the device token a person's `esim-exporter login` stored (no PIN
            // here, so a refused token needs a person at once).
            let login = user_of("megafon");
            let file = super::token_file(
                &format!("megafon-{base}-{secret}"),
                &format!(
                    r#"{{"driver":"megafon","login":"{login}","device_id":"0f0e0d0c-0b0a-4909-8807-060504030201","token":"{secret}"}}"#
                ),
            );
            format!(
                "accounts:\n  subject:\n    driver: megafon\n    login: \"+7{login}\"\n    token_file: {}\n    base_url: {base}\nlines:\n  - {{name: subject-line, account: subject, msisdn: \"+7{login}\"}}\n",
                file.display()
            )
        },
        data_path: "/mlk/api/main/balance",
        auth_path: "/mlk/auth/biometry",
        expected: super::megafon::main_reading,
        private: &["79260000001", "9260000001"],
        not_found: "bad_response",
        token: true,
        bare_429_wait: None,
        empty_200: "bad_response",
    },
    Subject {
        driver: "t2",
        config: |base, secret| {
            // The "secret" is the refresh token a person's `esim-exporter login` stored.
            let login = user_of("t2");
            let file = super::token_file(
                &format!("t2-{base}-{secret}"),
                &format!(r#"{{"driver":"t2","login":"{login}","refresh_token":"{secret}"}}"#),
            );
            format!(
                "accounts:\n  subject:\n    driver: t2\n    login: \"+{login}\"\n    token_file: {}\n    base_url: {base}\nlines:\n  - {{name: subject-line, account: subject, msisdn: \"+{login}\"}}\n",
                file.display()
            )
        },
        data_path: "/api/subscribers/79520000001/balance",
        auth_path: "/auth/realms/tele2-b2c/protocol/openid-connect/token",
        expected: super::t2::main_reading,
        private: &["79520000001", "9520000001"],
        not_found: "bad_response",
        token: true,
        bare_429_wait: None,
        empty_200: "bad_response",
    },
];

/// The outcome of one scenario, with what a secret check needs.
struct Outcome {
    result: Result<Reading, PollError>,
    notes: Vec<String>,
    elapsed: Duration,
    mock: MockOperator,
}

/// Runs one poll of `subject` against a fresh mock prepared by `prepare`, with the correct
/// secret unless `secret` is given.
async fn run(
    subject: &Subject,
    secret: Option<&str>,
    timeout: Duration,
    prepare: impl FnOnce(&MockOperator),
) -> Outcome {
    let mock = MockOperator::start().await;
    prepare(&mock);
    let secret = secret.unwrap_or(secret_of(subject.driver));
    let built = Built::new(&(subject.config)(&mock.base_url(subject.driver), secret));
    let started = Instant::now();
    let (result, notes) = built.poll("subject-line", timeout).await;
    Outcome { result, notes, elapsed: started.elapsed(), mock }
}

fn reason(outcome: &Outcome) -> &'static str {
    match &outcome.result {
        Ok(_) => "ok",
        Err(e) => e.reason().as_str(),
    }
}

const T: Duration = Duration::from_secs(10);

/// Every scenario for one subject; returns (scenario, outcome) for the secret check.
async fn scenarios(s: &Subject) -> Vec<(&'static str, Outcome)> {
    let d = s.driver;
    let mut out = Vec::new();

    let o = run(s, None, T, |_| {}).await;
    assert_eq!(o.result.as_ref().ok(), Some(&(s.expected)()), "{d}: happy path; notes {:#?}", o.notes);
    out.push(("happy", o));

    let o = run(s, Some("wrong-secret-value-for-the-suite"), T, |_| {}).await;
    assert_eq!(reason(&o), "auth", "{d}: refused credentials: {:?}", o.result);
    assert_eq!(o.mock.count(d, s.auth_path), 1, "{d}: a refused login is not retried");
    out.push(("refused", o));

    let o = run(s, None, T, |m| m.faults(d, s.data_path, Fault::Status(401), 2)).await;
    assert_eq!(reason(&o), "auth", "{d}: 401 after a refresh: {:?}", o.result);
    let tries = if s.token { 2 } else { 1 };
    assert_eq!(o.mock.count(d, s.data_path), tries, "{d}: exactly one retry with a new token, if any");
    out.push(("401", o));

    let o = run(s, None, T, |m| m.fault(d, s.data_path, Fault::Status(403))).await;
    assert_eq!(reason(&o), "auth", "{d}: 403: {:?}", o.result);
    out.push(("403", o));

    let o = run(s, None, T, |m| m.fault(d, s.data_path, Fault::RateLimited(Some("7".into())))).await;
    assert_eq!(
        o.result.as_ref().err(),
        Some(&PollError::RateLimited { retry_after: Some(Duration::from_secs(7)) }),
        "{d}: 429 with Retry-After seconds"
    );
    out.push(("429-seconds", o));

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let o = run(s, None, T, |m| m.fault(d, s.data_path, Fault::RateLimited(Some(date)))).await;
    let delay = o.result.as_ref().err().and_then(PollError::retry_after).expect("a Retry-After date is read");
    assert!(delay > Duration::from_secs(110) && delay <= Duration::from_secs(120), "{d}: {delay:?}");
    out.push(("429-date", o));

    let o = run(s, None, T, |m| m.fault(d, s.data_path, Fault::RateLimited(None))).await;
    // MTS asks for 20 s after a 429 that names no Retry-After (ru.md §10); the others leave
    // the pause to the scheduler's default.
    let bare = s.bare_429_wait;
    assert_eq!(o.result.as_ref().err(), Some(&PollError::RateLimited { retry_after: bare }), "{d}: 429 bare");
    out.push(("429-bare", o));

    let deadline = Duration::from_millis(800);
    let o = run(s, None, deadline, |m| m.fault(d, s.data_path, Fault::Latency(Duration::from_secs(20)))).await;
    assert_eq!(o.result.as_ref().err(), Some(&PollError::Timeout(deadline)), "{d}: stall");
    assert!(o.elapsed < deadline + Duration::from_secs(1), "{d}: the stall ended at {:?}", o.elapsed);
    out.push(("stall", o));

    for (name, fault) in [
        ("truncated", Fault::Truncated),
        ("html", Fault::Html),
        ("wrong-types", Fault::Fixture(200, "wrong-types")),
        ("missing-fields", Fault::Fixture(200, "missing-fields")),
        ("not-json", Fault::Body(200, "application/json", "{\"meta\": oops".into())),
        ("empty", Fault::Body(200, "application/json", String::new())),
    ] {
        let o = run(s, None, T, |m| m.fault(d, s.data_path, fault)).await;
        // 1NCE answers a SIM of another account with an empty 200 (recorded, iot.md §9).
        let expected = if name == "empty" { s.empty_200 } else { "bad_response" };
        assert_eq!(reason(&o), expected, "{d}: {name}: {:?}", o.result);
        out.push((name, o));
    }

    let o = run(s, None, T, |m| m.fault(d, s.data_path, Fault::Status(404))).await;
    assert_eq!(reason(&o), s.not_found, "{d}: 404: {:?}", o.result);
    out.push(("404", o));

    for declared in [false, true] {
        let total = 512u64 << 20;
        let o = run(s, None, T, |m| m.fault(d, s.data_path, Fault::Oversized { bytes: total, declared })).await;
        assert_eq!(reason(&o), "bad_response", "{d}: oversized (declared {declared}): {:?}", o.result);
        // Give the server a moment to notice the closed connection, then check it stopped.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let streamed = o.mock.bytes_streamed();
        assert!(streamed < total / 8, "{d}: {streamed} of {total} bytes were sent: the body was read whole");
        out.push(("oversized", o));
    }

    for (name, fault) in [("503", Fault::Status(503)), ("500", Fault::Status(502)), ("disconnect", Fault::Disconnect)] {
        let o = run(s, None, T, |m| m.fault(d, s.data_path, fault)).await;
        assert_eq!(reason(&o), "unavailable", "{d}: {name}: {:?}", o.result);
        out.push((name, o));
    }

    let o = run(s, None, T, |m| m.fault(d, s.data_path, Fault::Captcha)).await;
    assert_eq!(reason(&o), "captcha", "{d}: captcha: {:?}", o.result);
    out.push(("captcha", o));

    let o = run(s, None, T, |m| m.fault(d, s.data_path, Fault::ExpireTokens)).await;
    assert_eq!(o.result.as_ref().ok(), Some(&(s.expected)()), "{d}: token expiry: {:?}", o.result);
    if s.token {
        assert_eq!(o.mock.count(d, s.auth_path), 2, "{d}: one login, one refresh");
    }
    out.push(("expired-token", o));

    out
}

#[tokio::test]
async fn every_http_driver_maps_every_fault_to_its_reason_and_never_leaks_a_secret() {
    for subject in SUBJECTS {
        let logs = LogCapture::start();
        let outcomes = scenarios(subject).await;
        let log = logs.text();
        assert!(log.contains("operator request"), "{}: debug logs were captured:\n{log}", subject.driver);
        let mut secrets: Vec<String> = vec![secret_of(subject.driver).to_string(), "wrong-secret-value".to_string()];
        secrets.extend(subject.private.iter().map(|s| s.to_string()));
        let mut leaks = Vec::new();
        for (scenario, o) in &outcomes {
            let mut texts = o.notes.clone();
            if let Err(e) = &o.result {
                texts.push(e.to_string());
                texts.push(format!("{e:?}"));
            }
            let mut all_secrets = secrets.clone();
            all_secrets.extend(o.mock.issued_tokens());
            for secret in &all_secrets {
                if texts.iter().any(|t| t.contains(secret.as_str())) {
                    leaks.push(format!("{scenario}: `{secret}` in {texts:?}"));
                }
                if log.contains(secret.as_str()) {
                    leaks.push(format!("{scenario}: `{secret}` in the debug log"));
                }
            }
        }
        assert!(leaks.is_empty(), "{}: secrets leaked:\n{}", subject.driver, leaks.join("\n"));
    }
}

#[tokio::test]
async fn an_unreachable_operator_is_unavailable_and_counted() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for s in SUBJECTS {
        let built = Built::new(&(s.config)(&format!("http://127.0.0.1:{port}/x"), secret_of(s.driver)));
        let (result, _) = built.poll("subject-line", T).await;
        assert_eq!(result.as_ref().map_err(|e| e.reason().as_str()).err(), Some("unavailable"), "{}", s.driver);
        assert_eq!(built.observed.codes(), vec!["connect".to_string()], "{}", s.driver);
    }
}

#[tokio::test]
async fn every_request_is_observed_with_its_account_driver_and_code() {
    for s in SUBJECTS {
        let mock = MockOperator::start().await;
        mock.fault(s.driver, s.data_path, Fault::Status(503));
        let built = Built::new(&(s.config)(&mock.base_url(s.driver), secret_of(s.driver)));
        let _ = built.poll("subject-line", T).await;
        let _ = built.poll("subject-line", T).await;
        let observed = built.observed.all();
        assert_eq!(observed.len(), mock.requests(s.driver).len(), "{}: one observation per request", s.driver);
        assert!(observed.iter().all(|(a, d, _)| a == "subject" && d == s.driver), "{observed:?}");
        assert!(observed.iter().any(|(_, _, c)| c == "503") && observed.iter().any(|(_, _, c)| c == "200"));
        // Every request says who it is.
        let agent = format!("esim-exporter/{}", env!("CARGO_PKG_VERSION"));
        assert!(mock.requests(s.driver).iter().all(|r| r.header("user-agent") == Some(agent.as_str())));
    }
}

#[test]
fn expected_readings_are_fully_specified() {
    // Guards the table: a happy reading with nothing in it would make the suite vacuous.
    for s in SUBJECTS {
        let r = (s.expected)();
        // 1NCE has no money balance: a driver reports at least one of the two.
        assert!(r.balance.is_some() || r.data_remaining.is_some(), "{}", s.driver);
        assert!(r.data_remaining.is_some() || r.voice_remaining.is_some(), "{}", s.driver);
        assert!(r.quota_expiry.is_some_and(|t| t > at("2026-01-01T00:00:00Z")), "{}", s.driver);
    }
}
