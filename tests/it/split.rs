//! Split exposition end to end (`/metrics?part=K&parts=N`): for 1, 3 and 4 parts, in text and
//! OpenMetrics, identity and gzip, the parts of the real binary hold between them exactly the
//! whole body's per-line samples, each in the one part `part_of` names, with the exporter's
//! own series in part 0 only, a header for exactly the families a part has samples of, and
//! every text part passes promtool (promtool 2.42 reads text format only: it refuses the
//! OpenMetrics `info` type even in the whole body, so OpenMetrics parts are held to their
//! structure here and to the strict parser of the library's tests, `src/metrics/tests.rs`);
//! bad parameters are a 400 that says which and why; a fifth part count at once is a 503.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use esim_exporter::poll::spread::part_of;

use crate::binary::{http, promtool_check_metrics, Exporter};

const LINES: usize = 60;

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5";

/// 60 demo lines over two accounts, polled once (the first wave) and then not for an hour, so
/// that the per-line samples stay put while the test scrapes. No `failing` or `flaky` profile:
/// their rate-limited answers pause an account and the test needs every line polled.
fn fleet() -> String {
    let mut config = String::from(
        "global: {poll_interval: 1h, timeout: 5s}\naccounts:\n  a: {driver: demo, seed: 5, operator: mts, labels: {fleet: trackers}}\n  b: {driver: demo, seed: 8, operator: beeline}\nlines:\n",
    );
    let profiles = ["steady", "heavy", "low", "unlimited"];
    for i in 0..LINES {
        let account = if i % 3 == 0 { "b" } else { "a" };
        let profile = profiles[i % profiles.len()];
        config.push_str(&format!(
            "  - {{name: sim-{i:03}, account: {account}, profile: {profile}, labels: {{site: s{}}}}}\n",
            i % 5
        ));
    }
    config
}

/// A scrape: status, the body (gunzipped when it came gzipped) and its content type.
fn scrape(e: &Exporter, path: &str, openmetrics: bool, gzip: bool) -> (u16, String, String) {
    let mut headers = Vec::new();
    if openmetrics {
        headers.push(("Accept", OPENMETRICS));
    }
    if gzip {
        headers.push(("Accept-Encoding", "gzip"));
    }
    let (status, response_headers, body) = http(e.addr, "GET", path, &headers);
    let find = |name: &str| response_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let body = if find("content-encoding").as_deref() == Some("gzip") {
        assert!(gzip, "{path}: gzip only when asked for");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).expect("valid gzip");
        text
    } else {
        assert!(!gzip || status != 200, "{path}: asked for gzip, got identity");
        String::from_utf8(body).expect("UTF-8")
    };
    (status, body, find("content-type").unwrap_or_default())
}

fn samples(body: &str) -> impl Iterator<Item = &str> {
    body.lines().filter(|l| !l.starts_with('#') && !l.is_empty())
}

/// The `line` label of a per-line sample (it comes first); the demo names need no unescaping.
fn line_of(sample: &str) -> Option<&str> {
    let rest = &sample[sample.find("{line=\"")? + 7..];
    rest.split('"').next()
}

/// Per-line samples, sorted (a multiset).
fn line_samples(body: &str) -> Vec<String> {
    let mut out: Vec<String> = samples(body).filter(|s| line_of(s).is_some()).map(str::to_string).collect();
    out.sort();
    out
}

