//! Request handlers. Each reads the app's current snapshot; none blocks on an operator except
//! `/probe`, whose whole point is to poll now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::metrics::{negotiate, Format, PartsBody, SplitPart, SplitUnavailable};

use super::api::{self, LinesQuery};
use super::probe_limit::PROBE_MIN_INTERVAL;
use super::status_page;
use super::Routes;

/// Kept off the scrape timeout so the answer arrives before Prometheus gives up.
const PROBE_TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// `/metrics`, or with `?part=K&parts=N` only the lines of part K of N (the exporter's own
/// series in part 0). A bad `part`/`parts` is a 400 that says why.
pub async fn metrics(State(app): State<Arc<App>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
    let split = match SplitPart::from_query(query.as_deref()) {
        Ok(split) => split,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    // The pre-built pieces go out as they are (gzip) or decompressed while they go (identity): no
    // render or compression per scrape, for parts as for the whole body.
    let parts = match split {
        None => app.exposition().parts(format, gzip).clone(),
        Some(split) => match app.split_exposition(split).await {
            Ok(exposition) => match exposition.part(split, format, gzip) {
                Some(parts) => parts.clone(),
                None => return unavailable(&SplitUnavailable::NotRendered(split.parts())),
            },
            Err(e) => return unavailable(&e),
        },
    };
    let body = PartsBody::streaming(parts);
    let mut response = Response::new(Body::new(body));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    h.insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// A 503 for a split that cannot be served now, with when to try again.
fn unavailable(e: &SplitUnavailable) -> Response {
    let retry = match e {
        SplitUnavailable::TooMany(_) => 60,
        SplitUnavailable::NotRendered(_) => 1,
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry));
    response
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): an explicit `gzip` entry decides
/// by its q-value, otherwise `*` does; `q=0` refuses. So `gzip;q=0, *` gets identity.
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else { return false };
    let mut gzip = None;
    let mut any = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                let p = p.trim();
                p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")).map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(gzip.map_or(q, |g: f32| g.max(q)));
        } else if coding == "*" {
            any = Some(q);
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// `/`: the status page. The summary and the first page are built from the shared snapshot
/// (`snapshot.rs`), never from the store itself.
pub async fn status_page(State(routes): State<Routes>, Query(query): Query<HashMap<String, String>>) -> Response {
    let app = &routes.app;
    let mut query = match LinesQuery::parse(&query) {
        Ok(q) => q,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    query.limit = status_page::PAGE_ROWS;
    let config = app.config();
    let now = app.now();
    let snapshot = routes.snapshots.get(&app.store, &config, now).await;
    let summary = snapshot.summary(now);
    let (page, total) = snapshot.page(&query);
    let waiting = app.logins.waiting();
    let cx = status_page::PageContext { now, links: &routes.links, reload_ok: app.last_reload_ok(), waiting: &waiting };
    let html = status_page::render(&summary, &page, total, &query, &cx);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// `/api/v1/lines`: one page of lines (`limit`, `offset`, `sort`, `q`, `operator`, `account`,
/// `state`), with the fleet's summary. A bad parameter is a 400 that says what is accepted.
pub async fn lines(State(routes): State<Routes>, Query(query): Query<HashMap<String, String>>) -> Response {
    let query = match LinesQuery::parse(&query) {
        Ok(q) => q,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let app = &routes.app;
    let config = app.config();
    let now = app.now();
    let snapshot = routes.snapshots.get(&app.store, &config, now).await;
    let (page, total) = snapshot.page(&query);
    let response = api::LinesResponse::of_page(&page, total, &query, snapshot.summary(now), &config.global);
    match serde_json::to_vec(&response) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode lines: {e}\n")).into_response(),
    }
}

/// `/api/v1/line?line=NAME`: one line's view and its last polls (the status page's detail).
pub async fn line(State(app): State<Arc<App>>, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(name) = query.get("line").filter(|n| !n.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "missing `line`: ask /api/v1/line?line=NAME\n").into_response();
    };
    let config = app.config();
    let Some(detail) = api::line_detail(&app.store, &config.global, name, app.now()) else {
        return (StatusCode::NOT_FOUND, "no such line\n").into_response();
    };
    match serde_json::to_vec(&detail) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the line: {e}\n")).into_response(),
    }
}

pub async fn healthy() -> &'static str {
    "Healthy\n"
}

