//! `1nce`: the 1NCE Management API (`api.1nce.com/management-api`, OAuth2 client credentials).
//! Data and SMS quota per SIM (`/v1/sims/{iccid}/quota/data|sms`), the account's SIMs listed
//! page by page to `X-Total-Pages`. Shapes and limits follow `shared/operators/iot.md` §2 and
//! §8.1. The quota object is emnify's too (iot.md §1.2), so [`Quota`] serves both drivers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::contract::{BoxFuture, BuildContext, BuildError, Cost, DiscoveredLine, Driver, DriverSpec, PollContext};
use super::http::{self, HttpClient, HttpOptions, Num, Request, Response, Text};
use super::kit::ids::Msisdn;
use super::session::{Fresh, Session};
use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::config::units::{ByteSize, Rate};
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::Reading;

pub const DEFAULT_BASE_URL: &str = "https://api.1nce.com/management-api";
const TOKEN: &str = "/oauth/token";
const SIMS: &str = "/v1/sims";
/// "MB" on the 1NCE/emnify platform: "1 megabyte = 1024 kilobytes" (iot.md §1.3).
pub const MB: f64 = 1_048_576.0;
/// `pageSize` maximum ("The maximum allowed value is 100").
const MAX_PAGE_SIZE: u64 = 100;
/// 100 SIMs a page: ten million SIMs. Past this the paging is taken to be broken.
const MAX_PAGES: u32 = 100_000;

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
    client_id: String,
    client_secret: Secret,
    sms: bool,
    page_size: u64,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, DEFAULT_BASE_URL);
    let client_id = f.required_string("client_id").unwrap_or_default();
    let client_secret = required_secret(f, "client_secret", "client_secret_file");
    let sms = f.bool("sms").unwrap_or(true);
    let page_size = f.u64_in("page_size", 1, MAX_PAGE_SIZE).unwrap_or(MAX_PAGE_SIZE);
    DriverOptions(Arc::new(AccountOptions { http, client_id, client_secret, sms, page_size }))
}

/// A secret that must be given (as `key` or `key_file`).
pub(crate) fn required_secret(f: &mut Fields<'_>, key: &'static str, key_file: &'static str) -> Secret {
    let given = f.has(key) || f.has(key_file);
    let secret = f.secret(key, key_file).unwrap_or_else(|| Secret::new(""));
    if !given {
        f.sink().error(Some(f.pos()), f.path(), format!("missing required key `{key}` (or `{key_file}`)"));
    }
    secret
}

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    if !f.has("iccid") {
        f.sink().error(Some(f.pos()), f.path(), "a `1nce` line needs `iccid`");
    }
    DriverOptions::none()
}

#[derive(Default)]
struct State {
    token: Session<Secret>,
}

struct Onence {
    client: HttpClient,
    client_id: String,
    client_secret: Secret,
    sms: bool,
    page_size: u64,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::account_options::<AccountOptions>(account, "1nce")?;
    let client = HttpClient::new(account, &o.http, cx)?;
    let fingerprint = cx.sessions.fingerprint(&[&o.client_id, o.client_secret.expose(), o.http.base_url.as_str()]);
    let state = cx.sessions.get_or_create("1nce", &account.name, fingerprint, State::default);
    Ok(Arc::new(Onence {
        client,
        client_id: o.client_id.clone(),
        client_secret: o.client_secret.clone(),
        sms: o.sms,
        page_size: o.page_size,
        state,
    }))
}

impl Driver for Onence {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(self.read(line, cx))
    }

    fn discover<'a>(&'a self, cx: &'a PollContext) -> BoxFuture<'a, Result<Vec<DiscoveredLine>, PollError>> {
        Box::pin(self.list_sims(cx))
    }

    fn paces_requests(&self) -> bool {
        true
    }

    fn cost(&self, lines: usize) -> Option<Cost> {
        Some(Cost {
            requests_per_cycle: lines as f64 * if self.sms { 2.0 } else { 1.0 },
            requests_per_listing: (lines as f64 / self.page_size as f64).ceil().max(1.0),
            ..Cost::default()
        })
    }
}

