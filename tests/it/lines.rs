//! `esim-exporter lines` against the real binary, as a person types it: through a pipe (no
//! colour) and a pseudo-terminal (colour), with filters, behind basic auth and TLS, and against
//! a port where nothing listens.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::binary::Exporter;

const BIN: &str = env!("CARGO_BIN_EXE_esim-exporter");

const FLEET: &str = "global:
  poll_interval: 1s
  timeout: 5s
  alert: {balance_below: 100, data_below: 100MB}
accounts:
  acme: {driver: demo, seed: 3, operator: mts}
lines:
  - {name: good-1, account: acme}
  - {name: good-2, account: acme}
  - {name: low-1, account: acme, profile: low}
  - {name: down-1, account: acme, profile: failing}
";

/// Runs `esim-exporter lines ARGS` with stdout on a pipe; exit code, stdout, stderr.
fn lines(args: &[&str], env: &[(&str, &str)], dir: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("lines")
        .args(args)
        .env_remove("ESIM_PASSWORD")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run esim-exporter lines");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `esim-exporter lines ARGS` with stdout on a pseudo-terminal; exit code and what the
/// terminal showed.
fn lines_on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two fresh descriptors into the two ints; the other arguments may be null.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = Command::new(BIN)
        .arg("lines")
        .args(args)
        .env_remove("ESIM_PASSWORD")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn esim-exporter lines");
    // The spawned child holds the only copy of the slave now: its exit ends the reads (EIO).
    let reader = read_terminal(master);
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

fn all_polled(e: &Exporter) -> bool {
    let (status, body) = e.get("/api/v1/lines?state=pending");
    status == 200 && body.starts_with("{\"total\":0,")
}

#[test]
fn lines_prints_the_table_of_a_running_exporter_filtered_and_exits_by_its_state() {
    let e = Exporter::start("lines-table", FLEET);
    e.wait_until("every line polled", all_polled);
    let url = format!("http://{}", e.addr);

    // Through a pipe: no colour, every line, a failing line makes the exit status 1.
    let (code, out, err) = lines(&["--url", &url], &[], &e.dir);
    assert_eq!(code, 1, "a failing line exits 1\n{out}{err}");
    assert!(!out.contains('\x1b'), "no colour through a pipe:\n{out}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[0].starts_with("LINE") && rows[0].contains("BALANCE") && rows[0].contains("STATUS"), "{out}");
    let names: Vec<&str> = rows[1..].iter().map(|r| r.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["down-1", "good-1", "good-2", "low-1"], "sorted by name:\n{out}");
    let status_column = rows[0].find("STATUS").unwrap();
    let status = |name: &str| {
        let row = rows.iter().find(|r| r.starts_with(name)).unwrap();
        row[status_column..].split_whitespace().next().unwrap().to_string()
    };
    assert_eq!((status("good-1"), status("low-1"), status("down-1")), ("ok".into(), "low".into(), "failed".into()));
    assert!(rows.iter().any(|r| r.starts_with("down-1") && r.contains("unavailable: ")), "{out}");
    assert!(out.contains(" RUB"), "{out}");
    assert!(err.contains("4 of 4 matching lines shown, 1 failing"), "{err}");

    // Filters: none of these shows the failing line, so the status is 0.
    let (code, out, err) = lines(&["--url", &url, "--q", "GOOD"], &[], &e.dir);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().skip(1).map(|r| &r[..6]).collect::<Vec<_>>(), ["good-1", "good-2"], "{out}");
    let (code, out, _) = lines(&["--url", &url, "--state", "low"], &[], &e.dir);
    assert_eq!((code, out.lines().count()), (0, 2), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("low-1"), "{out}");
    let (code, out, _) = lines(&["--url", &url, "--state", "failing", "--output", "csv"], &[], &e.dir);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("line,operator,account,balance,data_left,quota,expires,status,error\ndown-1,mts,acme,"),
        "{out}"
    );
    let (code, out, err) = lines(&["--url", &url, "--sort=-name", "--limit", "2", "--output", "json"], &[], &e.dir);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!((v["total"].as_u64(), v["lines"][0]["name"].as_str()), (Some(4), Some("low-1")), "{out}");
    assert_eq!(v["lines"].as_array().unwrap().len(), 2);
    assert_eq!(v["summary"]["failing"], 1, "the summary is the fleet's");
    let (code, _, err) = lines(&["--url", &url, "--operator", "nobody"], &[], &e.dir);
    assert_eq!(code, 0, "no line shown, none failing");
    assert!(err.contains("0 of 0 matching lines shown"), "{err}");

    // On a terminal: colour, unless NO_COLOR says otherwise.
    let (code, shown) = lines_on_a_terminal(&["--url", &url], &[]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("\x1b[1mLINE\x1b[0m"), "bold header on a terminal:\n{shown}");
    assert!(shown.contains("\x1b[31mfailed\x1b[0m") && shown.contains("\x1b[32mok\x1b[0m"), "{shown}");
    assert!(shown.contains("\x1b[33mlow\x1b[0m"), "{shown}");
    let (_, shown) = lines_on_a_terminal(&["--url", &url], &[("NO_COLOR", "1")]);
    assert!(shown.contains("LINE") && !shown.contains('\x1b'), "NO_COLOR:\n{shown}");
}

