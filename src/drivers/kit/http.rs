//! Shared HTTP plumbing of the operator drivers: one [`HttpClient`] per account (base URL,
//! proxy, User-Agent, redirects off), requests bounded by the poll deadline, response bodies
//! capped while they stream in, every status and transport failure mapped to a [`PollError`],
//! every request counted through the [`RequestObserver`], debug logs without secrets.
//!
//! What a driver calls:
//!
//! * at parse time, [`HttpOptions::take`] reads `base_url` (default: the operator's public
//!   endpoint) and `proxy_url` from the account's keys;
//! * at build time, [`HttpClient::new`] makes the account's client;
//! * at poll time, `client.get("/documented/path")` (or `post`, `put`) gives a [`Request`];
//!   add `.query(k, v)`, `.secret_query(k, &secret)`, `.bearer(&token)`, `.basic_auth(..)`,
//!   `.cookie(..)`, `.json_body(..)`, `.form_body(..)`, and, when the path holds an MSISDN,
//!   `.log_as("/api/subscribers/{msisdn}/balance")`. Then one of
//!   * `.json::<T>(cx)`: send, map a failing status to its `PollError`, decode `T`;
//!   * `.fetch(cx)`: send and map a failing status, keep the [`Response`];
//!   * `.send(cx)`: send only (any status comes back), for drivers that read error bodies
//!     first (then [`Response::check`] and [`Response::json`]).
//!
//! The mapping (DESIGN §5): 401/403 → `auth`; 429 → `rate_limited` with Retry-After (seconds
//! or an HTTP date); 5xx and connection failures → `unavailable`; the deadline → `timeout`;
//! an undecodable, oversized or HTML body → `bad_response` (an HTML page asking for a captcha
//! → `captcha`); other 3xx/4xx → `bad_response`. Error texts name the method and path, never
//! the query, a header, a body value or a secret.
//!
//! Decoding what comes back (numbers, quantities, dates, package rules) is
//! [`super::decode`]'s subject, not this file's.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use percent_encoding::percent_decode_str;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE};
pub use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;
use tracing::debug;
use url::Url;

use crate::config::fields::Fields;
use crate::config::secret::Secret;
use crate::drivers::contract::Account;
use crate::drivers::contract::{BuildContext, BuildError, PollContext, RequestObserver};
use crate::error::PollError;

/// The User-Agent of every operator request.
pub const USER_AGENT: &str = concat!("esim-exporter/", env!("CARGO_PKG_VERSION"));
/// Response bodies larger than this are refused (per request: [`Request::body_limit`]).
pub const DEFAULT_BODY_LIMIT: usize = 4 << 20;
/// Connecting never takes longer than this, even when the poll has more time left.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an HTML body is searched for a captcha.
const CAPTCHA_SCAN: usize = 64 << 10;

/// `base_url`: scheme (http or https), host, optional port and optional path prefix, no
/// trailing slash. Documented paths are appended to it unchanged (DESIGN §7).
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: the scheme must be http or https"));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("`{text}` has no host"));
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials do not belong in `base_url`; use the driver's secret keys".to_string());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{text}`: a base URL takes no query or fragment"));
        }
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let prefix = url.path().trim_end_matches('/');
        Ok(BaseUrl(format!("{}://{host}{port}{prefix}", url.scheme())))
    }

    /// The URL of a documented path (which starts with `/`).
    pub fn join(&self, path: &str) -> Result<Url, PollError> {
        let sep = if path.starts_with('/') { "" } else { "/" };
        Url::parse(&format!("{}{sep}{path}", self.0))
            .map_err(|e| PollError::Config(format!("cannot form a URL for `{path}` ({e})")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({})", self.0)
    }
}

/// The account keys every HTTP driver shares.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub base_url: BaseUrl,
    /// `http://[user:password@]host:port`; kept as a secret since it may hold credentials.
    pub proxy_url: Option<Secret>,
}

