//! `mts`: the MTS Business API (`api.mts.ru`, OAuth2 client credentials). Balance per number
//! or, de-duplicated, per personal account (ЛС); package remainders from `Bills/ValidityInfo`
//! mapped by unit; the contract's numbers listed from `Service/HierarchyStructure`, page by
//! page. Shapes follow `shared/operators/ru.md` §2.1; where sources disagree both are read.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde::Deserialize;

use super::contract::{BoxFuture, BuildContext, BuildError, Cost, DiscoveredLine, Driver, DriverSpec, PollContext};
use super::kit::decode::{self, currency_of, one_or_many, Num, Text};
use super::kit::http::{self, HttpClient, HttpOptions, Request, Response};
use super::kit::ids::Msisdn;
use super::kit::pager::Pager;
use super::kit::remainders::{self, Kind, Remainders};
use super::kit::session::{Fresh, Session, Shared};
use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::config::units::Rate;
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::{Currency, Money, Reading};

pub const DEFAULT_BASE_URL: &str = "https://api.mts.ru";
const TOKEN: &str = "/token";
const BALANCE_BY_MSISDN: &str = "/b2b/v1/Bills/CheckBalanceByMSISDN";
const BALANCE_BY_ACCOUNT: &str = "/b2b/v1/Bills/CheckBalanceByAccount";
const VALIDITY_INFO: &str = "/b2b/v1/Bills/ValidityInfo";
const HIERARCHY: &str = "/b2b/v1/Service/HierarchyStructure";
/// The documented maximum page of `HierarchyStructure`.
const PAGE_SIZE: u32 = 1000;

pub static SPEC: DriverSpec = DriverSpec {
    name: "mts",
    summary: "MTS Business API: balance per number or personal account, package remainders, contract discovery",
    example: r#"
accounts:
  corp-mts:
    driver: mts
    client_id: "consumer-key"         # Consumer Key from the MTS Business LK
    client_secret: "change-me"        # in a real config: ${MTS_CLIENT_SECRET} or client_secret_file
    # base_url: https://api.mts.ru    # scheme, host, port and optional prefix; paths are appended
    # proxy_url: http://proxy.corp.example:3128
    # counters_by: msisdn             # or account_no: the key Bills/ValidityInfo is asked with
lines:
  - name: mts-tracker-1
    account: corp-mts
    msisdn: "+79160000001"
    account_no: "277000000001"        # personal account (ЛС): its balance is read once for all its lines
"#,
    aliases: &[],
    needs_account: true,
    speaks_http: true,
    can_discover: true,
    default_operator: "mts",
    // 60 requests a minute and at most 3 a second (the smallest API package); a poll is two
    // requests (balance, counters), so one poll every 2 s keeps within both.
    default_rate_limit: Some(Rate { count: 1, period: Duration::from_secs(2) }),
    account_options,
    line_options,
    build,
};

/// Which key `Bills/ValidityInfo` is asked with (sources disagree: most send the number, one
/// says it must be the personal account).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CountersBy {
    Msisdn,
    AccountNo,
}

#[derive(Clone, Debug)]
struct AccountOptions {
    http: HttpOptions,
    client_id: String,
    client_secret: Secret,
    counters_by: CountersBy,
}

/// Line keys of `mts`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineOptions {
    /// The personal account (ЛС): balance by account, shared by its lines.
    pub account_no: Option<String>,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, DEFAULT_BASE_URL);
    let client_id = f.required_string("client_id").unwrap_or_default();
    let has_secret = f.has("client_secret") || f.has("client_secret_file");
    let client_secret = f.secret("client_secret", "client_secret_file").unwrap_or_else(|| Secret::new(""));
    if !has_secret {
        f.sink().error(Some(f.pos()), f.path(), "missing required key `client_secret` (or `client_secret_file`)");
    }
    let counters_by = match f.node("counters_by").map(|n| n.pos) {
        Some(pos) => match f.string("counters_by").as_deref() {
            Some("msisdn") => CountersBy::Msisdn,
            Some("account_no") => CountersBy::AccountNo,
            other => {
                f.error("counters_by", pos, format!("`{}` is not one of msisdn, account_no", other.unwrap_or("")));
                CountersBy::Msisdn
            }
        },
        None => CountersBy::Msisdn,
    };
    DriverOptions(Arc::new(AccountOptions { http, client_id, client_secret, counters_by }))
}

