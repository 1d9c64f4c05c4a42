//! `beeline`: the my.beeline.ru API (`/api/1.0`, consumer and corporate logins). Token login
//! (the newer `PUT /api/2.0/auth/auth`, falling back to `GET /api/1.0/auth`), the number's pay
//! type once, then the prepaid or postpaid balance and remainders (`accumulators` or `rests`)
//! mapped by unit; the login's numbers from `sso/subscribers`. Shapes follow
//! `shared/operators/ru.md` §4.1; where sources disagree both are read.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::contract::{BoxFuture, BuildContext, BuildError, Cost, DiscoveredLine, Driver, DriverSpec, PollContext};
use super::kit::decode::{self, one_or_many, Num, Quantity, Text};
use super::kit::http::{self, HttpClient, HttpOptions, Response};
use super::kit::remainders::{Kind, Remainders};
use super::kit::session::{Fresh, Session, Shared};
use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::config::units::Rate;
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::{Money, Reading};

pub const DEFAULT_BASE_URL: &str = "https://my.beeline.ru";
const AUTH_V1: &str = "/api/1.0/auth";
const AUTH_V2: &str = "/api/2.0/auth/auth";
const PAY_TYPE: &str = "/api/1.0/info/payType";
const PREPAID_BALANCE: &str = "/api/1.0/info/prepaidBalance";
const POSTPAID_BALANCE: &str = "/api/1.0/info/postpaidBalance";
const ACCUMULATORS: &str = "/api/1.0/info/accumulators";
const RESTS: &str = "/api/1.0/info/rests";
const SUBSCRIBERS: &str = "/api/1.0/sso/subscribers";
/// `meta.code` of `prepaidBalance` asked about a postpaid number.
const WRONG_PAY_TYPE: i64 = 49_999;
/// `meta.code`s of a refused login: `AUTH_ERROR` (also "weak password"), `AUTH_USER_BLOCKED_ERROR`.
const AUTH_CODES: [i64; 2] = [20_002, 20_014];
/// `meta.code` `SYSTEM_ERROR`: a transient failure of the operator, not a refusal (ru.md §10).
const SYSTEM_ERROR: i64 = 50_000;
/// A pay type rarely changes; a wrong one is noticed and forgotten at once anyway.
const PAY_TYPE_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// `prepaidBalance` answers exactly this on some tariffs when it has no real value (ru.md §4.1).
const GLITCH_BALANCE: f64 = 777.0;

pub static SPEC: DriverSpec = DriverSpec {
    name: "beeline",
    summary: "my.beeline.ru API: prepaid or postpaid balance, accumulators and rests, the login's numbers",
    example: r#"
accounts:
  corp-beeline:
    driver: beeline
    login: "9060000000"               # the LK login (often the 10-digit number)
    password: "change-me"             # in a real config: ${BEELINE_PASSWORD} or password_file
    # login_api: auto                 # auto (2.0, then 1.0), v2 or v1
    # base_url: https://my.beeline.ru
    # proxy_url: http://proxy.corp.example:3128
lines:
  - name: beeline-router-1
    account: corp-beeline
    msisdn: "+79060000001"
    # ban: "123456789"                # postpaid billing account: its balance read once for all its lines
"#,
    aliases: &[],
    needs_account: true,
    speaks_http: true,
    can_discover: true,
    default_operator: "beeline",
    // No documented limit; clients that work keep to about one request a second and get 429s
    // when faster. A poll is two requests once the pay type is known.
    default_rate_limit: Some(Rate { count: 1, period: Duration::from_secs(2) }),
    account_options,
    line_options,
    build,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoginApi {
    /// `PUT /api/2.0/auth/auth`, then `GET /api/1.0/auth` when 2.0 is not there.
    Auto,
    V1,
    V2,
}

#[derive(Clone, Debug)]
struct AccountOptions {
    http: HttpOptions,
    login: String,
    password: Secret,
    login_api: LoginApi,
}

/// Line keys of `beeline`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineOptions {
    /// Postpaid billing account (BAN): balance by account, shared by its lines.
    pub ban: Option<String>,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, DEFAULT_BASE_URL);
    let login = f.required_string("login").unwrap_or_default();
    let has_password = f.has("password") || f.has("password_file");
    let password = f.secret("password", "password_file").unwrap_or_else(|| Secret::new(""));
    if !has_password {
        f.sink().error(Some(f.pos()), f.path(), "missing required key `password` (or `password_file`)");
    }
    let login_api = match f.node("login_api").map(|n| n.pos) {
        Some(pos) => match f.string("login_api").as_deref() {
            Some("auto") => LoginApi::Auto,
            Some("v1") => LoginApi::V1,
            Some("v2") => LoginApi::V2,
            other => {
                f.error("login_api", pos, format!("`{}` is not one of auto, v1, v2", other.unwrap_or("")));
                LoginApi::Auto
            }
        },
        None => LoginApi::Auto,
    };
    DriverOptions(Arc::new(AccountOptions { http, login, password, login_api }))
}