impl HttpOptions {
    /// Takes `base_url` (default `default_base`) and `proxy_url` from an account's keys.
    pub fn take(f: &mut Fields<'_>, default_base: &str) -> HttpOptions {
        let default = BaseUrl::parse(default_base).unwrap_or_else(|_| BaseUrl(default_base.to_string()));
        let base_pos = f.node("base_url").map(|n| n.pos);
        let base_url = match (base_pos, f.string("base_url")) {
            (Some(pos), Some(text)) => BaseUrl::parse(&text).unwrap_or_else(|e| {
                f.error("base_url", pos, e);
                default.clone()
            }),
            _ => default,
        };
        let proxy_pos = f.node("proxy_url").map(|n| n.pos);
        let proxy_url = match (proxy_pos, f.string("proxy_url")) {
            (Some(pos), Some(text)) => match Url::parse(text.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                    Some(Secret::new(text.trim()))
                }
                _ => {
                    f.error("proxy_url", pos, "expected a proxy URL such as http://proxy.example:3128");
                    None
                }
            },
            _ => None,
        };
        HttpOptions { base_url, proxy_url }
    }
}

/// The HTTP client of one account. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    base: BaseUrl,
    account: Arc<str>,
    driver: &'static str,
    observer: Arc<dyn RequestObserver>,
    body_limit: usize,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").field("base", &self.base).field("account", &self.account).finish_non_exhaustive()
    }
}

impl HttpClient {
    /// The client of `account`: proxy only from `proxy_url` (environment proxies are ignored,
    /// so what the config says is what happens), no redirects, rustls.
    pub fn new(account: &Account, options: &HttpOptions, cx: &BuildContext) -> Result<HttpClient, BuildError> {
        install_crypto_provider();
        let fail = |reason: String| BuildError { driver: account.driver.name, account: account.name.clone(), reason };
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy();
        if let Some(proxy) = &options.proxy_url {
            builder = builder.proxy(proxy_of(proxy).ok_or_else(|| fail("`proxy_url` is not usable".into()))?);
        }
        let client =
            builder.build().map_err(|e| fail(format!("cannot set up the HTTP client: {}", e.without_url())))?;
        Ok(HttpClient {
            client,
            base: options.base_url.clone(),
            account: Arc::from(account.label()),
            driver: account.driver.name,
            observer: cx.requests.clone(),
            body_limit: DEFAULT_BODY_LIMIT,
        })
    }

    /// The same client with another default body cap.
    pub fn with_body_limit(mut self, bytes: usize) -> HttpClient {
        self.body_limit = bytes;
        self
    }

    pub fn base_url(&self) -> &BaseUrl {
        &self.base
    }

    pub fn request(&self, method: Method, path: &str) -> Request<'_> {
        let (url, error) = match self.base.join(path) {
            Ok(url) => (Some(url), None),
            Err(e) => (None, Some(e)),
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Request {
            client: self,
            method,
            url,
            shown: Cow::Owned(path.to_string()),
            headers,
            basic: None,
            body: None,
            body_limit: self.body_limit,
            error,
        }
    }

    pub fn get(&self, path: &str) -> Request<'_> {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Request<'_> {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Request<'_> {
        self.request(Method::PUT, path)
    }
}

/// The proxy of `proxy_url`, its credentials (if any) taken out of the URL and sent as
/// `Proxy-Authorization`, so that no log of the proxy's address can show them.
fn proxy_of(url: &Secret) -> Option<reqwest::Proxy> {
    let mut url = Url::parse(url.expose()).ok()?;
    let decode = |s: &str| percent_decode(s);
    let credentials = (!url.username().is_empty()).then(|| (decode(url.username()), url.password().map(decode)));
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    let proxy = reqwest::Proxy::all(url.as_str()).ok()?;
    // Not `Proxy::basic_auth`: for http proxies reqwest keeps the credentials in the proxy's
    // URL, and its `Debug` (part of the client's) then shows the password. A sensitive
    // `Proxy-Authorization` value never does.
    Some(match credentials {
        Some((user, password)) => {
            let raw = format!("{user}:{}", password.as_deref().unwrap_or(""));
            let mut value = HeaderValue::from_str(&format!("Basic {}", BASE64.encode(raw))).ok()?;
            value.set_sensitive(true);
            proxy.custom_http_auth(value)
        }
        None => proxy,
    })
}

