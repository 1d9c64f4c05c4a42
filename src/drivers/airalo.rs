//! `airalo`: the Airalo Partner API (`partners-api.airalo.com/v2`, client credentials). Usage
//! per eSIM — data, voice and text left, expiry; unlimited packages leave data absent — read
//! no more than once per 20 minutes per eSIM (Airalo limits and caches usage per ICCID);
//! the partner account's balance, read once for all lines; eSIMs listed page by page to
//! `meta.last_page`. iot.md §4 and §8.3.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::contract::{BuildContext, BuildError, Cost, DiscoveredLine, Driver, DriverSpec, PollContext};
use super::kit::decode::mb;
use super::kit::decode::{Num, Text};
use super::kit::http::{HttpClient, HttpOptions};
use super::kit::pager::{NumberedPage, OnRepeat, Pager};
use super::kit::platform::{
    self, AccessToken, BearerApi, ClientCredentials, Paced, Platform, PlatformDriver, SimFacts,
};
use super::kit::session::{Fresh, Session, Shared};
use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::config::units::Rate;
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::{Currency, Money, Reading};

pub const DEFAULT_BASE_URL: &str = "https://partners-api.airalo.com/v2";
const TOKEN: &str = "/token";
const SIMS: &str = "/sims";
const BALANCE: &str = "/balance";
/// Usage of one eSIM is read at most this often: Airalo allows one request per 15 minutes
/// per ICCID (older pages) and caches usage for 20 (the current page), iot.md §4.4.
pub const USAGE_FLOOR: Duration = Duration::from_secs(20 * 60);
/// The docs: "valid for 24 hours … we recommend refreshing it" although `expires_in` says a
/// year; the token endpoint allows 5 requests a minute.
const TOKEN_LIFETIME_CAP: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_PAGE_SIZE: u64 = 100;

pub static SPEC: DriverSpec = DriverSpec {
    name: "airalo",
    summary: "Airalo Partner API: data, voice and text left per eSIM (at most every 20 min), partner balance",
    example: r#"
accounts:
  travel-esims:
    driver: airalo
    client_id: "partner-client-id"
    client_secret: "change-me"       # in a real config: ${AIRALO_SECRET} or client_secret_file
    # base_url: https://partners-api.airalo.com/v2
    # balance: true                   # the partner account's balance
    poll_interval: 30m                # usage is read at most every 20 min per eSIM anyway
    discover:
      name: "esim-{iccid}"
      labels: {package: "{package}"}
lines:
  - name: esim-demo
    account: travel-esims
    iccid: "8944465400000000001"
"#,
    aliases: &[],
    needs_account: true,
    speaks_http: true,
    can_discover: true,
    default_operator: "airalo",
    // Airalo publishes no account-wide limit (only per ICCID and for /token); a conservative
    // 5 requests a second, counted per request [INF].
    default_rate_limit: Some(Rate { count: 5, period: Duration::from_secs(1) }),
    account_options,
    line_options,
    build,
};

#[derive(Clone, Debug)]
struct AccountOptions {
    http: HttpOptions,
    credentials: ClientCredentials,
    balance: bool,
    page_size: u64,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, DEFAULT_BASE_URL);
    let credentials = ClientCredentials::take(f);
    let balance = f.bool("balance").unwrap_or(true);
    let page_size = f.u64_in("page_size", 1, 1000).unwrap_or(DEFAULT_PAGE_SIZE);
    DriverOptions(Arc::new(AccountOptions { http, credentials, balance, page_size }))
}

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    platform::needs_iccid(f, "airalo");
    DriverOptions::none()
}

#[derive(Default)]
struct State {
    token: Session<Secret>,
    /// The last usage per ICCID: polls within [`USAGE_FLOOR`] of it are answered from here.
    usage: Shared<String, Reading>,
    balance: Shared<(), Option<Money>>,
}

struct Airalo {
    client: HttpClient,
    credentials: ClientCredentials,
    balance: bool,
    page_size: u64,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::contract::account_options::<AccountOptions>(account, "airalo")?;
    let Platform { client, state } = Platform::build(account, cx, &o.http, &o.credentials.keys())?;
    let (credentials, balance, page_size) = (o.credentials.clone(), o.balance, o.page_size);
    Ok(Paced::driver(Airalo { client, credentials, balance, page_size, state }))
}

