//! `hologram`: the Hologram REST API (`dashboard.hologram.io/api/1`, HTTP Basic with the API
//! key). The device list carries each SIM's usage, so one listing answers every line: the
//! driver keeps the account's last listing in its session and serves each line's poll from it
//! while it is younger than half the line's interval, fetching the whole list (cursor pages)
//! when it is older. Remaining data = plan data + overage limit − data used this billing
//! period. The organisation's balance is read once for all lines. iot.md §5 and §8.4.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::contract::{BuildContext, BuildError, Cost, DiscoveredLine, Driver, DriverSpec, PollContext};
use super::kit::decode::{Num, Text};
use super::kit::http::{HttpClient, HttpOptions, Request};
use super::kit::ids::Msisdn;
use super::kit::options::required_secret;
use super::kit::pager::Pager;
use super::kit::platform::{self, Paced, Platform, PlatformDriver, SimFacts};
use super::kit::session::Shared;
use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::config::units::{ByteSize, Rate};
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::{Currency, Money, Reading};

pub const DEFAULT_BASE_URL: &str = "https://dashboard.hologram.io/api/1";
const DEVICES: &str = "/devices";
/// The maximum `limit` is not documented (iot.md Q10); cursor paging copes with a lower cap.
const DEFAULT_PAGE_SIZE: u64 = 1000;

pub static SPEC: DriverSpec = DriverSpec {
    name: "hologram",
    summary: "Hologram API: data left per SIM from one device listing for the whole fleet, organisation balance",
    example: r#"
accounts:
  sensors:
    driver: hologram
    api_key: "change-me"             # in a real config: ${HOLOGRAM_API_KEY} or api_key_file
    orgid: 98765                     # scopes the listing; needed for the balance
    # base_url: https://dashboard.hologram.io/api/1
    discover:
      name: "{name}"                 # the device name
      include: {state: LIVE}
lines:
  - name: soil-sensor-1
    account: sensors
    iccid: "89123400001234567890"
"#,
    aliases: &[],
    needs_account: true,
    speaks_http: true,
    can_discover: true,
    default_operator: "hologram",
    // Hologram publishes no limit ("wait 5–10 s after a 429"); listings are few, so 2
    // requests a second is plenty [INF].
    default_rate_limit: Some(Rate { count: 2, period: Duration::from_secs(1) }),
    account_options,
    line_options,
    build,
};

#[derive(Clone, Debug)]
struct AccountOptions {
    http: HttpOptions,
    api_key: Secret,
    orgid: Option<String>,
    balance: bool,
    page_size: u64,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, DEFAULT_BASE_URL);
    let api_key = required_secret(f, "api_key", "api_key_file");
    let orgid = f.numeric_id("orgid", "the organisation's id");
    let balance_pos = f.node("balance").map(|n| n.pos);
    let balance = f.bool("balance").unwrap_or(orgid.is_some());
    if let (Some(pos), true, None) = (balance_pos, balance, &orgid) {
        f.error("balance", pos, "reading the balance needs `orgid`");
    }
    let page_size = f.u64_in("page_size", 1, 5000).unwrap_or(DEFAULT_PAGE_SIZE);
    DriverOptions(Arc::new(AccountOptions { http, api_key, orgid, balance, page_size }))
}

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    platform::needs_iccid(f, "hologram");
    DriverOptions::none()
}

/// One SIM of the listing: what its line reads, and what discovery says about it.
#[derive(Clone, Debug)]
struct Sim {
    reading: Reading,
    line: DiscoveredLine,
}

type Listing = Arc<HashMap<String, Sim>>;

#[derive(Default)]
struct State {
    /// The last device listing, by ICCID.
    listing: Shared<(), Listing>,
    balance: Shared<(), Option<Money>>,
}