/// Percent-decoding of proxy credentials (`p%40ss` is `p@ss`; `+` stays `+`: this is a URL's
/// user info, not a form).
fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The request's Basic credentials, if any, encoded by reqwest (RFC 7617, header sensitive).
fn with_basic_auth(builder: reqwest::RequestBuilder, basic: Option<&(String, Secret)>) -> reqwest::RequestBuilder {
    match basic {
        Some((user, password)) => builder.basic_auth(user, Some(password.expose())),
        None => builder,
    }
}

/// rustls needs one process-wide crypto provider; ring is ours (pure Rust and assembly).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// One request being built. Nothing is sent until `send`, `fetch` or `json`.
pub struct Request<'c> {
    client: &'c HttpClient,
    method: Method,
    url: Option<Url>,
    /// The path as logs and errors show it (never the query).
    shown: Cow<'static, str>,
    headers: HeaderMap,
    /// Basic credentials, set on the reqwest request at send (see [`Request::basic_auth`]).
    basic: Option<(String, Secret)>,
    body: Option<(Bytes, &'static str)>,
    body_limit: usize,
    /// A problem found while building (a header value that is not valid), reported at send.
    error: Option<PollError>,
}

impl<'c> Request<'c> {
    /// Appends a query parameter (percent-encoded). Queries are never logged.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        if let Some(url) = &mut self.url {
            url.query_pairs_mut().append_pair(key, value);
        }
        self
    }

    /// A query parameter holding a secret (a password some APIs want in the URL).
    pub fn secret_query(self, key: &str, value: &Secret) -> Self {
        self.query(key, value.expose())
    }

    pub fn header(self, name: &'static str, value: &str) -> Self {
        self.set_header(HeaderName::from_static(name), value, false)
    }

    /// A header holding a secret: marked sensitive, never logged.
    pub fn secret_header(self, name: &'static str, value: &Secret) -> Self {
        self.set_header(HeaderName::from_static(name), value.expose(), true)
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &Secret) -> Self {
        let value = format!("Bearer {}", token.expose());
        self.set_header(AUTHORIZATION, &value, true)
    }

    /// `Authorization: Basic base64(user:password)`, encoded by reqwest when the request is
    /// sent (its header is marked sensitive). Like any `Authorization`, the last one set wins.
    pub fn basic_auth(mut self, user: &str, password: &Secret) -> Self {
        self.headers.remove(AUTHORIZATION);
        self.basic = Some((user.to_string(), password.clone()));
        self
    }

    /// Adds `name=value` to the `Cookie` header.
    pub fn cookie(self, name: &str, value: &Secret) -> Self {
        let pair = format!("{name}={}", value.expose());
        let joined = match self.headers.get(COOKIE).and_then(|v| v.to_str().ok()) {
            Some(existing) => format!("{existing}; {pair}"),
            None => pair,
        };
        self.set_header(COOKIE, &joined, true)
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json_body<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => self.body = Some((Bytes::from(bytes), "application/json")),
            Err(_) => self.error = Some(PollError::Config("cannot encode the request body".into())),
        }
        self
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form_body(mut self, pairs: &[(&str, &str)]) -> Self {
        let mut encoder = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            encoder.append_pair(k, v);
        }
        self.body = Some((Bytes::from(encoder.finish()), "application/x-www-form-urlencoded"));
        self
    }

    /// How logs, notes and errors name the path, for paths that hold an MSISDN or an id.
    pub fn log_as(mut self, shown: impl Into<Cow<'static, str>>) -> Self {
        self.shown = shown.into();
        self
    }

    /// The body cap of this request.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    fn set_header(mut self, name: HeaderName, value: &str, sensitive: bool) -> Self {
        if name == AUTHORIZATION {
            self.basic = None;
        }
        match HeaderValue::from_str(value) {
            Ok(mut v) => {
                v.set_sensitive(sensitive);
                self.headers.insert(name, v);
            }
            // The value is not shown: it may be a secret.
            Err(_) => self.error = Some(PollError::Config(format!("a value for header `{name}` is not valid"))),
        }
        self
    }

    /// Sends the request and reads the whole (capped) body; any status comes back as a
    /// [`Response`]. Transport failures, the deadline and the cap become `PollError`s.
    pub async fn send(self, cx: &PollContext) -> Result<Response, PollError> {
        let shown = format!("{} {}", self.method, self.shown);
        if let Some(e) = self.error {
            return Err(e);
        }
        let Some(url) = self.url else {
            return Err(PollError::Config(format!("no URL for {shown}")));
        };
        let client = self.client;
        // Drivers that pace their requests take a token of the account's bucket per request
        // (a no-op for the others: their context has no pacer).
        cx.pace().await?;
        let started = Instant::now();
        // The wall-clock send time, for the debug log: whoever audits a rate limit from the
        // log needs when a request left, not when its answer came back.
        let sent_at = SystemTime::now();
        if started >= cx.deadline {
            return Err(PollError::Timeout(cx.timeout));
        }
        let mut builder =
            client.client.request(self.method.clone(), url).headers(self.headers).timeout(cx.deadline - started);
        builder = with_basic_auth(builder, self.basic.as_ref());
        if let Some((body, content_type)) = self.body {
            builder = builder.header(CONTENT_TYPE, content_type).body(body);
        }
        let outcome = tokio::time::timeout_at(cx.deadline, exchange(builder, self.body_limit, &shown)).await;
        let (code, result) = match outcome {
            Err(_elapsed) => (Cow::Borrowed("timeout"), Err(PollError::Timeout(cx.timeout))),
            Ok(Ok(response)) => (Cow::Owned(response.status.as_u16().to_string()), Ok(response)),
            Ok(Err(failure)) => {
                let error = match failure.error {
                    PollError::Timeout(_) => PollError::Timeout(cx.timeout),
                    other => other,
                };
                (failure.code, Err(error))
            }
        };
        let elapsed = started.elapsed();
        client.observer.observe_request(&client.account, client.driver, &code, elapsed);
        debug!(
            account = %client.account,
            driver = client.driver,
            method = %self.method,
            path = %self.shown,
            code = %code,
            sent_at = %humantime::format_rfc3339_micros(sent_at),
            duration_seconds = elapsed.as_secs_f64(),
            "operator request",
        );
        cx.note(format!("{shown} → {code} in {} ms", elapsed.as_millis()));
        result
    }

    /// Sends, then maps a failing status to its `PollError` ([`Response::check`]).
    pub async fn fetch(self, cx: &PollContext) -> Result<Response, PollError> {
        self.send(cx).await?.check(cx)
    }

    /// Sends, checks the status and decodes the JSON body as `T`.
    pub async fn json<T: DeserializeOwned>(self, cx: &PollContext) -> Result<T, PollError> {
        self.fetch(cx).await?.json()
    }
}