/// The options of every line without `account_no` (most of a fleet): one allocation, shared.
static WITHOUT_LINE_KEYS: LazyLock<[DriverOptions; 1]> =
    LazyLock::new(|| [DriverOptions(Arc::new(LineOptions::default()))]);

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    let pos = f.node("account_no").map(|n| n.pos);
    let account_no = f.string("account_no").map(|s| s.trim().to_string());
    if let (Some(pos), Some(ls)) = (pos, &account_no) {
        if ls.is_empty() || !ls.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            f.error("account_no", pos, "expected the personal account number (digits)");
        }
    }
    if account_no.is_none() && !f.has("msisdn") {
        f.sink().error(Some(f.pos()), f.path(), "an `mts` line needs `msisdn` or `account_no`");
    }
    DriverOptions::shared(LineOptions { account_no }, &*WITHOUT_LINE_KEYS)
}

/// What the account's polls share, kept across reloads (see `session::SessionStore`).
#[derive(Default)]
struct State {
    token: Session<Secret>,
    /// Balances by personal account.
    balances: Shared<String, Money>,
}

struct Mts {
    client: HttpClient,
    client_id: String,
    client_secret: Secret,
    counters_by: CountersBy,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::contract::account_options::<AccountOptions>(account, "mts")?;
    let client = HttpClient::new(account, &o.http, cx)?;
    let fingerprint = cx.sessions.fingerprint(&[&o.client_id, o.client_secret.expose(), o.http.base_url.as_str()]);
    let state = cx.sessions.get_or_create("mts", &account.name, fingerprint, State::default);
    Ok(Arc::new(Mts {
        client,
        client_id: o.client_id.clone(),
        client_secret: o.client_secret.clone(),
        counters_by: o.counters_by,
        state,
    }))
}

impl Driver for Mts {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(self.read(line, cx))
    }

    fn discover<'a>(&'a self, cx: &'a PollContext) -> BoxFuture<'a, Result<Vec<DiscoveredLine>, PollError>> {
        Box::pin(self.list_numbers(cx))
    }

    /// Balance and counters per line (a shared ЛС balance makes it less), a token an hour.
    fn cost(&self, lines: usize) -> Option<Cost> {
        Some(Cost {
            requests_per_cycle: 2.0 * lines as f64,
            requests_per_listing: (lines as f64 / f64::from(PAGE_SIZE)).ceil().max(1.0),
            ..Cost::default()
        })
    }
}

