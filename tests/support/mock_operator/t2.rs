//! T2's subscriber API and Keycloak token endpoint as the mock serves them
//! (`shared/operators/ru.md` §5): password, SMS-code and refresh grants (refresh tokens rotate:
//! a used one dies), the e-mail security code, balance and rests per number.
//!
//! The credentials' secret is a refresh token the mock accepts again and again (a login made
//! before the test). Flags: `secret_revoked` (it is refused), `email_2fa` (SMS-code logins need
//! the e-mail security code too), `antibot` (the token and SMS endpoints answer NGENIX's 403
//! page), `meta_expiry` (an expired token gets 200 with `meta.status` ERROR, not 401).

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Ctx, MockRequest, Operator, Reply};

pub const TOKEN_PATH: &str = "/auth/realms/tele2-b2c/protocol/openid-connect/token";
/// The SMS code the mock "sends".
pub const SMS_CODE: &str = "271828";
/// The e-mail security code (flag `email_2fa`).
pub const SECURITY_CODE: &str = "161803";
/// The password the password grant accepts.
pub const PASSWORD: &str = "mock-t2-password-1f8b";
const SECURITY_CODE_TOKEN: &str = "mock-security-code-token";
const ANTIBOT_PAGE: &str =
    "<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body><h1>Access denied</h1><p>ngenix</p></body></html>";

#[derive(Default)]
pub struct T2 {
    /// Access tokens: the number they belong to.
    access: Mutex<HashMap<String, String>>,
    /// Refresh tokens not yet used: the number they belong to.
    refresh: Mutex<HashMap<String, String>>,
}

impl Operator for T2 {
    fn name(&self) -> &'static str {
        "t2"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), r.path.as_str(), parts.as_slice()) {
            ("POST", TOKEN_PATH, _) => self.token(cx, r),
            ("POST", "/auth/realms/tele2-b2c/credential-management/security-codes", _) => {
                Reply::json(200, format!(r#"{{"security_code_token":"{SECURITY_CODE_TOKEN}"}}"#))
            }
            ("POST", _, ["api", "validation", "number", _]) if cx.flag("antibot") => {
                Reply::new(403, "text/html", ANTIBOT_PAGE)
            }
            ("POST", _, ["api", "validation", "number", _]) => Reply::json(200, r#"{"meta":{"status":"OK"}}"#),
            ("GET", _, ["api", "subscribers", number, what @ ("balance" | "rests")]) => {
                let token = r.bearer().unwrap_or("");
                let owner = self.access.lock().unwrap().get(token).cloned();
                if !cx.token_valid(Some(token)) || owner.is_none() {
                    return self.expired(cx);
                }
                cx.fixture(what, number)
            }
            _ => Reply::json(404, r#"{"meta":{"status":"ERROR","message":"Not found"}}"#),
        }
    }

    fn expired(&self, cx: &Ctx<'_>) -> Reply {
        let status = if cx.flag("meta_expiry") { 200 } else { 401 };
        Reply::json(status, r#"{"meta":{"status":"ERROR","message":"User must be logged in."}}"#)
    }
}

impl T2 {
    fn token(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        if cx.flag("antibot") {
            return Reply::new(403, "text/html", ANTIBOT_PAGE);
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&r.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if get("client_id").is_empty() {
            return Reply::json(400, r#"{"error":"invalid_client","error_description":"Missing client_id"}"#);
        }
        let refused = |description: &str| {
            Reply::json(401, format!(r#"{{"error":"invalid_grant","error_description":"{description}"}}"#))
        };
        let login = match get("grant_type") {
            "refresh_token" => {
                let token = get("refresh_token");
                let used = self.refresh.lock().unwrap().remove(token);
                match used {
                    Some(login) => login,
                    None if token == cx.credentials().1 && !cx.flag("secret_revoked") => cx.credentials().0.to_string(),
                    None => {
                        return Reply::json(
                            400,
                            r#"{"error":"invalid_grant","error_description":"Token is not active"}"#,
                        )
                    }
                }
            }
            "password" => {
                let ok = match get("password_type") {
                    "sms_code" => get("password") == SMS_CODE,
                    _ => get("password") == PASSWORD,
                };
                if !ok {
                    return refused("Invalid user credentials");
                }
                if get("password_type") == "sms_code" && cx.flag("email_2fa") {
                    if get("security_code").is_empty() {
                        return refused("Security code is empty");
                    }
                    if get("security_code") != SECURITY_CODE || get("security_code_token") != SECURITY_CODE_TOKEN {
                        return refused("Invalid security code");
                    }
                }
                get("username").to_string()
            }
            _ => return Reply::json(400, r#"{"error":"unsupported_grant_type"}"#),
        };
        let access = cx.issue_token();
        let refresh = cx.issue_token();
        self.access.lock().unwrap().insert(access.clone(), login.clone());
        self.refresh.lock().unwrap().insert(refresh.clone(), login);
        cx.fixture_with(
            200,
            "token",
            "",
            &[("token", access), ("refresh", refresh), ("expires_in", cx.expires_in().to_string())],
        )
    }
}
