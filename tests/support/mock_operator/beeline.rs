//! The my.beeline.ru API as the mock serves it (shapes of `shared/operators/ru.md` §4.1 and §10):
//! both logins, the token read from the cookie or the header as each endpoint reads it.

use super::{Ctx, MockRequest, Operator, Reply};

pub struct Beeline;

impl Operator for Beeline {
    fn name(&self) -> &'static str {
        "beeline"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        match (r.method.as_str(), r.path.as_str()) {
            ("PUT", "/api/2.0/auth/auth") if cx.flag("v2_missing") => Reply::json(404, r#"{"error":"Not Found"}"#),
            ("PUT", "/api/2.0/auth/auth") if cx.flag("v2_not_implemented") => {
                Reply::new(501, "text/html", "<html><body>501 Not Implemented</body></html>")
            }
            ("PUT", "/api/2.0/auth/auth") => {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                login(cx, r.query("login"), body.get("password").and_then(|p| p.as_str()))
            }
            ("GET", "/api/1.0/auth") if cx.flag("v1_missing") => Reply::json(405, r#"{"error":"Method Not Allowed"}"#),
            ("GET", "/api/1.0/auth") => login(cx, r.query("login"), r.query("password")),
            _ => {
                // As ru.md §10 has it: `payType` reads the cookie `token`, the balance and
                // remainder endpoints the header `X-API-Token`.
                let token = if r.path == "/api/1.0/info/payType" {
                    r.cookie("token")
                } else {
                    r.header("x-api-token").map(str::to_string)
                };
                if !cx.token_valid(token.as_deref()) {
                    return self.expired(cx);
                }
                data(cx, r)
            }
        }
    }

    fn expired(&self, cx: &Ctx<'_>) -> Reply {
        cx.fixture_with(401, "token-expired", "", &[])
    }
}

fn login(cx: &Ctx<'_>, login: Option<&str>, password: Option<&str>) -> Reply {
    if cx.flag("system_error") {
        return cx.fixture("auth-system-error", "");
    }
    let (user, secret) = cx.credentials();
    if login != Some(user) || password != Some(secret) {
        return if cx.flag("blocked") { cx.fixture("auth-blocked", "") } else { cx.fixture("auth-refused", "") };
    }
    let token = cx.issue_token();
    cx.fixture_with(200, "auth", "", &[("token", token)])
}

fn data(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let ctn = r.query("ctn").unwrap_or("");
    let lines = cx.lines();
    if !lines.is_empty() && !ctn.is_empty() && !lines.iter().any(|l| l.msisdn.ends_with(ctn)) {
        return cx.fixture("error-unknown-ctn", "");
    }
    let name = match r.path.as_str() {
        "/api/1.0/info/payType" => "paytype",
        "/api/1.0/info/prepaidBalance" => "prepaid-balance",
        "/api/1.0/info/postpaidBalance" => {
            return match r.query("ban") {
                Some(ban) => cx.fixture("postpaid-balance", ban),
                None => cx.fixture("postpaid-balance", ctn),
            }
        }
        "/api/1.0/info/accumulators" => "accumulators",
        "/api/1.0/info/rests" => "rests",
        "/api/1.0/sso/subscribers" if !lines.is_empty() => {
            let subscribers: Vec<String> =
                lines.iter().map(|l| format!(r#"{{"ctn":"{}","ctnDefault":false}}"#, &l.msisdn[1..])).collect();
            return Reply::json(
                200,
                format!(
                    r#"{{"meta":{{"status":"OK","code":20000,"message":null}},"subscribers":[{}]}}"#,
                    subscribers.join(",")
                ),
            );
        }
        "/api/1.0/sso/subscribers" => "subscribers",
        _ => return Reply::json(404, r#"{"meta":{"status":"ERROR","code":40400,"message":"NOT_FOUND"}}"#),
    };
    cx.fixture(name, ctn)
}
