//! `http_json`: any JSON API no built-in driver knows. One request per poll built from a
//! path template (`{iccid}`, `{msisdn}`, `{line}` and the line's `params`), authenticated
//! with a bearer token, Basic credentials, a secret header or OAuth2 client credentials;
//! each reading field read with an RFC 9535 JSONPath expression (`serde_json_path`) and a
//! unit. An optional listing request lets an account discover its lines.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use serde_json_path::JsonPath;

use super::contract::{BoxFuture, BuildContext, BuildError, Cost, DiscoveredLine, Driver, DriverSpec, PollContext};
use super::kit::decode;
use super::kit::http::{HttpClient, HttpOptions, Method, Response};
use super::kit::ids::Msisdn;
use super::kit::options::required_secret;
use super::kit::pager::Pager;
use super::kit::session::{Fresh, Session};
use crate::config::discover::Template;
use crate::config::fields::Fields;
use crate::config::raw::{Pos, Value};
use crate::config::secret::Secret;
use crate::config::units::ByteSize;
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::PollError;
use crate::reading::{Currency, Money, Reading};

pub static SPEC: DriverSpec = DriverSpec {
    name: "http_json",
    summary: "any JSON API: a request template, auth, and one RFC 9535 JSONPath per reading field",
    example: r#"
accounts:
  acme-iot:
    driver: http_json
    base_url: https://api.acme-iot.example
    auth:
      bearer: "change-me"             # in a real config: ${ACME_TOKEN} or bearer_file
    request:
      path: "/v2/lines/{iccid}"
    fields:
      data_remaining: {path: "$.usage.left_kb", unit: KiB}
      data_quota: {path: "$.usage.limit_kb", unit: KiB}
      quota_expiry: "$.valid_until"
      balance: "$.credit.value"
      currency: "$.credit.cur"
lines:
  - name: acme-gw-1
    account: acme-iot
    iccid: "8935711001000000001"
"#,
    aliases: &[],
    needs_account: false,
    speaks_http: true,
    can_discover: true,
    default_operator: "http_json",
    default_rate_limit: None,
    account_options,
    line_options,
    build,
};

/// How requests authenticate.
#[derive(Clone, Debug)]
enum Auth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
    Header { name: &'static str, value: Secret },
    OAuth2 { token_path: String, client_id: String, client_secret: Secret, scope: Option<String> },
}

