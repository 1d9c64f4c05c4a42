//! `t2` (alias `tele2`): T2's subscriber API (`api.t2.ru`, formerly Tele2) behind its Keycloak
//! realm `tele2-b2c`. A person logs in once with an SMS code (`esim-exporter login`, plus an
//! e-mail security code when T2 asks); the refresh token is kept in the account's token file
//! and the exporter refreshes the access token itself (an optional `password` lets it log in
//! again unattended). Balance from `/balance`, remainders from `/rests` summed by `uom`.
//! T2's anti-bot protection may refuse clients that do not look like its app: see
//! `docs/DRIVERS.md`. Shapes follow `shared/operators/ru.md` §5.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::contract::{BoxFuture, BuildContext, BuildError, Cost, Driver, DriverSpec, PollContext};
use super::kit::decode::{self, one_or_many, Num};
use super::kit::http::{self, HttpClient, HttpOptions, Request, Response};
use super::kit::ids::Msisdn;
use super::kit::person_login::Latch;
use super::kit::remainders::{self, Kind, Remainders};
use super::kit::session::{Fresh, Session};
use super::kit::token_file::TokenFile;
use super::onboarding::{self, LoginBoard, Person};
use crate::clock::SharedClock;
use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::config::units::Rate;
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::{Currency, Money, Reading};

pub const DEFAULT_BASE_URL: &str = "https://api.t2.ru";
const TOKEN: &str = "/auth/realms/tele2-b2c/protocol/openid-connect/token";
const SECURITY_CODES: &str = "/auth/realms/tele2-b2c/credential-management/security-codes";
const DEFAULT_CLIENT_ID: &str = "digital-suite-web-app";
/// Each step of `esim-exporter login` (the person's typing is not counted).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

pub static SPEC: DriverSpec = DriverSpec {
    name: "t2",
    aliases: &["tele2"],
    summary: "T2 (Tele2) subscriber API: SMS login once, refresh token kept; balance and rests by uom",
    example: r#"
accounts:
  corp-t2:
    driver: t2                        # or tele2
    login: "+79520000000"             # the number; once: esim-exporter login --account corp-t2
    token_file: t2-token.json         # where that login is kept (default: tokens/ beside --storage.path)
    # password: ${T2_PASSWORD}        # optional: logs in again by itself when the refresh token dies
    # client_id: digital-suite-web-app
    # base_url: https://api.t2.ru
    # proxy_url: http://proxy.corp.example:3128
lines:
  - name: t2-sensor-1
    account: corp-t2
    msisdn: "+79520000000"            # the login's number or a number linked to it
"#,
    needs_account: true,
    speaks_http: true,
    can_discover: false,
    default_operator: "t2",
    // No documented limit; a consumer API: two requests a poll, at most one every 2 s.
    default_rate_limit: Some(Rate { count: 1, period: Duration::from_secs(2) }),
    account_options,
    line_options,
    build,
};

#[derive(Clone, Debug)]
struct AccountOptions {
    http: HttpOptions,
    /// `7XXXXXXXXXX`.
    login: String,
    password: Option<Secret>,
    client_id: String,
    token_file: Option<PathBuf>,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, DEFAULT_BASE_URL);
    let pos = f.node("login").map(|n| n.pos);
    let login = f.required_string("login").map(|l| Msisdn(&l).number11()).unwrap_or_default();
    if let (Some(pos), false) = (pos, login.len() == 11 && login.bytes().all(|b| b.is_ascii_digit())) {
        f.error("login", pos, "expected the T2 number, e.g. +79520000000");
    }
    let password = f.secret("password", "password_file");
    let client_id = f.string("client_id").unwrap_or_else(|| DEFAULT_CLIENT_ID.to_string());
    let token_file = f.string("token_file").map(|p| f.sink().base_dir.join(p));
    DriverOptions(Arc::new(AccountOptions { http, login, password, client_id, token_file }))
}

fn line_options(_f: &mut Fields<'_>) -> DriverOptions {
    DriverOptions::none()
}