pub async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready: config not loaded or polling not started\n").into_response()
    }
}

/// `POST /-/reload`: only with `--web.enable-lifecycle` (Prometheus' flag and answer); SIGHUP
/// always reloads.
pub async fn reload(State(routes): State<Routes>) -> Response {
    if !routes.enable_lifecycle {
        return (
            StatusCode::FORBIDDEN,
            "Lifecycle API is not enabled. Start with --web.enable-lifecycle or send SIGHUP.\n",
        )
            .into_response();
    }
    match routes.app.reload().await {
        Ok(()) => (StatusCode::OK, "config reloaded\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to reload config: {e}\n")).into_response(),
    }
}

/// `/probe?line=NAME[&debug=true]`: polls one configured line now and returns its series.
/// Only configured names are accepted; nothing in the request chooses where to connect.
pub async fn probe(
    State(routes): State<Routes>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(line) = query.get("line").filter(|l| !l.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "missing parameter `line` (a configured line name)\n").into_response();
    };
    let debug = query.get("debug").is_some_and(|d| d == "true" || d == "1");
    let app = &routes.app;
    if app.store.get(line).is_none() {
        return (StatusCode::NOT_FOUND, "no configured line of that name\n").into_response();
    }
    if let Err(wait) = routes.probes.try_start(line) {
        let seconds = wait.as_secs() + 1;
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("line `{line}` was probed less than {PROBE_MIN_INTERVAL:?} ago; retry in {seconds} s\n"),
        )
            .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return r;
    }
    let timeout = scrape_timeout(&headers);
    let Some(probe) = app.probe(line, timeout).await else {
        return (StatusCode::NOT_FOUND, "no configured line of that name\n").into_response();
    };
    if debug {
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], probe.debug_text()).into_response();
    }
    ([(header::CONTENT_TYPE, Format::Text.content_type())], probe.exposition).into_response()
}

/// The scrape timeout Prometheus announces, less a margin; `None` when absent or unusable.
fn scrape_timeout(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers.get("X-Prometheus-Scrape-Timeout-Seconds")?.to_str().ok()?.trim().parse().ok()?;
    if !seconds.is_finite() || seconds <= 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds).saturating_sub(PROBE_TIMEOUT_MARGIN).max(Duration::from_millis(100)))
}

pub async fn not_found(State(routes): State<Routes>) -> Response {
    let links = &routes.links;
    let message = format!(
        "not found: see {} for the status page and {} for metrics\n",
        links.shown("/"),
        links.shown(&links.telemetry_path)
    );
    (StatusCode::NOT_FOUND, message).into_response()
}

/// The bare route prefix (`/esim`) redirects to `esim/`: relative, so that it lands right
/// whatever path a proxy adds in front, and only there do the page's relative links resolve
/// under the prefix.
pub async fn to_prefix_with_slash(uri: Uri) -> Response {
    let last = uri.path().rsplit('/').next().unwrap_or("");
    let location = match uri.query() {
        Some(query) => format!("{last}/?{query}"),
        None => format!("{last}/"),
    };
    match HeaderValue::from_str(&location) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let cases = [
            (None, false),
            (Some("gzip"), true),
            (Some("deflate, gzip;q=0.5"), true),
            (Some("gzip;q=0"), false),
            (Some("identity"), false),
            (Some("*"), true),
            (Some("GZIP"), true),
            (Some("gzip;q=0, *"), false),
            (Some("*, gzip;q=0"), false),
            (Some("*;q=0"), false),
            (Some("identity, *;q=0.1"), true),
            (Some("gzip; q=0.000"), false),
            (Some("br, gzip;q=bogus"), false),
        ];
        for (header, expected) in cases {
            assert_eq!(accepts_gzip(header), expected, "{header:?}");
        }
    }

    #[test]
    fn scrape_timeout_header() {
        let mut h = HeaderMap::new();
        assert_eq!(scrape_timeout(&h), None);
        h.insert("X-Prometheus-Scrape-Timeout-Seconds", HeaderValue::from_static("10"));
        assert_eq!(scrape_timeout(&h), Some(Duration::from_millis(9500)));
        h.insert("X-Prometheus-Scrape-Timeout-Seconds", HeaderValue::from_static("nan"));
        assert_eq!(scrape_timeout(&h), None);
    }
}