/// One reading field: where it is and what unit it is in.
#[derive(Clone, Debug)]
struct Field {
    path: JsonPath,
    /// Bytes per unit (data), seconds per unit (voice), or a plain multiplier (balance).
    factor: f64,
    format: TimeFormat,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum TimeFormat {
    /// RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC), or a number of seconds (milliseconds when it is
    /// too large to be seconds).
    Auto,
    Unix,
    UnixMs,
}

#[derive(Clone, Debug, Default)]
struct ReadingFields {
    balance: Option<Field>,
    currency: Option<Field>,
    data_remaining: Option<Field>,
    data_quota: Option<Field>,
    data_used: Option<Field>,
    voice_remaining: Option<Field>,
    sms_remaining: Option<Field>,
    quota_expiry: Option<Field>,
    plan: Option<Field>,
    unlimited: Option<Field>,
}

#[derive(Clone, Debug)]
struct Listing {
    path: Template,
    items: JsonPath,
    id: JsonPath,
    iccid: Option<JsonPath>,
    msisdn: Option<JsonPath>,
    facts: Vec<(String, JsonPath)>,
    total_pages: Option<JsonPath>,
    first_page: u32,
}

#[derive(Clone, Debug)]
struct AccountOptions {
    http: HttpOptions,
    auth: Auth,
    headers: Vec<(&'static str, String)>,
    method: Method,
    path: Template,
    body: Option<Template>,
    fields: ReadingFields,
    currency: Option<Currency>,
    list: Option<Listing>,
}

/// Line keys of `http_json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineOptions {
    /// Values for the request template besides `iccid`, `msisdn` and `line`.
    pub params: BTreeMap<String, String>,
}

/// Header names live as long as the process (the HTTP plumbing takes `&'static str`); each
/// distinct name is kept once, so reloads do not grow this.
fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = names.get(name) {
        return existing;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && reqwest::header::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).is_ok()
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let http = HttpOptions::take(f, "https://api.invalid");
    if !f.has("base_url") {
        f.sink().error(Some(f.pos()), f.path(), "missing required key `base_url` (the API's scheme, host and prefix)");
    }
    let auth = f.map("auth").map(parse_auth).unwrap_or(Auth::None);
    let mut headers = Vec::new();
    for (key_pos, name, _, value) in f.string_map("headers") {
        if valid_header_name(&name) {
            headers.push((intern(&name.to_ascii_lowercase()), value));
        } else {
            f.sink().error(Some(key_pos), &format!("{}.{name}", f.path_of("headers")), "not a valid header name");
        }
    }
    let (method, path, body) = match f.map("request") {
        Some(r) => parse_request(r),
        None => {
            f.sink().error(Some(f.pos()), f.path(), "missing required key `request` (at least `path`)");
            (Method::GET, Template::parse("/").expect("valid"), None)
        }
    };
    let fields = match f.map("fields") {
        Some(m) => parse_fields(m),
        None => {
            f.sink().error(Some(f.pos()), f.path(), "missing required key `fields` (JSONPath per reading field)");
            ReadingFields::default()
        }
    };
    let currency_pos = f.node("currency").map(|n| n.pos);
    let currency = f.string("currency").and_then(|c| {
        let parsed = Currency::parse(&c);
        if parsed.is_none() {
            f.error("currency", currency_pos.unwrap_or(f.pos()), format!("`{c}` is not an ISO 4217 code such as EUR"));
        }
        parsed
    });
    let list = f.map("list").and_then(parse_listing);
    DriverOptions(Arc::new(AccountOptions { http, auth, headers, method, path, body, fields, currency, list }))
}

fn parse_auth(mut a: Fields<'_>) -> Auth {
    let kinds = [a.has("bearer") || a.has("bearer_file"), a.has("basic"), a.has("header"), a.has("oauth2")];
    if kinds.iter().filter(|k| **k).count() > 1 {
        a.sink().error(Some(a.pos()), a.path(), "give one of bearer, basic, header, oauth2");
    }
    let auth = if a.has("bearer") || a.has("bearer_file") {
        a.secret("bearer", "bearer_file").map(Auth::Bearer).unwrap_or(Auth::None)
    } else if let Some(mut b) = a.map("basic") {
        let username = b.required_string("username").unwrap_or_default();
        let password = required_secret(&mut b, "password", "password_file");
        b.finish("in auth.basic (expected username, password or password_file)");
        Auth::Basic { username, password }
    } else if let Some(mut h) = a.map("header") {
        let pos = h.node("name").map(|n| n.pos).unwrap_or(h.pos());
        let name = h.required_string("name").unwrap_or_default();
        if !name.is_empty() && !valid_header_name(&name) {
            h.error("name", pos, format!("`{name}` is not a valid header name"));
        }
        let value = required_secret(&mut h, "value", "value_file");
        h.finish("in auth.header (expected name, value or value_file)");
        Auth::Header { name: intern(&name.to_ascii_lowercase()), value }
    } else if let Some(mut o) = a.map("oauth2") {
        let token_path = o.required_string("token_path").unwrap_or_default();
        let client_id = o.required_string("client_id").unwrap_or_default();
        let client_secret = required_secret(&mut o, "client_secret", "client_secret_file");
        let scope = o.string("scope");
        o.finish("in auth.oauth2 (expected token_path, client_id, client_secret or client_secret_file, scope)");
        Auth::OAuth2 { token_path, client_id, client_secret, scope }
    } else {
        Auth::None
    };
    a.finish("in auth (expected one of bearer, bearer_file, basic, header, oauth2)");
    auth
}

