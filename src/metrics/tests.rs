//! Tests of the whole exposition: the fast renderer against a reference rendering through the
//! `prometheus` crate, promtool, incremental against full renders, format structure, gzip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{CounterVec, Encoder, GaugeVec, Opts, Registry, TextEncoder};

use super::catalog::{self, Kind};
use super::*;
use crate::clock::unix_seconds;
use crate::config::{self, ByteSize, Config, Global};
use crate::drivers::kit::ids::Msisdn;
use crate::error::PollError;
use crate::reading::{Currency, Money, Reading};
use crate::store::{PollOutcome, Store};

// ---------------------------------------------------------------------------------------------
// Fixture: a store with lines in every interesting state.

const T0: u64 = 1_700_000_000;

fn t(offset_secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0.saturating_add_signed(offset_secs))
}

const FLEET: &str = r#"
global:
  stale_after: 1h
  alert: {balance_below: 30}
accounts:
  corp:
    driver: demo
    operator: mts
    labels: {fleet: trackers}
    alert: {data_below: 100MB}
lines:
  - name: gate-01
    driver: demo
    operator: megafon
    msisdn: "+79261234567"
    iccid: "89701012345678901234"
    labels: {site: msk-north, rack: "a\"b\\c\nd"}
    alert: {balance_below: 150, data_below: 500MB}
  - name: never-polled
    driver: demo
    alert: {balance_below: 50}
  - name: failing
    driver: demo
    msisdn: "+79990001122"
  - name: stale
    driver: demo
    alert: {data_below: 1GiB}
  - name: sparse
    account: corp
    labels: {site: spb}
  - name: 'odd "quoted" \ name'
    account: corp
"#;

fn parse_config(yaml: &str) -> Config {
    match config::parse("test.yaml", yaml, crate::drivers::REGISTRY) {
        Ok(c) => c,
        Err(e) => panic!("test config does not load:\n{e}"),
    }
}

fn ok(store: &Store, line: &str, at: SystemTime, reading: Reading) {
    let outcome = PollOutcome { at, duration: Duration::from_millis(1250), result: Ok(reading) };
    assert!(store.record(line, outcome).is_some(), "{line} is configured");
}

fn fail(store: &Store, line: &str, at: SystemTime, err: PollError) {
    let outcome = PollOutcome { at, duration: Duration::from_secs(30), result: Err(err) };
    assert!(store.record(line, outcome).is_some(), "{line} is configured");
}

fn full_reading(balance: f64, data_mb: u64) -> Reading {
    Reading {
        balance: Some(Money { amount: balance, currency: Currency::RUB }),
        data_remaining: Some(ByteSize(data_mb * 1_000_000)),
        data_quota: Some(ByteSize(10_000_000_000)),
        voice_remaining: Some(Duration::from_secs(300 * 60)),
        sms_remaining: Some(50),
        quota_expiry: Some(t(10 * 86_400)),
        plan: Some("Demo \"Max\" 10 GB".into()),
    }
}

fn balance_only(amount: f64, currency: Currency) -> Reading {
    Reading { balance: Some(Money { amount, currency }), ..Reading::default() }
}

/// The fleet after a few polls, to be rendered at `t(0)`.
fn fleet() -> (Config, Store) {
    let config = parse_config(FLEET);
    let store = Store::new();
    store.apply_plan(&config.lines);
    ok(&store, "gate-01", t(-120), full_reading(123.45, 1500));
    ok(&store, "gate-01", t(-60), full_reading(120.2, 1400));
    fail(&store, "failing", t(-50), PollError::Unavailable("HTTP 503".into()));
    fail(&store, "failing", t(-40), PollError::Timeout(Duration::from_secs(30)));
    ok(&store, "stale", t(-7200), full_reading(99.0, 800));
    ok(&store, "sparse", t(-300), balance_only(10.0, Currency::USD));
    ok(&store, "sparse", t(-200), balance_only(12.5, Currency::USD));
    ok(&store, "sparse", t(-100), balance_only(7.0, Currency::EUR));
    fail(&store, "sparse", t(-10), PollError::RateLimited { retry_after: None });
    ok(&store, r#"odd "quoted" \ name"#, t(-5), Reading { sms_remaining: Some(0), ..Reading::default() });
    (config, store)
}

/// Self metrics as the running exporter has them: with the scheduler's families registered.
fn self_metrics() -> SelfMetrics {
    let m = SelfMetrics::new();
    let scheduler = crate::poll::telemetry::Telemetry::register(m.registry()).expect("scheduler metrics register");
    // Per-account families have series only once an account was locked out or rate limited.
    scheduler.set_locked_out("corp", "demo", false);
    scheduler.set_rate_limited_until("corp", "demo", 1_800_000_000.0);
    // So does the drivers' login board, for accounts whose login may need a person.
    crate::metrics::login_gauge::login_board(m.registry()).expect("login board registers").track("corp");
    let config = parse_config(FLEET);
    // Per-account poll series and default thresholds, as the scheduler makes them for a plan.
    let keys = config.lines.iter().map(|l| crate::store::account_key(l)).collect();
    let mut defaults = Vec::new();
    for line in &config.lines {
        let account = line.account.label().to_string();
        if !defaults.iter().any(|(a, _)| *a == account) {
            defaults.push((account, line.account.alert));
        }
    }
    scheduler.set_accounts(&keys, &defaults);
    scheduler.observe_poll(&config.lines[0], Duration::from_millis(1250));
    scheduler.observe_poll(&config.lines[2], Duration::from_secs(30));
    m.set_lines(&config);
    m.reload_succeeded(t(-3600));
    m.observe_request("corp", "demo", "200", Duration::from_millis(80));
    m.observe_request("corp", "demo", "429", Duration::from_secs(3));
    m
}

fn render(store: &Store, global: &Global, now: SystemTime, m: &SelfMetrics) -> Exposition {
    Renderer::new(DEFAULT_GZIP_LEVEL).render(store, global, now, m)
}

fn utf8(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("exposition is UTF-8")
}

fn text_of(e: &Exposition) -> String {
    utf8(&e.body(Format::Text, false).expect("body")).to_string()
}

fn openmetrics_of(e: &Exposition) -> String {
    utf8(&e.body(Format::OpenMetrics, false).expect("body")).to_string()
}

// ---------------------------------------------------------------------------------------------
// A small exposition parser (text 0.0.4 and OpenMetrics), strict about structure.

type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Parsed {
    /// family → (help, type, unit), as declared.
    headers: BTreeMap<String, (String, String, Option<String>)>,
    /// Families in the order their headers appear.
    order: Vec<String>,
    /// (sample name, labels without empty values, sorted) → value text normalised to f64 bits.
    samples: BTreeMap<(String, Labels), u64>,
    /// Sample lines in order, with the family each belongs to.
    sample_families: Vec<String>,
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse::<f64>().map_err(|e| format!("bad value `{text}`: {e}")),
    }
}