/// Why an exchange failed, with the `code` label it counts under.
struct Failure {
    code: Cow<'static, str>,
    error: PollError,
}

async fn exchange(builder: reqwest::RequestBuilder, limit: usize, shown: &str) -> Result<Response, Failure> {
    let mut response = builder.send().await.map_err(|e| transport_failure(&e, shown, None))?;
    let status = response.status();
    let code = || Cow::Owned(status.as_u16().to_string());
    if let Some(length) = response.content_length().filter(|l| *l > limit as u64) {
        return Err(Failure { code: code(), error: too_large(shown, Some(length), limit) });
    }
    let capacity = response.content_length().map_or(8 << 10, |l| l as usize).min(limit);
    let mut body = BytesMut::with_capacity(capacity);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    // Dropping the response closes the connection: the rest is never read.
                    return Err(Failure { code: code(), error: too_large(shown, None, limit) });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport_failure(&e, shown, Some(status))),
        }
    }
    Ok(Response { status, headers: response.headers().clone(), body: body.freeze(), shown: shown.to_string() })
}

fn too_large(shown: &str, length: Option<u64>, limit: usize) -> PollError {
    match length {
        Some(length) => {
            PollError::BadResponse(format!("{shown}: response of {length} bytes is over the {limit}-byte cap"))
        }
        None => PollError::BadResponse(format!("{shown}: response is over the {limit}-byte cap; not read further")),
    }
}