impl PlatformDriver for Airalo {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let iccid = platform::iccid_of(line, "airalo")?.to_string();
        let fetched = AtomicBool::new(false);
        let mut reading = self
            .state
            .usage
            .get_or_fetch(cx, iccid.clone(), USAGE_FLOOR, || {
                fetched.store(true, Ordering::Relaxed);
                self.usage(cx, &iccid)
            })
            .await?;
        if !fetched.load(Ordering::Relaxed) {
            cx.note("usage read less than 20 minutes ago: answered from that reading (Airalo's per-eSIM limit)");
        }
        if self.balance {
            let max_age = line.poll_interval / 2;
            reading.balance = self.state.balance.get_or_fetch(cx, (), max_age, || self.partner_balance(cx)).await?;
        }
        Ok(reading)
    }

    async fn list(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        self.list_sims(cx).await
    }

    fn cost(&self, lines: usize) -> Cost {
        Cost {
            requests_per_cycle: lines as f64 + if self.balance { 2.0 } else { 0.0 },
            requests_per_listing: platform::pages(lines, self.page_size),
            monthly_limit: None,
            min_interval: Some(USAGE_FLOOR),
        }
    }
}

impl BearerApi for Airalo {
    fn token(&self) -> &Session<Secret> {
        &self.state.token
    }

    async fn login(&self, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        cx.note("asking Airalo for an access token (client credentials)");
        let request = self.client.post(TOKEN).form_body(&[
            ("client_id", self.credentials.id.as_str()),
            ("client_secret", self.credentials.secret.expose()),
            ("grant_type", "client_credentials"),
        ]);
        let response = request.send(cx).await?;
        let status = response.status().as_u16();
        if matches!(status, 400 | 401 | 403 | 422) {
            return Err(PollError::Auth(format!("POST {TOKEN}: HTTP {status}, the client id or secret was refused")));
        }
        let token: Envelope<AccessToken> = response.check(cx)?.json()?;
        token.data.fresh(&format!("POST {TOKEN}"), Some(TOKEN_LIFETIME_CAP))
    }
}

impl Airalo {
    async fn usage(&self, cx: &PollContext, iccid: &str) -> Result<Reading, PollError> {
        let path = format!("{SIMS}/{iccid}/usage");
        let shown = "/sims/{iccid}/usage";
        let response = self.get(cx, |token| self.client.get(&path).bearer(token).log_as(shown)).await?;
        match response.status().as_u16() {
            404 => {
                return Err(PollError::Config(format!(
                    "GET {shown}: HTTP 404, no such eSIM in this Airalo account; check the line's iccid"
                )))
            }
            422 => {
                return Err(PollError::Config(format!(
                    "GET {shown}: HTTP 422, Airalo refused the ICCID as invalid; check the line's iccid"
                )))
            }
            _ => {}
        }
        let usage: Envelope<Usage> = response.check(cx)?.json()?;
        Ok(usage.data.reading(cx))
    }

    async fn partner_balance(&self, cx: &PollContext) -> Result<Option<Money>, PollError> {
        let response = self.get(cx, |token| self.client.get(BALANCE).bearer(token)).await?.check(cx)?;
        let body: serde_json::Value = response.json()?;
        // "If there is no account, the response should be an empty array."
        let Some(available) = body.pointer("/data/balances/availableBalance") else {
            cx.note("no balance in the answer (no partner account): balance not reported");
            return Ok(None);
        };
        let available: Available = serde_json::from_value(available.clone()).map_err(|_| {
            PollError::BadResponse("GET /balance: availableBalance is not an amount and a currency".into())
        })?;
        let currency = Currency::parse(&available.currency)
            .ok_or_else(|| PollError::BadResponse("GET /balance: availableBalance has no valid currency".into()))?;
        Ok(Some(Money { amount: available.amount.0, currency }))
    }