fn bits(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        (v + 0.0).to_bits()
    }
}

/// Parses `{a="x",b="y"}` at the start of `s`; returns labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("expected =")?;
        let name = &rest[..eq];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name `{name}`"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("expected opening quote")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected , or }".into());
        }
    }
}

/// The sample suffixes a family of `kind` may use in `format`.
fn sample_belongs(family: &str, kind: &str, format: Format, sample: &str) -> bool {
    let suffixes: &[&str] = match (kind, format) {
        ("counter", Format::OpenMetrics) => &["_total", "_created"],
        ("info", _) => &["_info"],
        ("histogram", _) => &["_bucket", "_sum", "_count", "_created"],
        ("summary", _) => &["", "_sum", "_count", "_created"],
        _ => &[""],
    };
    suffixes.iter().any(|s| sample.strip_prefix(family) == Some(s))
}

fn parse(text: &str, format: Format) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut current: Option<(String, String)> = None;
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut units: HashMap<String, String> = HashMap::new();
    let mut eof = false;
    for raw in text.split_inclusive('\n') {
        let line = raw.strip_suffix('\n').ok_or_else(|| format!("last line lacks a newline: {raw:?}"))?;
        if eof {
            return Err(format!("content after # EOF: {line:?}"));
        }
        if line == "# EOF" {
            if format != Format::OpenMetrics {
                return Err("# EOF in text format".into());
            }
            eof = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            let name = parts.next().ok_or_else(|| format!("no name: {line}"))?.to_string();
            let arg = parts.next().unwrap_or("").to_string();
            match keyword {
                "HELP" if helps.contains_key(&name) || p.headers.contains_key(&name) => {
                    return Err(format!("second HELP for {name}"));
                }
                "HELP" => {
                    helps.insert(name, arg);
                }
                "UNIT" => {
                    if format != Format::OpenMetrics {
                        return Err("# UNIT in text format".into());
                    }
                    if !name.ends_with(&format!("_{arg}")) {
                        return Err(format!("{name} does not end with its unit {arg}"));
                    }
                    units.insert(name, arg);
                }
                "TYPE" => {
                    if p.headers.contains_key(&name) {
                        return Err(format!("second TYPE for {name}"));
                    }
                    let help = helps.get(&name).cloned().ok_or_else(|| format!("TYPE before HELP: {name}"))?;
                    p.headers.insert(name.clone(), (help, arg.clone(), None));
                    p.order.push(name.clone());
                    current = Some((name, arg));
                }
                _ if format == Format::OpenMetrics => return Err(format!("unknown comment {line}")),
                _ => {}
            }
            continue;
        }
        if line.is_empty() {
            return Err("empty line".into());
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| format!("no value: {line}"))?;
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(|e| format!("{e} in {line:?}"))?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let rest = rest.strip_prefix(' ').ok_or_else(|| format!("no space before value: {line}"))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or(""))?;
        if let Some(ts) = fields.next() {
            parse_value(ts)?;
        }
        let (family, kind) = current.clone().ok_or_else(|| format!("sample before any TYPE: {line}"))?;
        if !sample_belongs(&family, &kind, format, name) {
            return Err(format!("sample {name} outside its family (current: {family} {kind})"));
        }
        let mut labels: Labels = labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let mut names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("duplicate label in {line:?}"));
        }
        labels.sort();
        if p.samples.insert((name.to_string(), labels), bits(value)).is_some() {
            return Err(format!("duplicate series {line:?}"));
        }
        p.sample_families.push(family);
    }
    if format == Format::OpenMetrics && !eof {
        return Err("no # EOF".into());
    }
    for (name, unit) in units {
        let header = p.headers.get_mut(&name).ok_or_else(|| format!("UNIT without TYPE: {name}"))?;
        header.2 = Some(unit);
    }
    Ok(p)
}

fn parsed(text: &[u8], format: Format) -> Parsed {
    match parse(utf8(text), format) {
        Ok(p) => p,
        Err(e) => panic!("{format:?} exposition does not parse: {e}\n{}", utf8(text)),
    }
}

/// Process metrics move between two gathers; everything else must match exactly.
fn without_process_values(mut p: Parsed) -> Parsed {
    for ((name, _), value) in p.samples.iter_mut() {
        if name.starts_with("process_") {
            *value = 0;
        }
    }
    p
}

// ---------------------------------------------------------------------------------------------
// The reference: the same data through `prometheus` vectors and `TextEncoder`.

enum Vector {
    Gauge(GaugeVec),
    Counter(CounterVec),
}

