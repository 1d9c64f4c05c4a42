//! `ussd`: balance and remaining packages by USSD (`*100#`) on a modem the exporter can reach,
//! over raw AT commands on a serial port (`at.rs`) or ModemManager on D-Bus
//! (`modemmanager.rs`); replies decoded by `<dcs>` (`codec.rs`) and parsed (`parse.rs`).
//!
//! **One USSD session per modem at a time.** Lines reach a modem through their account's
//! driver, and several accounts (each driverless line is one) may name the same device. So
//! the lock is not the driver's but the modem's: `build` takes one shared [`Modem`] per
//! device (or ModemManager object) from the framework's session store
//! (`BuildContext::sessions`), keyed by the modem instead of the account. The store holds
//! sessions weakly and a reload builds the new drivers before dropping the old ones, so the
//! modem — its lock, whether a session was left open, and the per-line data cache below —
//! survives reloads, and goes when no driver names the device any more.
//!
//! **Two codes, two intervals.** Balance is asked on every poll (the line's `poll_interval`);
//! remaining packages (`data_code`) only when the last answer is older than `data_interval`.
//! The store keeps one reading per line, so a poll that did not ask the data code re-attaches
//! the last data answer from the modem's per-line cache (keyed by line name); a failed data
//! request keeps the cached answer while it is younger than twice `data_interval`.

pub mod at;
pub mod codec;
pub mod modemmanager;
pub mod parse;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use tokio::time::Instant;

use self::at::{AtError, Cusd, Dialogue};
use self::modemmanager::{MmError, MmSession};
use self::parse::{Dates, Packages};
use super::contract::{BoxFuture, BuildContext, BuildError, Driver, DriverSpec, PollContext, RequestObserver};
use crate::config::fields::Fields;
use crate::config::raw::Value;
use crate::drivers::contract::{Account, DriverOptions, Line};
use crate::error::{PollError, Reason};
use crate::reading::{Currency, Money, Reading};

pub static SPEC: DriverSpec = DriverSpec {
    name: "ussd",
    summary: "USSD codes (*100#) on a modem over AT commands or ModemManager; no operator API needed",
    example: r#"
lines:
  - name: router-7
    driver: ussd
    device: /dev/ttyUSB2       # the modem's AT port
    baud_rate: 115200
    operator: mts              # default codes: *100# (balance), *100*1# (packages)
    data_interval: 6h          # ask for packages less often than for the balance
"#,
    aliases: &[],
    needs_account: false,
    speaks_http: false,
    can_discover: false,
    default_operator: "unknown",
    default_rate_limit: None,
    account_options,
    line_options,
    build,
};

/// Time kept in hand before the poll's deadline to cancel an open session (`AT+CUSD=2`).
const CANCEL_MARGIN: Duration = Duration::from_millis(2000);
/// A second code is not started with less time than this left.
const MIN_SESSION: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Serial,
    ModemManager,
}

/// Modem-level keys (on the account, or on a driverless line).
#[derive(Clone, Debug)]
pub struct ModemOptions {
    pub backend: Backend,
    /// The AT port; for `modemmanager`, the fallback port ModemManager does not use.
    pub device: Option<String>,
    pub baud_rate: u32,
    /// ModemManager's modem object path.
    pub modem: String,
    pub dbus_address: String,
    /// After `+CUSD: 2` with text, how long to wait for an answer that may follow.
    pub release_wait: Duration,
}

/// A USSD code, or none (`none` in the config), or the operator's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    Default,
    Off,
    Code(String),
}

/// Line-level keys.
#[derive(Clone, Debug)]
pub struct LineOptions {
    pub code: Code,
    pub data_code: Code,
    pub data_interval: Option<Duration>,
    pub balance_pattern: Option<Regex>,
    pub data_pattern: Option<parse::DataPattern>,
    pub currency: Currency,
    /// Zone of dates in replies, seconds east of UTC.
    pub utc_offset_secs: i32,
}

