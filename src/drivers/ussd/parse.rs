//! Decoded USSD replies → values: per-operator default codes, the balance and package grammar
//! (Russian and Latin-transliterated text, comma decimals, «Минус», U+2212, adverts with other
//! prices, «безлимит», ГБ/МБ/КБ/мин/SMS/шт, `до DD.MM.YY HH:MM`), stub detection, and the
//! user's own patterns. Pure functions over strings; no I/O.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regex::{Captures, Regex};

use crate::config::units::ByteSize;

/// An operator's USSD codes: the defaults a line gets from its `operator` label.
#[derive(Debug, PartialEq, Eq)]
pub struct OperatorCodes {
    /// The canonical name, as docs/DRIVERS.md lists it.
    pub name: &'static str,
    /// Other spellings of the `operator` label that mean this operator.
    pub aliases: &'static [&'static str],
    pub balance_code: &'static str,
    /// Remaining packages (data, minutes, SMS).
    pub data_code: &'static str,
}

/// Defaults from the facts file (operators/ru.md §7.1); sources disagree for "remaining", so
/// every line may override them with `code:` and `data_code:`.
pub static OPERATORS: &[OperatorCodes] = &[
    OperatorCodes { name: "beeline", aliases: &["билайн"], balance_code: "*102#", data_code: "*107#" },
    OperatorCodes { name: "megafon", aliases: &["мегафон"], balance_code: "*100#", data_code: "*558#" },
    OperatorCodes { name: "mts", aliases: &["мтс"], balance_code: "*100#", data_code: "*100*1#" },
    OperatorCodes { name: "t2", aliases: &["tele2", "т2", "теле2"], balance_code: "*105#", data_code: "*155*0#" },
    OperatorCodes { name: "yota", aliases: &["йота"], balance_code: "*100#", data_code: "*101#" },
];

/// The operator an `operator` label names, if we know its codes (case-insensitive).
pub fn operator(label: &str) -> Option<&'static OperatorCodes> {
    let label = label.trim().to_lowercase();
    OPERATORS.iter().find(|o| o.name == label || o.aliases.contains(&label.as_str()))
}

/// What one reply told about packages. Amounts of the same kind are summed (a package and
/// its rollover are both usable); a total ("из 30 ГБ") is the quota of the amount before it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Packages {
    pub data_remaining: Option<ByteSize>,
    /// Only when every data amount came with its total.
    pub data_quota: Option<ByteSize>,
    pub voice_remaining: Option<Duration>,
    pub sms_remaining: Option<u64>,
    /// The earliest `до DD.MM[.YY] [HH:MM]` date.
    pub quota_expiry: Option<SystemTime>,
    /// The reply speaks of unlimited data («безлимитный интернет»): no figure, and no error.
    pub unlimited_data: bool,
}

impl Packages {
    pub fn is_empty(&self) -> bool {
        self.data_remaining.is_none()
            && self.voice_remaining.is_none()
            && self.sms_remaining.is_none()
            && self.quota_expiry.is_none()
            && !self.unlimited_data
    }
}

/// A user's `data_pattern`: named group `remaining` (required), optional `quota` and `unit`.
#[derive(Clone, Debug)]
pub struct DataPattern(pub Regex);

/// Checks a `balance_pattern` (needs a named group `amount`; `minus` optional).
pub fn balance_pattern(source: &str) -> Result<Regex, String> {
    let re =
        Regex::new(source).map_err(|e| format!("not a valid regular expression: {}", last_line(&e.to_string())))?;
    if !re.capture_names().flatten().any(|n| n == "amount") {
        return Err("the pattern needs a named group `amount`, e.g. `Баланс:?\\s*(?P<amount>-?[\\d.,]+)`".into());
    }
    Ok(re)
}

/// Checks a `data_pattern` (needs a named group `remaining`; `quota` and `unit` optional).
pub fn data_pattern(source: &str) -> Result<DataPattern, String> {
    let re =
        Regex::new(source).map_err(|e| format!("not a valid regular expression: {}", last_line(&e.to_string())))?;
    if !re.capture_names().flatten().any(|n| n == "remaining") {
        return Err("the pattern needs a named group `remaining`, e.g. `(?P<remaining>[\\d.,]+\\s*[ГМК]Б)`".into());
    }
    Ok(DataPattern(re))
}