impl Onence {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let iccid = line.iccid.as_deref().ok_or_else(|| PollError::Config("a 1nce line needs `iccid`".into()))?;
        let data: Quota = self.quota(cx, iccid, "data").await?.json()?;
        let mut reading = Reading::default();
        data.apply_data(&mut reading, cx);
        if self.sms {
            let sms: Quota = self.quota(cx, iccid, "sms").await?.json()?;
            reading.sms_remaining = sms.remaining_count(cx, "SMS");
        }
        Ok(reading)
    }

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

    async fn login(&self, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        cx.note("asking 1NCE for an access token (client credentials)");
        let request = self
            .client
            .post(TOKEN)
            .basic_auth(&self.client_id, &self.client_secret)
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
        let token: Token = response.check(cx)?.json()?;
        if token.access_token.trim().is_empty() {
            return Err(PollError::BadResponse(format!("POST {TOKEN}: empty access_token")));
        }
        Ok(Fresh { value: Secret::new(token.access_token), expires_in: token.expires_in.map(seconds) })
    }

    /// A GET with the account's token, paced; a rejected token is replaced once. The status
    /// is left to the caller.
    async fn get<'a>(
        &'a self,
        cx: &'a PollContext,
        request: impl Fn(&Secret) -> Request<'a>,
    ) -> Result<Response, PollError> {
        self.state
            .token
            .call(cx, || self.login(cx), |token| request(&token).send(cx), |r| r.status().as_u16() == 401)
            .await
    }

    /// Every SIM of the account, pages 1 to `X-Total-Pages` (or to the first short page when
    /// the header is missing).
    async fn list_sims(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        let mut found = Vec::new();
        let size = self.page_size.to_string();
        let mut page = 1u32;
        loop {
            let number = page.to_string();
            let response = self
                .get(cx, |token| self.client.get(SIMS).bearer(token).query("page", &number).query("pageSize", &size))
                .await?
                .check(cx)?;
            let sims: Vec<SimCard> = response.json()?;
            let on_page = sims.len();
            found.extend(sims.into_iter().filter_map(SimCard::into_line));
            let total = total_pages(&response);
            cx.note(format!(
                "GET {SIMS} page {page} of {}: {on_page} SIMs",
                total.map_or("?".into(), |t| t.to_string())
            ));
            let more = match total {
                Some(total) => page < total,
                None => on_page as u64 >= self.page_size,
            };
            if !more {
                return Ok(found);
            }
            if page >= MAX_PAGES {
                return Err(PollError::BadResponse(format!("GET {SIMS}: still more pages after {MAX_PAGES}")));
            }
            page += 1;
        }
    }
}

fn seconds(n: Num) -> Duration {
    Duration::from_secs_f64(n.0.clamp(0.0, 1e9))
}

/// `X-Total-Pages` of a paged listing (1NCE, emnify).
pub(crate) fn total_pages(response: &Response) -> Option<u32> {
    response.header("x-total-pages")?.trim().parse().ok()
}

/// The first of `keys` in a JSON error body that holds a short plain value.
pub(crate) fn error_field(response: &Response, keys: &[&str]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(response.body()).ok()?;
    keys.iter().find_map(|k| match value.get(*k)? {
        serde_json::Value::String(s) if s.len() <= 64 => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Num>,
}

/// A quota (1NCE v1 `Quota`, emnify `EndpointQuota`): `volume` left (MB of data, or SMS),
/// `total_volume` (1NCE only), `expiry_date` in either date form.
#[derive(Deserialize, Debug)]
pub(crate) struct Quota {
    pub volume: Num,
    #[serde(default)]
    pub total_volume: Option<Num>,
    #[serde(default)]
    pub expiry_date: Option<String>,
    #[serde(default)]
    pub status: Option<QuotaStatus>,
}

#[derive(Deserialize, Debug)]
pub(crate) struct QuotaStatus {
    #[serde(default)]
    pub description: Option<String>,
}

impl Quota {
    /// Data left, total and expiry into `reading`. A negative `volume` (1NCE v2: "can be
    /// negative", usage past the quota) reads as 0 left, with a note.
    pub fn apply_data(&self, reading: &mut Reading, cx: &PollContext) {
        let volume = self.volume.0;
        if volume < 0.0 {
            cx.note(format!("data quota volume is negative ({volume:.3} MB: used past the quota); reported as 0 left"));
        }
        reading.data_remaining = Some(mb(volume));
        reading.data_quota = self.total_volume.filter(|t| t.0 > 0.0).map(|t| mb(t.0));
        reading.quota_expiry = self.expiry();
        if let Some(status) = self.status.as_ref().and_then(|s| s.description.as_deref()) {
            cx.note(format!("data quota status: {status}"));
        }
    }

    /// `volume` as a count (SMS), negative read as 0.
    pub fn remaining_count(&self, cx: &PollContext, what: &str) -> Option<u64> {
        let volume = self.volume.0;
        if volume < 0.0 {
            cx.note(format!("{what} quota volume is negative ({volume}); reported as 0 left"));
        }
        Some(volume.max(0.0).round() as u64)
    }

    /// `expiry_date`: `2033-03-09 07:59:09` (zone-less, UTC) or ISO 8601 (`…T…Z`, `+0000`).
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry_date.as_deref().and_then(http::parse_rfc3339)
    }
}

/// Megabytes (binary, see [`MB`]) as bytes; negative is 0.
pub(crate) fn mb(value: f64) -> ByteSize {
    ByteSize((value.max(0.0) * MB).round() as u64)
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
        let iccid = self.iccid.0.trim().to_string();
        if iccid.len() < 18 || iccid.len() > 22 || !iccid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut facts = Vec::new();
        let mut fact = |name: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                facts.push((name.to_string(), v.trim().to_string()));
            }
        };
        fact("imei", self.imei.map(|t| t.0));
        fact("imsi", self.imsi.map(|t| t.0));
        fact("ip_address", self.ip_address);
        fact("label", self.label);
        fact("status", self.status);
        facts.sort();
        Some(DiscoveredLine {
            msisdn: self.msisdn.and_then(|m| Msisdn(&m.0).normalized()),
            iccid: Some(iccid.clone()),
            labels: facts,
            options: DriverOptions::none(),
            id: iccid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

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