/// The login as the token file keeps it. The access token is not kept: it lives four hours,
/// and a restart refreshes.
#[derive(Serialize, Deserialize)]
struct Stored {
    driver: String,
    /// `7XXXXXXXXXX`: a file of another number is not used.
    login: String,
    refresh_token: String,
    /// When the refresh token dies, if T2 said (Unix seconds).
    #[serde(default)]
    refresh_expires_at: Option<u64>,
    #[serde(default)]
    saved_at: Option<u64>,
}

/// What the account's polls share, kept across reloads while the token file, login,
/// password and `base_url` stay the same.
struct State {
    /// The access token.
    session: Session<Secret>,
    refresh: Mutex<Option<Secret>>,
    latch: Latch,
}

struct T2 {
    client: HttpClient,
    account: String,
    login: String,
    password: Option<Secret>,
    client_id: String,
    tokens: Option<TokenFile>,
    logins: Arc<LoginBoard>,
    clock: SharedClock,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::contract::account_options::<AccountOptions>(account, "t2")?;
    let client = HttpClient::new(account, &o.http, cx)?;
    let tokens = TokenFile::locate(&account.name, o.token_file.as_deref(), cx.token_dir.as_deref());
    let loaded = tokens.as_ref().map(|t| t.load::<Stored>());
    let refresh = match &loaded {
        Some(Ok(Some(s))) if s.login == o.login => Some(s.refresh_token.as_str()),
        _ => None,
    };
    let password = o.password.as_ref().map_or("", |p| p.expose());
    let parts = [o.login.as_str(), password, refresh.unwrap_or(""), &o.client_id, o.http.base_url.as_str()];
    let fingerprint = cx.sessions.fingerprint(&parts);
    let state = cx.sessions.get_or_create("t2", &account.name, fingerprint, || State {
        session: Session::default(),
        refresh: Mutex::new(refresh.map(Secret::new)),
        latch: Latch::default(),
    });
    cx.logins.track(&account.name);
    if let Some(Err(e)) = &loaded {
        tracing::warn!(account = %account.name, error = %e, "the t2 token file cannot be used");
    }
    Ok(Arc::new(T2 {
        client,
        account: account.name.clone(),
        login: o.login.clone(),
        password: o.password.clone(),
        client_id: o.client_id.clone(),
        tokens,
        logins: cx.logins.clone(),
        clock: cx.clock.clone(),
        state,
    }))
}

impl Driver for T2 {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(self.read(line, cx))
    }

    fn onboard<'a>(&'a self, person: &'a mut dyn Person) -> BoxFuture<'a, Result<PathBuf, PollError>> {
        Box::pin(self.onboard_with_sms(person))
    }

    fn cost(&self, lines: usize) -> Option<Cost> {
        Some(Cost { requests_per_cycle: 2.0 * lines as f64, ..Cost::default() })
    }
}

/// What the token endpoint said.
enum Grant {
    Tokens(TokenBody),
    /// Keycloak refused the grant (`invalid_grant` and kin), with its description.
    Refused(String),
    /// T2 wants the e-mail security code (a second factor) first.
    SecurityCode,
}