/// The options of every line without `ban` (most of a fleet): one allocation, shared.
static WITHOUT_LINE_KEYS: LazyLock<[DriverOptions; 1]> =
    LazyLock::new(|| [DriverOptions(Arc::new(LineOptions::default()))]);

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    let pos = f.node("ban").map(|n| n.pos);
    let ban = f.string("ban").map(|s| s.trim().to_string());
    if let (Some(pos), Some(ban)) = (pos, &ban) {
        if ban.is_empty() || !ban.bytes().all(|b| b.is_ascii_digit()) {
            f.error("ban", pos, "expected the billing account number (digits)");
        }
    }
    if !f.has("msisdn") {
        f.sink().error(Some(f.pos()), f.path(), "a `beeline` line needs `msisdn`");
    }
    DriverOptions::shared(LineOptions { ban }, &*WITHOUT_LINE_KEYS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PayType {
    Prepaid,
    Postpaid,
}

/// What the account's polls share, kept across reloads: a Beeline login may send the owner
/// an SMS, so it is done as rarely as possible.
#[derive(Default)]
struct State {
    token: Session<Secret>,
    pay_types: Shared<String, PayType>,
    /// Postpaid balances by BAN.
    balances: Shared<String, Money>,
    /// The login API that last gave a token (`login_api: auto`): 0 none yet, 1 v1, 2 v2.
    login_api: AtomicU8,
}

struct Beeline {
    client: HttpClient,
    login: String,
    password: Secret,
    login_api: LoginApi,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::contract::account_options::<AccountOptions>(account, "beeline")?;
    let client = HttpClient::new(account, &o.http, cx)?;
    let fingerprint = cx.sessions.fingerprint(&[&o.login, o.password.expose(), o.http.base_url.as_str()]);
    let state = cx.sessions.get_or_create("beeline", &account.name, fingerprint, State::default);
    Ok(Arc::new(Beeline {
        client,
        login: o.login.clone(),
        password: o.password.clone(),
        login_api: o.login_api,
        state,
    }))
}

impl Driver for Beeline {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(self.read(line, cx))
    }

    fn discover<'a>(&'a self, cx: &'a PollContext) -> BoxFuture<'a, Result<Vec<DiscoveredLine>, PollError>> {
        Box::pin(self.list_numbers(cx))
    }

    /// Balance and remainders per line once the pay type is known (a day's cache).
    fn cost(&self, lines: usize) -> Option<Cost> {
        Some(Cost { requests_per_cycle: 2.0 * lines as f64, requests_per_listing: 1.0, ..Cost::default() })
    }
}

/// `meta` of every answer: success is `status: "OK"` (code 20000).
#[derive(Deserialize)]
struct Meta {
    status: String,
    #[serde(default)]
    code: Option<Num>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct WithMeta {
    #[serde(default)]
    meta: Option<Meta>,
}

/// A non-OK `meta`.
enum MetaFailure {
    WrongPayType,
    Error(PollError),
}

impl Beeline {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let Some(ctn) = line.msisdn.as_deref().map(decode::national_number) else {
            return Err(PollError::Config("a beeline line needs `msisdn`".into()));
        };
        let ban = line.options.get::<LineOptions>().and_then(|o| o.ban.clone());
        let pay_type =
            self.state.pay_types.get_or_fetch(cx, ctn.clone(), PAY_TYPE_MAX_AGE, || self.pay_type(cx, &ctn)).await?;
        match pay_type {
            PayType::Prepaid => match self.prepaid(cx, &ctn).await {
                Err(MetaFailure::WrongPayType) => {
                    cx.note("prepaidBalance says the number is postpaid: reading it as postpaid from now on");
                    self.state.pay_types.put(ctn.clone(), PayType::Postpaid);
                    self.postpaid(cx, &ctn, ban.as_deref(), line.poll_interval).await
                }
                Err(MetaFailure::Error(e)) => Err(e),
                Ok(reading) => Ok(reading),
            },
            PayType::Postpaid => self.postpaid(cx, &ctn, ban.as_deref(), line.poll_interval).await,
        }
    }

