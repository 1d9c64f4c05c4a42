//! `1nce`: the 1NCE Management API (`api.1nce.com/management-api`, OAuth2 client credentials).
//! Data and SMS quota per SIM (`/v1/sims/{iccid}/quota/data|sms`), the account's SIMs listed
//! page by page to `X-Total-Pages`. Shapes and limits follow `shared/operators/iot.md` §2 and
//! §8.1. The quota object is emnify's too (iot.md §1.2), so [`Quota`] serves both drivers.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::contract::{BuildContext, BuildError, Cost, DiscoveredLine, Driver, DriverSpec, PollContext};
use super::kit::decode::Text;
use super::kit::http::{error_field, total_pages, HttpClient, HttpOptions, Response};
use super::kit::ids::Msisdn;
use super::kit::pager::{NumberedPage, OnRepeat, Pager};
use super::kit::platform::{
    self, AccessToken, BearerApi, ClientCredentials, Paced, Platform, PlatformDriver, SimFacts,
};
use super::kit::quota::Quota;
use super::kit::session::{Fresh, Session};
use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::config::units::Rate;
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::Reading;

pub const DEFAULT_BASE_URL: &str = "https://api.1nce.com/management-api";
const TOKEN: &str = "/oauth/token";
const SIMS: &str = "/v1/sims";
/// `pageSize` maximum ("The maximum allowed value is 100").
const MAX_PAGE_SIZE: u64 = 100;

pub static SPEC: DriverSpec = DriverSpec {
    name: "1nce",
    summary: "1NCE Management API: data and SMS quota per SIM, expiry; lists the account's SIMs",
    example: r#"
accounts:
  trackers:
    driver: 1nce
    client_id: "api-user"               # a 1NCE portal user with API access
    client_secret: "change-me"          # in a real config: ${ONCE_SECRET} or client_secret_file
    # base_url: https://api.1nce.com/management-api
    # sms: true                         # also read the SMS quota (one more request per poll)
    # rate_limit: 10/s                  # 1NCE's documented limit on /sims, per customer
    discover:
      name: "{label}"                   # the SIM's label in the 1NCE portal
      labels: {fleet: trackers}
      include: {status: Enabled}
lines:
  - name: tracker-spare
    account: trackers
    iccid: "8988228066600000001"
"#,
    aliases: &[],
    needs_account: true,
    speaks_http: true,
    can_discover: true,
    default_operator: "1nce",
    // "/sims: 10 requests per second per customer" (iot.md §2.7), counted per request.
    default_rate_limit: Some(Rate { count: 10, period: Duration::from_secs(1) }),
    account_options,
    line_options,
    build,
};

#[derive(Clone, Debug)]
struct AccountOptions {
    http: HttpOptions,
    credentials: ClientCredentials,
    sms: bool,
    page_size: u64,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, DEFAULT_BASE_URL);
    let credentials = ClientCredentials::take(f);
    let sms = f.bool("sms").unwrap_or(true);
    let page_size = f.u64_in("page_size", 1, MAX_PAGE_SIZE).unwrap_or(MAX_PAGE_SIZE);
    DriverOptions(Arc::new(AccountOptions { http, credentials, sms, page_size }))
}

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    platform::needs_iccid(f, "1nce");
    DriverOptions::none()
}

#[derive(Default)]
struct State {
    token: Session<Secret>,
}

struct Onence {
    client: HttpClient,
    credentials: ClientCredentials,
    sms: bool,
    page_size: u64,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::contract::account_options::<AccountOptions>(account, "1nce")?;
    let Platform { client, state } = Platform::build(account, cx, &o.http, &o.credentials.keys())?;
    let (credentials, sms, page_size) = (o.credentials.clone(), o.sms, o.page_size);
    Ok(Paced::driver(Onence { client, credentials, sms, page_size, state }))
}

impl PlatformDriver for Onence {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let iccid = platform::iccid_of(line, "1nce")?;
        let data: Quota = self.quota(cx, iccid, "data").await?.json()?;
        let mut reading = Reading::default();
        data.apply_data(&mut reading, cx);
        if self.sms {
            let sms: Quota = self.quota(cx, iccid, "sms").await?.json()?;
            reading.sms_remaining = sms.remaining_count(cx, "SMS");
        }
        Ok(reading)
    }

    async fn list(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        self.list_sims(cx).await
    }

    fn cost(&self, lines: usize) -> Cost {
        Cost {
            requests_per_cycle: lines as f64 * if self.sms { 2.0 } else { 1.0 },
            requests_per_listing: platform::pages(lines, self.page_size),
            ..Cost::default()
        }
    }
}

impl BearerApi for Onence {
    fn token(&self) -> &Session<Secret> {
        &self.state.token
    }

    async fn login(&self, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        cx.note("asking 1NCE for an access token (client credentials)");
        let request = self
            .client
            .post(TOKEN)
            .basic_auth(&self.credentials.id, &self.credentials.secret)
            .json_body(&serde_json::json!({"grant_type": "client_credentials"}));
        let response = request.send(cx).await?;
        let status = response.status().as_u16();
        // Recorded from the live API: bad credentials answer 400 with a Cognito error
        // (`CognitoAuthenticationError`, "User does not exist." / "Incorrect username or
        // password."), so any refusal of the token endpoint is `auth`, whatever the code says.
        if matches!(status, 400 | 401 | 403) {
            let code = error_field(&response, &["errorCode", "error_token", "error"]).unwrap_or_default();
            let code = if code.is_empty() { String::new() } else { format!(" ({code})") };
            return Err(PollError::Auth(format!(
                "POST {TOKEN}: HTTP {status}, the client id or secret was refused{code}"
            )));
        }
        response.check(cx)?.json::<AccessToken>()?.fresh(&format!("POST {TOKEN}"), None)
    }
}