fn last_line(text: &str) -> String {
    text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(text).trim().to_string()
}

/// Spaces of every width to a plain space, lower case; dashes and the minus sign kept.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\t' => ' ',
            c => c,
        })
        .collect::<String>()
        .to_lowercase()
}

// The grammar. Every pattern runs on `normalize`d text (lower case). A match is closed by a
// non-letter or the end, so that `р` in «раз», `мб` in «Мбит» or `p` in «pcs» never count.
const NUMBER: &str = r"(?P<int>\d{1,3}(?: \d{3})+|\d+)(?:[.,](?P<frac>\d+))?";
const CURRENCY: &str = r"(?P<cur>руб(?:л[а-яё]*)?|rub|rur|р|r|p|₽)";
const END: &str = r"(?:[^\p{L}\d]|$)";

static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?P<minus>минус|minus)?\s*:?\s*(?P<sign>[-−–])?\s*{NUMBER}\s*{CURRENCY}\.?(?:\s*(?P<kop>\d{{1,2}})\s*коп[а-яё]*\.?)?{END}"
    ))
});

/// Words after which the first amount is the balance, not an advert's price.
static BALANCE_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(r"баланс|balance|balans|остаток|ostatok|octatok|на сч[её]т[еу]|na schetu|ваш сч[её]т|минус|minus|итого|доступно")
});

/// A keyword followed by a bare number (no currency): the last resort for the balance.
static BALANCE_BARE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?:баланс|balance|balans|остаток на сч[её]те)\s*:?\s*(?P<minus>минус|minus)?\s*:?\s*(?P<sign>[-−–])?\s*{NUMBER}(?:[^\p{{L}}\d%]|$)"
    ))
});

const DATA_UNIT: &str = r"(?P<unit>тб|tb|гб|gb|мб|mb|кб|kb|гигабайт[а-яё]*|мегабайт[а-яё]*|килобайт[а-яё]*|гбайт|мбайт|кбайт|gbyte|mbyte|kbyte)";

static DATA: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"(?P<num>\d+(?:[.,]\d+)?)\s*{DATA_UNIT}{END}")));

/// "26.05 из 30 ГБ": the unit only after the total.
static DATA_OF: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(r"(?P<rem>\d+(?:[.,]\d+)?)\s*(?:из|of|/)\s*(?P<num>\d+(?:[.,]\d+)?)\s*{DATA_UNIT}{END}"))
});

static MINUTES: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?P<num>\d+)\s*(?:мин|min)(?:ут[аы]?|utes?|s)?\.?(?:[^\p{L}]|$)"));

static SMS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:(?:sms|смс)\s*[:-]?\s*(?P<a>\d+)(?:\s*(?:шт|sms|смс)[а-яё.]*)?)|(?:(?P<b>\d+)\s*(?:sms|смс|шт|сообщени[а-яё]*)(?:[^\p{L}]|$))",
    )
});

static EXPIRY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:до|по|until|do)\s*(?P<d>\d{1,2})\.(?P<m>\d{1,2})(?:\.(?P<y>\d{4}|\d{2}))?(?:\s*(?:г\.?|года)?\s*(?:в\s*)?(?P<h>\d{1,2}):(?P<min>\d{2}))?",
    )
});

static DATA_AHEAD: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"^\s*{DATA_UNIT}")));

static UNLIMITED: LazyLock<Regex> = LazyLock::new(|| re(r"безлимит|bezlimit|unlim|безгранич"));
static INTERNET: LazyLock<Regex> = LazyLock::new(|| re(r"интернет|internet|трафик|traffic|гб|мб|\bgb\b"));
static NOT_INTERNET: LazyLock<Regex> = LazyLock::new(|| re(r"звонк|минут|смс|sms|мессенджер|соцсет"));

