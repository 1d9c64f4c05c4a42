//! A fake operator API server for the tests, the benchmarks and a local demo (the
//! `mock-operator` binary, built only with `--features mock`). One server on 127.0.0.1 serves
//! every operator under its own path prefix (`/mts`, `/beeline`, …), so a driver's `base_url`
//! is `{mock.url()}/{operator}`: the prefix handling of DESIGN §7 is exercised on every request.
//!
//! Answers come from `tests/fixtures/<operator>/<name>.json` (recorded shapes, values invented),
//! chosen per request by each operator's module (`mts.rs`, `beeline.rs`): `<name>.<key>.json`
//! for one number or account if it exists, else `<name>.json`. Fixtures are templates:
//! `{{key}}`, `{{token}}`, `{{expires_in}}`, `{{tick}}` (how often this fixture was served for
//! this key), `{{evolve:BASE:STEP}}` (BASE + STEP·tick: values that change between polls),
//! `{{evolve:BASE:STEP:SPREAD}}` (the same plus, in fleet mode only, a per-key share of
//! SPREAD: many lines, different values, while single-line tests see BASE exactly),
//! `{{vary:BASE:SPREAD}}` (BASE plus a per-key share of SPREAD, always).
//!
//! Faults are queued by the test per operator and path ([`MockOperator::fault`]); each request
//! to that path takes the next one: latency, any status, 429 with Retry-After, HTML, a captcha
//! page, a truncated or cut-off body, an endless body, another fixture (wrong types, missing
//! fields), or expiring every token. Requests are recorded for assertions.
//!
//! Adding an operator: a module with a type implementing [`Operator`] (route by method and
//! path, check the token with [`Ctx::token_valid`], answer with [`Ctx::fixture`]), one line in
//! [`operators`], and its fixtures folder.

#![allow(dead_code)]

pub mod airalo;
pub mod beeline;
pub mod emnify;
pub mod hologram;
mod iot;
pub mod megafon;
pub mod mts;
pub mod onence;
pub mod t2;
pub mod tinyiot;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;

/// Every operator the mock serves, one line each.
pub fn operators() -> Vec<Arc<dyn Operator>> {
    vec![
        Arc::new(onence::Onence),
        Arc::new(airalo::Airalo),
        Arc::new(beeline::Beeline),
        Arc::new(emnify::Emnify),
        Arc::new(hologram::Hologram),
        Arc::new(tinyiot::TinyIot),
        Arc::new(megafon::Megafon::default()),
        Arc::new(mts::Mts),
        Arc::new(t2::T2::default()),
    ]
}

/// One operator's API.
pub trait Operator: Send + Sync {
    /// Path prefix and fixtures folder (the driver name).
    fn name(&self) -> &'static str;
    /// Answers a request whose path is relative to the prefix (`/token`, `/b2b/v1/...`).
    fn handle(&self, cx: &Ctx<'_>, request: &MockRequest) -> Reply;
    /// The answer to a request whose token the server no longer accepts.
    fn expired(&self, cx: &Ctx<'_>) -> Reply;
    /// The answer when the operator wants a person to solve a captcha.
    fn captcha(&self, _cx: &Ctx<'_>) -> Reply {
        Reply::new(403, "text/html; charset=utf-8", CAPTCHA_PAGE)
    }
}

const CAPTCHA_PAGE: &str = "<!DOCTYPE html><html><head><title>Проверка</title></head><body>\
<form action=\"/__qrator/captcha/check\"><img src=\"/__qrator/captcha/gen\"> Enter the captcha</form></body></html>";
const HTML_PAGE: &str = "<!DOCTYPE html><html><head><title>Технические работы</title></head>\
<body><h1>Сервис временно недоступен</h1></body></html>";

/// A request as the operator module sees it.
#[derive(Clone, Debug)]
pub struct MockRequest {
    pub method: String,
    /// Relative to the operator's prefix.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl MockRequest {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let cookies = self.header("cookie")?;
        cookies.split(';').find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('=').map(str::to_string))
    }