fn account_options(f: &mut Fields<'_>) -> DriverOptions {
    let backend = match f.node("backend").map(|n| n.pos) {
        Some(pos) => match f.string("backend").as_deref() {
            Some("serial") | None => Backend::Serial,
            Some("modemmanager") => Backend::ModemManager,
            Some(other) => {
                f.error("backend", pos, format!("unknown USSD backend `{other}`; known: serial, modemmanager"));
                Backend::Serial
            }
        },
        None => Backend::Serial,
    };
    let device = match backend {
        Backend::Serial => f.required_string("device"),
        Backend::ModemManager => f.string("device"),
    };
    if let (Some(device), Some(pos)) = (&device, f.node("device").map(|n| n.pos)) {
        if device.trim().is_empty() || device.contains('\0') {
            f.error("device", pos, "the device path is empty");
        }
    }
    let baud_rate = f.u64_in("baud_rate", 300, 4_000_000).unwrap_or(115_200) as u32;
    let modem = match (f.node("modem").map(|n| n.pos), f.string("modem")) {
        (Some(pos), Some(spec)) => match modemmanager::modem_path(&spec) {
            Ok(path) => path,
            Err(e) => {
                f.error("modem", pos, e);
                String::new()
            }
        },
        _ => format!("{}0", modemmanager::MODEM_PREFIX),
    };
    if backend == Backend::Serial {
        if let Some(pos) = f.node("modem").map(|n| n.pos) {
            f.error("modem", pos, "`modem` is for `backend: modemmanager`; the serial backend uses `device`");
        }
    }
    let dbus_address = f.string("dbus_address").unwrap_or_else(|| modemmanager::SYSTEM_BUS.to_string());
    let release_wait = f.duration("release_wait").unwrap_or(Duration::from_secs(3));
    DriverOptions(Arc::new(ModemOptions { backend, device, baud_rate, modem, dbus_address, release_wait }))
}

fn line_options(f: &mut Fields<'_>) -> DriverOptions {
    let code = take_code(f, "code");
    let data_code = take_code(f, "data_code");
    if code == Code::Off && data_code == Code::Off {
        if let Some(pos) = f.node("code").map(|n| n.pos) {
            f.error("code", pos, "both `code` and `data_code` are `none`: the line would ask nothing");
        }
    }
    // The operator label picks the default codes; when the line itself names one we do not
    // know, say so now rather than at every poll.
    if code == Code::Default {
        if let Some(node) = f.node("operator") {
            if let Value::Str(name) = &node.value {
                if parse::operator(name).is_none() {
                    f.error("operator", node.pos, no_codes_message(name));
                }
            }
        }
    }
    let data_interval = f.duration("data_interval");
    let balance_pattern = pattern(f, "balance_pattern", parse::balance_pattern);
    let data_pattern = pattern(f, "data_pattern", parse::data_pattern);
    let currency = match f.node("currency").map(|n| n.pos) {
        Some(pos) => {
            let code = f.string("currency").unwrap_or_default();
            Currency::parse(&code).unwrap_or_else(|| {
                f.error("currency", pos, format!("`{code}` is not an ISO 4217 currency code (e.g. RUB, USD, EUR)"));
                Currency::RUB
            })
        }
        None => Currency::RUB,
    };
    let utc_offset_secs = match f.node("utc_offset").map(|n| n.pos) {
        Some(pos) => {
            let text = f.string("utc_offset").unwrap_or_default();
            parse_utc_offset(&text).unwrap_or_else(|| {
                f.error("utc_offset", pos, format!("`{text}` is not a UTC offset such as +03:00 or -05:30"));
                0
            })
        }
        None => 3 * 3600,
    };
    DriverOptions(Arc::new(LineOptions {
        code,
        data_code,
        data_interval,
        balance_pattern,
        data_pattern,
        currency,
        utc_offset_secs,
    }))
}