    async fn prepaid(&self, cx: &PollContext, ctn: &str) -> Result<Reading, MetaFailure> {
        let response = self.info(cx, PREPAID_BALANCE, "ctn", ctn).await.map_err(MetaFailure::Error)?;
        let balance: BalanceBody = decode(&response, &self.secrets())?;
        let money = balance.money(&response).map_err(MetaFailure::Error)?;
        if money.amount == GLITCH_BALANCE {
            return Err(MetaFailure::Error(PollError::BadResponse(format!(
                "{}: balance 777, a value the API gives when it has none (the last reading stays)",
                response.shown()
            ))));
        }
        let response = self.info(cx, ACCUMULATORS, "ctn", ctn).await.map_err(MetaFailure::Error)?;
        let body: AccumulatorsBody = decode(&response, &self.secrets())?;
        let (mut reading, notes) = map_accumulators(&body.accumulators);
        notes.into_iter().for_each(|n| cx.note(n));
        finish(&mut reading, money, &balance);
        Ok(reading)
    }

    async fn postpaid(
        &self,
        cx: &PollContext,
        ctn: &str,
        ban: Option<&str>,
        interval: Duration,
    ) -> Result<Reading, PollError> {
        let (money, balance) = match ban {
            Some(ban) => {
                let max_age = interval / 2;
                let money = self
                    .state
                    .balances
                    .get_or_fetch(cx, ban.to_string(), max_age, || async {
                        let response = self.info(cx, POSTPAID_BALANCE, "ban", ban).await?;
                        let body: BalanceBody = decode(&response, &self.secrets()).map_err(MetaFailure::into_error)?;
                        body.money(&response)
                    })
                    .await?;
                (money, None)
            }
            None => {
                let response = self.info(cx, POSTPAID_BALANCE, "ctn", ctn).await?;
                let body: BalanceBody = decode(&response, &self.secrets()).map_err(MetaFailure::into_error)?;
                (body.money(&response)?, Some(body))
            }
        };
        let response = self.info(cx, RESTS, "ctn", ctn).await?;
        let body: RestsBody = decode(&response, &self.secrets()).map_err(MetaFailure::into_error)?;
        let (mut reading, notes) = map_rests(&body.rests);
        notes.into_iter().for_each(|n| cx.note(n));
        finish(&mut reading, money, balance.as_ref().unwrap_or(&BalanceBody::default()));
        Ok(reading)
    }

    async fn pay_type(&self, cx: &PollContext, ctn: &str) -> Result<PayType, PollError> {
        let response = self.info(cx, PAY_TYPE, "ctn", ctn).await?;
        let body: PayTypeBody = decode(&response, &self.secrets()).map_err(MetaFailure::into_error)?;
        let pay_type = body.pay_type.as_deref().unwrap_or("").trim().to_ascii_uppercase();
        cx.note(format!("pay type {pay_type}"));
        match pay_type.as_str() {
            "PREPAID" => Ok(PayType::Prepaid),
            "POSTPAID" => Ok(PayType::Postpaid),
            // Unknown: try prepaid; its answer corrects a wrong guess (meta code 49999).
            _ => Ok(PayType::Prepaid),
        }
    }

    /// A GET with the token as cookie `token` (what `payType` reads) and header `X-API-Token`
    /// (what the balance and remainder endpoints read, ru.md §10); a rejected token is replaced
    /// once.
    async fn info(&self, cx: &PollContext, path: &'static str, key: &str, value: &str) -> Result<Response, PollError> {
        let response = self
            .state
            .token
            .call(
                cx,
                || self.log_in(cx),
                |token| {
                    self.client
                        .get(path)
                        .query(key, value)
                        .cookie("token", &token)
                        .secret_header("x-api-token", &token)
                        .send(cx)
                },
                token_rejected,
            )
            .await?;
        check(response, cx)
    }

