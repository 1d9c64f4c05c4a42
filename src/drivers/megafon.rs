//! `megafon`: MegaFon's mobile-app API (`api.megafon.ru/mlk`). The login that is safe to run
//! unattended: once, a person enters an SMS code (`esim-exporter login`), the exporter binds
//! itself as a device (a PIN and a "biometry" token, kept in the account's token file), and
//! from then on logs in with that token alone (falling back to the PIN, which re-binds).
//! Balance from `api/main/balance`, remainders from `api/options/remainders` with Russian unit
//! strings (ГБ, МБ, КБ, мин, сек, шт). A captcha demand or a locked account stops the account
//! until a person acts: it is never retried. Shapes follow `shared/operators/ru.md` §3.1.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::contract::{BoxFuture, BuildContext, BuildError, Cost, Driver, DriverSpec, PollContext};
use super::kit::decode::{self, one_or_many, Num, Quantity, Text};
use super::kit::http::{self, HttpClient, HttpOptions, Request, Response};
use super::kit::ids::Msisdn;
use super::kit::person_login::Latch;
use super::kit::remainders::{Kind, Remainders};
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

pub const DEFAULT_BASE_URL: &str = "https://api.megafon.ru";
const OTP_REQUEST: &str = "/mlk/auth/otp/request";
const OTP_SUBMIT: &str = "/mlk/api/auth/otp/submit";
const PASSWORD_LOGIN: &str = "/mlk/login";
const BIOMETRY_LOGIN: &str = "/mlk/auth/biometry";
const PIN_LOGIN: &str = "/mlk/api/auth/pin";
const PROFILE_PIN: &str = "/mlk/api/profile/pin";
const PROFILE_BIOMETRY: &str = "/mlk/api/profile/biometry";
const BALANCE: &str = "/mlk/api/main/balance";
const REMAINDERS: &str = "/mlk/api/options/remainders";
/// Each step of `esim-exporter login` (the person's typing is not counted).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// `code` of an answer that wants a captcha solved.
const CAPTCHA_CODE: &str = "a211";
/// `code` of a blocked account.
const BLOCKED_CODE: &str = "a216";
/// Minutes past this mean "unlimited" (AnyBalance's rule; mbplugin sees about 1,000,000,500).
const UNLIMITED_MINUTES: f64 = 2_600_000.0;
/// Traffic packages of this many megabytes or more are unlimited.
const UNLIMITED_MEGABYTES: f64 = 999_000.0;

pub static SPEC: DriverSpec = DriverSpec {
    name: "megafon",
    aliases: &[],
    summary: "MegaFon mobile-app API: one SMS code at onboarding, then a stored device token; balance and remainders",
    example: r#"
accounts:
  corp-megafon:
    driver: megafon
    login: "+79260000000"             # the number; once: esim-exporter login --account corp-megafon
    token_file: megafon-token.json    # where that login is kept (default: tokens/ beside --storage.path)
    # password: ${MEGAFON_PASSWORD}   # optional: binds the device itself, unless MegaFon asks for a captcha
    # base_url: https://api.megafon.ru
    # proxy_url: http://proxy.corp.example:3128
lines:
  - name: gate-01
    account: corp-megafon
    msisdn: "+79260000000"            # the login's own number (the API reads no other)
"#,
    needs_account: true,
    speaks_http: true,
    can_discover: false,
    default_operator: "megafon",
    // No documented limit. A consumer API: clients that last poll hourly; two requests a poll.
    default_rate_limit: Some(Rate { count: 1, period: Duration::from_secs(2) }),
    account_options,
    line_options,
    build,
};

#[derive(Clone, Debug)]
struct AccountOptions {
    http: HttpOptions,
    /// Ten digits, as the API wants it.
    login: String,
    password: Option<Secret>,
    token_file: Option<PathBuf>,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, DEFAULT_BASE_URL);
    let pos = f.node("login").map(|n| n.pos);
    let login = f.required_string("login").map(|l| decode::national_number(&l)).unwrap_or_default();
    if let (Some(pos), false) = (pos, login.len() == 10 && login.bytes().all(|b| b.is_ascii_digit())) {
        f.error("login", pos, "expected the MegaFon number, e.g. +79260000000");
    }
    let password = f.secret("password", "password_file");
    let token_file = f.string("token_file").map(|p| f.sink().base_dir.join(p));
    DriverOptions(Arc::new(AccountOptions { http, login, password, token_file }))
}