#[test]
fn lines_against_a_closed_port_or_a_bad_url_exits_2_naming_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = listener.local_addr().unwrap();
    drop(listener);
    let dir = std::env::temp_dir();
    let (code, out, err) = lines(&["--url", &format!("http://{free}")], &[], &dir);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    let expected = format!("esim-exporter: lines: http://{free}/api/v1/lines: cannot connect: ");
    assert!(err.starts_with(&expected) && err.contains("refused"), "{err}");
    let (code, _, err) = lines(&["--url", "localhost:10063"], &[], &dir);
    assert_eq!(code, 2);
    assert!(err.contains("invalid --url `localhost:10063`"), "{err}");
    let (code, _, err) = lines(&["--url", &format!("http://{free}"), "--state", "sleepy"], &[], &dir);
    assert_eq!(code, 2, "clap's usage error: {err}");
}

#[test]
fn lines_uses_basic_auth_from_a_password_file_or_the_environment() {
    let dir = std::env::temp_dir().join(format!("esim-it-lines-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(dir.join("web.yml"), format!("basic_auth_users:\n  ops: '{hash}'\n")).unwrap();
    std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
    std::fs::write(dir.join("wrong"), "guess\n").unwrap();
    let e = Exporter::spawn_in(dir.clone(), FLEET, &["--web.config.file", "web.yml"]);
    use base64::Engine;
    let token = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ops:s3cret"));
    e.wait_until("ready behind auth", |e| e.request("GET", "/-/ready", &[("authorization", &token)]).0 == 200);
    let url = format!("http://{}", e.addr);

    let (code, out, err) = lines(&["--url", &url, "--q", "good"], &[], &dir);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("/api/v1/lines: HTTP 401 Unauthorized: the exporter wants basic auth"), "{err}");
    let (code, out, err) = lines(&["--url", &url, "--q", "good", "--user", "ops", "--password-file", "pw"], &[], &dir);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().nth(1).is_some_and(|r| r.starts_with("good-1")), "{out}");
    let (code, out, err) =
        lines(&["--url", &url, "--q", "good", "--user", "ops"], &[("ESIM_PASSWORD", "s3cret")], &dir);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = lines(&["--url", &url, "--user", "ops", "--password-file", "wrong"], &[], &dir);
    assert_eq!(code, 2);
    assert!(err.contains("HTTP 401 Unauthorized: wrong --user or password"), "{err}");
    let (code, _, err) = lines(&["--url", &url, "--user", "ops"], &[], &dir);
    assert_eq!(code, 2);
    assert!(err.contains("--user needs a password: --password-file or ESIM_PASSWORD"), "{err}");
}

#[test]
fn lines_speaks_tls_to_an_exporter_with_its_own_ca() {
    let (e, pki) = crate::websec::tls_auth_exporter("lines-tls");
    let url = format!("https://127.0.0.1:{}", e.addr.port());
    let ca = pki.path("ca.pem");
    let env = [("ESIM_PASSWORD", "s3cret")];
    let (code, out, err) = lines(&["--url", &url, "--ca-file", &ca, "--user", "prom"], &env, &e.dir);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().nth(1).is_some_and(|r| r.starts_with("gate-1")), "{out}");
    // Another CA: the certificate is refused, and the message says why.
    let other = pki.path("other-ca.pem");
    let (code, _, err) = lines(&["--url", &url, "--ca-file", &other, "--user", "prom"], &env, &e.dir);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{url}/api/v1/lines: ")) && err.to_lowercase().contains("certificate"), "{err}");
    // Plain HTTP to the TLS port: Go's (and our) 400 answer, named.
    let (code, _, err) = lines(&["--url", &format!("http://{}", e.addr)], &env, &e.dir);
    assert_eq!(code, 2);
    assert!(err.contains("HTTP 400"), "{err}");
}

