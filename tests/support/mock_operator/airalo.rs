//! The Airalo Partner API as the mock serves it (`shared/operators/iot.md` §4): a token from a
//! form post, the eSIM list paged with `meta.last_page`, usage per eSIM, the partner balance.

use super::iot::{self, fleet, fleet_mode, page_of, spread};
use super::{Ctx, MockRequest, Operator, Reply};

pub struct Airalo;

/// The eSIMs of the mock partner outside fleet mode.
pub const SIMS: &[&str] = &["8944465400000000001", "8944465400000000002", "8944465400000000003"];

impl Operator for Airalo {
    fn name(&self) -> &'static str {
        "airalo"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        if r.path == "/token" {
            return token(cx, r);
        }
        if !cx.token_valid(r.bearer()) {
            return self.expired(cx);
        }
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), parts.as_slice()) {
            ("GET", ["sims"]) => list(cx, r),
            ("GET", ["sims", iccid, "usage"]) => usage(cx, iccid),
            ("GET", ["balance"]) => cx.fixture("balance", ""),
            _ => cx.fixture_with(404, "not-found", "", &[]),
        }
    }

    fn expired(&self, _cx: &Ctx<'_>) -> Reply {
        Reply::json(401, r#"{"data":[],"meta":{"message":"Unauthenticated."}}"#)
    }
}

fn token(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&r.body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (id, secret) = cx.credentials();
    if r.method != "POST" || get("client_id") != Some(id) || get("client_secret") != Some(secret) {
        return cx.fixture_with(401, "token-refused", "", &[]);
    }
    if get("grant_type") != Some("client_credentials") {
        return Reply::json(
            422,
            r#"{"data":{"grant_type":"The grant type field is required."},"meta":{"message":"the parameter is invalid"}}"#,
        );
    }
    let token = cx.issue_token();
    cx.fixture_with(200, "token", "", &[("token", token), ("expires_in", "31622400".into())])
}

fn list(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let limit = iot::number(r, "limit", 25).clamp(1, 1000);
    let page = iot::number(r, "page", 1).max(1);
    let sims = fleet(cx, SIMS);
    let (chunk, pages) = page_of(&sims, page, limit);
    let items: Vec<String> = chunk
        .iter()
        .map(|s| {
            format!(
                r#"{{"id":{},"created_at":"2026-01-10 10:00:00","iccid":"{}","lpa":"lpa.airalo.com","matching_id":"TEST-{}","apn_type":"automatic","is_roaming":true,"brand_settings_name":null,"recycled":false,"simable":{{"id":{},"package_id":"{}","validity":"30","price":"4.50","net_price":3.6,"data":"1 GB","currency":"USD","status":{}}}}}"#,
                1000 + s.index,
                s.iccid,
                s.index,
                5000 + s.index,
                if s.index % 2 == 0 { "discover-30days-1gb" } else { "change-7days-1gb" },
                // `status` may be null (recorded, iot.md §9).
                if s.index % 2 == 0 { r#"{"name":"Completed","slug":"completed"}"# } else { "null" },
            )
        })
        .collect();
    Reply::json(
        200,
        format!(
            r#"{{"data":[{}],"links":{{"first":null,"last":null,"prev":null,"next":null}},"meta":{{"message":"success","current_page":{page},"from":1,"last_page":{pages},"path":"/v2/sims","per_page":"{limit}","to":{},"total":{}}}}}"#,
            items.join(","),
            chunk.len(),
            sims.len()
        ),
    )
}

fn usage(cx: &Ctx<'_>, iccid: &str) -> Reply {
    if !iot::known(cx, iccid, SIMS) {
        return cx.fixture_with(404, "not-found", "", &[]);
    }
    if !fleet_mode(cx) {
        return cx.fixture("usage", iccid);
    }
    let remaining = spread(iccid, 100.0, 900.0).round();
    Reply::json(
        200,
        format!(
            r#"{{"data":{{"remaining":{remaining},"total":1024,"expired_at":"2026-08-01 10:30:45","is_unlimited":false,"status":"ACTIVE","remaining_voice":0,"remaining_text":0,"total_voice":0,"total_text":0}},"meta":{{"message":"api.succes"}}}}"#
        ),
    )
}
