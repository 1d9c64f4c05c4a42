//! The `ussd` driver against simulated modems (no hardware): the AT dialogue on an in-memory
//! pipe, the driver on a pseudo-terminal through the real serial code, the real binary polling
//! a pty modem (`/metrics` through promtool), ModemManager through python3-dbusmock on a
//! private dbus-daemon, and the bounded fuzz run of the reply decoder and parser.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use esim_exporter::clock::SystemClock;
use esim_exporter::config::{ByteSize, Config};
use esim_exporter::drivers::ussd::at::{AtError, Cusd, Dialogue};
use esim_exporter::drivers::ussd::codec;
use esim_exporter::drivers::{BuildContext, Driver, PollContext};
use esim_exporter::error::PollError;
use esim_exporter::reading::{Currency, Reading};
use tokio::io::DuplexStream;
use tokio::time::Instant;

use crate::support::repo;
use crate::support_modem::{self as sim, cusd, ucs2, Answer, PtyModem, Script, SharedLog};

fn within(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

async fn dialogue(script: Script) -> (Dialogue<DuplexStream>, SharedLog) {
    let (io, log) = sim::on_pipe(script);
    let mut d = Dialogue::new(io);
    d.init(within(5)).await.expect("init");
    (d, log)
}

fn texts(replies: &[Cusd], charset: Option<codec::Charset>) -> Vec<String> {
    replies.iter().map(|c| codec::decode(c.text.as_deref().unwrap_or(""), c.dcs, charset)).collect()
}

const WAIT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_gsm7_reply_after_ok_is_read_and_the_dialogue_is_as_documented() {
    let (mut d, log) =
        dialogue(Script::default().answer("*100#", Answer::After(vec![cusd(0, "Balance:227,50r", 15)]))).await;
    let replies = d.ussd("*100#", within(5), WAIT).await.unwrap();
    assert_eq!(texts(&replies, d.charset), ["Balance:227,50r"]);
    assert_eq!(d.charset, Some(codec::Charset::Text));
    assert_eq!(sim::commands(&log), ["ATE0", "AT", "AT+CSCS?", "AT+CUSD=1,\"*100#\",15"]);
}

#[tokio::test]
async fn a_ucs2_reply_decodes_by_its_dcs() {
    let reply = cusd(0, &ucs2("Баланс:296,02р"), 72);
    let (mut d, _) = dialogue(Script::default().answer("*100#", Answer::After(vec![reply]))).await;
    let replies = d.ussd("*100#", within(5), WAIT).await.unwrap();
    assert_eq!(texts(&replies, d.charset), ["Баланс:296,02р"]);
}

#[tokio::test]
async fn an_m2_answer_is_kept_and_the_release_wait_ends_it() {
    let (mut d, _) =
        dialogue(Script::default().answer("*100#", Answer::After(vec![cusd(2, "Balance:633,100r", 15)]))).await;
    let started = Instant::now();
    let replies = d.ussd("*100#", within(10), WAIT).await.unwrap();
    assert_eq!(replies, [Cusd { m: 2, text: Some("Balance:633,100r".into()), dcs: Some(15) }]);
    assert!(started.elapsed() < Duration::from_secs(3), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn a_release_notice_then_the_answer_yields_both() {
    let lines = vec![cusd(2, "Initiating Release", 15), cusd(0, &ucs2("Баланс: 55 р."), 72)];
    let (mut d, _) = dialogue(Script::default().answer("*100#", Answer::After(lines))).await;
    let replies = d.ussd("*100#", within(5), Duration::from_secs(3)).await.unwrap();
    assert_eq!(texts(&replies, d.charset), ["Initiating Release", "Баланс: 55 р."]);
}

#[tokio::test]
async fn silence_times_out_and_cancels_the_session() {
    let (mut d, log) = dialogue(Script::default().answer("*100#", Answer::Silence)).await;
    let started = Instant::now();
    let err = d.ussd("*100#", Instant::now() + Duration::from_millis(800), WAIT).await.unwrap_err();
    assert!(matches!(err, AtError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(sim::commands(&log).last().map(String::as_str), Some("AT+CUSD=2"));
}

#[tokio::test]
async fn cme_errors_are_rejections_with_their_meaning() {
    let (mut d, _) = dialogue(Script::default().answer("*100#", Answer::Fail("+CME ERROR: 30".into()))).await;
    let err = d.ussd("*100#", within(5), WAIT).await.unwrap_err();
    assert_eq!(err.to_string(), "AT+CUSD=1,\"*100#\",15 answered +CME ERROR: 30 (no network service)");
    let (mut d, _) = dialogue(Script::default().answer("*100#", Answer::Fail("ERROR".into()))).await;
    assert!(matches!(d.ussd("*100#", within(5), WAIT).await, Err(AtError::Rejected { .. })));
}

#[tokio::test]
async fn echo_that_ate0_cannot_switch_off_is_tolerated() {
    let script = Script { echo: true, refuse_ate0: true, ..Script::default() }
        .answer("*102#", Answer::After(vec![cusd(0, "Vash balans 121.20 r.", 15)]));
    let (mut d, _) = dialogue(script).await;
    let replies = d.ussd("*102#", within(5), WAIT).await.unwrap();
    assert_eq!(texts(&replies, d.charset), ["Vash balans 121.20 r."]);
}

#[tokio::test]
async fn bytes_dribbled_one_by_one_still_make_lines() {
    let script = Script { dribble: Some(Duration::from_millis(1)), ..Script::default() }
        .answer("*100#", Answer::After(vec![cusd(0, &ucs2("Баланс: 7 р."), 72)]));
    let (mut d, _) = dialogue(script).await;
    let replies = d.ussd("*100#", within(15), WAIT).await.unwrap();
    assert_eq!(texts(&replies, d.charset), ["Баланс: 7 р."]);
}

#[tokio::test]
async fn unsolicited_lines_and_garbage_are_ignored() {
    let script = Script { garbage: true, ..Script::default() }
        .answer("*105#", Answer::After(vec!["+CUSD: 0, \"OCTATOK 123.45 p.\", 15".into()]));
    let (mut d, _) = dialogue(script).await;
    let replies = d.ussd("*105#", within(5), WAIT).await.unwrap();
    assert_eq!(texts(&replies, d.charset), ["OCTATOK 123.45 p."]);
}

#[tokio::test]
async fn a_menu_answer_is_read_then_cancelled() {
    let (mut d, log) =
        dialogue(Script::default().answer("*100#", Answer::After(vec![cusd(1, "1>Balans 2>Pakety", 15)]))).await;
    let replies = d.ussd("*100#", within(5), WAIT).await.unwrap();
    assert_eq!(replies[0].m, 1);
    assert_eq!(sim::commands(&log).last().map(String::as_str), Some("AT+CUSD=2"));
}

#[tokio::test]
async fn cusd_4_and_a_bare_release_are_errors() {
    let (mut d, _) = dialogue(Script::default().answer("*100#", Answer::After(vec!["+CUSD: 4".into()]))).await;
    assert!(matches!(d.ussd("*100#", within(5), WAIT).await, Err(AtError::NotSupported)));
    let (mut d, _) = dialogue(Script::default().answer("*100#", Answer::After(vec!["+CUSD: 2".into()]))).await;
    assert!(matches!(d.ussd("*100#", within(5), WAIT).await, Err(AtError::Terminated)));
}

#[tokio::test]
async fn a_modem_that_blocks_until_the_network_answers_works_for_two_codes() {
    let script = Script::default()
        .answer("*100#", Answer::Before(vec![cusd(0, "Balance:10r", 15)]))
        .answer("*100*1#", Answer::Before(vec![cusd(0, "Internet 5 GB", 15)]));
    let (mut d, log) = dialogue(script).await;
    assert_eq!(texts(&d.ussd("*100#", within(5), WAIT).await.unwrap(), None), ["Balance:10r"]);
    assert_eq!(texts(&d.ussd("*100*1#", within(5), WAIT).await.unwrap(), None), ["Internet 5 GB"]);
    assert_eq!(sim::commands(&log).len(), 5);
}

#[tokio::test]
async fn a_modem_in_ucs2_charset_gets_the_code_in_ucs2_when_plain_is_refused() {
    let script = Script { charset: "UCS2", want_encoded: true, ..Script::default() }
        .answer("*100#", Answer::After(vec![cusd(0, &ucs2("Баланс:1р"), 15)]));
    let (mut d, log) = dialogue(script).await;
    let replies = d.ussd("*100#", within(5), WAIT).await.unwrap();
    assert_eq!(d.charset, Some(codec::Charset::Ucs2));
    assert_eq!(texts(&replies, d.charset), ["Баланс:1р"]);
    assert!(sim::commands(&log).contains(&"AT+CUSD=1,\"002A0031003000300023\",15".to_string()));
}

#[tokio::test]
async fn a_reply_spanning_lines_is_one_reply() {
    let line = "+CUSD: 0,\"Balance: 5r\r\nInternet: 2 GB\",15".to_string();
    let (mut d, _) = dialogue(Script::default().answer("*100#", Answer::After(vec![line]))).await;
    let replies = d.ussd("*100#", within(5), WAIT).await.unwrap();
    assert_eq!(texts(&replies, None), ["Balance: 5r\nInternet: 2 GB"]);
}

#[tokio::test]
async fn a_port_that_goes_away_is_closed_not_a_hang() {
    let (io, other) = tokio::io::duplex(64);
    drop(other);
    let mut d = Dialogue::new(io);
    assert!(matches!(d.init(within(5)).await, Err(AtError::Closed | AtError::Io(_))));
}

// --- the driver over a pseudo-terminal (tokio-serial, as in production) ---

fn config(yaml: &str) -> Config {
    esim_exporter::config::parse("ussd-test.yaml", yaml, esim_exporter::drivers::REGISTRY)
        .unwrap_or_else(|e| panic!("{e}"))
}

struct Built {
    config: Config,
    cx: BuildContext,
    drivers: Vec<Arc<dyn Driver>>,
}

fn build(yaml: &str) -> Built {
    let config = config(yaml);
    let cx = BuildContext::new(Arc::new(SystemClock));
    let drivers = config.lines.iter().map(|l| (l.account.driver.build)(&l.account, &cx).expect("build")).collect();
    Built { config, cx, drivers }
}

impl Built {
    async fn poll(&self, i: usize) -> (Result<Reading, PollError>, Vec<String>) {
        let line = &self.config.lines[i];
        let pcx = PollContext::new(line.timeout, self.cx.clock.clone());
        let result = self.drivers[i].poll(line, &pcx).await;
        (result, pcx.take_notes())
    }
}

fn gib(v: f64) -> ByteSize {
    ByteSize((v * 1024.0 * 1024.0 * 1024.0).round() as u64)
}

const PACKAGES: &str = "Остаток: Интернет 3,25 ГБ из 10 ГБ; 120 мин; SMS 50 шт. Действует до 05.12.26 23:59";

fn megafon_script() -> Script {
    Script::default()
        .answer("*100#", Answer::After(vec![cusd(0, &ucs2("Баланс: 120,50 р."), 72)]))
        .answer("*558#", Answer::After(vec![cusd(0, &ucs2(PACKAGES), 72)]))
}

#[tokio::test]
async fn the_driver_reads_balance_and_packages_through_a_serial_port() {
    let modem = PtyModem::start(megafon_script());
    let built = build(&format!(
        "lines:\n  - {{name: m1, driver: ussd, device: '{}', operator: megafon, timeout: 20s}}\n",
        modem.path
    ));
    let (reading, notes) = built.poll(0).await;
    let reading = reading.unwrap_or_else(|e| panic!("{e}: {notes:#?}"));
    let balance = reading.balance.expect("balance");
    assert_eq!((balance.amount, balance.currency), (120.5, Currency::RUB));
    assert_eq!(reading.data_remaining, Some(gib(3.25)));
    assert_eq!(reading.data_quota, Some(gib(10.0)));
    assert_eq!(reading.voice_remaining, Some(Duration::from_secs(120 * 60)));
    assert_eq!(reading.sms_remaining, Some(50));
    assert!(reading.quota_expiry.is_some());
    assert!(notes.iter().any(|n| n.contains("AT+CUSD=1,\"*558#\",15")), "{notes:#?}");
}

#[tokio::test]
async fn the_data_code_is_asked_on_its_own_interval_and_its_answer_kept() {
    let modem = PtyModem::start(megafon_script());
    let built = build(&format!(
        "lines:\n  - {{name: m1, driver: ussd, device: '{}', operator: megafon, timeout: 20s, poll_interval: 1m, data_interval: 1h}}\n",
        modem.path
    ));
    let first = built.poll(0).await.0.unwrap();
    let (second, notes) = built.poll(0).await;
    let second = second.unwrap();
    let asked: Vec<String> = modem.commands().into_iter().filter(|c| c.starts_with("AT+CUSD=1")).collect();
    assert_eq!(asked, ["AT+CUSD=1,\"*100#\",15", "AT+CUSD=1,\"*558#\",15", "AT+CUSD=1,\"*100#\",15"]);
    assert_eq!(second.data_remaining, first.data_remaining, "data stays visible between data polls");
    assert!(notes.iter().any(|n| n.contains("packages from the answer of")), "{notes:#?}");
}

#[tokio::test]
async fn a_stub_reply_is_a_bad_response_not_a_zero() {
    let stub = cusd(0, &ucs2("Запрос принят. Ожидайте SMS с информацией о балансе"), 72);
    let modem = PtyModem::start(Script::default().answer("*102#", Answer::After(vec![stub])));
    let built = build(&format!(
        "lines:\n  - {{name: b1, driver: ussd, device: '{}', operator: beeline, data_code: none, timeout: 20s}}\n",
        modem.path
    ));
    let err = built.poll(0).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "bad_response");
    assert!(err.to_string().contains("stub («запрос принят»)"), "{err}");
}

#[tokio::test]
async fn a_silent_network_times_out_within_the_deadline_and_cancels() {
    let modem = PtyModem::start(Script::default().answer("*100#", Answer::Silence));
    let built = build(&format!(
        "lines:\n  - {{name: s1, driver: ussd, device: '{}', operator: mts, timeout: 5s}}\n",
        modem.path
    ));
    let started = Instant::now();
    let err = built.poll(0).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "timeout", "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(modem.commands().contains(&"AT+CUSD=2".to_string()));
}

#[tokio::test]
async fn lines_sharing_a_modem_never_overlap_their_sessions() {
    let script = Script { delay: Duration::from_millis(150), ..megafon_script() }
        .answer("*100*1#", Answer::After(vec![cusd(0, "Internet 1 GB", 15)]));
    let modem = PtyModem::start(script);
    let built = build(&format!(
        "accounts:
  gw: {{driver: ussd, device: '{path}'}}
lines:
  - {{name: a, account: gw, operator: megafon, timeout: 20s}}
  - {{name: b, account: gw, operator: megafon, code: '*100#', data_code: '*100*1#', timeout: 20s}}
  - {{name: c, driver: ussd, device: '{path}', operator: megafon, data_code: none, timeout: 20s}}
",
        path = modem.path
    ));
    let (a, b, c) = tokio::join!(built.poll(0), built.poll(1), built.poll(2));
    for (r, notes) in [a, b, c] {
        r.unwrap_or_else(|e| panic!("{e}: {notes:#?}"));
    }
    let log = modem.log.lock().unwrap().clone();
    assert_eq!(log.commands.iter().filter(|c| c.starts_with("AT+CUSD=1")).count(), 5);
    assert_eq!(log.overlaps, 0, "{:#?}", log.commands);
}

#[tokio::test]
async fn a_missing_port_is_a_modem_error_and_an_unknown_operator_a_config_error() {
    let built = build("lines:\n  - {name: x, driver: ussd, device: /dev/nonexistent-ussd-port, operator: mts}\n");
    let err = built.poll(0).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "modem");
    assert!(err.to_string().contains("cannot open /dev/nonexistent-ussd-port"), "{err}");
    let built = build(
        "accounts:\n  gw: {driver: ussd, device: /dev/null, operator: vodafone}\nlines:\n  - {name: line-y, account: gw}\n",
    );
    let err = built.poll(0).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "config");
    assert!(err.to_string().contains("operator `vodafone` has no default USSD codes"), "{err}");
}

// --- the real binary ---

#[test]
fn the_exporter_shows_balance_and_data_from_a_simulated_modem() {
    let modem = PtyModem::start(megafon_script());
    let stub = cusd(0, &ucs2("Ваш запрос принят. Ответ придёт в SMS."), 72);
    let stubby = PtyModem::start(Script::default().answer("*102#", Answer::After(vec![stub])));
    let exporter = crate::binary::Exporter::start(
        "ussd",
        &format!(
            "global: {{poll_interval: 2s, timeout: 15s}}
lines:
  - name: modem-1
    driver: ussd
    device: '{}'
    operator: megafon
    labels: {{site: lab}}
  - name: modem-stub
    driver: ussd
    device: '{}'
    operator: beeline
    data_code: none
",
            modem.path, stubby.path
        ),
    );
    exporter.wait_until("the modem lines are polled", |e| {
        let m = e.metrics();
        m.contains("esim_data_remaining_bytes{line=\"modem-1\"")
            && m.lines().any(|l| {
                l.starts_with("esim_poll_failing{line=\"modem-stub\"") && l.contains("reason=\"bad_response\"")
            })
    });
    let metrics = exporter.metrics();
    crate::binary::promtool_check_metrics(&metrics);
    let value = |prefix: &str| -> f64 {
        let line =
            metrics.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("esim_balance{line=\"modem-1\""), 120.5);
    assert_eq!(value("esim_data_remaining_bytes{line=\"modem-1\""), 3_489_660_928.0);
    assert_eq!(value("esim_data_quota_bytes{line=\"modem-1\""), 10_737_418_240.0);
    assert_eq!(value("esim_sms_remaining{line=\"modem-1\""), 50.0);
    assert!(metrics.contains("operator=\"megafon\""));
    assert!(!metrics.contains("esim_balance{line=\"modem-stub\""), "a stub never becomes a balance");
    assert!(exporter.log().contains("stub («запрос принят»)"), "the reason is in the log");
}

// --- ModemManager through python3-dbusmock ---

/// A private dbus-daemon with python3-dbusmock playing ModemManager (our template).
struct MmMock {
    address: String,
    log: PathBuf,
    children: Vec<Child>,
}

impl MmMock {
    async fn start(name: &str, parameters: &str) -> MmMock {
        let dir = std::env::temp_dir().join(format!("esim-mm-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is required (Debian package `dbus-daemon`); the test command installs it");
        let mut address = String::new();
        {
            use std::io::BufRead;
            let stdout = daemon.stdout.take().unwrap();
            std::io::BufReader::new(stdout).read_line(&mut address).unwrap();
        }
        let address = address.trim().to_string();
        let log = dir.join("calls.log");
        let mock = Command::new("/usr/bin/python3")
            .args(["-m", "dbusmock", "--template"])
            .arg(repo().join("tests/fixtures/ussd/modemmanager_mock.py"))
            .arg("-l")
            .arg(&log)
            .args(["-p", parameters])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-dbusmock is required (Debian package `python3-dbusmock`)");
        let mut this = MmMock { address, log, children: vec![mock, daemon] };
        this.wait_for_modemmanager().await;
        this
    }

    async fn wait_for_modemmanager(&mut self) {
        let started = std::time::Instant::now();
        loop {
            let owned = async {
                let conn = zbus::connection::Builder::address(self.address.as_str()).ok()?.build().await.ok()?;
                let dbus = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
                let name = zbus::names::BusName::try_from("org.freedesktop.ModemManager1").ok()?;
                dbus.name_has_owner(name).await.ok()
            }
            .await;
            if owned == Some(true) {
                return;
            }
            if let Some(Ok(Some(status))) = self.children.first_mut().map(Child::try_wait) {
                panic!("python3-dbusmock exited ({status}); is the Debian package python3-dbusmock installed?");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the ModemManager mock did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "lines:\n  - {{name: mm1, driver: ussd, backend: modemmanager, dbus_address: '{}', operator: megafon, timeout: 6s{extra}}}\n",
            self.address
        )
    }
}

impl Drop for MmMock {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test]
async fn modemmanager_replies_become_a_reading() {
    let mock = MmMock::start(
        "ok",
        &format!(
            r#"{{"replies": {{"*100#": {{"reply": "Баланс: 77,70 р."}}, "*558#": {{"reply": "{}"}}}}}}"#,
            ucs2(PACKAGES)
        ),
    )
    .await;
    let built = build(&mock.config(""));
    let (reading, notes) = built.poll(0).await;
    let reading = reading.unwrap_or_else(|e| panic!("{e}: {notes:#?}"));
    assert_eq!(reading.balance.map(|b| b.amount), Some(77.7));
    assert_eq!(reading.data_remaining, Some(gib(3.25)), "a reply left in UCS2 hex is decoded");
    assert!(mock.calls().contains("Initiate \"*558#\""), "{}", mock.calls());
    assert!(!mock.calls().contains("Cancel"), "{}", mock.calls());
}

#[tokio::test]
async fn modemmanager_sessions_left_waiting_for_the_user_are_cancelled() {
    let mock = MmMock::start("menu", r#"{"replies": {"*100#": {"reply": "Balance:5r 1>More", "state": 3}}}"#).await;
    let built = build(&mock.config(", data_code: none"));
    assert_eq!(built.poll(0).await.0.unwrap().balance.map(|b| b.amount), Some(5.0));
    assert!(mock.calls().contains("Cancel"), "{}", mock.calls());
}

#[tokio::test]
async fn terminated_by_network_falls_back_to_the_at_port() {
    let mock = MmMock::start(
        "fallback",
        r#"{"replies": {"*100#": {"error": "USSD terminated by network", "name": "org.freedesktop.ModemManager1.Error.Core.Failed"}}}"#,
    )
    .await;
    let modem =
        PtyModem::start(Script::default().answer("*100#", Answer::After(vec![cusd(2, &ucs2("Баланс: 12,00 р."), 72)])));
    let built = build(&mock.config(&format!(", data_code: none, device: '{}'", modem.path)));
    let (reading, notes) = built.poll(0).await;
    let reading = reading.unwrap_or_else(|e| panic!("{e}: {notes:#?}"));
    assert_eq!(reading.balance.map(|b| b.amount), Some(12.0));
    assert!(notes.iter().any(|n| n.contains("asking again on the AT port")), "{notes:#?}");
    assert!(modem.commands().contains(&"AT+CUSD=1,\"*100#\",15".to_string()));

    let built = build(&mock.config(", data_code: none"));
    let err = built.poll(0).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "modem");
    assert!(err.to_string().contains("terminated by network") && err.to_string().contains("set `device:`"), "{err}");
}

#[tokio::test]
async fn modemmanager_timeouts_cancel_and_errors_map_to_reasons() {
    let mock = MmMock::start(
        "errors",
        r#"{"replies": {"*100#": {"hang": 6, "reply": "late"},
                        "*101#": {"error": "there is already an ongoing USSD operation"}}}"#,
    )
    .await;
    let built = build(&mock.config(", data_code: none"));
    let started = Instant::now();
    let err = built.poll(0).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "timeout", "{err}");
    assert!(started.elapsed() < Duration::from_secs(6));
    let built = build(&mock.config(", code: '*101#', data_code: none"));
    let err = built.poll(0).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "modem");
    assert!(err.to_string().contains("another USSD operation"), "{err}");
    let built = build(&format!(
        "lines:\n  - {{name: m7, driver: ussd, backend: modemmanager, modem: 7, dbus_address: '{}', operator: mts, timeout: 6s}}\n",
        mock.address
    ));
    let err = built.poll(0).await.0.unwrap_err();
    assert_eq!(err.reason().as_str(), "modem", "{err}");
    // The hung Initiate answers at last; the cancel queued behind it is then logged.
    let waited = std::time::Instant::now();
    while !mock.calls().contains("Cancel") {
        assert!(waited.elapsed() < Duration::from_secs(15), "no Cancel after the timeout:\n{}", mock.calls());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- fuzzing on the stable toolchain ---

/// Mutates a corpus of modem output (the reply table as text, as +CUSD lines in UCS2 hex and
/// packed septets) and feeds it to `fuzz_reply` for `ESIM_FUZZ_SECONDS` (default 5). A panic
/// prints the input in hex. Inputs that give a result not seen before join the corpus.
#[test]
fn fuzz_reply_decoder_and_parser() {
    use esim_exporter::drivers::ussd::fuzz_reply;
    let seconds: u64 = std::env::var("ESIM_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let seed: u64 = std::env::var("ESIM_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let table = std::fs::read_to_string(repo().join("tests/fixtures/ussd/replies.txt")).unwrap();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for line in table.lines() {
        if let Some(text) = line.strip_prefix("text: ") {
            corpus.push(text.as_bytes().to_vec());
            corpus.push(format!("{}\r\n", cusd(0, &ucs2(text), 72)).into_bytes());
            let septets: Vec<u8> = text.bytes().filter(u8::is_ascii).collect();
            let packed: String = codec::pack_septets(&septets).iter().map(|b| format!("{b:02X}")).collect();
            corpus.push(format!("\r\n{}\r\nOK\r\n", cusd(2, &packed, 15)).into_bytes());
        } else if let Some(raw) = line.strip_prefix("cusd: ") {
            corpus.push(raw.as_bytes().to_vec());
        }
    }
    const TOKENS: &[&str] = &[
        "+CUSD: ",
        "\"",
        ",72",
        ",15",
        ",68",
        ",17",
        "\r\n",
        "04",
        "0440",
        "00",
        "Баланс",
        "минус",
        "−",
        " р.",
        "руб",
        "ГБ",
        "МБ",
        " из ",
        "до ",
        "31.12.99 23:59",
        "мин",
        "SMS",
        "шт",
        "безлимит",
        "запрос принят",
        "9999999999999999999999",
        ",",
        ".",
        "1B",
        "FF",
        "D83D",
        "DC00",
    ];
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seen = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let started = std::time::Instant::now();
    let mut execs: u64 = 0;
    while std::time::Instant::now() < deadline {
        for _ in 0..64 {
            let mut input = corpus[(next() as usize) % corpus.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = if input.is_empty() { 0 } else { (next() as usize) % (input.len() + 1) };
                match next() % 7 {
                    0 if !input.is_empty() => {
                        let i = at.min(input.len() - 1);
                        input[i] ^= 1 << (next() % 8);
                    }
                    1 if !input.is_empty() => {
                        let i = at.min(input.len() - 1);
                        input[i] = [0u8, 0x7f, 0x80, 0xff, b'"', b',', b'\r', b'0'][(next() % 8) as usize];
                    }
                    2 => {
                        let token = TOKENS[(next() as usize) % TOKENS.len()].as_bytes();
                        input.splice(at..at, token.iter().copied());
                    }
                    3 if !input.is_empty() => {
                        let end = (at + 1 + (next() as usize) % 16).min(input.len());
                        input.drain(at.min(end)..end);
                    }
                    4 => {
                        let other = &corpus[(next() as usize) % corpus.len()];
                        let from = if other.is_empty() { 0 } else { (next() as usize) % other.len() };
                        input.splice(at..at, other[from..].iter().copied());
                    }
                    5 => input.truncate(at),
                    _ => {
                        let end = (at + (next() as usize) % 32).min(input.len());
                        let copy = input[at..end].to_vec();
                        input.splice(end..end, copy);
                    }
                }
            }
            // Modem lines are at most a few hundred bytes; longer inputs only slow the search.
            input.truncate(1024);
            let outcome = std::panic::catch_unwind(|| fuzz_reply(&input));
            execs += 1;
            match outcome {
                Ok(found) => {
                    if seen.insert((found, input.len() / 128)) && corpus.len() < 2048 {
                        corpus.push(input);
                    }
                }
                Err(_) => panic!(
                    "fuzz_reply panicked (seed {seed}) on input (hex): {}",
                    input.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fuzz_reply: {execs} executions in {elapsed:.1} s ({:.0}/s), corpus {}, seed {seed}",
        execs as f64 / elapsed,
        corpus.len()
    );
    assert!(execs > 0);
}