#[test]
fn one_line_answers_with_its_last_polls() {
    let e = Exporter::start("lines-history", FLEET);
    let polls = |name: &str| -> serde_json::Value {
        let (status, body) = e.get(&format!("/api/v1/line?line={name}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    };
    // A failing line backs off: it has fewer polls than a good one.
    let count = |name: &str| polls(name)["history"]["polls"].as_array().unwrap().len();
    e.wait_until("three polls of good-1, one of down-1", |_| count("good-1") >= 3 && count("down-1") >= 1);
    let good = polls("good-1");
    assert_eq!(good["line"]["name"], "good-1");
    assert_eq!(good["history"]["capacity"], 32);
    let list = good["history"]["polls"].as_array().unwrap();
    let times: Vec<f64> = list.iter().map(|p| p["timestamp"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {times:?}");
    for p in list {
        assert_eq!((p["success"].as_bool(), p["reason"].as_str()), (Some(true), None), "{p}");
        assert!(p["balance"].as_f64().is_some_and(|b| b > 0.0) && p["data_remaining_bytes"].as_u64().is_some(), "{p}");
    }
    let latest = list.last().unwrap()["balance"].as_f64().unwrap();
    let current = good["line"]["reading"]["balance"].as_f64().unwrap();
    assert!((latest - current).abs() < 0.01, "the last poll is the current reading: {latest} vs {current}");
    let down = polls("down-1");
    for p in down["history"]["polls"].as_array().unwrap() {
        assert_eq!((p["success"].as_bool(), p["reason"].as_str()), (Some(false), Some("unavailable")), "{p}");
        assert!(p["balance"].is_null(), "{p}");
    }
    assert_eq!(e.get("/api/v1/line?line=nobody").0, 404);
    let (status, body) = e.get("/api/v1/line");
    assert_eq!(status, 400);
    assert!(body.contains("missing `line`"), "{body}");
}

/// Runs `esim-exporter ARGS` in `dir` with stderr on a pseudo-terminal (stdout piped); exit
/// code, stdout, and what the terminal showed.
fn with_stderr_on_a_terminal(args: &[&str], dir: &Path) -> (i32, String, String) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two fresh descriptors into the two ints; the other arguments may be null.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let child = Command::new(BIN)
        .args(args)
        .env_remove("NO_COLOR")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("spawn esim-exporter");
    let reader = read_terminal(master);
    let out = child.wait_with_output().expect("wait");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), reader.join().unwrap())
}

/// Issue 16: `--once` shows a progress bar on a terminal and nothing of it through a pipe.
#[test]
fn once_shows_a_progress_bar_on_a_terminal_only() {
    let dir = std::env::temp_dir().join(format!("esim-it-once-progress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut fleet = String::from("accounts:\n  acme: {driver: demo, seed: 3}\nlines:\n");
    for i in 0..60 {
        fleet.push_str(&format!("  - {{name: l-{i:02}, account: acme}}\n"));
    }
    std::fs::write(dir.join("fleet.yaml"), fleet).unwrap();
    let args = ["--once", "--config.file", "fleet.yaml"];

    let (code, out, terminal) = with_stderr_on_a_terminal(&args, &dir);
    assert_eq!(code, 0, "{out}{terminal}");
    assert!(terminal.contains("/60 lines polled"), "a progress bar on the terminal:\n{terminal:?}");
    assert!(terminal.contains("60 lines polled, 0 failed"), "{terminal:?}");
    assert!(out.lines().count() > 60, "the table goes to stdout:\n{out}");

    let piped = Command::new(BIN).args(args).current_dir(&dir).output().expect("run --once");
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains("/60 lines polled") && !err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    assert!(err.contains("60 lines polled, 0 failed"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads what a pseudo-terminal shows until its last slave closes (the child's exit: EIO).
fn read_terminal(master: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(master);
        let mut shown = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&shown).into_owned()
    })
}