/// A reqwest failure, described without its URL (which may hold secrets in the query).
fn transport_failure(e: &reqwest::Error, shown: &str, status: Option<StatusCode>) -> Failure {
    let status_code = || status.map(|s| Cow::Owned(s.as_u16().to_string()));
    if e.is_timeout() {
        return Failure {
            code: status_code().unwrap_or(Cow::Borrowed("timeout")),
            error: PollError::Timeout(Duration::ZERO),
        };
    }
    let cause = io_cause(e).map(|kind| format!(" ({kind})")).unwrap_or_default();
    if e.is_connect() {
        return Failure {
            code: Cow::Borrowed("connect"),
            error: PollError::Unavailable(format!("{shown}: cannot connect{cause}")),
        };
    }
    if status.is_some() {
        return Failure {
            code: status_code().unwrap_or(Cow::Borrowed("io")),
            error: PollError::Unavailable(format!("{shown}: the connection broke while reading the response{cause}")),
        };
    }
    Failure { code: Cow::Borrowed("io"), error: PollError::Unavailable(format!("{shown}: request failed{cause}")) }
}

/// The kind of the I/O error under a reqwest error, if any: safe to show, never a URL.
fn io_cause(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind().to_string());
        }
        source = s.source();
    }
    None
}

/// A whole response: status, headers and the (capped) body.
#[derive(Clone)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// `METHOD /path`, for error texts.
    shown: String,
}

impl fmt::Debug for Response {
    // Bodies and headers may hold tokens: only the status and path are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({} {})", self.status.as_u16(), self.shown)
    }
}

impl Response {
    /// A response built by hand (tests, drivers that post-process).
    pub fn new(status: u16, content_type: Option<&str>, body: impl Into<Bytes>, shown: &str) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(ct).ok()) {
            headers.insert(CONTENT_TYPE, ct);
        }
        Response {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers,
            body: body.into(),
            shown: shown.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// `METHOD /path` as errors show it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The error a failing status means, `None` for 2xx.
    pub fn error(&self, now: SystemTime) -> Option<PollError> {
        let status = self.status;
        if self.is_html() && contains_captcha(&self.body) {
            return Some(PollError::Captcha(format!("{}: HTTP {} with a captcha page", self.shown, status.as_u16())));
        }
        if status.is_success() {
            return None;
        }
        let what = format!("{}: HTTP {}", self.shown, status.as_u16());
        Some(match status.as_u16() {
            401 | 403 => PollError::Auth(what),
            429 => PollError::RateLimited {
                retry_after: self.header("retry-after").and_then(|v| parse_retry_after(v, now)),
            },
            500..=599 => PollError::Unavailable(what),
            300..=399 => PollError::BadResponse(format!("{what} (an unexpected redirect)")),
            _ => PollError::BadResponse(what),
        })
    }

    /// `Ok(self)` for 2xx, else the status's error (see the module doc).
    pub fn check(self, cx: &PollContext) -> Result<Response, PollError> {
        match self.error(cx.clock.now()) {
            None => Ok(self),
            Some(e) => Err(e),
        }
    }

    /// Whether the body is an HTML page (by content type or by its first character).
    pub fn is_html(&self) -> bool {
        looks_like_html(&self.body, self.header(CONTENT_TYPE.as_str()))
    }

    /// Decodes the body as `T`: wrong types and missing fields are `bad_response`, extra
    /// fields are ignored.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PollError> {
        decode_json(&self.body, self.header(CONTENT_TYPE.as_str()), &self.shown)
    }
}