    async fn log_in(&self, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        let response = match self.login_api {
            LoginApi::V1 => self.login_v1(cx).await?,
            LoginApi::V2 => self.login_v2(cx).await?,
            LoginApi::Auto => {
                // The API that worked last time first (2.0 when none has yet), the other one
                // when the first is not there (404/405/501).
                let first = match self.state.login_api.load(Ordering::Relaxed) {
                    1 => LoginApi::V1,
                    _ => LoginApi::V2,
                };
                let second = if first == LoginApi::V1 { LoginApi::V2 } else { LoginApi::V1 };
                let response = self.login_with(cx, first).await?;
                let used = if login_api_missing(&response) {
                    cx.note(format!(
                        "auth {} answers HTTP {}: logging in through {}",
                        api_name(first),
                        response.status().as_u16(),
                        api_name(second)
                    ));
                    (second, self.login_with(cx, second).await?)
                } else {
                    (first, response)
                };
                let fresh = self.token_of(used.1, cx)?;
                self.state.login_api.store(if used.0 == LoginApi::V1 { 1 } else { 2 }, Ordering::Relaxed);
                return Ok(fresh);
            }
        };
        self.token_of(response, cx)
    }

    async fn login_with(&self, cx: &PollContext, api: LoginApi) -> Result<Response, PollError> {
        match api {
            LoginApi::V1 => self.login_v1(cx).await,
            _ => self.login_v2(cx).await,
        }
    }

    /// The token of a login answer, or why there is none.
    fn token_of(&self, response: Response, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        if let Ok(WithMeta { meta: Some(meta) }) = serde_json::from_slice::<WithMeta>(response.body()) {
            if meta.code.map(|c| c.0 as i64) == Some(SYSTEM_ERROR) {
                return Err(meta_error(&meta, response.shown(), &self.secrets()));
            }
        }
        let status = response.status().as_u16();
        if matches!(status, 400 | 401 | 403) {
            let detail = meta_message(&response, &self.secrets()).map(|m| format!(" ({m})")).unwrap_or_default();
            return Err(PollError::Auth(format!("{}: HTTP {status}, login refused{detail}", response.shown())));
        }
        let response = check(response, cx)?;
        let body: AuthBody = match decode(&response, &self.secrets()) {
            Ok(body) => body,
            // Any refusal of a login is `auth`: retrying a wrong password locks the account.
            Err(MetaFailure::Error(PollError::BadResponse(m))) if m.contains("meta") => return Err(PollError::Auth(m)),
            Err(e) => return Err(e.into_error()),
        };
        match body.token {
            Some(token) if !token.trim().is_empty() => Ok(Fresh { value: Secret::new(token.trim()), expires_in: None }),
            _ => Err(PollError::BadResponse(format!("{}: no token in the login answer", response.shown()))),
        }
    }

    async fn login_v1(&self, cx: &PollContext) -> Result<Response, PollError> {
        cx.note("logging in to Beeline (api 1.0)");
        self.client.get(AUTH_V1).query("login", &self.login).secret_query("password", &self.password).send(cx).await
    }

    async fn login_v2(&self, cx: &PollContext) -> Result<Response, PollError> {
        cx.note("logging in to Beeline (api 2.0)");
        #[derive(serde::Serialize)]
        struct Password<'a> {
            password: &'a str,
        }
        self.client
            .put(AUTH_V2)
            .query("userType", "Mobile")
            .query("login", &self.login)
            .json_body(&Password { password: self.password.expose() })
            .send(cx)
            .await
    }

    /// The numbers of the login (`sso/subscribers`).
    async fn list_numbers(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        let response = self.info(cx, SUBSCRIBERS, "login", &self.login).await?;
        let body: SubscribersBody = decode(&response, &self.secrets()).map_err(MetaFailure::into_error)?;
        let mut lines: Vec<DiscoveredLine> = Vec::new();
        for subscriber in body.subscribers {
            let ctn = decode::national_number(&subscriber.ctn.0);
            if ctn.len() != 10 || lines.iter().any(|l| l.id == format!("7{ctn}")) {
                continue;
            }
            lines.push(DiscoveredLine {
                id: format!("7{ctn}"),
                msisdn: Some(format!("+7{ctn}")),
                iccid: None,
                labels: Vec::new(),
                options: DriverOptions(Arc::new(LineOptions::default())),
            });
        }
        cx.note(format!("sso/subscribers: {} numbers", lines.len()));
        Ok(lines)
    }

    fn secrets(&self) -> [&str; 2] {
        [&self.login, self.password.expose()]
    }
}

impl MetaFailure {
    fn into_error(self) -> PollError {
        match self {
            MetaFailure::WrongPayType => {
                PollError::BadResponse(format!("meta code {WRONG_PAY_TYPE}: the number has another pay type"))
            }
            MetaFailure::Error(e) => e,
        }
    }
}

/// The login API is not there: 404, 405 or 501 (ru.md §10).
fn login_api_missing(response: &Response) -> bool {
    matches!(response.status().as_u16(), 404 | 405 | 501)
}

