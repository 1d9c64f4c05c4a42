//! The reply table (`tests/fixtures/ussd/replies.txt`) through decoding and interpretation,
//! option parsing through the real config loader, and how a reading is put together.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::config::units::ByteSize;

const TABLE: &str = include_str!("../../../tests/fixtures/ussd/replies.txt");
/// 2026-11-20 12:00 UTC, the table's "now".
const NOW: u64 = 1_795_176_000;

fn dates() -> Dates {
    Dates { now: UNIX_EPOCH + Duration::from_secs(NOW), utc_offset_secs: 3 * 3600 }
}

fn default_options() -> LineOptions {
    LineOptions {
        code: Code::Default,
        data_code: Code::Default,
        data_interval: None,
        balance_pattern: None,
        data_pattern: None,
        currency: Currency::RUB,
        utc_offset_secs: 3 * 3600,
    }
}

#[derive(Default)]
struct Case {
    name: String,
    texts: Vec<String>,
    cusd: Vec<Cusd>,
    cscs: Option<codec::Charset>,
    balance: Option<String>,
    packages: Option<String>,
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for (n, line) in TABLE.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("== ") {
            cases.push(Case { name: name.to_string(), ..Case::default() });
            continue;
        }
        let case = cases.last_mut().unwrap_or_else(|| panic!("replies.txt:{}: line outside a case", n + 1));
        let (key, value) = line.split_once(": ").unwrap_or_else(|| panic!("replies.txt:{}: `key: value`", n + 1));
        match key {
            "text" => case.texts.push(value.to_string()),
            "cusd" => {
                case.cusd.push(at::parse_cusd(value).unwrap_or_else(|| panic!("replies.txt:{}: bad +CUSD", n + 1)))
            }
            "cscs" => case.cscs = Some(codec::Charset::parse(value)),
            "balance" => case.balance = Some(value.trim().to_string()),
            "packages" => case.packages = Some(value.trim().to_string()),
            other => panic!("replies.txt:{}: unknown key `{other}`", n + 1),
        }
    }
    cases
}

