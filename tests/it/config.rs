//! Config cases as files: `tests/config/good/*.yaml` load cleanly; each
//! `tests/config/bad/<case>.yaml` fails with exactly the text of `<case>.err`; each
//! `tests/config/warn/<case>.yaml` loads with exactly the warnings of `<case>.warn`.
//! `UPDATE_GOLDEN=1` rewrites the expected files.

use std::path::Path;

use esim_exporter::config;

use crate::support::{check_golden, files_with_extension};

/// Loads `path` as the exporter would, with a path relative to the repository root so that
/// messages (which name the file) are the same on every machine.
fn load(path: &Path) -> Result<config::Config, config::ConfigError> {
    let relative = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).expect("case under the repo");
    config::load(relative, esim_exporter::drivers::REGISTRY)
}

fn run_cases(dir: &str, check: impl Fn(&Path) -> Result<(), String>) -> usize {
    let cases = files_with_extension(&crate::support::repo().join(dir), "yaml");
    let failures: Vec<String> = cases.iter().filter_map(|case| check(case).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases in {dir} failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    cases.len()
}

#[test]
fn bad_configs_fail_with_the_expected_messages() {
    let count = run_cases("tests/config/bad", |case| match load(case) {
        Ok(_) => Err(format!("{}: loaded, but should have failed", case.display())),
        Err(err) => {
            let text = err.to_string();
            // Every error names file, line and column.
            for line in text.lines() {
                let mut parts = line.splitn(4, ':');
                let (file, row, col) = (parts.next(), parts.next(), parts.next());
                let positioned = file.is_some_and(|f| f.ends_with(".yaml"))
                    && row.is_some_and(|r| r.parse::<u32>().is_ok())
                    && col.is_some_and(|c| c.parse::<u32>().is_ok());
                if !positioned {
                    return Err(format!("{}: message without file:line:column: {line}", case.display()));
                }
            }
            check_golden(&case.with_extension("err"), &format!("{text}\n"))
        }
    });
    assert!(count >= 25, "the corpus has {count} bad configs; keep at least 25");
}

#[test]
fn good_configs_load_without_errors() {
    run_cases("tests/config/good", |case| match load(case) {
        Ok(config) if config.lines.is_empty() => Err(format!("{}: no lines", case.display())),
        Ok(_) => Ok(()),
        Err(err) => Err(format!("{}: {err}", case.display())),
    });
}

#[test]
fn warning_configs_load_with_the_expected_warnings() {
    run_cases("tests/config/warn", |case| match load(case) {
        Ok(config) => {
            let text: String = config.warnings.iter().map(|w| format!("{w}\n")).collect();
            check_golden(&case.with_extension("warn"), &text)
        }
        Err(err) => Err(format!("{}: {err}", case.display())),
    });
}

#[test]
fn full_config_resolves_inheritance_and_defaults() {
    let config = load(&crate::support::repo().join("tests/config/good/full.yaml")).expect("loads");
    let meter = &config.lines[0];
    assert_eq!(meter.name, "meter 1 / north");
    assert_eq!(meter.msisdn.as_deref(), Some("+79261234567"));
    assert_eq!(&*meter.operator, "megafon", "operator inherited from the account");
    assert_eq!(meter.poll_interval, std::time::Duration::from_secs(3600), "line overrides account");
    assert_eq!(meter.timeout, std::time::Duration::from_secs(15), "account overrides global");
    assert_eq!(
        meter.labels,
        vec![
            ("fleet".to_string(), "meters".to_string()),
            ("owner".to_string(), "field-team".to_string()),
            ("site".to_string(), "north".to_string())
        ],
        "line labels overlay account labels, sorted"
    );
    assert_eq!(meter.alert.balance_below, Some(80.0), "account threshold");
    assert_eq!(meter.alert.data_below, Some(config::ByteSize(200_000_000)), "line threshold");
    assert_eq!(meter.account.rate_limit.map(|r| r.to_string()).as_deref(), Some("60/m"));
    let bench = &config.lines[1];
    assert!(bench.account.implicit);
    assert_eq!(bench.account.label(), "");
    assert_eq!(bench.msisdn.as_deref(), Some("+79261234567"), "an unquoted number is read as digits");
    assert_eq!(bench.alert.data_below, Some(config::ByteSize(1_610_612_736)), "global default");
    assert_eq!(bench.poll_interval, std::time::Duration::from_secs(600));
    assert!(config.global.expose_msisdn);
}

#[test]
fn lines_without_line_keys_share_one_options_value_per_driver() {
    let yaml = r#"
accounts:
  m: {driver: mts, client_id: id, client_secret: secret}
  b: {driver: beeline, login: "9060000000", password: secret}
  e: {driver: emnify, application_token: secret}
lines:
  - {name: m1, account: m, msisdn: "+79160000001"}
  - {name: m2, account: m, msisdn: "+79160000002"}
  - {name: m3, account: m, msisdn: "+79160000003", account_no: "1234"}
  - {name: b1, account: b, msisdn: "+79060000001"}
  - {name: b2, account: b, msisdn: "+79060000002"}
  - {name: b3, account: b, msisdn: "+79060000003", ban: "5678"}
  - {name: e1, account: e, iccid: "8988228066600000001"}
  - {name: e2, account: e, iccid: "8988228066600000002"}
  - {name: e3, account: e, endpoint_id: 42}
"#;
    let config = config::parse("t.yaml", yaml, esim_exporter::drivers::REGISTRY).expect("a valid config");
    let options = |name: &str| &config.lines.iter().find(|l| l.name == name).expect("a line").options.0;
    let shared = |a: &str, b: &str| std::sync::Arc::ptr_eq(options(a), options(b));
    for driver in ["m", "b", "e"] {
        let (one, two, keyed) = (format!("{driver}1"), format!("{driver}2"), format!("{driver}3"));
        assert!(shared(&one, &two), "{driver}: lines without line keys share their options");
        assert!(!shared(&one, &keyed), "{driver}: a line with its own key has options of its own");
    }
}

/// Loads `config` (written to a scratch dir beside a FIFO named `fifo`) on a thread, so that
/// a load that blocks fails the test instead of hanging it.
fn load_beside_a_fifo(tag: &str, config: &str, as_config: bool) -> String {
    let dir = std::env::temp_dir().join(format!("esim-config-fifo-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let path = if as_config { fifo.clone() } else { dir.join("esim.yaml") };
    if !as_config {
        std::fs::write(&path, config.replace("FIFO", fifo.to_str().unwrap())).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(config::load(&path, esim_exporter::drivers::REGISTRY).map(|_| ()).map_err(|e| e.to_string()));
    });
    let result = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the load returned instead of blocking");
    std::fs::remove_dir_all(&dir).unwrap();
    result.expect_err("a FIFO is refused")
}

#[test]
fn a_fifo_as_secret_file_or_config_is_refused_at_once() {
    let secret = load_beside_a_fifo(
        "secret",
        "accounts:\n  b: {driver: beeline, login: \"9031234567\", password_file: FIFO}\nlines:\n  - {name: x, account: b, msisdn: \"+79031234567\"}\n",
        false,
    );
    assert!(
        secret.contains("password_file: cannot read secret file") && secret.contains("is a FIFO, not a regular file"),
        "{secret}"
    );
    let whole = load_beside_a_fifo("config", "", true);
    assert!(whole.contains("cannot read config file: is a FIFO, not a regular file"), "{whole}");
}