fn api_name(api: LoginApi) -> &'static str {
    match api {
        LoginApi::V1 => "/api/1.0/auth",
        _ => "/api/2.0/auth/auth",
    }
}

/// A rejected token: HTTP 401, or a `meta` complaining about the token or the session [INF].
fn token_rejected(response: &Response) -> bool {
    if response.status().as_u16() == 401 {
        return true;
    }
    let Ok(WithMeta { meta: Some(meta) }) = serde_json::from_slice::<WithMeta>(response.body()) else {
        return false;
    };
    let message = meta.message.unwrap_or_default().to_ascii_uppercase();
    !meta.status.eq_ignore_ascii_case("OK") && (message.contains("TOKEN") || message.contains("SESSION"))
}

/// HTTP status mapping, plus the plain-text "Too Many Requests" some answers carry.
fn check(response: Response, cx: &PollContext) -> Result<Response, PollError> {
    let head = &response.body()[..response.body().len().min(256)];
    if head.windows(17).any(|w| w.eq_ignore_ascii_case(b"too many requests")) && !response.status().is_success()
        || (response.status().is_success()
            && String::from_utf8_lossy(head).trim().eq_ignore_ascii_case("too many requests"))
    {
        let retry_after = response.header("retry-after").and_then(|v| http::parse_retry_after(v, cx.clock.now()));
        return Err(PollError::RateLimited { retry_after });
    }
    response.check(cx)
}

/// Decodes `T` after checking `meta`.
fn decode<T: DeserializeOwned>(response: &Response, secrets: &[&str]) -> Result<T, MetaFailure> {
    let with_meta: WithMeta = response.json().map_err(MetaFailure::Error)?;
    if let Some(meta) = with_meta.meta {
        if !meta.status.eq_ignore_ascii_case("OK") {
            let code = meta.code.map(|c| c.0 as i64);
            if code == Some(WRONG_PAY_TYPE) {
                return Err(MetaFailure::WrongPayType);
            }
            return Err(MetaFailure::Error(meta_error(&meta, response.shown(), secrets)));
        }
    }
    response.json().map_err(MetaFailure::Error)
}

fn meta_error(meta: &Meta, shown: &str, secrets: &[&str]) -> PollError {
    let message = sanitize(meta.message.as_deref().unwrap_or(""), secrets);
    let upper = message.to_ascii_uppercase();
    let code = meta.code.map(|c| format!(" {}", c.0 as i64)).unwrap_or_default();
    let what = format!("{shown}: meta {}{code} {message}", meta.status);
    const AUTH: [&str; 6] =
        ["AUTH_", "LOGIN_TRY_NUMBER_EXCEED", "FOR.EXISTENT.USERS.ONLY", "TOKEN", "PASSWORD", "BLOCKED"];
    let code = meta.code.map(|c| c.0 as i64);
    if code == Some(SYSTEM_ERROR) || upper.starts_with("SYSTEM_ERROR") {
        PollError::Unavailable(what.trim_end().to_string())
    } else if code.is_some_and(|c| AUTH_CODES.contains(&c)) || AUTH.iter().any(|a| upper.contains(a)) {
        PollError::Auth(what.trim_end().to_string())
    } else if upper.contains("TOO_MANY") || upper.contains("TOO MANY") {
        PollError::RateLimited { retry_after: None }
    } else {
        PollError::BadResponse(what.trim_end().to_string())
    }
}

/// `meta.message` of an error answer, for login failures.
fn meta_message(response: &Response, secrets: &[&str]) -> Option<String> {
    let WithMeta { meta: Some(meta) } = serde_json::from_slice(response.body()).ok()? else { return None };
    meta.message.map(|m| sanitize(&m, secrets)).filter(|m| !m.is_empty())
}

/// An operator message as errors may carry it: short, one line, secrets scrubbed.
fn sanitize(message: &str, secrets: &[&str]) -> String {
    let one_line: String = message.chars().filter(|c| !c.is_control()).take(100).collect();
    http::scrub(&one_line, secrets)
}

/// The balance, and the billing date as the remainders' expiry when there are any.
fn finish(reading: &mut Reading, money: Money, balance: &BalanceBody) {
    let has_remainders =
        reading.data_remaining.is_some() || reading.voice_remaining.is_some() || reading.sms_remaining.is_some();
    if has_remainders && reading.quota_expiry.is_none() {
        reading.quota_expiry = balance
            .next_billing_date
            .as_deref()
            .or(balance.smart.as_ref().and_then(|s| s.next_billing_date.as_deref()))
            .and_then(decode::parse_rfc3339);
    }
    reading.balance = Some(money);
}