impl T2 {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        self.pass_latch(cx).await?;
        let result = self.read_line(line, cx).await;
        if let Err(error @ PollError::Captcha(_)) = &result {
            // A captcha wants a person: never asked again until one acted.
            self.wait_for_person(error.clone(), "T2 asks for a captcha");
        }
        result
    }

    async fn read_line(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let number = line.msisdn.as_deref().map_or_else(|| self.login.clone(), |m| Msisdn(m).number11());
        let balance_path = format!("/api/subscribers/{number}/balance");
        let response = self.get(cx, &balance_path, "/api/subscribers/{msisdn}/balance").await?;
        let balance: Envelope<BalanceData> = response.json()?;
        let response =
            self.get(cx, &format!("/api/subscribers/{number}/rests"), "/api/subscribers/{msisdn}/rests").await?;
        let rests: Envelope<RestsData> = response.json()?;
        let (mut reading, notes) = map_rests(&rests.data.rests);
        notes.into_iter().for_each(|n| cx.note(n));
        reading.balance = Some(Money { amount: balance.data.value.0, currency: Currency::RUB });
        self.logins.logged_in(&self.account);
        Ok(reading)
    }

    /// Answers at once while the account waits for a person; takes a new token file.
    async fn pass_latch(&self, cx: &PollContext) -> Result<(), PollError> {
        if self.state.latch.pass(self.tokens.as_ref(), cx)? {
            let stored = self.tokens.as_ref().and_then(|t| t.load::<Stored>().ok().flatten());
            if let Some(stored) = stored.filter(|s| s.login == self.login) {
                *self.refresh() = Some(Secret::new(stored.refresh_token));
            }
            self.state.session.clear().await;
        }
        Ok(())
    }

    fn refresh(&self) -> std::sync::MutexGuard<'_, Option<Secret>> {
        self.state.refresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A GET with the access token; a rejected token is replaced once. `shown` is the path
    /// as logs and errors name it (without the number).
    async fn get(&self, cx: &PollContext, path: &str, shown: &'static str) -> Result<Response, PollError> {
        let response = self
            .state
            .session
            .call(
                cx,
                || self.access_token(cx),
                |token| self.with_request_id(self.client.get(path).log_as(shown)).bearer(&token).send(cx),
                token_rejected,
            )
            .await?;
        check(response, cx)
    }

    /// T2's app sends a fresh `X-Request-Id` with every call, and one client says T2 expects it.
    fn with_request_id<'c>(&self, request: Request<'c>) -> Request<'c> {
        let id = format!(
            "{:016x}{:016x}{:08x}",
            onboarding::random_u64(),
            onboarding::random_u64(),
            onboarding::random_u64() as u32
        );
        request.header("x-request-id", &id)
    }

    /// A new access token: by the refresh token, else by the password; when neither works, a
    /// person is needed.
    async fn access_token(&self, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        let refresh = self.refresh().clone();
        let mut why = "no stored login (run `esim-exporter login`)".to_string();
        if let Some(refresh) = refresh {
            cx.note("refreshing the access token");
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose()),
                ("client_id", self.client_id.as_str()),
            ];
            match self.grant(cx, &form).await? {
                Grant::Tokens(tokens) => return Ok(self.keep(cx, tokens)),
                Grant::Refused(detail) => why = format!("the stored login was refused ({detail})"),
                Grant::SecurityCode => why = "T2 asks for an e-mail security code".to_string(),
            }
        }
        if let Some(password) = &self.password {
            cx.note("logging in with the password");
            let form = [
                ("grant_type", "password"),
                ("username", self.login.as_str()),
                ("password", password.expose()),
                ("password_type", "password"),
                ("client_id", self.client_id.as_str()),
            ];
            match self.grant(cx, &form).await? {
                Grant::Tokens(tokens) => return Ok(self.keep(cx, tokens)),
                // A wrong password is the config's to fix: the scheduler's lock-out spaces retries.
                Grant::Refused(detail) => {
                    return Err(PollError::Auth(format!("POST {TOKEN}: password refused ({detail})")))
                }
                Grant::SecurityCode => why = "T2 asks for an e-mail security code".to_string(),
            }
        }
        Err(self.wait_for_person(PollError::Auth(format!("{why}; waiting for a person")), &why))
    }

    /// Closes the latch: from now on polls answer `error` without a request.
    fn wait_for_person(&self, error: PollError, why: &str) -> PollError {
        self.state.latch.close(error.clone(), self.tokens.as_ref());
        self.logins.needs_person(&self.account, SPEC.name, why, self.clock.now());
        error
    }

    /// Keeps a new token pair: the refresh token in memory and in the token file (T2 may
    /// rotate it, and the old one then dies), the access token for the session.
    fn keep(&self, cx: &PollContext, tokens: TokenBody) -> Fresh<Secret> {
        if let Some(refresh) = tokens.refresh_token.as_deref().filter(|r| !r.trim().is_empty()) {
            let refresh = Secret::new(refresh.trim());
            let changed = self.refresh().as_ref() != Some(&refresh);
            *self.refresh() = Some(refresh.clone());
            if changed {
                self.store(cx, &refresh, tokens.refresh_expires_in);
            }
        }
        let expires_in = tokens.expires_in.map(|n| Duration::from_secs_f64(n.0.clamp(0.0, 1e9)));
        Fresh { value: Secret::new(tokens.access_token.trim()), expires_in }
    }

    /// The token file's contents for `refresh`, which T2 says lives `expires_in` seconds.
    fn stored(&self, refresh: &str, expires_in: Option<Num>) -> Stored {
        let now = self.clock.now();
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        Stored {
            driver: SPEC.name.to_string(),
            login: self.login.clone(),
            refresh_token: refresh.trim().to_string(),
            refresh_expires_at: expires_in
                .filter(|n| n.0 > 0.0)
                .and_then(|n| unix(now + Duration::from_secs_f64(n.0.min(1e9)))),
            saved_at: unix(now),
        }
    }

    fn store(&self, cx: &PollContext, refresh: &Secret, expires_in: Option<Num>) {
        let Some(tokens) = &self.tokens else { return };
        match tokens.save(&self.stored(refresh.expose(), expires_in)) {
            Ok(()) => cx.note("new refresh token stored"),
            Err(e) => {
                tracing::error!(account = %self.account, error = %e, "cannot store the new T2 refresh token; a restart will need `esim-exporter login`")
            }
        }
    }

    /// One request to the token endpoint.
    async fn grant(&self, cx: &PollContext, form: &[(&str, &str)]) -> Result<Grant, PollError> {
        let response = self.client.post(TOKEN).form_body(form).send(cx).await?;
        let status = response.status().as_u16();
        if response.status().is_success() && !response.is_html() {
            let tokens: TokenBody = response.json()?;
            if tokens.access_token.trim().is_empty() {
                return Err(PollError::BadResponse(format!("POST {TOKEN}: empty access_token")));
            }
            return Ok(Grant::Tokens(tokens));
        }
        if let Some(keycloak) =
            serde_json::from_slice::<KeycloakError>(response.body()).ok().filter(|_| !response.is_html())
        {
            let description = keycloak.error_description.unwrap_or_default();
            if description.to_lowercase().contains("security code") {
                return Ok(Grant::SecurityCode);
            }
            if matches!(status, 400 | 401) {
                let detail: String = format!("{} {description}", keycloak.error.unwrap_or_default())
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(100)
                    .collect();
                return Ok(Grant::Refused(http::scrub(detail.trim(), &[&self.login, &self.login[1..]])));
            }
        }
        if status == 403 && response.error(self.clock.now()).is_some_and(|e| e.reason().as_str() == "auth") {
            return Err(PollError::Auth(format!(
                "POST {TOKEN}: HTTP 403 without a Keycloak answer: T2's anti-bot protection refuses this client (see docs/DRIVERS.md, `t2`)"
            )));
        }
        match response.check(cx) {
            Ok(_) => Err(PollError::BadResponse(format!("POST {TOKEN}: HTTP {status}"))),
            Err(e) => Err(e),
        }
    }

    /// `esim-exporter login`: an SMS code (and an e-mail security code when T2 asks), then
    /// the refresh token stored in the token file.
    async fn onboard_with_sms(&self, person: &mut dyn Person) -> Result<PathBuf, PollError> {
        let Some(tokens) = self.tokens.clone() else {
            return Err(PollError::Config(format!(
                "account `{}` has no `token_file` and no --storage.path was given: the login token needs a home",
                self.account
            )));
        };
        let step = || PollContext::new(STEP_TIMEOUT, self.clock.clone());
        person.tell(&format!("Asking T2 to send an SMS code to {}.", Msisdn(&format!("+{}", self.login)).masked()));
        let cx = step();
        let path = format!("/api/validation/number/{}", self.login);
        let request = self.client.post(&path).log_as("/api/validation/number/{msisdn}");
        let response = request.json_body(&serde_json::json!({"sender": "t2.ru"})).send(&cx).await?;
        if response.status().as_u16() == 403 && response.is_html() {
            return Err(PollError::Auth(
                "T2's anti-bot protection refused the SMS request (HTTP 403 page): see docs/DRIVERS.md, `t2`".into(),
            ));
        }
        check(response, &cx)?;
        let Some(code) = person.ask("SMS code from T2: ").filter(|c| !c.is_empty()) else {
            return Err(PollError::Config("no SMS code was entered".into()));
        };
        let mut form = vec![
            ("grant_type", "password".to_string()),
            ("username", self.login.clone()),
            ("password", code),
            ("password_type", "sms_code".to_string()),
            ("client_id", self.client_id.clone()),
        ];
        let cx = step();
        let mut grant = self.grant(&cx, &as_pairs(&form)).await?;
        if matches!(grant, Grant::SecurityCode) {
            let response = self
                .client
                .post(SECURITY_CODES)
                .json_body(&serde_json::json!({"username": self.login}))
                .send(&cx)
                .await?;
            let body: SecurityCodeBody = check(response, &cx)?.json()?;
            let Some(code) = person.ask("T2 sent a security code by e-mail; enter it: ").filter(|c| !c.is_empty())
            else {
                return Err(PollError::Config("no security code was entered".into()));
            };
            form.push(("security_code", code));
            form.push(("security_code_token", body.security_code_token));
            let cx = step();
            grant = self.grant(&cx, &as_pairs(&form)).await?;
        }
        let tokens_body = match grant {
            Grant::Tokens(t) => t,
            Grant::Refused(detail) => return Err(PollError::Auth(format!("T2 refused the code ({detail})"))),
            Grant::SecurityCode => return Err(PollError::Auth("T2 refused the e-mail security code".into())),
        };
        let Some(refresh) = tokens_body.refresh_token.as_deref().filter(|r| !r.trim().is_empty()) else {
            return Err(PollError::BadResponse(format!("POST {TOKEN}: no refresh_token in the answer")));
        };
        let stored = self.stored(refresh, tokens_body.refresh_expires_in);
        tokens.save(&stored).map_err(|e| PollError::Config(e.to_string()))?;
        Ok(tokens.path().to_path_buf())
    }
}