    /// The token of `Authorization: Bearer …`.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

/// A request as recorded for assertions.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub operator: String,
    pub request: MockRequest,
    /// When the request arrived (for request-rate checks).
    pub at: std::time::Instant,
}

/// An answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        Reply { status, content_type: content_type.to_string(), body: body.into(), headers: Vec::new() }
    }

    pub fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::new(status, "application/json;charset=UTF-8", body)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }
}

/// What a queued fault does to the request that takes it.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Waits, then answers as usual.
    Latency(Duration),
    /// This status with a small JSON error body.
    Status(u16),
    /// This status, content type and body.
    Body(u16, &'static str, String),
    /// 429 with this Retry-After (seconds or an HTTP date), or none.
    RateLimited(Option<String>),
    /// 200 with an HTML page where JSON belongs.
    Html,
    /// The operator's captcha demand.
    Captcha,
    /// The usual answer cut in half, with a Content-Length that matches the cut.
    Truncated,
    /// The usual Content-Length, then the connection closes halfway through the body.
    Disconnect,
    /// An endless-looking body of this many bytes, streamed lazily (no Content-Length unless
    /// `declared`); [`MockOperator::bytes_streamed`] shows how much was actually sent.
    Oversized { bytes: u64, declared: bool },
    /// Answers with this fixture (e.g. `wrong-types`, `missing-fields`) and status.
    Fixture(u16, &'static str),
    /// The server forgets every token it issued, then answers as usual (so the request meets
    /// the operator's "expired token" answer).
    ExpireTokens,
    /// This status with the request echoed in the error body (headers and body), as some
    /// gateways do: whatever credentials the request carried come back in the answer.
    Echo(u16),
}

impl Fault {
    /// A short name of the kind of fault, for counting them ([`MockOperator::faults_served`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Latency(_) => "latency",
            Fault::Status(s) if *s >= 500 => "5xx",
            Fault::Status(_) => "status",
            Fault::Body(..) => "body",
            Fault::RateLimited(Some(_)) => "429 retry-after",
            Fault::RateLimited(None) => "429",
            Fault::Html => "html",
            Fault::Captcha => "captcha",
            Fault::Truncated => "truncated",
            Fault::Disconnect => "disconnect",
            Fault::Oversized { .. } => "oversized",
            Fault::Fixture(..) => "fixture",
            Fault::ExpireTokens => "expire tokens",
            Fault::Echo(_) => "echo",
        }
    }
}

/// A line the mock knows in fleet mode: numbers, personal accounts, ICCIDs.
#[derive(Clone, Debug)]
pub struct MockLine {
    /// `7XXXXXXXXXX`.
    pub msisdn: String,
    pub account_no: String,
    pub iccid: String,
}

/// The credentials the mock accepts, per operator: `(login or client id, secret)`.
pub const CREDENTIALS: &[(&str, &str, &str)] = &[
    ("mts", "mock-consumer-key", "mock-consumer-secret-3f9a1c"),
    ("beeline", "9060000000", "mock-beeline-password-77e2"),
    ("megafon", "9260000001", "mock-megafon-device-token-4b1d9e"),
    ("t2", "79520000001", "mock-t2-refresh-token-7a3c5e"),
    ("1nce", "mock-1nce-user", "mock-1nce-secret-5d21c8"),
    ("emnify", "", "mock-emnify-application-token-8c4e0b"),
    ("airalo", "mock-airalo-client", "mock-airalo-secret-19b7e3"),
    ("hologram", "apikey", "mock-hologram-api-key-a6f04d"),
    ("http_json", "mock-tinyiot-client", "mock-tinyiot-secret-2e9d71"),
];

#[derive(Default)]
struct Tokens {
    valid: Vec<String>,
    issued: Vec<String>,
}