impl Mts {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let options = line.options.get::<LineOptions>().cloned().unwrap_or_default();
        let msisdn = line.msisdn.as_deref().map(|m| Msisdn(m).number11());
        let balance = match (&options.account_no, &msisdn) {
            (Some(ls), _) => {
                // Lines of one ЛС share its balance; a value younger than half the line's
                // interval is as good as a new request.
                let max_age = line.poll_interval / 2;
                self.state.balances.get_or_fetch(cx, ls.clone(), max_age, || self.balance_by_account(cx, ls)).await?
            }
            (None, Some(number)) => self.balance_by_msisdn(cx, number).await?,
            (None, None) => return Err(PollError::Config("an mts line needs `msisdn` or `account_no`".into())),
        };
        let key = match self.counters_by {
            CountersBy::Msisdn => msisdn.as_ref().or(options.account_no.as_ref()),
            CountersBy::AccountNo => options.account_no.as_ref().or(msisdn.as_ref()),
        };
        let mut reading = match key {
            Some(key) => self.counters(cx, key).await?,
            None => Reading::default(),
        };
        reading.balance = Some(balance);
        Ok(reading)
    }

    async fn login(&self, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        cx.note("asking MTS for an access token (client credentials)");
        let response = self
            .client
            .post(TOKEN)
            .basic_auth(&self.client_id, &self.client_secret)
            .form_body(&[("grant_type", "client_credentials")])
            .send(cx)
            .await?;
        let status = response.status().as_u16();
        if matches!(status, 400 | 401 | 403) {
            let fault = fault_message(&response)
                .map(|m| format!(": {}", http::scrub(&m, &[&self.client_id, self.client_secret.expose()])))
                .unwrap_or_default();
            return Err(PollError::Auth(format!(
                "POST {TOKEN}: HTTP {status}, the consumer key or secret was refused{fault}"
            )));
        }
        let token: TokenResponse = response.check(cx)?.json()?;
        if token.access_token.trim().is_empty() {
            return Err(PollError::BadResponse(format!("POST {TOKEN}: empty access_token")));
        }
        let expires_in = token.expires_in.map(|n| Duration::from_secs_f64(n.0.clamp(0.0, 1e9)));
        Ok(Fresh { value: Secret::new(token.access_token), expires_in })
    }

    /// A GET with the account's token; a rejected token is replaced once. The status is
    /// mapped with MTS's error codes.
    async fn get<'a>(
        &'a self,
        cx: &'a PollContext,
        request: impl Fn(&Secret) -> Request<'a>,
    ) -> Result<Response, PollError> {
        let response =
            self.state.token.call(cx, || self.login(cx), |token| request(&token).send(cx), token_rejected).await?;
        check(response, cx)
    }

    async fn balance_by_msisdn(&self, cx: &PollContext, number: &str) -> Result<Money, PollError> {
        let response = self
            .get(cx, |token| {
                self.client
                    .get(BALANCE_BY_MSISDN)
                    .bearer(token)
                    .query("characteristic.name", "MSISDN")
                    .query("characteristic.value", number)
                    .query("fields", "MOAF")
            })
            .await?;
        parse_balance(&response)
    }

    async fn balance_by_account(&self, cx: &PollContext, account_no: &str) -> Result<Money, PollError> {
        let response = self
            .get(cx, |token| {
                self.client.get(BALANCE_BY_ACCOUNT).bearer(token).query("accountNo", account_no).query("fields", "MOAF")
            })
            .await?;
        parse_balance(&response)
    }

    async fn counters(&self, cx: &PollContext, key: &str) -> Result<Reading, PollError> {
        let response = self
            .get(cx, |token| {
                self.client
                    .get(VALIDITY_INFO)
                    .bearer(token)
                    .query("customerAccount.accountNo", key)
                    .query("customerAccount.productRelationship.product.productLine.name", "Counters")
                    .query("fields", "MOAF,forisCounters")
            })
            .await?;
        let blocks: Blocks = response.json()?;
        let (reading, skipped) = map_counters(&blocks.0);
        for note in skipped {
            cx.note(note);
        }
        Ok(reading)
    }

    /// Every number of the contract, following `hasMore` to the last page.
    async fn list_numbers(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        let mut found: Vec<DiscoveredLine> = Vec::new();
        let mut seen = HashSet::new();
        let mut pager = Pager::new(format!("GET {HIERARCHY}"));
        loop {
            let page = pager.next_page()?;
            let response = self
                .get(cx, |token| {
                    self.client
                        .get(HIERARCHY)
                        .bearer(token)
                        .query("pageNum", &page.to_string())
                        .query("pageSize", &PAGE_SIZE.to_string())
                })
                .await?;
            let value: serde_json::Value = response.json()?;
            let mut on_page = 0usize;
            let mut new = 0usize;
            collect_numbers(&value, None, &mut |number: Number| {
                on_page += 1;
                if seen.insert(number.id.clone()) {
                    new += 1;
                    found.push(number.into_line());
                }
            });
            cx.note(format!("HierarchyStructure page {page}: {on_page} numbers"));
            let more = match has_more(&value) {
                Some(more) => more && new > 0,
                None => on_page >= PAGE_SIZE as usize,
            };
            if !more {
                return Ok(found);
            }
        }
    }
}