fn line_options(_f: &mut Fields<'_>) -> DriverOptions {
    DriverOptions::none()
}

/// The device binding as the token file keeps it.
#[derive(Serialize, Deserialize)]
struct StoredBinding {
    driver: String,
    /// Ten digits: a file of another number is not used.
    login: String,
    device_id: String,
    #[serde(default)]
    pin: Option<String>,
    token: String,
    #[serde(default)]
    saved_at: Option<u64>,
}

/// The device binding in memory.
#[derive(Clone)]
struct Binding {
    device_id: String,
    pin: Option<Secret>,
    token: Secret,
}

impl Binding {
    fn stored(&self, login: &str, now: SystemTime) -> StoredBinding {
        StoredBinding {
            driver: SPEC.name.to_string(),
            login: login.to_string(),
            device_id: self.device_id.clone(),
            pin: self.pin.as_ref().map(|p| p.expose().to_string()),
            token: self.token.expose().to_string(),
            saved_at: now.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs()),
        }
    }
}

/// The account's device: its binding (if any) and the id it sends.
struct Device {
    binding: Option<Binding>,
    /// The `X-Mlk-Device-Id` of this exporter: the binding's, or one made for a password login.
    id: String,
}

/// What the account's polls share, kept across reloads while the token file, login and
/// `base_url` stay the same.
struct State {
    /// The session token (`jwtToken`) of the current login.
    session: Session<Secret>,
    device: Mutex<Device>,
    latch: Latch,
}

struct Megafon {
    client: HttpClient,
    account: String,
    login: String,
    password: Option<Secret>,
    tokens: Option<TokenFile>,
    logins: Arc<LoginBoard>,
    clock: SharedClock,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::contract::account_options::<AccountOptions>(account, "megafon")?;
    let client = HttpClient::new(account, &o.http, cx)?;
    let tokens = TokenFile::locate(&account.name, o.token_file.as_deref(), cx.token_dir.as_deref());
    // Read once here; a file that cannot be used is the first poll's problem, not the config's.
    let loaded = tokens.as_ref().map(|t| t.load::<StoredBinding>());
    let stored = match &loaded {
        Some(Ok(Some(s))) => Some(s),
        _ => None,
    };
    let password = o.password.as_ref().map_or("", |p| p.expose());
    let token = stored.map_or("", |s| s.token.as_str());
    let fingerprint = cx.sessions.fingerprint(&[&o.login, password, token, o.http.base_url.as_str()]);
    let state = cx.sessions.get_or_create("megafon", &account.name, fingerprint, || {
        let binding = stored.filter(|s| s.login == o.login).map(binding_of);
        let id = binding.as_ref().map_or_else(onboarding::random_uuid, |b| b.device_id.clone());
        State { session: Session::default(), device: Mutex::new(Device { binding, id }), latch: Latch::default() }
    });
    cx.logins.track(&account.name);
    if let Some(Err(e)) = &loaded {
        tracing::warn!(account = %account.name, error = %e, "the megafon token file cannot be used");
    }
    Ok(Arc::new(Megafon {
        client,
        account: account.name.clone(),
        login: o.login.clone(),
        password: o.password.clone(),
        tokens,
        logins: cx.logins.clone(),
        clock: cx.clock.clone(),
        state,
    }))
}

fn binding_of(s: &StoredBinding) -> Binding {
    Binding {
        device_id: s.device_id.clone(),
        pin: s.pin.as_deref().map(Secret::new),
        token: Secret::new(s.token.as_str()),
    }
}