fn no_codes_message(operator: &str) -> String {
    let known: Vec<&str> = parse::OPERATORS.iter().map(|o| o.name).collect();
    format!(
        "operator `{operator}` has no default USSD codes (known: {}); set `code:` (and `data_code:`)",
        known.join(", ")
    )
}

fn take_code(f: &mut Fields<'_>, key: &'static str) -> Code {
    let Some(pos) = f.node(key).map(|n| n.pos) else {
        return Code::Default;
    };
    let Some(text) = f.string(key) else {
        return Code::Default;
    };
    let text = text.trim();
    if text == "none" {
        return Code::Off;
    }
    // The code goes inside AT+CUSD="..."; anything but USSD characters could break out of it.
    if text.is_empty() || text.len() > 40 || !text.chars().all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | '+')) {
        f.error(key, pos, format!("`{text}` is not a USSD code (digits, `*`, `#`, `+`; e.g. *100#), nor `none`"));
        return Code::Default;
    }
    Code::Code(text.to_string())
}

fn pattern<T>(f: &mut Fields<'_>, key: &'static str, compile: fn(&str) -> Result<T, String>) -> Option<T> {
    let pos = f.node(key).map(|n| n.pos)?;
    let source = f.string(key)?;
    match compile(&source) {
        Ok(p) => Some(p),
        Err(e) => {
            f.error(key, pos, e);
            None
        }
    }
}

/// `+03:00`, `-05:30`, `+3`, `3`, `UTC+3`.
fn parse_utc_offset(text: &str) -> Option<i32> {
    let t = text.trim();
    let t = t.strip_prefix("UTC").or_else(|| t.strip_prefix("GMT")).unwrap_or(t);
    let (sign, rest) = match t.chars().next()? {
        '+' => (1, &t[1..]),
        '-' | '−' => (-1, &t[t.chars().next()?.len_utf8()..]),
        _ => (1, t),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
        None if rest.len() == 4 => (rest[..2].parse().ok()?, rest[2..].parse().ok()?),
        None => (rest.parse().ok()?, 0),
    };
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}

fn build(account: &Account, cx: &BuildContext) -> Result<Arc<dyn Driver>, BuildError> {
    let options = account.options.get::<ModemOptions>().cloned().ok_or_else(|| BuildError {
        driver: "ussd",
        account: account.name.clone(),
        reason: "modem options missing".into(),
    })?;
    let key = match (&options.backend, &options.device) {
        (Backend::Serial, Some(device)) | (Backend::ModemManager, Some(device)) => format!("tty:{device}"),
        (_, None) => format!("mm:{}:{}", options.dbus_address, options.modem),
    };
    let modem = cx.sessions.get_or_create("ussd", &key, 0, || Modem::new(&key));
    Ok(Arc::new(Ussd { modem, options, account: account.label().to_string(), requests: cx.requests.clone() }))
}

/// The state of one physical modem, shared by every driver that names it.
#[derive(Debug)]
pub struct Modem {
    pub key: String,
    state: tokio::sync::Mutex<ModemState>,
}

#[derive(Debug, Default)]
struct ModemState {
    /// A request was sent and its session not seen closed (the poll was dropped mid-way).
    session_open: bool,
    /// The last packages answer per line name.
    data: HashMap<String, CachedData>,
}

#[derive(Clone, Debug)]
struct CachedData {
    at: Instant,
    packages: Packages,
}

impl Modem {
    fn new(key: &str) -> Modem {
        Modem { key: key.to_string(), state: tokio::sync::Mutex::new(ModemState::default()) }
    }
}

struct Ussd {
    modem: Arc<Modem>,
    options: ModemOptions,
    /// The `account` label of `esim_operator_requests_total` (empty for a driverless line).
    account: String,
    requests: Arc<dyn RequestObserver>,
}

impl Driver for Ussd {
    fn poll<'a>(&'a self, line: &'a Line, cx: &'a PollContext) -> BoxFuture<'a, Result<Reading, PollError>> {
        Box::pin(self.poll_line(line, cx))
    }
}