#[derive(Deserialize)]
struct AuthBody {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
struct PayTypeBody {
    #[serde(rename = "payType", default)]
    pay_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct BalanceBody {
    #[serde(default)]
    balance: Option<Num>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(rename = "nextBillingDate", default)]
    next_billing_date: Option<String>,
    #[serde(rename = "smartPricePlanParams", default)]
    smart: Option<SmartParams>,
}

#[derive(Deserialize, Default)]
struct SmartParams {
    #[serde(rename = "nextBillingDate", default)]
    next_billing_date: Option<String>,
}

impl BalanceBody {
    fn money(&self, response: &Response) -> Result<Money, PollError> {
        let amount = self.balance.ok_or_else(|| PollError::BadResponse(format!("{}: no balance", response.shown())))?;
        let currency = self.currency.as_deref().map_or(crate::reading::Currency::RUB, super::kit::decode::currency_of);
        Ok(Money { amount: amount.0, currency })
    }
}

#[derive(Deserialize)]
struct AccumulatorsBody {
    #[serde(deserialize_with = "one_or_many", default)]
    accumulators: Vec<Accumulator>,
}

#[derive(Deserialize)]
struct Accumulator {
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    rest: Option<Quantity>,
    #[serde(default)]
    size: Option<Quantity>,
    #[serde(default)]
    soc: Option<String>,
    #[serde(rename = "accName", default)]
    acc_name: Option<String>,
    #[serde(rename = "restName", default)]
    rest_name: Option<String>,
    #[serde(rename = "isUnlimited", alias = "unlimited", default)]
    unlimited: Option<bool>,
}

#[derive(Deserialize)]
struct RestsBody {
    #[serde(deserialize_with = "one_or_many", default)]
    rests: Vec<Rest>,
}

#[derive(Deserialize)]
struct Rest {
    #[serde(rename = "unitType", default)]
    unit_type: Option<String>,
    #[serde(rename = "currValue", default)]
    current: Option<Quantity>,
    #[serde(rename = "initialSize", default)]
    initial: Option<Quantity>,
    #[serde(rename = "restName", default)]
    rest_name: Option<String>,
    #[serde(default)]
    soc: Option<String>,
    #[serde(rename = "isUnlimited", alias = "unlimited", default)]
    unlimited: Option<bool>,
}

#[derive(Deserialize)]
struct SubscribersBody {
    #[serde(deserialize_with = "one_or_many", default)]
    subscribers: Vec<Subscriber>,
}

#[derive(Deserialize)]
struct Subscriber {
    ctn: Text,
}

/// Sums of one poll's remainders, with a note per skipped package.
#[derive(Default)]
struct Sums {
    remainders: Remainders,
    notes: Vec<String>,
}

impl Sums {
    /// Adds one package. `current` and `total` are already in the kind's base unit.
    fn add(&mut self, kind: Kind, current: f64, total: Option<f64>) {
        self.remainders.add(kind, current, total);
    }

    fn skip(&mut self, name: &str, why: &str) {
        self.notes.push(format!("package `{name}` skipped ({why})"));
    }