fn as_pairs<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// An expired or missing token: HTTP 401, or `meta.message` "User must be logged in."
fn token_rejected(response: &Response) -> bool {
    if response.status().as_u16() == 401 {
        return true;
    }
    serde_json::from_slice::<MetaOnly>(response.body())
        .ok()
        .and_then(|e| e.meta)
        .is_some_and(|m| m.message.unwrap_or_default().to_lowercase().contains("logged in"))
}

/// The status mapping plus `meta.status`: anything but `OK` fails the poll.
fn check(response: Response, cx: &PollContext) -> Result<Response, PollError> {
    let response = response.check(cx)?;
    let Ok(MetaOnly { meta: Some(meta) }) = serde_json::from_slice(response.body()) else {
        return Ok(response);
    };
    if meta.status.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("OK")) {
        return Ok(response);
    }
    let message: String = meta.message.unwrap_or_default().chars().filter(|c| !c.is_control()).take(100).collect();
    // The number never appears in our paths' shown form; a message may echo it.
    let digits: String = message.chars().filter(char::is_ascii_digit).collect();
    let message = if digits.len() >= 10 { "(message withheld: it names a number)".to_string() } else { message };
    let what = format!("{}: meta.status {} {message}", response.shown(), meta.status.unwrap_or_default());
    if what.to_lowercase().contains("logged in") {
        Err(PollError::Auth(what.trim_end().to_string()))
    } else {
        Err(PollError::BadResponse(what.trim_end().to_string()))
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<Num>,
    #[serde(default)]
    refresh_expires_in: Option<Num>,
}