/// Stub replies: the operator accepted the request and will answer by SMS, or later.
static STUB: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"запрос (?:принят|отправлен|обрабатывается)|заявка принята|ожидайте|отправлен[а-яё]* в (?:sms|смс)|направим ответ|ответ (?:придёт|придет|будет|поступит)|в ближайшее время|будет отправлен[а-яё]*|(?:придёт|придет|получите) (?:в )?(?:sms|смс)|zapros prinyat|request (?:is )?(?:accepted|received)|wait for (?:an )?sms|you will receive an? sms",
    )
});

/// Adverts: once a reply turns to selling something, its amounts are prices, not packages.
static ADVERT: LazyLock<Regex> =
    LazyLock::new(|| re(r"подключи|подробн|акци|скидк|подар|узнай|закажи|смотри|спешите|успей|выгодн|предлож"));

fn re(source: &str) -> Regex {
    // The grammar above is fixed; a typo in it is a bug that every unit test catches.
    Regex::new(source).unwrap_or_else(|e| panic!("ussd grammar pattern does not compile: {e}"))
}

/// The stub phrase of a reply that carries no figures, e.g. «запрос принят».
pub fn stub_phrase(text: &str) -> Option<String> {
    let norm = normalize(text);
    STUB.find(&norm).map(|m| m.as_str().to_string())
}

/// The balance of a reply: the first amount with a currency after a balance word; else the
/// first amount with a currency; else a bare number right after «Баланс». `None` when none.
pub fn balance(text: &str) -> Option<f64> {
    balance_detail(text).map(|(amount, _)| amount)
}

/// Whether the reply has an amount right after a balance word (a real answer, even when it
/// also says «запрос принят»).
pub fn has_balance_word_amount(text: &str) -> bool {
    balance_detail(text).is_some_and(|(_, anchored)| anchored)
}

/// Whether the reply mentions data, minutes or SMS amounts at all (outside adverts).
pub fn has_package_words(text: &str) -> bool {
    let full = normalize(text);
    let norm = &full[..advert_cut(&full)];
    DATA.is_match(norm) || MINUTES.is_match(norm) || SMS.is_match(norm)
}

/// The balance and whether a balance word introduced it.
fn balance_detail(text: &str) -> Option<(f64, bool)> {
    let norm = normalize(text);
    let amounts: Vec<Captures<'_>> = MONEY.captures_iter(&norm).collect();
    let mut previous_end = 0;
    for caps in &amounts {
        let Some(whole) = caps.get(0) else { continue };
        let window_start = previous_end.max(whole.start().saturating_sub(60));
        let window = norm.get(floor_boundary(&norm, window_start)..whole.start()).unwrap_or("");
        if caps.name("minus").is_some() || BALANCE_WORD.is_match(window) {
            return money(caps).map(|a| (a, true));
        }
        previous_end = whole.end();
    }
    if let Some(first) = amounts.first() {
        return money(first).map(|a| (a, false));
    }
    BALANCE_BARE.captures(&norm).and_then(|c| money(&c)).map(|a| (a, true))
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn money(caps: &Captures<'_>) -> Option<f64> {
    let int: String = caps.name("int")?.as_str().chars().filter(char::is_ascii_digit).collect();
    let frac = caps.name("frac").map_or("0", |m| m.as_str());
    let kop = caps.name("kop").map(|m| m.as_str());
    let mut value: f64 = format!("{int}.{frac}").parse().ok()?;
    if let (Some(k), None) = (kop, caps.name("frac")) {
        value += k.parse::<f64>().ok()? / 100.0;
    }
    if !value.is_finite() {
        return None;
    }
    let negative = caps.name("minus").is_some() || caps.name("sign").is_some();
    Some(if negative { -value } else { value })
}

/// A user's `balance_pattern` on the reply (spaces normalised, case kept).
pub fn balance_with(pattern: &Regex, text: &str) -> Option<f64> {
    let text: String = normalize_spaces(text);
    let caps = pattern.captures(&text)?;
    let amount = number(caps.name("amount")?.as_str())?;
    Some(if caps.name("minus").is_some() { -amount.abs() } else { amount })
}

fn normalize_spaces(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' => ' ',
            c => c,
        })
        .collect()
}