/// The exporter's own series (every sample without a `line` label), without their values:
/// process figures move between two scrapes.
fn own_series(body: &str) -> BTreeSet<String> {
    samples(body)
        .filter(|s| line_of(s).is_none())
        .filter_map(|s| s.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

/// Families declared by `# TYPE` and families with samples: equal in a part (no header
/// without samples, as in the whole body).
fn declared_and_sampled(body: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let declared: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    let sampled = samples(body)
        .map(|s| s.split(['{', ' ']).next().unwrap_or(""))
        .map(|name| {
            // A sample belongs to the longest declared family its name starts with
            // (`_total`, `_bucket`, `_sum`, `_count`).
            declared
                .iter()
                .filter(|f| name.starts_with(f.as_str()))
                .max_by_key(|f| f.len())
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    (declared, sampled)
}

/// Waits until every line polled and two scrapes 300 ms apart carry the same per-line samples.
fn settle(e: &Exporter) -> Vec<String> {
    e.wait_until("every line polled", |e| {
        let (status, json) = e.get("/api/v1/lines?limit=1");
        status == 200 && serde_json::from_str::<serde_json::Value>(&json).is_ok_and(|v| v["summary"]["pending"] == 0)
    });
    let mut previous = line_samples(&e.metrics());
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = line_samples(&e.metrics());
        if now == previous {
            return now;
        }
        previous = now;
    }
}

#[test]
fn parts_hold_every_sample_of_the_whole_body_once_in_every_format_and_encoding() {
    let e = Exporter::start("split", &fleet());
    let settled = settle(&e);
    assert!(settled.len() > LINES * 5, "a few series per line: {}", settled.len());
    for (openmetrics, gzip) in [(false, false), (false, true), (true, false), (true, true)] {
        let what = format!("openmetrics={openmetrics} gzip={gzip}");
        let (status, whole, whole_type) = scrape(&e, "/metrics", openmetrics, gzip);
        assert_eq!(status, 200);
        assert_eq!(line_samples(&whole), settled, "{what}: nothing moved");
        for n in [1u32, 3, 4] {
            let mut owner: BTreeMap<String, u32> = BTreeMap::new();
            let mut union = Vec::new();
            for k in 0..n {
                let path = format!("/metrics?part={k}&parts={n}");
                let (status, part, content_type) = scrape(&e, &path, openmetrics, gzip);
                assert_eq!(status, 200, "{what} {path}: {part}");
                assert_eq!(content_type, whole_type, "{what} {path}: same Content-Type as the whole body");
                if !openmetrics {
                    promtool_check_metrics(&part);
                }
                if openmetrics {
                    assert!(
                        part.ends_with("# EOF\n") && part.matches("# EOF").count() == 1,
                        "{what} {path}: one # EOF at the end"
                    );
                }
                let (declared, sampled) = declared_and_sampled(&part);
                assert_eq!(declared, sampled, "{what} {path}: a header exactly for each family with samples");
                for sample in line_samples(&part) {
                    let line = line_of(&sample).unwrap_or_default();
                    assert_eq!(part_of(line, n), k, "{what} {path}: {line} belongs to part {}", part_of(line, n));
                    if let Some(other) = owner.insert(sample.clone(), k) {
                        panic!("{what}: {sample} in parts {other} and {k}");
                    }
                    union.push(sample);
                }
                let own = own_series(&part);
                if k == 0 {
                    assert_eq!(own, own_series(&whole), "{what} {path}: the exporter's own series are in part 0");
                    assert!(own.iter().any(|s| s.starts_with("esim_exporter_build_info{")), "{what}");
                } else {
                    assert!(own.is_empty(), "{what} {path}: the exporter's own series only in part 0: {own:?}");
                }
            }
            union.sort();
            assert_eq!(union, settled, "{what}: the {n} parts together are the whole body's per-line samples");
            if n > 1 {
                let sizes: Vec<usize> = (0..n).map(|k| owner.values().filter(|&&p| p == k).count()).collect();
                assert!(sizes.iter().all(|&s| s > 0), "{what}: every part of {n} has lines: {sizes:?}");
            }
        }
    }
}

#[test]
fn bad_part_parameters_are_a_400_that_names_the_parameter() {
    let e = Exporter::start("split-bad", &fleet());
    let cases = [
        ("part=5&parts=4", "parameter `part`: 5 is out of range for parts=4: valid are 0 to 3 (parts count from 0)"),
        ("part=4&parts=4", "parameter `part`: 4 is out of range for parts=4"),
        ("part=0&parts=0", "parameter `parts`: must be at least 1 (got 0)"),
        ("part=x&parts=4", "parameter `part`: `x` is not a whole number"),
        ("part=-1&parts=4", "parameter `part`: `-1` is not a whole number"),
        ("part=1&parts=four", "parameter `parts`: `four` is not a whole number"),
        ("part=1", "parameter `part` needs `parts` too: /metrics?part=K&parts=N with 0 <= K < N"),
        ("parts=4", "parameter `parts` needs `part` too"),
        ("part=0&part=1&parts=4", "parameter `part` is given more than once; give it once"),
        ("part=0&parts=4&parts=2", "parameter `parts` is given more than once"),
        ("part=0&parts=65", "parameter `parts`: at most 64 parts (got 65)"),
        ("part=0&parts=99999999999", "parameter `parts`: at most 64 parts (got 99999999999)"),
    ];
    for (query, says) in cases {
        let (status, headers, body) = http(e.addr, "GET", &format!("/metrics?{query}"), &[]);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.starts_with(says), "{query}: {body}");
        let content_type = headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.as_str());
        assert_eq!(content_type, Some("text/plain; charset=utf-8"), "{query}");
    }
    // Other parameters are ignored, as they always were.
    assert_eq!(e.get("/metrics?debug=1").0, 200);
    // At most four part counts are rendered at once; a fifth waits until one lapses.
    for n in [2, 5, 6, 7] {
        assert_eq!(e.get(&format!("/metrics?part=1&parts={n}")).0, 200, "parts={n}");
    }
    let (status, headers, body) = http(e.addr, "GET", "/metrics?part=0&parts=8", &[]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("parts=8 cannot be served now: 4 other part counts (2, 5, 6, 7)"), "{body}");
    assert!(headers.iter().any(|(n, v)| n == "retry-after" && v == "60"));
    assert_eq!(e.get("/metrics?part=6&parts=7").0, 200, "the counts in use still serve");
}