pub struct Shared {
    fixtures: PathBuf,
    operators: Vec<Arc<dyn Operator>>,
    faults: Mutex<HashMap<(String, String), VecDeque<Fault>>>,
    /// Faults that met a request, per operator and [`Fault::kind`].
    served: Mutex<HashMap<(String, &'static str), u64>>,
    requests: Mutex<Vec<Recorded>>,
    tokens: Mutex<HashMap<String, Tokens>>,
    ticks: Mutex<HashMap<String, u64>>,
    lines: Mutex<HashMap<String, Vec<MockLine>>>,
    expires_in: Mutex<HashMap<String, u64>>,
    /// Flags an operator module reads (e.g. `beeline.v2_missing`).
    flags: Mutex<HashMap<String, bool>>,
    bytes_streamed: Arc<AtomicU64>,
    token_counter: AtomicU64,
}

/// What an operator module may use while answering.
pub struct Ctx<'a> {
    shared: &'a Shared,
    operator: &'static str,
}

impl Ctx<'_> {
    /// Fixture `name` for `key` as a 200 JSON answer.
    pub fn fixture(&self, name: &str, key: &str) -> Reply {
        self.fixture_with(200, name, key, &[])
    }

    /// Fixture `name` for `key` with a status and extra template variables.
    pub fn fixture_with(&self, status: u16, name: &str, key: &str, vars: &[(&str, String)]) -> Reply {
        let dir = self.shared.fixtures.join(self.operator);
        let specific = dir.join(format!("{name}.{key}.json"));
        let path = if !key.is_empty() && specific.exists() { specific } else { dir.join(format!("{name}.json")) };
        let template = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) => return Reply::json(404, format!("{{\"error\":\"no fixture {}\"}}", path.display())),
        };
        let tick = {
            let mut ticks = self.shared.ticks.lock().unwrap();
            let n = ticks.entry(format!("{}/{name}/{key}", self.operator)).or_insert(0);
            let tick = *n;
            *n += 1;
            tick
        };
        let mut all: Vec<(&str, String)> = vec![("key", key.to_string()), ("tick", tick.to_string())];
        all.extend(vars.iter().cloned());
        let fleet = !self.lines().is_empty();
        Reply::json(status, render(&template, &all, key, tick, fleet))
    }

    /// A new token, valid until the test expires tokens.
    pub fn issue_token(&self) -> String {
        self.issue_token_as(|raw| raw)
    }

    /// A new token in the operator's own wrapping (`wrap` gets the distinctive raw token); the
    /// wrapped form is what is valid and what leak searches look for.
    pub fn issue_token_as(&self, wrap: impl FnOnce(String) -> String) -> String {
        let n = self.shared.token_counter.fetch_add(1, Ordering::Relaxed) + 1;
        // Long and distinctive, so a leak into logs is found by a plain search.
        let token = wrap(format!("{}tok{n}x9f3b7c1d5e8a2f6b4d0c9e7a1b3d5f7e", self.operator));
        let mut tokens = self.shared.tokens.lock().unwrap();
        let book = tokens.entry(self.operator.to_string()).or_default();
        book.valid.push(token.clone());
        book.issued.push(token.clone());
        token
    }

    pub fn token_valid(&self, token: Option<&str>) -> bool {
        let Some(token) = token else { return false };
        let tokens = self.shared.tokens.lock().unwrap();
        tokens.get(self.operator).is_some_and(|b| b.valid.iter().any(|t| t == token))
    }

    /// `expires_in` of new tokens (default 3600).
    pub fn expires_in(&self) -> u64 {
        self.shared.expires_in.lock().unwrap().get(self.operator).copied().unwrap_or(3600)
    }

    /// The accepted `(login or client id, secret)`.
    pub fn credentials(&self) -> (&'static str, &'static str) {
        CREDENTIALS.iter().find(|(op, _, _)| *op == self.operator).map(|(_, u, p)| (*u, *p)).unwrap_or(("", ""))
    }

    pub fn lines(&self) -> Vec<MockLine> {
        self.shared.lines.lock().unwrap().get(self.operator).cloned().unwrap_or_default()
    }

    /// How many lines fleet mode generated for this operator (0 outside it), without copying.
    pub fn fleet_size(&self) -> usize {
        self.shared.lines.lock().unwrap().get(self.operator).map_or(0, Vec::len)
    }

    /// The position (from 0) of the generated line with this ICCID, without copying the fleet.
    pub fn fleet_index(&self, iccid: &str) -> Option<usize> {
        let lines = self.shared.lines.lock().unwrap();
        let lines = lines.get(self.operator)?;
        let n: usize = iccid.strip_prefix("8970101")?.parse().ok()?;
        let line = lines.get(n.checked_sub(1)?)?;
        (line.iccid == iccid).then_some(n - 1)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.shared.flags.lock().unwrap().get(&format!("{}.{name}", self.operator)).copied().unwrap_or(false)
    }
}