fn parse_request(mut r: Fields<'_>) -> (Method, Template, Option<Template>) {
    let method_pos = r.node("method").map(|n| n.pos);
    let method = match r.string("method").map(|m| m.to_ascii_uppercase()).as_deref() {
        None | Some("GET") => Method::GET,
        Some("POST") => Method::POST,
        Some(other) => {
            r.error("method", method_pos.unwrap_or(r.pos()), format!("`{other}` is not one of GET, POST"));
            Method::GET
        }
    };
    let path = template(&mut r, "path", true).unwrap_or_else(|| Template::parse("/").expect("valid"));
    let body = template(&mut r, "body", false);
    r.finish("in request (expected method, path, body)");
    (method, path, body)
}

fn template(f: &mut Fields<'_>, key: &'static str, required: bool) -> Option<Template> {
    let pos = f.node(key).map(|n| n.pos);
    let text = if required { f.required_string(key) } else { f.string(key) }?;
    match Template::parse(&text) {
        Ok(t) => Some(t),
        Err(e) => {
            f.error(key, pos.unwrap_or(f.pos()), e);
            None
        }
    }
}

/// A JSONPath, reported with its position when it does not parse.
fn json_path(f: &Fields<'_>, key: &str, pos: Pos, text: &str) -> Option<JsonPath> {
    match JsonPath::parse(text) {
        Ok(p) => Some(p),
        Err(e) => {
            f.error(key, pos, format!("`{text}` is not an RFC 9535 JSONPath expression: {e}"));
            None
        }
    }
}

/// `field: "$.path"` or `field: {path: "$.path", unit: MiB, format: unix}`.
fn parse_field(f: &mut Fields<'_>, key: &'static str, kind: Kind) -> Option<Field> {
    let node = f.node(key)?;
    let (path_text, unit, format) = match &node.value {
        Value::Str(s) => (s.clone(), None, None),
        Value::Map(_) => {
            let mut m = Fields::new(f.sink(), f.path_of(key), node);
            let path = m.required_string("path");
            // A multiplier such as `0.01` is a YAML number; sizes and time units are words.
            let unit = m.node("unit").and_then(|n| match &n.value {
                Value::Str(s) => Some((s.clone(), n.pos)),
                Value::Int(i) => Some((i.to_string(), n.pos)),
                Value::Float(x) => Some((x.to_string(), n.pos)),
                other => {
                    m.error("unit", n.pos, format!("expected a unit, found {}", other.kind()));
                    None
                }
            });
            let format_pos = m.node("format").map(|n| n.pos);
            let format = m.string("format").map(|v| (v, format_pos.unwrap_or(node.pos)));
            m.finish("in a field (expected path, unit, format)");
            (path?, unit, format)
        }
        other => {
            f.error(key, node.pos, format!("expected a JSONPath or {{path, unit}}, found {}", other.kind()));
            return None;
        }
    };
    let path = json_path(f, key, node.pos, &path_text)?;
    let factor = match (kind, unit) {
        (_, None) => 1.0,
        (Kind::Data, Some((u, pos))) => match ByteSize::parse(&format!("1{u}")) {
            Ok(b) => b.0 as f64,
            Err(_) => {
                f.error(key, pos, format!("`{u}` is not a data unit (B, kB, MB, GB, KiB, MiB, GiB)"));
                return None;
            }
        },
        (Kind::Voice, Some((u, pos))) => match u.as_str() {
            "s" | "sec" | "seconds" => 1.0,
            "m" | "min" | "minutes" => 60.0,
            "h" | "hours" => 3600.0,
            _ => {
                f.error(key, pos, format!("`{u}` is not a time unit (s, min, h)"));
                return None;
            }
        },
        (Kind::Number, Some((u, pos))) => match u.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => x,
            _ => {
                f.error(key, pos, format!("`{u}`: the unit of a number is a multiplier such as 0.01 (cents)"));
                return None;
            }
        },
        (Kind::Other, Some((_, pos))) => {
            f.error(key, pos, "this field takes no unit");
            return None;
        }
    };
    let format = match format {
        None => TimeFormat::Auto,
        Some((v, pos)) => match (kind, v.as_str()) {
            (Kind::Other, "auto" | "rfc3339") => TimeFormat::Auto,
            (Kind::Other, "unix") => TimeFormat::Unix,
            (Kind::Other, "unix_ms") => TimeFormat::UnixMs,
            _ => {
                f.error(key, pos, format!("`{v}` is not a time format (auto, rfc3339, unix, unix_ms)"));
                TimeFormat::Auto
            }
        },
    };
    Some(Field { path, factor, format })
}