/// The texts one request brought back, decoded, best first.
type Texts = Vec<String>;

impl Ussd {
    async fn poll_line(&self, line: &Line, cx: &PollContext) -> Result<Reading, PollError> {
        let options = line
            .options
            .get::<LineOptions>()
            .ok_or_else(|| PollError::Config("ussd line options missing (line not built by the ussd driver)".into()))?;
        let operator = parse::operator(&line.operator);
        let pick = |code: &Code, default: fn(&parse::OperatorCodes) -> &'static str| match code {
            Code::Off => None,
            Code::Code(c) => Some(c.clone()),
            Code::Default => operator.map(|o| default(o).to_string()),
        };
        let balance_code = pick(&options.code, |o| o.balance_code);
        let data_code = pick(&options.data_code, |o| o.data_code);
        if balance_code.is_none() && options.code != Code::Off {
            return Err(PollError::Config(no_codes_message(&line.operator)));
        }
        let until = if cx.deadline.saturating_duration_since(Instant::now()) > CANCEL_MARGIN * 2 {
            cx.deadline - CANCEL_MARGIN
        } else {
            cx.deadline
        };
        let timeout = || PollError::Timeout(cx.timeout);

        let Ok(mut state) = tokio::time::timeout_at(until, self.modem.state.lock()).await else {
            cx.note(format!("modem {} stayed busy with another line's USSD session", self.modem.key));
            return Err(timeout());
        };
        let data_interval = options.data_interval.unwrap_or(line.poll_interval);
        let cached = state.data.get(&line.name).cloned();
        let data_due = data_code.is_some()
            && cached.as_ref().is_none_or(|c| c.at.elapsed() + line.poll_interval / 2 >= data_interval);
        let dates = Dates { now: cx.clock.now(), utc_offset_secs: options.utc_offset_secs };

        let mut session = Session::new(&self.options);
        let balance = match &balance_code {
            Some(code) => {
                let asked = self.ask(&mut session, code, until, &mut state, cx).await;
                Some(asked.and_then(|texts| interpret_balance(&texts, options, dates)))
            }
            None => None,
        };
        // After a modem or network failure the second code would only fail the same way.
        let balance_broken = matches!(&balance, Some(Err(e)) if e.reason() != Reason::BadResponse);
        let data = match (&data_code, data_due) {
            (Some(_), true) if balance_broken => None,
            (Some(code), true) if until.saturating_duration_since(Instant::now()) >= MIN_SESSION => {
                let asked = self.ask(&mut session, code, until, &mut state, cx).await;
                Some(asked.and_then(|texts| interpret_packages(&texts, options, dates)))
            }
            (Some(_), true) => {
                cx.note("no time left for the data code in this poll");
                Some(Err(timeout()))
            }
            _ => None,
        };
        drop(session);

        if let Some(Ok(packages)) = &data {
            state.data.insert(line.name.clone(), CachedData { at: Instant::now(), packages: packages.clone() });
        }
        let packages = match data {
            Some(Ok(p)) => Some(p),
            None if data_code.is_none() => None,
            None => cached.map(|c| {
                cx.note(format!(
                    "packages from the answer of {} ago",
                    humantime::format_duration(secs(c.at.elapsed()))
                ));
                c.packages
            }),
            Some(Err(e)) => {
                // Only a failed balance, or a line that asks nothing else, fails the poll.
                if !matches!(balance, Some(Ok(_))) {
                    return Err(balance.and_then(Result::err).unwrap_or(e));
                }
                tracing::warn!(line = %line.name, reason = e.reason().as_str(), "ussd data code failed: {e}");
                cx.note(format!("data code failed ({e}); keeping the previous answer if recent"));
                cached.filter(|c| c.at.elapsed() < data_interval * 2).map(|c| c.packages)
            }
        };
        let (amount, from_balance_reply) = match balance {
            // Figures in a balance reply count only for a line without a data code: with one,
            // they are more likely an advert ("Интернет 5 ГБ за 200 р") than the line's own.
            Some(Ok((amount, extra))) if data_code.is_none() => (Some(amount), extra),
            Some(Ok((amount, _))) => (Some(amount), Packages::default()),
            Some(Err(e)) => return Err(e),
            None => (None, Packages::default()),
        };
        Ok(reading(amount.map(|a| Money { amount: a, currency: options.currency }), packages, from_balance_reply))
    }
}