/// Fills a fixture template (see the module doc).
fn render(template: &str, vars: &[(&str, String)], key: &str, tick: u64, fleet: bool) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else { break };
        let expr = &rest[start + 2..start + len];
        out.push_str(&evaluate(expr, vars, key, tick, fleet));
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn evaluate(expr: &str, vars: &[(&str, String)], key: &str, tick: u64, fleet: bool) -> String {
    let parts: Vec<&str> = expr.split(':').collect();
    let number = |s: &str| s.parse::<f64>().unwrap_or(0.0);
    let share = || {
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        (h % 1000) as f64 / 1000.0
    };
    match parts.as_slice() {
        ["evolve", base, step] => format_number(number(base) + number(step) * tick as f64),
        ["evolve", base, step, spread] => {
            let offset = if fleet { number(spread) * share() } else { 0.0 };
            format_number(number(base) + number(step) * tick as f64 + offset)
        }
        ["vary", base, spread] => format_number(number(base) + number(spread) * share()),
        [name] => vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default(),
        _ => String::new(),
    }
}

fn format_number(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

/// A running mock server. Cloning shares it; it stops with the runtime (or, for
/// [`MockOperator::start_background`], when every clone is dropped).
#[derive(Clone)]
pub struct MockOperator {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: Option<Arc<StopOnDrop>>,
}

struct StopOnDrop(Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// `tests/fixtures` of this repository.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

impl MockOperator {
    /// Starts on 127.0.0.1 with a port the OS picks, on the current tokio runtime.
    pub async fn start() -> MockOperator {
        MockOperator::start_on("127.0.0.1:0".parse().unwrap(), fixtures_dir()).await
    }

    pub async fn start_on(addr: SocketAddr, fixtures: PathBuf) -> MockOperator {
        let shared = Arc::new(Shared {
            fixtures,
            operators: operators(),
            faults: Mutex::default(),
            served: Mutex::default(),
            requests: Mutex::default(),
            tokens: Mutex::default(),
            ticks: Mutex::default(),
            lines: Mutex::default(),
            expires_in: Mutex::default(),
            flags: Mutex::default(),
            bytes_streamed: Arc::new(AtomicU64::new(0)),
            token_counter: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the mock operator");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockOperator { addr, shared, _stop: None }
    }

    /// Starts on a runtime of its own in a background thread (for tests that are not async,
    /// such as the ones running the real binary). Stops when the last clone is dropped.
    pub fn start_background() -> MockOperator {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let mock = MockOperator::start().await;
                tx.send(mock).expect("hand over the mock");
                let _ = stop_rx.await;
            });
        });
        let mut mock = rx.recv().expect("mock operator started");
        mock._stop = Some(Arc::new(StopOnDrop(Mutex::new(Some(stop_tx)))));
        mock
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `base_url` of `operator`: the server's URL plus the operator's prefix.
    pub fn base_url(&self, operator: &str) -> String {
        format!("{}/{operator}", self.url())
    }

    /// Queues `fault` for the next request to `path` (relative to the prefix; `*` = any path).
    pub fn fault(&self, operator: &str, path: &str, fault: Fault) {
        self.faults(operator, path, fault, 1);
    }

    /// Queues `fault` for the next `times` requests to `path`.
    pub fn faults(&self, operator: &str, path: &str, fault: Fault, times: usize) {
        let mut faults = self.shared.faults.lock().unwrap();
        let queue = faults.entry((operator.to_string(), path.to_string())).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Faults queued for `operator` that no request has taken yet.
    pub fn pending_faults(&self, operator: &str) -> usize {
        let faults = self.shared.faults.lock().unwrap();
        faults.iter().filter(|((op, _), _)| op == operator).map(|(_, q)| q.len()).sum()
    }

    /// How many faults of each [`Fault::kind`] met a request of `operator`.
    pub fn faults_served(&self, operator: &str) -> HashMap<&'static str, u64> {
        let served = self.shared.served.lock().unwrap();
        served.iter().filter(|((op, _), _)| op == operator).map(|((_, kind), n)| (*kind, *n)).collect()
    }

    /// Every request so far to `operator`.
    pub fn requests(&self, operator: &str) -> Vec<MockRequest> {
        let requests = self.shared.requests.lock().unwrap();
        requests.iter().filter(|r| r.operator == operator).map(|r| r.request.clone()).collect()
    }

    /// When each request to `operator` arrived, in order.
    pub fn request_times(&self, operator: &str) -> Vec<std::time::Instant> {
        let requests = self.shared.requests.lock().unwrap();
        requests.iter().filter(|r| r.operator == operator).map(|r| r.at).collect()
    }

    /// When each request to `operator` arrived and its method and path, in order.
    pub fn request_log(&self, operator: &str) -> Vec<(std::time::Instant, String)> {
        let requests = self.shared.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.operator == operator)
            .map(|r| (r.at, format!("{} {}", r.request.method, r.request.path)))
            .collect()
    }

    /// How many requests went to `path` of `operator`.
    pub fn count(&self, operator: &str, path: &str) -> usize {
        self.requests(operator).iter().filter(|r| r.path == path).count()
    }

    /// Every token issued so far (for "never in the logs" checks).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.tokens.lock().unwrap().values().flat_map(|b| b.issued.clone()).collect()
    }

    pub fn expire_tokens(&self, operator: &str) {
        if let Some(book) = self.shared.tokens.lock().unwrap().get_mut(operator) {
            book.valid.clear();
        }
    }

    /// `expires_in` of the tokens `operator` issues from now on.
    pub fn set_expires_in(&self, operator: &str, seconds: u64) {
        self.shared.expires_in.lock().unwrap().insert(operator.to_string(), seconds);
    }

    pub fn set_flag(&self, operator: &str, name: &str, on: bool) {
        self.shared.flags.lock().unwrap().insert(format!("{operator}.{name}"), on);
    }

    /// Fleet mode: `n` generated lines for `operator` (`7916` + 7 digits, ten per personal
    /// account); discovery lists them and every number gets answers.
    pub fn set_lines(&self, operator: &str, n: usize) {
        let lines = (0..n)
            .map(|i| MockLine {
                msisdn: format!("7916{:07}", i + 1),
                account_no: format!("27700{:07}", i / 10 + 1),
                iccid: format!("8970101{:012}", i + 1),
            })
            .collect();
        self.shared.lines.lock().unwrap().insert(operator.to_string(), lines);
    }

    /// Bytes of oversized bodies actually handed to the network so far.
    pub fn bytes_streamed(&self) -> u64 {
        self.shared.bytes_streamed.load(Ordering::Relaxed)
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let full = parts.uri.path().to_string();
    let mut segments = full.trim_start_matches('/').splitn(2, '/');
    let prefix = segments.next().unwrap_or("").to_string();
    let path = format!("/{}", segments.next().unwrap_or(""));
    let Some(operator) = shared.operators.iter().find(|o| o.name() == prefix).cloned() else {
        return to_response(Reply::json(404, "{\"error\":\"no such operator\"}"));
    };
    let query = parts
        .uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    let request =
        MockRequest { method: parts.method.to_string(), path: path.clone(), query, headers: parts.headers, body };
    shared.requests.lock().unwrap().push(Recorded {
        operator: prefix.clone(),
        request: request.clone(),
        at: std::time::Instant::now(),
    });

    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let mut take = |p: &str| faults.get_mut(&(prefix.clone(), p.to_string())).and_then(VecDeque::pop_front);
        take(&path).or_else(|| take("*"))
    };
    if let Some(fault) = &fault {
        *shared.served.lock().unwrap().entry((prefix.clone(), fault.kind())).or_insert(0) += 1;
    }
    let cx = Ctx { shared: &shared, operator: operator.name() };
    let usual = |cx: &Ctx<'_>| operator.handle(cx, &request);
    match fault {
        None => to_response(usual(&cx)),
        Some(Fault::Latency(d)) => {
            tokio::time::sleep(d).await;
            to_response(usual(&cx))
        }
        Some(Fault::Status(status)) => {
            to_response(Reply::json(status, format!("{{\"errorCode\":\"{status}\",\"errorMessage\":\"injected\"}}")))
        }
        Some(Fault::Body(status, content_type, body)) => to_response(Reply::new(status, content_type, body)),
        Some(Fault::RateLimited(retry_after)) => {
            let mut reply = Reply::json(429, "{\"errorCode\":\"1011\",\"errorMessage\":\"Too many requests\"}");
            if let Some(v) = retry_after {
                reply = reply.with_header("retry-after", &v);
            }
            to_response(reply)
        }
        Some(Fault::Html) => to_response(Reply::new(200, "text/html; charset=utf-8", HTML_PAGE)),
        Some(Fault::Captcha) => to_response(operator.captcha(&cx)),
        Some(Fault::Truncated) => {
            let mut reply = usual(&cx);
            reply.body = reply.body.slice(..reply.body.len() / 2);
            to_response(reply)
        }
        Some(Fault::Disconnect) => {
            let reply = usual(&cx);
            let full_length = reply.body.len();
            let half = reply.body.slice(..full_length / 2);
            let stream = futures_util::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(half),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut")),
            ]);
            let mut response = Response::new(Body::from_stream(stream));
            *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
            response.headers_mut().insert("content-length", HeaderValue::from(full_length as u64));
            response
        }
        Some(Fault::Oversized { bytes, declared }) => oversized(&shared.bytes_streamed, bytes, declared),
        Some(Fault::Fixture(status, name)) => to_response(cx.fixture_with(status, name, "", &[])),
        Some(Fault::Echo(status)) => {
            let headers: String = request
                .headers
                .iter()
                .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            // Put where drivers read an operator's message: keycloak, `meta`, `errorMessage`...
            let authorization = request.header("authorization").unwrap_or_default();
            let said = format!("echo: {} {authorization}", String::from_utf8_lossy(&request.body));
            let echo = serde_json::json!({
                "error": "invalid_request",
                "error_description": said,
                "errorCode": status.to_string(),
                "errorMessage": said,
                "message": said,
                "detail": said,
                "meta": {"status": "ERROR", "message": said},
                "request": {"headers": headers, "body": String::from_utf8_lossy(&request.body)},
            });
            to_response(Reply::json(status, echo.to_string()))
        }
        Some(Fault::ExpireTokens) => {
            if let Some(book) = shared.tokens.lock().unwrap().get_mut(operator.name()) {
                book.valid.clear();
            }
            to_response(usual(&cx))
        }
    }
}

/// A JSON-looking body of `bytes` bytes, produced chunk by chunk only as the client reads.
fn oversized(counter: &Arc<AtomicU64>, bytes: u64, declared: bool) -> Response {
    const CHUNK: usize = 64 << 10;
    let counter = counter.clone();
    let chunk = Bytes::from(format!("[{}", "1,".repeat(CHUNK / 2)).into_bytes()[..CHUNK].to_vec());
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let (counter, chunk) = (counter.clone(), chunk.clone());
        async move {
            if sent >= bytes {
                return None;
            }
            let n = (bytes - sent).min(CHUNK as u64) as usize;
            counter.fetch_add(n as u64, Ordering::Relaxed);
            Some((Ok::<Bytes, std::io::Error>(chunk.slice(..n)), sent + n as u64))
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    if declared {
        response.headers_mut().insert("content-length", HeaderValue::from(bytes));
    }
    response
}

fn to_response(reply: Reply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(&reply.content_type) {
        response.headers_mut().insert("content-type", v);
    }
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) = (axum::http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

/// Standard base64, for checking Basic credentials.
pub fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() { TABLE[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}