fn reference(store: &Store, global: &Global, now: SystemTime, m: &SelfMetrics) -> String {
    let view = store.view();
    // Vectors need one label set per family: the union over lines, "" where a line has none
    // (an empty label value is the same series as no label).
    let own: BTreeSet<String> = view.lines().flat_map(|s| s.line.labels.iter().map(|(n, _)| n.to_string())).collect();
    let registry = Registry::new();
    let mut vectors: HashMap<&str, Vector> = HashMap::new();
    for family in catalog::line_families() {
        let names: Vec<&str> = catalog::LINE_LABELS
            .iter()
            .copied()
            .chain(own.iter().map(String::as_str))
            .chain(family.labels.iter().copied())
            .collect();
        let opts = Opts::new(family.name, family.help);
        let vector = match family.kind {
            Kind::Counter => Vector::Counter(CounterVec::new(opts, &names).expect("valid")),
            _ => Vector::Gauge(GaugeVec::new(opts, &names).expect("valid")),
        };
        match &vector {
            Vector::Gauge(v) => registry.register(Box::new(v.clone())).expect("unique"),
            Vector::Counter(v) => registry.register(Box::new(v.clone())).expect("unique"),
        }
        vectors.insert(family.name, vector);
    }

    for state in view.lines() {
        let line = &state.line;
        let mut base: Vec<String> =
            vec![line.name.clone(), line.operator.to_string(), line.account.label().to_string()];
        for name in &own {
            base.push(line.labels.get(name).unwrap_or_default().to_string());
        }
        let put = |family: &str, extra: &[&str], value: f64| {
            let values: Vec<&str> = base.iter().map(String::as_str).chain(extra.iter().copied()).collect();
            match &vectors[family] {
                Vector::Gauge(v) => v.with_label_values(&values).set(value),
                Vector::Counter(v) => v.with_label_values(&values).inc_by(value),
            }
        };
        let fresh = state.fresh_reading(now, global.stale_after);
        if let Some(r) = fresh {
            if let Some(b) = r.balance {
                put(catalog::ESIM_BALANCE, &[b.currency.as_str()], b.amount);
            }
            if let Some(d) = r.data_remaining {
                put(catalog::ESIM_DATA_REMAINING_BYTES, &[], d.bytes() as f64);
            }
            if let Some(d) = r.data_quota {
                put(catalog::ESIM_DATA_QUOTA_BYTES, &[], d.bytes() as f64);
            }
            if let Some(v) = r.voice_remaining {
                put(catalog::ESIM_VOICE_REMAINING_SECONDS, &[], v.as_secs_f64());
            }
            if let Some(s) = r.sms_remaining {
                put(catalog::ESIM_SMS_REMAINING, &[], s as f64);
            }
            if let Some(e) = r.quota_expiry {
                put(catalog::ESIM_QUOTA_EXPIRY_TIMESTAMP_SECONDS, &[], unix_seconds(e));
            }
        }
        let shown = |id: &Option<Box<str>>| match id {
            Some(v) if global.expose_msisdn => v.to_string(),
            Some(v) => Msisdn(v).masked(),
            None => String::new(),
        };
        let plan = fresh.and_then(|r| r.plan.clone()).unwrap_or_default();
        put(catalog::ESIM_LINE_INFO, &[line.driver().name, &shown(&line.msisdn), &shown(&line.iccid), &plan], 1.0);
        if state.last_poll_ok == Some(false) {
            let reason = state.last_error.as_ref().expect("a failed poll has an error").reason;
            put(catalog::ESIM_POLL_FAILING, &[reason.as_str()], 1.0);
        }
        if let Some(at) = state.last_success {
            put(catalog::ESIM_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS, &[], unix_seconds(at));
        }
        for money in &state.money {
            put(catalog::ESIM_SPENT_TOTAL, &[money.currency.as_str()], money.spent);
            put(catalog::ESIM_TOPPED_UP_TOTAL, &[money.currency.as_str()], money.topped_up);
        }
        if let Some(used) = state.data_used_bytes_total {
            put(catalog::ESIM_DATA_USED_BYTES_TOTAL, &[], used);
        }
        // Only overrides of the account's thresholds are per-line series.
        if let Some(b) =
            line.alert.balance_below.filter(|_| line.alert.balance_below != line.account.alert.balance_below)
        {
            put(catalog::ESIM_BALANCE_ALERT_THRESHOLD, &[], b);
        }
        if let Some(d) = line.alert.data_below.filter(|_| line.alert.data_below != line.account.alert.data_below) {
            put(catalog::ESIM_DATA_REMAINING_ALERT_THRESHOLD_BYTES, &[], d.bytes() as f64);
        }
    }

    let help = |name: &str| catalog::find(name).expect("in the catalogue").help;
    // Poll counts per (operator, account), summed here from the lines' own counts.
    let polls = CounterVec::new(
        Opts::new(catalog::ESIM_POLLS_TOTAL, help(catalog::ESIM_POLLS_TOTAL)),
        &["operator", "account"],
    )
    .expect("valid");
    let errors = CounterVec::new(
        Opts::new(catalog::ESIM_POLL_ERRORS_TOTAL, help(catalog::ESIM_POLL_ERRORS_TOTAL)),
        &["operator", "account", "reason"],
    )
    .expect("valid");
    for state in view.lines() {
        let (operator, account) = (state.line.operator.to_string(), state.line.account.label().to_string());
        polls.with_label_values(&[&operator, &account]).inc_by(state.polls_total as f64);
        for reason in crate::error::Reason::ALL {
            errors
                .with_label_values(&[&operator, &account, reason.as_str()])
                .inc_by(state.errors_total[reason.index()] as f64);
        }
    }
    registry.register(Box::new(polls)).expect("unique");
    registry.register(Box::new(errors)).expect("unique");
    let mut families = registry.gather();
    families.extend(m.registry().gather());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out).expect("encodes");
    String::from_utf8(out).expect("UTF-8")
}

fn assert_same(ours: Parsed, reference: Parsed) {
    let (ours, reference) = (without_process_values(ours), without_process_values(reference));
    let only_ours: Vec<_> = ours.samples.iter().filter(|(k, v)| reference.samples.get(k) != Some(v)).collect();
    let only_ref: Vec<_> = reference.samples.iter().filter(|(k, v)| ours.samples.get(k) != Some(v)).collect();
    assert!(only_ours.is_empty() && only_ref.is_empty(), "only ours: {only_ours:#?}\nonly reference: {only_ref:#?}");
    assert_eq!(ours.headers, reference.headers);
}

// ---------------------------------------------------------------------------------------------
// (a) The fast renderer equals the reference.

#[test]
fn renders_what_the_prometheus_crate_renders_for_the_same_data() {
    let (config, store) = fleet();
    let m = self_metrics();
    for expose_msisdn in [false, true] {
        let global = Global { expose_msisdn, ..config.global.clone() };
        let ours = render(&store, &global, t(0), &m);
        let reference = reference(&store, &global, t(0), &m);
        assert_same(
            parsed(&ours.body(Format::Text, false).expect("body"), Format::Text),
            parsed(reference.as_bytes(), Format::Text),
        );
    }
}