impl Ussd {
    /// One USSD request, counted in `esim_operator_requests_total{code}` as `ok` or the
    /// reason it failed.
    async fn ask(
        &self,
        session: &mut Session<'_>,
        code: &str,
        until: Instant,
        state: &mut ModemState,
        cx: &PollContext,
    ) -> Result<Texts, PollError> {
        let started = Instant::now();
        let result = session.ask(code, until, state, cx).await;
        let word = match &result {
            Ok(_) => "ok",
            Err(e) => e.reason().as_str(),
        };
        self.requests.observe_request(&self.account, SPEC.name, word, started.elapsed());
        result
    }
}

fn secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// The reading from the parts; package figures from the data answer win over any the balance
/// reply carried (Yota's `*101#` tells both).
fn reading(balance: Option<Money>, packages: Option<Packages>, from_balance: Packages) -> Reading {
    let p = packages.unwrap_or_default();
    let data_from_balance = p.data_remaining.is_none() && !p.unlimited_data;
    Reading {
        balance,
        data_remaining: p.data_remaining.or(if data_from_balance { from_balance.data_remaining } else { None }),
        data_quota: p.data_quota.or(if data_from_balance { from_balance.data_quota } else { None }),
        voice_remaining: p.voice_remaining.or(from_balance.voice_remaining),
        sms_remaining: p.sms_remaining.or(from_balance.sms_remaining),
        quota_expiry: p.quota_expiry.or(from_balance.quota_expiry),
        plan: None,
    }
}

/// The balance from the first text that has one; the same reply's package figures, if any.
pub fn interpret_balance(texts: &[String], o: &LineOptions, dates: Dates) -> Result<(f64, Packages), PollError> {
    for text in texts {
        let amount = match &o.balance_pattern {
            Some(p) => parse::balance_with(p, text),
            None if parse::stub_phrase(text).is_some() && !parse::has_balance_word_amount(text) => None,
            None => parse::balance(text),
        };
        if let Some(amount) = amount {
            let extra = if parse::has_package_words(text) { parse::packages(text, dates) } else { Packages::default() };
            return Ok((amount, extra));
        }
    }
    Err(no_value(texts, "balance", o.balance_pattern.as_ref().map(|_| "balance_pattern")))
}

/// Remaining packages from the first text that has any (or says the data is unlimited).
pub fn interpret_packages(texts: &[String], o: &LineOptions, dates: Dates) -> Result<Packages, PollError> {
    for text in texts {
        if parse::stub_phrase(text).is_some() && parse::packages(text, dates).data_remaining.is_none() {
            continue;
        }
        let mut p = parse::packages(text, dates);
        if let Some(pattern) = &o.data_pattern {
            match parse::packages_with(pattern, text) {
                Some(custom) => {
                    p.data_remaining = custom.data_remaining;
                    p.data_quota = custom.data_quota;
                }
                None if p.unlimited_data => {
                    p.data_remaining = None;
                    p.data_quota = None;
                }
                None => continue,
            }
        }
        if !p.is_empty() {
            return Ok(p);
        }
    }
    Err(no_value(texts, "remaining packages", o.data_pattern.as_ref().map(|_| "data_pattern")))
}