struct Hologram {
    client: HttpClient,
    api_key: Secret,
    orgid: Option<String>,
    balance: bool,
    page_size: u64,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::contract::account_options::<AccountOptions>(account, "hologram")?;
    let orgid_key = o.orgid.clone().unwrap_or_default();
    let Platform { client, state } = Platform::build(account, cx, &o.http, &[o.api_key.expose(), &orgid_key])?;
    let (api_key, orgid) = (o.api_key.clone(), o.orgid.clone());
    Ok(Paced::driver(Hologram { client, api_key, orgid, balance: o.balance, page_size: o.page_size, state }))
}

impl PlatformDriver for Hologram {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let iccid = platform::iccid_of(line, "hologram")?;
        let max_age = line.poll_interval / 2;
        let listing = self.state.listing.get_or_fetch(cx, (), max_age, || self.list_devices(cx)).await?;
        let mut reading = listing.get(iccid).map(|sim| sim.reading.clone()).ok_or_else(|| {
            PollError::Config(
                "the line's ICCID is not among the organisation's devices; check `iccid` and `orgid`".into(),
            )
        })?;
        if self.balance {
            reading.balance = self.state.balance.get_or_fetch(cx, (), max_age, || self.org_balance(cx)).await?;
        }
        Ok(reading)
    }

    async fn list(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        // A fresh listing, kept for the polls that follow.
        let listing = self.state.listing.get_or_fetch(cx, (), Duration::ZERO, || self.list_devices(cx)).await?;
        let mut lines: Vec<DiscoveredLine> = listing.values().map(|s| s.line.clone()).collect();
        lines.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(lines)
    }

    fn cost(&self, lines: usize) -> Cost {
        let pages = platform::pages(lines, self.page_size);
        Cost {
            // The listing is fetched again when older than half an interval: twice a cycle.
            requests_per_cycle: 2.0 * pages + if self.balance { 2.0 } else { 0.0 },
            requests_per_listing: pages,
            ..Cost::default()
        }
    }
}

impl Hologram {
    fn get(&self, path: &str) -> Request<'_> {
        self.client.get(path).basic_auth("apikey", &self.api_key)
    }

    /// Sends `request` and reads Hologram's answer: the status mapping (a refused key named
    /// as such), then `success: false` as an error with Hologram's own text.
    async fn answer<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        cx: &PollContext,
    ) -> Result<Answer<T>, PollError> {
        let response = request.send(cx).await?;
        if let Some(PollError::Auth(what)) = response.error(cx.clock.now()) {
            return Err(PollError::Auth(format!("{what}: the API key was refused")));
        }
        let response = response.check(cx)?;
        let body: Answer<T> = response.json()?;
        if body.success {
            return Ok(body);
        }
        let text: String = body.error.as_deref().unwrap_or("no error text").chars().take(120).collect();
        if text.to_lowercase().contains("rate limit") {
            return Err(PollError::RateLimited { retry_after: None });
        }
        Err(PollError::BadResponse(format!("{}: success false ({text})", response.shown())))
    }

    /// Every device, following the cursor (`continues`, `lastid` → `startafter`).
    async fn list_devices(&self, cx: &PollContext) -> Result<Listing, PollError> {
        let mut sims = HashMap::new();
        let limit = self.page_size.to_string();
        let mut after: Option<String> = None;
        let mut pager = Pager::new(format!("GET {DEVICES}"));
        loop {
            let page = pager.next_page()?;
            let mut request = self.get(DEVICES).query("limit", &limit);
            if let Some(orgid) = &self.orgid {
                request = request.query("orgid", orgid);
            }
            if let Some(after) = &after {
                request = request.query("startafter", after);
            }
            let body: Answer<Vec<Device>> = self.answer(request, cx).await?;
            let devices = body.data.unwrap_or_default();
            cx.note(format!("GET {DEVICES} page {page}: {} devices", devices.len()));
            for device in devices {
                device.collect(&mut sims, cx);
            }
            let next = body.lastid.map(|t| t.0);
            if body.continues != Some(true) || next.is_none() || next == after {
                return Ok(Arc::new(sims));
            }
            after = next;
        }
    }

    async fn org_balance(&self, cx: &PollContext) -> Result<Option<Money>, PollError> {
        let Some(orgid) = &self.orgid else { return Ok(None) };
        let path = format!("/organizations/{orgid}/balance");
        let body: Answer<BalanceData> =
            self.answer(self.get(&path).log_as("/organizations/{orgid}/balance"), cx).await?;
        let Some(balance) = body.data.and_then(|d| d.balance) else {
            cx.note("no balance in the answer (custom billing?): balance not reported");
            return Ok(None);
        };
        // Hologram bills in US dollars; the answer names no currency (iot.md §5.3).
        Ok(Some(Money { amount: balance.0, currency: Currency::USD }))
    }
}

