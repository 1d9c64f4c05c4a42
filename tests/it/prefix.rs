//! `--web.route-prefix` and `--web.external-url` end to end: every endpoint answers under the
//! prefix and nowhere else, the bare prefix redirects to its slash, the status page's links
//! resolve under the prefix, and `healthcheck` and `lines` reach an exporter behind one.

use std::path::PathBuf;

use crate::binary::{run, Exporter};

const FLEET: &str = "global:
  poll_interval: 1s
  timeout: 5s
accounts:
  acme:
    driver: demo
    seed: 3
    operator: mts
lines:
  - {name: good-1, account: acme}
  - {name: low-1, account: acme, profile: low}
";

const EXTERNAL: &str = "https://ops.example/esim/";

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("esim-it-prefix-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An exporter with `extra` flags, ready at `ready` (the plain `/-/ready` may be a 404 here).
fn start(name: &str, extra: &[&str], ready: &str) -> Exporter {
    let flags = [&["--web.enable-lifecycle"], extra].concat();
    let e = Exporter::spawn_in(fresh_dir(name), FLEET, &flags);
    e.wait_until("ready under the prefix", |e| e.get(ready).0 == 200);
    e
}

fn status(e: &Exporter, method: &str, path: &str) -> u16 {
    e.request(method, path, &[]).0
}

/// Every endpoint of src/web/mod.rs, as (method, path relative to the prefix, status).
const ENDPOINTS: &[(&str, &str, u16)] = &[
    ("GET", "/", 200),
    ("GET", "/metrics", 200),
    ("GET", "/api/v1/lines?limit=1", 200),
    ("GET", "/api/v1/line?line=good-1", 200),
    ("GET", "/-/healthy", 200),
    ("GET", "/-/ready", 200),
    ("POST", "/-/reload", 200),
    ("GET", "/probe?line=good-1", 200),
];

#[test]
fn every_endpoint_answers_under_the_prefix_of_the_external_url_and_nowhere_else() {
    let e = start("external", &["--web.external-url", EXTERNAL], "/esim/-/ready");
    for (method, path, expected) in ENDPOINTS {
        assert_eq!(status(&e, method, &format!("/esim{path}")), *expected, "{method} /esim{path}");
    }
    for (method, path, _) in ENDPOINTS {
        assert_eq!(status(&e, method, path), 404, "{method} {path} is outside the prefix");
    }
    for outside in ["/esimx/", "/esim-/metrics", "/other/esim/metrics", "/esim/esim/"] {
        assert_eq!(status(&e, "GET", outside), 404, "{outside}");
    }
    let (_, body) = e.get("/metrics");
    assert!(body.contains("see https://ops.example/esim/ for the status page"), "the 404 names the way in: {body}");

    // The bare prefix: a relative redirect to the slash, the query kept.
    for (asked, location) in [("/esim", "esim/"), ("/esim?sort=balance", "esim/?sort=balance")] {
        let (code, headers, _) = e.request("GET", asked, &[]);
        let got = headers.iter().find(|(n, _)| n == "location").map(|(_, v)| v.as_str());
        assert_eq!((code, got), (302, Some(location)), "{asked}");
    }
}

#[test]
fn the_status_page_links_resolve_under_the_prefix() {
    let e = start("links", &["--web.route-prefix", "/ops/esim/", "--web.telemetry-path", "/m"], "/ops/esim/-/ready");
    let (code, page) = e.get("/ops/esim/");
    assert_eq!(code, 200);
    let base = url::Url::parse(&format!("http://{}/ops/esim/", e.addr)).unwrap();
    let mut targets = Vec::new();
    for attr in ["href=\"", "fetch(\""] {
        for piece in page.split(attr).skip(1) {
            let target = &piece[..piece.find('"').expect("closing quote")];
            if !target.starts_with('#') {
                targets.push(target.to_string());
            }
        }
    }
    assert!(targets.iter().any(|t| t == "./m"), "the telemetry link: {targets:?}");
    assert!(targets.iter().any(|t| t.starts_with("api/v1/lines")), "the JS asks the API relatively: {targets:?}");
    for target in &targets {
        assert!(!target.starts_with('/') && !target.contains("://"), "a link that ignores the prefix: {target}");
        // The detail view appends a line name to `api/v1/line?line=`.
        let target = if target.ends_with("line=") { format!("{target}good-1") } else { target.clone() };
        let url = base.join(&target).unwrap();
        let path = &url[url::Position::BeforePath..];
        assert!(path.starts_with("/ops/esim/"), "{target} → {path}");
        assert_eq!(e.get(path).0, 200, "{target} → {path}");
    }
    assert!(page.contains("<code>probe?line=NAME</code>"), "no external URL: the probe hint stays relative");
}

#[test]
fn a_proxy_that_strips_the_prefix_gets_root_routes_and_absolute_urls_to_copy() {
    let e = start("stripped", &["--web.external-url", EXTERNAL, "--web.route-prefix", "/"], "/-/ready");
    let (code, page) = e.get("/");
    assert_eq!(code, 200);
    assert!(page.contains("<code>https://ops.example/esim/probe?line=NAME</code>"), "{page}");
    assert!(page.contains(">https://ops.example/esim/metrics</a>"), "the metrics link text");
    assert!(page.contains("href=\"./metrics\""), "hrefs stay relative");
    assert_eq!(e.get("/esim/").0, 404);
}

#[test]
fn healthcheck_and_lines_reach_an_exporter_behind_a_prefix() {
    let e = start("tools", &["--web.route-prefix", "/esim"], "/esim/-/ready");
    let addr = e.addr.to_string();
    let (code, _, err) = run(&["healthcheck", "--web.listen-address", &addr, "--web.route-prefix", "/esim"], &e.dir);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["healthcheck", "--web.listen-address", &addr, "--web.external-url", EXTERNAL], &e.dir);
    assert_eq!(code, 0, "the prefix from the external URL, like the exporter: {err}");
    let (code, _, err) = run(&["healthcheck", "--web.listen-address", &addr], &e.dir);
    assert_eq!(code, 1, "without the prefix, /-/healthy is a 404");
    assert!(err.contains("/-/healthy: HTTP 404"), "{err}");

    e.wait_until("both lines polled", |e| {
        let (_, json) = e.get("/esim/api/v1/lines");
        json.matches("\"state\":\"pending\"").count() == 0
    });
    let (code, out, err) = run(&["lines", "--url", &format!("http://{addr}/esim"), "--output", "csv"], &e.dir);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("good-1") && out.contains("low-1"), "{out}");
}

#[test]
fn bad_prefix_or_external_url_stops_the_start_naming_the_flag() {
    let dir = fresh_dir("bad");
    for (flags, says) in [
        (&["--web.route-prefix", "/a b"][..], "invalid --web.route-prefix `/a b`"),
        (&["--web.route-prefix", "/{x}"][..], "invalid --web.route-prefix `/{x}`"),
        (&["--web.external-url", "ops.example/esim"][..], "invalid --web.external-url `ops.example/esim`"),
        (
            &["--web.external-url", "https://ops.example/e%7Bx%7D/"][..],
            "of --web.external-url cannot be a route prefix",
        ),
    ] {
        let args = [&["--config.file", "embedded:demo", "--web.listen-address", "127.0.0.1:0"][..], flags].concat();
        let (code, _, err) = run(&args, &dir);
        assert_ne!(code, 0, "{flags:?}");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