#[derive(Clone, Copy)]
enum Kind {
    Data,
    Voice,
    Number,
    Other,
}

fn parse_fields(mut m: Fields<'_>) -> ReadingFields {
    let fields = ReadingFields {
        balance: parse_field(&mut m, "balance", Kind::Number),
        currency: parse_field(&mut m, "currency", Kind::Other),
        data_remaining: parse_field(&mut m, "data_remaining", Kind::Data),
        data_quota: parse_field(&mut m, "data_quota", Kind::Data),
        data_used: parse_field(&mut m, "data_used", Kind::Data),
        voice_remaining: parse_field(&mut m, "voice_remaining", Kind::Voice),
        sms_remaining: parse_field(&mut m, "sms_remaining", Kind::Number),
        quota_expiry: parse_field(&mut m, "quota_expiry", Kind::Other),
        plan: parse_field(&mut m, "plan", Kind::Other),
        unlimited: parse_field(&mut m, "unlimited", Kind::Other),
    };
    m.finish("in fields (expected balance, currency, data_remaining, data_quota, data_used, voice_remaining, sms_remaining, quota_expiry, plan, unlimited)");
    fields
}

fn parse_listing(mut l: Fields<'_>) -> Option<Listing> {
    let path = template(&mut l, "path", true);
    let path_of = |l: &mut Fields<'_>, key: &'static str, required: bool| {
        let pos = l.node(key).map(|n| n.pos).unwrap_or(l.pos());
        let text = if required { l.required_string(key) } else { l.string(key) }?;
        json_path(l, key, pos, &text)
    };
    let items = path_of(&mut l, "items", true);
    let id = path_of(&mut l, "id", true);
    let iccid = path_of(&mut l, "iccid", false);
    let msisdn = path_of(&mut l, "msisdn", false);
    let total_pages = path_of(&mut l, "total_pages", false);
    let first_page = l.u64_in("first_page", 0, 1).unwrap_or(1) as u32;
    let mut facts = Vec::new();
    for (_, name, value_pos, text) in l.string_map("facts") {
        if let Some(p) = json_path(&l, "facts", value_pos, &text) {
            facts.push((name, p));
        }
    }
    l.finish("in list (expected path, items, id, iccid, msisdn, facts, total_pages, first_page)");
    Some(Listing { path: path?, items: items?, id: id?, iccid, msisdn, facts, total_pages, first_page })
}

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    let params = f.string_map("params").into_iter().map(|(_, k, _, v)| (k, v)).collect();
    DriverOptions(Arc::new(LineOptions { params }))
}

#[derive(Default)]
struct State {
    token: Session<Secret>,
}

struct HttpJson {
    client: HttpClient,
    o: AccountOptions,
    state: Arc<State>,
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let o = super::contract::account_options::<AccountOptions>(account, "http_json")?;
    let client = HttpClient::new(account, &o.http, cx)?;
    let secret = match &o.auth {
        Auth::OAuth2 { client_id, client_secret, token_path, .. } => {
            format!("{client_id}\u{0}{}\u{0}{token_path}", client_secret.expose())
        }
        _ => String::new(),
    };
    let fingerprint = cx.sessions.fingerprint(&[&secret, o.http.base_url.as_str()]);
    let state = cx.sessions.get_or_create("http_json", &account.name, fingerprint, State::default);
    Ok(Arc::new(HttpJson { client, o: o.clone(), state }))
}