/// Every Hologram answer: `success`, the error text when it is false, the data, and for the
/// device list the cursor (`continues`, `lastid`).
#[derive(Deserialize)]
struct Answer<T> {
    success: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    continues: Option<bool>,
    #[serde(default)]
    lastid: Option<Text>,
    #[serde(default = "Option::default")]
    data: Option<T>,
}

#[derive(Deserialize)]
struct BalanceData {
    #[serde(default)]
    balance: Option<Num>,
}

#[derive(Deserialize)]
struct Device {
    id: Text,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    cellular: Vec<Cellular>,
}

#[derive(Deserialize)]
struct Cellular {
    sim: Text,
    #[serde(default)]
    msisdn: Option<Text>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    whenexpires: Option<String>,
    #[serde(default)]
    overagelimit: Option<Num>,
    #[serde(default)]
    plan: Option<Plan>,
    #[serde(default)]
    cur_billing_data_used: Option<Num>,
}

#[derive(Deserialize)]
struct Plan {
    #[serde(default)]
    name: Option<String>,
    /// Data included in the plan; bytes like every other Hologram size [INF, iot.md Q10].
    #[serde(default)]
    data: Option<Num>,
}

impl Device {
    fn collect(self, sims: &mut HashMap<String, Sim>, cx: &PollContext) {
        let device_id = self.id.0;
        for link in self.links.map(|l| l.cellular).unwrap_or_default() {
            let iccid = link.sim.0.trim().to_string();
            if iccid.is_empty() {
                continue;
            }
            let reading = link.reading(cx);
            let mut facts = SimFacts::default();
            facts.fact("device_id", Some(device_id.clone()));
            facts.fact("name", self.name.clone());
            facts.fact("plan", link.plan.as_ref().and_then(|p| p.name.clone()));
            // Link states carry suffixes (`LIVE-PENDING`, `PAUSED-USER`, `DEAD-PENDING`,
            // iot.md §9): `state` is the part before the first `-`, the whole in `state_detail`.
            let state = link.state.as_deref().map(str::trim).unwrap_or_default();
            let base = state.split('-').next().unwrap_or_default();
            facts.fact("state", Some(base.to_string()));
            if base != state {
                facts.fact("state_detail", Some(state.to_string()));
            }
            let msisdn = link.msisdn.as_ref().and_then(|m| Msisdn(&m.0).normalized());
            let Some(line) = facts.into_line(&iccid, msisdn, DriverOptions::none()) else { continue };
            sims.insert(iccid, Sim { reading, line });
        }
    }
}