/// Decodes a JSON body; the error names the path of the field that failed, never its value.
pub fn decode_json<T: DeserializeOwned>(body: &[u8], content_type: Option<&str>, shown: &str) -> Result<T, PollError> {
    if looks_like_html(body, content_type) {
        if contains_captcha(body) {
            return Err(PollError::Captcha(format!("{shown}: a captcha page instead of JSON")));
        }
        return Err(PollError::BadResponse(format!("{shown}: an HTML page instead of JSON")));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PollError::BadResponse(format!("{shown}: empty body instead of JSON")));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." || path.is_empty() { String::new() } else { format!(" at `{path}`") };
        PollError::BadResponse(format!("{shown}: {}{at}", describe_json_error(e.inner())))
    })?;
    de.end().map_err(|e| PollError::BadResponse(format!("{shown}: {}", describe_json_error(&e))))?;
    Ok(value)
}

/// serde_json's message without the offending value (which may be a token or an MSISDN).
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let position = format!("line {}, column {}", e.line(), e.column());
    match e.classify() {
        Category::Eof => format!("the JSON ends early ({position}; truncated body?)"),
        Category::Syntax => format!("not valid JSON ({position})"),
        Category::Io => "cannot read the body".to_string(),
        Category::Data => {
            let text = e.to_string();
            let text = text.rsplit_once(" at line ").map_or(text.as_str(), |(head, _)| head);
            if text.starts_with("missing field") {
                text.to_string()
            } else if let Some((_, expected)) = text.split_once(", expected ") {
                format!("wrong type or value, expected {expected}")
            } else if let Some(rest) = text.strip_prefix("expected ") {
                format!("expected {rest}")
            } else {
                "unexpected value".to_string()
            }
        }
    }
}

fn looks_like_html(body: &[u8], content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("html"))
        || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

fn contains_captcha(body: &[u8]) -> bool {
    let head = &body[..body.len().min(CAPTCHA_SCAN)];
    head.windows(7).any(|w| w.eq_ignore_ascii_case(b"captcha"))
}

/// `Retry-After` as seconds (`120`) or an HTTP date relative to `now`; a date in the past is
/// zero; anything else `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Replaces every occurrence of each secret in `text` (for operator messages that might echo
/// a login or token back).
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(secret, "<secret>");
    }
    out
}

/// `X-Total-Pages` of a paged listing (1NCE, emnify).
pub fn total_pages(response: &Response) -> Option<u32> {
    response.header("x-total-pages")?.trim().parse().ok()
}

