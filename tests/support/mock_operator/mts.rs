//! The MTS Business API as the mock serves it (shapes of `shared/operators/ru.md` §2.1).

use super::{base64, Ctx, MockRequest, Operator, Reply};

pub struct Mts;

impl Operator for Mts {
    fn name(&self) -> &'static str {
        "mts"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        if r.path == "/token" || r.path == "/token/" {
            return token(cx, r);
        }
        if !cx.token_valid(r.bearer()) {
            return self.expired(cx);
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/b2b/v1/Bills/CheckBalanceByMSISDN") => {
                let number = r.query("characteristic.value").unwrap_or("");
                known(cx, number).unwrap_or_else(|| cx.fixture("balance", number))
            }
            ("GET", "/b2b/v1/Bills/CheckBalanceByAccount") => {
                cx.fixture("balance-account", r.query("accountNo").unwrap_or(""))
            }
            ("GET", "/b2b/v1/Bills/ValidityInfo") => {
                let key = r.query("customerAccount.accountNo").unwrap_or("");
                known(cx, key).unwrap_or_else(|| cx.fixture("counters", key))
            }
            ("GET", "/b2b/v1/Service/HierarchyStructure") => hierarchy(cx, r),
            _ => Reply::json(404, r#"{"errorCode":"404","errorMessage":"Resource not found"}"#),
        }
    }

    fn expired(&self, cx: &Ctx<'_>) -> Reply {
        cx.fixture_with(401, "error-expired", "", &[])
    }
}

/// In fleet mode, a number the mock does not know is "not visible" (401/1014).
fn known(cx: &Ctx<'_>, number: &str) -> Option<Reply> {
    let lines = cx.lines();
    let unknown = !lines.is_empty() && !lines.iter().any(|l| l.msisdn == number || l.account_no == number);
    unknown.then(|| cx.fixture_with(401, "error-not-visible", "", &[]))
}

fn token(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let (id, secret) = cx.credentials();
    let expected = format!("Basic {}", base64(format!("{id}:{secret}").as_bytes()));
    let form = String::from_utf8_lossy(&r.body);
    if r.method != "POST" || r.header("authorization") != Some(expected.as_str()) {
        return cx.fixture_with(401, "token-refused", "", &[]);
    }
    if !form.contains("grant_type=client_credentials") {
        return Reply::json(400, r#"{"error":"unsupported_grant_type"}"#);
    }
    let token = cx.issue_token();
    cx.fixture_with(200, "token", "", &[("token", token), ("expires_in", cx.expires_in().to_string())])
}

/// Pages from `hierarchy-<page>.json`, or generated from the fleet's lines.
fn hierarchy(cx: &Ctx<'_>, r: &MockRequest) -> Reply {
    let page: usize = r.query("pageNum").and_then(|p| p.parse().ok()).unwrap_or(1);
    let lines = cx.lines();
    if lines.is_empty() {
        return cx.fixture(&format!("hierarchy-{page}"), "");
    }
    let size: usize = r.query("pageSize").and_then(|p| p.parse().ok()).unwrap_or(1000).clamp(1, 1000);
    let chunk: Vec<_> = lines.iter().skip((page - 1) * size).take(size).collect();
    let mut accounts: Vec<(String, Vec<String>)> = Vec::new();
    for line in chunk {
        let product =
            format!(r#"{{"productSerialNumber":"{}","iccid":"{}","status":"Active"}}"#, line.msisdn, line.iccid);
        match accounts.iter_mut().find(|(a, _)| *a == line.account_no) {
            Some((_, products)) => products.push(product),
            None => accounts.push((line.account_no.clone(), vec![product])),
        }
    }
    let accounts: Vec<String> =
        accounts.into_iter().map(|(a, p)| format!(r#"{{"accountNo":"{a}","products":[{}]}}"#, p.join(","))).collect();
    let more = page * size < lines.len();
    Reply::json(
        200,
        format!(
            r#"{{"pageNum":{page},"pageSize":{size},"hasMore":{more},"organizations":[{{"inn":"7700000000","contracts":[{{"contractNo":"100000000001","accounts":[{}]}}]}}]}}"#,
            accounts.join(",")
        ),
    )
}