impl Onence {
    async fn quota(&self, cx: &PollContext, iccid: &str, kind: &'static str) -> Result<Response, PollError> {
        let path = format!("{SIMS}/{iccid}/quota/{kind}");
        let shown = format!("{SIMS}/{{iccid}}/quota/{kind}");
        let response = self.get(cx, |token| self.client.get(&path).bearer(token).log_as(shown.clone())).await?;
        match response.status().as_u16() {
            404 => Err(PollError::Config(format!(
                "GET {shown}: HTTP 404, the SIM is not in this 1NCE account; check the line's iccid"
            ))),
            // Recorded from the live API: a SIM of another account answers 200 with an empty body.
            200 if response.body().iter().all(u8::is_ascii_whitespace) => Err(PollError::Config(format!(
                "GET {shown}: HTTP 200 with an empty body, the SIM is not in this 1NCE account; check the line's iccid"
            ))),
            422 => Err(PollError::Config(format!(
                "GET {shown}: HTTP 422, the SIM is expired (1NCE allows only extensions for it)"
            ))),
            _ => response.check(cx),
        }
    }

    /// Every SIM of the account, pages 1 to `X-Total-Pages` (or to the first short page when
    /// the header is missing).
    async fn list_sims(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        let size = self.page_size.to_string();
        Pager::new(format!("GET {SIMS}"))
            .numbered(self.page_size, OnRepeat::Fail, "SIMs", cx, |page| {
                let (number, size) = (page.to_string(), &size);
                async move {
                    let response = self
                        .get(cx, |token| {
                            self.client.get(SIMS).bearer(token).query("page", &number).query("pageSize", size)
                        })
                        .await?
                        .check(cx)?;
                    let sims: Vec<SimCard> = response.json()?;
                    Ok(NumberedPage::of(sims, SimCard::into_line, total_pages(&response).map(u64::from)))
                }
            })
            .await
    }
}

/// One item of `GET /v1/sims`.
#[derive(Deserialize)]
struct SimCard {
    iccid: Text,
    #[serde(default)]
    msisdn: Option<Text>,
    #[serde(default)]
    imsi: Option<Text>,
    #[serde(default)]
    imei: Option<Text>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    ip_address: Option<String>,
}

impl SimCard {
    fn into_line(self) -> Option<DiscoveredLine> {
        let iccid = self.iccid.0.trim();
        if iccid.len() < 18 || iccid.len() > 22 || !iccid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut facts = SimFacts::default();
        facts.fact("imei", self.imei.map(|t| t.0));
        facts.fact("imsi", self.imsi.map(|t| t.0));
        facts.fact("ip_address", self.ip_address);
        facts.fact("label", self.label);
        facts.fact("status", self.status);
        facts.into_line(iccid, self.msisdn.and_then(|m| Msisdn(&m.0).normalized()), DriverOptions::none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::config::units::ByteSize;

    fn cx() -> PollContext {
        PollContext::new(Duration::from_secs(1), Arc::new(SystemClock))
    }

    #[test]
    fn quota_megabytes_are_binary_and_both_date_forms_are_read() {
        let q: Quota = serde_json::from_str(
            r#"{"volume":435.787951,"total_volume":500,"expiry_date":"2033-03-09 07:59:09","peak_throughput":1000000}"#,
        )
        .unwrap();
        let mut r = Reading::default();
        q.apply_data(&mut r, &cx());
        assert_eq!(r.data_remaining, Some(ByteSize(456_956_787)));
        assert_eq!(r.data_quota, Some(ByteSize(500 << 20)));
        let iso: Quota = serde_json::from_str(r#"{"volume":1,"expiry_date":"2033-03-09T07:59:09.000Z"}"#).unwrap();
        assert_eq!(iso.expiry(), q.expiry());
        let offset: Quota = serde_json::from_str(r#"{"volume":1,"expiry_date":"2033-03-09T07:59:09+0000"}"#).unwrap();
        assert_eq!(offset.expiry(), q.expiry());
    }

    #[test]
    fn negative_volume_reads_as_nothing_left() {
        let q: Quota = serde_json::from_str(r#"{"volume":-12.5,"total_volume":500}"#).unwrap();
        let cx = cx();
        let mut r = Reading::default();
        q.apply_data(&mut r, &cx);
        assert_eq!(r.data_remaining, Some(ByteSize(0)));
        assert!(cx.take_notes()[0].contains("negative"));
        assert_eq!(q.remaining_count(&cx, "SMS"), Some(0));
    }

    #[test]
    fn sim_cards_become_discovered_lines() {
        let card: SimCard = serde_json::from_str(
            r#"{"iccid":"8988228066600000001","msisdn":"882285100000018","imsi":901405100000018,"status":"Enabled","label":"tracker-17","current_quota":500}"#,
        )
        .unwrap();
        let line = card.into_line().unwrap();
        assert_eq!(line.id, "8988228066600000001");
        assert_eq!(line.msisdn.as_deref(), Some("+882285100000018"));
        assert_eq!(
            line.labels,
            vec![
                ("imsi".into(), "901405100000018".into()),
                ("label".into(), "tracker-17".into()),
                ("status".into(), "Enabled".into())
            ]
        );
        let bad: SimCard = serde_json::from_str(r#"{"iccid":"12"}"#).unwrap();
        assert!(bad.into_line().is_none());
    }
}