/// 401 means a new token helps, except errorCode 1014: the number is not visible to the
/// API user, which no token changes.
fn token_rejected(response: &Response) -> bool {
    response.status().as_u16() == 401 && error_code(response).as_deref() != Some("1014")
}

/// The status mapping with MTS's error codes (ru.md §2.1 "Errors").
fn check(response: Response, cx: &PollContext) -> Result<Response, PollError> {
    let status = response.status().as_u16();
    if response.status().is_success() || response.is_html() {
        // HTML (a captcha or maintenance page) is judged by the shared rules.
        return response.check(cx);
    }
    let code = error_code(&response);
    let with_code = match &code {
        Some(c) => format!("{}: HTTP {status}, errorCode {c}", response.shown()),
        None => format!("{}: HTTP {status}", response.shown()),
    };
    match (status, code.as_deref()) {
        (401, Some("1014")) => Err(PollError::Config(format!(
            "{with_code}: the number is not visible to this API account (moved or terminated?); check the line's msisdn"
        ))),
        (422, _) => Err(PollError::Config(format!("{with_code}: no region or tariff binding for the number"))),
        (421, _) => Err(PollError::Unavailable(format!("{with_code}: billing (Foris) temporarily unavailable"))),
        (500, Some("1012")) => Err(PollError::RateLimited { retry_after: None }),
        // 1017 (HTTP 499): MTS cancelled the request on its side after its own timeout.
        (_, Some("1017")) => Err(PollError::Timeout(cx.timeout)),
        // MTS documents no Retry-After; its gateway lifts the limit after about 20 s.
        (429, _) if response.header("retry-after").is_none() => {
            Err(PollError::RateLimited { retry_after: Some(MTS_RATE_LIMIT_PAUSE) })
        }
        (403, Some("1010")) => {
            Err(PollError::Auth(format!("{with_code}: the method is not in the account's API package")))
        }
        (401 | 403, _) => Err(PollError::Auth(with_code)),
        _ => response.check(cx),
    }
}

/// How long MTS wants a client to wait after a 429 that names no Retry-After (ru.md §10).
const MTS_RATE_LIMIT_PAUSE: std::time::Duration = std::time::Duration::from_secs(20);

/// `errorCode` (or `code`) of an MTS error body, flat or nested under `error` or `fault`, a
/// string or a number, if it is short and plain.
fn error_code(response: &Response) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(response.body()).ok()?;
    let object = match &value {
        serde_json::Value::Array(items) => items.first()?,
        other => other,
    };
    let code = ["errorCode", "code"].iter().find_map(|k| object.get(*k)).or_else(|| {
        ["fault", "error"].iter().find_map(|k| {
            let inner = object.get(*k)?;
            ["errorCode", "code"].iter().find_map(|c| inner.get(*c))
        })
    })?;
    let text = match code {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (text.len() <= 32 && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .then_some(text)
}

/// `fault.message` / `fault.description` of a refused token request.
fn fault_message(response: &Response) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(response.body()).ok()?;
    let fault = value.get("fault").unwrap_or(&value);
    let message = ["message", "description", "error_description", "error"]
        .iter()
        .find_map(|k| fault.get(*k).and_then(|v| v.as_str()))?;
    Some(message.chars().take(120).collect())
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Num>,
}

