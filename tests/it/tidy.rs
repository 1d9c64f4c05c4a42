//! Repository checks (rust-analyzer's "tidy" habit): the metric catalogue, the docs, the alert
//! rules, the dashboards and the driver registry must agree with one another.

use std::collections::BTreeSet;

use esim_exporter::drivers::REGISTRY;
use esim_exporter::metrics::catalog::{self, Kind, Scope};

use crate::drivers::conformance::SUBJECTS;
use crate::mock_operator::{operators, CREDENTIALS};
use crate::support::{check_golden, repo};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every `esim_*` name in a text, histogram sample suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("esim_") {
        let start = i + pos;
        let before_ok = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end =
            text[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(text.len(), |n| start + n);
        if before_ok {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|b| catalog::find(b).is_some_and(|f| f.kind == Kind::Histogram))
                })
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        i = end;
    }
    names
}

/// The generated part of docs/METRICS.md, between its markers.
fn catalog_table() -> String {
    let mut out = String::from("| metric | type | scope | labels | help |\n|---|---|---|---|---|\n");
    for f in catalog::all() {
        let scope = match f.scope {
            Scope::Line => "per line",
            Scope::Exporter => "exporter",
        };
        let kind = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Info => "info (gauge = 1)",
        };
        let labels = f.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("| `{}` | {kind} | {scope} | {labels} | {} |\n", f.name, f.help));
    }
    out
}

#[test]
fn metrics_doc_lists_the_catalogue() {
    let doc = read("docs/METRICS.md");
    let (start, end) = ("<!-- catalog:start -->\n", "<!-- catalog:end -->");
    let from = doc.find(start).expect("docs/METRICS.md has the catalog:start marker") + start.len();
    let to = doc.find(end).expect("docs/METRICS.md has the catalog:end marker");
    let table = catalog_table();
    if doc[from..to] != table {
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(repo().join("docs/METRICS.md"), format!("{}{table}{}", &doc[..from], &doc[to..])).unwrap();
        } else {
            panic!("docs/METRICS.md is out of date with metrics::catalog; run UPDATE_GOLDEN=1 cargo test tidy");
        }
    }
}

#[test]
fn alerts_and_dashboards_use_only_catalogued_metrics() {
    let mut sources = vec!["config/alerts.yml".to_string()];
    for entry in std::fs::read_dir(repo().join("dashboards")).expect("dashboards/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            sources.push(path.strip_prefix(repo()).unwrap().display().to_string());
        }
    }
    let mut unknown = Vec::new();
    for source in &sources {
        for name in metric_names(&read(source)) {
            if catalog::find(&name).is_none() {
                unknown.push(format!("{source}: {name}"));
            }
        }
    }
    assert!(unknown.is_empty(), "metrics not in metrics::catalog:\n{}", unknown.join("\n"));
}

#[test]
fn the_e2e_metric_list_matches_the_catalogue() {
    let listed: BTreeSet<String> = read("tests/e2e/metric-names.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    let catalogued: BTreeSet<String> = catalog::all().iter().map(|f| f.name.to_string()).collect();
    assert_eq!(listed, catalogued, "tests/e2e/metric-names.txt and metrics::catalog differ");
}

/// The driver checklist of docs/DRIVERS.md: section, fixtures folder, example entry, and an
/// example in the spec that loads.
#[test]
fn every_driver_is_documented_has_fixtures_and_examples() {
    let docs = read("docs/DRIVERS.md");
    let example_yaml = read("config/example.yaml");
    let mut missing = Vec::new();
    for spec in REGISTRY {
        let name = spec.name;
        if !docs.contains(&format!("### `{name}`")) {
            missing.push(format!("docs/DRIVERS.md has no section for driver `{name}`"));
        }
        if !repo().join("tests/fixtures").join(name).is_dir() {
            missing.push(format!("tests/fixtures/{name}/ does not exist"));
        }
        if !example_yaml.contains(&format!("driver: {name}")) {
            missing.push(format!("config/example.yaml has no `driver: {name}`"));
        }
        match esim_exporter::config::parse(
            &format!("{name}-example.yaml"),
            spec.example,
            esim_exporter::drivers::REGISTRY,
        ) {
            Ok(config) if config.lines.iter().any(|l| l.driver().name == name) => {}
            Ok(_) => missing.push(format!("the example of `{name}` has no line of that driver")),
            Err(e) => missing.push(format!("the example of `{name}` does not load:\n{e}")),
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Every HTTP driver in the registry is exercised by the conformance suite and served by the
/// mock operator (both were once missed when the IoT drivers landed), and nothing is listed
/// there that the registry does not know.
#[test]
fn every_http_driver_is_in_the_conformance_suite_and_the_mock_operator() {
    let http: BTreeSet<&str> = REGISTRY.iter().filter(|s| s.speaks_http).map(|s| s.name).collect();
    let lists: [(&str, BTreeSet<&str>); 3] = [
        (
            "the conformance suite (tests/it/drivers/conformance.rs SUBJECTS)",
            SUBJECTS.iter().map(|s| s.driver).collect(),
        ),
        ("the mock operator (tests/support/mock_operator operators())", operators().iter().map(|o| o.name()).collect()),
        ("the mock operator's CREDENTIALS", CREDENTIALS.iter().map(|(driver, _, _)| *driver).collect()),
    ];
    let mut problems = Vec::new();
    for (place, listed) in &lists {
        for missing in http.difference(listed) {
            problems.push(format!("HTTP driver `{missing}` is missing from {place}"));
        }
        for unknown in listed.difference(&http) {
            problems.push(format!("{place} lists `{unknown}`, which is no HTTP driver of the registry"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `config/example.yaml` loads (its secrets come from variables prefixed `ESIM_EXAMPLE_`, which
/// this test sets to placeholders; nothing else in the suite reads them).
#[test]
fn example_config_loads() {
    let text = read("config/example.yaml");
    let mut rest = text.as_str();
    while let Some(i) = rest.find("${ESIM_EXAMPLE_") {
        let name_end = rest[i + 2..].find('}').map(|n| i + 2 + n).expect("closed ${");
        std::env::set_var(&rest[i + 2..name_end], "placeholder-secret");
        rest = &rest[name_end..];
    }
    let config = esim_exporter::config::parse("config/example.yaml", &text, esim_exporter::drivers::REGISTRY)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.lines.is_empty());
}

#[test]
fn readme_has_the_two_setup_commands() {
    let readme = read("README.md");
    assert!(readme.contains("cargo run --release -- --config.file config/demo.yaml"));
    assert!(readme.contains("\nscripts/test\n"));
    let ci = read(".ci/run");
    assert!(ci.contains("scripts/test"), ".ci/run calls the README's test command");
}

#[test]
fn golden_check_helper_reports_mismatches() {
    // The helper every golden test relies on must fail on a difference.
    let dir = std::env::temp_dir().join(format!("esim-tidy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("golden.txt");
    std::fs::write(&file, "expected\n").unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_none() {
        assert!(check_golden(&file, "actual\n").is_err());
    }
    assert!(check_golden(&file, "expected\n").is_ok() || std::env::var_os("UPDATE_GOLDEN").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
