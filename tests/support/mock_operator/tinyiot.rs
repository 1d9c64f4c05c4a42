//! "TinyIoT", a small JSON API that no built-in driver knows, for the `http_json` driver (served
//! under `/http_json`, fixtures in `tests/fixtures/http_json/`): OAuth2 client credentials at
//! `/oauth/token`, one line at `/api/v2/lines/{iccid}`, the lines at `/api/v2/lines?page=N`
//! (50 a page, `meta.pages`).

use super::iot::{self, fleet, fleet_mode, page_of, spread};
use super::{Ctx, MockRequest, Operator, Reply};

pub struct TinyIot;

/// The lines of the mock account outside fleet mode.
pub const SIMS: &[&str] = &["8935711001000000001", "8935711001000000002", "8935711001000000003"];
const PAGE: usize = 50;

impl Operator for TinyIot {
    fn name(&self) -> &'static str {
        "http_json"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        if r.path == "/oauth/token" {
            let form = String::from_utf8_lossy(&r.body);
            if r.method != "POST" || !iot::basic_ok(cx, r) {
                return cx.fixture_with(401, "token-refused", "", &[]);
            }
            if !form.contains("grant_type=client_credentials") {
                return Reply::json(400, r#"{"error":"unsupported_grant_type"}"#);
            }
            let token = cx.issue_token();
            return cx.fixture_with(200, "token", "", &[("token", token), ("expires_in", cx.expires_in().to_string())]);
        }
        if !cx.token_valid(r.bearer()) {
            return self.expired(cx);
        }
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), parts.as_slice()) {
            ("GET", ["api", "v2", "lines"]) => lines(cx, r),
            ("GET", ["api", "v2", "lines", iccid]) => line(cx, iccid),
            _ => Reply::json(404, r#"{"error":"not_found"}"#),
        }
    }

    fn expired(&self, _cx: &Ctx<'_>) -> Reply {
        Reply::json(401, r#"{"error":"invalid_token"}"#)
    }
}

fn lines(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let sims = fleet(cx, SIMS);
    let page = iot::number(r, "page", 1).max(1);
    let (chunk, pages) = page_of(&sims, page, PAGE);
    let items: Vec<String> = chunk
        .iter()
        .map(|s| {
            format!(
                r#"{{"iccid":"{}","msisdn":"+{}","name":"{}","state":"{}"}}"#,
                s.iccid,
                s.msisdn,
                s.label(),
                if s.enabled() { "active" } else { "suspended" }
            )
        })
        .collect();
    Reply::json(200, format!(r#"{{"lines":[{}],"meta":{{"page":{page},"pages":{pages}}}}}"#, items.join(",")))
}

fn line(cx: &Ctx<'_>, iccid: &str) -> Reply {
    if !iot::known(cx, iccid, SIMS) {
        return Reply::json(404, r#"{"error":"not_found"}"#);
    }
    if !fleet_mode(cx) {
        return cx.fixture("line", iccid);
    }
    let left = spread(iccid, 1000.0, 9000.0).round();
    Reply::json(
        200,
        format!(
            r#"{{"line":{{"iccid":"{iccid}","state":"active","usage":{{"left_kb":{left},"limit_kb":10240,"unlimited":false}},"valid_until":1798675200,"credit":{{"value":"{}","cur":"EUR"}},"tariff":"Tiny 2G","addons":[]}}}}"#,
            spread(iccid, 1.0, 98.0)
        ),
    )
}
