//! MegaFon's mobile-app API as the mock serves it (`shared/operators/ru.md` §3.1): the SMS
//! login and device binding of `esim-exporter login`, device-token and PIN logins, the
//! password login, balance and remainders by the logged-in number.
//!
//! The credentials' secret is a device token bound to any number the mock knows. Flags:
//! `secret_revoked` (that token is refused: the PIN fallback has to re-bind), `pin_refused`,
//! `captcha` (every login answers `a211`), `blocked` (every login answers `a216`).

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Ctx, MockRequest, Operator, Reply};

/// The SMS code the mock "sends".
pub const SMS_CODE: &str = "271828";
/// The PIN of numbers that never set one (a device bound before the test).
pub const PIN: &str = "2468";
/// The password `/mlk/login` accepts.
pub const PASSWORD: &str = "mock-megafon-password-9c2f";

#[derive(Default)]
pub struct Megafon {
    /// Session tokens by token: the number they belong to.
    sessions: Mutex<HashMap<String, String>>,
    /// Device tokens bound through `/mlk/api/profile/biometry`: token → number.
    devices: Mutex<HashMap<String, String>>,
    /// PINs set through `/mlk/api/profile/pin`, by number.
    pins: Mutex<HashMap<String, String>>,
}

impl Operator for Megafon {
    fn name(&self) -> &'static str {
        "megafon"
    }

    fn handle(&self, cx: &Ctx<'_>, r: &MockRequest) -> Reply {
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/mlk/auth/otp/request") => self.gate(cx, r).unwrap_or_else(|| Reply::json(200, r#"{"ok":true}"#)),
            ("POST", "/mlk/api/auth/otp/submit") => self.gate(cx, r).unwrap_or_else(|| {
                let form = form(r);
                match (form.get("login"), form.get("otp")) {
                    (Some(login), Some(otp)) if otp == SMS_CODE => self.session(cx, login),
                    _ => Reply::json(400, r#"{"code":"a205","message":"Неверный код из SMS"}"#),
                }
            }),
            ("POST", "/mlk/login") => self.gate(cx, r).unwrap_or_else(|| {
                let form = form(r);
                match (form.get("login"), form.get("password")) {
                    (Some(login), Some(password)) if password == PASSWORD => self.session(cx, login),
                    _ => Reply::json(401, r#"{"code":"a201","message":"Неправильный номер телефона или пароль"}"#),
                }
            }),
            ("POST", "/mlk/auth/biometry") => self.gate(cx, r).unwrap_or_else(|| {
                let body = json(r);
                let (login, token) = (text(&body, "msisdn"), text(&body, "token"));
                let secret = cx.credentials().1;
                let bound = self.devices.lock().unwrap().get(&token) == Some(&login);
                if (token == secret && !cx.flag("secret_revoked")) || bound {
                    self.session(cx, &login)
                } else {
                    Reply::json(401, r#"{"code":"a212","message":"Токен устройства недействителен"}"#)
                }
            }),
            ("POST", "/mlk/api/auth/pin") => self.gate(cx, r).unwrap_or_else(|| {
                let body = json(r);
                let login = text(&body, "msisdn");
                let pin = self.pins.lock().unwrap().get(&login).cloned().unwrap_or_else(|| PIN.to_string());
                if text(&body, "pin") == pin && !cx.flag("pin_refused") {
                    self.session(cx, &login)
                } else {
                    Reply::json(401, r#"{"code":"a213","message":"Неверный ПИН-код"}"#)
                }
            }),
            _ => {
                let Some(login) = self.logged_in(cx, r) else { return self.expired(cx) };
                match (r.method.as_str(), r.path.as_str()) {
                    ("POST", "/mlk/api/profile/pin") => {
                        let pin = text(&json(r), "pin");
                        if pin.len() != 4 || !pin.bytes().all(|b| b.is_ascii_digit()) {
                            return Reply::json(400, r#"{"code":"a300","message":"ПИН-код из 4 цифр"}"#);
                        }
                        self.pins.lock().unwrap().insert(login, pin);
                        Reply::json(200, r#"{"ok":true}"#)
                    }
                    ("POST", "/mlk/api/profile/biometry") => {
                        let token = cx.issue_token();
                        self.devices.lock().unwrap().insert(token.clone(), login);
                        Reply::json(200, format!(r#"{{"token":"{token}"}}"#))
                    }
                    ("GET", "/mlk/api/main/balance") => cx.fixture("balance", &login),
                    ("GET", "/mlk/api/options/remainders") => cx.fixture("remainders", &login),
                    _ => Reply::json(404, r#"{"code":"a404","message":"Не найдено"}"#),
                }
            }
        }
    }

    fn expired(&self, _cx: &Ctx<'_>) -> Reply {
        Reply::json(401, r#"{"code":"a201","message":"Неавторизованный доступ"}"#)
    }

    fn captcha(&self, _cx: &Ctx<'_>) -> Reply {
        Reply::json(400, r#"{"code":"a211","message":"Введите код с картинки","captchaUrl":"/mlk/api/captcha/next"}"#)
    }
}

impl Megafon {
    /// The answer of a login while a flag says MegaFon wants a captcha or blocked the number;
    /// every login must carry a device id.
    fn gate(&self, cx: &Ctx<'_>, r: &MockRequest) -> Option<Reply> {
        if cx.flag("captcha") {
            return Some(self.captcha(cx));
        }
        if cx.flag("blocked") {
            return Some(Reply::json(
                403,
                r#"{"code":"a216","message":"Ваш аккаунт заблокирован, обратитесь в поддержку"}"#,
            ));
        }
        if r.header("x-mlk-device-id").is_none_or(|d| d.len() < 16) {
            return Some(Reply::json(400, r#"{"code":"a100","message":"Нет идентификатора устройства"}"#));
        }
        None
    }

    fn session(&self, cx: &Ctx<'_>, login: &str) -> Reply {
        let token = cx.issue_token();
        self.sessions.lock().unwrap().insert(token.clone(), login.to_string());
        cx.fixture_with(200, "login", login, &[("token", token)])
    }

    /// The number of a valid session token in `X-Cabinet-Authorization`.
    fn logged_in(&self, cx: &Ctx<'_>, r: &MockRequest) -> Option<String> {
        let token = r.header("x-cabinet-authorization")?.strip_prefix("Bearer ")?;
        if !cx.token_valid(Some(token)) {
            return None;
        }
        self.sessions.lock().unwrap().get(token).cloned()
    }
}

fn form(r: &MockRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(&r.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn json(r: &MockRequest) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_default()
}

fn text(value: &serde_json::Value, key: &str) -> String {
    value.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string()
}