#[derive(Deserialize)]
struct KeycloakError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct SecurityCodeBody {
    security_code_token: String,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct MetaOnly {
    #[serde(default)]
    meta: Option<Meta>,
}

/// `{"meta": {...}, "data": ...}` (`meta` is judged by [`check`]).
#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct BalanceData {
    /// Rubles, sign kept.
    value: Num,
}

#[derive(Deserialize)]
struct RestsData {
    #[serde(deserialize_with = "one_or_many", default)]
    rests: Vec<Rest>,
}

#[derive(Deserialize)]
struct Rest {
    #[serde(default)]
    uom: Option<String>,
    #[serde(default)]
    remain: Option<Num>,
    /// The package size (AB-T2); T2API's docstring calls it `initial`: both are read.
    #[serde(default)]
    limit: Option<Num>,
    #[serde(default)]
    initial: Option<Num>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    rollover: Option<bool>,
    #[serde(rename = "roamingPackage", default)]
    roaming: Option<bool>,
    #[serde(rename = "endDay", default)]
    end_day: Option<String>,
    #[serde(rename = "trafficType", default)]
    traffic_type: Option<String>,
    #[serde(default)]
    unlimited: Option<bool>,
    #[serde(default)]
    service: Option<Service>,
}

#[derive(Deserialize)]
struct Service {
    #[serde(default)]
    name: Option<String>,
}