impl Driver for Megafon {
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

/// How MegaFon answered a login.
enum Login {
    Token(Secret),
    /// Refused, with what it said (safe to show).
    Refused(String),
}

impl Megafon {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        if let Some(number) = line.msisdn.as_deref().map(decode::national_number) {
            if number != self.login {
                return Err(PollError::Config(
                    "the line's msisdn is not the account's login: the MegaFon API reads only the number it is logged in as"
                        .into(),
                ));
            }
        }
        self.pass_latch(cx).await?;
        let response = self.get(cx, BALANCE).await?;
        let balance: BalanceBody = response.json()?;
        let response = self.get(cx, REMAINDERS).await?;
        let remainders: RemaindersBody = response.json()?;
        let (mut reading, notes) = map_remainders(&remainders.models);
        notes.into_iter().for_each(|n| cx.note(n));
        reading.balance = Some(Money { amount: balance.balance.0, currency: Currency::RUB });
        self.logins.logged_in(&self.account);
        Ok(reading)
    }

    /// Answers at once while the account waits for a person; takes a new token file.
    async fn pass_latch(&self, cx: &PollContext) -> Result<(), PollError> {
        if self.state.latch.pass(self.tokens.as_ref(), cx)? {
            let stored = self.tokens.as_ref().and_then(|t| t.load::<StoredBinding>().ok().flatten());
            if let Some(binding) = stored.filter(|s| s.login == self.login).map(|s| binding_of(&s)) {
                let mut device = self.device();
                device.id = binding.device_id.clone();
                device.binding = Some(binding);
            }
            self.state.session.clear().await;
        }
        Ok(())
    }

    fn device(&self) -> std::sync::MutexGuard<'_, Device> {
        self.state.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A GET with the session token; a rejected token is replaced once.
    async fn get(&self, cx: &PollContext, path: &'static str) -> Result<Response, PollError> {
        let response = self
            .state
            .session
            .call(
                cx,
                || self.log_in(cx),
                |jwt| self.with_session(self.client.get(path), &jwt).send(cx),
                |r| r.status().as_u16() == 401,
            )
            .await?;
        self.check(response, cx)
    }