/// The `bad_response` for a reply without the value: a stub names its phrase.
fn no_value(texts: &[String], what: &str, pattern: Option<&str>) -> PollError {
    let shown = texts.iter().map(|t| format!("«{}»", parse::excerpt(t))).collect::<Vec<_>>().join(" then ");
    if let Some(phrase) = texts.iter().find_map(|t| parse::stub_phrase(t)) {
        return PollError::BadResponse(format!(
            "the operator sent a stub («{phrase}») instead of the {what}; the answer may come by SMS: {shown}"
        ));
    }
    match pattern {
        Some(key) => PollError::BadResponse(format!("`{key}` did not match the USSD reply {shown}")),
        None if texts.is_empty() => PollError::BadResponse(format!("empty USSD reply (no {what})")),
        None => PollError::BadResponse(format!("no {what} in the USSD reply {shown}")),
    }
}

/// Orders decoded replies: the answers (`m` 0 or 1) before release notices (`m` 2).
fn texts_of(replies: &[Cusd], charset: Option<codec::Charset>) -> Texts {
    let decode = |c: &Cusd| c.text.as_deref().map(|t| codec::decode(t, c.dcs, charset)).filter(|t| !t.is_empty());
    let answers = replies.iter().filter(|c| c.m != 2).filter_map(decode);
    let notices = replies.iter().filter(|c| c.m == 2).filter_map(decode);
    answers.chain(notices).collect()
}

/// The open channel to the modem during one poll, opened on first use.
struct Session<'o> {
    options: &'o ModemOptions,
    serial: Option<Dialogue<tokio_serial::SerialStream>>,
    mm: Option<MmSession>,
}