impl Driver for HttpJson {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(self.read(line, cx))
    }

    fn discover<'a>(&'a self, cx: &'a PollContext) -> BoxFuture<'a, Result<Vec<DiscoveredLine>, PollError>> {
        Box::pin(self.list(cx))
    }

    fn paces_requests(&self) -> bool {
        true
    }

    fn cost(&self, lines: usize) -> Option<Cost> {
        Some(Cost { requests_per_cycle: lines as f64, requests_per_listing: 1.0, ..Cost::default() })
    }
}

/// Percent-encodes a template value for a URL path segment.
fn encode_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>().replace('+', "%20")
}

impl HttpJson {
    async fn read(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let options = line.options.get::<LineOptions>().cloned().unwrap_or_default();
        let digits = line.msisdn.as_deref().map(|m| m.trim_start_matches('+').to_string());
        let vars = |name: &str| -> Option<String> {
            match name {
                "iccid" => line.iccid.as_deref().map(str::to_string),
                "msisdn" => digits.clone(),
                "line" => Some(line.name.clone()),
                other => options.params.get(other).cloned(),
            }
        };
        let body: Json = self.call(cx, &self.o.path, self.o.body.as_ref(), &vars).await?.json()?;
        self.reading(&body, cx)
    }

    /// One authenticated request; a rejected OAuth2 token is replaced once.
    async fn call(
        &self,
        cx: &PollContext,
        path: &Template,
        body: Option<&Template>,
        vars: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Response, PollError> {
        let rendered = path.render(&|name| vars(name).map(|v| encode_segment(&v)));
        // The query, if any, is added pair by pair (values as the template gives them).
        let (path_part, query) = match rendered.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (rendered, None),
        };
        let shown = path.render(&|name| Some(format!("{{{name}}}")));
        let shown = shown.split('?').next().unwrap_or("").to_string();
        let body_text = body.map(|b| b.render(vars));
        let make = |token: Option<&Secret>| {
            let mut request = self.client.request(self.o.method.clone(), &path_part).log_as(shown.clone());
            if let Some(q) = &query {
                for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                    request = request.query(&k, &v);
                }
            }
            for (name, value) in &self.o.headers {
                request = request.header(name, value);
            }
            request = match (&self.o.auth, token) {
                (Auth::Bearer(secret), _) => request.bearer(secret),
                (Auth::Basic { username, password }, _) => request.basic_auth(username, password),
                (Auth::Header { name, value }, _) => request.secret_header(name, value),
                (Auth::OAuth2 { .. }, Some(token)) => request.bearer(token),
                _ => request,
            };
            if let Some(text) = &body_text {
                request = match serde_json::from_str::<Json>(text) {
                    Ok(json) => request.json_body(&json),
                    Err(_) => request.form_body(&[("body", text.as_str())]),
                };
            }
            request
        };
        let response = match &self.o.auth {
            Auth::OAuth2 { .. } => {
                self.state
                    .token
                    .call(cx, || self.login(cx), |token| make(Some(&token)).send(cx), |r| r.status().as_u16() == 401)
                    .await?
            }
            _ => make(None).send(cx).await?,
        };
        if response.status().as_u16() == 404 {
            return Err(PollError::Config(format!(
                "{}: HTTP 404, the API does not know this line; check its iccid, msisdn or params",
                response.shown()
            )));
        }
        response.check(cx)
    }

    async fn login(&self, cx: &PollContext) -> Result<Fresh<Secret>, PollError> {
        let Auth::OAuth2 { token_path, client_id, client_secret, scope } = &self.o.auth else {
            return Err(PollError::Config("no OAuth2 settings".into()));
        };
        cx.note("asking for an access token (OAuth2 client credentials)");
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope.as_str()));
        }
        let response =
            self.client.post(token_path).basic_auth(client_id, client_secret).form_body(&form).send(cx).await?;
        let status = response.status().as_u16();
        if matches!(status, 400 | 401 | 403) {
            return Err(PollError::Auth(format!(
                "POST {token_path}: HTTP {status}, the client credentials were refused"
            )));
        }
        let token: Json = response.check(cx)?.json()?;
        let access = token.get("access_token").and_then(Json::as_str).filter(|t| !t.trim().is_empty());
        let Some(access) = access else {
            return Err(PollError::BadResponse(format!("POST {token_path}: no access_token")));
        };
        let expires_in = token.get("expires_in").and_then(number).map(|s| Duration::from_secs_f64(s.clamp(0.0, 1e9)));
        Ok(Fresh { value: Secret::new(access), expires_in })
    }

    fn reading(&self, body: &Json, cx: &PollContext) -> Result<Reading, PollError> {
        let f = &self.o.fields;
        let sum = |name: &str, field: &Option<Field>| -> Result<Option<f64>, PollError> {
            let Some(field) = field else { return Ok(None) };
            let mut total: Option<f64> = None;
            for node in field.path.query(body).all() {
                if node.is_null() {
                    continue;
                }
                let value = number(node)
                    .ok_or_else(|| PollError::BadResponse(format!("field `{name}`: the value is not a number")))?;
                *total.get_or_insert(0.0) += value * field.factor;
            }
            Ok(total)
        };
        let text = |field: &Option<Field>| -> Option<String> {
            let node = field.as_ref()?.path.query(body).all().into_iter().find(|n| !n.is_null())?;
            match node {
                Json::String(s) => Some(s.clone()),
                Json::Number(n) => Some(n.to_string()),
                Json::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        };
        let unlimited = text(&f.unlimited).is_some_and(|t| t.eq_ignore_ascii_case("true"));
        let mut r = Reading::default();
        let quota = sum("data_quota", &f.data_quota)?;
        let remaining = match sum("data_remaining", &f.data_remaining)? {
            Some(left) => Some(left),
            None => match (quota, sum("data_used", &f.data_used)?) {
                (Some(q), Some(used)) => Some(q - used),
                _ => None,
            },
        };
        if unlimited {
            cx.note("unlimited: data left and total are not reported");
        } else {
            if remaining.is_some_and(|v| v < 0.0) {
                cx.note("data left is negative (used past the quota): reported as 0");
            }
            r.data_remaining = remaining.map(|b| ByteSize(b.max(0.0).round() as u64));
            r.data_quota = quota.filter(|q| *q > 0.0).map(|b| ByteSize(b.round() as u64));
        }
        r.voice_remaining =
            sum("voice_remaining", &f.voice_remaining)?.map(|s| Duration::from_secs(s.max(0.0).round() as u64));
        r.sms_remaining = sum("sms_remaining", &f.sms_remaining)?.map(|n| n.max(0.0).round() as u64);
        if let Some(amount) = sum("balance", &f.balance)? {
            let currency = match text(&f.currency) {
                Some(code) => Currency::parse(&code)
                    .ok_or_else(|| PollError::BadResponse("field `currency`: not an ISO 4217 code".into()))?,
                None => self.o.currency.ok_or_else(|| {
                    PollError::Config("a balance needs a currency: set `currency:` or `fields.currency`".into())
                })?,
            };
            r.balance = Some(Money { amount, currency });
        }
        if let Some(field) = &f.quota_expiry {
            let node = field.path.query(body).all().into_iter().find(|n| !n.is_null());
            r.quota_expiry = match node {
                None => None,
                Some(node) => Some(timestamp(node, field.format).ok_or_else(|| {
                    PollError::BadResponse(
                        "field `quota_expiry`: not a timestamp (RFC 3339, YYYY-MM-DD HH:MM:SS or Unix seconds)".into(),
                    )
                })?),
            };
        }
        r.plan = text(&f.plan);
        Ok(r)
    }

    /// Every item of the listing, page by page: to `total_pages`, or until a page brings no
    /// item not seen before (empty, or the last page repeated), or at once when the path has
    /// no `{page}`.
    async fn list(&self, cx: &PollContext) -> Result<Vec<DiscoveredLine>, PollError> {
        let Some(list) = &self.o.list else {
            return Err(PollError::Config("discover: needs a `list:` request in the http_json account".into()));
        };
        let paged = list.path.fields().any(|f| f == "page");
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        let mut page = list.first_page;
        let mut pager = Pager::new("listing");
        loop {
            pager.next_page()?;
            let page_text = page.to_string();
            let vars = |name: &str| (name == "page").then(|| page_text.clone());
            let body: Json = self.call(cx, &list.path, None, &vars).await?.json()?;
            let mut new = 0usize;
            for item in list.items.query(&body).all() {
                let Some(line) = item_line(list, item) else { continue };
                if seen.insert(line.id.clone()) {
                    new += 1;
                    found.push(line);
                }
            }
            cx.note(format!("listing page {page}: {new} new items"));
            let total = list.total_pages.as_ref().and_then(|p| p.query(&body).all().into_iter().find_map(number));
            let more = match total {
                Some(total) => f64::from(page + 1 - list.first_page) < total && new > 0,
                None => paged && new > 0,
            };
            if !more {
                return Ok(found);
            }
            page += 1;
        }
    }
}