    fn with_session<'c>(&self, request: Request<'c>, jwt: &Secret) -> Request<'c> {
        let device_id = self.device().id.clone();
        request
            .header("x-mlk-device-id", &device_id)
            .header("x-cabinet-capabilities", "rw-refresh-token-2022")
            .secret_header("x-cabinet-authorization", &Secret::new(format!("Bearer {}", jwt.expose())))
    }

    /// A session token: from the device token, else the PIN (then the device is bound again),
    /// else the password (then the device is bound). When none works, a person is needed.
    async fn log_in(&self, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        let binding = self.device().binding.clone();
        let mut refused = "no stored login (run `esim-exporter login`)".to_string();
        if let Some(binding) = binding {
            cx.note("logging in with the device token");
            let body = serde_json::json!({"captcha": null, "msisdn": self.login, "token": binding.token.expose()});
            match self.login_step(cx, self.client.post(BIOMETRY_LOGIN).json_body(&body), &binding.device_id).await? {
                Login::Token(jwt) => return Ok(Fresh { value: jwt, expires_in: None }),
                Login::Refused(why) => refused = format!("the device token was refused ({why})"),
            }
            if let Some(pin) = &binding.pin {
                cx.note("the device token was refused: logging in with the PIN");
                let body = serde_json::json!({"captcha": null, "msisdn": self.login, "pin": pin.expose()});
                match self.login_step(cx, self.client.post(PIN_LOGIN).json_body(&body), &binding.device_id).await? {
                    Login::Token(jwt) => {
                        self.rebind(cx, &jwt, binding.device_id.clone(), Some(pin.clone())).await;
                        return Ok(Fresh { value: jwt, expires_in: None });
                    }
                    Login::Refused(why) => refused = format!("the device token and the PIN were refused ({why})"),
                }
            }
        }
        if let Some(password) = &self.password {
            cx.note("logging in with the password");
            let device_id = self.device().id.clone();
            let form = [("login", self.login.as_str()), ("password", password.expose())];
            match self.login_step(cx, self.client.post(PASSWORD_LOGIN).form_body(&form), &device_id).await? {
                Login::Token(jwt) => {
                    self.rebind(cx, &jwt, device_id, None).await;
                    return Ok(Fresh { value: jwt, expires_in: None });
                }
                // A wrong password is the config's to fix: the scheduler's lock-out spaces retries.
                Login::Refused(why) => {
                    return Err(PollError::Auth(format!("{PASSWORD_LOGIN}: password refused ({why})")))
                }
            }
        }
        Err(self.wait_for_person(PollError::Auth(format!("{refused}; waiting for a person")), &refused))
    }

    /// One login request; a captcha or a lock closes the latch, other refusals are returned.
    async fn login_step(&self, cx: &PollContext, request: Request<'_>, device_id: &str) -> Result<Login, PollError> {
        let response = request.header("x-mlk-device-id", device_id).send(cx).await?;
        let status = response.status().as_u16();
        if response.status().is_success() && !response.is_html() {
            let body: LoginBody = response.json()?;
            return match body.jwt_token {
                Some(jwt) if !jwt.trim().is_empty() => Ok(Login::Token(Secret::new(jwt.trim()))),
                _ => Err(PollError::BadResponse(format!("{}: no jwtToken in the login answer", response.shown()))),
            };
        }
        if let Some(error) = self.person_needed(&response) {
            return Err(error);
        }
        match status {
            400 | 401 | 403 if !response.is_html() => Ok(Login::Refused(self.message(&response))),
            _ => {
                let what = format!("{}: HTTP {status}", response.shown());
                Err(response.check(cx).err().unwrap_or(PollError::BadResponse(what)))
            }
        }
    }

    /// Binds this exporter as a device with the session `jwt` (a new PIN unless one is given,
    /// then a device token) and stores the binding. A failure costs only the binding: the
    /// session goes on, and the next login tries again.
    async fn rebind(&self, cx: &PollContext, jwt: &Secret, device_id: String, pin: Option<Secret>) {
        match self.bind(cx, jwt, device_id, pin).await {
            Ok(binding) => {
                cx.note("device bound: new device token stored");
                self.store(&binding);
                let mut device = self.device();
                device.id = binding.device_id.clone();
                device.binding = Some(binding);
            }
            Err(e) => {
                cx.note(format!("binding the device failed ({}): logging in the same way next time", e.reason()));
                tracing::warn!(account = %self.account, reason = e.reason().as_str(), error = %e, "cannot bind the exporter as a MegaFon device");
            }
        }
    }

    async fn bind(
        &self,
        cx: &PollContext,
        jwt: &Secret,
        device_id: String,
        pin: Option<Secret>,
    ) -> Result<Binding, PollError> {
        let pin = pin.unwrap_or_else(|| Secret::new(format!("{:04}", onboarding::random_u64() % 10_000)));
        let body = serde_json::json!({"captcha": null, "pin": pin.expose()});
        let request = self.client.post(PROFILE_PIN).json_body(&body);
        let response = self.with_session(request, jwt).header("x-mlk-device-id", &device_id).send(cx).await?;
        self.check(response, cx)?;
        let request = self.client.post(PROFILE_BIOMETRY).json_body(&serde_json::json!({}));
        let response = self.with_session(request, jwt).header("x-mlk-device-id", &device_id).send(cx).await?;
        let body: BiometryBody = self.check(response, cx)?.json()?;
        let token = body
            .token
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| PollError::BadResponse(format!("POST {PROFILE_BIOMETRY}: no token in the answer")))?;
        Ok(Binding { device_id, pin: Some(pin), token: Secret::new(token.trim()) })
    }

    fn store(&self, binding: &Binding) {
        let Some(tokens) = &self.tokens else {
            tracing::warn!(account = %self.account, "no token_file and no --storage.path: the MegaFon device token lives in memory only");
            return;
        };
        if let Err(e) = tokens.save(&binding.stored(&self.login, self.clock.now())) {
            tracing::error!(account = %self.account, error = %e, "cannot store the MegaFon device token; a restart will need `esim-exporter login`");
        }
    }

    /// Closes the latch: from now on polls answer `error` without a request.
    fn wait_for_person(&self, error: PollError, why: &str) -> PollError {
        self.state.latch.close(error.clone(), self.tokens.as_ref());
        self.logins.needs_person(&self.account, SPEC.name, why, self.clock.now());
        error
    }

    /// A captcha demand (a page or code `a211`) or a lock (`a216`, too many attempts): the
    /// account waits for a person.
    fn person_needed(&self, response: &Response) -> Option<PollError> {
        if let Some(PollError::Captcha(what)) = response.error(self.clock.now()) {
            let why = "MegaFon asks for a captcha";
            return Some(self.wait_for_person(PollError::Captcha(format!("{what}; waiting for a person")), why));
        }
        if response.status().is_success() {
            return None;
        }
        let failure = failure_of(response)?;
        let message = self.message(response);
        let code = failure.code.as_ref().map(|c| c.0.as_str()).unwrap_or("");
        let lower = message.to_lowercase();
        let what = response.shown();
        if code == CAPTCHA_CODE || lower.contains("картинк") || lower.contains("captcha") {
            let why = "MegaFon asks for a captcha";
            return Some(
                self.wait_for_person(
                    PollError::Captcha(format!("{what}: {why} ({message}); waiting for a person")),
                    why,
                ),
            );
        }
        if code == BLOCKED_CODE || lower.contains("заблокирован") || lower.contains("превышено количество попыток")
        {
            let why = "MegaFon blocked the login";
            return Some(
                self.wait_for_person(PollError::Auth(format!("{what}: {why} ({message}); waiting for a person")), why),
            );
        }
        None
    }

    /// The status mapping with MegaFon's own codes.
    fn check(&self, response: Response, cx: &PollContext) -> Result<Response, PollError> {
        match self.person_needed(&response) {
            Some(error) => Err(error),
            None => response.check(cx),
        }
    }

    /// The operator's `message` (or `code`), short, one line, the number scrubbed.
    fn message(&self, response: &Response) -> String {
        let failure = failure_of(response);
        let text = failure
            .as_ref()
            .and_then(|f| f.message.clone().or_else(|| f.code.as_ref().map(|c| c.0.clone())))
            .unwrap_or_else(|| format!("HTTP {}", response.status().as_u16()));
        let one_line: String = text.chars().filter(|c| !c.is_control()).take(100).collect();
        http::scrub(&one_line, &[&self.login, &format!("7{}", self.login)])
    }

    /// `esim-exporter login`: an SMS code, then the device binding, stored in the token file.
    async fn onboard_with_sms(&self, person: &mut dyn Person) -> Result<PathBuf, PollError> {
        let Some(tokens) = self.tokens.clone() else {
            return Err(PollError::Config(format!(
                "account `{}` has no `token_file` and no --storage.path was given: the login token needs a home",
                self.account
            )));
        };
        let step = || PollContext::new(STEP_TIMEOUT, self.clock.clone());
        let device_id = onboarding::random_uuid();
        person
            .tell(&format!("Asking MegaFon to send an SMS code to {}.", Msisdn(&format!("+7{}", self.login)).masked()));
        let cx = step();
        let request = self.client.post(OTP_REQUEST).form_body(&[("login", self.login.as_str())]);
        let response = request.header("x-mlk-device-id", &device_id).send(&cx).await?;
        let response = self.check(response, &cx)?;
        let _: serde_json::Value = response.json()?;
        let Some(code) = person.ask("SMS code from MegaFon: ").filter(|c| !c.is_empty()) else {
            return Err(PollError::Config("no SMS code was entered".into()));
        };
        let cx = step();
        let request = self.client.post(OTP_SUBMIT).form_body(&[("login", self.login.as_str()), ("otp", code.as_str())]);
        let jwt = match self.login_step(&cx, request, &device_id).await? {
            Login::Token(jwt) => jwt,
            Login::Refused(why) => return Err(PollError::Auth(format!("MegaFon refused the SMS code ({why})"))),
        };
        person.tell("Code accepted. Binding the exporter as a device (a PIN and a device token).");
        let binding = self.bind(&cx, &jwt, device_id, None).await?;
        tokens.save(&binding.stored(&self.login, self.clock.now())).map_err(|e| PollError::Config(e.to_string()))?;
        Ok(tokens.path().to_path_buf())
    }
}