    fn into_reading(self) -> (Reading, Vec<String>) {
        (self.remainders.into_reading(), self.notes)
    }
}

/// The factor of a quantity's own unit, when it carries one (`"5,2 ГБ"`, `"30 мин"`).
fn own_factor(kind: Kind, quantity: &Quantity) -> Option<f64> {
    let unit = quantity.unit.as_deref()?;
    match kind {
        Kind::Data(_) => decode::data_unit_bytes(unit).map(|b| b as f64),
        Kind::Voice(_) => {
            let u = unit.to_lowercase();
            if u.starts_with("мин") || u.starts_with("min") {
                Some(60.0)
            } else if u.starts_with("сек") || u.starts_with("sec") || u == "с" || u == "s" {
                Some(1.0)
            } else {
                None
            }
        }
        Kind::Sms => Some(1.0),
    }
}

/// A quantity in the kind's base unit: by its own unit if it has one, else by the field's.
fn in_base(kind: Kind, quantity: &Quantity) -> f64 {
    let field_factor = match kind {
        Kind::Voice(f) | Kind::Data(f) => f,
        Kind::Sms => 1.0,
    };
    quantity.value * own_factor(kind, quantity).unwrap_or(field_factor)
}

fn is_unlimited(flag: Option<bool>, kind: Kind, current: &Quantity, total: Option<&Quantity>) -> bool {
    flag == Some(true)
        || decode::is_unlimited_sentinel(current.value)
        || total.is_some_and(|t| t.value < 0.0)
        || matches!(kind, Kind::Data(_) if in_base(kind, current) >= decode::UNLIMITED_DATA_BYTES)
}

/// Prepaid `accumulators`: `SECONDS`, `SMS`, `MMS` (skipped), `KBYTE` (×1024); roaming
/// (`ROAMGPRS`), tethering and rollover packages left out.
fn map_accumulators(accumulators: &[Accumulator]) -> (Reading, Vec<String>) {
    let mut sums = Sums::default();
    for acc in accumulators {
        let name = acc.acc_name.as_deref().or(acc.rest_name.as_deref()).unwrap_or("").to_string();
        let soc = acc.soc.as_deref().unwrap_or("").to_ascii_uppercase();
        let unit = acc.unit.as_deref().unwrap_or("").trim().to_ascii_uppercase();
        let kind = match unit.as_str() {
            "SECONDS" | "SECOND" | "SEC" => Kind::Voice(1.0),
            "MINUTES" | "MINUTE" | "MIN" => Kind::Voice(60.0),
            "SMS" => Kind::Sms,
            other => match decode::data_unit_bytes(other) {
                Some(bytes) => Kind::Data(bytes as f64),
                None => {
                    sums.skip(&name, &format!("unit `{unit}`"));
                    continue;
                }
            },
        };
        if soc.contains("ROAM") {
            sums.skip(&name, "roaming");
            continue;
        }
        if soc.contains("TETHER") || soc.contains("UNLTETPOS") {
            sums.skip(&name, "tethering");
            continue;
        }
        if let Some(why) = decode::excluded_package(&name) {
            sums.skip(&name, why);
            continue;
        }
        let Some(rest) = &acc.rest else {
            sums.skip(&name, "no rest");
            continue;
        };
        let total = acc.size.as_ref().map(|s| in_base(kind, s));
        let current = in_base(kind, rest);
        if is_unlimited(acc.unlimited, kind, rest, acc.size.as_ref()) {
            sums.skip(&name, "unlimited");
            continue;
        }
        sums.add(kind, current, total);
    }
    sums.into_reading()
}

/// Postpaid `rests`: `VOICE` (minutes), `SMS_MMS`, `MMS` (skipped), `INTERNET` (MB), unless
/// the value carries its own unit.
fn map_rests(rests: &[Rest]) -> (Reading, Vec<String>) {
    let mut sums = Sums::default();
    for rest in rests {
        let name = rest.rest_name.as_deref().unwrap_or("").to_string();
        let unit = rest.unit_type.as_deref().unwrap_or("").trim().to_ascii_uppercase();
        let kind = match unit.as_str() {
            "VOICE" => Kind::Voice(60.0),
            "SMS_MMS" | "SMS" => Kind::Sms,
            "INTERNET" | "DATA" | "GPRS" => Kind::Data(1_048_576.0),
            _ => {
                sums.skip(&name, &format!("unit type `{unit}`"));
                continue;
            }
        };
        if rest.soc.as_deref().is_some_and(|s| s.to_ascii_uppercase().contains("ROAM")) {
            sums.skip(&name, "roaming");
            continue;
        }
        if let Some(why) = decode::excluded_package(&name) {
            sums.skip(&name, why);
            continue;
        }
        let Some(current) = &rest.current else {
            sums.skip(&name, "no currValue");
            continue;
        };
        if is_unlimited(rest.unlimited, kind, current, rest.initial.as_ref()) {
            sums.skip(&name, "unlimited");
            continue;
        }
        let total = rest.initial.as_ref().map(|s| in_base(kind, s));
        sums.add(kind, in_base(kind, current), total);
    }
    sums.into_reading()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::ByteSize;

    #[test]
    fn accumulators_map_units_and_skip_roaming_tethering_and_unlimited() {
        let body: AccumulatorsBody = serde_json::from_str(
            r#"{"meta":{"status":"OK","code":20000},"accumulators":[
              {"unit":"KBYTE","rest":5452595,"size":31457280,"soc":"INET30","accName":"Интернет"},
              {"unit":"KBYTE","rest":1024,"size":1024,"soc":"ROAMGPRS","accName":"Интернет в поездках"},
              {"unit":"KBYTE","rest":2048,"size":2048,"soc":"UNLTETPOS","accName":"Интернет для раздачи"},
              {"unit":"SECONDS","rest":18000,"size":36000,"accName":"Минуты"},
              {"unit":"SMS","rest":50,"size":50},
              {"unit":"MMS","rest":10,"size":10},
              {"unit":"KBYTE","rest":999999999,"size":-1,"accName":"Мессенджеры"}]}"#,
        )
        .unwrap();
        let (r, notes) = map_accumulators(&body.accumulators);
        assert_eq!(r.data_remaining, Some(ByteSize(5_452_595 * 1024)));
        assert_eq!(r.data_quota, Some(ByteSize(31_457_280 * 1024)));
        assert_eq!(r.voice_remaining, Some(Duration::from_secs(18_000)));
        assert_eq!(r.sms_remaining, Some(50));
        assert_eq!(notes.len(), 4, "{notes:?}");
    }

    #[test]
    fn rests_map_minutes_megabytes_and_values_with_their_own_unit() {
        let body: RestsBody = serde_json::from_str(
            r#"{"rests":[
              {"unitType":"VOICE","currValue":250,"initialSize":500,"restName":"Минуты"},
              {"unitType":"INTERNET","currValue":"5,2 ГБ","initialSize":"10 ГБ","restName":"Интернет"},
              {"unitType":"INTERNET","currValue":512,"initialSize":1024,"restName":"Бонус"},
              {"unitType":"SMS_MMS","currValue":"30","restName":"SMS"},
              {"unitType":"INTERNET","currValue":100,"restName":"Перенос остатка трафика"}]}"#,
        )
        .unwrap();
        let (r, notes) = map_rests(&body.rests);
        assert_eq!(r.voice_remaining, Some(Duration::from_secs(15_000)));
        let gb = 1_073_741_824.0_f64;
        assert_eq!(r.data_remaining, Some(ByteSize((5.2 * gb + 512.0 * 1_048_576.0).round() as u64)));
        assert_eq!(r.data_quota, Some(ByteSize((10.0 * gb + 1024.0 * 1_048_576.0).round() as u64)));
        assert_eq!(r.sms_remaining, Some(30));
        assert_eq!(notes.len(), 1, "rollover skipped: {notes:?}");
    }

    #[test]
    fn a_data_package_without_size_leaves_the_quota_absent() {
        let body: RestsBody = serde_json::from_str(
            r#"{"rests":[{"unitType":"INTERNET","currValue":1,"initialSize":2},{"unitType":"INTERNET","currValue":1}]}"#,
        )
        .unwrap();
        let (r, _) = map_rests(&body.rests);
        assert_eq!(r.data_remaining, Some(ByteSize(2 * 1_048_576)));
        assert_eq!(r.data_quota, None);
    }

    #[test]
    fn meta_errors_map_to_reasons_without_secrets() {
        let meta =
            |message: &str| Meta { status: "ERROR".into(), code: Some(Num(20001.0)), message: Some(message.into()) };
        let secrets = ["9060000000", "hunter2"];
        let e = meta_error(&meta("AUTH_ERROR (9060000000)"), "GET /x", &secrets);
        assert_eq!(e.reason().as_str(), "auth");
        assert!(!e.to_string().contains("9060000000"), "{e}");
        assert_eq!(meta_error(&meta("LOGIN_TRY_NUMBER_EXCEED"), "x", &secrets).reason().as_str(), "auth");
        assert_eq!(meta_error(&meta("SOMETHING_ELSE"), "x", &secrets).reason().as_str(), "bad_response");
    }

    #[test]
    fn meta_codes_decide_before_messages_system_error_is_transient() {
        let meta = |code: f64, message: Option<&str>| Meta {
            status: "ERROR".into(),
            code: Some(Num(code)),
            message: message.map(str::to_string),
        };
        let reason = |m: Meta| meta_error(&m, "PUT /api/2.0/auth/auth", &[]).reason().as_str();
        assert_eq!(reason(meta(50000.0, Some("SYSTEM_ERROR: null"))), "unavailable");
        assert_eq!(reason(meta(50000.0, None)), "unavailable");
        assert_eq!(reason(meta(20002.0, None)), "auth");
        assert_eq!(reason(meta(20002.0, Some("AUTH_ERROR (weak password)"))), "auth");
        assert_eq!(reason(meta(20014.0, None)), "auth");
        assert_eq!(reason(meta(20014.0, Some("AUTH_USER_BLOCKED_ERROR"))), "auth");
    }
}