/// The first of `keys` in a JSON error body that holds a short plain value.
pub fn error_field(response: &Response, keys: &[&str]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(response.body()).ok()?;
    keys.iter().find_map(|k| match value.get(*k)? {
        serde_json::Value::String(s) if s.len() <= 64 => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use serde::Deserialize;

    use super::super::decode::Num;
    use super::*;
    use reqwest::header::RETRY_AFTER;

    #[test]
    fn base_url_keeps_scheme_host_port_and_prefix_and_appends_paths_unchanged() {
        let cases = [
            ("https://api.mts.ru", "/token", "https://api.mts.ru/token"),
            ("https://api.mts.ru/", "/b2b/v1/Bills/ValidityInfo", "https://api.mts.ru/b2b/v1/Bills/ValidityInfo"),
            ("http://127.0.0.1:8080/mts", "/token", "http://127.0.0.1:8080/mts/token"),
            ("http://proxy.local:81/a/b/", "/api/1.0/info/payType", "http://proxy.local:81/a/b/api/1.0/info/payType"),
        ];
        for (base, path, url) in cases {
            assert_eq!(BaseUrl::parse(base).unwrap().join(path).unwrap().as_str(), url, "{base} + {path}");
        }
        for bad in ["ftp://x", "not a url", "https://user:pw@host", "https://host/?q=1", "https://host/#f"] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(!BaseUrl::parse("https://user:pw@host").unwrap_err().contains("pw"));
    }

    #[test]
    fn proxy_credentials_leave_the_url() {
        assert_eq!(percent_decode("p%40ss+w"), "p@ss+w");
        assert!(proxy_of(&Secret::new("http://user:p%40ss@proxy.local:3128")).is_some());
        let shown = format!("{:?}", proxy_of(&Secret::new("http://user:hunter2@proxy.local:3128")).unwrap());
        assert!(!shown.contains("hunter2") && shown.contains("proxy.local"), "{shown}");
        assert!(proxy_of(&Secret::new("not a url")).is_none());
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(90)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn statuses_map_to_reasons() {
        let now = UNIX_EPOCH;
        let reason = |status: u16, ct: Option<&str>, body: &'static str| {
            Response::new(status, ct, body, "GET /x").error(now).map(|e| e.reason().as_str())
        };
        assert_eq!(reason(200, Some("application/json"), "{}"), None);
        assert_eq!(reason(401, None, ""), Some("auth"));
        assert_eq!(reason(403, None, ""), Some("auth"));
        assert_eq!(reason(429, None, ""), Some("rate_limited"));
        assert_eq!(reason(500, None, ""), Some("unavailable"));
        assert_eq!(reason(503, None, ""), Some("unavailable"));
        assert_eq!(reason(404, None, ""), Some("bad_response"));
        assert_eq!(reason(302, None, ""), Some("bad_response"));
        assert_eq!(reason(403, Some("text/html"), "<html>solve the CAPTCHA</html>"), Some("captcha"));
        assert_eq!(reason(200, None, "<html><form id=captcha>"), Some("captcha"));
        let mut r = Response::new(429, None, "", "GET /x");
        r.headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(r.error(now), Some(PollError::RateLimited { retry_after: Some(Duration::from_secs(30)) }));
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Token {
        access_token: String,
        expires_in: Num,
    }

    #[test]
    fn decoding_is_strict_about_types_and_never_shows_values() {
        let ok: Token =
            decode_json(br#"{"access_token":"t","expires_in":"3600","extra":[1]}"#, None, "POST /token").unwrap();
        assert_eq!(ok.expires_in, Num(3600.0));
        let err =
            decode_json::<Token>(br#"{"access_token":12345678,"expires_in":1}"#, None, "POST /token").unwrap_err();
        assert_eq!(err.reason().as_str(), "bad_response");
        let text = err.to_string();
        assert!(text.contains("access_token") && !text.contains("12345678"), "{text}");
        let err =
            decode_json::<Token>(br#"{"access_token":"sekrit-value","expires_in":"soon"}"#, None, "x").unwrap_err();
        assert!(!err.to_string().contains("sekrit") && err.to_string().contains("expires_in"), "{err}");
        let err = decode_json::<Token>(br#"{"expires_in":1}"#, None, "x").unwrap_err();
        assert!(err.to_string().contains("missing field `access_token`"), "{err}");
        let err = decode_json::<Token>(br#"{"access_token":"t","exp"#, None, "x").unwrap_err();
        assert!(err.to_string().contains("ends early"), "{err}");
        let err = decode_json::<Token>(b"<!DOCTYPE html><html>maintenance</html>", None, "x").unwrap_err();
        assert!(err.to_string().contains("HTML page"), "{err}");
        assert!(decode_json::<Token>(b"  ", None, "x").unwrap_err().to_string().contains("empty body"));
    }

    #[test]
    fn basic_auth_is_the_rfc_7617_header_and_sensitive() {
        install_crypto_provider();
        let basic = ("Aladdin".to_string(), Secret::new("open sesame"));
        let request =
            with_basic_auth(reqwest::Client::new().get("http://operator.test/"), Some(&basic)).build().unwrap();
        let value = &request.headers()[AUTHORIZATION];
        assert_eq!(value, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(value.is_sensitive());
        let none = with_basic_auth(reqwest::Client::new().get("http://operator.test/"), None).build().unwrap();
        assert!(none.headers().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn scrub_hides_secrets_in_operator_messages() {
        assert_eq!(scrub("user 79161234567 blocked", &["79161234567"]), "user <secret> blocked");
    }
}