impl<'o> Session<'o> {
    fn new(options: &'o ModemOptions) -> Session<'o> {
        Session { options, serial: None, mm: None }
    }

    async fn ask(
        &mut self,
        code: &str,
        until: Instant,
        state: &mut ModemState,
        cx: &PollContext,
    ) -> Result<Texts, PollError> {
        match self.options.backend {
            Backend::Serial => self.ask_serial(code, until, state, cx).await,
            Backend::ModemManager => match self.ask_mm(code, until, cx).await {
                Ok(texts) => Ok(texts),
                Err(Fallback(reason)) => match &self.options.device {
                    Some(device) => {
                        cx.note(format!("{reason}; asking again on the AT port {device}"));
                        self.ask_serial(code, until, state, cx).await
                    }
                    None => Err(PollError::Modem(format!(
                        "{reason}; set `device:` to an AT port ModemManager does not use to read such replies"
                    ))),
                },
                Err(Failed(e)) => Err(e),
            },
        }
    }

    async fn ask_serial(
        &mut self,
        code: &str,
        until: Instant,
        state: &mut ModemState,
        cx: &PollContext,
    ) -> Result<Texts, PollError> {
        let device = self.options.device.as_deref().unwrap_or_default();
        if self.serial.is_none() {
            let port = open_port(device, self.options.baud_rate)?;
            let mut dialogue = Dialogue::new(port);
            let init = dialogue.init(until).await;
            flush_transcript(&mut dialogue, cx);
            init.map_err(|e| at_error(e, device, cx))?;
            if state.session_open {
                cx.note("cancelling the USSD session a previous poll left open");
                dialogue.cancel().await;
                state.session_open = false;
            }
            self.serial = Some(dialogue);
        }
        let Some(dialogue) = self.serial.as_mut() else {
            return Err(PollError::Modem("internal: no dialogue".into()));
        };
        state.session_open = true;
        let result = dialogue.ussd(code, until, self.options.release_wait).await;
        flush_transcript(dialogue, cx);
        if !matches!(result, Err(AtError::Io(_) | AtError::Closed)) {
            state.session_open = false;
        }
        let replies = result.map_err(|e| at_error(e, device, cx))?;
        Ok(texts_of(&replies, dialogue.charset))
    }

    async fn ask_mm(&mut self, code: &str, until: Instant, cx: &PollContext) -> Result<Texts, MmOutcome> {
        if self.mm.is_none() {
            let session = MmSession::connect(&self.options.dbus_address, &self.options.modem, until)
                .await
                .map_err(|e| Failed(mm_error(e, cx)))?;
            self.mm = Some(session);
        }
        let Some(mm) = self.mm.as_ref() else {
            return Err(Failed(PollError::Modem("internal: no ModemManager session".into())));
        };
        cx.note(format!("ModemManager Initiate({code}) on {}", self.options.modem));
        match mm.initiate(code, until).await {
            Ok(reply) => {
                let text = modemmanager::reply_text(&reply);
                cx.note(format!("reply: {}", parse::excerpt(&text)));
                if modemmanager::looks_garbled(&text) {
                    return Err(Fallback(format!(
                        "ModemManager's reply looks mis-decoded («{}»)",
                        parse::excerpt(&text)
                    )));
                }
                Ok(vec![text])
            }
            Err(MmError::TerminatedByNetwork) => Err(Fallback(MmError::TerminatedByNetwork.to_string())),
            Err(e) => Err(Failed(mm_error(e, cx))),
        }
    }
}

enum MmOutcome {
    /// Ask again on the AT port, if there is one.
    Fallback(String),
    Failed(PollError),
}
use MmOutcome::{Failed, Fallback};

fn open_port(device: &str, baud_rate: u32) -> Result<tokio_serial::SerialStream, PollError> {
    use tokio_serial::SerialPort;
    let builder = tokio_serial::new(device, baud_rate);
    let port = tokio_serial::SerialStream::open(&builder)
        .map_err(|e| PollError::Modem(format!("cannot open {device}: {}", e.description)))?;
    // Bytes that arrived while nobody listened (a late reply to an old poll) are not ours.
    let _ = port.clear(tokio_serial::ClearBuffer::Input);
    Ok(port)
}

fn flush_transcript<S>(dialogue: &mut Dialogue<S>, cx: &PollContext) {
    for line in dialogue.transcript.drain(..) {
        cx.note(line);
    }
}

fn at_error(e: AtError, device: &str, cx: &PollContext) -> PollError {
    cx.note(format!("{device}: {e}"));
    match e {
        AtError::Timeout { .. } => PollError::Timeout(cx.timeout),
        AtError::Terminated | AtError::NetworkTimeout => PollError::Unavailable(e.to_string()),
        other => PollError::Modem(format!("{device}: {other}")),
    }
}

fn mm_error(e: MmError, cx: &PollContext) -> PollError {
    cx.note(e.to_string());
    match e {
        MmError::Timeout => PollError::Timeout(cx.timeout),
        MmError::NetworkTimeout => PollError::Unavailable(e.to_string()),
        other => PollError::Modem(other.to_string()),
    }
}

/// One decoded-and-parsed run over arbitrary bytes: what the fuzz targets call. Reads the
/// bytes as modem output (lines, `+CUSD:` parsing), decodes every reply, parses balance and
/// packages. Never panics; returns how many values it found, so the work is not optimised out.
pub fn fuzz_reply(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    let dates = Dates { now: std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000), utc_offset_secs: 3 * 3600 };
    let mut found = 0;
    for line in text.split(['\r', '\n']) {
        let texts = match at::parse_cusd(line) {
            Some(c) => [None, Some(codec::Charset::Ucs2), Some(codec::Charset::Hex)]
                .into_iter()
                .map(|cs| codec::decode(c.text.as_deref().unwrap_or(""), c.dcs, cs))
                .collect(),
            None => vec![line.to_string(), codec::decode(line, data.first().copied(), None)],
        };
        for t in texts {
            found += usize::from(parse::balance(&t).is_some());
            found += usize::from(!parse::packages(&t, dates).is_empty());
            found += usize::from(parse::stub_phrase(&t).is_some());
            found += parse::excerpt(&t).len() % 2;
        }
    }
    found + usize::from(modemmanager::looks_garbled(&modemmanager::reply_text(&text)))
}

#[cfg(test)]
mod tests;