/// `code` and `message` of a MegaFon error body.
#[derive(Deserialize)]
struct Failure {
    #[serde(default)]
    code: Option<Text>,
    #[serde(default)]
    message: Option<String>,
}

fn failure_of(response: &Response) -> Option<Failure> {
    serde_json::from_slice::<Failure>(response.body()).ok().filter(|f| f.code.is_some() || f.message.is_some())
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "jwtToken", default)]
    jwt_token: Option<String>,
}

#[derive(Deserialize)]
struct BiometryBody {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
struct BalanceBody {
    /// Rubles, sign kept (`balanceWithLimit` includes credit: not the balance).
    balance: Num,
}

#[derive(Deserialize)]
struct RemaindersBody {
    #[serde(deserialize_with = "one_or_many", default)]
    models: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    #[serde(default)]
    name: Option<String>,
    #[serde(deserialize_with = "one_or_many", default)]
    remainders: Vec<Remainder>,
}

#[derive(Deserialize)]
struct Remainder {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    available: Option<Quantity>,
    /// The compact shape: `{"value": 5.2, "unit": "ГБ"}`.
    #[serde(rename = "availableValue", default)]
    available_value: Option<ValueWithUnit>,
    #[serde(default)]
    total: Option<Quantity>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(rename = "dateFrom", default)]
    date_from: Option<String>,
    #[serde(rename = "dateTo", default)]
    date_to: Option<String>,
    #[serde(default)]
    monthly: Option<bool>,
    #[serde(rename = "optionId", default)]
    option_id: Option<Text>,
}

