//! The 1NCE Management API as the mock serves it (`shared/operators/iot.md` §2): OAuth2 client
//! credentials with Basic auth and a JSON body, the SIM list paged with the four `X-` headers,
//! data and SMS quota per SIM.

use super::iot::{self, fleet, fleet_mode, page_of, spread};
use super::{Ctx, MockRequest, Operator, Reply};

pub struct Onence;

/// The SIMs of the mock account outside fleet mode.
pub const SIMS: &[&str] = &["8988228066600000001", "8988228066600000002", "8988228066600000003"];

impl Operator for Onence {
    fn name(&self) -> &'static str {
        "1nce"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        if r.path == "/oauth/token" {
            return token(cx, r);
        }
        if !cx.token_valid(r.bearer()) {
            return self.expired(cx);
        }
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), parts.as_slice()) {
            ("GET", ["v1", "sims"]) => list(cx, r),
            ("GET", ["v1", "sims", iccid, "quota", kind @ ("data" | "sms")]) => quota(cx, iccid, kind),
            _ => not_found(),
        }
    }

    fn expired(&self, _cx: &Ctx<'_>) -> Reply {
        Reply::json(401, r#"{"message":"Unauthorized"}"#)
    }
}

fn not_found() -> Reply {
    Reply::json(404, r#"{"error_code":1000,"error_token":"NotFound","message":"Element not found"}"#)
}

fn token(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    if r.method != "POST" || !iot::basic_ok(cx, r) {
        return cx.fixture_with(400, "token-refused", "", &[]);
    }
    if !String::from_utf8_lossy(&r.body).contains("\"grant_type\":\"client_credentials\"") {
        return Reply::json(400, r#"{"statusCode":400,"errorCode":"BodyValidationError","message":"grant_type"}"#);
    }
    // Opaque, as the live API answers (iot.md §9): base64 of AWS Cognito's two JWTs, never a JWT.
    let token = cx.issue_token_as(|raw| {
        let jwt = format!("eyJraWQiOiJtb2NrIiwiYWxnIjoiUlMyNTYifQ.eyJleHAiOjF9.{raw}");
        super::base64(format!(r#"{{"idtoken":"{jwt}","accesstoken":"{jwt}"}}"#).as_bytes())
    });
    cx.fixture_with(200, "token", "", &[("token", token), ("expires_in", cx.expires_in().to_string())])
}

fn list(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let page = iot::number(r, "page", 1);
    let size = iot::number(r, "pageSize", 10).clamp(1, 100);
    let sims = fleet(cx, SIMS);
    let (chunk, pages) = page_of(&sims, page, size);
    let items: Vec<String> = chunk
        .iter()
        .map(|s| {
            format!(
                r#"{{"iccid":"{}","iccid_with_luhn":"{}0","imsi":"9014051{:08}","msisdn":"{}","imei":"35209900{:07}","imei_lock":false,"status":"{}","activation_date":"2023-03-09T07:59:09.000+0000","ip_address":"10.200.{}.{}","current_quota":500,"quota_status":{{"id":0,"description":"More than 20% available"}},"current_quota_SMS":250,"label":"{}"}}"#,
                s.iccid,
                s.iccid,
                s.index,
                s.msisdn,
                s.index,
                if s.enabled() { "Enabled" } else { "Disabled" },
                s.index / 250,
                s.index % 250,
                s.label()
            )
        })
        .collect();
    Reply::json(200, format!("[{}]", items.join(",")))
        .with_header("x-total-pages", &pages.to_string())
        .with_header("x-total-count", &sims.len().to_string())
        .with_header("x-current-page", &page.to_string())
        .with_header("x-count-per-page", &size.to_string())
}

fn quota(cx: &Ctx<'_>, iccid: &str, kind: &str) -> Reply {
    if !fleet_mode(cx) {
        return cx.fixture(&format!("quota-{kind}"), iccid);
    }
    if !iot::known(cx, iccid, SIMS) {
        return not_found();
    }
    let volume = if kind == "data" { spread(iccid, 50.0, 450.0) } else { spread(iccid, 0.0, 250.0).round() };
    Reply::json(200, format!(r#"{{"volume":{volume},"total_volume":500,"expiry_date":"2033-03-09 07:59:09"}}"#))
}