#[test]
fn matches_the_reference_at_several_times() {
    let (config, store) = fleet();
    let m = self_metrics();
    // Before anything went stale, at the edge, and after everything did.
    for now in [t(-30), t(3600 - 60), t(3600 - 5), t(3600 - 4), t(100_000)] {
        let ours = render(&store, &config.global, now, &m);
        let reference = reference(&store, &config.global, now, &m);
        assert_same(
            parsed(&ours.body(Format::Text, false).expect("body"), Format::Text),
            parsed(reference.as_bytes(), Format::Text),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (b) promtool accepts the output.

fn promtool_check(text: &[u8]) {
    let child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!("promtool is required (Debian package `prometheus`): {e}"),
    };
    child.stdin.take().expect("piped").write_all(text).expect("promtool reads stdin");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- input ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        utf8(text)
    );
}

#[test]
fn promtool_accepts_the_text_format() {
    let (config, store) = fleet();
    let exposition = render(&store, &config.global, t(0), &self_metrics());
    promtool_check(&exposition.body(Format::Text, false).expect("body"));
    // And with every reading stale.
    let exposition = render(&store, &config.global, t(100_000), &self_metrics());
    promtool_check(&exposition.body(Format::Text, false).expect("body"));
}

// ---------------------------------------------------------------------------------------------
// (c) Incremental rendering equals a full render.

/// The body without process metrics, which move between any two renders.
fn stable(body: &[u8]) -> String {
    utf8(body).lines().filter(|l| !l.contains("process_")).map(|l| format!("{l}\n")).collect()
}

#[test]
fn incremental_renders_equal_full_renders() {
    let (config, store) = fleet();
    let m = self_metrics();
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    let mut global = config.global.clone();
    let check = |renderer: &mut Renderer, global: &Global, now: SystemTime, expect_rerendered: Option<usize>| {
        let incremental = renderer.render(&store, global, now, &m);
        let full = render(&store, global, now, &m);
        assert_eq!(
            stable(&incremental.body(Format::Text, false).expect("body")),
            stable(&full.body(Format::Text, false).expect("body"))
        );
        assert_eq!(
            stable(&incremental.body(Format::OpenMetrics, false).expect("body")),
            stable(&full.body(Format::OpenMetrics, false).expect("body"))
        );
        if let Some(n) = expect_rerendered {
            assert_eq!(renderer.rerendered(), n, "lines re-rendered at {:?}", now);
        }
    };

    check(&mut renderer, &global, t(0), Some(6));
    // Nothing changed: the whole scan is skipped.
    check(&mut renderer, &global, t(1), Some(0));
    // One poll: one line.
    ok(&store, "sparse", t(2), balance_only(5.0, Currency::EUR));
    check(&mut renderer, &global, t(2), Some(1));
    // gate-01's reading (t(-60)) goes stale after t(3540); sparse's (t(2)) after t(3602).
    check(&mut renderer, &global, t(3540), Some(0));
    check(&mut renderer, &global, t(3541), Some(1));
    // The odd line's reading (t(-5)) and sparse's (t(2)) turned stale together.
    check(&mut renderer, &global, t(3603), Some(2));
    // A fresh poll makes a stale line fresh again.
    ok(&store, "gate-01", t(3604), full_reading(118.0, 1300));
    check(&mut renderer, &global, t(3604), Some(1));
    // A reload: a line goes, one comes, the order changes; every kept line's version moves.
    let reloaded = parse_config(
        &FLEET
            .replace("  - name: failing\n    driver: demo\n    msisdn: \"+79990001122\"\n", "")
            .replace("lines:\n", "lines:\n  - name: newcomer\n    account: corp\n"),
    );
    store.apply_plan(&reloaded.lines);
    check(&mut renderer, &global, t(3605), Some(6));
    assert!(!stable(text_of(&renderer.render(&store, &global, t(3605), &m)).as_bytes()).contains("line=\"failing\""));
    // Global settings re-render everything.
    global.expose_msisdn = true;
    check(&mut renderer, &global, t(3606), Some(6));
    // A clock that goes back rescans (and finds the stale line fresh again).
    check(&mut renderer, &global, t(100), None);
    // An empty store.
    store.apply_plan(&[]);
    check(&mut renderer, &global, t(3607), Some(0));
    assert_eq!(renderer.cache_size(), 0);
}

// ---------------------------------------------------------------------------------------------
// (d) Families are contiguous with one header each; (e) OpenMetrics structure.

fn assert_contiguous(p: &Parsed) {
    let mut seen = BTreeSet::new();
    let mut previous: Option<&String> = None;
    for family in &p.sample_families {
        if previous != Some(family) {
            assert!(seen.insert(family.clone()), "family {family} is split");
            previous = Some(family);
        }
    }
}

#[test]
fn families_are_contiguous_with_one_header_each_in_catalogue_order() {
    let (config, store) = fleet();
    let e = render(&store, &config.global, t(0), &self_metrics());
    for (body, format) in [
        (&e.body(Format::Text, false).expect("body"), Format::Text),
        (&e.body(Format::OpenMetrics, false).expect("body"), Format::OpenMetrics),
    ] {
        let p = parsed(body, format);
        assert_contiguous(&p);
        let line_order: Vec<&str> = catalog::line_families()
            .iter()
            .map(|f| match format {
                Format::Text => f.name,
                Format::OpenMetrics => f.openmetrics_name(),
            })
            .collect();
        // Every per-line family has a series in this fleet, so all appear, first and in order.
        let rendered: Vec<&str> = p.order.iter().take(line_order.len()).map(String::as_str).collect();
        assert_eq!(rendered, line_order);
    }
}

#[test]
fn openmetrics_declares_counters_without_total_and_ends_with_eof() {
    let (config, store) = fleet();
    let e = render(&store, &config.global, t(0), &self_metrics());
    let body = openmetrics_of(&e);
    assert!(body.ends_with("\n# EOF\n"), "{body}");
    let p = parsed(&e.body(Format::OpenMetrics, false).expect("body"), Format::OpenMetrics);
    for family in catalog::all() {
        let declared = p.headers.get(family.openmetrics_name());
        let (help, kind, unit) = declared.unwrap_or_else(|| panic!("{} missing", family.name));
        assert_eq!(help, family.help);
        assert_eq!(kind, family.kind.openmetrics_type(), "{}", family.name);
        assert_eq!(unit.as_deref(), family.unit, "{}", family.name);
    }
    assert!(body.contains("# TYPE esim_spent counter\n"));
    assert!(body.contains("\nesim_spent_total{line=\"gate-01\","));
    assert!(body.contains("# TYPE esim_polls counter\n"));
    assert!(body.contains("# TYPE esim_line info\n"));
    assert!(body.contains("# TYPE process_cpu_seconds counter\n"));
    assert!(body.contains("\nprocess_cpu_seconds_total "));
    // Text format: the same counters keep `_total` in TYPE, and there is no EOF or UNIT.
    let text = text_of(&e);
    assert!(text.contains("# TYPE esim_polls_total counter\n"));
    assert!(text.contains("# TYPE esim_line_info gauge\n"));
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
}

#[test]
fn both_formats_carry_the_same_series() {
    let (config, store) = fleet();
    let e = render(&store, &config.global, t(0), &self_metrics());
    let text = without_process_values(parsed(&e.body(Format::Text, false).expect("body"), Format::Text));
    let om = without_process_values(parsed(&e.body(Format::OpenMetrics, false).expect("body"), Format::OpenMetrics));
    assert_eq!(text.samples, om.samples);
}

#[test]
fn empty_store_renders_valid_bodies() {
    let store = Store::new();
    let e = render(&store, &Global::default(), t(0), &self_metrics());
    let text = parsed(&e.body(Format::Text, false).expect("body"), Format::Text);
    assert!(text.order.iter().all(|f| !f.starts_with("esim_") || catalog::find(f).is_some()));
    parsed(&e.body(Format::OpenMetrics, false).expect("body"), Format::OpenMetrics);
    promtool_check(&e.body(Format::Text, false).expect("body"));
    let d = Exposition::default();
    parsed(&d.body(Format::OpenMetrics, false).expect("body"), Format::OpenMetrics);
    assert_eq!(gunzip(&d.body(Format::Text, true).expect("body")), b"");
}

// ---------------------------------------------------------------------------------------------
// (g) gzip.

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("valid gzip");
    out
}