#[derive(Deserialize)]
struct ValueWithUnit {
    value: Quantity,
    #[serde(default)]
    unit: Option<String>,
}

/// The kind a Russian (or English) unit string counts: `ГБ`/`МБ`/`КБ`, `мин`, `сек`, `шт`/`SMS`.
fn kind_of(unit: &str, name: &str) -> Option<Kind> {
    let u = unit.trim().trim_end_matches('.').to_lowercase();
    if let Some(bytes) = decode::data_unit_bytes(&u) {
        return Some(Kind::Data(bytes as f64));
    }
    if u.starts_with("мин") || u.starts_with("min") {
        return Some(Kind::Voice(60.0));
    }
    if u.starts_with("сек") || u.starts_with("sec") || u == "с" {
        return Some(Kind::Voice(1.0));
    }
    let name = name.to_lowercase();
    let mms = |s: &str| s.contains("mms") || s.contains("ммс");
    if (u == "шт" || u.contains("sms") || u.contains("смс")) && !mms(&u) && !mms(&name) {
        return Some(Kind::Sms);
    }
    None
}

/// A value in the kind's base unit, by its own unit when it carries one (`"5,2 ГБ"`).
fn in_base(kind: Kind, quantity: &Quantity) -> f64 {
    let field = match kind {
        Kind::Voice(f) | Kind::Data(f) => f,
        Kind::Sms => 1.0,
    };
    let own = quantity.unit.as_deref().and_then(|u| kind_of(u, "")).and_then(|k| match (k, kind) {
        (Kind::Data(f), Kind::Data(_)) | (Kind::Voice(f), Kind::Voice(_)) => Some(f),
        _ => None,
    });
    quantity.value * own.unwrap_or(field)
}

/// A total made of nines only (`999999`, `9999999`): MegaFon's "no limit".
fn all_nines(value: f64) -> bool {
    value >= 999_999.0 && value.fract() == 0.0 && (value as u64).to_string().bytes().all(|b| b == b'9')
}