    /// Every eSIM, pages 1 to `meta.last_page`.
    async fn list_sims(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        let limit = self.page_size.to_string();
        Pager::new(format!("GET {SIMS}"))
            .numbered(self.page_size, OnRepeat::Fail, "eSIMs", cx, |page| {
                let (number, limit) = (page.to_string(), &limit);
                async move {
                    let response = self
                        .get(cx, |token| {
                            self.client.get(SIMS).bearer(token).query("limit", limit).query("page", &number)
                        })
                        .await?
                        .check(cx)?;
                    let listing: Listing = response.json()?;
                    let pages = listing.meta.as_ref().and_then(|m| m.last_page.map(|n| n.0 as u64));
                    Ok(NumberedPage::of(listing.data, SimItem::into_line, pages))
                }
            })
            .await
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct Available {
    amount: Num,
    currency: String,
}

/// `data` of `GET /sims/{iccid}/usage`.
#[derive(Deserialize, Debug)]
struct Usage {
    #[serde(default)]
    remaining: Option<Num>,
    #[serde(default)]
    total: Option<Num>,
    #[serde(default)]
    expired_at: Option<String>,
    #[serde(default)]
    is_unlimited: Option<bool>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    remaining_voice: Option<Num>,
    #[serde(default)]
    total_voice: Option<Num>,
    #[serde(default)]
    remaining_text: Option<Num>,
    #[serde(default)]
    total_text: Option<Num>,
}

impl Usage {
    /// Data in MB (binary); unlimited packages report zeros "to be ignored", so data stays
    /// absent; voice (minutes) and text only when the package has any.
    fn reading(&self, cx: &PollContext) -> Reading {
        let mut r = Reading::default();
        if self.is_unlimited == Some(true) {
            cx.note("unlimited package: data left and total are not reported");
        } else {
            if let Some(remaining) = self.remaining {
                if remaining.0 < 0.0 {
                    cx.note(format!("remaining is negative ({} MB); reported as 0 left", remaining.0));
                }
                r.data_remaining = Some(mb(remaining.0));
            }
            r.data_quota = self.total.filter(|t| t.0 > 0.0).map(|t| mb(t.0));
        }
        if self.total_voice.is_some_and(|t| t.0 > 0.0) {
            r.voice_remaining = self.remaining_voice.map(|m| Duration::from_secs((m.0.max(0.0) * 60.0).round() as u64));
        }
        if self.total_text.is_some_and(|t| t.0 > 0.0) {
            r.sms_remaining = self.remaining_text.map(|n| n.0.max(0.0).round() as u64);
        }
        r.quota_expiry = self.expired_at.as_deref().and_then(super::kit::decode::parse_rfc3339);
        if let Some(status) = &self.status {
            cx.note(format!("eSIM status: {status}"));
        }
        r
    }
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    data: Vec<SimItem>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    last_page: Option<Num>,
}

#[derive(Deserialize)]
struct SimItem {
    iccid: Text,
    #[serde(default)]
    brand_settings_name: Option<String>,
    #[serde(default)]
    recycled: Option<bool>,
    #[serde(default)]
    simable: Option<Simable>,
}

#[derive(Deserialize)]
struct Simable {
    #[serde(default)]
    package_id: Option<Text>,
    #[serde(default)]
    data: Option<Text>,
    #[serde(default)]
    validity: Option<Text>,
}

impl SimItem {
    fn into_line(self) -> Option<DiscoveredLine> {
        let mut facts = SimFacts::default();
        facts.fact("brand", self.brand_settings_name);
        if let Some(simable) = self.simable {
            facts.fact("package", simable.package_id.map(|t| t.0));
            facts.fact("package_data", simable.data.map(|t| t.0));
            facts.fact("validity", simable.validity.map(|t| t.0));
        }
        facts.fact("recycled", self.recycled.map(|r| r.to_string()));
        facts.into_line(&self.iccid.0, None, DriverOptions::none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::units::ByteSize;

    fn reading(json: &str) -> Reading {
        let cx = PollContext::new(Duration::from_secs(1), Arc::new(SystemClock));
        serde_json::from_str::<Envelope<Usage>>(json).unwrap().data.reading(&cx)
    }

    #[test]
    fn usage_maps_megabytes_minutes_and_texts() {
        let r = reading(
            r#"{"data":{"remaining":767,"total":2048,"expired_at":"2025-08-01 10:30:45","is_unlimited":false,
              "status":"ACTIVE","remaining_voice":30,"remaining_text":12,"total_voice":60,"total_text":50},"meta":{"message":"api.succes"}}"#,
        );
        assert_eq!(r.data_remaining, Some(ByteSize(767 << 20)));
        assert_eq!(r.data_quota, Some(ByteSize(2048 << 20)));
        assert_eq!(r.voice_remaining, Some(Duration::from_secs(1800)));
        assert_eq!(r.sms_remaining, Some(12));
        assert_eq!(r.quota_expiry, super::super::kit::decode::parse_rfc3339("2025-08-01T10:30:45Z"));
    }

    #[test]
    fn unlimited_and_recycled_esims_leave_values_absent() {
        let unlimited = reading(
            r#"{"data":{"remaining":0,"total":0,"expired_at":"2025-08-01 10:30:45","is_unlimited":true,"status":"ACTIVE",
              "remaining_voice":0,"remaining_text":0,"total_voice":0,"total_text":0}}"#,
        );
        assert_eq!((unlimited.data_remaining, unlimited.data_quota, unlimited.voice_remaining), (None, None, None));
        assert!(unlimited.quota_expiry.is_some());
        let recycled = reading(
            r#"{"data":{"remaining":null,"total":null,"expired_at":null,"is_unlimited":null,"status":"RECYCLED"}}"#,
        );
        assert_eq!(recycled, Reading::default());
    }

    #[test]
    fn recorded_sims_with_string_validity_and_price_and_null_status_are_lines() {
        let item: SimItem =
            serde_json::from_str(include_str!("../../tests/fixtures/airalo/sim-recorded.json")).unwrap();
        let line = item.into_line().unwrap();
        assert_eq!(line.id, "8944465400000000001");
        assert!(line.labels.contains(&("validity".into(), "7".into())), "{:?}", line.labels);
    }
}
