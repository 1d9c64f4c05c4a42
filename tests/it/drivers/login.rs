//! The real binary with logins that need a person: `esim-exporter login --account NAME` driven
//! through a pipe stores 0600 token files beside `--storage.path`, then the exporter polls all
//! four Russian drivers (mts, beeline, megafon, t2) through the mock operator and `/metrics`
//! passes `promtool check metrics`; and when a login dies the daemon says so once (metric,
//! log line, status page), stops sending requests for that account, and takes the new token
//! that a second `login` stores at the next reload.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::binary::{promtool_check_metrics, Exporter};
use crate::mock_operator::megafon::SMS_CODE;

use super::{secret_of, user_of, MockOperator};

const BIN: &str = env!("CARGO_BIN_EXE_esim-exporter");

/// The value of the first series starting with `prefix`.
fn value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("esim-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `esim-exporter login` in `dir` with `answers` on stdin (a pipe, as a person at a
/// terminal would type them); returns the exit code, stdout and stderr.
fn login(dir: &Path, args: &[&str], answers: &str) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn esim-exporter login");
    child.stdin.take().expect("stdin").write_all(answers.as_bytes()).expect("type the code");
    let out = child.wait_with_output().expect("login ends");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("token file").permissions().mode() & 0o777
}

#[test]
fn login_stores_tokens_the_exporter_then_uses_for_all_four_russian_drivers() {
    let mock = MockOperator::start_background();
    let config = format!(
        "global:\n  poll_interval: 2s\n  timeout: 5s\naccounts:
  corp-mts:
    driver: mts
    client_id: \"{}\"
    client_secret: \"{}\"
    base_url: {}
    rate_limit: 10/s
  corp-beeline:
    driver: beeline
    login: \"{}\"
    password: \"{}\"
    base_url: {}
    rate_limit: 10/s
  corp-megafon:
    driver: megafon
    login: \"+7{}\"
    base_url: {}
    rate_limit: 10/s
  corp-t2:
    driver: tele2
    login: \"+{}\"
    base_url: {}
    rate_limit: 10/s
lines:
  - {{name: mts-1, account: corp-mts, msisdn: \"+79160000001\"}}
  - {{name: bee-pre, account: corp-beeline, msisdn: \"+79060000001\"}}
  - {{name: mf-1, account: corp-megafon, msisdn: \"+79260000001\"}}
  - {{name: t2-1, account: corp-t2, msisdn: \"+79520000001\"}}
  - {{name: t2-2, account: corp-t2, msisdn: \"+79520000002\"}}
",
        user_of("mts"),
        secret_of("mts"),
        mock.base_url("mts"),
        user_of("beeline"),
        secret_of("beeline"),
        mock.base_url("beeline"),
        user_of("megafon"),
        mock.base_url("megafon"),
        user_of("t2"),
        mock.base_url("t2"),
    );
    let dir = fresh_dir("russian-four");
    std::fs::write(dir.join("esim.yaml"), &config).expect("config");
    let storage = ["--storage.path", "state.json"];

    // A person logs the two accounts in once; the codes come through a pipe.
    for (account, prompt) in [("corp-megafon", "SMS code from MegaFon: "), ("corp-t2", "SMS code from T2: ")] {
        let args = ["--config.file", "esim.yaml", "login", "--account", account, storage[0], storage[1]];
        let (code, stdout, stderr) = login(&dir, &args, &format!("{SMS_CODE}\n"));
        assert_eq!(code, 0, "login {account}:\n{stdout}\n{stderr}");
        assert!(stderr.contains(prompt), "{stderr}");
        assert!(stdout.contains("(mode 0600)") && stdout.contains("reload"), "{stdout}");
        let file = dir.join("tokens").join(format!("{account}.json"));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        assert!(!stderr.contains(SMS_CODE) && !stdout.contains(SMS_CODE));
    }
    assert_eq!(mode(&dir.join("tokens")), 0o700);
    // An account that logs in by itself, and one that does not exist, are refused plainly.
    let (code, _, stderr) = login(&dir, &["login", "--account", "corp-mts"], "");
    assert_eq!(code, 1);
    assert!(stderr.contains("logs in by itself"), "{stderr}");
    let (code, _, stderr) = login(&dir, &["login", "--account", "nope"], "");
    assert_eq!(code, 1);
    assert!(stderr.contains("no account `nope`") && stderr.contains("corp-megafon"), "{stderr}");

    let e = Exporter::start_in(dir, &config, &storage);
    let lines = ["mts-1", "bee-pre", "mf-1", "t2-1", "t2-2"];
    e.wait_until("every line read once", |e| {
        let m = e.metrics();
        lines.iter().all(|l| crate::binary::polled_ok(&m, l))
    });
    let m = e.metrics();
    promtool_check_metrics(&m);
    let v = |prefix: &str| value(&m, prefix).unwrap_or_else(|| panic!("no series {prefix}\n{m}"));

    assert_eq!(v("esim_data_remaining_bytes{line=\"mts-1\""), 5_583_457_485.0);
    assert_eq!(v("esim_voice_remaining_seconds{line=\"bee-pre\""), 18_000.0);
    // megafon: "5,2 ГБ" + 512 МБ, minutes as seconds, SMS, the earliest package end.
    assert_eq!(
        v("esim_data_remaining_bytes{line=\"mf-1\",operator=\"megafon\",account=\"corp-megafon\"}"),
        6_120_328_397.0
    );
    assert_eq!(v("esim_data_quota_bytes{line=\"mf-1\""), 33_285_996_544.0);
    assert_eq!(v("esim_voice_remaining_seconds{line=\"mf-1\""), 25_200.0);
    assert_eq!(v("esim_sms_remaining{line=\"mf-1\""), 100.0);
    assert_eq!(v("esim_quota_expiry_timestamp_seconds{line=\"mf-1\""), 1_784_581_199.0);
    assert!(v("esim_balance{line=\"mf-1\",operator=\"megafon\",account=\"corp-megafon\",currency=\"RUB\"}") <= 245.67);
    // t2 (configured as `tele2`): rests by uom; a linked number with a negative balance and
    // unlimited data, which is absent.
    assert_eq!(v("esim_data_remaining_bytes{line=\"t2-1\",operator=\"t2\",account=\"corp-t2\"}"), 5_905_580_032.0);
    assert_eq!(v("esim_data_quota_bytes{line=\"t2-1\""), 17_179_869_184.0);
    assert_eq!(v("esim_voice_remaining_seconds{line=\"t2-1\""), 18_720.0);
    assert_eq!(v("esim_sms_remaining{line=\"t2-1\""), 45.0);
    assert_eq!(v("esim_quota_expiry_timestamp_seconds{line=\"t2-1\""), 1_785_617_999.0);
    assert_eq!(v("esim_balance{line=\"t2-2\""), -35.5);
    assert_eq!(value(&m, "esim_data_remaining_bytes{line=\"t2-2\""), None, "unlimited data is absent");
    assert_eq!(v("esim_lines{driver=\"t2\"}"), 2.0);
    assert_eq!(v("esim_lines{driver=\"megafon\"}"), 1.0);
    // Nobody is needed: the accounts that could need a person say 0.
    assert_eq!(v("esim_account_needs_login{account=\"corp-megafon\"}"), 0.0);
    assert_eq!(v("esim_account_needs_login{account=\"corp-t2\"}"), 0.0);
    assert_eq!(value(&m, "esim_account_needs_login{account=\"corp-mts\"}"), None);

    // Secrets never reach the exporter's debug log: passwords, every token issued (device,
    // session, access and refresh), the stored files' contents.
    let log = e.log();
    assert!(log.contains("operator request"));
    let mut secrets: Vec<String> = vec![secret_of("mts").into(), secret_of("beeline").into()];
    secrets.extend(mock.issued_tokens());
    for secret in secrets {
        assert!(!log.contains(&secret), "`{secret}` in the exporter's log");
    }
}

#[test]
fn a_dead_login_is_said_once_stops_the_account_and_a_new_login_resumes_it() {
    let mock = MockOperator::start_background();
    // The stored device token dies, and no PIN is kept: a person is needed.
    mock.set_flag("megafon", "secret_revoked", true);
    let dir = fresh_dir("needs-login");
    let token = dir.join("mf-token.json");
    std::fs::write(
        &token,
        format!(
            r#"{{"driver":"megafon","login":"{}","device_id":"0f0e0d0c-0b0a-4909-8807-060504030201","token":"{}"}}"#,
            user_of("megafon"),
            secret_of("megafon")
        ),
    )
    .expect("token file");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = format!(
        "global:\n  poll_interval: 1s\n  timeout: 5s\naccounts:
  corp-megafon:
    driver: megafon
    login: \"+7{}\"
    token_file: mf-token.json
    base_url: {}
    rate_limit: 10/s
lines:
  - {{name: mf-1, account: corp-megafon}}
",
        user_of("megafon"),
        mock.base_url("megafon"),
    );
    let e = Exporter::start_in(dir.clone(), &config, &[]);
    let needs_login = |e: &Exporter| value(&e.metrics(), "esim_account_needs_login{account=\"corp-megafon\"}");
    e.wait_until("the account needs a person", |e| needs_login(e) == Some(1.0));
    // Several poll intervals later: no second login attempt, one log line, `auth` once.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(mock.count("megafon", "/mlk/auth/biometry"), 1, "the dead login was never retried");
    assert_eq!(mock.requests("megafon").len(), 1);
    let log = e.log();
    assert_eq!(log.matches("needs a person to log in again").count(), 1, "said once:\n{log}");
    let m = e.metrics();
    assert_eq!(
        value(&m, "esim_poll_errors_total{account=\"corp-megafon\",operator=\"megafon\",reason=\"auth\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "esim_poll_failing{line=\"mf-1\",operator=\"megafon\",account=\"corp-megafon\",reason=\"auth\"}"),
        Some(1.0),
        "{m}"
    );
    promtool_check_metrics(&m);
    let (status, page) = e.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("id=\"needs-login\"") && page.contains("esim-exporter login --account corp-megafon"),
        "{page}"
    );

    // A person logs in again (through a pipe) and the exporter is reloaded.
    let (code, stdout, stderr) =
        login(&dir, &["--config.file", "esim.yaml", "login", "--account", "corp-megafon"], &format!("{SMS_CODE}\n"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(mode(&token), 0o600);
    let (status, body) = {
        let (s, _, b) = e.request("POST", "/-/reload", &[]);
        (s, String::from_utf8_lossy(&b).into_owned())
    };
    assert_eq!(status, 200, "{body}");
    // The reload ended the lock-out; the line's next attempt comes at its retry (about a
    // minute after the failure) or slot. A probe polls it now.
    let (status, probe) = e.get("/probe?line=mf-1");
    assert_eq!(status, 200, "{probe}");
    e.wait_until("the account polls again", |e| {
        let m = e.metrics();
        crate::binary::polled_ok(&m, "mf-1") && needs_login(e) == Some(0.0)
    });
    let (_, page) = e.get("/");
    assert!(!page.contains("id=\"needs-login\""), "{page}");
    assert!(e.log().contains("logged in again"));
}