/// Sums the remainders by kind. Models are read from the last (a "frozen" copy of an option
/// comes first, so each option counts once); unlimited, negative, roaming, tethering and
/// rollover packages are left out. Returns the reading (balance unset) and a note per skip.
fn map_remainders(models: &[Model]) -> (Reading, Vec<String>) {
    let mut notes = Vec::new();
    let mut seen = HashSet::new();
    let mut sums = Remainders::default();
    for model in models.iter().rev() {
        for r in &model.remainders {
            let name = r.name.clone().or_else(|| model.name.clone()).unwrap_or_default();
            let (available, own_unit) = match (&r.available, &r.available_value) {
                (Some(q), _) => (q.clone(), None),
                (None, Some(v)) => (v.value.clone(), v.unit.clone()),
                (None, None) => {
                    notes.push(format!("remainder `{name}` has no available value"));
                    continue;
                }
            };
            let unit = available.unit.clone().or(own_unit).or_else(|| r.unit.clone()).unwrap_or_default();
            if let Some(id) = &r.option_id {
                if !seen.insert((id.0.clone(), unit.clone())) {
                    notes.push(format!("remainder `{name}` listed twice: counted once"));
                    continue;
                }
            }
            let Some(kind) = kind_of(&unit, &name) else {
                notes.push(format!("remainder `{name}` skipped (unit `{unit}`)"));
                continue;
            };
            if let Some(why) = decode::excluded_package(&name) {
                notes.push(format!("remainder `{name}` skipped ({why})"));
                continue;
            }
            let field_unit = r.unit.clone().unwrap_or(unit.clone());
            let with_unit =
                |q: &Quantity| Quantity { value: q.value, unit: q.unit.clone().or(Some(field_unit.clone())) };
            let current = in_base(kind, &with_unit(&available));
            let total = r.total.as_ref().map(|t| in_base(kind, &with_unit(t)));
            let unlimited =
                [Some(available.value), r.total.as_ref().map(|t| t.value)].into_iter().flatten().any(all_nines)
                    || match kind {
                        Kind::Voice(_) => current / 60.0 > UNLIMITED_MINUTES,
                        Kind::Data(_) => total.unwrap_or(current) >= UNLIMITED_MEGABYTES * 1_048_576.0,
                        Kind::Sms => false,
                    };
            if unlimited {
                notes.push(format!("remainder `{name}` skipped (unlimited)"));
                continue;
            }
            if current < 0.0 {
                notes.push(format!("remainder `{name}` skipped (negative)"));
                continue;
            }
            sums.add(kind, current, total);
            if let Some(end) = end_of(r) {
                sums.ends_at(end);
            }
        }
    }
    (sums.into_reading(), notes)
}

