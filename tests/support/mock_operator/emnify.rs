//! The emnify REST API as the mock serves it (`shared/operators/iot.md` §3): an application
//! token buys a JWT-shaped token with an `exp` claim; the endpoint list, paged with `X-`
//! headers, answers a page past the last with the last page again (as emnify documents);
//! quota per endpoint (404 when none is set); the organisation's stats with its prepaid
//! balance, in the recorded shapes of iot.md §9 (an empty 401 on refused tokens, no `sim` key
//! on SIM-less endpoints, 1401 for an unknown endpoint, `status.id` as a string). Flags: `no_total_pages` leaves the `X-` headers out, `postpaid` drops the balance.

use std::time::{SystemTime, UNIX_EPOCH};

use super::iot::{self, fleet, fleet_mode, page_of, spread, Sim};
use super::{base64, Ctx, MockRequest, Operator, Reply};

pub struct Emnify;

/// The SIMs of the mock organisation outside fleet mode; endpoint ids start at [`FIRST_ID`].
pub const SIMS: &[&str] = &["8988303000000000001", "8988303000000000002", "8988303000000000003"];
pub const FIRST_ID: u64 = 11_379_224;
/// An endpoint without a SIM, listed after the others (never a line).
const SIMLESS_ID: u64 = 11_379_900;

impl Operator for Emnify {
    fn name(&self) -> &'static str {
        "emnify"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        if r.path == "/api/v1/authenticate" {
            return authenticate(cx, r);
        }
        // The token is `header.claims.<issued token>`.
        if !cx.token_valid(r.bearer().and_then(|t| t.rsplit('.').next())) {
            return self.expired(cx);
        }
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), parts.as_slice()) {
            ("GET", ["api", "v1", "endpoint"]) => list(cx, r),
            ("GET", ["api", "v1", "endpoint", id, "quota", kind @ ("data" | "sms")]) => quota(cx, id, kind),
            ("GET", ["api", "v1", "organisation", "my", "stats"]) => {
                cx.fixture(if cx.flag("postpaid") { "stats-postpaid" } else { "stats" }, "")
            }
            _ => cx.fixture_with(404, "not-found", "", &[]),
        }
    }

    fn expired(&self, cx: &Ctx<'_>) -> Reply {
        cx.fixture_with(401, "token-invalid", "", &[])
    }
}

fn authenticate(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let (_, secret) = cx.credentials();
    if r.method != "POST" || body.get("application_token").and_then(|t| t.as_str()) != Some(secret) {
        // Mostly an empty body (iot.md §9).
        return Reply::json(401, "");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = format!(r#"{{"iat":{now},"exp":{},"esc.app":42}}"#, now + cx.expires_in());
    let jwt = format!("eyJhbGciOiJIUzUxMiJ9.{}.{}", base64url(claims.as_bytes()), cx.issue_token());
    cx.fixture_with(200, "authenticate", "", &[("token", jwt)])
}

fn base64url(bytes: &[u8]) -> String {
    base64(bytes).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

fn id_of(sim: &Sim) -> u64 {
    FIRST_ID + sim.index as u64
}

fn list(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let size = iot::number(r, "per_page", 1000).clamp(1, 1000);
    let mut items: Vec<String> = fleet(cx, SIMS)
        .iter()
        .map(|s| {
            let status = if s.enabled() { r#"{"id":0,"description":"Enabled"}"# } else { r#"{"id":1,"description":"Disabled"}"# };
            format!(
                r#"{{"id":{},"name":"{}","tags":"fleet,site-{}","created":"2021-11-18T08:25:53.000+0000","status":{status},"service_profile":{{"id":438035,"name":"Quota managed"}},"tariff_profile":{{"id":424560,"name":"All Covered"}},"sim":{{"id":{},"iccid":"{}","imsi":"29505090{:07}","msisdn":"{}","status":{{"id":1,"description":"Activated"}}}},"imei":null,"ip_address":"10.191.{}.{}","imei_lock":false}}"#,
                id_of(s),
                s.label(),
                s.index % 3,
                4_397_515 + s.index,
                s.iccid,
                s.index,
                s.msisdn,
                s.index / 250,
                s.index % 250
            )
        })
        .collect();
    items.push(format!(
        r#"{{"id":{SIMLESS_ID},"name":"spare","tags":null,"status":{{"id":0,"description":"Enabled"}},"imei":null}}"#
    ));
    let requested = iot::number(r, "page", 1).max(1);
    let pages = items.len().div_ceil(size).max(1);
    // "If the requested page does not exist … the last page is returned."
    let page = requested.min(pages);
    let (chunk, _) = page_of(&items, page, size);
    let reply = Reply::json(200, format!("[{}]", chunk.join(",")));
    if cx.flag("no_total_pages") {
        return reply;
    }
    reply
        .with_header("x-total-pages", &pages.to_string())
        .with_header("x-total-count", &items.len().to_string())
        .with_header("x-current-page", &page.to_string())
        .with_header("x-count-per-page", &size.to_string())
}

fn quota(cx: &Ctx<'_>, id: &str, kind: &str) -> Reply {
    let count = if fleet_mode(cx) { cx.fleet_size() } else { SIMS.len() };
    let index = id.parse::<u64>().ok().and_then(|id| id.checked_sub(FIRST_ID)).map(|i| i as usize);
    let Some(index) = index.filter(|i| *i < count) else {
        return cx.fixture_with(404, "endpoint-not-found", "", &[]);
    };
    let sim = Sim { index, iccid: format!("8970101{:012}", index + 1), msisdn: String::new() };
    if !fleet_mode(cx) {
        // The second endpoint's service profile manages no SMS quota.
        if kind == "sms" && sim.index == 1 {
            return cx.fixture_with(404, "not-found", "", &[]);
        }
        return cx.fixture(&format!("quota-{kind}"), id);
    }
    let volume = if kind == "data" { spread(&sim.iccid, 10.0, 90.0) } else { spread(&sim.iccid, 0.0, 100.0).round() };
    Reply::json(
        200,
        format!(
            r#"{{"status":{{"id":"1","description":"ACTIVE"}},"volume":{volume},"expiry_date":"2026-12-31 23:59:59","action_on_exhaustion":{{"id":1,"description":"Block"}}}}"#
        ),
    )
}