fn item_line(list: &Listing, item: &Json) -> Option<DiscoveredLine> {
    let first = |p: &JsonPath| -> Option<String> {
        match p.query(item).all().into_iter().find(|n| !n.is_null())? {
            Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let id = first(&list.id)?;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (name, path) in &list.facts {
        if let Some(v) = first(path) {
            params.insert(name.clone(), v);
        }
    }
    params.insert("id".to_string(), id.clone());
    let iccid = list.iccid.as_ref().and_then(first);
    if let Some(i) = &iccid {
        params.insert("iccid".into(), i.clone());
    }
    Some(DiscoveredLine {
        msisdn: list.msisdn.as_ref().and_then(first).and_then(|m| Msisdn(&m).normalized()),
        iccid,
        labels: params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        options: DriverOptions(Arc::new(LineOptions { params })),
        id,
    })
}

/// A JSON number, or a string holding one (`"12,50"`, `"1024"`).
fn number(value: &Json) -> Option<f64> {
    match value {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => decode::parse_amount(s),
        _ => None,
    }
}

fn timestamp(value: &Json, format: TimeFormat) -> Option<SystemTime> {
    // A hostile 1e29 must not panic `from_secs_f64` or overflow `SystemTime` (the fuzzer found
    // it); the reading's own bounds then refuse an expiry past 2200 as bad_response.
    let from_seconds =
        |s: f64| Duration::try_from_secs_f64(s).ok().and_then(|d| UNIX_EPOCH.checked_add(d)).filter(|_| s.is_finite());
    match (value, format) {
        (Json::String(s), TimeFormat::Auto) if !s.trim().bytes().all(|b| b.is_ascii_digit()) => {
            decode::parse_rfc3339(s)
        }
        (v, TimeFormat::UnixMs) => from_seconds(number(v)? / 1000.0),
        (v, TimeFormat::Unix) => from_seconds(number(v)?),
        (v, TimeFormat::Auto) => {
            let n = number(v)?;
            // Past the year 5138 in seconds: it must be milliseconds.
            from_seconds(if n > 1e11 { n / 1000.0 } else { n })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configs these tests load name only this driver.
    static ONLY_HTTP_JSON: crate::config::Registry = &[&SPEC];
    use crate::clock::SystemClock;

    fn driver(yaml_fields: &str) -> HttpJson {
        let yaml = format!(
            "accounts:\n  a:\n    driver: http_json\n    base_url: http://127.0.0.1:9\n    currency: EUR\n    request: {{path: \"/x/{{iccid}}\"}}\n    fields:\n{yaml_fields}lines:\n  - {{name: l, account: a, iccid: \"8935711001000000001\"}}\n"
        );
        let config = crate::config::parse("t.yaml", &yaml, ONLY_HTTP_JSON).unwrap_or_else(|e| panic!("{e}"));
        let o = config.accounts[0].options.get::<AccountOptions>().unwrap().clone();
        let cx = BuildContext::new(Arc::new(SystemClock));
        let client = HttpClient::new(&config.accounts[0], &o.http, &cx).unwrap();
        HttpJson { client, o, state: Arc::default() }
    }

    fn cx() -> PollContext {
        PollContext::new(Duration::from_secs(1), Arc::new(SystemClock))
    }

    #[test]
    fn fields_are_read_with_jsonpath_and_units() {
        let d = driver(
            "      data_remaining: {path: \"$.packages[?@.active == true].left\", unit: MiB}\n      data_quota: {path: \"$.packages[?@.active == true].size\", unit: MiB}\n      voice_remaining: {path: \"$.voice\", unit: min}\n      balance: {path: \"$.credit\", unit: 0.01}\n      quota_expiry: \"$.until\"\n      plan: \"$.plan\"\n",
        );
        let body = serde_json::json!({
            "packages": [{"active": true, "left": 100, "size": "1024"}, {"active": false, "left": 999, "size": 999},
                         {"active": true, "left": "28,5", "size": 512}],
            "voice": 12, "credit": 1250, "until": 1788000000, "plan": "IoT S"
        });
        let r = d.reading(&body, &cx()).unwrap();
        assert_eq!(r.data_remaining, Some(ByteSize((128.5 * 1048576.0) as u64)));
        assert_eq!(r.data_quota, Some(ByteSize(1536 << 20)));
        assert_eq!(r.voice_remaining, Some(Duration::from_secs(720)));
        assert_eq!(r.balance, Some(Money { amount: 12.5, currency: Currency::EUR }));
        assert_eq!(r.quota_expiry, Some(UNIX_EPOCH + Duration::from_secs(1_788_000_000)));
        assert_eq!(r.plan.as_deref(), Some("IoT S"));
        assert_eq!(r.sms_remaining, None, "not configured: absent");
    }

    #[test]
    fn remaining_from_quota_minus_used_and_unlimited_leaves_data_absent() {
        let d = driver(
            "      data_quota: {path: \"$.limit.total\", unit: B}\n      data_used: {path: \"$.limit.used\", unit: B}\n      unlimited: \"$.unlimited\"\n",
        );
        let r = d.reading(&serde_json::json!({"limit": {"total": 10000000, "used": 2500000}}), &cx()).unwrap();
        assert_eq!(r.data_remaining, Some(ByteSize(7_500_000)));
        let r = d.reading(&serde_json::json!({"limit": {"total": 0, "used": 0}, "unlimited": true}), &cx()).unwrap();
        assert_eq!((r.data_remaining, r.data_quota), (None, None));
        let err = d.reading(&serde_json::json!({"limit": {"total": "lots"}}), &cx()).unwrap_err();
        assert_eq!(err.reason().as_str(), "bad_response");
    }

    #[test]
    fn timestamps_in_every_form() {
        let secs = |v: Json| timestamp(&v, TimeFormat::Auto).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(secs(serde_json::json!("2026-08-01 00:00:00")), Some(1_785_542_400));
        assert_eq!(secs(serde_json::json!("2026-08-01T03:00:00+03:00")), Some(1_785_542_400));
        assert_eq!(secs(serde_json::json!(1_785_542_400)), Some(1_785_542_400));
        assert_eq!(secs(serde_json::json!(1_785_542_400_000u64)), Some(1_785_542_400));
        assert_eq!(secs(serde_json::json!("1785542400")), Some(1_785_542_400));
        assert_eq!(secs(serde_json::json!("soon")), None);
    }

    #[test]
    fn bad_paths_and_units_are_config_errors() {
        let yaml = "accounts:\n  a:\n    driver: http_json\n    base_url: http://x\n    request: {path: \"/x\"}\n    fields:\n      data_remaining: {path: \"$.a[\", unit: parsecs}\n      sms_remaining: {path: \"$.b\", unit: furlongs}\nlines:\n  - {name: l, account: a}\n";
        let err = crate::config::parse("t.yaml", yaml, ONLY_HTTP_JSON).unwrap_err().to_string();
        assert!(err.contains("is not an RFC 9535 JSONPath"), "{err}");
        assert!(err.contains("multiplier"), "{err}");
    }
}