/// `dateTo`, or a month after `dateFrom` for a monthly package.
fn end_of(r: &Remainder) -> Option<SystemTime> {
    if let Some(end) = r.date_to.as_deref().and_then(decode::parse_rfc3339) {
        return Some(end);
    }
    let from = r.date_from.as_deref().and_then(decode::parse_rfc3339)?;
    (r.monthly == Some(true)).then(|| from + Duration::from_secs(30 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::ByteSize;

    fn remainders(json: &str) -> (Reading, Vec<String>) {
        let body: RemaindersBody = serde_json::from_str(json).unwrap();
        map_remainders(&body.models)
    }

    const GIB: f64 = 1_073_741_824.0;

    #[test]
    fn russian_units_are_converted_and_5_2_gb_is_exact() {
        let (r, notes) = remainders(
            r#"{"models":[{"name":"Тариф","remainders":[
              {"name":"Интернет","available":"5,2 ГБ","total":30,"unit":"ГБ","dateTo":"2026-07-31T23:59:59+03:00","optionId":"i"},
              {"name":"Интернет+","available":512,"total":"1024","unit":"МБ","optionId":"p"},
              {"name":"Бонус","available":"2048 КБ","total":2048,"unit":"КБ"},
              {"name":"Минуты","available":420,"total":600,"unit":"мин","dateTo":"2026-07-20T23:59:59+03:00"},
              {"name":"Секунды","available":30,"unit":"сек"},
              {"name":"SMS","available":100,"total":100,"unit":"шт"},
              {"name":"MMS","available":10,"total":10,"unit":"шт"}]}]}"#,
        );
        let data = 5.2 * GIB + 512.0 * 1_048_576.0 + 2048.0 * 1024.0;
        assert_eq!(r.data_remaining, Some(ByteSize(data.round() as u64)));
        assert_eq!(r.data_quota, Some(ByteSize((31.0 * GIB + 2048.0 * 1024.0) as u64)));
        assert_eq!(r.voice_remaining, Some(Duration::from_secs(420 * 60 + 30)));
        assert_eq!(r.sms_remaining, Some(100));
        assert_eq!(r.quota_expiry, decode::parse_rfc3339("2026-07-20T20:59:59Z"));
        assert_eq!(notes.len(), 1, "MMS skipped: {notes:?}");
    }

    #[test]
    fn latin_kb_beside_cyrillic_units_is_read_in_the_same_binary_steps() {
        // ru.md §10: remaindersMini mixes Latin `KB` with Cyrillic `МБ`/`ГБ`/`ТБ`.
        let (r, _) = remainders(
            r#"{"models":[{"name":"Тариф","remainders":[
              {"name":"Интернет","available":"500 МБ","total":"1 ГБ","unit":"МБ"},
              {"name":"Бонус","available":"2048 KB","total":"4096 KB","unit":"KB"},
              {"name":"Пакет","available":3,"total":3,"unit":"ГБ"}]}]}"#,
        );
        let data = 500.0 * 1_048_576.0 + 2048.0 * 1024.0 + 3.0 * GIB;
        assert_eq!(r.data_remaining, Some(ByteSize(data as u64)));
        assert_eq!(r.data_quota, Some(ByteSize((GIB + 4096.0 * 1024.0 + 3.0 * GIB) as u64)));
    }

    #[test]
    fn unlimited_negative_roaming_and_frozen_duplicates_are_left_out() {
        let (r, notes) = remainders(
            r#"{"models":[
              {"name":"Опция (заморожена)","remainders":[{"name":"Интернет+","available":1,"total":1,"unit":"ГБ","optionId":"p"}]},
              {"name":"Тариф","remainders":[
                {"name":"Безлимит","available":999999,"total":999999,"unit":"ГБ"},
                {"name":"Минуты","available":1000000500,"unit":"мин"},
                {"name":"Межгород","available":-5,"total":100,"unit":"мин"},
                {"name":"Интернет в роуминге","available":500,"total":500,"unit":"МБ"},
                {"name":"Интернет+","available":2,"total":3,"unit":"ГБ","optionId":"p"}]}]}"#,
        );
        assert_eq!(r.data_remaining, Some(ByteSize(2 * (1 << 30))), "the last model wins: {notes:?}");
        assert_eq!(r.data_quota, Some(ByteSize(3 * (1 << 30))));
        assert_eq!(r.voice_remaining, None, "absent, never 0");
        assert_eq!(notes.len(), 5, "{notes:?}");
    }

    #[test]
    fn the_compact_shape_and_a_monthly_package_without_an_end() {
        let (r, _) = remainders(
            r#"{"models":[{"remainders":[
              {"name":"Интернет","availableValue":{"value":"1,5","unit":"ГБ"},"dateFrom":"2026-07-01T00:00:00Z","monthly":true}]}]}"#,
        );
        assert_eq!(r.data_remaining, Some(ByteSize((1.5 * GIB) as u64)));
        assert_eq!(r.data_quota, None, "no total: absent");
        assert_eq!(r.quota_expiry, decode::parse_rfc3339("2026-07-31T00:00:00Z"));
    }

    #[test]
    fn the_stored_binding_never_prints_its_secrets() {
        let binding =
            Binding { device_id: "d".into(), pin: Some(Secret::new("1234")), token: Secret::new("tok-secret") };
        let shown = format!("{:?} {:?}", binding.token, binding.pin);
        assert!(!shown.contains("tok-secret") && !shown.contains("1234"), "{shown}");
    }
}