impl Cellular {
    /// Left = plan data + overage limit − used this period; no overage limit (`-1`) means no
    /// cutoff, so data left and total stay absent.
    fn reading(&self, cx: &PollContext) -> Reading {
        let mut r = Reading {
            quota_expiry: self.whenexpires.as_deref().and_then(super::kit::decode::parse_rfc3339),
            plan: self.plan.as_ref().and_then(|p| p.name.clone()),
            ..Reading::default()
        };
        let overage = self.overagelimit.map(|n| n.0);
        if let Some(overage) = overage.filter(|o| *o >= 0.0) {
            let plan_data = self.plan.as_ref().and_then(|p| p.data).map_or(0.0, |n| n.0.max(0.0));
            let cutoff = plan_data + overage;
            let used = self.cur_billing_data_used.map_or(0.0, |n| n.0.max(0.0));
            if used > cutoff {
                cx.note(format!("SIM used {used} bytes, past its cutoff of {cutoff}: reported as 0 left"));
            }
            r.data_quota = Some(ByteSize(cutoff.round() as u64));
            r.data_remaining = Some(ByteSize((cutoff - used).max(0.0).round() as u64));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn cx() -> PollContext {
        PollContext::new(Duration::from_secs(1), Arc::new(SystemClock))
    }

    fn page(json: &str) -> HashMap<String, Sim> {
        let page: Answer<Vec<Device>> = serde_json::from_str(json).unwrap();
        let mut sims = HashMap::new();
        for d in page.data.unwrap() {
            d.collect(&mut sims, &cx());
        }
        sims
    }

    #[test]
    fn one_listing_gives_every_sim_its_reading() {
        let sims = page(
            r#"{"success":true,"limit":100,"size":2,"continues":false,"lastid":1234568,"data":[
              {"id":1234567,"orgid":98765,"name":"Soil Sensor (12345)","links":{"cellular":[{"id":5608542,"sim":"89123400001234567890",
               "state":"LIVE","whenexpires":"2025-10-11 17:24:43","overagelimit":-1,"smslimit":100,
               "plan":{"id":2096,"zone":"global","name":"Global Standard Flat Rate","data":0},
               "cur_billing_data_used":503417039,"last_billing_data_used":2232757289}]}},
              {"id":1234568,"name":"Pump","links":{"cellular":[{"sim":"89123400001234567891","state":"PAUSED",
               "overagelimit":5000000,"plan":{"name":"1 GB","data":1000000000},"cur_billing_data_used":"1004000000"}]}}]}"#,
        );
        let flat = &sims["89123400001234567890"];
        assert_eq!(flat.reading.data_remaining, None, "no overage limit: no cutoff, nothing to count down");
        assert_eq!(flat.reading.plan.as_deref(), Some("Global Standard Flat Rate"));
        assert!(flat.reading.quota_expiry.is_some());
        assert!(flat.line.labels.contains(&("name".into(), "Soil Sensor (12345)".into())));
        let capped = &sims["89123400001234567891"];
        assert_eq!(capped.reading.data_quota, Some(ByteSize(1_005_000_000)));
        assert_eq!(capped.reading.data_remaining, Some(ByteSize(1_000_000)));
        assert!(capped.line.labels.contains(&("state".into(), "PAUSED".into())));
    }

    #[test]
    fn recorded_devices_plan_bytes_numeric_imsi_string_lastid_and_state_suffixes() {
        let page: Answer<Vec<Device>> =
            serde_json::from_str(include_str!("../../tests/fixtures/hologram/devices-recorded.json")).unwrap();
        assert_eq!(page.lastid.as_ref().map(|t| t.0.as_str()), Some("1234567"));
        let mut sims = HashMap::new();
        for d in page.data.unwrap() {
            d.collect(&mut sims, &cx());
        }
        let pilot = &sims["89123400001234567890"];
        // "Pilot Plan - 1MB": `data` 1000000 is bytes, decimal.
        assert_eq!(pilot.reading.data_quota, Some(ByteSize(1_000_000)));
        assert_eq!(pilot.reading.data_remaining, Some(ByteSize(1_000_000 - 250_000)));
        assert!(pilot.line.labels.contains(&("state".into(), "LIVE".into())), "{:?}", pilot.line.labels);
        assert!(pilot.line.labels.contains(&("state_detail".into(), "LIVE-PENDING".into())));
        let numeric: Answer<Vec<Device>> =
            serde_json::from_str(r#"{"success":true,"continues":false,"lastid":1234567,"data":[]}"#).unwrap();
        assert_eq!(numeric.lastid.map(|t| t.0), Some("1234567".into()));
    }
}