/// A decimal as operators write it: `1 234,56`, `-5.5`, `−12`, `Минус 3`.
pub fn number(text: &str) -> Option<f64> {
    let norm = normalize(text);
    let negative = norm.contains("минус") || norm.contains("minus") || norm.contains(['-', '−', '–']);
    let digits: String = norm
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | ','))
        .filter(|c| *c != ' ')
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    let digits = digits.trim_end_matches('.');
    // "1.234.5" is not a number we can trust.
    if digits.is_empty() || digits.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = digits.parse().ok()?;
    value.is_finite().then_some(if negative { -value } else { value })
}

/// Bytes in `value` `unit` (binary steps, as operators' own clients count: 1 ГБ = 1024 МБ).
fn bytes(value: f64, unit: &str) -> Option<ByteSize> {
    let factor: f64 = match unit.chars().next()? {
        'т' | 't' => 1024f64.powi(4),
        'г' | 'g' => 1024f64.powi(3),
        'м' | 'm' => 1024f64.powi(2),
        'к' | 'k' => 1024.0,
        _ => return None,
    };
    let b = (value * factor).round();
    (0.0..1e19).contains(&b).then_some(ByteSize(b as u64))
}

fn decimal(text: &str) -> Option<f64> {
    text.replace(',', ".").parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

/// Whether the text right before `start` introduces a total ("из", "of", "/").
fn is_total(norm: &str, start: usize) -> bool {
    let before = norm.get(..start).unwrap_or("").trim_end().trim_end_matches('(').trim_end();
    before.ends_with("из") || before.ends_with(" of") || before.ends_with('/')
}

/// Where the reply turns into an advert, if it had something to say before that.
fn advert_cut(norm: &str) -> usize {
    ADVERT.find(norm).map_or(norm.len(), |m| m.start())
}

/// Time of day and zone for dates without them: `до DD.MM.YY` is read in `utc_offset`.
#[derive(Clone, Copy, Debug)]
pub struct Dates {
    pub now: SystemTime,
    pub utc_offset_secs: i32,
}

/// Remaining packages in a reply (default grammar).
pub fn packages(text: &str, dates: Dates) -> Packages {
    let full = normalize(text);
    let norm = &full[..advert_cut(&full)];
    let mut out = Packages::default();

    // Data: "X из Y unit" first, then "X unit" amounts; a total after "из" belongs to the one before.
    let mut buckets: Vec<(u64, Option<u64>)> = Vec::new();
    let mut taken: Vec<(usize, usize)> = Vec::new();
    for caps in DATA_OF.captures_iter(norm) {
        let (Some(whole), Some(rem), Some(num), Some(unit)) =
            (caps.get(0), caps.name("rem"), caps.name("num"), caps.name("unit"))
        else {
            continue;
        };
        if let (Some(r), Some(t)) = (
            decimal(rem.as_str()).and_then(|v| bytes(v, unit.as_str())),
            decimal(num.as_str()).and_then(|v| bytes(v, unit.as_str())),
        ) {
            buckets.push((r.0, Some(t.0)));
            taken.push((whole.start(), whole.end()));
        }
    }
    for caps in DATA.captures_iter(norm) {
        let (Some(whole), Some(num), Some(unit)) = (caps.get(0), caps.name("num"), caps.name("unit")) else {
            continue;
        };
        if taken.iter().any(|(s, e)| whole.start() < *e && whole.end() > *s) {
            continue;
        }
        let after = norm.get(whole.end() - 1..).unwrap_or("");
        if after.starts_with("/с") || after.starts_with("/s") {
            continue; // a speed, "100 Мб/с"
        }
        let Some(amount) = decimal(num.as_str()).and_then(|v| bytes(v, unit.as_str())) else { continue };
        if is_total(norm, whole.start()) {
            if let Some(last) = buckets.last_mut() {
                last.1 = Some(amount.0);
            }
        } else {
            buckets.push((amount.0, None));
        }
    }
    if !buckets.is_empty() {
        out.data_remaining = Some(ByteSize(buckets.iter().fold(0u64, |a, b| a.saturating_add(b.0))));
        if buckets.iter().all(|b| b.1.is_some()) {
            out.data_quota = Some(ByteSize(buckets.iter().fold(0u64, |a, b| a.saturating_add(b.1.unwrap_or(0)))));
        }
    }

    let mut minutes: Option<u64> = None;
    for caps in MINUTES.captures_iter(norm) {
        let (Some(whole), Some(num)) = (caps.get(0), caps.name("num")) else { continue };
        if is_total(norm, whole.start()) {
            continue;
        }
        if let Ok(n) = num.as_str().parse::<u64>() {
            minutes = Some(minutes.unwrap_or(0).saturating_add(n));
        }
    }
    out.voice_remaining = minutes.map(|m| Duration::from_secs(m.saturating_mul(60)));

    let mut sms: Option<u64> = None;
    for caps in SMS.captures_iter(norm) {
        let Some(num) = caps.name("a").or_else(|| caps.name("b")) else { continue };
        if is_total(norm, num.start()) {
            continue;
        }
        if let Ok(n) = num.as_str().parse::<u64>() {
            sms = Some(sms.unwrap_or(0).saturating_add(n));
        }
    }
    out.sms_remaining = sms;

    out.quota_expiry = EXPIRY
        .captures_iter(norm)
        .filter(|c| {
            // "до 1.5 ГБ" is an amount, not the first of May.
            let end = c.get(0).map_or(0, |m| m.end());
            !DATA_AHEAD.is_match(norm.get(end..).unwrap_or(""))
        })
        .filter_map(|c| expiry(&c, dates))
        .min();
    out.unlimited_data = norm
        .split(['.', ';', '\n', '!'])
        .any(|s| UNLIMITED.is_match(s) && (INTERNET.is_match(s) || !NOT_INTERNET.is_match(s)));
    out
}

/// A user's `data_pattern` on the reply: `remaining` (and `quota`) with their own unit, or the
/// `unit` group, or megabytes.
pub fn packages_with(pattern: &DataPattern, text: &str) -> Option<Packages> {
    let text = normalize_spaces(text);
    let caps = pattern.0.captures(&text)?;
    let unit = caps.name("unit").map(|m| m.as_str().to_lowercase());
    let size = |group: &str| -> Option<ByteSize> {
        let raw = caps.name(group)?.as_str().to_lowercase();
        let unit_here = DATA.captures(&raw).and_then(|c| c.name("unit").map(|u| u.as_str().to_string()));
        let value = number(&raw)?.abs();
        bytes(value, unit_here.as_deref().or(unit.as_deref()).unwrap_or("мб"))
    };
    let data_remaining = Some(size("remaining")?);
    Some(Packages { data_remaining, data_quota: size("quota"), ..Packages::default() })
}

fn expiry(caps: &Captures<'_>, dates: Dates) -> Option<SystemTime> {
    let num = |name: &str| caps.name(name).and_then(|m| m.as_str().parse::<i64>().ok());
    let (day, month) = (num("d")?, num("m")?);
    if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        return None;
    }
    let (hour, minute) = match (num("h"), num("min")) {
        (Some(h), Some(m)) if h < 24 && m < 60 => (h, m),
        (Some(_), Some(_)) => return None,
        _ => (23, 59),
    };
    let now_local = dates.now.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64 + i64::from(dates.utc_offset_secs);
    let this_year = civil_from_days(now_local.div_euclid(86_400)).0;
    let at = |year: i64| {
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + 59 - i64::from(dates.utc_offset_secs)
    };
    let secs = match num("y") {
        Some(y) if y < 100 => at(2000 + y),
        Some(y) => at(y),
        // No year: the next such date (a package never ends in the past).
        None => {
            let this = at(this_year);
            if this + 86_400 < now_local - i64::from(dates.utc_offset_secs) {
                at(this_year + 1)
            } else {
                this
            }
        }
    };
    u64::try_from(secs).ok().map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A reply fit for a log line or an error: digit runs that could be phone numbers masked,
/// line breaks flattened, at most 160 characters.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 7 {
            out.push_str(&digits[..2]);
            out.push_str(&"*".repeat(digits.len() - 4));
            out.push_str(&digits[digits.len() - 2..]);
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut digits, &mut out);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > 160 {
        format!("{}…", out.chars().take(160).collect::<String>())
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSK: i32 = 3 * 3600;

    fn dates() -> Dates {
        // 2026-11-20 12:00 UTC
        Dates { now: UNIX_EPOCH + Duration::from_secs(1_795_176_000), utc_offset_secs: MSK }
    }

    #[test]
    fn calendar_arithmetic_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2019, 11, 21), 18_221);
        assert_eq!(civil_from_days(18_221), (2019, 11, 21));
        assert_eq!(civil_from_days(days_from_civil(2026, 2, 28) + 1), (2026, 3, 1));
    }

    #[test]
    fn expiry_is_read_in_the_configured_zone_and_rolls_to_next_year_without_one() {
        let p = packages("Пакет 5 ГБ до 21.11.19 23:59.", dates());
        // 2019-11-21 23:59:59 MSK = 20:59:59 UTC
        assert_eq!(
            p.quota_expiry,
            Some(
                UNIX_EPOCH
                    + Duration::from_secs(days_from_civil(2019, 11, 21) as u64 * 86_400 + 20 * 3600 + 59 * 60 + 59)
            )
        );
        let p = packages("5 ГБ до 01.02", dates());
        let expected = days_from_civil(2027, 2, 1) * 86_400 + 20 * 3600 + 59 * 60 + 59;
        assert_eq!(p.quota_expiry, Some(UNIX_EPOCH + Duration::from_secs(expected as u64)));
    }

    #[test]
    fn user_patterns_take_their_groups() {
        let re = balance_pattern(r"Остаток средств (?P<minus>минус )?(?P<amount>[\d ,]+)").unwrap();
        assert_eq!(balance_with(&re, "Остаток средств минус 1 234,5 у.е."), Some(-1234.5));
        let dp = data_pattern(r"Internet (?P<remaining>[\d.]+) of (?P<quota>[\d.]+) (?P<unit>GB)").unwrap();
        let p = packages_with(&dp, "Internet 1.5 of 10 GB").unwrap();
        assert_eq!(p.data_remaining, Some(ByteSize(1_610_612_736)));
        assert_eq!(p.data_quota, Some(ByteSize(10_737_418_240)));
        let dp = data_pattern(r"осталось (?P<remaining>\d+)").unwrap();
        assert_eq!(packages_with(&dp, "осталось 100").unwrap().data_remaining, Some(ByteSize(104_857_600)));
        assert!(balance_pattern("(").unwrap_err().contains("not a valid regular expression"));
        assert!(balance_pattern("Баланс (\\d+)").unwrap_err().contains("named group `amount`"));
        assert!(data_pattern("(?P<x>\\d)").unwrap_err().contains("named group `remaining`"));
    }

    #[test]
    fn excerpts_mask_long_digit_runs_and_stay_short() {
        assert_eq!(excerpt("Ваш номер 79261234567.\nБаланс 5р"), "Ваш номер 79*******67. Баланс 5р");
        assert_eq!(excerpt(&"а".repeat(300)).chars().count(), 161);
    }

    #[test]
    fn operators_are_found_by_name_and_alias() {
        assert_eq!(operator("MTS").map(|o| o.balance_code), Some("*100#"));
        assert_eq!(operator("tele2").map(|o| o.name), Some("t2"));
        assert_eq!(operator("vodafone"), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,300}") {
            let _ = balance(&text);
            let _ = packages(&text, dates());
            let _ = stub_phrase(&text);
            let _ = number(&text);
            let _ = excerpt(&text);
        }

        #[test]
        fn parsers_never_panic_on_reply_shaped_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("Баланс".to_string()), Just("минус".to_string()), Just("−".to_string()),
                    Just("р.".to_string()), Just("ГБ".to_string()), Just("из".to_string()),
                    Just("до".to_string()), Just(":".to_string()), Just(" ".to_string()),
                    Just(",".to_string()), Just(".".to_string()), Just("мин".to_string()),
                    Just("SMS".to_string()), Just("безлимит".to_string()), "[0-9]{1,25}",
                ],
                0..40,
            )
        ) {
            let text = parts.concat();
            if let Some(b) = balance(&text) {
                prop_assert!(b.is_finite());
            }
            let _ = packages(&text, dates());
        }
    }
}