fn kind_of(uom: &str, traffic_type: Option<&str>, name: &str) -> Option<Kind> {
    let u = uom.trim().to_lowercase();
    match u.as_str() {
        "min" | "мин" => Some(Kind::Voice(60.0)),
        "sec" | "сек" => Some(Kind::Voice(1.0)),
        "pcs" | "шт" => {
            let mms = |s: &str| s.to_lowercase().contains("mms") || s.to_lowercase().contains("ммс");
            (!mms(name) && !traffic_type.is_some_and(mms)).then_some(Kind::Sms)
        }
        other => decode::data_unit_bytes(other).map(|b| Kind::Data(b as f64)),
    }
}

/// Sums `remain` by `uom` (`mb`, `kb`, `gb` → bytes ×1024 steps; `min` → seconds; `pcs` →
/// SMS) over active, home, non-rollover packages; `limit` (or `initial`) is the size, `0`
/// marks an empty placeholder; the expiry is the earliest `endDay`.
fn map_rests(rests: &[Rest]) -> (Reading, Vec<String>) {
    let mut notes = Vec::new();
    let mut sums = Remainders::default();
    for rest in rests {
        let name = rest.service.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
        let uom = rest.uom.as_deref().unwrap_or("");
        let Some(kind) = kind_of(uom, rest.traffic_type.as_deref(), &name) else {
            notes.push(format!("rest `{name}` skipped (uom `{uom}`)"));
            continue;
        };
        if rest.status.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("active")) {
            notes.push(format!("rest `{name}` skipped (not active)"));
            continue;
        }
        if rest.roaming == Some(true) {
            notes.push(format!("rest `{name}` skipped (roaming)"));
            continue;
        }
        if rest.rollover == Some(true) {
            notes.push(format!("rest `{name}` skipped (rollover)"));
            continue;
        }
        if let Some(why) = decode::excluded_package(&name) {
            notes.push(format!("rest `{name}` skipped ({why})"));
            continue;
        }
        let Some(remain) = rest.remain else {
            notes.push(format!("rest `{name}` has no remain"));
            continue;
        };
        let size = rest.limit.or(rest.initial);
        if size.is_some_and(|s| s.0 == 0.0) {
            notes.push(format!("rest `{name}` skipped (empty package)"));
            continue;
        }
        let factor = kind.factor();
        let unlimited = rest.unlimited == Some(true)
            || decode::is_unlimited_sentinel(remain.0)
            || size.is_some_and(|s| decode::is_unlimited_sentinel(s.0))
            || matches!(kind, Kind::Data(_) if remain.0 * factor >= decode::UNLIMITED_DATA_BYTES);
        if unlimited {
            notes.push(format!("rest `{name}` skipped (unlimited)"));
            continue;
        }
        sums.add(kind, remain.0 * factor, size.map(|s| s.0 * factor));
        let end = rest.end_day.as_deref().and_then(decode::parse_rfc3339);
        if let Some(end) = end.filter(|e| remainders::is_bounded(*e)) {
            sums.ends_at(end);
        }
    }
    (sums.into_reading(), notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::ByteSize;

    fn rests(json: &str) -> (Reading, Vec<String>) {
        let body: Envelope<RestsData> = serde_json::from_str(json).unwrap();
        map_rests(&body.data.rests)
    }

    #[test]
    fn rests_are_summed_by_uom_and_exclusions_skipped() {
        let (r, notes) = rests(
            r#"{"meta":{"status":"OK"},"data":{"rests":[
              {"type":"tariff","uom":"mb","remain":5120,"limit":15360,"status":"active","rollover":false,"roamingPackage":false,"endDay":"2026-08-14T23:59:59+03:00","service":{"name":"Интернет"}},
              {"type":"tariff","uom":"mb","remain":1902,"limit":1902,"rollover":true,"status":"active"},
              {"type":"service","uom":"gb","remain":1,"initial":2,"status":"active","endDay":"2026-08-01T23:59:59+03:00"},
              {"type":"tariff","uom":"min","remain":312,"limit":500,"status":"active"},
              {"type":"tariff","uom":"pcs","remain":0,"limit":0,"status":"active"},
              {"type":"tariff","uom":"pcs","remain":40,"limit":50,"status":"active","trafficType":"sms"},
              {"type":"service","uom":"mb","remain":300,"limit":300,"status":"active","roamingPackage":true},
              {"type":"service","uom":"mb","remain":100,"limit":100,"status":"blocked"},
              {"type":"service","uom":"mb","remain":999999999,"limit":999999999,"status":"active","service":{"name":"Соцсети"}}]}}"#,
        );
        assert_eq!(r.data_remaining, Some(ByteSize(5120 * 1_048_576 + (1 << 30))));
        assert_eq!(r.data_quota, Some(ByteSize(15360 * 1_048_576 + 2 * (1 << 30))));
        assert_eq!(r.voice_remaining, Some(Duration::from_secs(312 * 60)));
        assert_eq!(r.sms_remaining, Some(40));
        assert_eq!(r.quota_expiry, decode::parse_rfc3339("2026-08-01T20:59:59Z"));
        assert_eq!(notes.len(), 5, "{notes:?}");
    }

    #[test]
    fn a_package_without_size_leaves_the_quota_absent() {
        let (r, _) = rests(r#"{"data":{"rests":[{"uom":"mb","remain":1,"limit":2},{"uom":"kb","remain":1024}]}}"#);
        assert_eq!(r.data_remaining, Some(ByteSize(2 * 1_048_576)));
        assert_eq!(r.data_quota, None);
        assert_eq!(r.voice_remaining, None, "absent, never 0");
    }

    #[test]
    fn meta_errors_and_expired_tokens() {
        let cx = PollContext::new(Duration::from_secs(1), Arc::new(crate::clock::SystemClock));
        let expired = Response::new(
            200,
            Some("application/json"),
            r#"{"meta":{"status":"ERROR","message":"User must be logged in."}}"#,
            "GET /x",
        );
        assert!(token_rejected(&expired));
        assert_eq!(check(expired, &cx).unwrap_err().reason().as_str(), "auth");
        let other = Response::new(
            200,
            None,
            r#"{"meta":{"status":"ERROR","message":"Abonent 79520000001 not found"}}"#,
            "GET /x",
        );
        assert!(!token_rejected(&other));
        let err = check(other, &cx).unwrap_err();
        assert_eq!(err.reason().as_str(), "bad_response");
        assert!(!err.to_string().contains("79520000001"), "{err}");
        assert!(token_rejected(&Response::new(401, None, "", "GET /x")));
    }

    #[test]
    fn numbers_are_eleven_digits() {
        assert_eq!(Msisdn("+79521234567").number11(), "79521234567");
        assert_eq!(Msisdn("89521234567").number11(), "79521234567");
        assert_eq!(Msisdn("9521234567").number11(), "79521234567");
    }

    #[test]
    fn tele2_is_an_alias_of_t2() {
        assert_eq!(crate::drivers::lookup("tele2").map(|s| s.name), Some("t2"));
        assert_eq!(crate::drivers::lookup("t2").map(|s| s.name), Some("t2"));
        assert!(!crate::drivers::names().contains(&"tele2"), "aliases are not listed as drivers");
    }
}