fn size(text: &str) -> ByteSize {
    ByteSize::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// `YYYY-MM-DD HH:MM` Moscow time, to the last second of that minute.
fn moscow(text: &str) -> SystemTime {
    let (date, time) = text.split_once(' ').expect("date and time");
    let d: Vec<i64> = date.split('-').map(|p| p.parse().expect("number")).collect();
    let t: Vec<i64> = time.split(':').map(|p| p.parse().expect("number")).collect();
    let secs = parse::days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + 59 - 3 * 3600;
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn expected_packages(spec: &str) -> Packages {
    let mut p = Packages::default();
    let mut words = spec.split_whitespace().peekable();
    while let Some(word) = words.next() {
        match word.split_once('=') {
            Some(("data", v)) => p.data_remaining = Some(size(v)),
            Some(("quota", v)) => p.data_quota = Some(size(v)),
            Some(("voice", v)) => {
                p.voice_remaining = Some(Duration::from_secs(v.trim_end_matches("min").parse::<u64>().unwrap() * 60))
            }
            Some(("sms", v)) => p.sms_remaining = Some(v.parse().unwrap()),
            Some(("expiry", v)) => {
                let time = words.next().expect("expiry=<date> <time>");
                p.quota_expiry = Some(moscow(&format!("{v} {time}")));
            }
            None if word == "unlimited" => p.unlimited_data = true,
            _ => panic!("unknown packages expectation `{word}`"),
        }
    }
    p
}

#[test]
fn the_reply_table_reads_as_expected() {
    let cases = cases();
    assert!(cases.len() >= 40, "the table keeps at least 40 replies, has {}", cases.len());
    let options = default_options();
    let mut failures = Vec::new();
    for case in &cases {
        let texts: Vec<String> =
            if case.cusd.is_empty() { vec![case.texts.join("\n")] } else { texts_of(&case.cusd, case.cscs) };
        if let Some(want) = &case.balance {
            let got = interpret_balance(&texts, &options, dates());
            let ok = match (want.as_str(), &got) {
                ("none", Err(PollError::BadResponse(m))) => !m.contains("stub"),
                ("stub", Err(PollError::BadResponse(m))) => m.contains("stub"),
                (n, Ok((amount, _))) => n.parse::<f64>().is_ok_and(|n| (n - amount).abs() < 1e-9),
                _ => false,
            };
            if !ok {
                failures.push(format!("{}: balance want {want}, got {got:?} from {texts:?}", case.name));
            }
        }
        if let Some(want) = &case.packages {
            let got = interpret_packages(&texts, &options, dates());
            let ok = match (want.as_str(), &got) {
                ("none", Err(PollError::BadResponse(m))) => !m.contains("stub"),
                ("stub", Err(PollError::BadResponse(m))) => m.contains("stub"),
                ("none" | "stub", _) => false,
                (spec, Ok(p)) => *p == expected_packages(spec),
                _ => false,
            };
            if !ok {
                failures.push(format!("{}: packages want {want}, got {got:?} from {texts:?}", case.name));
            }
        }
        assert!(case.balance.is_some() || case.packages.is_some(), "{}: expects nothing", case.name);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn stub_errors_name_the_phrase_and_mask_numbers() {
    let texts = vec!["Запрос принят. Ответ придёт в SMS на номер 79261234567".to_string()];
    let Err(PollError::BadResponse(message)) = interpret_balance(&texts, &default_options(), dates()) else {
        panic!("a stub is a bad response");
    };
    assert!(message.contains("stub («запрос принят»)"), "{message}");
    assert!(message.contains("79*******67") && !message.contains("79261234567"), "{message}");
}

#[test]
fn user_patterns_override_the_grammar_and_must_match() {
    let mut o = default_options();
    o.balance_pattern = Some(parse::balance_pattern(r"Credit: (?P<amount>[\d.]+) EUR").unwrap());
    o.currency = Currency::EUR;
    let texts = vec!["Credit: 12.34 EUR, bonus 5 р.".to_string()];
    assert_eq!(interpret_balance(&texts, &o, dates()).unwrap().0, 12.34);
    let texts = vec!["Баланс 5 р.".to_string()];
    let err = interpret_balance(&texts, &o, dates()).unwrap_err();
    assert!(err.to_string().contains("`balance_pattern` did not match"), "{err}");

    o.data_pattern = Some(parse::data_pattern(r"Data left: (?P<remaining>\d+)").unwrap());
    let texts = vec!["Data left: 300, 20 min".to_string()];
    let p = interpret_packages(&texts, &o, dates()).unwrap();
    assert_eq!(p.data_remaining, Some(ByteSize(300 * 1024 * 1024)));
    assert_eq!(p.voice_remaining, Some(Duration::from_secs(1200)));
}

#[test]
fn answers_come_before_release_notices() {
    let replies = vec![
        Cusd { m: 2, text: Some("Initiating Release".into()), dcs: Some(15) },
        Cusd { m: 0, text: Some("Balance 5r".into()), dcs: Some(15) },
        Cusd { m: 0, text: Some(String::new()), dcs: None },
    ];
    assert_eq!(texts_of(&replies, None), vec!["Balance 5r".to_string(), "Initiating Release".to_string()]);
}

#[test]
fn the_reading_prefers_the_data_answer_and_keeps_unlimited_absent() {
    let balance = Some(Money { amount: 10.0, currency: Currency::RUB });
    let data = Packages { data_remaining: Some(ByteSize(5)), ..Packages::default() };
    let from_balance = Packages {
        data_remaining: Some(ByteSize(7)),
        voice_remaining: Some(Duration::from_secs(60)),
        ..Packages::default()
    };
    let r = reading(balance, Some(data), from_balance.clone());
    assert_eq!((r.data_remaining, r.voice_remaining), (Some(ByteSize(5)), Some(Duration::from_secs(60))));
    let unlimited = Packages { unlimited_data: true, ..Packages::default() };
    assert_eq!(reading(balance, Some(unlimited), from_balance.clone()).data_remaining, None);
    assert_eq!(reading(balance, None, from_balance).data_remaining, Some(ByteSize(7)));
}

#[test]
fn utc_offsets_parse_in_the_usual_spellings() {
    assert_eq!(parse_utc_offset("+03:00"), Some(10_800));
    assert_eq!(parse_utc_offset("3"), Some(10_800));
    assert_eq!(parse_utc_offset("-05:30"), Some(-19_800));
    assert_eq!(parse_utc_offset("UTC+7"), Some(25_200));
    assert_eq!(parse_utc_offset("+0530"), Some(19_800));
    assert_eq!(parse_utc_offset("+15"), None);
    assert_eq!(parse_utc_offset("moscow"), None);
}

/// The configs these tests load name only this driver.
static ONLY_USSD: crate::config::Registry = &[&super::SPEC];

fn load(yaml: &str) -> Result<crate::config::Config, String> {
    crate::config::parse("t.yaml", yaml, ONLY_USSD).map_err(|e| e.to_string())
}

#[test]
fn line_and_modem_keys_load_from_a_driverless_line_and_from_an_account() {
    let config = load(
        "lines:
  - name: r1
    driver: ussd
    device: /dev/ttyUSB2
    baud_rate: 9600
    operator: megafon
    data_interval: 6h
    data_code: '*558#'
    currency: rub
    utc_offset: '+05:00'
    balance_pattern: 'Баланс (?P<amount>[\\d,]+)'
",
    )
    .unwrap();
    let line = &config.lines[0];
    let modem = line.account.options.get::<ModemOptions>().unwrap();
    assert_eq!(
        (modem.device.as_deref(), modem.baud_rate, modem.backend),
        (Some("/dev/ttyUSB2"), 9600, Backend::Serial)
    );
    let o = line.options.get::<LineOptions>().unwrap();
    assert_eq!((o.code.clone(), o.data_code.clone()), (Code::Default, Code::Code("*558#".into())));
    assert_eq!(
        (o.data_interval, o.currency, o.utc_offset_secs),
        (Some(Duration::from_secs(6 * 3600)), Currency::RUB, 18_000)
    );
    assert!(o.balance_pattern.is_some());

    let config = load(
        "accounts:
  gw:
    driver: ussd
    backend: modemmanager
    modem: 3
    dbus_address: unix:path=/tmp/bus
    operator: t2
lines:
  - {name: a, account: gw}
  - {name: b, account: gw, code: '*105*1#', data_code: none}
",
    )
    .unwrap();
    let modem = config.lines[0].account.options.get::<ModemOptions>().unwrap();
    assert_eq!(modem.backend, Backend::ModemManager);
    assert_eq!(modem.modem, "/org/freedesktop/ModemManager1/Modem/3");
    assert_eq!(config.lines[1].options.get::<LineOptions>().unwrap().data_code, Code::Off);
}

#[test]
fn bad_keys_are_reported_with_position_and_a_fix() {
    let err = load(
        "lines:
  - name: r1
    driver: ussd
    operator: vodafone
  - name: r2
    driver: ussd
    device: /dev/ttyUSB0
    operator: mts
    code: '*100#\"; AT+CFUN=0'
    backend: serial
    modem: 1
  - name: r3
    driver: ussd
    device: /dev/ttyUSB0
    backend: usb
    balance_pattern: 'Баланс (\\d+)'
    data_pattern: '('
    utc_offset: moscow
    code: none
    data_code: none
",
    )
    .unwrap_err();
    let expected = [
        "t.yaml:2:5: error: lines[0] (r1): missing required key `device`",
        "t.yaml:4:15: error: lines[0] (r1).operator: operator `vodafone` has no default USSD codes (known: beeline, megafon, mts, t2, yota); set `code:` (and `data_code:`)",
        "lines[1] (r2).code: `*100#\"; AT+CFUN=0` is not a USSD code",
        "lines[1] (r2).modem: `modem` is for `backend: modemmanager`",
        "lines[2] (r3).backend: unknown USSD backend `usb`; known: serial, modemmanager",
        "lines[2] (r3).balance_pattern: the pattern needs a named group `amount`",
        "lines[2] (r3).data_pattern: not a valid regular expression",
        "lines[2] (r3).utc_offset: `moscow` is not a UTC offset",
        "lines[2] (r3).code: both `code` and `data_code` are `none`",
    ];
    for e in expected {
        assert!(err.contains(e), "missing `{e}` in:\n{err}");
    }
}

#[test]
fn lines_naming_one_device_share_one_modem_across_accounts() {
    let config = load(
        "lines:
  - {name: a, driver: ussd, device: /dev/ttyS9, operator: mts}
  - {name: b, driver: ussd, device: /dev/ttyS9, operator: mts}
  - {name: c, driver: ussd, device: /dev/ttyS8, operator: mts}
",
    )
    .unwrap();
    let cx = BuildContext::new(Arc::new(crate::clock::SystemClock));
    let modem_of = |i: usize| {
        let options = config.lines[i].account.options.get::<ModemOptions>().unwrap().clone();
        let key = format!("tty:{}", options.device.unwrap());
        cx.sessions.get_or_create("ussd", &key, 0, || Modem::new(&key))
    };
    let drivers: Vec<_> = config.lines.iter().map(|l| (SPEC.build)(&l.account, &cx).unwrap()).collect();
    assert!(Arc::ptr_eq(&modem_of(0), &modem_of(1)));
    assert!(!Arc::ptr_eq(&modem_of(0), &modem_of(2)));
    drop(drivers);
}

#[test]
fn the_fuzz_entry_survives_the_table_and_junk() {
    for case in cases() {
        for t in &case.texts {
            fuzz_reply(t.as_bytes());
        }
    }
    fuzz_reply(b"+CUSD: 0,\"\xff\xfe\",72\r\n+CUSD: 1,\"0041\r\n\x00");
    fuzz_reply(&[0xF0, 0x9F, 0x98]);
}