#[derive(Deserialize)]
#[serde(transparent)]
struct BalanceItems(#[serde(deserialize_with = "one_or_many")] Vec<BalanceItem>);

#[derive(Deserialize)]
struct BalanceItem {
    #[serde(rename = "customerAccountBalance", deserialize_with = "one_or_many", default)]
    balances: Vec<AccountBalance>,
}

#[derive(Deserialize)]
struct AccountBalance {
    #[serde(rename = "remainedAmount", default)]
    remained: Option<Amount>,
}

#[derive(Deserialize)]
struct Amount {
    amount: Num,
    #[serde(rename = "unitOfMeasure", default)]
    unit: Option<String>,
    #[serde(rename = "currencyCode", default)]
    currency_code: Option<String>,
}

/// `[0].customerAccountBalance[0].remainedAmount.amount`, rubles, sign kept.
fn parse_balance(response: &Response) -> Result<Money, PollError> {
    let items: BalanceItems = response.json()?;
    let amount =
        items.0.iter().flat_map(|item| item.balances.iter()).find_map(|b| b.remained.as_ref()).ok_or_else(|| {
            PollError::BadResponse(format!("{}: no customerAccountBalance[].remainedAmount", response.shown()))
        })?;
    let currency = amount.currency_code.as_deref().or(amount.unit.as_deref()).map_or(Currency::RUB, currency_of);
    Ok(Money { amount: amount.amount.0, currency })
}

#[derive(Deserialize)]
#[serde(transparent)]
struct Blocks(#[serde(deserialize_with = "one_or_many")] Vec<Block>);

#[derive(Deserialize)]
struct Block {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "customerAccount", deserialize_with = "one_or_many", default)]
    accounts: Vec<CustomerAccount>,
    /// The other shape: `{"ForisCounters": {"customerAccount": [...]}}`.
    #[serde(rename = "ForisCounters", alias = "forisCounters", default)]
    foris: Option<Box<Block>>,
}

#[derive(Deserialize)]
struct CustomerAccount {
    #[serde(rename = "productRelationship", deserialize_with = "one_or_many", default)]
    relationships: Vec<Relationship>,
}

#[derive(Deserialize)]
struct Relationship {
    #[serde(default)]
    product: Option<Product>,
}

#[derive(Deserialize)]
struct Product {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "externalID", default)]
    external_id: Option<Text>,
    #[serde(rename = "productStatus", default)]
    status: Option<String>,
    #[serde(rename = "productPrice", deserialize_with = "one_or_many", default)]
    prices: Vec<Price>,
    #[serde(rename = "validFor", default)]
    valid_for: Option<ValidFor>,
    #[serde(rename = "productSpecification", default)]
    spec: Option<Specification>,
}

#[derive(Deserialize)]
struct Price {
    #[serde(rename = "unitOfMeasure", default)]
    unit: Option<String>,
}

#[derive(Deserialize)]
struct ValidFor {
    #[serde(rename = "endDateTime", default)]
    end: Option<String>,
}

#[derive(Deserialize)]
struct Specification {
    #[serde(default)]
    id: Option<Text>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "productSpecCharacteristic", deserialize_with = "one_or_many", default)]
    characteristics: Vec<Characteristic>,
}

#[derive(Deserialize)]
struct Characteristic {
    #[serde(rename = "prodSpecCharacteristicValue", deserialize_with = "one_or_many", default)]
    values: Vec<CharacteristicValue>,
}

#[derive(Deserialize)]
struct CharacteristicValue {
    #[serde(rename = "valueType")]
    value_type: String,
    #[serde(default)]
    value: Option<Text>,
}

fn kind_of(unit: &str, name: &str) -> Option<Kind> {
    let u = unit.trim().to_ascii_uppercase();
    match u.as_str() {
        "SECOND" | "SECONDS" | "SEC" => Some(Kind::Voice(1.0)),
        "MINUTE" | "MINUTES" | "MIN" => Some(Kind::Voice(60.0)),
        "ITEM" | "ITEMS" | "PIECE" | "SMS" => (!(name.contains("ммс") || name.contains("mms"))).then_some(Kind::Sms),
        "MONEY" | "RUB" | "RUR" => None,
        _ => decode::data_unit_bytes(&u).map(|b| Kind::Data(b as f64)),
    }
}