#[test]
fn gzip_bodies_round_trip() {
    let (config, store) = fleet();
    for level in [0, 1, 6, 9] {
        let e = Renderer::new(level).render(&store, &config.global, t(0), &self_metrics());
        assert_eq!(
            gunzip(&e.body(Format::Text, true).expect("body")),
            e.body(Format::Text, false).expect("body").as_ref()
        );
        assert_eq!(
            gunzip(&e.body(Format::OpenMetrics, true).expect("body")),
            e.body(Format::OpenMetrics, false).expect("body").as_ref()
        );
        // What `/metrics` sends, frame by frame, is the joined body, at its declared length.
        for (format, gzip) in [(Format::Text, false), (Format::Text, true), (Format::OpenMetrics, false)] {
            let sent =
                super::body::tests::collect(PartsBody::from(e.parts(format, gzip).clone())).expect("decompresses");
            assert_eq!(sent, e.body(format, gzip).expect("body").as_ref(), "{format:?} gzip={gzip}");
            assert_eq!(e.parts(format, gzip).len(), sent.len() as u64);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (h) Absent, never zero; staleness; labels; (i) masking in the output.

fn series_of<'a>(p: &'a Parsed, name: &str, line: &str) -> Vec<&'a Labels> {
    p.samples
        .keys()
        .filter(|(n, labels)| n == name && labels.iter().any(|(k, v)| k == "line" && v == line))
        .map(|(_, labels)| labels)
        .collect()
}

#[test]
fn values_not_reported_are_absent_never_zero() {
    let (config, store) = fleet();
    let p = parsed(text_of(&render(&store, &config.global, t(0), &self_metrics())).as_bytes(), Format::Text);
    let has = |name: &str, line: &str| !series_of(&p, name, line).is_empty();
    // (family, line, expected present)
    let cases = [
        (catalog::ESIM_DATA_REMAINING_BYTES, "gate-01", true),
        (catalog::ESIM_DATA_REMAINING_BYTES, "sparse", false),
        (catalog::ESIM_DATA_REMAINING_BYTES, "never-polled", false),
        (catalog::ESIM_DATA_USED_BYTES_TOTAL, "sparse", false),
        (catalog::ESIM_DATA_USED_BYTES_TOTAL, "gate-01", true),
        (catalog::ESIM_SMS_REMAINING, r#"odd "quoted" \ name"#, true),
        (catalog::ESIM_BALANCE, r#"odd "quoted" \ name"#, false),
        (catalog::ESIM_BALANCE, "failing", false),
        // Never polled: info and its own thresholds only; pending is not failing.
        (catalog::ESIM_LINE_INFO, "never-polled", true),
        (catalog::ESIM_POLL_FAILING, "never-polled", false),
        (catalog::ESIM_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS, "never-polled", false),
        (catalog::ESIM_BALANCE_ALERT_THRESHOLD, "never-polled", true),
        (catalog::ESIM_DATA_REMAINING_ALERT_THRESHOLD_BYTES, "never-polled", false),
        // Failing: the one series that says so; healthy lines have none.
        (catalog::ESIM_POLL_FAILING, "failing", true),
        (catalog::ESIM_POLL_FAILING, "gate-01", false),
        // Thresholds equal to the account's are the account's esim_default_* series.
        (catalog::ESIM_BALANCE_ALERT_THRESHOLD, "failing", false),
        (catalog::ESIM_BALANCE_ALERT_THRESHOLD, "stale", false),
        (catalog::ESIM_DATA_REMAINING_ALERT_THRESHOLD_BYTES, "sparse", false),
        (catalog::ESIM_BALANCE_ALERT_THRESHOLD, "gate-01", true),
        // Stale: readings gone, status, counters and thresholds stay.
        (catalog::ESIM_BALANCE, "stale", false),
        (catalog::ESIM_DATA_REMAINING_BYTES, "stale", false),
        (catalog::ESIM_QUOTA_EXPIRY_TIMESTAMP_SECONDS, "stale", false),
        (catalog::ESIM_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS, "stale", true),
        (catalog::ESIM_SPENT_TOTAL, "stale", true),
        (catalog::ESIM_DATA_REMAINING_ALERT_THRESHOLD_BYTES, "stale", true),
        (catalog::ESIM_LINE_INFO, "stale", true),
    ];
    for (name, line, want) in cases {
        assert_eq!(has(name, line), want, "{name} for {line}");
    }
    let failing = series_of(&p, catalog::ESIM_POLL_FAILING, "failing");
    assert_eq!(failing.len(), 1, "one series per failing line");
    assert!(failing[0].contains(&("reason".to_string(), "timeout".to_string())), "the last reason: {failing:?}");
    let stale_info = series_of(&p, catalog::ESIM_LINE_INFO, "stale");
    assert!(stale_info[0].iter().all(|(k, _)| k != "plan"), "a stale plan leaves line_info");
    let currencies: Vec<_> = series_of(&p, catalog::ESIM_SPENT_TOTAL, "sparse")
        .iter()
        .flat_map(|l| l.iter().filter(|(k, _)| k == "currency").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(currencies, ["EUR", "USD"]);
}

#[test]
fn labels_come_in_contract_order_escaped() {
    let (config, store) = fleet();
    let e = render(&store, &config.global, t(0), &self_metrics());
    let text = text_of(&e);
    let expected = [
        "esim_balance{line=\"gate-01\",operator=\"megafon\",rack=\"a\\\"b\\\\c\\nd\",site=\"msk-north\",\
         currency=\"RUB\"} 120.2\n",
        "esim_line_info{line=\"gate-01\",operator=\"megafon\",rack=\"a\\\"b\\\\c\\nd\",site=\"msk-north\",\
         driver=\"demo\",msisdn=\"+7926*****67\",iccid=\"89701*************34\",plan=\"Demo \\\"Max\\\" 10 GB\"} 1\n",
        "esim_sms_remaining{line=\"odd \\\"quoted\\\" \\\\ name\",operator=\"mts\",account=\"corp\",fleet=\"trackers\"} 0\n",
        "esim_poll_failing{line=\"sparse\",operator=\"mts\",account=\"corp\",fleet=\"trackers\",site=\"spb\",\
         reason=\"rate_limited\"} 1\n",
        "esim_spent_total{line=\"sparse\",operator=\"mts\",account=\"corp\",fleet=\"trackers\",site=\"spb\",\
         currency=\"USD\"} 0\n",
        "esim_topped_up_total{line=\"sparse\",operator=\"mts\",account=\"corp\",fleet=\"trackers\",site=\"spb\",\
         currency=\"USD\"} 2.5\n",
        "esim_data_remaining_alert_threshold_bytes{line=\"gate-01\",operator=\"megafon\",rack=\"a\\\"b\\\\c\\nd\",\
         site=\"msk-north\"} 500000000\n",
        "esim_quota_expiry_timestamp_seconds{line=\"gate-01\",operator=\"megafon\",rack=\"a\\\"b\\\\c\\nd\",\
         site=\"msk-north\"} 1700864000\n",
    ];
    for series in expected {
        assert!(text.contains(series), "missing {series:?} in\n{text}");
    }
}

#[test]
fn expose_msisdn_shows_identifiers_unmasked() {
    let (config, store) = fleet();
    let global = Global { expose_msisdn: true, ..config.global.clone() };
    let text = text_of(&render(&store, &global, t(0), &self_metrics()));
    assert!(text.contains("msisdn=\"+79261234567\",iccid=\"89701012345678901234\""));
    assert!(text.contains("line=\"failing\",operator=\"demo\",driver=\"demo\",msisdn=\"+79990001122\"} 1"));
}

#[test]
fn probe_text_holds_one_line_with_headers() {
    let (config, store) = fleet();
    let view = store.view();
    let state = view.get("gate-01").expect("configured");
    let text = render_line_text(state, &config.global, t(0));
    let p = parse(&text, Format::Text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(p.samples.keys().all(|(_, labels)| labels.contains(&("line".to_string(), "gate-01".to_string()))));
    // Every per-line family but the one a healthy line does not have.
    assert_eq!(p.order.len(), catalog::LINE_FAMILY_COUNT - 1, "{text}");
    assert!(!text.contains(catalog::ESIM_POLL_FAILING), "{text}");
    promtool_check(text.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// (j) Fleets of several blocks: the chunked body equals a full render and the reference through
// polls, staleness and reloads that add, remove and reorder lines.

fn big_fleet_yaml(names: impl Iterator<Item = usize>) -> String {
    let mut yaml = String::from(
        "global:\n  stale_after: 1h\naccounts:\n  corp:\n    driver: demo\n    labels: {fleet: f}\nlines:\n",
    );
    for i in names {
        yaml +=
            &format!("  - {{name: l{i:04}, account: corp, msisdn: \"+7926{i:07}\", labels: {{site: s{}}}}}\n", i % 7);
    }
    yaml
}

fn poll_some(store: &Store, config: &Config, every: usize, at: SystemTime, round: u64) {
    for (i, line) in config.lines.iter().enumerate().step_by(every) {
        if i % 11 == 3 {
            fail(store, &line.name, at, PollError::Timeout(Duration::from_secs(30)));
        } else {
            ok(store, &line.name, at, full_reading(100.0 + i as f64 + round as f64, 1000 + round));
        }
    }
}

#[test]
fn a_fleet_of_several_blocks_renders_like_a_full_render_and_the_reference() {
    let lines = 3 * chunk::BLOCK_LINES + 17;
    let config = parse_config(&big_fleet_yaml(0..lines));
    let store = Store::new();
    store.apply_plan(&config.lines);
    let m = self_metrics();
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    let check = |renderer: &mut Renderer, config: &Config, now: SystemTime| {
        let incremental = renderer.render(&store, &config.global, now, &m);
        let full = render(&store, &config.global, now, &m);
        for format in [Format::Text, Format::OpenMetrics] {
            let body = incremental.body(format, false).expect("body");
            assert_eq!(stable(&body), stable(&full.body(format, false).expect("body")), "{format:?} at {now:?}");
            assert_eq!(gunzip(&incremental.body(format, true).expect("body")), body.as_ref(), "gzip {format:?}");
            assert_contiguous(&parsed(&body, format));
        }
        let reference = reference(&store, &config.global, now, &m);
        let ours = parsed(&incremental.body(Format::Text, false).expect("body"), Format::Text);
        let reference = parsed(reference.as_bytes(), Format::Text);
        // The reference sums the current lines' counts; ours keep the counts of lines a
        // reload dropped (a counter never goes down), so they can only be higher.
        let polls = |p: &Parsed| -> f64 {
            p.samples.iter().filter(|((n, _), _)| n == catalog::ESIM_POLLS_TOTAL).map(|(_, v)| f64::from_bits(*v)).sum()
        };
        assert!(polls(&ours) >= polls(&reference), "account poll counts went down");
        let without_polls = |mut p: Parsed| {
            p.samples.retain(|(n, _), _| n != catalog::ESIM_POLLS_TOTAL && n != catalog::ESIM_POLL_ERRORS_TOTAL);
            p
        };
        assert_same(without_polls(ours), without_polls(reference));
    };
    check(&mut renderer, &config, t(0));
    poll_some(&store, &config, 1, t(1), 0);
    check(&mut renderer, &config, t(1));
    assert_eq!(renderer.rerendered(), lines);
    // A few polls: only those lines are re-rendered.
    poll_some(&store, &config, 97, t(2), 1);
    check(&mut renderer, &config, t(2));
    assert_eq!(renderer.rerendered(), lines.div_ceil(97));
    // Everything turns stale.
    check(&mut renderer, &config, t(3602));
    // A reload drops lines in the middle and adds some at the end.
    let kept = (0..lines).filter(|i| !(300..340).contains(i)).chain(lines..lines + 300);
    let reloaded = parse_config(&big_fleet_yaml(kept));
    store.apply_plan(&reloaded.lines);
    poll_some(&store, &reloaded, 5, t(3603), 2);
    check(&mut renderer, &reloaded, t(3603));
    // A reload that shrinks the fleet to part of one block.
    let small = parse_config(&big_fleet_yaml((0..lines).step_by(50)));
    store.apply_plan(&small.lines);
    check(&mut renderer, &small, t(3604));
    promtool_check(&renderer.render(&store, &small.global, t(3604), &m).body(Format::Text, false).expect("body"));
}

// ---------------------------------------------------------------------------------------------
// (k) Split bodies: part K of N is exactly the whole body's samples of the lines that
// `part_of` puts in K, each family's header where the part has samples of it, and the
// exporter's own families in part 0 only, through polls, staleness, reloads and a count
// added late.

use crate::poll::spread::part_of;

/// The `line` label of a per-line sample (it comes first), unescaped.
fn line_label(sample: &str) -> Option<String> {
    let rest = &sample[sample.find("{line=\"")? + 7..];
    let (mut value, mut chars) = (String::new(), rest.chars());
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// What part `k` of `n` must be, cut out of the whole body of the same render.
fn expected_part(whole: &str, format: Format, k: u32, n: u32) -> String {
    let per_line = |name: &str| {
        catalog::line_families()
            .iter()
            .any(|f| name == f.name || (format == Format::OpenMetrics && name == f.openmetrics_name()))
    };
    let mut out = String::new();
    let (mut header, mut in_line_family) = (String::new(), false);
    for text in whole.lines() {
        if text == "# EOF" {
            out.push_str("# EOF\n");
        } else if let Some(meta) = text.strip_prefix("# ") {
            let name = meta.split(' ').nth(1).unwrap_or("");
            if meta.starts_with("HELP ") {
                header.clear();
                in_line_family = per_line(name);
            }
            if in_line_family {
                header.push_str(text);
                header.push('\n');
            } else if k == 0 {
                out.push_str(text);
                out.push('\n');
            }
        } else if in_line_family {
            let line = line_label(text).expect("per-line samples carry `line` first");
            if part_of(&line, n) == k {
                out.push_str(&std::mem::take(&mut header));
                out.push_str(text);
                out.push('\n');
            }
        } else if k == 0 {
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

/// Equal texts, or a panic that shows the first line where they differ (bodies are long).
fn assert_same_text(actual: &str, expected: &str, what: &str) {
    if actual == expected {
        return;
    }
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    let at = a.iter().zip(&e).position(|(x, y)| x != y).unwrap_or(a.len().min(e.len()));
    panic!(
        "{what}: {} lines, expected {}; first difference at line {at}:\n  got      {:?}\n  expected {:?}",
        a.len(),
        e.len(),
        a.get(at),
        e.get(at)
    );
}

/// Checks every part of every count in `counts` against the whole body of `e`, both formats,
/// identity and gzip, as `/metrics` sends them.
fn assert_parts(e: &Exposition, counts: &[u32]) {
    for format in [Format::Text, Format::OpenMetrics] {
        let whole = utf8(&e.body(format, false).expect("body")).to_string();
        for &n in counts {
            assert!(e.has_split(n), "parts={n} rendered");
            let mut samples = 0;
            for k in 0..n {
                let split = SplitPart::new(k, n).expect("valid");
                let identity = e.part(split, format, false).expect("part rendered");
                let sent = super::body::tests::collect(PartsBody::from(identity.clone())).expect("decompresses");
                let text = utf8(&sent);
                assert_same_text(text, &expected_part(&whole, format, k, n), &format!("{format:?} part {k} of {n}"));
                let gzip = e.part(split, format, true).expect("part rendered").flatten().expect("gzip");
                assert_eq!(gunzip(&gzip), sent, "{format:?} gzip part {k} of {n}");
                assert_contiguous(&parsed(&sent, format));
                samples += text.lines().filter(|l| !l.starts_with('#')).count();
            }
            let whole_samples = whole.lines().filter(|l| !l.starts_with('#')).count();
            assert_eq!(samples, whole_samples, "{format:?}: the parts of {n} hold every sample once");
        }
    }
}

fn split_renderer(counts: &[u32]) -> Renderer {
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    renderer.set_splits(counts);
    renderer
}

#[test]
fn parts_are_the_whole_body_cut_by_line() {
    let (config, store) = fleet();
    let m = self_metrics();
    let counts = [2, 3, 4, 5, 64];
    let e = split_renderer(&counts).render(&store, &config.global, t(0), &m);
    assert_parts(&e, &counts);
    // One part is the whole body, byte for byte, in every encoding.
    for (format, gzip) in [(Format::Text, false), (Format::Text, true), (Format::OpenMetrics, false)] {
        let whole = e.body(format, gzip).expect("body");
        let one = e.part(SplitPart::new(0, 1).expect("valid"), format, gzip).expect("one part").flatten();
        assert_eq!(one.expect("body"), whole);
    }
    // Parts of counts not asked for are not rendered; the whole body is as without splits.
    assert!(!e.has_split(6) && e.part(SplitPart::new(0, 6).expect("valid"), Format::Text, false).is_none());
    let plain = render(&store, &config.global, t(0), &m);
    assert_eq!(
        stable(&e.body(Format::Text, false).expect("body")),
        stable(&plain.body(Format::Text, false).expect("body"))
    );
    for k in 0..4 {
        let part = e.part(SplitPart::new(k, 4).expect("valid"), Format::Text, false).expect("part");
        promtool_check(&part.flatten().expect("body"));
    }
}

#[test]
fn parts_follow_polls_staleness_and_reloads_like_the_whole_body() {
    let lines = 3 * chunk::BLOCK_LINES + 17;
    let config = parse_config(&big_fleet_yaml(0..lines));
    let store = Store::new();
    store.apply_plan(&config.lines);
    let m = self_metrics();
    let mut renderer = split_renderer(&[3, 4]);
    let mut check =
        |config: &Config, now: SystemTime| assert_parts(&renderer.render(&store, &config.global, now, &m), &[3, 4]);
    check(&config, t(0));
    poll_some(&store, &config, 1, t(1), 0);
    check(&config, t(1));
    poll_some(&store, &config, 97, t(2), 1);
    check(&config, t(2));
    check(&config, t(3602));
    let kept = (0..lines).filter(|i| !(300..340).contains(i)).chain(lines..lines + 300);
    let reloaded = parse_config(&big_fleet_yaml(kept));
    store.apply_plan(&reloaded.lines);
    poll_some(&store, &reloaded, 5, t(3603), 2);
    check(&reloaded, t(3603));
    let small = parse_config(&big_fleet_yaml((0..lines).step_by(50)));
    store.apply_plan(&small.lines);
    check(&small, t(3604));
    store.apply_plan(&[]);
    check(&small, t(3605));
}

#[test]
fn a_part_count_asked_for_late_is_built_in_full_and_dropped_when_unused() {
    let lines = 2 * chunk::BLOCK_LINES + 5;
    let config = parse_config(&big_fleet_yaml(0..lines));
    let store = Store::new();
    store.apply_plan(&config.lines);
    poll_some(&store, &config, 1, t(1), 0);
    let m = self_metrics();
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    renderer.render(&store, &config.global, t(1), &m);
    let whole_only = renderer.cache_size();
    // Nothing changed since, so no line is re-rendered: the parts come from the chunks.
    renderer.set_splits(&[4, 1, 4]);
    let e = renderer.render(&store, &config.global, t(2), &m);
    assert_eq!(renderer.rerendered(), 0);
    assert_parts(&e, &[4]);
    assert!(renderer.cache_size() > whole_only);
    poll_some(&store, &config, 7, t(3), 1);
    renderer.set_splits(&[2, 4]);
    assert_parts(&renderer.render(&store, &config.global, t(3), &m), &[2, 4]);
    renderer.set_splits(&[]);
    let e = renderer.render(&store, &config.global, t(4), &m);
    assert!(!e.has_split(4) && !e.has_split(2));
    let mut plain = Renderer::new(DEFAULT_GZIP_LEVEL);
    plain.render(&store, &config.global, t(4), &m);
    assert_eq!(renderer.cache_size(), plain.cache_size(), "the parts' chunks are gone");
}

#[test]
fn a_line_stays_in_its_part_when_other_lines_come_and_go() {
    let part_of_lines = |e: &Exposition| -> BTreeMap<String, u32> {
        let mut found = BTreeMap::new();
        for k in 0..4 {
            let body = e.part(SplitPart::new(k, 4).expect("valid"), Format::Text, false).expect("part");
            for sample in utf8(&body.flatten().expect("body")).lines().filter(|l| !l.starts_with('#')) {
                if let Some(line) = line_label(sample) {
                    let previous = found.insert(line.clone(), k);
                    assert!(previous.is_none_or(|p| p == k), "{line} in parts {previous:?} and {k}");
                }
            }
        }
        found
    };
    let config = parse_config(&big_fleet_yaml(100..400));
    let store = Store::new();
    store.apply_plan(&config.lines);
    poll_some(&store, &config, 1, t(1), 0);
    let m = self_metrics();
    let mut renderer = split_renderer(&[4]);
    let before = part_of_lines(&renderer.render(&store, &config.global, t(1), &m));
    assert_eq!(before.len(), 300);
    let sizes: Vec<usize> = (0..4).map(|k| before.values().filter(|&&p| p == k).count()).collect();
    assert!(sizes.iter().all(|&s| (45..=105).contains(&s)), "parts of 300 lines: {sizes:?}");
    // Lines added before, between and after, some removed: the others keep their part.
    let grown = parse_config(&big_fleet_yaml((0..100).chain((100..400).filter(|i| i % 10 != 0)).chain(400..900)));
    store.apply_plan(&grown.lines);
    poll_some(&store, &grown, 1, t(2), 1);
    let after = part_of_lines(&renderer.render(&store, &grown.global, t(2), &m));
    assert_eq!(after.len(), 100 + 270 + 500);
    for (line, part) in &before {
        assert!(after.get(line).is_none_or(|p| p == part), "{line} moved from part {part} to {:?}", after.get(line));
    }
}