/// Sums the `Remainder` counters of the `ForisCounters` block by kind. Returns the reading
/// (balance unset) and a note per skipped counter.
fn map_counters(blocks: &[Block]) -> (Reading, Vec<String>) {
    let mut products: Vec<&Product> = Vec::new();
    for block in blocks {
        let counters = match (&block.foris, &block.name) {
            (Some(inner), _) => inner.as_ref(),
            (None, Some(name)) if name.eq_ignore_ascii_case("ForisCounters") => block,
            _ => continue,
        };
        for account in &counters.accounts {
            products.extend(account.relationships.iter().filter_map(|r| r.product.as_ref()));
        }
    }
    let mut notes = Vec::new();
    let mut seen = HashSet::new();
    let mut sums = Remainders::default();
    for product in products {
        let spec = product.spec.as_ref();
        let name = product.name.as_deref().or(spec.and_then(|s| s.name.as_deref())).unwrap_or("").to_lowercase();
        let values: Vec<&CharacteristicValue> =
            spec.map(|s| s.characteristics.iter().flat_map(|c| c.values.iter()).collect()).unwrap_or_default();
        // `productSpecification.id` names the kind of package, not the instance: two "+5 GB"
        // add-ons share it with different validity (ru.md §10). Only an exact repeat (same
        // kind, validity and values) is one package listed twice.
        let kind = spec.and_then(|s| s.id.as_ref()).or(product.external_id.as_ref()).map_or(name.as_str(), |t| &t.0);
        let end = product.valid_for.as_ref().and_then(|v| v.end.as_deref());
        let shown: Vec<(&str, Option<&str>)> =
            values.iter().map(|v| (v.value_type.as_str(), v.value.as_ref().map(|t| t.0.as_str()))).collect();
        if !seen.insert(format!("{kind}|{end:?}|{shown:?}")) {
            notes.push(format!("counter `{name}` listed twice: counted once"));
            continue;
        }
        if product.status.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case("active")) {
            continue;
        }
        let value_of =
            |ty: &str| values.iter().find(|v| v.value_type.eq_ignore_ascii_case(ty)).and_then(|v| v.value.as_ref());
        // Absent type: read as a remainder (older answers carry no CounterValueType).
        if value_of("CounterValueType").is_some_and(|t| !t.0.eq_ignore_ascii_case("Remainder")) {
            continue;
        }
        if let Some(why) = decode::excluded_package(&name) {
            notes.push(format!("counter `{name}` skipped ({why})"));
            continue;
        }
        let unit = product.prices.iter().find_map(|p| p.unit.as_deref()).unwrap_or("");
        let Some(kind) = kind_of(unit, &name) else {
            if !unit.eq_ignore_ascii_case("MONEY") {
                notes.push(format!("counter `{name}` skipped (unit `{unit}` is not voice, SMS or data)"));
            }
            continue;
        };
        let Some(current) = value_of("CurrentValue").and_then(|t| decode::parse_amount(&t.0)) else {
            notes.push(format!("counter `{name}` has no CurrentValue"));
            continue;
        };
        let initial = value_of("PeriodInitialValue").and_then(|t| decode::parse_amount(&t.0));
        // Sentinels of "no limit": a negative package size, all nines, an absurd amount.
        let absurd = matches!(kind, Kind::Data(f) if current * f >= decode::UNLIMITED_DATA_BYTES);
        if initial.is_some_and(|i| i < 0.0) || decode::is_unlimited_sentinel(current) || absurd {
            notes.push(format!("counter `{name}` skipped (unlimited)"));
            continue;
        }
        // Only a data package's size makes the quota; voice and SMS sizes are not reported.
        let total = match kind {
            Kind::Data(factor) => initial.map(|i| i * factor),
            Kind::Voice(_) | Kind::Sms => None,
        };
        sums.add(kind, current * kind.factor(), total);
        let end = product.valid_for.as_ref().and_then(|v| v.end.as_deref()).and_then(decode::parse_rfc3339);
        if let Some(end) = end.filter(|e| remainders::is_bounded(*e)) {
            sums.ends_at(end);
        }
    }
    (sums.into_reading(), notes)
}

/// A number found in the contract hierarchy.
struct Number {
    id: String,
    account_no: Option<String>,
    iccid: Option<String>,
}

impl Number {
    fn into_line(self) -> DiscoveredLine {
        let mut labels = Vec::new();
        if let Some(ls) = &self.account_no {
            labels.push(("account_no".to_string(), ls.clone()));
        }
        DiscoveredLine {
            msisdn: Some(format!("+{}", self.id)),
            iccid: self.iccid,
            labels,
            options: DriverOptions(Arc::new(LineOptions { account_no: self.account_no })),
            id: self.id,
        }
    }
}

fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Walks the hierarchy (organisation → contract → ЛС → numbers, nesting as deep as it
/// comes): each object with `productSerialNumber` is a number, under the nearest `accountNo`.
fn collect_numbers(value: &serde_json::Value, account_no: Option<&str>, found: &mut impl FnMut(Number)) {
    match value {
        serde_json::Value::Array(items) => {
            for item in items {
                collect_numbers(item, account_no, found);
            }
        }
        serde_json::Value::Object(map) => {
            let own = map.get("accountNo").and_then(scalar);
            let account_no = own.as_deref().or(account_no);
            if let Some(number) = map.get("productSerialNumber").and_then(scalar) {
                let digits = Msisdn(&number).number11();
                if digits.len() >= 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
                    let iccid = ["iccid", "ICCID", "sim", "simNumber", "iccId"]
                        .iter()
                        .find_map(|k| map.get(*k).and_then(scalar))
                        .filter(|s| s.len() >= 18 && s.bytes().all(|b| b.is_ascii_digit()));
                    found(Number { id: digits, account_no: account_no.map(str::to_string), iccid });
                }
            }
            for child in map.values().filter(|v| v.is_array() || v.is_object()) {
                collect_numbers(child, account_no, found);
            }
        }
        _ => {}
    }
}

/// `hasMore` at the top of a page (a bool or `"true"`), if the page says.
fn has_more(value: &serde_json::Value) -> Option<bool> {
    let object = match value {
        serde_json::Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    };
    match object.get("hasMore")? {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::ByteSize;

    fn blocks(json: &str) -> Vec<Block> {
        serde_json::from_str::<Blocks>(json).unwrap().0
    }

    fn counter(name: &str, unit: &str, kind: &str, initial: Option<&str>, current: &str, end: &str) -> String {
        let initial =
            initial.map(|i| format!(r#",{{"valueType":"PeriodInitialValue","value":"{i}"}}"#)).unwrap_or_default();
        format!(
            r#"{{"product":{{"name":"{name}","productStatus":"Active","productPrice":[{{"unitOfMeasure":"{unit}"}}],
            "validFor":{{"endDateTime":"{end}"}},"productSpecification":{{"id":"{name}","productSpecCharacteristic":[
            {{"prodSpecCharacteristicValue":[{{"valueType":"CounterValueType","value":"{kind}"}}{initial},
            {{"valueType":"CurrentValue","value":"{current}"}}]}}]}}}}}}"#
        )
    }

    fn foris(counters: &[String]) -> String {
        format!(
            r#"[{{"name":"h2oProfile"}},{{"name":"ForisCounters","customerAccount":[{{"productRelationship":[{}]}}]}}]"#,
            counters.join(",")
        )
    }

    #[test]
    fn counters_are_summed_by_unit_and_exclusions_skipped() {
        let json = foris(&[
            counter("Пакет минут", "SECOND", "Remainder", Some("84000"), "60000", "2026-07-31T20:59:59Z"),
            counter("Пакет минут межгород", "MINUTE", "Remainder", None, "10", "2037-12-31T20:59:59Z"),
            counter("Пакет SMS", "ITEM", "Remainder", Some("100"), "42", "2026-07-31T20:59:59Z"),
            counter("Интернет", "BYTE", "Remainder", Some("10737418240"), "5368709120", "2026-07-20T20:59:59Z"),
            counter("Интернет в роуминге", "BYTE", "Remainder", Some("100"), "100", "2026-07-01T00:00:00Z"),
            counter("Перенос остатков", "BYTE", "Remainder", None, "1000", "2026-07-01T00:00:00Z"),
            counter("Безлимитные мессенджеры", "BYTE", "Remainder", None, "0", "2026-07-01T00:00:00Z"),
            counter("Накоплено", "SECOND", "Accumulation", None, "999", "2026-07-01T00:00:00Z"),
        ]);
        let (r, notes) = map_counters(&blocks(&json));
        assert_eq!(r.voice_remaining, Some(Duration::from_secs(60_600)));
        assert_eq!(r.sms_remaining, Some(42));
        assert_eq!(r.data_remaining, Some(ByteSize(5_368_709_120)));
        assert_eq!(r.data_quota, Some(ByteSize(10_737_418_240)));
        assert_eq!(r.quota_expiry, decode::parse_rfc3339("2026-07-20T20:59:59Z"));
        assert_eq!(notes.len(), 3, "{notes:?}");
    }

    #[test]
    fn kilobytes_count_in_binary_steps_and_a_missing_quota_leaves_it_absent() {
        let json = foris(&[
            counter("Интернет A", "KBYTE", "Remainder", Some("2048"), "1024", "2026-07-31T20:59:59Z"),
            counter("Интернет B", "BYTE", "Remainder", None, "1", "2026-07-31T20:59:59Z"),
        ]);
        let (r, _) = map_counters(&blocks(&json));
        assert_eq!(r.data_remaining, Some(ByteSize(1024 * 1024 + 1)));
        assert_eq!(r.data_quota, None);
        assert_eq!(r.voice_remaining, None, "absent, never 0");
    }

    #[test]
    fn the_other_block_shape_and_duplicates() {
        let c = counter("Пакет SMS", "ITEM", "Remainder", None, "5", "2026-07-31T20:59:59Z");
        let json = format!(r#"{{"ForisCounters":{{"customerAccount":{{"productRelationship":[{c},{c}]}}}}}}"#);
        let (r, notes) = map_counters(&blocks(&json));
        assert_eq!(r.sms_remaining, Some(5));
        assert!(notes[0].contains("listed twice"));
    }

    #[test]
    fn two_add_ons_of_one_kind_with_different_validity_both_count() {
        // Same productSpecification.id ("Пакет SMS"), different validFor: two instances.
        let first = counter("Пакет SMS", "ITEM", "Remainder", None, "5", "2026-07-31T20:59:59Z");
        let second = counter("Пакет SMS", "ITEM", "Remainder", None, "5", "2026-08-31T20:59:59Z");
        let json = format!(
            r#"{{"ForisCounters":{{"customerAccount":{{"productRelationship":[{first},{second},{first}]}}}}}}"#
        );
        let (r, notes) = map_counters(&blocks(&json));
        assert_eq!(r.sms_remaining, Some(10), "both add-ons, the exact repeat once: {notes:?}");
        assert_eq!(notes.iter().filter(|n| n.contains("listed twice")).count(), 1, "{notes:?}");
    }

    #[test]
    fn numbers_are_normalised_for_mts() {
        assert_eq!(Msisdn("+79161234567").number11(), "79161234567");
        assert_eq!(Msisdn("89161234567").number11(), "79161234567");
        assert_eq!(Msisdn("9161234567").number11(), "79161234567");
    }

    #[test]
    fn hierarchy_numbers_inherit_the_nearest_account() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"hasMore":false,"contracts":[{"contractNo":"1","accounts":[
              {"accountNo":"277001","products":[{"productSerialNumber":"79160000001","iccid":"8970101000000000001"},
                                               {"productSerialNumber":"79160000002"}]},
              {"accountNo":277002,"products":[{"productSerialNumber":"9160000003"}]}]}]}"#,
        )
        .unwrap();
        let mut found = Vec::new();
        collect_numbers(&v, None, &mut |n: Number| found.push((n.id, n.account_no, n.iccid)));
        assert_eq!(
            found,
            vec![
                ("79160000001".into(), Some("277001".into()), Some("8970101000000000001".into())),
                ("79160000002".into(), Some("277001".into()), None),
                ("79160000003".into(), Some("277002".into()), None),
            ]
        );
        assert_eq!(has_more(&v), Some(false));
    }

    #[test]
    fn currencies() {
        assert_eq!(currency_of("RUR"), Currency::RUB);
        assert_eq!(currency_of("руб."), Currency::RUB);
        assert_eq!(currency_of("usd"), Currency::USD);
    }
}
